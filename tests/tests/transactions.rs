//! Transaction requests against the real binary and a real Anvil: the policy checks of SPEC §3.4 in
//! their order and with their messages, the queue a person decides on (`approve --list`, `reject`),
//! expiry on timeout and on a restart, and the atomic limit check under concurrency. Nothing here is
//! approved or signed.

use std::{
    process::Command,
    sync::mpsc,
    time::{Duration, Instant},
};

use alloy_primitives::{U256, hex};
use assegai_e2e::{Proxy, TestEnv, wait_until};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

const LOCAL: &str = "eip155:31337";
const MAINNET: &str = "eip155:1";
const POLYGON: &str = "eip155:137";
/// USDC on Ethereum (6 decimals), the token the allowances below are for.
const USDC: &str = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48";
/// USDT on Ethereum: no allowance anywhere.
const USDT: &str = "0xdAC17F958D2ee523a2206206994597C13D831ec7";
/// An NFT collection, whitelisted as a contract in the token tests.
const NFT: &str = "0xBC4CA0EdA7647A8aB7C2061c2E118A18a936f13D";
/// A spender named in `permissions.spenders`.
const LISTED_SPENDER: &str = "0x3fC91A3afd70395Cd496C647d5a6CC9D4B2b7FAD";
/// A spender that is not.
const STRANGER: &str = "0x1111111254EEB25477B68fb85Ed929f73A960582";
const RECIPIENT: &str = "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045";
/// In `permissions.contracts` of the local agents.
const CONTRACT: &str = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
/// Not in any `permissions.contracts`.
const OTHER_CONTRACT: &str = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512";

const TRANSFER: &str = "a9059cbb";
const APPROVE: &str = "095ea7b3";
const INCREASE_ALLOWANCE: &str = "39509351";
const TRANSFER_FROM: &str = "23b872dd";
const SET_APPROVAL_FOR_ALL: &str = "a22cb465";

/// 1000 USDC, the whole allowance, in base units.
const USDC_ALLOWANCE: u64 = 1_000_000_000;

const REJECTED_BODY: &str = r#"{"error":"Transaction rejected by user","code":"REJECTED"}"#;
const TIMEOUT_BODY: &str = r#"{"error":"Transaction approval timeout","code":"APPROVAL_TIMEOUT"}"#;

/// `tenths` × 0.1 ETH, in wei.
fn tenths(tenths: u128) -> String {
    (tenths * 100_000_000_000_000_000).to_string()
}

fn word_address(address: &str) -> String {
    format!("{:0>64}", address.trim_start_matches("0x").to_lowercase())
}

fn word_uint(n: U256) -> String {
    hex::encode(n.to_be_bytes::<32>())
}

fn calldata(selector: &str, words: &[String]) -> String {
    format!("0x{selector}{}", words.concat())
}

fn transfer(to: &str, amount: U256) -> String {
    calldata(TRANSFER, &[word_address(to), word_uint(amount)])
}

fn approve(spender: &str, amount: U256) -> String {
    calldata(APPROVE, &[word_address(spender), word_uint(amount)])
}

fn usdc(base_units: u64) -> U256 {
    U256::from(base_units)
}

/// A native send on the local chain.
fn send(to: &str, wei: &str) -> Value {
    json!({"chain": LOCAL, "to": to, "value": wei})
}

/// A call with calldata (and the gas limit the TypeScript SDK always sends, so no estimate is
/// needed on chains without an RPC).
fn call(chain: &str, to: &str, data: &str) -> Value {
    json!({"chain": chain, "to": to, "value": "0", "data": data, "gasLimit": "100000"})
}

type Reply = (StatusCode, Value);

#[derive(Clone)]
struct Agent {
    client: reqwest::Client,
    base: String,
    name: String,
    id: String,
    token: String,
}

impl Agent {
    fn new(env: &TestEnv, proxy: &Proxy, name: &str, manifest: Value) -> Self {
        let (id, token) = env.add_agent(name, Some(&manifest));
        Agent { client: reqwest::Client::new(), base: proxy.url.clone(), name: name.to_owned(), id, token }
    }

