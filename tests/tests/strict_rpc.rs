//! The node receives only what was checked: bodies a lenient node could read differently
//! (duplicate keys, `Method` beside `method`, a second request after the first) are refused on
//! both chain routes, and what does reach the node is the proxy's own serialisation. Shown with a
//! recording tap between the real proxy and a real Anvil.

use assegai_e2e::{Proxy, TestEnv, contains_bytes, rpc_tap::RpcTap};
use reqwest::StatusCode;
use serde_json::{Value, json};

const VICTIM: &str = "0x000000000000000000000000000000000000dEaD";

struct Agent {
    http: reqwest::Client,
    base: String,
    id: String,
    token: String,
}

impl Agent {
    fn new(proxy: &Proxy, (id, token): (String, String)) -> Self {
        Agent { http: reqwest::Client::new(), base: proxy.url.clone(), id, token }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<&str>) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-Assegai-Agent-ID", &self.id)
            .header("X-Assegai-Agent-Token", &self.token);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_owned());
        }
        let resp = req.send().await.expect("the proxy answers");
        let status = resp.status();
        let bytes = resp.bytes().await.unwrap();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("every reply is JSON, got {:?}", String::from_utf8_lossy(&bytes)));
        (status, v)
    }

    async fn post(&self, path: &str, body: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
}

/// A proxy whose agent reads the local chain through a tap in front of Anvil.
fn setup(config: &str) -> (TestEnv, RpcTap, Proxy, Agent) {
    let env = TestEnv::with_anvil();
    env.write_config(config);
    let tap = RpcTap::start(&env.anvil().url);
    let proxy = env.start_proxy();
    let manifest = json!({"name": "tapped", "permissions": {
        "chains": ["eip155:31337"], "rpcs": {"eip155:31337": tap.url()}}});
    let agent = Agent::new(&proxy, env.add_agent("tapped", Some(&manifest)));
    (env, tap, proxy, agent)
}

