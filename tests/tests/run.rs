//! `assegai run` with the real binary: the agent sees only its own variables (a secret in the
//! user's shell never reaches it), its output comes prefixed with its name, Ctrl-C stops it within
//! the grace period (SIGKILL for one that ignores SIGTERM), the memory limit applies, the same
//! directory keeps its agent id with a fresh token each run, and broken manifests or builds leave
//! nothing registered. Also `run --docker --dry-run` and `doctor`.

use std::{path::Path, process::Command, time::Duration};

use assegai_e2e::{Running, TestEnv};
use serde_json::{Value, json};

const USER_SECRET: &str = "sk-user-shell-secret-0123456789";
const ALLOWED: [&str; 9] = [
    "ASSEGAI_AGENT_ID",
    "ASSEGAI_AGENT_TOKEN",
    "ASSEGAI_API_PROXY",
    "ASSEGAI_WORKSPACE",
    "HOME",
    "LANG",
    "PATH",
    "TERM",
    "TMPDIR",
];

/// A `command` agent: `script` run by `/bin/sh` in a fresh directory.
fn shell_agent(env: &TestEnv, dir_name: &str, name: &str, script: &str, extra: Value) -> std::path::PathBuf {
    let dir = env.home().join(dir_name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("agent.sh"), script).unwrap();
    let mut manifest = json!({
        "name": name, "runtime": "command", "command": ["/bin/sh", "agent.sh"],
        "permissions": {"chains": ["eip155:31337"]},
    });
    if let (Some(m), Some(e)) = (manifest.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    std::fs::write(dir.join("assegai.json"), manifest.to_string()).unwrap();
    dir
}

fn run_cmd(env: &TestEnv, dir: &Path, extra: &[&str]) -> Command {
    let mut args = vec!["run", dir.to_str().unwrap(), "--no-prompt"];
    args.extend(extra);
    let mut cmd = env.cmd(&args);
    cmd.env("OPENAI_API_KEY", USER_SECRET).env("AWS_SECRET_ACCESS_KEY", USER_SECRET).env("LANG", "C.UTF-8");
    cmd
}

fn agents(env: &TestEnv) -> Vec<Value> {
    serde_json::from_str::<Value>(&env.run_ok(&["agents", "list", "--json"])).unwrap().as_array().unwrap().clone()
}

#[test]
fn the_agent_gets_only_its_own_environment_and_stops_on_ctrl_c() {
    let env = TestEnv::with_anvil();
    // What the agent was started with (`/proc/$$/environ`: `sh` exports a PWD of its own to
    // what it runs, which `env` would show).
    let script = r#"
echo "vars: $(tr '\0' '\n' < /proc/$$/environ | cut -d= -f1 | sort | tr '\n' ' ')"
echo "home=$HOME workspace=$ASSEGAI_WORKSPACE"
echo "to stderr" >&2
trap 'echo "got TERM"; exit 0' TERM
echo ready
while :; do sleep 0.05; done
"#;
    let dir = shell_agent(&env, "envy", "envy", script, json!({}));
    let mut run = Running::spawn(run_cmd(&env, &dir, &[]));
    run.wait_for("ready", Duration::from_secs(30));

    let out = run.stdout();
    let vars_line = out.lines().find(|l| l.contains("vars: ")).expect("the vars line");
    assert!(vars_line.starts_with("envy │ "), "output is prefixed with the agent's name: {vars_line}");
    let names: Vec<&str> = vars_line.split("vars: ").nth(1).unwrap().split_whitespace().collect();
    let extra: Vec<&&str> = names.iter().filter(|n| !ALLOWED.contains(n)).collect();
    assert!(extra.is_empty(), "the agent saw more than its own variables: {extra:?} in {names:?}");
    for needed in ALLOWED.iter().filter(|n| **n != "TERM") {
        assert!(names.contains(needed), "{needed} missing from {names:?}");
    }
    let registered = agents(&env);
    assert_eq!(registered.len(), 1);
    let id = registered[0]["id"].as_str().unwrap();
    let workspace = env.home().join("workspaces").join(id);
    assert!(out.contains(&format!("home={} workspace={}", workspace.display(), workspace.display())), "{out}");
    assert!(run.stderr().contains("envy │ to stderr"), "{}", run.stderr());

    run.signal("INT");
    let status = run.wait_exit(Duration::from_secs(5)).expect("stopped within the 5 s grace period");
    assert!(status.success(), "stopped by the user is a success: {status}\n{}", run.stderr());
    assert!(run.stdout().contains("envy │ got TERM"), "the agent got SIGTERM: {}", run.stdout());
    let all = format!("{}{}", run.stdout(), run.stderr());
    assert!(!all.contains(USER_SECRET), "the user's secret reached the output");
}

#[test]
fn an_agent_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let env = TestEnv::with_anvil();
    let script = "trap '' TERM\necho ready\nwhile :; do sleep 0.05; done\n";
    let dir = shell_agent(&env, "stubborn", "stubborn", script, json!({}));
    let mut run = Running::spawn(run_cmd(&env, &dir, &["--grace", "1"]));
    run.wait_for("ready", Duration::from_secs(30));
    let started = std::time::Instant::now();
    run.signal("INT");
    let status = run.wait_exit(Duration::from_secs(6)).expect("killed after the grace period");
    assert!(started.elapsed() >= Duration::from_millis(900), "SIGKILL came before the grace period");
    assert!(status.success(), "{}", run.stderr());
    assert!(run.stderr().contains("SIGKILL"), "{}", run.stderr());
}

