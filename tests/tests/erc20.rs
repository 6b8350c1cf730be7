//! ERC-20 tokens end to end, with a real token contract on a real Anvil: the calldata comes from
//! `assegai_sdk::erc20`, the proxy reads the token's decimals from the chain (it does not know this
//! token), checks the manifest's allowance, holds the request for `assegai approve ID --yes` from
//! another process, signs with the Anvil test account and broadcasts; the SDK waits for the receipt
//! and the token balances on the chain show exactly what moved.
//!
//! The token is `tests/fixtures/erc20/Token.sol` (6 decimals, the supply minted to the deployer),
//! compiled once as described in that folder's README; it is deployed straight to Anvil from the
//! unlocked test account, never through the proxy (which refuses every sending method).
//!
//! Also here: a send that fails at broadcast leaves no nonce gap, and the test account's private
//! key never shows up in the database, the proxy's output or a reply.

use std::{
    future::Future,
    process::{Output, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use alloy_primitives::{Address, B256, U256, address, hex};
use assegai_e2e::{Proxy, TestEnv, contains_bytes};
use assegai_sdk::{
    Assegai, ChainId, Error, TxReceipt, erc20,
    wire::{TxRequest, TxStatus},
};
use reqwest::StatusCode;
use serde_json::{Value, json};

const LOCAL: &str = "eip155:31337";
/// The token's creation bytecode, as solc printed it (hex, no `0x`).
const TOKEN_BIN: &str = include_str!("../fixtures/erc20/Token.bin");
/// The Anvil test account: the deployer (so it holds every token) and the proxy's signer.
const TEST_ACCOUNT: Address = address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
/// Its private key, published by Anvil; it must never be written or shown anywhere by Assegai.
const TEST_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const RECIPIENT: Address = address!("d8dA6BF26964aF9D7eEd9e03E53415D37aA96045");
/// A spender named in `permissions.spenders`.
const LISTED_SPENDER: Address = address!("3fC91A3afd70395Cd496C647d5a6CC9D4B2b7FAD");
/// A spender that is not.
const STRANGER: Address = address!("1111111254EEB25477B68fb85Ed929f73A960582");

const EXCEEDS: &str = "Requested amount exceeds the configured allowance for this token";
const NOT_ZERO: &str = "ERC20 transfers must have a transaction value of 0";
/// The manifest's allowance for the token, in whole tokens.
const ALLOWANCE: &str = "100";

/// `whole` tokens and `micros` millionths, in base units (the token has 6 decimals).
fn tokens(whole: u64, micros: u64) -> U256 {
    U256::from(whole * 1_000_000 + micros)
}

fn quantity(v: &Value) -> U256 {
    let text = v.as_str().unwrap_or_else(|| panic!("a hex quantity, got {v}"));
    U256::from_str_radix(text.trim_start_matches("0x"), 16).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Polls an async `check` until it returns `Some`, or panics after `timeout`.
async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Where the test account's private key shows up in `bytes`, in any case, with or without `0x`,
/// as hex text or as the raw 32 bytes.
fn key_leak(bytes: &[u8]) -> Option<&'static str> {
    let raw = hex::decode(TEST_KEY).unwrap();
    if contains_bytes(bytes, &raw) {
        return Some("as raw bytes");
    }
    contains_bytes(&bytes.to_ascii_lowercase(), TEST_KEY.as_bytes()).then_some("as hex")
}

/// A registered agent: the SDK client and its raw credentials.
struct Agent {
    sdk: Assegai,
    id: String,
    token: String,
}

/// One test's world: a temp home, Anvil with the token deployed, the proxy, and everything the
/// proxy and the CLI said (scanned for the private key at the end).
struct Scene {
    env: TestEnv,
    proxy: Proxy,
    token: Address,
    http: reqwest::Client,
    seen: Mutex<Vec<u8>>,
}

impl Scene {
    async fn new() -> Self {
        let env = TestEnv::with_anvil();
        let token: Address = env.anvil().deploy(TOKEN_BIN).await.parse().unwrap();
        let proxy = env.start_proxy();
        let scene = Scene { env, proxy, token, http: reqwest::Client::new(), seen: Mutex::default() };
        assert_eq!(scene.token_balance(TEST_ACCOUNT).await, tokens(1_000_000, 0), "the deployer holds the supply");
        scene
    }

    /// A manifest on the local chain with an allowance of [`ALLOWANCE`] tokens of our token, plus
    /// `permissions` merged into its `permissions`.
    fn manifest(&self, name: &str, permissions: Value) -> Value {
        let mut m = json!({
            "name": name,
            "permissions": {"chains": [LOCAL]},
            "allowances": {LOCAL: {(self.token.to_string()): ALLOWANCE}},
        });
        for (k, v) in permissions.as_object().expect("an object") {
            m["permissions"][k] = v.clone();
        }
        m
    }

    fn agent(&self, name: &str, manifest: &Value) -> Agent {
        let (id, token) = self.env.add_agent(name, Some(manifest));
        Agent { sdk: self.env.sdk(&self.proxy, &id, &token), id, token }
    }

    fn saw(&self, bytes: &[u8]) {
        self.seen.lock().unwrap().extend_from_slice(bytes);
    }

    /// Posts a transaction request that must be answered at once (a refusal); returns the status
    /// and the JSON body.
    async fn post(&self, agent: &Agent, body: &Value) -> (StatusCode, Value) {
        let call = self
            .http
            .post(format!("{}/agent/request-transaction", self.proxy.url))
            .header("X-Assegai-Agent-ID", &agent.id)
            .header("X-Assegai-Agent-Token", &agent.token)
            .json(body)
            .send();
        let resp = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .unwrap_or_else(|_| panic!("{body} was not answered within 10 s: it seems to be held for approval"))
            .expect("the proxy answers");
        let status = resp.status();
        let bytes = resp.bytes().await.expect("a body");
        self.saw(&bytes);
        (status, serde_json::from_slice(&bytes).expect("a JSON body"))
    }

    /// Checks a refusal: 403, the policy's code, and exactly `message`.
    async fn assert_refused(&self, agent: &Agent, body: &Value, message: &str) {
        let (status, reply) = self.post(agent, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{reply}");
        assert_eq!(reply, json!({"error": message, "code": "POLICY_VIOLATION"}));
    }

    fn record(&self, out: &Output) {
        self.saw(&out.stdout);
        self.saw(&out.stderr);
    }

    fn cli(&self, args: &[&str]) -> Output {
        let out = self.env.run(args);
        self.record(&out);
        out
    }

    fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(out.status.success(), "assegai {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8")
    }

    fn json_rows(&self, args: &[&str]) -> Vec<Value> {
        match serde_json::from_str(&self.cli_ok(args)) {
            Ok(Value::Array(rows)) => rows,
            other => panic!("assegai {args:?} should print a JSON array: {other:?}"),
        }
    }

    fn pending(&self) -> Vec<Value> {
        self.json_rows(&["approve", "--list", "--json"])
    }

    /// Waits until exactly `n` requests are pending and returns them.
    async fn wait_pending(&self, n: usize) -> Vec<Value> {
        eventually(Duration::from_secs(15), &format!("{n} pending request(s)"), || async {
            let p = self.pending();
            assert!(p.len() <= n, "more pending than expected: {p:?}");
            (p.len() == n).then_some(p)
        })
        .await
    }

    /// The `txs --json` row of request `id`.
    fn tx_row(&self, id: &str) -> Value {
        let rows = self.json_rows(&["txs", "--json"]);
        rows.into_iter().find(|r| r["id"] == id).unwrap_or_else(|| panic!("{id} is not in `txs --json`"))
    }

    async fn wait_status(&self, id: &str, status: &str) -> Value {
        eventually(Duration::from_secs(20), &format!("{id} to be {status}"), || async {
            let row = self.tx_row(id);
            (row["status"] == status).then_some(row)
        })
        .await
    }

    async fn anvil(&self, method: &str, params: Value) -> Value {
        self.env.anvil().rpc(method, params).await
    }

    /// `balanceOf(owner)` of the token, read from Anvil directly.
    async fn token_balance(&self, owner: Address) -> U256 {
        let call = json!({"to": self.token, "data": erc20::balance_of_calldata(owner)});
        quantity(&self.anvil("eth_call", json!([call, "latest"])).await)
    }

    async fn native_balance(&self, owner: Address) -> U256 {
        quantity(&self.anvil("eth_getBalance", json!([owner, "latest"])).await)
    }

    async fn block_number(&self) -> U256 {
        quantity(&self.anvil("eth_blockNumber", json!([])).await)
    }

    async fn nonce(&self, tag: &str) -> u64 {
        quantity(&self.anvil("eth_getTransactionCount", json!([TEST_ACCOUNT, tag])).await).to()
    }

    /// The private key is nowhere: not in the database files, not in the proxy's output, not in
    /// any reply or CLI output this test saw.
    fn assert_no_key_leaked(&self) {
        assert_eq!(key_leak(&self.env.database_bytes()), None, "the private key is in the database");
        assert_eq!(key_leak(&self.proxy.output()), None, "the private key is in the proxy's output");
        assert_eq!(key_leak(&self.seen.lock().unwrap()), None, "the private key is in a reply or CLI output");
    }
}

/// Sends `request` with the SDK in the background (it blocks until a person decides).
fn spawn_request(agent: &Agent, request: TxRequest) -> tokio::task::JoinHandle<assegai_sdk::Result<B256>> {
    let sdk = agent.sdk.clone();
    tokio::spawn(async move { sdk.request_transaction(&request).await })
}

async fn answer(call: tokio::task::JoinHandle<assegai_sdk::Result<B256>>, scene: &Scene) -> assegai_sdk::Result<B256> {
    let result = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the agent's call to be answered within 30 s")
        .expect("the request task");
    scene.saw(format!("{result:?}").as_bytes());
    result
}

fn id_of(entry: &Value) -> &str {
    entry["id"].as_str().unwrap_or_else(|| panic!("no id in {entry}"))
}

#[test]
fn the_key_scanner_finds_the_key_in_any_form() {
    let planted = format!("{{\"k\":\"0X{}\"}}", TEST_KEY.to_uppercase());
    assert_eq!(key_leak(planted.as_bytes()), Some("as hex"));
    let mut raw = b"prefix".to_vec();
    raw.extend(hex::decode(TEST_KEY).unwrap());
    assert_eq!(key_leak(&raw), Some("as raw bytes"));
    assert_eq!(key_leak(&TEST_KEY.as_bytes()[..63]), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_transfer_within_the_allowance_is_approved_mined_and_confirmed() {
    let scene = Scene::new().await;
    let agent = scene.agent("payer", &scene.manifest("payer", json!({})));
    let amount = tokens(12, 500_000);
    let before = (scene.token_balance(RECIPIENT).await, scene.token_balance(TEST_ACCOUNT).await);

    let call = spawn_request(&agent, erc20::transfer_request(ChainId::ANVIL, scene.token, RECIPIENT, amount));
    let entry = scene.wait_pending(1).await.remove(0);
    // The proxy does not know this token: it read the 6 decimals from the chain.
    let token = scene.token;
    assert_eq!(entry["action"], format!("Transfer 12.5 tokens of {token} to {RECIPIENT}"), "{entry}");
    assert_eq!(entry["detail"]["token"]["decimals"], 6, "{entry}");
    assert_eq!(entry["detail"]["token"]["amount"], amount.to_string(), "{entry}");
    assert_eq!((&entry["to"], &entry["value"]), (&json!(token.to_checksum(None)), &json!("0")), "{entry}");
    // Simulated before it was shown: the wallet loses exactly 12.5 of the token, and no ether.
    let sim = &entry["simulation"];
    assert_eq!(sim["native_wei"], "0", "{entry}");
    assert_eq!(
        sim["tokens"],
        json!([{"address": token.to_checksum(None), "change": format!("-{amount}"),
        "symbol": format!("tokens of {token}"), "decimals": 6}]),
        "{entry}"
    );
    let card = scene.cli_ok(&["approve", "--list"]);
    assert!(!card.is_empty());
    assert!(!call.is_finished(), "the agent's call waits for the decision");

    let id = id_of(&entry).to_owned();
    let printed = scene.cli_ok(&["approve", &id, "--yes"]);
    let hash = answer(call, &scene).await.expect("a hash");
    assert_eq!(printed.trim(), hash.to_string(), "approve prints the hash");

    let receipt: TxReceipt =
        agent.sdk.wait_for_receipt(ChainId::ANVIL, hash, Duration::from_secs(30)).await.expect("a receipt");
    assert!(receipt.success, "{receipt:?}");
    assert_eq!(receipt.tx_hash, hash);
    // The SDK's receipt says what Anvil's own says.
    let direct = scene.anvil("eth_getTransactionReceipt", json!([hash])).await;
    assert_eq!(U256::from(receipt.block_number), quantity(&direct["blockNumber"]), "{direct}");
    assert_eq!(U256::from(receipt.gas_used), quantity(&direct["gasUsed"]), "{direct}");
    assert!(receipt.gas_used > 21_000, "a token transfer costs more than a plain send: {receipt:?}");
    assert_eq!(direct["to"].as_str().map(str::to_lowercase), Some(token.to_string().to_lowercase()));

    let after = (scene.token_balance(RECIPIENT).await, scene.token_balance(TEST_ACCOUNT).await);
    assert_eq!(after.0 - before.0, amount, "the recipient got exactly 12.5 tokens");
    assert_eq!(before.1 - after.1, amount, "the wallet paid exactly 12.5 tokens");

    let row = scene.wait_status(&id, "confirmed").await;
    assert_eq!(row["tx_hash"], hash.to_string(), "{row}");
    let info = agent.sdk.transaction(&id).await.unwrap();
    assert_eq!((info.status, info.tx_hash), (TxStatus::Confirmed, Some(hash)));
    scene.assert_no_key_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wait_for_receipt_gives_up_on_a_hash_that_is_never_mined() {
    let scene = Scene::new().await;
    let agent = scene.agent("waiter", &scene.manifest("waiter", json!({})));
    let unknown = B256::repeat_byte(0x42);
    let started = Instant::now();
    let err = agent.sdk.wait_for_receipt(ChainId::ANVIL, unknown, Duration::from_millis(1500)).await.unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(&err, Error::ReceiptTimeout { tx_hash, .. } if *tx_hash == unknown), "{err:?}");
    assert!(waited >= Duration::from_millis(1500) && waited < Duration::from_secs(5), "gave up after {waited:?}");
    // A chain the manifest does not allow is refused at once, not waited on.
    let err = agent.sdk.wait_for_receipt(ChainId::eip155(1), unknown, Duration::from_secs(30)).await.unwrap_err();
    assert!(matches!(&err, Error::Forbidden { .. }), "{err:?}");
    scene.assert_no_key_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transfer_beyond_the_allowance_is_refused_and_nothing_moves() {
    let scene = Scene::new().await;
    let agent = scene.agent("greedy", &scene.manifest("greedy", json!({})));
    let before = (scene.token_balance(RECIPIENT).await, scene.block_number().await);

    // One base unit over 100 tokens.
    let over = erc20::transfer_request(ChainId::ANVIL, scene.token, RECIPIENT, tokens(100, 1));
    scene.assert_refused(&agent, &json!(over), EXCEEDS).await;
    let err = agent.sdk.request_transaction(&over).await.unwrap_err();
    assert!(matches!(&err, Error::Forbidden { reason, code } if reason == EXCEEDS && code == "POLICY_VIOLATION"));
    assert!(scene.pending().is_empty(), "nothing is held for approval");
    assert!(scene.json_rows(&["txs", "--json"]).is_empty(), "nothing is recorded");

    // Exactly the allowance is fine: held for a person.
    let call = spawn_request(&agent, erc20::transfer_request(ChainId::ANVIL, scene.token, RECIPIENT, tokens(100, 0)));
    let entry = scene.wait_pending(1).await.remove(0);
    assert_eq!(entry["action"], format!("Transfer 100 tokens of {} to {RECIPIENT}", scene.token));
    scene.cli_ok(&["reject", id_of(&entry)]);
    assert!(matches!(answer(call, &scene).await, Err(Error::Rejected { .. })));

    assert_eq!((scene.token_balance(RECIPIENT).await, scene.block_number().await), before, "nothing moved");
    scene.assert_no_key_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_transfer_carrying_native_value_is_refused() {
    let scene = Scene::new().await;
    let agent = scene.agent("mixer", &scene.manifest("mixer", json!({})));
    let before = (scene.token_balance(RECIPIENT).await, scene.native_balance(RECIPIENT).await);

    let mut request = erc20::transfer_request(ChainId::ANVIL, scene.token, RECIPIENT, tokens(1, 0));
    request.value = "1".into();
    scene.assert_refused(&agent, &json!(request), NOT_ZERO).await;
    assert!(scene.pending().is_empty());
    assert_eq!((scene.token_balance(RECIPIENT).await, scene.native_balance(RECIPIENT).await), before);
    scene.assert_no_key_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unlimited_approvals_need_a_listed_spender_and_bounded_ones_fit_the_allowance() {
    let scene = Scene::new().await;
    let manifest = scene.manifest("approver", json!({"spenders": [LISTED_SPENDER]}));
    let agent = scene.agent("approver", &manifest);
    let token = scene.token;
    let block = scene.block_number().await;

    let unlimited = erc20::approve_request(ChainId::ANVIL, token, STRANGER, U256::MAX);
    let (status, body) = scene.post(&agent, &json!(unlimited)).await;
    assert_eq!((status, &body["code"]), (StatusCode::FORBIDDEN, &json!("POLICY_VIOLATION")), "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(message.contains(&STRANGER.to_string()) && message.contains("permissions.spenders"), "{message}");
    // Over the allowance, bounded: refused as any transfer would be.
    let over = erc20::approve_request(ChainId::ANVIL, token, STRANGER, tokens(100, 1));
    scene.assert_refused(&agent, &json!(over), EXCEEDS).await;
    assert!(scene.pending().is_empty());

    // Unlimited to the listed spender: held for a person, who sees it is unlimited.
    let call = spawn_request(&agent, erc20::approve_request(ChainId::ANVIL, token, LISTED_SPENDER, U256::MAX));
    let entry = scene.wait_pending(1).await.remove(0);
    assert_eq!(entry["action"], format!("Approve {LISTED_SPENDER} to spend unlimited tokens of {token}"));
    scene.cli_ok(&["reject", id_of(&entry)]);
    assert!(matches!(answer(call, &scene).await, Err(Error::Rejected { .. })));

    // Bounded, to anyone: held; rejected, the SDK says so.
    let call = spawn_request(&agent, erc20::approve_request(ChainId::ANVIL, token, STRANGER, tokens(50, 0)));
    let entry = scene.wait_pending(1).await.remove(0);
    assert_eq!(entry["action"], format!("Approve {STRANGER} to spend 50 tokens of {token}"));
    let id = id_of(&entry).to_owned();
    scene.cli_ok(&["reject", &id]);
    let err = answer(call, &scene).await.unwrap_err();
    assert!(matches!(&err, Error::Rejected { message } if message == "Transaction rejected by user"), "{err:?}");
    assert_eq!(scene.tx_row(&id)["status"], "rejected");

    assert_eq!(scene.block_number().await, block, "nothing was signed or mined");
    scene.assert_no_key_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn other_calldata_goes_only_to_whitelisted_contracts() {
    let scene = Scene::new().await;
    let token = scene.token;
    // `name()`: calldata for the token contract that moves no tokens, so the whitelist decides.
    let request = TxRequest {
        chain: ChainId::ANVIL,
        to: token.to_string(),
        value: "0".into(),
        data: Some("0x06fdde03".into()),
        gas_limit: None,
    };

    let outsider = scene.agent("outsider", &scene.manifest("outsider", json!({})));
    let whitelist = format!(
        "Contract {token} is not whitelisted for this agent (add it to `permissions.contracts` in assegai.json)"
    );
    scene.assert_refused(&outsider, &json!(request), &whitelist).await;
    assert!(scene.pending().is_empty());

    let insider = scene.agent("insider", &scene.manifest("insider", json!({"contracts": [token]})));
    let call = spawn_request(&insider, request);
    let entry = scene.wait_pending(1).await.remove(0);
    assert_eq!(entry["action"], format!("Call 0x06fdde03 on {token}"));
    assert_eq!(entry["agent_id"], insider.id.as_str());
    scene.cli_ok(&["reject", id_of(&entry)]);
    assert!(matches!(answer(call, &scene).await, Err(Error::Rejected { .. })));
    scene.assert_no_key_leaked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_broadcast_leaves_no_nonce_gap_and_concurrent_approvals_get_consecutive_nonces() {
    let scene = Scene::new().await;
    let limits = json!({"per_transaction": "100000", "daily": "1000000"});
    let mut manifest = scene.manifest("spender", json!({}));
    manifest["spending_limits"] = limits;
    let agent = scene.agent("spender", &manifest);
    let nonce = scene.nonce("latest").await;

    // 20 000 ETH: the policy allows it, the wallet (10 000 ETH) cannot pay it. With the gas limit
    // given, nothing is estimated, so it is the broadcast that fails.
    let wallet = scene.native_balance(TEST_ACCOUNT).await;
    let too_much = wallet * U256::from(2);
    let request = TxRequest {
        chain: ChainId::ANVIL,
        to: RECIPIENT.to_string(),
        value: too_much.to_string(),
        data: None,
        gas_limit: Some("21000".into()),
    };
    let call = spawn_request(&agent, request);
    let entry = scene.wait_pending(1).await.remove(0);
    let id = id_of(&entry).to_owned();
    let out = scene.cli(&["approve", &id, "--yes"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(!out.status.success(), "approving a send that cannot be paid fails");
    assert!(stderr.contains("failed") && stderr.contains("insufficient funds"), "{stderr}");
    let err = answer(call, &scene).await.unwrap_err();
    assert!(
        matches!(&err, Error::Server { status: 500, message, code }
            if code == "TX_FAILED" && message.to_lowercase().contains("insufficient funds")),
        "{err:?}"
    );
    let row = scene.wait_status(&id, "failed").await;
    assert!(row["error"].as_str().is_some_and(|e| e.to_lowercase().contains("insufficient funds")), "{row}");
    assert!(row["tx_hash"].is_null(), "{row}");
    assert_eq!((scene.nonce("latest").await, scene.nonce("pending").await), (nonce, nonce), "no nonce was used");

    // Two requests, approved at the same time from two processes.
    let small = TxRequest {
        chain: ChainId::ANVIL,
        to: RECIPIENT.to_string(),
        value: "100000000000000".into(),
        data: None,
        gas_limit: None,
    };
    let calls = [spawn_request(&agent, small.clone()), spawn_request(&agent, small)];
    let two = scene.wait_pending(2).await;
    let approvers: Vec<_> = two
        .iter()
        .map(|e| {
            let mut approve = scene.env.cmd(&["approve", id_of(e), "--yes"]);
            approve.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("starting assegai approve")
        })
        .collect();
    let mut printed = Vec::new();
    for approver in approvers {
        let out = approver.wait_with_output().expect("assegai approve");
        scene.record(&out);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        printed.push(String::from_utf8(out.stdout).unwrap().trim().to_owned());
    }
    let mut hashes = Vec::new();
    for call in calls {
        hashes.push(answer(call, &scene).await.expect("a hash"));
    }
    let mut from_agent: Vec<String> = hashes.iter().map(B256::to_string).collect();
    from_agent.sort();
    printed.sort();
    assert_eq!(from_agent, printed, "each approver printed the hash its agent got");

    let mut nonces = Vec::new();
    for hash in hashes {
        let receipt = agent.sdk.wait_for_receipt(ChainId::ANVIL, hash, Duration::from_secs(30)).await.unwrap();
        assert!(receipt.success, "{receipt:?}");
        let tx = scene.anvil("eth_getTransactionByHash", json!([hash])).await;
        nonces.push(quantity(&tx["nonce"]).to::<u64>());
    }
    nonces.sort();
    assert_eq!(nonces, vec![nonce, nonce + 1], "the failed send left no gap and the two got distinct nonces");
    for e in &two {
        scene.wait_status(id_of(e), "confirmed").await;
    }
    scene.assert_no_key_leaked();
}

/// `allowance(owner, spender)` of the scene's token, read from Anvil directly.
async fn on_chain_allowance(scene: &Scene, owner: Address, spender: Address) -> U256 {
    let data = format!("0xdd62ed3e{:0>64}{:0>64}", hex::encode(owner), hex::encode(spender));
    quantity(&scene.anvil("eth_call", json!([{"to": scene.token, "data": data}, "latest"])).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approvals_outlive_the_agent_until_revoked_with_a_person_s_approval() {
    let scene = Scene::new().await;
    let agent = scene.agent("granter", &scene.manifest("granter", json!({})));
    let token = scene.token;

    // The agent gets an approval of 50 tokens for a spender through.
    let call = spawn_request(&agent, erc20::approve_request(ChainId::ANVIL, token, STRANGER, tokens(50, 0)));
    let entry = scene.wait_pending(1).await.remove(0);
    scene.cli_ok(&["approve", id_of(&entry), "--yes"]);
    answer(call, &scene).await.expect("a hash");
    scene.wait_status(id_of(&entry), "confirmed").await;
    assert_eq!(on_chain_allowance(&scene, TEST_ACCOUNT, STRANGER).await, tokens(50, 0));

    // `agents show` reads it back from the chain.
    let shown: Value = serde_json::from_str(&scene.cli_ok(&["agents", "show", "granter", "--json"])).unwrap();
    let granted = &shown["approvals_granted"];
    assert_eq!(granted.as_array().map(Vec::len), Some(1), "{shown}");
    assert_eq!(granted[0]["spender"], STRANGER.to_checksum(None));
    assert_eq!(granted[0]["token"], token.to_checksum(None));
    assert_eq!(granted[0]["remaining"], tokens(50, 0).to_string());
    let text = scene.cli_ok(&["agents", "show", "granter"]);
    assert!(text.contains(&format!("{STRANGER} may spend 50 tokens of {token}")), "{text}");

    // Revoking queues approve(spender, 0): nothing is signed until a person approves it.
    let block = scene.block_number().await;
    let out: Value = serde_json::from_str(&scene.cli_ok(&["agents", "revoke-approvals", "granter", "--json"])).unwrap();
    assert_eq!(out["queued"], 1, "{out}");
    let revoke = scene.wait_pending(1).await.remove(0);
    assert_eq!(revoke["action"], format!("Approve {STRANGER} to spend 0 tokens of {token}"), "{revoke}");
    assert_eq!(scene.block_number().await, block, "waiting for a person, nothing mined");
    scene.cli_ok(&["approve", id_of(&revoke), "--yes"]);
    scene.wait_status(id_of(&revoke), "confirmed").await;
    assert_eq!(on_chain_allowance(&scene, TEST_ACCOUNT, STRANGER).await, U256::ZERO);
    let shown: Value = serde_json::from_str(&scene.cli_ok(&["agents", "show", "granter", "--json"])).unwrap();
    assert_eq!(shown["approvals_granted"][0]["remaining"], "0", "{shown}");
    // Nothing left: nothing more to queue.
    let again = scene.cli(&["agents", "revoke-approvals", "granter"]);
    assert!(again.status.success() && String::from_utf8_lossy(&again.stderr).contains("Nothing to revoke"));
    scene.assert_no_key_leaked();
}
