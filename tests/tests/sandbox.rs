//! A hostile agent under `assegai run` (the real binary, the real kernel's Landlock, a real Anvil):
//! every step of the attack SPEC §8 describes fails — the admin socket (with and without a token,
//! by relative and absolute path), the database, keys.enc, config.toml, the admin token, another
//! agent's workspace, the environment and memory of every ancestor and of the proxy, its own
//! manifest — while it can still write its workspace and TMPDIR and reach the proxy. Also: the
//! admin API refuses a request without the token, nothing of an agent outlives its run, the build
//! is confined, and a kernel without Landlock (simulated) is refused unless `--no-sandbox`.

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use assegai_e2e::{Running, TEST_PASSPHRASE, TestEnv, contains_bytes, wait_until};
use serde_json::{Value, json};

const RECIPIENT: &str = "0x70997970c51812dc3a010c7d01b75e9d17dc79c8";
const ANVIL_ACCOUNT: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

/// Every ancestor of this test process (the harness, cargo, the shell…), from /proc.
fn my_ancestors() -> Vec<u32> {
    let mut out = vec![std::process::id()];
    let mut at = std::process::id();
    while let Some(ppid) = std::fs::read_to_string(format!("/proc/{at}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1).map(str::to_owned)))
        .and_then(|p| p.parse::<u32>().ok())
    {
        if ppid <= 1 {
            break;
        }
        out.push(ppid);
        at = ppid;
    }
    out
}

fn run_cmd(env: &TestEnv, dir: &Path, extra: &[&str]) -> Command {
    let mut args = vec!["run", dir.to_str().unwrap(), "--no-prompt"];
    args.extend(extra);
    env.cmd(&args)
}

/// A `/bin/sh` agent in a fresh directory under the home.
fn shell_agent(env: &TestEnv, name: &str, script: &str) -> PathBuf {
    let dir = env.home().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("agent.sh"), script).unwrap();
    let manifest = json!({
        "name": name, "runtime": "command", "command": ["/bin/sh", "agent.sh"],
        "permissions": {"chains": ["eip155:31337"]},
    });
    std::fs::write(dir.join("assegai.json"), manifest.to_string()).unwrap();
    dir
}

fn nonce(env: &TestEnv) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(env.anvil().rpc("eth_getTransactionCount", json!([ANVIL_ACCOUNT, "latest"])))
}

