//! The interactive `assegai approve` queue, driven the way a person drives it: the real binary in a
//! real pseudo-terminal, keys sent as a terminal sends them, the screen read back. Agents make real
//! requests through the SDK to a real proxy, and approved ones land on a real Anvil.

use std::{process::Command, time::Duration};

use assegai_e2e::{TEST_PASSPHRASE, TestEnv, assegai_bin, contains_bytes, wait_until};
use assegai_sdk::{Assegai, ChainId, U256, wire::TxRequest};
use rexpect::session::{PtySession, spawn_command};
use serde_json::{Value, json};

const RECIPIENT: &str = "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045";
/// How long any one thing may take to show up on the screen.
const SCREEN_TIMEOUT_MS: u64 = 30_000;
const DOWN: &str = "\x1b[B";
const UP: &str = "\x1b[A";
const ENTER: &str = "\r";

/// `assegai approve ARGS` running in a pseudo-terminal, and everything it has shown so far.
struct Screen {
    session: PtySession,
    seen: Vec<u8>,
}

impl Screen {
    /// Starts the binary with what [`TestEnv::cmd`] sets, on a terminal of its own.
    fn start(env: &TestEnv, args: &[&str]) -> Self {
        let mut all = vec!["approve"];
        all.extend(args);
        Self::command(env, &all)
    }

    /// Starts `assegai ARGS` on a terminal of its own.
    fn command(env: &TestEnv, args: &[&str]) -> Self {
        Self::spawn(assegai_cmd(env, args))
    }

    /// Starts `cmd` with the terminal as its controlling terminal (and as its stdin, stdout and
    /// stderr, unless `cmd` redirects them).
    fn spawn(cmd: Command) -> Self {
        let session = spawn_command(cmd, Some(SCREEN_TIMEOUT_MS)).expect("starting assegai in a pty");
        Screen { session, seen: Vec::new() }
    }

    /// Waits until `text` is shown and returns what was shown before it (since the last wait).
    fn expect(&mut self, text: &str) -> String {
        // rexpect hands the output over one byte per `char`; the needle is spelt the same way, and
        // the bytes are recovered from what it returns, so UTF-8 (`→`, `…`) matches exactly.
        let needle: String = text.bytes().map(char::from).collect();
        let result = tokio::task::block_in_place(|| self.session.exp_string(&needle));
        match result {
            Ok(before) => {
                let before: Vec<u8> = before.chars().map(|c| c as u8).collect();
                self.seen.extend_from_slice(&before);
                self.seen.extend_from_slice(text.as_bytes());
                String::from_utf8_lossy(&before).into_owned()
            }
            Err(e) => panic!(
                "`{text}` did not show up: {e}\n--- the screen so far ---\n{}",
                String::from_utf8_lossy(&self.seen)
            ),
        }
    }

    /// Types `keys`.
    fn send(&mut self, keys: &str) {
        self.session.send(keys).expect("writing to the pty");
        self.session.flush().expect("flushing the pty");
    }

    /// Presses Ctrl-C and waits for the program to end; returns whether it exited with success, and
    /// everything it showed.
    fn ctrl_c(mut self) -> (bool, Vec<u8>) {
        // A prompt reads keys in raw mode, where Ctrl-C arrives as a key; in the instant between
        // two reads the terminal is cooked and the signal goes to the queue, which is then busy
        // with the prompt. A person presses again; so does this.
        for _ in 0..3 {
            self.session.send_control('c').expect("sending Ctrl-C");
            match tokio::task::block_in_place(|| self.session.exp_eof()) {
                Ok(rest) => return self.exited(&rest),
                Err(rexpect::error::Error::Timeout { .. }) => {}
                Err(e) => panic!("waiting for assegai approve to exit: {e}"),
            }
        }
        panic!("Ctrl-C did not end assegai approve:\n{}", String::from_utf8_lossy(&self.seen));
    }

    /// Waits for the program to end by itself; returns as [`Screen::ctrl_c`].
    fn finish(mut self) -> (bool, Vec<u8>) {
        let rest = tokio::task::block_in_place(|| self.session.exp_eof()).expect("assegai approve to exit");
        self.exited(&rest)
    }

