//! The agent registry through the CLI: registration, token rotation and removal seen by a running
//! proxy, no token at rest, bad manifests refused whole, and the proxy's own hygiene (socket
//! permissions, clean shutdown, neutralised agent text).

use std::{os::unix::fs::PermissionsExt, time::Duration};

use assegai_e2e::{TestEnv, contains_bytes, wait_until};
use assegai_sdk::{ChainId, Error};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_shown_once_stored_hashed_rotated_and_revoked() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let (id, token) = env.add_agent("rotor", None);
    assert!(id.starts_with("ag_"));
    assert!(token.len() >= 4 + 64, "256 bits of token, hex encoded");
    let first = env.sdk(&proxy, &id, &token);
    first.block_number(ChainId::ANVIL).await.unwrap();

    // Re-adding keeps the id and rotates the token; the running proxy stops accepting the old one.
    let (same_id, new_token) = env.add_agent("rotor", None);
    assert_eq!(same_id, id);
    assert_ne!(new_token, token);
    let err = first.block_number(ChainId::ANVIL).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    let second = env.sdk(&proxy, &id, &new_token);
    second.block_number(ChainId::ANVIL).await.unwrap();

    // Listing shows the agent but never a token.
    let list: Value = serde_json::from_str(&env.run_ok(&["agents", "list", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["name"], "rotor");
    let human = env.run_ok(&["agents", "list"]);
    assert!(human.contains("rotor") && human.contains(&id), "{human}");
    for t in [&token, &new_token] {
        assert!(!human.contains(t.as_str()) && !list.to_string().contains(t.as_str()));
    }

    // Removal needs confirmation when nobody is at a terminal.
    let out = env.run(&["agents", "remove", "rotor"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--yes"), "{stderr}");
    env.run_ok(&["agents", "remove", "rotor", "--yes"]);
    let err = second.block_number(ChainId::ANVIL).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    let out = env.run(&["agents", "remove", "rotor", "--yes"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("agents list"));

    // No token, old or new, is anywhere in the database files or in what the proxy printed.
    drop(proxy);
    let bytes = env.database_bytes();
    for t in [&token, &new_token] {
        assert!(!contains_bytes(&bytes, t.as_bytes()), "a token is stored in clear");
        assert!(!contains_bytes(&bytes, t.trim_start_matches("asg_").as_bytes()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_do_not_leak_into_the_proxy_output() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let (id, token) = env.add_agent("quiet", None);
    let sdk = env.sdk(&proxy, &id, &token);
    sdk.info("hello").await.unwrap();
    let _ = sdk.query_chain::<Value>(ChainId::ANVIL, "eth_sendTransaction", json!([])).await;
    let bad = env.sdk(&proxy, &id, "asg_not-the-token");
    let _ = bad.block_number(ChainId::ANVIL).await;
    wait_until(Duration::from_secs(10), "the log line on the console", || {
        contains_bytes(&proxy.output(), b"hello").then_some(())
    });
    assert!(!contains_bytes(&proxy.output(), token.as_bytes()));
}

#[tokio::test(flavor = "multi_thread")]
async fn each_manifest_mistake_gets_its_own_message_and_registers_nothing() {
    let env = TestEnv::new();
    let good = json!({
        "name": "Local Test Agent", "version": "1.0.0", "runtime": "rust", "entrypoint": "src/main.rs",
        "permissions": {"chains": ["eip155:31337"], "rpcs": {"eip155:31337": "http://localhost:8545"}, "apis": ["openai"], "contracts": []},
        "spending_limits": {"per_transaction": "1.0", "daily": "10.0"}
    });
    type Patch = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Patch, &[&str])> = vec![
        (Box::new(|m| m["permissions"]["chains"][0] = json!("ethereum")), &["`permissions.chains[0]`", "CAIP-2"]),
        (
            Box::new(|m| m["permissions"]["rpcs"]["eip155:1"] = json!("http://x")),
            &["permissions.rpcs.eip155:1", "not in `permissions.chains`"],
        ),
        (Box::new(|m| m["spending_limits"]["daily"] = json!("1e18")), &["`spending_limits.daily`", "plain decimal"]),
        (Box::new(|m| m["spending_limits"]["daily"] = json!(0.1)), &["`spending_limits.daily`", "strings"]),
        (
            Box::new(|m| m["spending_limits"]["per_transaction"] = json!("0.0000000000000000001")),
            &["`spending_limits.per_transaction`", "18 decimal places"],
        ),
        (Box::new(|m| m["runtime"] = json!("cobol")), &["`runtime`", "cobol"]),
        (Box::new(|m| m["permissions"]["apis"] = json!(["gemini"])), &["`permissions.apis[0]`", "gemini"]),
        (Box::new(|m| m["permissions"]["contracts"] = json!(["0x12"])), &["`permissions.contracts[0]`"]),
        (Box::new(|m| m["permisions"] = json!({})), &["unknown field `permisions`"]),
    ];
    for (i, (patch, expected)) in cases.iter().enumerate() {
        let mut m = good.clone();
        patch(&mut m);
        let path = env.home().join(format!("bad{i}.json"));
        std::fs::write(&path, m.to_string()).unwrap();
        let out = env.run(&["agents", "add", &format!("bad{i}"), "--manifest", path.to_str().unwrap()]);
        assert!(!out.status.success(), "case {i} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("bad{i}.json")), "case {i} does not name the file: {stderr}");
        for part in *expected {
            assert!(stderr.contains(part), "case {i}: expected {part:?} in {stderr}");
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(stderr.contains("hint:"), "case {i} gives no next step: {stderr}");
    }
    // Broken JSON and a missing file.
    let broken = env.home().join("broken.json");
    std::fs::write(&broken, "{\n  \"name\": \"x\",\n}").unwrap();
    let out = env.run(&["agents", "add", "broken", "--manifest", broken.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("line 3") && stderr.contains("invalid JSON"), "{stderr}");
    let out = env.run(&["agents", "add", "ghost", "--manifest", "/nonexistent/assegai.json"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("cannot read"));

    let list: Value = serde_json::from_str(&env.run_ok(&["agents", "list", "--json"])).unwrap();
    assert_eq!(list, json!([]), "nothing may be registered");

    // The good manifest, for contrast, registers.
    let path = env.home().join("good.json");
    std::fs::write(&path, good.to_string()).unwrap();
    env.run_ok(&["agents", "add", "good", "--manifest", path.to_str().unwrap()]);
    let list: Value = serde_json::from_str(&env.run_ok(&["agents", "list", "--json"])).unwrap();
    assert_eq!(list[0]["manifest"]["spending_limits"]["daily"], "10.0");
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_text_is_neutralised_before_a_person_sees_it() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let (id, token) = env.add_agent("prankster", None);
    let sdk = env.sdk(&proxy, &id, &token);
    let evil = "done\x1b[2J\x1b[H\rApprove? [y]\n\u{9b}31mfake";
    sdk.warn(evil).await.unwrap();
    let shown = wait_until(Duration::from_secs(10), "the line in `assegai logs`", || {
        let out = env.run_ok(&["logs", "prankster"]);
        out.contains("done").then_some(out)
    });
    assert!(!shown.contains('\x1b') && !shown.contains('\u{9b}') && !shown.contains('\r'), "{shown:?}");
    assert_eq!(shown.lines().count(), 1, "an agent must not fake a second line: {shown:?}");
    assert!(shown.contains("\\x1b[2J"), "{shown:?}");
    let console = wait_until(Duration::from_secs(10), "the line on the console", || {
        let out = String::from_utf8_lossy(&proxy.output()).into_owned();
        out.contains("done").then_some(out)
    });
    assert!(!console.contains('\x1b') && !console.contains('\r'), "{console:?}");
    // The stored text is the agent's own, for scripts that want it (JSON escapes it).
    let json = env.run_ok(&["logs", "prankster", "--json"]);
    let v: Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["message"], evil);
    // Level filter.
    assert!(env.run_ok(&["logs", "--level", "error", "--json"]).trim().is_empty());
    assert!(!env.run_ok(&["logs", "--level", "warn", "--json"]).trim().is_empty());
}

#[test]
fn follow_prints_lines_as_they_arrive() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let (id, token) = env.add_agent("chatty", None);
    let mut follower =
        env.cmd(&["logs", "-f", "--json"]).stdout(std::process::Stdio::piped()).spawn().expect("assegai logs -f");
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sdk = env.sdk(&proxy, &id, &token);
    for i in 0..3 {
        rt.block_on(sdk.info(format!("line {i}"))).unwrap();
        let line = rx.recv_timeout(Duration::from_secs(10)).expect("logs -f printed the new line");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["message"], format!("line {i}"));
    }
    let _ = follower.kill();
    let _ = follower.wait();
}

#[test]
fn the_proxy_guards_its_admin_socket_and_stops_cleanly() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let socket = env.home().join("admin.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let home_mode = std::fs::metadata(env.home()).unwrap().permissions().mode() & 0o777;
    assert_eq!(home_mode & 0o077, 0, "the home directory is private");

    // A second proxy on the same home refuses to start, and says why.
    let out = env.run(&["proxy", "--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already running"), "{stderr}");

    assert!(proxy.terminate(), "SIGTERM stops the proxy with success");
    assert!(!socket.exists(), "the admin socket is removed on shutdown");

    // A stale socket file left by a killed proxy does not block the next start.
    let proxy = env.start_proxy();
    let pid = proxy.pid().to_string();
    std::process::Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    wait_until(Duration::from_secs(10), "the killed proxy to go", || {
        std::net::TcpStream::connect(proxy.url.trim_start_matches("http://")).is_err().then_some(())
    });
    drop(proxy);
    assert!(socket.exists());
    let again = env.start_proxy();
    assert!(again.terminate());
}

#[test]
fn bad_config_is_reported_with_the_file_and_key() {
    let env = TestEnv::new();
    env.write_config("listen = \"127.0.0.1:0\"\nlocal_rpc = \"http://x\"\n");
    let out = env.run(&["proxy"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("config.toml") && stderr.contains("local_rpc"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
}