#[test]
fn what_the_agent_started_is_stopped_with_it() {
    let env = TestEnv::with_anvil();
    // A helper it starts and forgets (its output sent elsewhere, so only the group ties it to the
    // agent), and one that ignores SIGTERM.
    let script = r#"
sleep 300 > /dev/null 2>&1 &
echo "helper=$!"
sh -c 'trap "" TERM; while :; do sleep 0.05; done' > /dev/null 2>&1 &
echo "stubborn=$!"
trap 'exit 0' TERM
echo ready
while :; do sleep 0.05; done
"#;
    let dir = shell_agent(&env, "parent", "parent", script, json!({}));
    let mut run = Running::spawn(run_cmd(&env, &dir, &["--grace", "1"]));
    run.wait_for("ready", Duration::from_secs(30));
    let pid = |name: &str| -> i32 {
        let out = run.stdout();
        let line = out.lines().find(|l| l.contains(&format!("{name}="))).unwrap_or_else(|| panic!("{out}"));
        line.split('=').nth(1).unwrap().trim().parse().unwrap()
    };
    let (helper, stubborn) = (pid("helper"), pid("stubborn"));
    let alive = |p: i32| {
        std::path::Path::new(&format!("/proc/{p}")).exists()
            && !std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default().contains(") Z ")
    };
    assert!(alive(helper) && alive(stubborn), "both helpers run");

    run.signal("INT");
    let status = run.wait_exit(Duration::from_secs(10)).expect("run stops");
    assert!(status.success(), "{}", run.stderr());
    assegai_e2e::wait_until(Duration::from_secs(5), "the agent's helpers to be gone", || {
        (!alive(helper) && !alive(stubborn)).then_some(())
    });
}

#[test]
fn the_same_directory_keeps_its_id_with_a_fresh_token_and_exit_codes_are_reported() {
    let env = TestEnv::with_anvil();
    let script =
        "echo \"id=$ASSEGAI_AGENT_ID token=$(printf %s \"$ASSEGAI_AGENT_TOKEN\" | sha256sum | cut -c1-16)\"\nexit 3\n";
    let dir = shell_agent(&env, "twice", "twice", script, json!({"resources": {"memory": "64MB"}}));
    let mut seen = Vec::new();
    for _ in 0..2 {
        let out = run_cmd(&env, &dir, &[]).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "a failing agent fails the command: {stderr}");
        assert!(stderr.contains("exited with status 3"), "{stderr}");
        let line = stdout.lines().find(|l| l.contains("id=")).expect("the id line").to_owned();
        seen.push(line);
    }
    let id = |l: &str| l.split("id=").nth(1).unwrap().split(' ').next().unwrap().to_owned();
    let token = |l: &str| l.split("token=").nth(1).unwrap().to_owned();
    assert_eq!(id(&seen[0]), id(&seen[1]), "same directory, same agent");
    assert_ne!(token(&seen[0]), token(&seen[1]), "a fresh token each run");
    assert_eq!(agents(&env).len(), 1);
}