    fn exited(mut self, rest: &str) -> (bool, Vec<u8>) {
        self.seen.extend(rest.chars().map(|c| c as u8));
        let status = self.session.process().wait().expect("waiting for assegai approve");
        (matches!(status, rexpect::process::WaitStatus::Exited(_, 0)), self.seen)
    }
}

/// `assegai ARGS` with what [`TestEnv::cmd`] sets, for a terminal.
fn assegai_cmd(env: &TestEnv, args: &[&str]) -> Command {
    let mut cmd = Command::new(assegai_bin());
    cmd.args(args)
        .env("ASSEGAI_HOME", env.home())
        .env("ASSEGAI_PASSPHRASE", TEST_PASSPHRASE)
        .env("NO_COLOR", "1")
        .env("TERM", "xterm");
    if let Some(url) = env.database_url() {
        cmd.env(assegai_sdk::env::DATABASE_URL, url);
    }
    cmd
}

fn pending(env: &TestEnv) -> Vec<Value> {
    serde_json::from_str::<Value>(&env.run_ok(&["approve", "--list", "--json"])).unwrap().as_array().unwrap().clone()
}

/// Starts an SDK request for `wei` to [`RECIPIENT`] and waits until it is the `nth` pending one.
fn request(
    env: &TestEnv,
    sdk: &Assegai,
    wei: &str,
    nth: usize,
) -> tokio::task::JoinHandle<assegai_sdk::Result<assegai_sdk::B256>> {
    let request =
        TxRequest { chain: ChainId::ANVIL, to: RECIPIENT.into(), value: wei.into(), data: None, gas_limit: None };
    let sdk = sdk.clone();
    let call = tokio::spawn(async move { sdk.request_transaction(&request).await });
    tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(15), "the request to be pending", || (pending(env).len() == nth).then_some(()));
    });
    call
}

/// A listed request's decimal field (`max_fee_wei`, `fee_wei`…) as a number.
fn wei_field(entry: &Value, field: &str) -> U256 {
    entry[field].as_str().unwrap_or_else(|| panic!("{field} in {entry}")).parse().unwrap()
}

/// `n` wei as the card prints ETH.
fn eth(n: U256) -> String {
    assegai_proxy::units::format_units(n, 18)
}