    /// The same agent, talking to another proxy process.
    fn on(&self, proxy: &Proxy) -> Self {
        Agent { client: reqwest::Client::new(), base: proxy.url.clone(), ..self.clone() }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Reply, String> {
        let resp = req
            .header("X-Assegai-Agent-ID", &self.id)
            .header("X-Assegai-Agent-Token", &self.token)
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| format!("{e:?}"))?;
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("every reply is JSON, got {status} {:?}", String::from_utf8_lossy(&bytes)));
        Ok((status, body))
    }

    async fn post_raw(&self, body: String) -> Result<Reply, String> {
        let url = format!("{}/agent/request-transaction", self.base);
        self.send(self.client.post(url).header("content-type", "application/json").body(body)).await
    }

    /// A request that must be answered at once (refused): one held for approval fails the test.
    async fn request_raw(&self, body: String) -> Reply {
        match tokio::time::timeout(Duration::from_secs(10), self.post_raw(body.clone())).await {
            Ok(reply) => reply.expect("the proxy answers"),
            Err(_) => panic!("{body} was not answered within 10 s: it seems to be held for approval"),
        }
    }

    async fn request(&self, body: &Value) -> Reply {
        self.request_raw(body.to_string()).await
    }

    /// A request that may block until a person decides.
    fn spawn_request(&self, body: &Value) -> JoinHandle<Result<Reply, String>> {
        let (agent, body) = (self.clone(), body.to_string());
        tokio::spawn(async move { agent.post_raw(body).await })
    }

    async fn transaction(&self, id: &str) -> Reply {
        let url = format!("{}/agent/transactions/{id}", self.base);
        self.send(self.client.get(url)).await.expect("the proxy answers")
    }
}

/// The id of a listed request, whether the CLI prints it as a string or a number.
fn id_of(entry: &Value) -> String {
    match &entry["id"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("no usable `id` in {entry}: {other}"),
    }
}

fn json_array(text: &str, what: &str) -> Vec<Value> {
    match serde_json::from_str(text) {
        Ok(Value::Array(items)) => items,
        _ => panic!("{what} should print a JSON array, printed {text:?}"),
    }
}

/// `assegai approve --list --json`.
fn pending_list(env: &TestEnv) -> Vec<Value> {
    json_array(&env.run_ok(&["approve", "--list", "--json"]), "approve --list --json")
}

/// `assegai txs --json ARGS`.
fn txs(env: &TestEnv, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["txs", "--json"];
    all.extend_from_slice(args);
    json_array(&env.run_ok(&all), "txs --json")
}

fn same_address(a: &Value, b: &str) -> bool {
    a.as_str().is_some_and(|a| a.eq_ignore_ascii_case(b))
}

/// A request held for a person: its listing and the agent's blocked call.
struct Pending {
    id: String,
    entry: Value,
    call: JoinHandle<Result<Reply, String>>,
}

/// Sends `body` and waits until it is listed by `approve --list --json`; fails if the call is
/// answered instead.
async fn expect_pending(env: &TestEnv, agent: &Agent, body: &Value) -> Pending {
    let call = agent.spawn_request(body);
    let to = body["to"].as_str().unwrap();
    let value = body["value"].as_str().unwrap();
    let found = wait_until(Duration::from_secs(15), &format!("{body} to be listed as pending"), || {
        if call.is_finished() {
            return Some(None);
        }
        let matches: Vec<Value> = pending_list(env)
            .into_iter()
            .filter(|e| e["agent"] == agent.name.as_str() && same_address(&e["to"], to) && e["value"] == value)
            .collect();
        assert!(matches.len() <= 1, "one request, several pending entries: {matches:?}");
        matches.into_iter().next().map(Some)
    });
    match found {
        Some(entry) => Pending { id: id_of(&entry), entry, call },
        None => {
            let answer = outcome(call).await;
            panic!("{body} was answered instead of held for approval: {answer:?}")
        }
    }
}

/// What the blocked call finally got.
async fn outcome(call: JoinHandle<Result<Reply, String>>) -> Result<Reply, String> {
    tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the blocked call to be answered within 20 s")
        .expect("the request task")
}

/// Rejects a pending request with the CLI and checks the agent's call gets 403 REJECTED.
async fn reject(env: &TestEnv, pending: Pending) {
    env.run_ok(&["reject", &pending.id]);
    let reply = outcome(pending.call).await.expect("the proxy answers");
    assert_eq!(reply, (StatusCode::FORBIDDEN, serde_json::from_str(REJECTED_BODY).unwrap()), "{}", pending.id);
}

fn assert_error(reply: &Reply, status: StatusCode, code: &str, message_part: &str) {
    assert_eq!(reply.0, status, "{}", reply.1);
    assert_eq!(reply.1["code"], code, "{}", reply.1);
    let msg = reply.1["error"].as_str().unwrap_or_else(|| panic!("an error message in {}", reply.1));
    assert!(msg.contains(message_part), "expected {message_part:?} in {msg:?}");
}

/// A policy refusal with exactly this message.
fn assert_policy(reply: &Reply, message: &str) {
    assert_eq!(reply.0, StatusCode::FORBIDDEN, "{}", reply.1);
    assert_eq!(reply.1, json!({"error": message, "code": "POLICY_VIOLATION"}));
}

/// Whether `msg` names `field` as a word of its own (`to` in "`to` is not an address").
fn names_field(msg: &str, field: &str) -> bool {
    msg.split(|c: char| !c.is_ascii_alphanumeric() && c != '_').any(|w| w == field)
}