/// One raw request on the admin socket; returns the status code and the body.
fn admin_request(socket: &Path, route: &str, token: Option<&str>) -> (u16, String) {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let header = token.map(|t| format!("x-assegai-admin-token: {t}\r\n")).unwrap_or_default();
    write!(s, "GET {route} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{header}\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let code = reply.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, reply.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned())
}

#[test]
fn a_hostile_agent_gets_nowhere_and_still_works() {
    let env = TestEnv::with_anvil();
    // A key file, so there is one to steal; a proxy of its own (its pid is a target too).
    let out = assegai_e2e::output_with_stdin(env.cmd(&["keys", "set", "openai", "--stdin"]), b"sk-test-key-0123456789");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let proxy = env.start_proxy();
    let other = env.home().join("workspaces").join("ag_0000000000000000");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("secret"), "another agent's notes").unwrap();

    let dir = env.home().join("hostile");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(assegai_e2e::workspace_root().join("tests/fixtures/hostile/main.py"), dir.join("main.py")).unwrap();
    let manifest = json!({
        "name": "hostile", "runtime": "python",
        "permissions": {"chains": ["eip155:31337"]},
        "spending_limits": {"per_transaction": "0.001", "daily": "0.001"},
    });
    std::fs::write(dir.join("assegai.json"), manifest.to_string()).unwrap();
    let mut pids = my_ancestors();
    pids.push(proxy.pid());
    let targets = json!({
        "home": env.home(), "pids": pids, "to": RECIPIENT,
        "other_workspace": other, "other_workspace_file": other.join("secret"),
        "user_home": std::env::var("HOME").unwrap_or_else(|_| "/root".into()),
    });
    std::fs::write(dir.join("targets.json"), targets.to_string()).unwrap();
    let manifest_before = std::fs::read(dir.join("assegai.json")).unwrap();
    let nonce_before = nonce(&env);

    let mut run = Running::spawn(run_cmd(&env, &dir, &[]));
    run.wait_for("requested", Duration::from_secs(60));
    let pending = wait_until(Duration::from_secs(30), "the agent's request to be pending", || {
        assert!(!run.stdout().contains("transaction: "), "the request ended early:\n{}", run.stdout());
        let list: Value = serde_json::from_str(&env.run_ok(&["approve", "--list", "--json"])).ok()?;
        list.as_array()?.first().and_then(|r| r["id"].as_str()).map(str::to_owned)
    });
    let id = env.run_ok(&["agents", "list", "--json"]);
    let id: Value = serde_json::from_str(&id).unwrap();
    let id = id[0]["id"].as_str().unwrap().to_owned();
    std::fs::write(env.home().join("workspaces").join(&id).join("pending_id"), &pending).unwrap();
    run.wait_for("admin attempts done", Duration::from_secs(30));

    // Its self-approval got nowhere: still pending, nothing signed.
    let list: Value = serde_json::from_str(&env.run_ok(&["approve", "--list", "--json"])).unwrap();
    assert_eq!(list[0]["id"], pending.as_str(), "the request is still pending: {list}");
    assert_eq!(nonce(&env), nonce_before, "nothing was signed");
    env.run_ok(&["reject", &pending]);
    run.wait_for("done", Duration::from_secs(60));
    let status = run.wait_exit(Duration::from_secs(15)).expect("run ends with the agent");

    let out = run.stdout();
    let err = run.stderr();
    assert!(status.success(), "{out}\n{err}");
    let leaks: Vec<&str> = out.lines().filter(|l| l.contains("LEAK")).collect();
    assert!(leaks.is_empty(), "the agent got through:\n{}\n\nwhole output:\n{out}", leaks.join("\n"));
    // Every attempt ran and was refused (a missing line would be a silent pass).
    let denied = out.lines().filter(|l| l.contains("│ denied ")).count();
    // Admin 6, files 10, other paths 8, 4 per process (the run's own pid besides these), manifest 1.
    let attempts = 6 + 10 + 8 + 4 * (pids.len() + 1) + 1;
    assert!(denied >= attempts, "{denied} refusals of {attempts} attempts:\n{out}");
    assert!(out.contains("denied admin socket (relative) approve without a token"), "{out}");
    assert!(out.contains("admin request refused"), "the admin API answered 401 with why: {out}");
    for can in ["wrote workspace", "wrote tmp", "proxy answered 200", "transaction: (403"] {
        assert!(out.contains(can), "{can}: {out}");
    }
    assert!(out.contains("Transaction rejected by user"), "{out}");
    let env_line = out.lines().find(|l| l.contains("environment: ")).unwrap();
    let names: Vec<&str> =
        env_line.split("environment: ").nth(1).unwrap().split_whitespace().filter(|n| *n != "TERM").collect();
    assert_eq!(
        names.join(" "),
        "ASSEGAI_AGENT_ID ASSEGAI_AGENT_TOKEN ASSEGAI_API_PROXY ASSEGAI_WORKSPACE HOME LANG PATH TMPDIR",
        "exactly the documented environment (TERM only when the user has one)"
    );
    for bytes in [out.as_bytes(), err.as_bytes(), &proxy.output()] {
        assert!(!contains_bytes(bytes, TEST_PASSPHRASE.as_bytes()), "the passphrase leaked");
        assert!(!contains_bytes(bytes, b"sk-test-key-0123456789"), "the API key leaked");
    }
    assert_eq!(std::fs::read(dir.join("assegai.json")).unwrap(), manifest_before, "its manifest is untouched");
    assert!(!env.home().join("planted").exists());
    // The proxy said so on its console, and the audit trail has it.
    let console = String::from_utf8_lossy(&proxy.output()).into_owned();
    assert!(console.contains("refused an admin request"), "{console}");
    let db = rusqlite::Connection::open(env.home().join("assegai.db")).unwrap();
    let refused: i64 =
        db.query_row("SELECT COUNT(*) FROM audit_events WHERE kind = 'admin.refused'", [], |r| r.get(0)).unwrap();
    assert!(refused >= 4, "{refused} refusals audited");
}

