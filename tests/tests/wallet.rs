//! The user's wallet and token allowances through the real binary: `wallet import` from standard
//! input or an encrypted keystore, the imported key signing on Anvil in place of the test account,
//! `wallet use-test-account`, bad keys refused without echoing them, and `allowance set/list`
//! overriding the manifest. The key store is the encrypted file backend (no Secret Service here).
//!
//! `tests/fixtures/wallet/keystore.json` holds Anvil's account #2 key, encrypted by alloy's
//! `PrivateKeySigner::encrypt_keystore` (Web3 Secret Storage v3, scrypt) with the password
//! [`KEYSTORE_PASSWORD`].

use std::time::Duration;

use assegai_e2e::{TestEnv, contains_bytes, wait_until, workspace_root};
use assegai_sdk::{ChainId, wire::TxRequest};
use serde_json::{Value, json};

/// Anvil's account #1: funded on every Anvil, so an imported copy can pay for a transfer.
const KEY_1: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const ADDRESS_1: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
/// Anvil's account #2, the key inside the keystore fixture.
const ADDRESS_2: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
const KEY_2: &str = "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";
const KEYSTORE_PASSWORD: &str = "correct horse battery staple";
/// Anvil's account #0, the public test account.
const TEST_ACCOUNT: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const TEST_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const RECIPIENT: &str = "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045";
const USDC: &str = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48";

/// `assegai ARGS` with `input` on standard input.
fn run_with_stdin(env: &TestEnv, args: &[&str], input: &str) -> std::process::Output {
    assegai_e2e::output_with_stdin(env.cmd(args), input.as_bytes())
}

fn wallet_json(env: &TestEnv) -> Value {
    serde_json::from_str(&env.run_ok(&["wallet", "address", "--json"])).unwrap()
}

fn keystore_fixture() -> String {
    workspace_root().join("tests/fixtures/wallet/keystore.json").to_str().unwrap().to_owned()
}

fn same(a: &Value, b: &str) -> bool {
    a.as_str().is_some_and(|a| a.eq_ignore_ascii_case(b))
}

