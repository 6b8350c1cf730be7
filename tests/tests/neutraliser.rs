//! What a person reads is what is true: an agent whose name and log lines carry control
//! characters, escape sequences, bidi controls and invisible characters shows them as visible
//! escapes on every surface — `assegai logs`, `logs --json`, `agents list` (table and JSON), and
//! the approve card in a real pseudo-terminal. Checked on the bytes each one wrote.

use std::{process::Command, time::Duration};

use assegai_e2e::{TEST_PASSPHRASE, TestEnv, assegai_bin, wait_until};
use assegai_sdk::{ChainId, LogLevel, wire::TxRequest};
use rexpect::session::spawn_command;
use serde_json::{Value, json};

/// The agent's name: `alice`, a zero-width space and a right-to-left override (it would read as
/// `alice`).
const NAME: &str = "alice\u{200b}\u{202e}";

/// Code points that must never reach a person's terminal as themselves.
const HIDDEN: &[char] = &[
    '\u{200b}',
    '\u{200c}',
    '\u{200d}',
    '\u{2060}',
    '\u{feff}',
    '\u{061c}',
    '\u{2028}',
    '\u{2029}',
    '\u{202e}',
    '\u{2066}',
    '\u{e0041}',
    '\u{e0042}',
    '\u{e007f}',
    '\u{3164}',
    '\u{ffa0}',
    '\u{00ad}',
    '\u{009b}',
    '\u{0085}',
    '\u{0090}',
    '\u{007f}',
    '\u{0007}',
    '\u{0008}',
    '\u{001b}',
];

/// Which of [`HIDDEN`] appear in `bytes`; `allow_terminal` ignores ESC, BEL and BS, which a
/// program's own terminal handling writes (cursor moves, clearing a prompt).
fn hidden_in(bytes: &[u8], allow_terminal: bool) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    HIDDEN
        .iter()
        .filter(|c| !(allow_terminal && matches!(c, '\u{1b}' | '\u{7}' | '\u{8}')))
        .filter(|c| text.contains(**c))
        .map(|c| format!("U+{:04X}", u32::from(*c)))
        .collect()
}

fn message() -> String {
    // Everything the issue found passing raw, plus the classics.
    let mut m = String::from("pay\u{200b}ment\u{200c}\u{200d}\u{2060}\u{feff}\u{061c} line\u{2028}two\u{2029}");
    m.push_str("tags:\u{e0041}\u{e0042}\u{e007f} filler:\u{3164}\u{ffa0} shy:\u{00ad}");
    m.push_str(" c1:\u{009b}31m\u{0085}\u{0090} del:\u{007f} bel:\u{0007} bs:\u{0008}");
    m.push_str(" esc:\u{001b}[2J\u{001b}]0;owned\u{0007} bidi:\u{202e}gnp.exe\u{2066}");
    m
}