#[test]
fn the_admin_api_needs_its_token() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let socket = env.home().join("admin.sock");
    let token_file = env.home().join("admin.token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);

    let (code, body) = admin_request(&socket, "/status", None);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("no valid admin token"), "{body}");
    let (code, _) = admin_request(&socket, "/status", Some("asgadm_wrong"));
    assert_eq!(code, 401);
    let (code, body) = admin_request(&socket, "/status", Some(token.trim()));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(&format!("\"pid\":{}", proxy.pid())), "{body}");
    // The CLI carries it.
    assert!(env.run_ok(&["doctor", "--json"]).contains("running (pid"));

    // A new proxy, a new token; the old one is worthless.
    assert!(proxy.terminate());
    assert!(!token_file.exists(), "the token goes with the proxy");
    let _again = env.start_proxy();
    let fresh = std::fs::read_to_string(&token_file).unwrap();
    assert_ne!(fresh, token);
    assert_eq!(admin_request(&socket, "/status", Some(token.trim())).0, 401);
}

#[test]
fn nothing_of_an_agent_outlives_its_run() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    // A daemon in a session of its own, twice forked, then the agent exits at once.
    let script = r#"
echo "token=$ASSEGAI_AGENT_TOKEN id=$ASSEGAI_AGENT_ID"
sh -c 'setsid sh -c "echo \$\$ > \"$HOME/daemon.pid\"; exec sleep 300" > /dev/null 2>&1 < /dev/null &'
while [ ! -s "$HOME/daemon.pid" ]; do sleep 0.02; done
echo "daemon=$(cat "$HOME/daemon.pid")"
"#;
    let dir = shell_agent(&env, "forker", script);
    let out = run_cmd(&env, &dir, &[]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let field = |name: &str| -> String {
        let line = stdout.lines().find(|l| l.contains(&format!("{name}="))).unwrap_or_else(|| panic!("{stdout}"));
        line.split(&format!("{name}=")).nth(1).unwrap().split_whitespace().next().unwrap().to_owned()
    };
    let daemon: u32 = field("daemon").parse().unwrap();
    let alive = |p: u32| {
        std::fs::read_to_string(format!("/proc/{p}/stat"))
            .is_ok_and(|s| !s.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z')))
    };
    // `run` has returned: it waited for the daemon's end itself.
    assert!(!alive(daemon), "the daemon {daemon} outlived the run");

    let (token, id) = (field("token"), field("id"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sdk = env.sdk(&proxy, &id, &token);
    let err = rt.block_on(sdk.wallet_address("eip155:31337".parse().unwrap())).expect_err("the token is revoked");
    assert!(err.to_string().contains("Unauthorized"), "{err}");
}

#[test]
fn the_build_is_confined_too() {
    let env = TestEnv::with_anvil();
    let _proxy = env.start_proxy();
    let dir = env.home().join("builder");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"builder\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
    let token = env.home().join("admin.token");
    let build_rs = format!(
        r#"fn main() {{
    for path in [{token:?}, {db:?}, {keys:?}] {{
        match std::fs::read(path) {{
            Ok(bytes) => println!("cargo:warning=READ {{path}}: {{}}", String::from_utf8_lossy(&bytes)),
            Err(e) => panic!("build.rs could not read {{path}}: {{e}}"),
        }}
    }}
}}
"#,
        db = env.home().join("assegai.db"),
        keys = env.home().join("config.toml"),
    );
    std::fs::write(dir.join("build.rs"), build_rs).unwrap();
    std::fs::write(
        dir.join("assegai.json"),
        json!({"name": "builder", "runtime": "rust", "permissions": {"chains": ["eip155:31337"]}}).to_string(),
    )
    .unwrap();
    let out = run_cmd(&env, &dir, &[]).env("OPENAI_API_KEY", "sk-user-shell-secret-0123456789").output().unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("build.rs could not read") && all.contains("Permission denied"), "{all}");
    assert!(all.contains("The build ran in the sandbox"), "the failure says why: {all}");
    let secret = std::fs::read_to_string(&token).unwrap();
    assert!(!all.contains(secret.trim()), "the admin token reached the build log");
    assert!(!all.contains("READ "), "{all}");
    let agents: Value = serde_json::from_str(&env.run_ok(&["agents", "list", "--json"])).unwrap();
    assert_eq!(agents, json!([]), "a failed build registers nothing");
}