/// The worst-case fee the proxy fixed for a listed request (`max_fee_wei`), in wei.
fn fee_of(entry: &Value) -> U256 {
    let text = entry["max_fee_wei"].as_str().unwrap_or_else(|| panic!("a max_fee_wei in {entry}"));
    text.parse().unwrap()
}

/// What the proxy fixes as the worst-case fee of a plain transfer on Anvil right now (the same for
/// every transfer until a block is mined, and nothing here mines), learnt from one request that
/// is then rejected.
async fn transfer_fee(env: &TestEnv, proxy: &Proxy) -> U256 {
    let probe = Agent::new(env, proxy, "fee-probe", local_manifest("fee-probe", json!({})));
    let pending = expect_pending(env, &probe, &send(RECIPIENT, "1")).await;
    let fee = fee_of(&pending.entry);
    assert!(fee > U256::ZERO, "a transfer pays a fee: {}", pending.entry);
    reject(env, pending).await;
    fee
}

/// A chain that is what it says it is: Anvil with chain id 1, as the user's RPC for eip155:1
/// (config.toml), so mainnet requests get real fees; the local chain stays the other Anvil.
fn with_mainnet(env: &TestEnv) -> assegai_e2e::Anvil {
    let mainnet = assegai_e2e::Anvil::start_with(&["--chain-id", "1"]);
    env.write_config(&format!("[chains.\"{MAINNET}\"]\nrpc = \"{}\"\n", mainnet.url));
    mainnet
}

const NOT_ZERO: &str = "ERC20 transfers must have a transaction value of 0";
const EXCEEDS: &str = "Requested amount exceeds the configured allowance for this token";
const TOTAL: &str = "Total spending limit exceeded";

fn local_manifest(name: &str, limits: Value) -> Value {
    json!({
        "name": name,
        "permissions": {"chains": [LOCAL], "contracts": [CONTRACT]},
        "spending_limits": limits,
    })
}

