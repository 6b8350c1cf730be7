//! What a person reads from the listings and from `assegai run`, with the real binary: an empty
//! result says which filter left nothing and what the looser command shows (that command works as
//! printed), `usage --by day` draws a bar per day, and under `run` the agent's log lines show
//! among its output while the engine's own log lines stay out of it.

use std::{path::Path, process::Command, time::Duration};

use assegai_e2e::{Running, TestEnv, assegai_bin, wait_until};
use assegai_proxy::store::{NewLog, NewUsage, now_ms};
use assegai_sdk::{ChainId, LogLevel, wire::TxRequest};
use serde_json::{Value, json};

const RECIPIENT: &str = "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045";
const DAY_MS: i64 = 86_400_000;

/// Runs `command` (an `assegai …` line as printed) the way a person types it in another shell:
/// `assegai` on the `PATH`, no `ASSEGAI_HOME`, a user home of its own.
fn as_typed(env: &TestEnv, command: &str) -> std::process::Output {
    let elsewhere = tempfile::tempdir().unwrap();
    let bin_dir = assegai_bin().parent().unwrap().to_owned();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut sh = Command::new("/bin/sh");
    // A team's shell names the shared database as the test's commands do.
    if let Some(url) = env.database_url() {
        sh.env(assegai_sdk::env::DATABASE_URL, url);
    }
    sh.args(["-c", command])
        .env_remove("ASSEGAI_HOME")
        .env_remove("XDG_DATA_HOME")
        .env("HOME", elsewhere.path())
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// The command quoted after `needle` in `text` (up to the closing backtick).
fn quoted_after(text: &str, needle: &str) -> String {
    let rest = text.split(needle).nth(1).unwrap_or_else(|| panic!("no `{needle}` in {text}"));
    rest.split('`').next().unwrap().to_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).replace('\r', "")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_transaction_listing_says_what_is_empty() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let manifest = json!({"name": "pyscout", "permissions": {"chains": ["eip155:31337"]}});
    let (id, token) = env.add_agent("pyscout", Some(&manifest));
    env.add_agent("quiet", Some(&json!({"name": "quiet", "permissions": {"chains": ["eip155:31337"]}})));
    let sdk = env.sdk(&proxy, &id, &token);
    let request =
        TxRequest { chain: ChainId::ANVIL, to: RECIPIENT.into(), value: "1000".into(), data: None, gas_limit: None };
    let call = tokio::spawn(async move { sdk.request_transaction(&request).await });
    let pending = tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(15), "the request to be pending", || {
            let list: Value = serde_json::from_str(&env.run_ok(&["approve", "--list", "--json"])).ok()?;
            list.as_array()?.first().and_then(|r| r["id"].as_str()).map(str::to_owned)
        })
    });
    env.run_ok(&["reject", &pending]);
    assert!(call.await.unwrap().is_err(), "the agent hears the rejection");

    let out = env.run(&["txs", "--agent", "pyscout", "--status", "confirmed"]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty(), "no table for nothing");
    let said = stderr(&out);
    let home = env.home().display().to_string();
    assert_eq!(
        said.trim(),
        format!("No confirmed requests for `pyscout` (1 other: `assegai --home {home} txs --agent pyscout`).")
    );
    insta::assert_snapshot!("txs_empty_filter", said.replace(&home, "[HOME]"));
    // The looser command, as printed, shows the one there is.
    let looser = as_typed(&env, &quoted_after(&said, "1 other: `"));
    let table = String::from_utf8_lossy(&looser.stdout);
    assert!(looser.status.success() && table.contains("rejected") && table.contains(&pending), "{table}");

    // The other filters say the same kind of thing.
    let said = stderr(&env.run(&["txs", "--agent", "quiet"]));
    assert!(said.contains("No transaction requests for `quiet` (1 other: `assegai --home"), "{said}");
    let said = stderr(&env.run(&["txs", "--status", "confirmed"]));
    assert!(said.contains("No confirmed requests (1 other: `assegai --home"), "{said}");
}