#[test]
fn without_landlock_run_refuses_unless_told_to_run_unconfined() {
    let env = TestEnv::with_anvil();
    let dir = shell_agent(
        &env,
        "plain",
        "echo \"home=$HOME\"\ncat \"$HOME/../../config.toml\" > /dev/null && echo 'read the home'\n",
    );

    let out = run_cmd(&env, &dir, &[]).env("ASSEGAI_TEST_FORCE_NO_LANDLOCK", "1").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot confine the agent"), "{stderr}");
    assert!(stderr.contains("--docker") && stderr.contains("--no-sandbox"), "the hint names both ways: {stderr}");
    let agents: Value = serde_json::from_str(&env.run_ok(&["agents", "list", "--json"])).unwrap();
    assert_eq!(agents, json!([]), "nothing registered");
    let doctor = env.cmd(&["doctor", "--json"]).env("ASSEGAI_TEST_FORCE_NO_LANDLOCK", "1").output().unwrap();
    let doctor: Value = serde_json::from_slice(&doctor.stdout).unwrap();
    let sandbox =
        doctor["checks"].as_array().unwrap().iter().find(|c| c["check"] == "sandbox").expect("a sandbox check");
    assert_eq!(sandbox["level"], "fail", "{sandbox}");

    let out = run_cmd(&env, &dir, &["--no-sandbox"]).env("ASSEGAI_TEST_FORCE_NO_LANDLOCK", "1").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("unconfined") && stderr.contains("keys.enc"), "says what it gives up: {stderr}");
    assert!(stdout.contains("read the home"), "unconfined indeed: {stdout}");

    // With Landlock (this kernel has it), doctor says so.
    let doctor: Value = serde_json::from_str(&env.run_ok(&["doctor", "--json"])).unwrap();
    let sandbox = doctor["checks"].as_array().unwrap().iter().find(|c| c["check"] == "sandbox").unwrap();
    assert_eq!(sandbox["level"], "ok", "{sandbox}");
}

#[test]
fn an_agent_has_no_terminal_to_draw_on() {
    // `run` draws approval cards on its terminal; an agent that could open `/dev/tty` could draw
    // a fake one over it, or read the person's keys. It has no controlling terminal at all, even
    // unconfined.
    let env = TestEnv::with_anvil();
    let _proxy = env.start_proxy();
    let script = r#"
if printf 'TTY%sOWNED\n' '-' > /dev/tty 2>/dev/null; then echo "tty=open"; else echo "tty=refused"; fi
if [ -t 0 ] || [ -t 1 ] || [ -t 2 ]; then echo "stdio=terminal"; else echo "stdio=not-terminal"; fi
"#;
    let dir = shell_agent(&env, "painter", script);
    for extra in [&[][..], &["--no-sandbox"][..]] {
        let mut cmd = run_cmd(&env, &dir, extra);
        cmd.env("NO_COLOR", "1").env("TERM", "xterm");
        let mut session = rexpect::session::spawn_command(cmd, Some(60_000)).expect("assegai run in a pty");
        let seen = session.exp_string("exited with status").expect("the agent's run to end");
        let seen: String = seen.chars().collect();
        assert!(seen.contains("tty=refused"), "{extra:?}: {seen}");
        assert!(seen.contains("stdio=not-terminal"), "{extra:?}: {seen}");
        assert!(!seen.contains("TTY-OWNED") && !seen.contains("tty=open"), "{extra:?}: {seen}");
    }
}