#[test]
fn the_memory_limit_applies_to_the_agent() {
    let env = TestEnv::with_anvil();
    let dir =
        shell_agent(&env, "small", "small", "echo \"limit=$(ulimit -d)\"\n", json!({"resources": {"memory": "64MB"}}));
    let out = run_cmd(&env, &dir, &[]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("limit=65536"), "64 MB as the data limit, in KiB: {stdout}");
}

#[test]
fn broken_manifests_and_builds_register_nothing() {
    let env = TestEnv::with_anvil();
    let bad = env.home().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let cases = [
        (r#"{"name": "x", "runtime": "cobol"}"#, "runtime"),
        (r#"{"name": "x", "permissions": {"chains": ["ethereum"]}}"#, "permissions.chains"),
        (r#"{"name": "x", "resources": {"memory": "lots"}}"#, "resources.memory"),
        (r#"{"name": "x", "runtime": "command"}"#, "command"),
        ("{ not json", "assegai.json"),
    ];
    for (manifest, expected) in cases {
        std::fs::write(bad.join("assegai.json"), manifest).unwrap();
        let out = run_cmd(&env, &bad, &[]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{manifest} was accepted");
        assert!(stderr.contains(expected), "{manifest}: {stderr}");
    }
    let out = run_cmd(&env, &env.home().join("missing"), &[]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("assegai new"), "a missing directory points at `new`");

    // A Rust agent that does not compile: the compiler's message, and nothing registered.
    let broken = env.home().join("broken");
    std::fs::create_dir_all(broken.join("src")).unwrap();
    std::fs::write(
        broken.join("Cargo.toml"),
        "[package]\nname = \"broken\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(broken.join("src/main.rs"), "fn main() { let x: u32 = \"text\"; }\n").unwrap();
    std::fs::write(broken.join("assegai.json"), r#"{"name": "broken", "runtime": "rust"}"#).unwrap();
    let out = run_cmd(&env, &broken, &[])
        .env("CARGO_TARGET_DIR", broken.join("target"))
        .env("PATH", std::env::var("PATH").unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("the build failed") && stderr.contains("mismatched types"), "{stderr}");
    assert!(agents(&env).is_empty(), "nothing registered half-way");
}

#[test]
fn a_silent_local_chain_is_reported_with_a_hint() {
    let env = TestEnv::new();
    env.write_config("local_rpc_url = \"http://127.0.0.1:9\"\n");
    let dir = shell_agent(&env, "lonely", "lonely", "echo hello\n", json!({}));
    let out = run_cmd(&env, &dir, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not answer") && stderr.contains("anvil"), "{stderr}");
}

#[test]
fn docker_dry_run_prints_hardened_commands_and_changes_nothing() {
    let env = TestEnv::new();
    let dir = env.home().join("boxed");
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = json!({"name": "boxed", "runtime": "node", "resources": {"memory": "256MB", "cpu": "0.5"}});
    std::fs::write(dir.join("assegai.json"), manifest.to_string()).unwrap();
    std::fs::write(dir.join("index.js"), "console.log('hi')\n").unwrap();
    let out = run_cmd(&env, &dir, &["--docker", "--dry-run"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "build then run: {stdout}");
    assert!(lines[0].starts_with("docker build "), "{stdout}");
    let run = lines[1];
    for flag in [
        "docker run ",
        "--read-only",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        "--memory=256m",
        "--cpus=0.5",
        "--add-host=host.docker.internal:host-gateway",
        "--env=ASSEGAI_API_PROXY=http://host.docker.internal:8765",
        "--env=ASSEGAI_AGENT_TOKEN ",
        ":/workspace:rw",
    ] {
        assert!(run.contains(flag), "{flag} missing: {run}");
    }
    assert!(!stdout.contains("asg_"), "no token on a command line");
    // Only the workspace is mounted: never the home, its socket or its admin token.
    let volumes: Vec<&str> =
        run.split_whitespace().filter(|a| a.starts_with("--volume") || a.starts_with("-v")).collect();
    assert_eq!(volumes.len(), 1, "{run}");
    let workspace = env.home().join("workspaces");
    assert!(volumes[0].starts_with(&format!("--volume={}/", workspace.display())), "{run}");
    for private in ["admin.sock", "admin.token", "assegai.db", "keys.enc", "config.toml"] {
        assert!(!stdout.contains(private), "{private} reaches the container: {stdout}");
    }
    assert!(!run.contains(&format!("{}:", env.home().display())), "the home is not mounted: {run}");
    assert!(stderr.contains("FROM node:20-slim"), "the generated Dockerfile is shown: {stderr}");
    assert!(agents(&env).is_empty(), "a dry run registers nothing");
}

#[test]
fn doctor_names_each_part_and_its_fix() {
    let env = TestEnv::with_anvil();
    let report: Value = serde_json::from_str(&env.run_ok(&["doctor", "--json"])).unwrap();
    let by_name = |n: &str| report["checks"].as_array().unwrap().iter().find(|c| c["check"] == n).cloned().unwrap();
    assert_eq!(by_name("key store")["level"], "ok", "{report}");
    assert!(by_name("key store")["detail"].as_str().unwrap().contains("keys.enc"), "{report}");
    assert_eq!(by_name("proxy")["level"], "warn");
    assert!(by_name("proxy")["fix"].as_str().unwrap().contains("assegai proxy"));
    assert_eq!(by_name("local RPC")["level"], "ok", "{report}");
    assert!(by_name("local RPC")["detail"].as_str().unwrap().contains("31337"));
    assert!(by_name("wallet")["fix"].as_str().unwrap().contains("wallet import"));

    let _proxy = env.start_proxy();
    let report: Value = serde_json::from_str(&env.run_ok(&["doctor", "--json"])).unwrap();
    let proxy = report["checks"].as_array().unwrap().iter().find(|c| c["check"] == "proxy").cloned().unwrap();
    assert_eq!(proxy["level"], "ok", "{report}");

    let silent = TestEnv::new();
    silent.write_config("local_rpc_url = \"http://127.0.0.1:9\"\n");
    let out = silent.run(&["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("local RPC") && text.contains("anvil"), "{text}");

    // Fee caps and the node that signs, with a provider's key in the URL kept out of the report.
    let mainnet = TestEnv::new();
    mainnet.write_config(
        "[chains.\"eip155:1\"]\nrpc = \"https://eth.example/v3/sekrit-api-key\"\nmax_fee_per_gas_gwei = \"80\"\n",
    );
    let out = mainnet.run(&["doctor", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_name = |n: &str| report["checks"].as_array().unwrap().iter().find(|c| c["check"] == n).cloned().unwrap();
    let signing = by_name("signing RPCs")["detail"].as_str().unwrap().to_owned();
    assert!(signing.contains("eip155:1 through https://eth.example (config.toml)"), "{report}");
    assert!(by_name("fee caps")["detail"].as_str().unwrap().contains("eip155:1: 80 gwei per gas"), "{report}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("sekrit"), "{report}");
    assert!(by_name("signing RPCs")["fix"].as_str().is_none(), "{report}");
    let report: Value = serde_json::from_str(&env.run_ok(&["doctor", "--json"])).unwrap();
    let fix =
        report["checks"].as_array().unwrap().iter().find(|c| c["check"] == "signing RPCs").unwrap()["fix"].clone();
    assert!(fix.as_str().is_some_and(|f| f.contains("[chains.")), "{report}");
}

#[test]
fn a_fresh_home_needs_no_passphrase_to_look_around() {
    let env = TestEnv::with_anvil();
    env.write_config("[keys]\nbackend = \"file\"\n");
    let bare = |args: &[&str]| {
        let mut cmd = env.cmd(args);
        cmd.env_remove("ASSEGAI_PASSPHRASE");
        cmd.output().unwrap()
    };
    // Nothing stored yet: no key file to unlock, so nothing to ask for.
    let out = bare(&["doctor", "--json"]);
    assert!(out.status.success(), "a fresh home is not a failure: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_name = |n: &str| report["checks"].as_array().unwrap().iter().find(|c| c["check"] == n).cloned().unwrap();
    assert_eq!(by_name("key store")["level"], "warn", "{report}");
    assert!(by_name("key store")["detail"].as_str().unwrap().contains("not created yet"), "{report}");
    assert!(by_name("key store")["fix"].as_str().unwrap().contains("assegai keys set"), "{report}");
    assert!(by_name("wallet")["detail"].as_str().unwrap().contains("test account"), "{report}");
    let out = bare(&["wallet", "address"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
    assert!(bare(&["wallet", "use-test-account"]).status.success());
    assert!(!env.home().join("keys.enc").exists(), "looking around created no key file");

    // Once a key file exists, it is a failure to be unable to open it, said with the way out.
    assegai_e2e::fake_ai::set_key(&env, "openai", "sk-proj-FreshHomeKey0123456789");
    let out = bare(&["doctor"]);
    assert!(!out.status.success());
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("✗ key store") && report.contains("ASSEGAI_PASSPHRASE"), "{report}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("WARN"), "no engine log lines in a command's output");
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let env = TestEnv::new();
    for args in [&["doctor", "--json"][..], &["agents", "list", "--json"], &["wallet", "address"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = env.cmd(args).stdout(writer).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(out.status.code().is_some(), "{args:?} was not killed by a signal");
    }
}

/// `<target>/scaffold`, the Cargo target directory scaffolded Rust agents share across tests.
fn scaffold_target() -> std::path::PathBuf {
    // The test executable lives in <target>/<profile>/deps/.
    std::env::current_exe().unwrap().ancestors().nth(3).expect("<target>/<profile>/deps/<exe>").join("scaffold")
}

/// `assegai new NAME --template T`, then `assegai run` it with no proxy running (it starts one
/// in-process) and `--no-prompt`; a person approves from another process; the agent logs its
/// wallet, balance and hash, saw only its own variables, and stops cleanly on Ctrl-C.
fn scaffold_and_run(template: &str) {
    let env = TestEnv::with_anvil();
    let work = tempfile::tempdir().unwrap();
    let name = format!("{template}-runner");
    let out = env.cmd(&["new", &name, "--template", template]).current_dir(work.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = work.path().join(&name);
    let mut cmd = run_cmd(&env, &dir, &[]);
    cmd.env("CARGO_TARGET_DIR", scaffold_target());
    let mut run = Running::spawn(cmd);
    let pending = run.wait_until(Duration::from_secs(600), "the agent's request to be pending", |_| {
        let list: Value = serde_json::from_str(&env.run_ok(&["approve", "--list", "--json"])).ok()?;
        list.as_array()?.first().and_then(|r| r["id"].as_str()).map(str::to_owned)
    });
    let hash = env.run_ok(&["approve", &pending, "--yes"]).trim().to_owned();
    run.wait_for(&format!("transfer sent: {hash}"), Duration::from_secs(30));
    let hint = format!("in another terminal with `assegai --home {} approve --agent ag_", env.home().display());
    assert!(run.stderr().contains(&hint), "where to approve: {}", run.stderr());
    let out = run.stdout();
    assert!(out.contains("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"), "the wallet address: {out}");
    assert!(out.contains("10000"), "the balance (Anvil's 10000 ETH, less gas): {out}");
    let env_line = out.lines().find(|l| l.contains("environment: ")).expect("the environment line");
    let names: Vec<&str> = env_line.split("environment: ").nth(1).unwrap().split(", ").map(str::trim).collect();
    let extra: Vec<&&str> = names.iter().filter(|n| !ALLOWED.contains(n)).collect();
    assert!(extra.is_empty(), "the agent saw {extra:?} beyond its own variables");
    run.signal("INT");
    let status = run.wait_exit(Duration::from_secs(10)).expect("stopped within the grace period");
    assert!(status.success(), "{}", run.stderr());
    assert!(run.stdout().contains("received SIGTERM, shutting down"), "{}", run.stdout());
    let all = format!("{}{}", run.stdout(), run.stderr());
    assert!(!all.contains(USER_SECRET), "the user's secret reached the agent's output");
}

#[test]
fn the_node_template_runs_under_assegai_run() {
    scaffold_and_run("node");
}

#[test]
fn the_python_template_runs_under_assegai_run() {
    scaffold_and_run("python");
}

#[test]
fn the_rust_template_builds_and_runs_under_assegai_run() {
    scaffold_and_run("rust");
}