async fn balance(env: &TestEnv) -> U256 {
    let hex = env.anvil().rpc("eth_getBalance", json!([RECIPIENT, "latest"])).await;
    U256::from_str_radix(hex.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_queue_shows_each_request_and_signs_or_rejects_it() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let manifest =
        json!({"name": "payer", "permissions": {"chains": ["eip155:31337"]}, "spending_limits": {"daily": "1"}});
    let (agent_id, token) = env.add_agent("payer", Some(&manifest));
    let sdk = env.sdk(&proxy, &agent_id, &token);
    let before = balance(&env).await;

    // Two requests wait at once, in a known order.
    let (first, second) = ("100000000000000", "200000000000000"); // 0.0001 and 0.0002 ETH
    let first_call = request(&env, &sdk, first, 1);
    let second_call = request(&env, &sdk, second, 2);
    // Each counts its value plus the worst-case fee fixed when it was made.
    let listed = pending(&env);
    let worst = |value: &str| {
        let entry = listed.iter().find(|e| e["value"] == value).unwrap();
        value.parse::<U256>().unwrap() + wei_field(entry, "max_fee_wei")
    };
    let (cost1, cost2) = (worst(first), worst(second));

    let mut screen = Screen::start(&env, &[]);
    screen.expect("Request 1 of 2");
    let card = screen.expect("Your decision");
    let chain = format!("{} (eip155:31337)", ChainId::ANVIL.name().unwrap());
    for shown in [
        format!("payer ({agent_id})"),
        chain.clone(),
        RECIPIENT.to_owned(),
        "100000000000000 wei (0.0001 ETH)".to_owned(),
        format!("Send 0.0001 ETH to {RECIPIENT}"),
        "21000 limit".to_owned(),
        format!("at most {} ETH (value + fee)", eth(cost1)),
        // The other pending request already counts against the limit.
        format!("daily {} → {} of 1 ETH", eth(cost2), eth(cost1 + cost2)),
    ] {
        assert!(card.contains(&shown), "the card lacks `{shown}`:\n{card}");
    }
    // Who signs (and where its key lives), and the prompt's keys, on the queue's own card.
    assert!(card.contains("From     0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266 (Anvil's test account"), "{card}");
    assert!(card.contains("↑/↓ choose · Enter decide · Esc leave the queue (requests stay pending)"), "{card}");
    screen.expect("Reject all");
    // The cursor starts on Skip (fail closed); "Approve & sign" is two up.
    screen.send(UP);
    screen.expect("> Reject");
    screen.send(UP);
    screen.expect("> Approve & sign");
    screen.send(ENTER);

    let hash = tokio::time::timeout(Duration::from_secs(60), first_call)
        .await
        .expect("the first request to be answered")
        .unwrap()
        .expect("the approved request returns a hash");
    screen.expect("Approved tx_");
    screen.expect(&hash.to_string());
    let receipt = wait_until(Duration::from_secs(20), "the receipt", || {
        let rt = tokio::runtime::Handle::current();
        let r = tokio::task::block_in_place(|| {
            rt.block_on(env.anvil().rpc("eth_getTransactionReceipt", json!([hash.to_string()])))
        });
        (!r.is_null()).then_some(r)
    });
    assert_eq!(receipt["status"], "0x1");
    assert_eq!(balance(&env).await - before, U256::from_str_radix(first, 10).unwrap(), "exactly the amount arrived");

    screen.expect("Request 2 of 2");
    let card = screen.expect("Your decision");
    assert!(card.contains("200000000000000 wei (0.0002 ETH)"), "{card}");
    // The approved one now counts as spent (its worst case until its receipt is read, then the
    // fee it paid), this one as the increase.
    let paid = wait_until(Duration::from_secs(20), "the receipt's fee to be recorded", || {
        let txs: Value = serde_json::from_str(&env.run_ok(&["txs", "--json", "--status", "confirmed"])).ok()?;
        txs.as_array()?.first().map(|t| wei_field(t, "fee_wei"))
    });
    let settled = first.parse::<U256>().unwrap() + paid;
    let shown = [cost1, settled].map(|before| format!("daily {} → {} of 1 ETH", eth(before), eth(before + cost2)));
    assert!(shown.iter().any(|s| card.contains(s)), "one of {shown:?} in {card}");
    screen.expect("Reject all");
    screen.send(UP);
    screen.expect("> Reject");
    screen.send(ENTER);
    screen.expect("Rejected tx_");
    let err = tokio::time::timeout(Duration::from_secs(30), second_call)
        .await
        .expect("the second request to be answered")
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, assegai_sdk::Error::Rejected { .. }), "{err:?}");

    // The queue keeps waiting for more until Ctrl-C, which ends it cleanly.
    screen.expect("Waiting for transaction requests");
    let (ok, _) = screen.ctrl_c();
    assert!(ok, "Ctrl-C ends the queue with success");
    assert!(pending(&env).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn skipped_requests_stay_pending_until_reject_all() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let manifest = json!({"name": "twice", "permissions": {"chains": ["eip155:31337"]}});
    let (agent_id, token) = env.add_agent("twice", Some(&manifest));
    let sdk = env.sdk(&proxy, &agent_id, &token);
    let first_call = request(&env, &sdk, "1000", 1);
    let second_call = request(&env, &sdk, "2000", 2);

    // `approve ID` shows the same card and asks; the answer defaults to no.
    let first_id = pending(&env)[0]["id"].as_str().unwrap().to_owned();
    let mut screen = Screen::start(&env, &[&first_id]);
    let card = screen.expect("Approve and sign this request?");
    assert!(card.contains("1000 wei") && card.contains("no spending limits"), "{card}");
    screen.expect("[y/N]");
    screen.send(ENTER);
    screen.expect("Not approved; it is still pending.");
    assert!(screen.finish().0, "declining is not an error");

    // Skip the first, then Ctrl-C at the second's prompt: both stay pending.
    let mut screen = Screen::start(&env, &[]);
    screen.expect("Request 1 of 2");
    screen.expect("Reject all");
    // Enter on the default choice skips.
    screen.send(ENTER);
    screen.expect("stays pending");
    screen.expect("Request 2 of 2");
    screen.expect("Reject all");
    let (ok, seen) = screen.ctrl_c();
    assert!(ok, "Ctrl-C at a prompt ends the queue with success");
    let seen = String::from_utf8_lossy(&seen);
    assert!(seen.contains("Stopped; 1 skipped request(s) still pending"), "{seen}");
    let (hide, show) = (seen.rfind("\x1b[?25l").unwrap(), seen.rfind("\x1b[?25h"));
    assert!(show.is_some_and(|show| show > hide), "the cursor is shown again after Ctrl-C");
    assert_eq!(pending(&env).len(), 2);

    // A new queue offers both again; "Reject all" rejects every one it holds.
    let mut screen = Screen::start(&env, &[]);
    screen.expect("Request 1 of 2");
    screen.expect("Reject all");
    screen.send(DOWN);
    screen.expect("> Reject all");
    screen.send(ENTER);
    screen.expect("Reject all 2 pending request(s) in this queue?");
    screen.send("y");
    screen.expect("Rejected 2 of 2 request(s).");
    for call in [first_call, second_call] {
        let err = tokio::time::timeout(Duration::from_secs(30), call).await.unwrap().unwrap().unwrap_err();
        assert!(matches!(err, assegai_sdk::Error::Rejected { .. }), "{err:?}");
    }
    screen.expect("Waiting for transaction requests");
    assert!(screen.ctrl_c().0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_cannot_redraw_the_prompt() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let manifest = json!({"name": "evil", "permissions": {"chains": ["eip155:31337"]}});
    let (agent_id, token) = env.add_agent("evil", Some(&manifest));
    let sdk = env.sdk(&proxy, &agent_id, &token);
    let call = request(&env, &sdk, "1", 1);

    // Registration refuses control characters in names, so plant one the way a hand-edited or
    // older database would hold it: clear the screen, home the cursor, retitle the window.
    let hostile = "evil\u{1b}[2J\u{1b}[H\u{1b}]0;pwned\u{7}";
    let tx_id = pending(&env)[0]["id"].as_str().unwrap().to_owned();
    env.execute_sql("UPDATE agents SET name = ?1 WHERE id = ?2", &[hostile, &agent_id]);
    env.execute_sql("UPDATE transactions SET agent_name = ?1 WHERE id = ?2", &[hostile, &tx_id]);
    assert_eq!(pending(&env)[0]["agent"], hostile, "the hostile name is in the store");

    let mut screen = Screen::start(&env, &[]);
    screen.expect("Request 1 of 1");
    let card = screen.expect("Your decision");
    assert!(card.contains(r"evil\x1b[2J\x1b[H\x1b]0;pwned\x07"), "the name is shown, made inert:\n{card}");
    screen.expect("Reject all");
    screen.send(UP);
    screen.expect("> Reject");
    screen.send(ENTER);
    screen.expect("Rejected tx_");
    let err = tokio::time::timeout(Duration::from_secs(30), call).await.unwrap().unwrap().unwrap_err();
    assert!(matches!(err, assegai_sdk::Error::Rejected { .. }), "{err:?}");
    screen.expect("Waiting for transaction requests");
    let (ok, seen) = screen.ctrl_c();
    assert!(ok);
    for raw in [hostile.as_bytes(), b"\x1b[2J", b"\x1b]0;pwned"] {
        assert!(!contains_bytes(&seen, raw), "the terminal got {raw:?} from the agent");
    }
}

#[test]
fn without_a_terminal_the_queue_refuses_and_says_what_to_run() {
    let env = TestEnv::new();
    let out = env.run(&["approve"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs a terminal"), "{stderr}");
    // A home that is not the default one is named, so the commands work as printed.
    let home = env.home().display();
    for hint in [format!("`assegai --home {home} approve --list`"), format!("`assegai --home {home} approve ID --yes`")]
    {
        assert!(stderr.contains(&hint), "{hint} in {stderr}");
    }
}

/// A `python` agent in `<home>/NAME` that prints "agent up", asks for 0.000001 ETH through the
/// proxy, prints "got HASH" and idles.
fn requesting_agent(env: &TestEnv, name: &str) -> std::path::PathBuf {
    let dir = env.home().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = json!({
        "name": name, "runtime": "python", "entrypoint": "agent.py",
        "permissions": {"chains": ["eip155:31337"]}, "spending_limits": {"daily": "1"},
    });
    std::fs::write(dir.join("assegai.json"), manifest.to_string()).unwrap();
    let agent = format!(
        r#"
import json, os, sys, time, urllib.request
print("agent up", flush=True)
body = json.dumps({{"chain": "eip155:31337", "to": "{RECIPIENT}", "value": "1000000000000"}}).encode()
req = urllib.request.Request(os.environ["ASSEGAI_API_PROXY"] + "/agent/request-transaction", data=body, headers={{
    "content-type": "application/json",
    "{id_header}": os.environ["ASSEGAI_AGENT_ID"],
    "{token_header}": os.environ["ASSEGAI_AGENT_TOKEN"],
}})
print("got", json.load(urllib.request.urlopen(req, timeout=120))["txHash"], flush=True)
while True:
    time.sleep(0.1)
"#,
        id_header = assegai_sdk::env::HEADER_AGENT_ID,
        token_header = assegai_sdk::env::HEADER_AGENT_TOKEN,
    );
    std::fs::write(dir.join("agent.py"), agent).unwrap();
    dir
}

/// Moves the cursor of the card on screen from Skip to "Approve & sign" and presses Enter.
fn approve_on(screen: &mut Screen) {
    screen.expect("Reject all");
    screen.send(UP);
    screen.expect("> Reject");
    screen.send(UP);
    screen.expect("> Approve & sign");
    screen.send(ENTER);
    screen.expect("Approved tx_");
}

/// `assegai run` with a terminal and no proxy of its own asks inline: the agent's request shows up
/// between its output lines, and approving it hands the agent its hash.
#[tokio::test(flavor = "multi_thread")]
async fn run_asks_inline_and_the_agent_gets_its_hash() {
    let env = TestEnv::with_anvil();
    let dir = requesting_agent(&env, "inline");

    let mut screen = Screen::command(&env, &["run", dir.to_str().unwrap()]);
    screen.expect("Transaction requests will be asked here.");
    screen.expect("inline │ agent up");
    screen.expect("Request 1 of 1");
    let card = screen.expect("Your decision");
    assert!(card.contains("1000000000000 wei (0.000001 ETH)"), "{card}");
    let listed = pending(&env);
    let cost = U256::from(1_000_000_000_000_u64) + wei_field(&listed[0], "max_fee_wei");
    assert!(card.contains(&format!("daily 0 → {} of 1 ETH", eth(cost))), "{card}");
    approve_on(&mut screen);
    let after = screen.expect("inline │ got 0x");
    assert!(!after.contains("Request 2"), "one request, one card");
    let (ok, seen) = screen.ctrl_c();
    let seen = String::from_utf8_lossy(&seen);
    assert!(ok, "Ctrl-C stops the agent and the run cleanly:\n{seen}");
    assert!(seen.contains("Agent inline"), "{seen}");
    let txs: Value = serde_json::from_str(&env.run_ok(&["txs", "--json"])).unwrap();
    assert_eq!(txs[0]["status"], "confirmed", "{txs}");
}

/// With a proxy running elsewhere, `run` still asks inline when nobody else would; once a person
/// has `assegai approve` open, the request goes there and `run` only says so.
#[tokio::test(flavor = "multi_thread")]
async fn run_asks_inline_unless_an_approver_is_attached() {
    let env = TestEnv::with_anvil();
    let _proxy = env.start_proxy();
    let dir = requesting_agent(&env, "polite");

    let mut run = Screen::command(&env, &["run", dir.to_str().unwrap()]);
    run.expect("Transaction requests will be asked here.");
    run.expect("Request 1 of 1");
    approve_on(&mut run);
    run.expect("polite │ got 0x");
    let (ok, seen) = run.ctrl_c();
    assert!(ok, "{}", String::from_utf8_lossy(&seen));

    let mut queue = Screen::start(&env, &[]);
    queue.expect("Waiting for transaction requests");
    let mut run = Screen::command(&env, &["run", dir.to_str().unwrap()]);
    let before = run.expect("already open in another terminal");
    assert!(!before.contains("asked here"), "{before}");
    queue.expect("Request 1 of 1");
    approve_on(&mut queue);
    let after = run.expect("polite │ got 0x");
    assert!(!after.contains("Request 1"), "no second card in the run's terminal: {after}");
    let (ok, seen) = run.ctrl_c();
    assert!(ok, "{}", String::from_utf8_lossy(&seen));
    let (ok, seen) = queue.ctrl_c();
    assert!(ok, "{}", String::from_utf8_lossy(&seen));
    let txs: Value = serde_json::from_str(&env.run_ok(&["txs", "--json", "--status", "confirmed"])).unwrap();
    assert_eq!(txs.as_array().unwrap().len(), 2, "{txs}");
}

/// What the terminal showed, as a person reads it: lines ended by `\n`, the home and what changes
/// from run to run (ids, times, ports, fee figures) masked.
fn for_snapshot(env: &TestEnv, text: &str) -> String {
    // The prompt hides the cursor before it draws itself: not something a person reads.
    text.replace("\r\n", "\n").replace("\u{1b}[?25l", "").replace(&env.home().display().to_string(), "[HOME]")
}

/// Filters for what differs between runs of the same scenario.
fn snapshot_filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"tx_[0-9a-f]+", "tx_[ID]"),
        (r"ag_[0-9A-Za-z]+", "ag_[ID]"),
        (r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", "[TIME]"),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]"),
        (r"\d+(\.\d+)? gwei", "[N] gwei"),
        (r"(at most|→|transaction) \d+(\.\d+)? ", "$1 [N] "),
    ]
}

