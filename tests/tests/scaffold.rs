//! `assegai new`: both templates scaffold complete projects (placeholders filled, a manifest the
//! registry accepts), bad names and non-empty directories are refused without writing anything,
//! and the agents they produce work against the real proxy and Anvil: the Node one as is, the Rust
//! one after an offline `cargo build`. Each asks for a transfer that a person approves (or rejects)
//! from another process, and stops cleanly on SIGTERM.

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use assegai_e2e::{Proxy, TestEnv, assegai_bin, workspace_root};
use serde_json::Value;

/// Anvil's first account: the wallet the proxy signs with on the local chain.
const WALLET: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
/// Its starting balance, as the agents print it.
const BALANCE: &str = "balance: 10000 ETH (10000000000000000000000 wei)";
const RECIPIENT: &str = "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045";

/// `assegai new ARGS` run in `cwd`.
fn new_in(env: &TestEnv, cwd: &Path, args: &[&str]) -> std::process::Output {
    let mut full = vec!["new"];
    full.extend_from_slice(args);
    env.cmd(&full).current_dir(cwd).output().expect("running assegai new")
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref()).unwrap_or_else(|e| panic!("reading {}: {e}", path.as_ref().display()))
}

#[test]
fn every_template_scaffolds_a_complete_project_with_a_valid_manifest() {
    let env = TestEnv::new();
    let work = tempfile::tempdir().unwrap();

    // The default template is Rust, the default directory ./NAME.
    let out = new_in(&env, work.path(), &["rusty"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`assegai run rusty`") && stderr.contains("`assegai approve`"), "next steps: {stderr}");
    let rust = work.path().join("rusty");
    let sdk = workspace_root().join("sdk");
    let mut expected: Vec<String> =
        [".gitignore", "Cargo.lock", "Cargo.toml", "README.md", "assegai.json", "src/main.rs"].map(String::from).into();
    expected.extend(files_under(&sdk).into_iter().map(|f| format!("vendor/assegai-sdk/{f}")));
    expected.sort();
    assert_eq!(files_under(&rust), expected, "the project, its lockfile and a copy of the SDK");

    let out = new_in(&env, work.path(), &["Nodey_1", "--template", "node", "--dir", "agents/nodey"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`assegai run agents/nodey`"));
    let node = work.path().join("agents/nodey");
    assert_eq!(files_under(&node), [".gitignore", "README.md", "assegai.json", "index.js", "package.json", "sdk.js"]);

    let out = new_in(&env, work.path(), &["snake", "--template", "python"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let python = work.path().join("snake");
    assert_eq!(files_under(&python), [".gitignore", "README.md", "assegai.json", "assegai_sdk.py", "main.py"]);

    for dir in [&rust, &node, &python] {
        for file in files_under(dir) {
            let text = read(dir.join(&file));
            assert!(!text.contains("{{"), "{}/{file} still has a placeholder", dir.display());
        }
    }

    let cargo_toml = read(rust.join("Cargo.toml"));
    assert!(cargo_toml.contains("name = \"rusty\""), "{cargo_toml}");
    assert!(cargo_toml.contains("\n[workspace]\n"), "the project stays out of enclosing workspaces");
    assert!(
        cargo_toml.contains("assegai-sdk = { path = \"vendor/assegai-sdk\" }"),
        "the SDK is the copy beside it, so the project builds anywhere: {cargo_toml}"
    );
    // The copy is the SDK's sources byte for byte, with a manifest that stands on its own.
    for file in files_under(&sdk).iter().filter(|f| *f != "Cargo.toml") {
        assert_eq!(read(rust.join("vendor/assegai-sdk").join(file)), read(sdk.join(file)), "{file}");
    }
    let vendored: toml::Table = read(rust.join("vendor/assegai-sdk/Cargo.toml")).parse().unwrap();
    assert!(!read(rust.join("vendor/assegai-sdk/Cargo.toml")).contains("workspace"), "{vendored}");
    assert_eq!(vendored["package"]["name"].as_str(), Some("assegai-sdk"));
    assert_eq!(vendored["package"]["version"].as_str(), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(vendored["package"]["publish"].as_bool(), Some(false), "a copy is never published by mistake");
    let workspace: toml::Table = read(workspace_root().join("Cargo.toml")).parse().unwrap();
    let ws_deps = workspace["workspace"]["dependencies"].as_table().unwrap();
    let sdk_manifest: toml::Table = read(sdk.join("Cargo.toml")).parse().unwrap();
    for name in sdk_manifest["dependencies"].as_table().unwrap().keys() {
        let ws_version = ws_deps[name].as_str().or_else(|| ws_deps[name]["version"].as_str()).unwrap();
        assert_eq!(vendored["dependencies"][name]["version"].as_str(), Some(ws_version), "{name}");
    }
    // The lockfile pins what this workspace was tested with, not what the registry has today.
    assert_eq!(read(rust.join("Cargo.lock")), read(workspace_root().join("Cargo.lock")));
    let package: Value = serde_json::from_str(&read(node.join("package.json"))).unwrap();
    assert_eq!(package["name"], "nodey_1", "npm names are lower case");
    assert!(package.get("dependencies").is_none(), "nothing to download");

    for (dir, name, runtime) in [(&rust, "rusty", "rust"), (&node, "Nodey_1", "node"), (&python, "snake", "python")] {
        let manifest: Value = serde_json::from_str(&read(dir.join("assegai.json"))).unwrap();
        assert_eq!(manifest["name"], name);
        assert_eq!(manifest["runtime"], runtime);
        assert_eq!(manifest["permissions"]["chains"], serde_json::json!(["eip155:31337"]));
        let out = env.run_ok(&["agents", "add", name, "--manifest", dir.to_str().unwrap(), "--json"]);
        let added: Value = serde_json::from_str(&out).unwrap();
        assert!(added["id"].is_string() && added["token"].is_string(), "{out}");
    }
    let listed = env.run_ok(&["agents", "list", "--json"]);
    assert!(listed.contains("rusty") && listed.contains("Nodey_1") && listed.contains("snake"), "{listed}");

    // An existing empty directory is used as is.
    let empty = work.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = new_in(&env, work.path(), &["in-empty", "--template", "node", "--dir", "empty"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(files_under(&empty).len(), 6);
    assert!(read(empty.join("package.json")).contains("\"in-empty\""));

    // No staging directory is left behind anywhere.
    for dir in [work.path(), &work.path().join("agents"), &empty] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.starts_with(".assegai-new"), "left behind: {}/{name}", dir.display());
        }
    }
}

#[test]
fn bad_names_are_refused_and_nothing_is_written() {
    let env = TestEnv::new();
    let work = tempfile::tempdir().unwrap();
    let long = "a".repeat(65);
    for name in
        ["", "9lives", "-dash", "_under", "has space", "dot.ted", "../escape", "a/b", "émile", "tab\there", &long]
    {
        // After `--`, so that clap takes `-dash` as the name, not as flags.
        let out = new_in(&env, work.path(), &["--template", "node", "--", name]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name:?} was accepted");
        assert!(stderr.contains("invalid agent name"), "{name:?}: {stderr}");
        assert!(stderr.contains("letters, digits, `-` and `_`"), "the error says what a name may be: {stderr}");
        assert!(!stderr.contains('\t'), "control characters are escaped: {stderr}");
    }
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0, "nothing was written");
    // 64 characters is the limit, not past it.
    let out = new_in(&env, work.path(), &[&"a".repeat(64), "--template", "node"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn an_existing_directory_is_refused_and_left_untouched() {
    let env = TestEnv::new();
    let work = tempfile::tempdir().unwrap();
    let taken = work.path().join("taken");
    std::fs::create_dir_all(taken.join("src")).unwrap();
    std::fs::write(taken.join("Cargo.toml"), "mine").unwrap();
    std::fs::write(taken.join("src/main.rs"), "also mine").unwrap();

    for template in ["rust", "node", "python"] {
        let out = new_in(&env, work.path(), &["taken", "--template", template]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("`taken` already exists and is not empty"), "{stderr}");
    }
    assert_eq!(files_under(&taken), ["Cargo.toml", "src/main.rs"]);
    assert_eq!(read(taken.join("Cargo.toml")), "mine");
    assert_eq!(read(taken.join("src/main.rs")), "also mine");

    std::fs::write(work.path().join("a-file"), "x").unwrap();
    let out = new_in(&env, work.path(), &["a-file"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a directory"));
    assert_eq!(read(work.path().join("a-file")), "x");

    let mut left: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["a-file", "taken"], "no staging directory is left behind");
}

/// A scaffolded agent running as a child process, its stdout and stderr gathered in one buffer.
struct AgentProcess {
    child: Child,
    output: Arc<Mutex<String>>,
    /// The home and agent id whose stored log lines `output` adds.
    logs: (PathBuf, String),
}

impl AgentProcess {
    /// Starts `program args` in `dir` with nothing in its environment but what `assegai run` would
    /// give it, plus `HEARTBEAT_SECS=1`.
    fn start(env: &TestEnv, program: &Path, args: &[&str], dir: &Path, proxy: &Proxy, id: &str, token: &str) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir)
            .env("LANG", "C.UTF-8")
            .env("ASSEGAI_API_PROXY", &proxy.url)
            .env("ASSEGAI_AGENT_ID", id)
            .env("ASSEGAI_AGENT_TOKEN", token)
            .env("HEARTBEAT_SECS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let output = Arc::new(Mutex::new(String::new()));
        for stream in
            [Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>, Box::new(child.stderr.take().unwrap())]
        {
            let output = Arc::clone(&output);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut out = output.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
            });
        }
        AgentProcess { child, output, logs: (env.home().to_owned(), id.to_owned()) }
    }

    /// What it printed, then the messages it logged: the templates log without printing (the
    /// proxy stores the lines, and `assegai run` shows them), so they are read back from the store.
    fn output(&self) -> String {
        let mut all = self.output.lock().unwrap().clone();
        let (home, id) = &self.logs;
        let stored = Command::new(assegai_bin())
            .args(["logs", id, "--json", "-n", "100000"])
            .env("ASSEGAI_HOME", home)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("running assegai logs");
        for line in String::from_utf8_lossy(&stored.stdout).lines() {
            let row: Value = serde_json::from_str(line).expect("one JSON log line");
            all.push_str(&format!(
                "[{}] {}\n",
                row["level"].as_str().unwrap_or("?"),
                row["message"].as_str().unwrap_or("")
            ));
        }
        all
    }

    /// Waits for a line containing `needle`; returns the rest of that line after it.
    fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let output = self.output();
            if let Some(line) = output.lines().find(|l| l.contains(needle)) {
                return line[line.find(needle).unwrap() + needle.len()..].trim().to_owned();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // The reader threads may still be draining; give them a moment, then look once more.
                std::thread::sleep(Duration::from_millis(200));
                let output = self.output();
                if let Some(line) = output.lines().find(|l| l.contains(needle)) {
                    return line[line.find(needle).unwrap() + needle.len()..].trim().to_owned();
                }
                panic!("the agent exited ({status}) without printing `{needle}`; its output:\n{output}");
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not print `{needle}` within {timeout:?}; its output:\n{output}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit.
    fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within {timeout:?} of SIGTERM; output:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pending request of one agent, once there is one.
fn pending_request(env: &TestEnv, agent: &str) -> String {
    assegai_e2e::wait_until(Duration::from_secs(30), "the agent's request to be pending", || {
        let list: Value = serde_json::from_str(&env.run_ok(&["approve", "--list", "--json"])).unwrap();
        list.as_array()?.iter().find(|r| r["agent"] == agent).and_then(|r| r["id"].as_str()).map(str::to_owned)
    })
}

/// Registers a scaffolded agent with its own manifest. The template names no RPC for the local
/// chain, so it follows `local_rpc_url` in config.toml: this test's Anvil.
fn register(env: &TestEnv, dir: &Path, name: &str) -> (String, String) {
    let manifest: Value = serde_json::from_str(&read(dir.join("assegai.json"))).unwrap();
    assert!(manifest["permissions"].get("rpcs").is_none(), "{manifest}");
    env.add_agent(name, Some(&manifest))
}

/// Runs an agent through one approved transfer and checks what it printed and logged; then stops it.
fn approve_one_transfer(env: &TestEnv, name: &str, mut agent: AgentProcess, token: &str) {
    let tx_id = pending_request(env, name);
    let approved = env.run_ok(&["approve", &tx_id, "--yes"]);
    let hash = agent.wait_for("transfer sent: ", Duration::from_secs(30));
    assert_eq!(hash, approved.trim(), "the agent logs the hash `approve` printed");
    assert!(hash.starts_with("0x") && hash.len() == 66, "{hash}");

    let output = agent.output();
    assert!(output.contains(&format!("wallet on eip155:31337: {WALLET}")), "{output}");
    assert!(output.contains(BALANCE), "{output}");
    assert!(output.contains(&format!("requesting a transfer of 0.0001 ETH to {RECIPIENT}")), "{output}");
    let names = agent.wait_for("environment: ", Duration::from_secs(1));
    assert_eq!(
        names, "ASSEGAI_AGENT_ID, ASSEGAI_AGENT_TOKEN, ASSEGAI_API_PROXY, HEARTBEAT_SECS, HOME, LANG, PATH",
        "the names of exactly what it was given"
    );
    assert!(!output.contains(token), "never a value");
    agent.wait_for("heartbeat: up", Duration::from_secs(10));

    // What it logged is stored by the proxy too.
    assegai_e2e::wait_until(Duration::from_secs(10), "`assegai logs` to show the hash", || {
        env.run_ok(&["logs", name, "--json"]).contains(&hash).then_some(())
    });

    let status = agent.terminate(Duration::from_secs(5));
    assert!(status.success(), "a clean exit on SIGTERM, got {status}; output:\n{}", agent.output());
    // Logged on the way out; the proxy stores lines in batches.
    assegai_e2e::wait_until(Duration::from_secs(10), "the goodbye in the stored logs", || {
        agent.output().contains("received SIGTERM, shutting down").then_some(())
    });
}

/// The proxy's failure replies, and the SDK error each template must turn them into (the same
/// mapping as the original TypeScript SDK: by message first, then by status). The last is a
/// vendor's error passed through unchanged, its message nested in an object.
const ERROR_CASES: &[(u16, &str, &str)] = &[
    (401, r#"{"error":"Invalid agent token"}"#, "AuthenticationError"),
    (403, r#"{"error":"Chain eip155:1 not allowed"}"#, "ForbiddenError"),
    (403, r#"{"error":"Transaction rejected by user"}"#, "TransactionRejectedError"),
    (500, r#"{"error":"Transaction approval timeout"}"#, "TransactionTimeoutError"),
    (403, r#"{"error":"Token transfer exceeds allowance"}"#, "InsufficientAllowanceError"),
    (429, r#"{"error":"Rate limit exceeded"}"#, "RateLimitError"),
    (400, r#"{"error":"RPC Error: execution reverted"}"#, "RpcError"),
    (400, r#"{"error":{"message":"model not found","type":"invalid_request_error"}}"#, "ApiError"),
];

#[test]
fn both_interpreted_sdks_map_the_proxys_errors_like_the_original() {
    let env = TestEnv::new();
    let work = tempfile::tempdir().unwrap();
    for template in ["node", "python"] {
        let out = new_in(&env, work.path(), &[&format!("{template}-errors"), "--template", template]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let cases: Vec<Value> = ERROR_CASES
        .iter()
        .map(|(status, body, _)| serde_json::json!([status, serde_json::from_str::<Value>(body).unwrap()]))
        .collect();
    let cases = Value::from(cases).to_string();
    let node = r#"
        const { errorFromResponse } = await import('./sdk.js');
        for (const [status, body] of JSON.parse(process.argv[1])) {
          const e = errorFromResponse(status, body);
          console.log(`${e.name}|${e.message}`);
        }"#;
    let python = r#"
import json, sys
from assegai_sdk import error_from_response
for status, body in json.loads(sys.argv[1]):
    e = error_from_response(status, body)
    print(f"{type(e).__name__}|{e}")
"#;
    for (dir, program, args) in [
        ("node-errors", PathBuf::from("node"), vec!["--input-type=module", "-e", node]),
        ("python-errors", python3(), vec!["-c", python]),
    ] {
        let out = Command::new(&program).args(&args).arg(&cases).current_dir(work.path().join(dir)).output().unwrap();
        assert!(out.status.success(), "{dir}: {}", String::from_utf8_lossy(&out.stderr));
        let lines: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect();
        assert_eq!(lines.len(), ERROR_CASES.len(), "{dir}: {lines:?}");
        for ((status, body, class), line) in ERROR_CASES.iter().zip(&lines) {
            let (name, message) = line.split_once('|').unwrap();
            assert_eq!(name, *class, "{dir}: {status} {body}");
            assert!(!message.is_empty() && !message.contains("[object Object]"), "{dir}: {line}");
        }
        assert!(lines.last().unwrap().ends_with("|model not found"), "{dir}: {lines:?}");
    }
}

/// The interpreter behind `python3`, as `assegai run` resolves it: a version manager's shim would
/// add variables of its own to the agent's environment.
fn python3() -> PathBuf {
    let out = Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output().expect("python3");
    assert!(out.status.success(), "python3 -c failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

#[test]
fn the_node_agent_runs_against_a_real_proxy_and_anvil() {
    interpreted_agent_runs("node", Path::new("node"), &["index.js"]);
}

#[test]
fn the_python_agent_runs_against_a_real_proxy_and_anvil() {
    interpreted_agent_runs("python", &python3(), &["-u", "main.py"]);
}

/// Scaffolds `template`, registers it and runs it as `program args` twice against a real proxy
/// and Anvil: one transfer approved, then one rejected, after which it carries on.
fn interpreted_agent_runs(template: &str, program: &Path, args: &[&str]) {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let work = tempfile::tempdir().unwrap();
    let name = format!("{template}-agent");
    let out = new_in(&env, work.path(), &[&name, "--template", template]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = work.path().join(&name);
    let (id, token) = register(&env, &dir, &name);

    let agent = AgentProcess::start(&env, program, args, &dir, &proxy, &id, &token);
    approve_one_transfer(&env, &name, agent, &token);

    // A rejection is logged, and the agent carries on.
    let mut agent = AgentProcess::start(&env, program, args, &dir, &proxy, &id, &token);
    let tx_id = pending_request(&env, &name);
    env.run_ok(&["reject", &tx_id]);
    let why = agent.wait_for("transfer rejected", Duration::from_secs(30));
    assert!(why.contains("Transaction rejected by user") && why.contains("carrying on"), "{why}");
    let before = agent.output().matches("heartbeat: up").count();
    assegai_e2e::wait_until(Duration::from_secs(10), "a heartbeat after the rejection", || {
        (agent.output().matches("heartbeat: up").count() > before).then_some(())
    });
    let status = agent.terminate(Duration::from_secs(5));
    assert!(status.success(), "{status}; output:\n{}", agent.output());
}

/// Builds the scaffolded Rust agent offline, into a target directory beside the workspace's own
/// (`target/scaffold/`), so that only the first run compiles the SDK's dependencies.
#[test]
fn the_rust_agent_builds_offline_and_runs_against_a_real_proxy_and_anvil() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let work = tempfile::tempdir().unwrap();
    let name = "scaffolded-rust-agent";
    let out = new_in(&env, work.path(), &[name]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = work.path().join(name);

    // The test executable lives in <target>/<profile>/deps/.
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).expect("<target>/<profile>/deps/<exe>").join("scaffold");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let started = Instant::now();
    let build = Command::new(cargo)
        // Release, as `assegai run` builds: the run tests then reuse these artifacts.
        .args(["build", "--offline", "--release", "--quiet"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target)
        .stdin(Stdio::null())
        .output()
        .expect("running cargo build");
    eprintln!("cargo build --offline of the scaffolded Rust agent took {:.1?}", started.elapsed());
    assert!(
        build.status.success(),
        "cargo build --offline failed:\n{}{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );
    let stderr = String::from_utf8_lossy(&build.stderr);
    assert!(
        !stderr.contains(&format!("warning: `{name}`")) && !stderr.contains("unused manifest key"),
        "the template builds without warnings:\n{stderr}"
    );

    let (id, token) = register(&env, &dir, name);
    let binary = target.join("release").join(name);
    let agent = AgentProcess::start(&env, &binary, &[], &dir, &proxy, &id, &token);
    approve_one_transfer(&env, name, agent, &token);
}