fn assert_bad_request(status: StatusCode, body: &Value, part: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "BAD_REQUEST", "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(msg.contains(part), "expected {part:?} in {msg:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ambiguous_bodies_never_reach_the_node() {
    let (env, tap, _proxy, agent) = setup("");
    let balance_before = env.anvil().rpc("eth_getBalance", json!([VICTIM, "latest"])).await;
    let block_before = env.anvil().rpc("eth_blockNumber", json!([])).await;

    let set_balance = format!(r#""params":["{VICTIM}","0xde0b6b3a7640000"]"#);
    let rpc_cases = [
        (
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"anvil_setBalance","method":"eth_chainId",{set_balance}}}"#),
            "duplicate key `method`",
        ),
        (
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"eth_chainId","method":"anvil_setBalance",{set_balance}}}"#),
            "duplicate key `method`",
        ),
        (
            format!(r#"{{"jsonrpc":"2.0","id":1,"Method":"anvil_setBalance","method":"eth_chainId",{set_balance}}}"#),
            "only by case",
        ),
        (
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"eth_chainId","METHOD":"anvil_setBalance",{set_balance}}}"#),
            "only by case",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}{"jsonrpc":"2.0","id":2,"method":"anvil_mine"}"#.into(),
            "trailing",
        ),
        (r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId"} [{"method":"anvil_mine"}]"#.into(), "trailing"),
        (
            r#"[{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}]{"jsonrpc":"2.0","id":2,"method":"anvil_mine"}"#.into(),
            "trailing",
        ),
        (r#"[{"jsonrpc":"2.0","id":1,"method":"eth_chainId","method":"anvil_mine"}]"#.into(), "duplicate key `method`"),
        (r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","anvil":"anvil_mine"}"#.into(), "unknown member"),
    ];
    for (body, why) in &rpc_cases {
        let (status, reply) = agent.post("/rpc/eip155:31337", body).await;
        assert_bad_request(status, &reply, why);
    }
    let query_cases = [
        (r#"{"chain":"eip155:31337","method":"anvil_mine","method":"eth_chainId"}"#, "duplicate key `method`"),
        (r#"{"chain":"eip155:31337","Method":"anvil_mine","method":"eth_chainId"}"#, "only by case"),
        (
            r#"{"chain":"eip155:31337","method":"eth_chainId"}{"chain":"eip155:31337","method":"anvil_mine"}"#,
            "trailing",
        ),
    ];
    for (body, why) in query_cases {
        let (status, reply) = agent.post("/agent/query-chain", body).await;
        assert_bad_request(status, &reply, why);
    }
    assert!(tap.sent().is_empty(), "the node received {}", tap.sent_text());
    assert_eq!(env.anvil().rpc("eth_getBalance", json!([VICTIM, "latest"])).await, balance_before);
    assert_eq!(env.anvil().rpc("eth_blockNumber", json!([])).await, block_before);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_node_gets_the_proxys_serialisation() {
    let (_env, tap, _proxy, agent) = setup("");
    // Odd spacing and member order, a string id: the node gets a canonical rewrite of the same call.
    let (status, reply) = agent
        .post(
            "/rpc/eip155:31337",
            "  {\"params\" : [], \"method\":\"eth_chainId\",\n \"id\":\"a\", \"jsonrpc\":\"2.0\"}\n",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply, json!({"jsonrpc": "2.0", "id": "a", "result": "0x7a69"}));
    let sent = tap.sent();
    // First the proxy's own question (is this node the chain it serves?), then the agent's call.
    assert_eq!(sent.len(), 2, "{}", tap.sent_text());
    assert_eq!(
        String::from_utf8_lossy(&sent[0].body),
        r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#
    );
    assert_eq!(
        String::from_utf8_lossy(&sent[1].body),
        r#"{"jsonrpc":"2.0","id":"a","method":"eth_chainId","params":[]}"#
    );

    tap.clear();
    let batch = r#"[{"id":1,"method":"eth_chainId"},{"jsonrpc":"2.0","id":2,"method":"eth_getBalance","params":["0x000000000000000000000000000000000000dEaD","latest"]}]"#;
    let (status, reply) = agent.post("/rpc/eip155:31337", batch).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply.as_array().map(Vec::len), Some(2), "{reply}");
    let sent = tap.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        String::from_utf8_lossy(&sent[0].body),
        format!(
            r#"[{{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}},{{"jsonrpc":"2.0","id":2,"method":"eth_getBalance","params":["{VICTIM}","latest"]}}]"#
        )
    );

    tap.clear();
    let (status, reply) =
        agent.post("/agent/query-chain", r#"{"chain":"eip155:31337","method":"eth_blockNumber"}"#).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let sent = tap.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        String::from_utf8_lossy(&sent[0].body),
        r#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}"#
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_come_before_the_rate_limit_on_every_chain_route() {
    // Two reads an hour: a refused method must not use one up.
    let (_env, tap, _proxy, agent) = setup("[rate_limits]\nrpc = { requests = 2, per_secs = 3600 }\n");
    for _ in 0..3 {
        let (status, reply) =
            agent.post("/rpc/eip155:31337", r#"{"jsonrpc":"2.0","id":1,"method":"anvil_mine"}"#).await;
        assert_eq!((status, reply["code"].as_str()), (StatusCode::FORBIDDEN, Some("METHOD_NOT_ALLOWED")), "{reply}");
        let (status, reply) =
            agent.post("/agent/query-chain", r#"{"chain":"eip155:31337","method":"evm_mine","params":[]}"#).await;
        assert_eq!((status, reply["code"].as_str()), (StatusCode::FORBIDDEN, Some("METHOD_NOT_ALLOWED")), "{reply}");
        let (status, reply) = agent.post("/agent/query-chain", r#"{"chain":"eip155:1","method":"eth_chainId"}"#).await;
        assert_eq!((status, reply["code"].as_str()), (StatusCode::FORBIDDEN, Some("CHAIN_NOT_ALLOWED")), "{reply}");
        let (status, reply) = agent.post("/rpc/eip155:1", r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}"#).await;
        assert_eq!((status, reply["code"].as_str()), (StatusCode::FORBIDDEN, Some("CHAIN_NOT_ALLOWED")), "{reply}");
        let (status, reply) = agent.post("/rpc/eip155:31337", r#"{"method":"eth_chainId","method":"x"}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    }
    // Both reads are still there, then the limit holds.
    let (status, _) = agent.post("/rpc/eip155:31337", r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}"#).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = agent.post("/agent/query-chain", r#"{"chain":"eip155:31337","method":"eth_chainId"}"#).await;
    assert_eq!(status, StatusCode::OK);
    let (status, reply) = agent.post("/agent/query-chain", r#"{"chain":"eip155:31337","method":"eth_chainId"}"#).await;
    assert_eq!((status, reply["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("RATE_LIMITED")), "{reply}");
    // The two reads and, before the first, the proxy's check of the node's chain id.
    assert_eq!(tap.sent().len(), 3, "{}", tap.sent_text());
    assert!(!contains_bytes(tap.sent_text().as_bytes(), b"mine"), "{}", tap.sent_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn wallet_addresses_only_for_the_manifests_chains() {
    let (_env, _tap, _proxy, agent) = setup("");
    let (status, reply) = agent.send(reqwest::Method::GET, "/agent/wallet-address/eip155:31337", None).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["address"], "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
    for chain in ["eip155:999", "eip155:1", "eip155:1337"] {
        let (status, reply) = agent.send(reqwest::Method::GET, &format!("/agent/wallet-address/{chain}"), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{chain}: {reply}");
        assert_eq!(reply["code"], "CHAIN_NOT_ALLOWED");
        assert!(reply["error"].as_str().unwrap().contains(chain), "{reply}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn node_error_messages_are_shown_inert() {
    let (_env, tap, _proxy, agent) = setup("");
    // A lying node: its error message carries a terminal escape and a bidi override.
    tap.set_rewrite(Box::new(|request, _| {
        contains_bytes(request, b"eth_blockNumber").then(|| {
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"boom\u001b[2J\u202egnp.exe"}}"#.to_vec()
        })
    }));
    let (status, reply) =
        agent.post("/agent/query-chain", r#"{"chain":"eip155:31337","method":"eth_blockNumber"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_eq!(reply["code"], "RPC_ERROR");
    assert_eq!(reply["error"], "RPC Error: boom\\x1b[2J\\u{202e}gnp.exe");
}