/// Log lines and AI calls written straight into the database the CLI reads.
fn seed(env: &TestEnv, agent: &(String, String), days_ago: &[(i64, u64)]) {
    let store = env.store();
    let log = |level, message: &str| NewLog {
        agent_id: agent.0.clone().into(),
        agent_name: agent.1.clone(),
        level,
        message: message.into(),
        data: None,
        created_at: now_ms(),
    };
    store.insert_logs(&[log(LogLevel::Info, "started"), log(LogLevel::Info, "working")]).unwrap();
    // Noon of each day, so the days are whole days whatever time the test runs.
    let today = now_ms() / DAY_MS * DAY_MS;
    let usage: Vec<NewUsage> = days_ago
        .iter()
        .map(|(ago, nano)| NewUsage {
            agent_id: agent.0.clone().into(),
            agent_name: agent.1.clone(),
            provider: "openai",
            model: Some("gpt-4o".into()),
            input_tokens: 100,
            output_tokens: 10,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            cost_nano_usd: Some(*nano),
            latency_ms: 5,
            status: 200,
            streamed: false,
            estimated: false,
            created_at: today - ago * DAY_MS + DAY_MS / 2 - if *ago == 0 { DAY_MS / 2 } else { 0 },
        })
        .collect();
    store.insert_usage(&usage).unwrap();
}

#[test]
fn empty_logs_and_usage_say_which_filter_left_nothing() {
    let env = TestEnv::new();
    let scout = env.add_agent("scout", None);
    env.add_agent("idle", None);
    seed(&env, &(scout.0.clone(), "scout".into()), &[(40, 1_000_000)]);
    let home = env.home().display().to_string();

    let said = stderr(&env.run(&["logs", "scout", "--level", "warn"]));
    assert_eq!(said.trim(), format!("No warn lines from `scout` (2 others: `assegai --home {home} logs scout`)."));
    let looser = as_typed(&env, &quoted_after(&said, "2 others: `"));
    assert!(String::from_utf8_lossy(&looser.stdout).contains("working"), "{looser:?}");
    let said = stderr(&env.run(&["logs", "idle"]));
    assert_eq!(said.trim(), format!("No log lines from `idle` (2 others: `assegai --home {home} logs`)."));

    // The one call is 40 days old: outside the default 30 days.
    let said = stderr(&env.run(&["usage", "--agent", "scout"]));
    assert_eq!(
        said.trim(),
        format!(
            "No AI calls for `scout` in the last 30d (1 other: `assegai --home {home} usage --agent scout --since all`)."
        )
    );
    let looser = as_typed(&env, &quoted_after(&said, "1 other: `"));
    assert!(String::from_utf8_lossy(&looser.stdout).contains("gpt-4o"), "{looser:?}");
    let said = stderr(&env.run(&["usage", "--by", "day"]));
    assert!(said.contains("No AI calls in the last 30d (1 other: `assegai --home"), "{said}");

    // A home that does not exist is named, not created and reported empty.
    let missing = env.home().join("not-here");
    for args in [&["txs"][..], &["logs"], &["usage"], &["approve", "--list"]] {
        let mut cmd = env.cmd(args);
        cmd.env("ASSEGAI_HOME", &missing);
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(&format!("no Assegai home at {}", missing.display())), "{}", stderr(&out));
        assert!(!missing.exists(), "{args:?} created the home");
    }
}