/// `./scripts/quickstart 2>&1 | tee log`: the run's stdout and stderr go to files, yet the card
/// and the prompt reach the person at the terminal, and approving there hands the agent its hash.
#[tokio::test(flavor = "multi_thread")]
async fn run_with_its_output_piped_still_asks_on_the_terminal() {
    let env = TestEnv::with_anvil();
    let dir = requesting_agent(&env, "piped");
    let logs = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (logs.path().join("stdout"), logs.path().join("stderr"));
    let mut cmd = assegai_cmd(&env, &["run", dir.to_str().unwrap()]);
    cmd.stdout(std::fs::File::create(&out_path).unwrap()).stderr(std::fs::File::create(&err_path).unwrap());
    let mut screen = Screen::spawn(cmd);
    screen.expect("Request 1 of 1");
    let card = screen.expect("Your decision");
    let card = format!("Request 1 of 1{}", for_snapshot(&env, &card));
    // The signing wallet and the prompt's keys are on the card.
    assert!(card.contains("From     0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266 (Anvil's test account"), "{card}");
    assert!(card.contains("↑/↓ choose · Enter decide · Esc stop the agent"), "{card}");
    insta::with_settings!({filters => snapshot_filters()}, {
        insta::assert_snapshot!("card_under_run", card);
    });
    screen.expect("Reject all");
    screen.send(UP);
    screen.expect("> Reject");
    screen.send(UP);
    screen.expect("> Approve & sign");
    screen.send(ENTER);
    let read = |path: &std::path::Path| std::fs::read_to_string(path).unwrap_or_default();
    wait_until(Duration::from_secs(60), "the agent to print its hash into the piped stdout", || {
        read(&out_path).contains("piped │ got 0x").then_some(())
    });
    let (ok, seen) = screen.ctrl_c();
    assert!(ok, "{}\n{}", String::from_utf8_lossy(&seen), read(&err_path));
    let stderr = read(&err_path);
    assert!(stderr.contains("Transaction requests will be asked here."), "{stderr}");
    assert!(stderr.contains("Approved tx_"), "{stderr}");
    assert!(!stderr.contains("Request 1 of 1") && !read(&out_path).contains("Request 1"), "the card is not in the log");
}