/// Every file of the home but the encrypted key file, concatenated.
fn home_bytes(env: &TestEnv) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(env.home()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && path.file_name().unwrap() != "keys.enc" {
            all.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
    all
}

fn assert_no_key(haystack: &[u8], key: &str, where_: &str) {
    for form in [key.to_owned(), key.to_uppercase(), format!("0x{key}")] {
        assert!(!contains_bytes(haystack, form.as_bytes()), "the private key appears in {where_}");
    }
    let raw = alloy_primitives::hex::decode(key).unwrap();
    assert!(!contains_bytes(haystack, &raw), "the raw private key bytes appear in {where_}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_imported_key_signs_in_place_of_the_test_account() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let manifest = json!({"name": "payer", "permissions": {"chains": ["eip155:31337", "eip155:1"]}});
    let (id, token) = env.add_agent("payer", Some(&manifest));
    let sdk = env.sdk(&proxy, &id, &token);

    let w = wallet_json(&env);
    assert!(same(&w["address"], TEST_ACCOUNT) && w["source"] == "test-account", "{w}");
    assert!(same(&json!(sdk.wallet_address(ChainId::ANVIL).await.unwrap().to_string()), TEST_ACCOUNT));

    let out = run_with_stdin(&env, &["wallet", "import", "--stdin"], &format!("0x{KEY_1}\n"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains(ADDRESS_1), "import names the address");
    let w = wallet_json(&env);
    assert!(same(&w["address"], ADDRESS_1) && w["source"] == "imported", "{w}");

    // The running proxy was told: no restart needed, and the import signs on any chain.
    let addr = sdk.wallet_address(ChainId::ANVIL).await.unwrap();
    assert!(same(&json!(addr.to_string()), ADDRESS_1), "{addr}");
    let addr = sdk.wallet_address(ChainId::eip155(1)).await.unwrap();
    assert!(same(&json!(addr.to_string()), ADDRESS_1), "{addr}");

    let request = TxRequest {
        chain: ChainId::ANVIL,
        to: RECIPIENT.into(),
        value: "1000000000000".into(),
        data: None,
        gas_limit: None,
    };
    let call = {
        let sdk = sdk.clone();
        tokio::spawn(async move { sdk.request_transaction(&request).await })
    };
    let pending = wait_until(Duration::from_secs(10), "a pending request", || {
        let list: Value = serde_json::from_str(&env.run_ok(&["approve", "--list", "--json"])).unwrap();
        list.as_array().unwrap().first().cloned()
    });
    env.run_ok(&["approve", pending["id"].as_str().unwrap(), "--yes"]);
    let hash = tokio::time::timeout(Duration::from_secs(30), call).await.unwrap().unwrap().expect("a hash");
    let tx = env.anvil().rpc("eth_getTransactionByHash", json!([hash.to_string()])).await;
    assert!(same(&tx["from"], ADDRESS_1), "signed by the imported key: {tx}");

    // Back to the test account: refused without a terminal or --yes, done with --yes.
    let out = env.run(&["wallet", "use-test-account"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    assert!(same(&wallet_json(&env)["address"], ADDRESS_1), "nothing forgotten without consent");
    env.run_ok(&["wallet", "use-test-account", "--yes"]);
    assert!(same(&wallet_json(&env)["address"], TEST_ACCOUNT));
    let addr = sdk.wallet_address(ChainId::ANVIL).await.unwrap();
    assert!(same(&json!(addr.to_string()), TEST_ACCOUNT), "{addr}");
    let err = sdk.wallet_address(ChainId::eip155(1)).await.unwrap_err();
    assert!(err.to_string().contains("wallet import"), "{err}");

    // The key never reached the database, the logs, or the proxy's output.
    drop(sdk);
    let output = proxy.output();
    assert!(proxy.terminate(), "the proxy stops cleanly");
    assert_no_key(&home_bytes(&env), KEY_1, "the home directory");
    assert_no_key(&output, KEY_1, "the proxy's output");
}

#[test]
fn a_keystore_imports_with_its_password_only() {
    let env = TestEnv::new();
    let file = keystore_fixture();
    let out =
        env.cmd(&["wallet", "import", "--keystore", &file]).env("ASSEGAI_KEYSTORE_PASSWORD", "nope").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("wrong password"), "{err}");
    assert!(same(&wallet_json(&env)["address"], TEST_ACCOUNT), "nothing imported");

    let out = env.cmd(&["wallet", "import", "--keystore", &file]).output().unwrap();
    assert!(!out.status.success(), "no password and no terminal");
    assert!(String::from_utf8_lossy(&out.stderr).contains("ASSEGAI_KEYSTORE_PASSWORD"));

    let out = env
        .cmd(&["wallet", "import", "--keystore", &file])
        .env("ASSEGAI_KEYSTORE_PASSWORD", KEYSTORE_PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(same(&wallet_json(&env)["address"], ADDRESS_2));

    // Replacing an imported wallet needs consent.
    let out = run_with_stdin(&env, &["wallet", "import", "--stdin"], KEY_1);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    assert!(same(&wallet_json(&env)["address"], ADDRESS_2));
    let out = run_with_stdin(&env, &["wallet", "import", "--stdin", "--yes"], KEY_1);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(same(&wallet_json(&env)["address"], ADDRESS_1));
    assert_no_key(&home_bytes(&env), KEY_2, "the home directory");
}

#[test]
fn bad_keys_are_refused_without_being_echoed() {
    let env = TestEnv::new();
    let not_json = env.home().join("notes.txt");
    std::fs::write(&not_json, "hello").unwrap();
    let plain_json = env.home().join("plain.json");
    std::fs::write(&plain_json, r#"{"address":"x"}"#).unwrap();
    let cases: [(&[&str], &str, &str); 7] = [
        (&["wallet", "import", "--stdin"], "", "64 hex digits"),
        (&["wallet", "import", "--stdin"], &KEY_1[..60], "64 hex digits"),
        (&["wallet", "import", "--stdin"], &format!("{}zz", &KEY_1[..62]), "non-hex"),
        (&["wallet", "import", "--stdin"], &"0".repeat(64), "not a valid secp256k1"),
        (&["wallet", "import", "--stdin"], TEST_KEY, "use-test-account"),
        (&["wallet", "import", "--keystore", not_json.to_str().unwrap()], "", "not JSON"),
        (&["wallet", "import", "--keystore", plain_json.to_str().unwrap()], "", "not an encrypted keystore"),
    ];
    for (args, input, expected) in cases {
        let out = run_with_stdin(&env, args, input);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} {input:?} was accepted");
        assert!(err.contains(expected), "{args:?} {input:?}: {err}");
        if input.len() > 8 {
            assert!(!err.contains(&input[4..]), "the input is echoed: {err}");
        }
    }
    let out = env.run(&["wallet", "import"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--stdin"), "no terminal: points at --stdin");
    assert!(same(&wallet_json(&env)["address"], TEST_ACCOUNT), "nothing was imported");
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_allowances_win_over_the_manifest() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    // A node that really is chain 1, so the request's fees can be fixed.
    let mainnet = assegai_e2e::Anvil::start_with(&["--chain-id", "1"]);
    let manifest = json!({
        "name": "spender",
        "permissions": {"chains": ["eip155:31337", "eip155:1"], "rpcs": {"eip155:1": mainnet.url}},
        "allowances": {"eip155:1": {USDC: "1000"}},
    });
    let (id, token) = env.add_agent("spender", Some(&manifest));
    let list: Value = serde_json::from_str(&env.run_ok(&["allowance", "list", "--json"])).unwrap();
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{list}");
    assert_eq!((rows[0]["amount"].as_str(), rows[0]["source"].as_str()), (Some("1000"), Some("manifest")));
    assert_eq!(rows[0]["symbol"], "USDC");

    let transfer = |amount: u64| {
        let call = assegai_sdk::erc20::transfer_calldata(RECIPIENT.parse().unwrap(), assegai_sdk::U256::from(amount));
        json!({"chain": "eip155:1", "to": USDC, "value": "0", "data": format!("0x{}", alloy_primitives::hex::encode(call))})
    };
    let http = reqwest::Client::new();
    let ask = |body: Value| {
        http.post(format!("{}/agent/request-transaction", proxy.url))
            .header(assegai_sdk::env::HEADER_AGENT_ID, &id)
            .header(assegai_sdk::env::HEADER_AGENT_TOKEN, &token)
            .json(&body)
            .timeout(Duration::from_secs(2))
            .send()
    };
    // 10 USDC: within the manifest's 1000; the request waits for a person (the client gives up).
    let waited = ask(transfer(10_000_000)).await;
    assert!(waited.is_err(), "10 USDC waits for approval: {:?}", waited.map(|r| r.status()));
    let pending: Value = serde_json::from_str(&env.run_ok(&["approve", "--list", "--json"])).unwrap();
    assert_eq!(pending.as_array().unwrap().len(), 1);
    env.run_ok(&["reject", pending[0]["id"].as_str().unwrap()]);

    env.run_ok(&["allowance", "set", "spender", "--chain", "eip155:1", "--token", "usdc", "5"]);
    let reply = ask(transfer(10_000_000)).await.unwrap();
    assert_eq!(reply.status(), 403);
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["error"], "Requested amount exceeds the configured allowance for this token");
    let list: Value = serde_json::from_str(&env.run_ok(&["allowance", "list", "spender", "--json"])).unwrap();
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 1, "the CLI's allowance replaces the manifest's: {list}");
    assert_eq!((rows[0]["amount"].as_str(), rows[0]["source"].as_str()), (Some("5"), Some("cli")));
    assert!(same(&rows[0]["token"], USDC));

    // `agents show` puts it together: the allowance in force, what was asked and decided.
    let shown: Value = serde_json::from_str(&env.run_ok(&["agents", "show", "spender", "--json"])).unwrap();
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["paused"], false);
    assert_eq!(shown["allowances"], list, "{shown}");
    assert_eq!(shown["transactions"], json!({"rejected": 1}), "{shown}");
    let card = env.run_ok(&["agents", "show", &id]);
    for expected in ["spender", "active", "5 USDC on eip155:1 (cli)", "1 rejected", "Ethereum Mainnet (eip155:1) via "]
    {
        assert!(card.contains(expected), "`{expected}` missing from:\n{card}");
    }
    env.run_ok(&["agents", "pause", "spender"]);
    assert!(env.run_ok(&["agents", "show", "spender"]).contains("paused"));
    env.run_ok(&["agents", "resume", "spender"]);
    let out = env.run(&["agents", "show", "nobody"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no agent `nobody`"));

    // Bad input: a clear message each, and nothing changed.
    let cases: [(&[&str], &str); 6] = [
        (&["allowance", "set", "spender", "--chain", "eip155:1", "--token", "DOGE", "5"], "address instead"),
        (&["allowance", "set", "spender", "--chain", "eip155:1", "--token", "usdc", "1e6"], "plain decimal"),
        (&["allowance", "set", "spender", "--chain", "eip155:1", "--token", "usdc", "0.0000001"], "USDC"),
        (&["allowance", "set", "nobody", "--chain", "eip155:1", "--token", "usdc", "5"], "no agent"),
        (
            &[
                "allowance",
                "set",
                "spender",
                "--chain",
                "eip155:1",
                "--token",
                "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB49",
                "5",
            ],
            "checksum",
        ),
        (&["allowance", "set", "spender", "--chain", "ethereum", "--token", "usdc", "5"], "eip155"),
    ];
    for (args, expected) in cases {
        let out = env.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    let after: Value = serde_json::from_str(&env.run_ok(&["allowance", "list", "--json"])).unwrap();
    assert_eq!(after, list, "failed commands changed nothing");
    drop(proxy);
}