fn token_manifest(name: &str) -> Value {
    json!({
        "name": name,
        "permissions": {
            "chains": [MAINNET, POLYGON, LOCAL],
            "contracts": [CONTRACT, NFT],
            "spenders": [LISTED_SPENDER],
        },
        "allowances": {MAINNET: {USDC: "1000"}},
        "spending_limits": {"per_transaction": "0.5", "daily": "1.0"},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_requests_are_refused_naming_the_field() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let agent = Agent::new(&env, &proxy, "clumsy", local_manifest("clumsy", json!({"per_transaction": "1.0"})));

    let base = json!({"chain": LOCAL, "to": RECIPIENT, "value": "1000"});
    let with = |field: &str, value: &str| {
        let mut b = base.clone();
        b[field] = value.into();
        if field == "data" {
            b["to"] = CONTRACT.into();
        }
        b
    };
    let cases = [
        ("to", "0x123"),
        ("to", "vitalik.eth"),
        ("to", "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA9604g"),
        ("to", ""),
        ("value", "1.5"),
        ("value", "-1"),
        ("value", "0x10"),
        ("value", "1e18"),
        ("value", ""),
        ("value", "ten"),
        ("data", "0xzz"),
        ("data", "hello"),
        ("data", "0x12345g78"),
        ("gasLimit", "21000.5"),
        ("gasLimit", "-1"),
        ("gasLimit", "0x5208"),
        ("gasLimit", "lots"),
    ];
    for (field, bad) in cases {
        let reply = agent.request(&with(field, bad)).await;
        assert_error(&reply, StatusCode::BAD_REQUEST, "BAD_REQUEST", "");
        let msg = reply.1["error"].as_str().unwrap();
        assert!(names_field(msg, field), "{field} = {bad:?}: the message should name `{field}`: {msg:?}");
    }

    // 2^256 + 1 wei does not fit: refused, never wrapped round to 1 wei.
    let huge = "115792089237316195423570985008687907853269984665640564039457584007913129639937";
    assert_eq!(huge.parse::<U256>().ok(), None);
    let reply = agent.request(&with("value", huge)).await;
    assert!(
        reply.0 == StatusCode::BAD_REQUEST || reply.0 == StatusCode::FORBIDDEN,
        "a value over 2^256 must be refused: {reply:?}"
    );

    let reply = agent.request_raw("{\"chain\": \"eip155:31337\", ".into()).await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "BAD_REQUEST", "");

    // The chain comes first: a foreign chain is refused as such even when everything else is wrong.
    let reply = agent.request(&json!({"chain": MAINNET, "to": "0x123", "value": "-1", "data": "zz"})).await;
    assert_error(&reply, StatusCode::FORBIDDEN, "CHAIN_NOT_ALLOWED", MAINNET);
    // Parsing comes before the ERC-20 checks.
    let reply = agent
        .request(&json!({"chain": LOCAL, "to": CONTRACT, "value": "1.5", "data": transfer(RECIPIENT, usdc(1))}))
        .await;
    assert_error(&reply, StatusCode::BAD_REQUEST, "BAD_REQUEST", "value");

    // Nothing of that was stored.
    assert_eq!(pending_list(&env), Vec::<Value>::new());
    assert!(txs(&env, &["--status", "pending"]).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn erc20_transfers_are_held_to_the_allowance() {
    let env = TestEnv::with_anvil();
    let _mainnet = with_mainnet(&env);
    let proxy = env.start_proxy();
    let agent = Agent::new(&env, &proxy, "trader", token_manifest("trader"));

    // The whole allowance: held for a person, described in words.
    let within = call(MAINNET, USDC, &transfer(RECIPIENT, usdc(USDC_ALLOWANCE)));
    let pending = expect_pending(&env, &agent, &within).await;
    assert_eq!(pending.entry["agent_id"], agent.id.as_str(), "{}", pending.entry);
    assert_eq!(pending.entry["chain"], MAINNET, "{}", pending.entry);
    assert_eq!(pending.entry["value"], "0", "{}", pending.entry);
    let action = pending.entry["action"].as_str().expect("an action");
    assert_eq!(action.to_lowercase(), format!("Transfer 1000 USDC to {RECIPIENT}").to_lowercase(), "{action}");
    assert!(!pending.call.is_finished(), "the agent's call waits for the decision");
    reject(&env, pending).await;

    // One base unit more.
    let beyond = call(MAINNET, USDC, &transfer(RECIPIENT, usdc(USDC_ALLOWANCE + 1)));
    assert_policy(&agent.request(&beyond).await, EXCEEDS);
    let huge = call(MAINNET, USDC, &transfer(RECIPIENT, U256::MAX));
    assert_policy(&agent.request(&huge).await, EXCEEDS);

    // Native value riding along with a transfer.
    let mut with_value = call(MAINNET, USDC, &transfer(RECIPIENT, usdc(1)));
    with_value["value"] = "1".into();
    assert_policy(&agent.request(&with_value).await, NOT_ZERO);

    // A token with no allowance (sent lowercased; the message checksums it), and the right token on
    // a chain it has no allowance on.
    let unknown = call(MAINNET, &USDT.to_lowercase(), &transfer(RECIPIENT, usdc(1)));
    assert_policy(&agent.request(&unknown).await, &format!("No allowance found for {USDT} on chain {MAINNET}"));
    let other_chain = call(POLYGON, USDC, &transfer(RECIPIENT, usdc(1)));
    assert_policy(&agent.request(&other_chain).await, &format!("No allowance found for {USDC} on chain {POLYGON}"));

    // Whitelisting a contract does not make its `transfer` free: the allowance check comes first.
    let whitelisted = call(LOCAL, CONTRACT, &transfer(RECIPIENT, usdc(1)));
    assert_policy(&agent.request(&whitelisted).await, &format!("No allowance found for {CONTRACT} on chain {LOCAL}"));

    assert!(pending_list(&env).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_approvals_count_against_the_allowance() {
    let env = TestEnv::with_anvil();
    let _mainnet = with_mainnet(&env);
    let proxy = env.start_proxy();
    let agent = Agent::new(&env, &proxy, "approver", token_manifest("approver"));
    let owner = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
    let increase = |amount: u64| calldata(INCREASE_ALLOWANCE, &[word_address(STRANGER), word_uint(usdc(amount))]);
    let transfer_from =
        |amount: u64| calldata(TRANSFER_FROM, &[word_address(owner), word_address(RECIPIENT), word_uint(usdc(amount))]);
    let approval_for_all =
        |operator: &str, on: bool| calldata(SET_APPROVAL_FOR_ALL, &[word_address(operator), word_uint(U256::from(on))]);

    // Within the allowance: held for a person, whatever the spender.
    for data in [approve(STRANGER, usdc(USDC_ALLOWANCE)), increase(USDC_ALLOWANCE), transfer_from(USDC_ALLOWANCE)] {
        let pending = expect_pending(&env, &agent, &call(MAINNET, USDC, &data)).await;
        reject(&env, pending).await;
    }
    // Beyond it: refused.
    for data in
        [approve(STRANGER, usdc(USDC_ALLOWANCE + 1)), increase(USDC_ALLOWANCE + 1), transfer_from(USDC_ALLOWANCE + 1)]
    {
        assert_policy(&agent.request(&call(MAINNET, USDC, &data)).await, EXCEEDS);
    }
    // Moving 2^256 - 1 tokens with transferFrom approves nobody: it is simply over the allowance.
    let drain = calldata(TRANSFER_FROM, &[word_address(owner), word_address(RECIPIENT), word_uint(U256::MAX)]);
    assert_policy(&agent.request(&call(MAINNET, USDC, &drain)).await, EXCEEDS);
    // Approving a token with no allowance.
    let reply = agent.request(&call(MAINNET, USDT, &approve(STRANGER, usdc(1)))).await;
    assert_policy(&reply, &format!("No allowance found for {USDT} on chain {MAINNET}"));

    // Unlimited approval: only to a spender the manifest names.
    let reply = agent.request(&call(MAINNET, USDC, &approve(STRANGER, U256::MAX))).await;
    assert_error(&reply, StatusCode::FORBIDDEN, "POLICY_VIOLATION", "permissions.spenders");
    let pending = expect_pending(&env, &agent, &call(MAINNET, USDC, &approve(LISTED_SPENDER, U256::MAX))).await;
    reject(&env, pending).await;

    // Approval for all: the same, even on a whitelisted contract.
    let reply = agent.request(&call(MAINNET, NFT, &approval_for_all(STRANGER, true))).await;
    assert_error(&reply, StatusCode::FORBIDDEN, "POLICY_VIOLATION", "permissions.spenders");
    let pending = expect_pending(&env, &agent, &call(MAINNET, NFT, &approval_for_all(LISTED_SPENDER, true))).await;
    reject(&env, pending).await;

    assert!(pending_list(&env).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calldata_goes_only_to_whitelisted_contracts() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let agent =
        Agent::new(&env, &proxy, "caller", local_manifest("caller", json!({"per_transaction": "0.5", "daily": "10"})));
    let data = "0x12345678abcdef";

    let reply = agent.request(&call(LOCAL, OTHER_CONTRACT, data)).await;
    assert_error(&reply, StatusCode::FORBIDDEN, "POLICY_VIOLATION", "not whitelisted");
    // The whitelist is checked before the native limits.
    let mut costly = call(LOCAL, OTHER_CONTRACT, data);
    costly["value"] = tenths(6).into();
    assert_error(&agent.request(&costly).await, StatusCode::FORBIDDEN, "POLICY_VIOLATION", "not whitelisted");

    // A whitelisted contract, with no gas limit (the proxy estimates one on Anvil).
    let body = json!({"chain": LOCAL, "to": CONTRACT, "value": "0", "data": data});
    let pending = expect_pending(&env, &agent, &body).await;
    let action = pending.entry["action"].as_str().expect("an action");
    assert_eq!(action.to_lowercase(), format!("Call 0x12345678 on {CONTRACT}").to_lowercase(), "{action}");
    let estimate = pending.entry["detail"]["gas"]["estimate"].as_u64().expect("an estimate");
    assert_eq!(pending.entry["gas_limit"], estimate + estimate / 5, "fixed now: the estimate plus a fifth");
    reject(&env, pending).await;

    // The original SDK's default of 21000 cannot carry calldata: the node's estimate plus a fifth
    // is used instead, and both figures are kept for the approver.
    let mut body = json!({"chain": LOCAL, "to": CONTRACT, "value": "0", "data": data, "gasLimit": "21000"});
    let pending = expect_pending(&env, &agent, &body).await;
    let gas = &pending.entry["detail"]["gas"];
    let estimate = gas["estimate"].as_u64().expect("an estimate");
    assert!(estimate > 21_000, "calldata costs gas: {gas}");
    assert_eq!(gas["requested"], 21_000, "{gas}");
    assert_eq!(pending.entry["gas_limit"], estimate + estimate / 5, "{}", pending.entry);
    assert_eq!(gas["limit"], pending.entry["gas_limit"], "{gas}");
    reject(&env, pending).await;
    // A limit above the estimate is kept as given.
    body["gasLimit"] = "60000".into();
    let pending = expect_pending(&env, &agent, &body).await;
    assert_eq!(pending.entry["gas_limit"], 60000, "{}", pending.entry);
    assert_eq!(pending.entry["detail"]["gas"]["estimate"], estimate, "{}", pending.entry);
    reject(&env, pending).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_per_transaction_limit_is_inclusive() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let fee = transfer_fee(&env, &proxy).await;
    let agent =
        Agent::new(&env, &proxy, "capped", local_manifest("capped", json!({"per_transaction": "0.5", "daily": "10"})));
    let limit: U256 = tenths(5).parse().unwrap();

    // Value + worst-case fee up to the limit exactly.
    let exact = (limit - fee).to_string();
    let pending = expect_pending(&env, &agent, &send(RECIPIENT, &exact)).await;
    assert_eq!(pending.entry["value"], exact.as_str());
    assert_eq!(fee_of(&pending.entry), fee);
    reject(&env, pending).await;

    let reply = agent.request(&send(RECIPIENT, &(limit - fee + U256::from(1)).to_string())).await;
    assert_error(&reply, StatusCode::FORBIDDEN, "POLICY_VIOLATION", "per-transaction");
    // The value alone at the limit: its fee takes it over.
    let reply = agent.request(&send(RECIPIENT, &tenths(5))).await;
    assert_error(&reply, StatusCode::FORBIDDEN, "POLICY_VIOLATION", "plus its worst-case fee");
    // Value sent along with a call to a whitelisted contract counts too.
    let mut costly = call(LOCAL, CONTRACT, "0x12345678");
    costly["value"] = tenths(6).into();
    assert_error(&agent.request(&costly).await, StatusCode::FORBIDDEN, "POLICY_VIOLATION", "per-transaction");

    let pending = expect_pending(&env, &agent, &send(RECIPIENT, &tenths(1))).await;
    let action = pending.entry["action"].as_str().expect("an action");
    assert_eq!(action.to_lowercase(), format!("Send 0.1 ETH to {RECIPIENT}").to_lowercase(), "{action}");
    reject(&env, pending).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_limits_count_pending_requests() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    // Every request counts its value plus its worst-case fee `f`.
    let f = transfer_fee(&env, &proxy).await;
    let eth = |tenths_of_eth: u64| U256::from(tenths_of_eth) * U256::from(100_000_000_000_000_000_u64);
    let wei = |v: U256| v.to_string();
    let daily = json!({"per_transaction": "1.0", "daily": "1.0"});
    let a = Agent::new(&env, &proxy, "daily-a", local_manifest("daily-a", daily.clone()));
    let b = Agent::new(&env, &proxy, "daily-b", local_manifest("daily-b", daily));

    let first = expect_pending(&env, &a, &send(RECIPIENT, &tenths(6))).await;
    assert_policy(&a.request(&send(RECIPIENT, &tenths(5))).await, TOTAL);
    // Up to the limit exactly is fine (0.6 + f, then 0.4 − 2f + f); one wei more is not.
    let _second = expect_pending(&env, &a, &send(RECIPIENT, &wei(eth(4) - f - f))).await;
    assert_policy(&a.request(&send(RECIPIENT, "1")).await, TOTAL);
    // Another agent has its own limits.
    let _other = expect_pending(&env, &b, &send(RECIPIENT, &wei(eth(10) - f))).await;

    // A rejected request no longer counts.
    reject(&env, first).await;
    let _third = expect_pending(&env, &a, &send(RECIPIENT, &tenths(6))).await;
    assert_policy(&a.request(&send(RECIPIENT, "1")).await, TOTAL);

    // The weekly and monthly windows bind the same way.
    let weekly = Agent::new(&env, &proxy, "weekly", local_manifest("weekly", json!({"weekly": "0.7"})));
    let _w = expect_pending(&env, &weekly, &send(RECIPIENT, &tenths(5))).await;
    assert_policy(&weekly.request(&send(RECIPIENT, &tenths(2))).await, TOTAL);
    let _w2 = expect_pending(&env, &weekly, &send(RECIPIENT, &wei(eth(2) - f - f))).await;
    let monthly = Agent::new(&env, &proxy, "monthly", local_manifest("monthly", json!({"monthly": "0.3"})));
    let _m = expect_pending(&env, &monthly, &send(RECIPIENT, &wei(eth(3) - f))).await;
    assert_policy(&monthly.request(&send(RECIPIENT, "1")).await, TOTAL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_requests_cannot_overspend_the_daily_limit() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let fee = transfer_fee(&env, &proxy).await;
    let agent =
        Agent::new(&env, &proxy, "racer", local_manifest("racer", json!({"per_transaction": "1.0", "daily": "1.0"})));
    let body = send(RECIPIENT, &tenths(1)).to_string();

    let (tx, rx) = mpsc::channel();
    for _ in 0..50 {
        let (agent, body, tx) = (agent.clone(), body.clone(), tx.clone());
        tokio::spawn(async move {
            let _ = tx.send(agent.post_raw(body).await);
        });
    }
    let mut answered = Vec::new();
    let pending = wait_until(Duration::from_secs(30), "all 50 requests to be refused or pending", || {
        answered.extend(rx.try_iter());
        let pending: Vec<Value> = pending_list(&env).into_iter().filter(|e| e["agent"] == "racer").collect();
        (answered.len() + pending.len() >= 50).then_some(pending)
    });
    for reply in &answered {
        assert_policy(reply.as_ref().expect("the proxy answers"), TOTAL);
    }
    // As many as value + fee fit into 1 ETH: 9, since ten would need 1 ETH plus ten fees.
    let each = U256::from(100_000_000_000_000_000_u64) + fee;
    let fit = (U256::from(1_000_000_000_000_000_000_u64) / each).to::<usize>();
    assert_eq!(fit, 9);
    assert_eq!((pending.len(), answered.len()), (fit, 50 - fit), "pending vs refused");
    assert!(pending.iter().all(|e| e["value"] == tenths(1) && fee_of(e) == fee));

    for entry in &pending {
        env.run_ok(&["reject", &id_of(entry)]);
    }
    let rejected = wait_until(Duration::from_secs(20), "the held calls to be answered", || {
        answered.extend(rx.try_iter());
        (answered.len() == 50).then(|| answered[50 - fit..].to_vec())
    });
    let expected: Value = serde_json::from_str(REJECTED_BODY).unwrap();
    for reply in rejected {
        assert_eq!(reply.expect("the proxy answers"), (StatusCode::FORBIDDEN, expected.clone()));
    }
    assert_eq!(txs(&env, &["--agent", "racer", "--status", "rejected"]).len(), fit);
    assert!(txs(&env, &["--agent", "racer", "--status", "pending"]).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rejected_request_answers_403_and_is_recorded() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let limits = json!({"per_transaction": "1.0", "daily": "1.0"});
    let agent = Agent::new(&env, &proxy, "hopeful", local_manifest("hopeful", limits.clone()));
    let bystander = Agent::new(&env, &proxy, "bystander", local_manifest("bystander", limits));

    let pending = expect_pending(&env, &agent, &send(RECIPIENT, &tenths(1))).await;
    let entry = pending.entry.clone();
    assert_eq!(entry["agent"], "hopeful");
    assert_eq!(entry["agent_id"], agent.id.as_str());
    assert_eq!(entry["chain"], LOCAL);
    assert!(same_address(&entry["to"], RECIPIENT), "{entry}");
    assert_eq!(entry["value"], tenths(1));
    let _other = expect_pending(&env, &bystander, &send(RECIPIENT, &tenths(2))).await;
    let id = pending.id.clone();

    reject(&env, pending).await;

    let rows = txs(&env, &[]);
    let row = rows.iter().find(|r| id_of(r) == id).unwrap_or_else(|| panic!("{id} in txs --json: {rows:?}"));
    assert_eq!(row["status"], "rejected", "{row}");
    assert_eq!(row["agent"], "hopeful");
    assert_eq!(row["chain"], LOCAL);
    assert!(same_address(&row["to"], RECIPIENT), "{row}");
    assert_eq!(row["value"], tenths(1));
    assert!(row["action"].as_str().is_some_and(|a| a.to_lowercase().starts_with("send 0.1 eth")), "{row}");
    assert!(row.get("error").is_some(), "txs rows carry `error`: {row}");

    let ids = |rows: Vec<Value>| rows.iter().map(id_of).collect::<Vec<_>>();
    assert_eq!(ids(txs(&env, &["--agent", "hopeful"])), vec![id.clone()]);
    assert_eq!(ids(txs(&env, &["--agent", "hopeful", "--status", "rejected"])), vec![id.clone()]);
    assert!(txs(&env, &["--agent", "hopeful", "--status", "pending"]).is_empty());
    let still = txs(&env, &["--status", "pending"]);
    assert!(still.len() == 1 && still[0]["agent"] == "bystander", "{still:?}");

    let (status, body) = agent.transaction(&id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "rejected");

    // Rejecting what does not exist fails, saying so.
    let out = env.run(&["reject", "999999999"]);
    assert!(!out.status.success(), "reject of an unknown id must fail");
    assert!(!out.stderr.is_empty() || !out.stdout.is_empty(), "with a message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unanswered_request_expires_and_releases_the_limit() {
    let env = TestEnv::with_anvil();
    env.write_config("approval_timeout_secs = 2\n");
    let proxy = env.start_proxy();
    let agent = Agent::new(
        &env,
        &proxy,
        "patient",
        local_manifest("patient", json!({"per_transaction": "1.0", "daily": "1.0"})),
    );

    let started = Instant::now();
    // 0.9 ETH and its fee; what is left of the daily limit is less than another such request.
    let pending = expect_pending(&env, &agent, &send(RECIPIENT, &tenths(9))).await;
    // While it waits, it counts against the daily limit.
    assert_policy(&agent.request(&send(RECIPIENT, &tenths(1))).await, TOTAL);

    let reply = outcome(pending.call).await.expect("the proxy answers");
    let waited = started.elapsed();
    assert_eq!(reply, (StatusCode::INTERNAL_SERVER_ERROR, serde_json::from_str(TIMEOUT_BODY).unwrap()));
    assert!(waited >= Duration::from_millis(1900) && waited < Duration::from_secs(15), "answered after {waited:?}");

    let id = pending.id;
    wait_until(Duration::from_secs(5), "the request to be recorded as expired", || {
        txs(&env, &[]).iter().any(|r| id_of(r) == id && r["status"] == "expired").then_some(())
    });
    assert!(pending_list(&env).is_empty());
    let (status, body) = agent.transaction(&id).await;
    assert_eq!((status, &body["status"]), (StatusCode::OK, &json!("expired")), "{body}");

    // The expired request no longer counts: the limit is available again.
    let again = expect_pending(&env, &agent, &send(RECIPIENT, &tenths(9))).await;
    reject(&env, again).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_expires_what_was_pending() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let agent =
        Agent::new(&env, &proxy, "orphan", local_manifest("orphan", json!({"per_transaction": "1.0", "daily": "1.0"})));

    let pending = expect_pending(&env, &agent, &send(RECIPIENT, &tenths(9))).await;
    let status = Command::new("kill").args(["-KILL", &proxy.pid().to_string()]).status().expect("kill");
    assert!(status.success());
    drop(proxy); // reaps the killed process
    let reply = outcome(pending.call).await;
    assert!(reply.is_err(), "the held call dies with the proxy, it is not answered: {reply:?}");

    let proxy = env.start_proxy();
    let agent = agent.on(&proxy);
    let id = pending.id;
    let row = wait_until(Duration::from_secs(5), "the orphaned request to be expired", || {
        txs(&env, &[]).into_iter().find(|r| id_of(r) == id && r["status"] != "pending")
    });
    assert_eq!(row["status"], "expired", "{row}");
    assert!(pending_list(&env).is_empty());
    let (status, body) = agent.transaction(&id).await;
    assert_eq!((status, &body["status"]), (StatusCode::OK, &json!("expired")), "{body}");

    // And it no longer counts against the limit.
    let again = expect_pending(&env, &agent, &send(RECIPIENT, &tenths(9))).await;
    reject(&env, again).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_clean_stop_answers_what_waits_instead_of_waiting_for_it() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let agent = Agent::new(
        &env,
        &proxy,
        "waiting",
        local_manifest("waiting", json!({"per_transaction": "1.0", "daily": "1.0"})),
    );
    let pending = expect_pending(&env, &agent, &send(RECIPIENT, &tenths(9))).await;

    // The approval timeout is 300 s; the stop must not wait for it.
    let started = Instant::now();
    let output = proxy.output();
    assert!(
        tokio::task::block_in_place(|| proxy.terminate()),
        "the proxy exits cleanly: {}",
        String::from_utf8_lossy(&output)
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");
    let reply = outcome(pending.call).await.expect("the waiting agent gets an answer");
    assert_eq!(reply, (StatusCode::INTERNAL_SERVER_ERROR, serde_json::from_str(TIMEOUT_BODY).unwrap()));
    let row = txs(&env, &[]).into_iter().find(|r| id_of(r) == pending.id).expect("the request");
    assert_eq!(row["status"], "expired", "{row}");
    assert_eq!(row["error"], "the proxy stopped while the request waited", "{row}");
}

/// An id of the same shape as `id` that names nothing.
fn unknown_like(id: &str) -> String {
    if id.bytes().all(|b| b.is_ascii_digit()) {
        "987654321".into()
    } else {
        let last = id.chars().last().unwrap();
        format!("{}{}", &id[..id.len() - last.len_utf8()], if last == 'a' { 'b' } else { 'a' })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agents_see_only_their_own_transactions() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let limits = json!({"per_transaction": "1.0", "daily": "1.0"});
    let alice = Agent::new(&env, &proxy, "alice", local_manifest("alice", limits.clone()));
    let bob = Agent::new(&env, &proxy, "bob", local_manifest("bob", limits));

    let data = "0x12345678abcd";
    let mine = expect_pending(
        &env,
        &alice,
        &json!({"chain": LOCAL, "to": CONTRACT, "value": tenths(1), "data": data, "gasLimit": "60000"}),
    )
    .await;
    let theirs = expect_pending(&env, &bob, &send(RECIPIENT, &tenths(2))).await;

    let (status, body) = alice.transaction(&mine.id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(id_of(&body), mine.id);
    assert_eq!(body["status"], "pending");
    assert_eq!(body["chain"], LOCAL);
    assert!(same_address(&body["to"], CONTRACT), "{body}");
    assert_eq!(body["value"], tenths(1));
    assert!(body["data"].as_str().is_some_and(|d| d.eq_ignore_ascii_case(data)), "{body}");
    assert!(
        body["action"]
            .as_str()
            .is_some_and(|a| a.to_lowercase().starts_with(&format!("Call 0x12345678 on {CONTRACT}").to_lowercase())),
        "{body}"
    );
    assert!(!body["createdAt"].is_null(), "{body}");
    let (status, body) = bob.transaction(&theirs.id).await;
    assert_eq!((status, &body["status"]), (StatusCode::OK, &json!("pending")), "{body}");

    // Someone else's request and one that does not exist look the same: 404.
    let (status, body) = bob.transaction(&mine.id).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body2) = alice.transaction(&theirs.id).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body2}");
    let (status, body3) = alice.transaction(&unknown_like(&mine.id)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body3}");
    assert_eq!(body["code"], body3["code"]);
    assert!(!body.to_string().contains("alice") && !body2.to_string().contains("bob"), "{body} {body2}");

    // Without credentials: nothing.
    let resp = reqwest::get(format!("{}/agent/transactions/{}", proxy.url, mine.id)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let id = mine.id.clone();
    reject(&env, mine).await;
    let (status, body) = alice.transaction(&id).await;
    assert_eq!((status, &body["status"]), (StatusCode::OK, &json!("rejected")), "{body}");
    let (status, _) = bob.transaction(&id).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    reject(&env, theirs).await;
}