/// Without a terminal, `run` says where to approve; that command, typed as printed in another
/// terminal (whose shell has no `ASSEGAI_HOME`), finds the request and approves it.
#[tokio::test(flavor = "multi_thread")]
async fn the_printed_approve_command_finds_the_request() {
    let env = TestEnv::with_anvil();
    let dir = requesting_agent(&env, "hinted");
    let mut run = assegai_e2e::Running::spawn(env.cmd(&["run", dir.to_str().unwrap()]));
    let intro = "in another terminal with `";
    run.wait_for(intro, Duration::from_secs(60));
    let stderr = run.stderr();
    let hint = stderr.split(intro).nth(1).and_then(|rest| rest.split('`').next()).unwrap().to_owned();
    assert!(hint.starts_with(&format!("assegai --home {} approve --agent ag_", env.home().display())), "{hint}");
    run.wait_for("hinted │ agent up", Duration::from_secs(30));

    // Another terminal: the user's own home is somewhere else, and nothing names this one.
    let elsewhere = tempfile::tempdir().unwrap();
    let bin_dir = assegai_bin().parent().unwrap().to_owned();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut shell = Command::new("/bin/sh");
    shell
        // `exec`: the shell becomes the command, so that Ctrl-C ends only it, as in a terminal.
        .args(["-c", &format!("exec {hint}")])
        .env_remove("ASSEGAI_HOME")
        .env_remove("ASSEGAI_PASSPHRASE")
        .env_remove("XDG_DATA_HOME")
        .env("HOME", elsewhere.path())
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env("TERM", "xterm");
    // A team's terminal names the shared database as every command of the test does.
    if let Some(url) = env.database_url() {
        shell.env(assegai_sdk::env::DATABASE_URL, url);
    }
    let mut queue = Screen::spawn(shell);
    queue.expect("Request 1 of 1");
    approve_on(&mut queue);
    run.wait_for("hinted │ got 0x", Duration::from_secs(60));
    let (ok, seen) = queue.ctrl_c();
    assert!(ok, "{}", String::from_utf8_lossy(&seen));
    assert!(!elsewhere.path().join(".local/share/assegai").exists(), "the default home was not created");
    run.signal("INT");
    assert!(run.wait_exit(Duration::from_secs(15)).is_some_and(|s| s.success()), "{}", run.stderr());
}