#[tokio::test(flavor = "multi_thread")]
async fn invisible_text_is_visible_on_every_surface() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let (id, token) = env.add_agent(NAME, None);
    let sdk = env.sdk(&proxy, &id, &token);
    let msg = message();
    sdk.log(LogLevel::Warn, &msg, Some(json!({"note\u{200b}": "x\u{202e}y\u{e0041}", "n": 1}))).await.unwrap();

    // `assegai logs`, as a person reads it.
    let human = wait_until(Duration::from_secs(10), "the line in `assegai logs`", || {
        let out = env.run(&["logs"]);
        (out.status.success() && String::from_utf8_lossy(&out.stdout).contains("tags:")).then_some(out.stdout)
    });
    let text = String::from_utf8_lossy(&human).into_owned();
    assert!(hidden_in(&human, false).is_empty(), "{:?} in {text:?}", hidden_in(&human, false));
    for shown in [
        "[alice\\u{200b}\\u{202e}]",
        "pay\\u{200b}ment\\u{200c}\\u{200d}\\u{2060}\\u{feff}\\u{61c}",
        "line\\u{2028}two\\u{2029}",
        "tags:\\u{e0041}\\u{e0042}\\u{e007f}",
        "filler:\\u{3164}\\u{ffa0}",
        "shy:\\u{ad}",
        "c1:\\x9b31m\\x85\\x90",
        "del:\\x7f bel:\\x07 bs:\\x08",
        "esc:\\x1b[2J\\x1b]0;owned\\x07",
        "bidi:\\u{202e}gnp.exe\\u{2066}",
        "note\\u{200b}",
    ] {
        assert!(text.contains(shown), "`{shown}` not in {text:?}");
    }

    // `assegai logs --json`: the same data for a program, `\u` escapes on the terminal.
    let out = env.run(&["logs", "--json"]);
    assert!(out.status.success());
    assert!(hidden_in(&out.stdout, false).is_empty(), "{:?} in {:?}", hidden_in(&out.stdout, false), out.stdout);
    let line = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        line.contains(r"\u009b31m\u0085") && line.contains(r"\u202egnp.exe") && line.contains(r"\udb40\udc41"),
        "{line}"
    );
    let row: Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(row["message"], msg.as_str(), "the data itself is unchanged");
    assert_eq!(row["agent_name"], NAME);
    assert_eq!(row["data"]["note\u{200b}"], "x\u{202e}y\u{e0041}");

    // `agents list`, both forms.
    let out = env.run(&["agents", "list"]);
    assert!(out.status.success());
    assert!(hidden_in(&out.stdout, false).is_empty(), "{:?}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("alice\\u{200b}\\u{202e}"));
    let out = env.run(&["agents", "list", "--json"]);
    assert!(out.status.success());
    assert!(hidden_in(&out.stdout, false).is_empty(), "{:?}", String::from_utf8_lossy(&out.stdout));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(list.as_array().unwrap().iter().any(|a| a["name"] == NAME), "{list}");

    // The approve card, in a real terminal.
    let request = TxRequest {
        chain: ChainId::ANVIL,
        to: "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045".into(),
        value: "1000".into(),
        data: None,
        gas_limit: None,
    };
    let sdk2 = sdk.clone();
    let call = tokio::spawn(async move { sdk2.request_transaction(&request).await });
    tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(15), "the request to be pending", || {
            let out = env.run_ok(&["approve", "--list", "--json"]);
            (serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().len() == 1).then_some(())
        })
    });
    let mut cmd = Command::new(assegai_bin());
    cmd.arg("approve")
        .env("ASSEGAI_HOME", env.home())
        .env("ASSEGAI_PASSPHRASE", TEST_PASSPHRASE)
        .env("NO_COLOR", "1")
        .env("TERM", "xterm");
    let mut session = spawn_command(cmd, Some(30_000)).expect("assegai approve in a pty");
    // rexpect hands bytes over one per `char`; spell the needle the same way and recover them.
    let bytes_of = |s: String| s.chars().map(|c| c as u8).collect::<Vec<u8>>();
    let card = tokio::task::block_in_place(|| session.exp_string("Reject all")).expect("the approve card");
    let card = bytes_of(card);
    let shown = String::from_utf8_lossy(&card).into_owned();
    assert!(shown.contains(&format!("alice\\u{{200b}}\\u{{202e}} ({id})")), "{shown}");
    assert!(hidden_in(&card, true).is_empty(), "{:?} on the card: {shown:?}", hidden_in(&card, true));
    session.send_control('c').unwrap();
    drop(session);
    env.run_ok(&["reject", &pending_id(&env)]);
    let err = tokio::time::timeout(Duration::from_secs(30), call).await.unwrap().unwrap().unwrap_err();
    assert!(matches!(err, assegai_sdk::Error::Rejected { .. }), "{err:?}");

    // The proxy's console shows the line inert too.
    let console = wait_until(Duration::from_secs(10), "the line on the proxy console", || {
        let out = proxy.output();
        String::from_utf8_lossy(&out).contains("tags:").then_some(out)
    });
    assert!(hidden_in(&console, false).is_empty(), "{:?}", hidden_in(&console, false));
}

fn pending_id(env: &TestEnv) -> String {
    let out = env.run_ok(&["approve", "--list", "--json"]);
    serde_json::from_str::<Value>(&out).unwrap()[0]["id"].as_str().unwrap().to_owned()
}