#[test]
fn usage_by_day_draws_a_bar_per_day() {
    let env = TestEnv::new();
    let scout = env.add_agent("scout", None);
    let other = env.add_agent("other", None);
    // 0.02 USD three days ago, nothing two days ago, 0.01 yesterday, 0.005 today; another agent's
    // calls count in the total only.
    seed(&env, &(scout.0.clone(), "scout".into()), &[(3, 20_000_000), (1, 10_000_000), (0, 5_000_000)]);
    seed(&env, &(other.0.clone(), "other".into()), &[(1, 10_000_000)]);
    let days = |extra: &[&str]| {
        let mut args = vec!["usage", "--by", "day"];
        args.extend(extra);
        env.run_ok(&args)
    };
    let all = days(&[]);
    let theirs = days(&["--agent", "scout"]);
    let masked = format!("$ assegai usage --by day\n{all}\n$ assegai usage --by day --agent scout\n{theirs}");
    insta::with_settings!({filters => vec![(r"\d{4}-\d{2}-\d{2}", "[DATE]")]}, {
        insta::assert_snapshot!("usage_by_day", masked);
    });
    let rows: Vec<&str> = theirs.lines().filter(|l| l.contains('[')).collect();
    assert_eq!(rows.len(), 4, "four days, the empty one included:\n{theirs}");
    assert!(rows[0].contains(&format!("[{}]", "█".repeat(20))), "the dearest day fills the bar:\n{theirs}");
    assert!(rows[1].contains(&format!("[{}]", "·".repeat(20))), "a day without calls is empty:\n{theirs}");
    assert!(rows[2].contains(&format!("[{}{}]", "█".repeat(10), "·".repeat(10))), "{theirs}");
    let json: Value = serde_json::from_str(&env.run_ok(&["usage", "--by", "day", "--json"])).unwrap();
    let costs: Vec<&str> = json["days"].as_array().unwrap().iter().map(|d| d["cost_usd"].as_str().unwrap()).collect();
    assert_eq!(costs, ["0.02", "0.02", "0.005"], "{json}");
}

/// A `python` agent in `<home>/NAME` running `script` (with `post(path, body)` to call the proxy).
fn python_agent(env: &TestEnv, name: &str, script: &str) -> std::path::PathBuf {
    let dir = env.home().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = json!({"name": name, "runtime": "python", "entrypoint": "agent.py",
                          "permissions": {"chains": ["eip155:31337"]}});
    std::fs::write(dir.join("assegai.json"), manifest.to_string()).unwrap();
    let prelude = format!(
        r#"
import json, os, urllib.error, urllib.request
def post(path, body):
    req = urllib.request.Request(os.environ["ASSEGAI_API_PROXY"] + path, data=json.dumps(body).encode(), headers={{
        "content-type": "application/json",
        "{id}": os.environ["ASSEGAI_AGENT_ID"],
        "{token}": os.environ["ASSEGAI_AGENT_TOKEN"],
    }})
    try:
        return urllib.request.urlopen(req, timeout=30).status
    except urllib.error.HTTPError as e:
        return e.code
"#,
        id = assegai_sdk::env::HEADER_AGENT_ID,
        token = assegai_sdk::env::HEADER_AGENT_TOKEN,
    );
    std::fs::write(dir.join("agent.py"), format!("{prelude}\n{script}")).unwrap();
    dir
}

fn run_to_the_end(env: &TestEnv, dir: &Path) -> Running {
    let mut run = Running::spawn(env.cmd(&["run", dir.to_str().unwrap(), "--no-prompt"]));
    let status = run.wait_exit(Duration::from_secs(120)).expect("the run ends with its agent");
    assert!(status.success(), "{}\n{}", run.stdout(), run.stderr());
    run
}

