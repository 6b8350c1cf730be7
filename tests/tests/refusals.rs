//! Everything the proxy must refuse, checked against the real binary and a real Anvil: the status,
//! the JSON body, and that nothing happened on the chain.

use std::time::Duration;

use assegai_e2e::{Proxy, TestEnv};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Agent {
    client: reqwest::Client,
    base: String,
    id: String,
    token: String,
}

impl Agent {
    fn new(proxy: &Proxy, (id, token): (String, String)) -> Self {
        Agent { client: reqwest::Client::new(), base: proxy.url.clone(), id, token }
    }

    async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Option<String>, Value) {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .header("X-Assegai-Agent-ID", &self.id)
            .header("X-Assegai-Agent-Token", &self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("the proxy answers");
        let status = resp.status();
        let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        let bytes = resp.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("every reply is JSON, got {:?}", String::from_utf8_lossy(&bytes)));
        (status, retry_after, body)
    }

    async fn query(&self, chain: &str, method: &str, params: Value) -> (StatusCode, Option<String>, Value) {
        self.post("/agent/query-chain", json!({"chain": chain, "method": method, "params": params}).to_string()).await
    }
}

fn assert_error(body: &Value, code: &str, message_part: &str) {
    assert_eq!(body["code"], code, "{body}");
    let msg = body["error"].as_str().expect("an error message");
    assert!(msg.contains(message_part), "expected {message_part:?} in {msg:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_are_required_and_checked() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let (id, token) = env.add_agent("guarded", None);
    let http = reqwest::Client::new();
    let url = format!("{}/agent/query-chain", proxy.url);
    let body = json!({"chain": "eip155:31337", "method": "eth_chainId", "params": []}).to_string();

    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[], "Unauthorized: Missing agent credentials in headers"),
        (&[("X-Assegai-Agent-ID", &id)], "Unauthorized: Missing agent credentials in headers"),
        (
            &[("X-Assegai-Agent-ID", &id), ("X-Assegai-Agent-Token", "asg_wrong")],
            "Unauthorized: Invalid agent credentials",
        ),
        (
            &[("X-Assegai-Agent-ID", "ag_nobody"), ("X-Assegai-Agent-Token", &token)],
            "Unauthorized: Invalid agent credentials",
        ),
        (
            &[("X-Assegai-Agent-ID", &id), ("X-Assegai-Agent-Token", &token[..token.len() - 1])],
            "Unauthorized: Invalid agent credentials",
        ),
    ];
    for (headers, message) in cases {
        let mut req = http.post(&url).body(body.clone());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{headers:?}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v, json!({"error": message, "code": "UNAUTHORIZED"}));
    }
    // /health needs nothing.
    let health: Value = http.get(format!("{}/health", proxy.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert!(health["timestamp"].as_u64().unwrap() > 1_700_000_000_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn chains_outside_the_manifest_are_forbidden() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let agent = Agent::new(&proxy, env.add_agent("local-only", None));
    let (status, _, body) = agent.query("eip155:1", "eth_chainId", json!([])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&body, "CHAIN_NOT_ALLOWED", "eip155:1 not whitelisted");
    let (status, _, body) = agent.post("/rpc/eip155:137", r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}"#).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&body, "CHAIN_NOT_ALLOWED", "eip155:137");
    let (status, _, body) = agent.query("ethereum", "eth_chainId", json!([])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "BAD_REQUEST", "not a CAIP-2 chain id");
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_and_node_administration_never_reach_the_chain() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let agent = Agent::new(&proxy, env.add_agent("sneaky", None));
    let victim = "0x000000000000000000000000000000000000dEaD";
    let before = env.anvil().rpc("eth_getBalance", json!([victim, "latest"])).await;
    let block_before = env.anvil().rpc("eth_blockNumber", json!([])).await;
    let from = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

    let attempts = [
        ("eth_sendTransaction", json!([{"from": from, "to": victim, "value": "0xde0b6b3a7640000"}])),
        ("anvil_setBalance", json!([victim, "0xde0b6b3a7640000"])),
        ("eth_sendRawTransaction", json!(["0x02"])),
        ("eth_sign", json!([from, "0x00"])),
        ("evm_mine", json!([])),
        ("personal_sendTransaction", json!([{"from": from, "to": victim}, ""])),
    ];
    for (method, params) in &attempts {
        let (status, _, body) = agent.query("eip155:31337", method, params.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method}");
        assert_error(&body, "METHOD_NOT_ALLOWED", method);
        let raw = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
        let (status, _, _) = agent.post("/rpc/eip155:31337", raw).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "raw {method}");
    }
    // A batch with one write in it is refused whole, and its reads are not forwarded either.
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
        {"jsonrpc": "2.0", "id": 2, "method": "anvil_setBalance", "params": [victim, "0x1"]},
    ]);
    let (status, _, body) = agent.post("/rpc/eip155:31337", batch.to_string()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(&body, "METHOD_NOT_ALLOWED", "anvil_setBalance");

    assert_eq!(env.anvil().rpc("eth_getBalance", json!([victim, "latest"])).await, before);
    assert_eq!(env.anvil().rpc("eth_blockNumber", json!([])).await, block_before);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_oversized_bodies() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let agent = Agent::new(&proxy, env.add_agent("clumsy", None));

    let (status, _, body) = agent.post("/agent/query-chain", "{\"chain\": \"eip155:31337\", ").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "BAD_REQUEST", "Malformed JSON body");

    let (status, _, body) = agent.post("/agent/query-chain", r#"{"chain": "eip155:31337"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "BAD_REQUEST", "missing field `method`");

    let (status, _, body) = agent.post("/agent/log", r#"{"level": "loud", "message": "x"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "BAD_REQUEST", "field `level`");

    let (status, _, body) = agent.post("/rpc/eip155:31337", "[]").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "BAD_REQUEST", "Empty JSON-RPC batch");

    let huge = format!(r#"{{"level":"info","message":"{}"}}"#, "x".repeat(2 * 1024 * 1024));
    let (status, _, body) = agent.post("/agent/log", huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&body, "PAYLOAD_TOO_LARGE", "too large");

    // None of that was stored as a log line.
    let logs = env.run_ok(&["logs", "--json"]);
    assert!(logs.trim().is_empty(), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_31st_rpc_call_within_10_seconds_is_rate_limited() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let agent = Agent::new(&proxy, env.add_agent("eager", None));
    let other = Agent::new(&proxy, env.add_agent("bystander", None));

    let started = std::time::Instant::now();
    let mut limited = None;
    for i in 1..=31 {
        let (status, retry_after, body) = if i % 2 == 0 {
            agent.query("eip155:31337", "eth_chainId", json!([])).await
        } else {
            agent.post("/rpc/eip155:31337", r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}"#).await
        };
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((i, retry_after, body));
            break;
        }
        assert_eq!(status, StatusCode::OK, "call {i}: {body}");
    }
    let elapsed = started.elapsed();
    let (i, retry_after, body) = limited.expect("the 31st call is refused");
    // The quota refills one call every 10/30 s, so a slow machine may legitimately get one more
    // call through per third of a second that passed.
    let refilled = (elapsed.as_millis() / 333) as usize;
    assert!(i >= 31 && i <= 31 + refilled, "refused at call {i} after {elapsed:?}");
    assert_eq!(body, json!({"error": "Rate limit exceeded", "code": "RATE_LIMITED"}));
    let retry_after: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=10).contains(&retry_after), "{retry_after}");

    // Another agent has its own quota.
    let (status, _, _) = other.query("eip155:31337", "eth_chainId", json!([])).await;
    assert_eq!(status, StatusCode::OK);

    // Once the announced time has passed, the agent gets through again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let (status, _, _) = agent.query("eip155:31337", "eth_chainId", json!([])).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_callers_cannot_exceed_the_quota() {
    let env = TestEnv::with_anvil();
    // A long window, so the quota does not refill during the test: exactly 30 may pass.
    env.write_config("[rate_limits]\nrpc = { requests = 30, per_secs = 3600 }\n");
    let proxy = env.start_proxy();
    let agent = std::sync::Arc::new(Agent::new(&proxy, env.add_agent("swarm", None)));
    let tasks: Vec<_> = (0..60)
        .map(|_| {
            let agent = agent.clone();
            tokio::spawn(async move { agent.query("eip155:31337", "eth_blockNumber", json!([])).await.0 })
        })
        .collect();
    let mut ok = 0;
    let mut limited = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, limited), (30, 30));
}