/// A fresh home has no key file: `keys list` asks for no passphrase (at a terminal, where it
/// could), says there are no keys and how to add one, and creates nothing.
#[tokio::test(flavor = "multi_thread")]
async fn keys_list_on_a_fresh_home_asks_nothing() {
    let env = TestEnv::new();
    env.write_config("[keys]\nbackend = \"file\"\n");
    let mut cmd = assegai_cmd(&env, &["keys", "list"]);
    cmd.env_remove("ASSEGAI_PASSPHRASE");
    let (ok, seen) = Screen::spawn(cmd).finish();
    let seen = for_snapshot(&env, &String::from_utf8_lossy(&seen));
    assert!(ok, "{seen}");
    assert!(!seen.to_lowercase().contains("passphrase"), "nothing is asked: {seen}");
    assert!(seen.contains("No keys yet. Add one with `assegai --home [HOME] keys set openai`."), "{seen}");
    assert!(!env.home().join("keys.enc").exists(), "no key file was created");
    insta::assert_snapshot!("keys_list_fresh_home", seen);
}

/// A team's queue: a request held by the proxy of another host (same shared database) is shown
/// on this host's card with that proxy and the wallet it signs with, and approving it here gets
/// the agent on the other host its hash.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_held_on_another_host_shows_who_signs_it() {
    let mut a = TestEnv::on_postgres();
    a.anvil = Some(assegai_e2e::Anvil::start());
    a.write_config("");
    let b = TestEnv::beside(&a);
    b.write_config(&format!("local_rpc_url = \"{}\"\n", a.anvil().url));
    let proxy = a.start_proxy();
    let manifest =
        json!({"name": "remote", "permissions": {"chains": ["eip155:31337"]}, "spending_limits": {"daily": "1"}});
    let (agent_id, token) = a.add_agent("remote", Some(&manifest));
    let sdk = a.sdk(&proxy, &agent_id, &token);
    let call = request(&a, &sdk, "100000000000000", 1);

    // Host B runs no proxy: its queue still offers what the team's proxies hold.
    let mut screen = Screen::start(&b, &[]);
    screen.expect("Request 1 of 1");
    let card = screen.expect("Your decision");
    let from = card.lines().find(|l| l.contains("From")).unwrap_or_else(|| panic!("no From line:\n{card}"));
    assert!(from.contains("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"), "the wallet that signs: {from}");
    assert!(from.contains("signed by the proxy at "), "{from}");
    assert!(from.contains(&a.home().display().to_string()), "which host's proxy: {from}");
    approve_on(&mut screen);
    let hash = tokio::time::timeout(Duration::from_secs(30), call).await.unwrap().unwrap().unwrap();
    screen.expect(&hash.to_string());
    let (ok, seen) = screen.ctrl_c();
    assert!(ok, "{}", String::from_utf8_lossy(&seen));
    let receipt = a.anvil().rpc("eth_getTransactionReceipt", json!([hash])).await;
    assert_eq!(receipt["status"], "0x1", "{receipt}");
}