/// What the agent logs through the proxy shows under `run`, prefixed like its output, with its
/// level, and neutralised.
#[test]
fn the_agents_log_lines_show_under_run() {
    let env = TestEnv::with_anvil();
    let dir = python_agent(
        &env,
        "chatty",
        r#"
print("plain output", flush=True)
post("/agent/log", {"level": "info", "message": "thinking about it"})
post("/agent/log", {"level": "warn", "message": "red \u001b[31malert", "data": {"n": 1}})
"#,
    );
    let run = run_to_the_end(&env, &dir);
    let out = run.stdout();
    assert!(out.contains("chatty │ plain output"), "{out}");
    assert!(out.contains("chatty │ [info] thinking about it"), "{out}");
    assert!(out.contains(r#"chatty │ [warn] red \x1b[31malert {"n":1}"#), "neutralised, with its data:\n{out}");
    assert!(!out.contains('\u{1b}'), "no raw escape reaches the terminal");
}

/// With the chain's node down, the engine's "upstream request failed" lines go to `proxy.log` in
/// the home; the person gets one plain warning (the start-up check's, with the fix), and the
/// agent's output stays its own.
#[test]
fn engine_log_lines_stay_out_of_the_agents_output() {
    let env = TestEnv::new();
    env.write_config("local_rpc_url = \"http://127.0.0.1:9\"\n");
    let dir = python_agent(
        &env,
        "offline",
        r#"
for i in range(3):
    print("read", i, post("/agent/query-chain", {"chain": "eip155:31337", "method": "eth_blockNumber", "params": []}), flush=True)
"#,
    );
    let run = run_to_the_end(&env, &dir);
    let (out, err) = (run.stdout(), run.stderr());
    assert!(out.contains("offline │ read 2 502"), "the agent saw its reads fail:\n{out}\n{err}");
    let all = format!("{out}{err}");
    for raw in ["WARN", "assegai_proxy::", "upstream request failed"] {
        assert!(!all.contains(raw), "`{raw}` reached the run's output:\n{all}");
    }
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning:")).collect();
    assert_eq!(warnings.len(), 1, "one plain warning:\n{err}");
    assert!(warnings[0].contains("does not answer") && warnings[0].contains("anvil"), "{err}");
    let log = std::fs::read_to_string(env.home().join("proxy.log")).expect("proxy.log in the home");
    assert!(log.contains("upstream request failed"), "{log}");
}

/// When nothing said so at start-up (the node answered then), the first engine warning becomes one
/// plain line naming the log file, however many the agent goes on to cause.
#[test]
fn a_later_engine_warning_is_one_plain_line() {
    let mut env = TestEnv::with_anvil();
    let dir = python_agent(
        &env,
        "late",
        r#"
import time
read = lambda: post("/agent/query-chain", {"chain": "eip155:31337", "method": "eth_blockNumber", "params": []})
print("read 0", read(), flush=True)
# The test stops the node, then says so with this file in the agent's (readable) directory.
while not os.path.exists("go"):
    time.sleep(0.05)
for i in (1, 2, 3):
    print("read", i, read(), flush=True)
"#,
    );
    let mut run = Running::spawn(env.cmd(&["run", dir.to_str().unwrap(), "--no-prompt"]));
    run.wait_for("late │ read 0 200", Duration::from_secs(60));
    drop(env.anvil.take());
    std::fs::write(dir.join("go"), "").unwrap();
    let status = run.wait_exit(Duration::from_secs(120)).expect("the run ends with its agent");
    let (out, err) = (run.stdout(), run.stderr());
    assert!(status.success(), "{err}");
    assert!(out.contains("late │ read 3 502"), "{out}\n{err}");
    assert!(!format!("{out}{err}").contains("WARN"), "{out}\n{err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning:")).collect();
    assert_eq!(warnings.len(), 1, "one plain warning:\n{err}");
    let file = env.home().join("proxy.log");
    assert!(
        warnings[0].contains("upstream request failed") && warnings[0].contains(&file.display().to_string()),
        "{err}"
    );
    let log = std::fs::read_to_string(file).unwrap();
    assert!(log.matches("upstream request failed").count() >= 3, "every one is in the file:\n{log}");
}

/// The template works on the first chain its manifest allows: edited to allow only Ethereum, it
/// asks for the wallet there (and, with none imported, says so and stops).
#[test]
fn the_template_uses_the_manifests_first_chain() {
    let env = TestEnv::new();
    let work = tempfile::tempdir().unwrap();
    let out = env.cmd(&["new", "mainnet-py", "--template", "python"]).current_dir(work.path()).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = work.path().join("mainnet-py");
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("assegai.json")).unwrap()).unwrap();
    manifest["permissions"]["chains"] = json!(["eip155:1"]);
    std::fs::write(dir.join("assegai.json"), manifest.to_string()).unwrap();
    let mut run = Running::spawn(env.cmd(&["run", dir.to_str().unwrap(), "--no-prompt"]));
    run.wait_exit(Duration::from_secs(60)).expect("the agent stops by itself");
    let all = format!("{}{}", run.stdout(), run.stderr());
    assert!(all.contains("mainnet-py │ [error] stopping:") && all.contains("eip155:1"), "{all}");
    assert!(!all.contains("31337"), "it never asked about the local chain:\n{all}");
}
