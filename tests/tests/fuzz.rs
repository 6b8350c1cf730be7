//! A fuzz pass over the live proxy: thousands of generated malformed requests across every route
//! (wrong types, huge numbers, deep nesting, odd content types, broken UTF-8, ambiguous JSON,
//! escaping paths, bad credentials). Every answer must be one of the refusal statuses with the
//! JSON error shape — never a 500, never a panic on the console — and `/health` answers after.
//!
//! The generator is a fixed-seed xorshift, so a failure names a request that can be replayed.

use std::{sync::Arc, time::Duration};

use assegai_e2e::{TestEnv, contains_bytes, fake_ai::FakeAi};
use reqwest::Method;
use serde_json::Value;

/// How many requests the pass sends.
const REQUESTS: usize = 2_400;
/// How many are in flight at once.
const CONCURRENCY: usize = 16;
const ALLOWED: &[u16] = &[400, 401, 403, 404, 405, 408, 413, 415, 429];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// One generated request.
#[derive(Debug, Clone)]
struct Case {
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    /// `None`: the agent's real credentials; `Some`: these header values instead.
    auth: Option<(Vec<u8>, Vec<u8>)>,
}

/// JSON values of the wrong type, or that no parser should accept as given.
fn junk_value(rng: &mut Rng) -> String {
    let huge_digits = "9".repeat(1 + rng.below(400));
    let deep = rng.below(300) + 1;
    let options = [
        "null".to_owned(),
        "true".to_owned(),
        "-1".to_owned(),
        "0".to_owned(),
        "1e999999".to_owned(),
        "-1e-999999".to_owned(),
        huge_digits.clone(),
        format!("-{huge_digits}.5e3"),
        "[]".to_owned(),
        "{}".to_owned(),
        format!("{}{}", "[".repeat(deep), "]".repeat(deep)),
        format!("{}1{}", "{\"a\":".repeat(deep), "}".repeat(deep)),
        "\"\"".to_owned(),
        "\"\\ud800\"".to_owned(),
        "\"\\u0000\\u001b[2J\\u202e\"".to_owned(),
        format!("\"{}\"", "x".repeat(rng.below(5_000))),
        "\"0x\"".to_owned(),
        "\"0xzz\"".to_owned(),
        "\"eip155:\"".to_owned(),
        format!("\"eip155:{huge_digits}\""),
        "[1,2,".to_owned(),
        "{\"a\":1,\"a\":2}".to_owned(),
    ];
    rng.pick(&options).clone()
}

/// A body that is not JSON, or not the JSON any route takes.
fn broken_body(rng: &mut Rng) -> Vec<u8> {
    let deep = 100 + rng.below(200_000);
    let options: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"   ".to_vec(),
        b"null".to_vec(),
        b"{".to_vec(),
        b"{\"a\":}".to_vec(),
        vec![0xff, 0xfe, 0xfd],
        b"{\"level\":\"info\",\"message\":\"\xc3\x28\"}".to_vec(),
        b"{\"chain\":\"eip155:31337\",\"method\":\"\xed\xa0\x80\"}".to_vec(),
        "[".repeat(deep).into_bytes(),
        "{\"a\":".repeat(deep.min(50_000)).into_bytes(),
        b"a=1&b=2".to_vec(),
        b"--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--x--".to_vec(),
        (0..rng.below(2_000)).map(|_| rng.next() as u8).collect(),
        b"{} {}".to_vec(),
        b"[] x".to_vec(),
        b"\xef\xbb\xbf{}".to_vec(),
    ];
    rng.pick(&options).clone()
}

/// An object of `fields` (duplicates allowed), sometimes followed by a second value.
fn json_body(rng: &mut Rng, fields: Vec<(&str, String)>) -> Vec<u8> {
    let parts: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    let mut body = format!("{{{}}}", parts.join(",")).into_bytes();
    if rng.below(10) == 0 {
        body.extend_from_slice(b" {\"method\":\"anvil_mine\"}");
    }
    body
}

const REFUSED_METHODS: &[&str] = &[
    "\"anvil_setBalance\"",
    "\"eth_sendTransaction\"",
    "\"eth_sendRawTransaction\"",
    "\"evm_mine\"",
    "\"personal_sign\"",
    "\"ETH_CHAINID\"",
    "\"eth_get\"",
    "\"\"",
    "\"eth_chainId\\u0000\"",
];

const BAD_CHAINS: &[&str] = &[
    "\"eip155:1\"",
    "\"eip155:999\"",
    "\"ethereum\"",
    "\"eip155:-1\"",
    "\"eip155:0x1\"",
    "\"cosmos:hub\"",
    "\"\"",
    "1",
    "null",
];

/// A JSON-RPC call that the strict parser or the policy refuses.
fn bad_rpc_call(rng: &mut Rng) -> String {
    let method = rng.pick(REFUSED_METHODS);
    let j = junk_value(rng);
    let options = [
        format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":{method},\"params\":[]}}"),
        format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_chainId\",\"method\":{method}}}"),
        format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"Method\":{method},\"method\":\"eth_chainId\"}}"),
        format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_chainId\",\"extra\":{j}}}"),
        format!("{{\"jsonrpc\":{j},\"id\":1,\"method\":\"eth_chainId\"}}"),
        format!("{{\"jsonrpc\":\"2.0\",\"id\":[{j}],\"method\":\"eth_chainId\"}}"),
        format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":[{j}]}}"),
        format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_chainId\",\"params\":\"{}\"}}", rng.below(9)),
        format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_call\",\"params\":[{j},{j}],\"params\":[]}}"),
        "[]".to_owned(),
        format!("[{j}]"),
        format!("[{{\"method\":\"eth_chainId\"}},{{\"method\":{method}}}]"),
    ];
    rng.pick(&options).clone()
}

fn case(rng: &mut Rng) -> Case {
    let content_type = *rng.pick(&[
        Some("application/json"),
        Some("application/json"),
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/json; charset=utf-16"),
        None,
    ]);
    let mut c = Case { method: Method::POST, path: String::new(), content_type, body: Vec::new(), auth: None };
    match rng.below(12) {
        0 => {
            c.path = "/agent/query-chain".into();
            c.body = match rng.below(3) {
                0 => broken_body(rng),
                1 => {
                    let fields = vec![
                        ("chain", "\"eip155:31337\"".into()),
                        ("method", rng.pick(REFUSED_METHODS).to_string()),
                        ("params", junk_value(rng)),
                    ];
                    json_body(rng, fields)
                }
                _ => {
                    let j = junk_value(rng);
                    let mut fields = vec![
                        ("chain", rng.pick(BAD_CHAINS).to_string()),
                        ("method", "\"eth_chainId\"".to_owned()),
                        ("params", "[]".to_owned()),
                    ];
                    match rng.below(4) {
                        0 => fields[1].1 = j,
                        1 => fields.push(("Method", "\"anvil_mine\"".into())),
                        2 => fields.push(("method", "\"anvil_mine\"".into())),
                        _ => {}
                    }
                    json_body(rng, fields)
                }
            };
        }
        1 | 2 => {
            let chain = *rng.pick(&["eip155:31337", "eip155:31337", "eip155:1", "eth", "%ff%fe", "eip155:%E2%80%AE1"]);
            c.path = format!("/rpc/{chain}");
            c.body = if rng.below(3) == 0 { broken_body(rng) } else { bad_rpc_call(rng).into_bytes() };
        }
        3 => {
            c.method = Method::GET;
            let chain = *rng.pick(&["eip155:1", "eip155:999", "eip155:1337", "x", "eip155:", "%ff", "eip155:%20", ""]);
            c.path = format!("/agent/wallet-address/{chain}");
        }
        4 => {
            c.path = "/agent/log".into();
            c.body = if rng.below(2) == 0 {
                broken_body(rng)
            } else {
                let level = *rng.pick(&["\"loud\"", "\"INFO\"", "1", "null", "[\"info\"]", "\"\""]);
                let message = if rng.below(2) == 0 { junk_value(rng) } else { "\"hello\"".into() };
                json_body(rng, vec![("level", level.into()), ("message", message)])
            };
        }
        5 => {
            c.path = "/agent/request-transaction".into();
            c.body = if rng.below(3) == 0 {
                broken_body(rng)
            } else {
                // Always one field that no policy accepts.
                let to = "\"0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045\"".to_owned();
                let mut fields = vec![("chain", "\"eip155:31337\"".into()), ("to", to), ("value", "\"1\"".into())];
                let bad = match rng.below(6) {
                    0 => (
                        "to",
                        rng.pick(&["\"0x1\"", "\"0xD8dA6BF26964aF9D7eEd9e03E53415D37aA96045\"", "1", "null"])
                            .to_string(),
                    ),
                    1 => ("value", rng.pick(&["\"-1\"", "\"1.5\"", "\"0x10\"", "1", "\"\"", "\"1e18\""]).to_string()),
                    2 => ("data", rng.pick(&["\"0xzz\"", "\"0x1\"", "\"abc\"", "7"]).to_string()),
                    3 => {
                        ("gasLimit", rng.pick(&["\"1\"", "\"-5\"", "\"99999999999999999999999\"", "21000"]).to_string())
                    }
                    4 => ("chain", rng.pick(BAD_CHAINS).to_string()),
                    _ => ("value", junk_value(rng)),
                };
                match fields.iter_mut().find(|(k, _)| *k == bad.0) {
                    Some(f) => f.1 = bad.1,
                    None => fields.push(bad),
                }
                json_body(rng, fields)
            };
        }
        6 => {
            c.method = Method::GET;
            let long = "9".repeat(300);
            let id = *rng.pick(&["tx_none", "%ff%00", "..%2f..%2fetc", "tx_%E2%80%AE", long.as_str(), "%"]);
            c.path = format!("/agent/transactions/{id}");
        }
        7 | 8 => {
            c.method = rng.pick(&[Method::GET, Method::POST, Method::DELETE, Method::PUT, Method::PATCH]).clone();
            let path = *rng.pick(&[
                "/api/openai/v1/files",
                "/api/openai/v1/files/file-1",
                "/api/openai/v1/fine_tuning/jobs",
                "/api/openai/v1/batches",
                "/api/openai/v1/organization/admin_api_keys",
                "/api/openai/v1/realtime/client_secrets",
                "/api/openai/v1/../../agent/log",
                "/api/openai/v1/%2e%2e/x",
                "/api/openai/v1%2fx",
                "/api/openai//x",
                "/api/openai/v1/%ff",
                "/api/anthropic/v1/messages",
                "/api/deepseek/chat/completions",
                "/api/nobody/v1/chat/completions",
                "/api/%ff/x",
                "/api/openai",
            ]);
            // The last three providers are not in the manifest; the escapes are refused first.
            c.path = path.to_owned();
            c.body = if rng.below(2) == 0 { broken_body(rng) } else { junk_value(rng).into_bytes() };
        }
        9 => {
            c.method = rng.pick(&[Method::GET, Method::POST, Method::DELETE, Method::OPTIONS]).clone();
            c.path = rng
                .pick(&[
                    "/",
                    "/agent",
                    "/agent/query-chain/x",
                    "/rpc",
                    "/health/x",
                    "/%ff",
                    "/api",
                    "/admin",
                    "/agent/log",
                ])
                .to_string();
            if c.path == "/agent/log" {
                c.method = Method::GET;
            }
        }
        10 => {
            c.method = Method::POST;
            c.path = "/health".into();
        }
        _ => {
            c.path = rng
                .pick(&["/agent/query-chain", "/rpc/eip155:31337", "/agent/log", "/api/openai/v1/chat/completions"])
                .to_string();
            c.body = b"{\"chain\":\"eip155:31337\",\"method\":\"eth_chainId\"}".to_vec();
            let id =
                rng.pick(&[b"ag_nobody".to_vec(), b"".to_vec(), vec![0xff, 0xfe], b"ag_\xe2\x80\xae".to_vec()]).clone();
            let token = rng.pick(&[b"asg_wrong".to_vec(), vec![0x80, 0x81], b"".to_vec()]).clone();
            c.auth = Some((id, token));
        }
    }
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_are_refused_never_crash() {
    let fake = FakeAi::start();
    let env = TestEnv::with_anvil();
    // A request that slipped through as valid must not wait five minutes for a person.
    env.write_config(&format!(
        "approval_timeout_secs = 1\n[keys]\nbackend = \"file\"\n[providers.openai]\nbase_url = \"{}\"\n",
        fake.url()
    ));
    let proxy = env.start_proxy();
    let manifest =
        serde_json::json!({"name": "fuzzer", "permissions": {"chains": ["eip155:31337"], "apis": ["openai"]}});
    let (id, token) = env.add_agent("fuzzer", Some(&manifest));
    let http = reqwest::Client::new();
    let base = Arc::new(proxy.url.clone());

    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let cases: Vec<Case> = (0..REQUESTS).map(|_| case(&mut rng)).collect();
    let cases = Arc::new(cases);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (cases, next, http, base, id, token) =
            (cases.clone(), next.clone(), http.clone(), base.clone(), id.clone(), token.clone());
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(c) = cases.get(i) else { break };
                let mut req = http.request(c.method.clone(), format!("{base}{}", c.path));
                match &c.auth {
                    None => req = req.header("X-Assegai-Agent-ID", &id).header("X-Assegai-Agent-Token", &token),
                    Some((i, t)) => {
                        for (name, v) in [("X-Assegai-Agent-ID", i), ("X-Assegai-Agent-Token", t)] {
                            if !v.is_empty() {
                                req = req.header(name, reqwest::header::HeaderValue::from_bytes(v).unwrap());
                            }
                        }
                    }
                }
                if let Some(ct) = c.content_type {
                    req = req.header("content-type", ct);
                }
                if !c.body.is_empty() {
                    req = req.body(c.body.clone());
                }
                let resp = match tokio::time::timeout(Duration::from_secs(30), req.send()).await {
                    Ok(Ok(r)) => r,
                    other => {
                        failures.push(format!("#{i} {} {}: no answer ({other:?})", c.method, c.path));
                        continue;
                    }
                };
                let status = resp.status().as_u16();
                let body = resp.bytes().await.unwrap_or_default();
                let shaped = serde_json::from_slice::<Value>(&body).ok().is_some_and(|v| {
                    v["error"].as_str().is_some_and(|e| !e.is_empty())
                        && v["code"].as_str().is_some_and(|c| !c.is_empty())
                        && v.as_object().is_some_and(|o| o.len() == 2)
                });
                if !ALLOWED.contains(&status) || !shaped {
                    let shown: String = String::from_utf8_lossy(&c.body).chars().take(200).collect();
                    failures.push(format!(
                        "#{i} {} {} ({:?}, body {shown:?}) -> {status} {}",
                        c.method,
                        c.path,
                        c.content_type,
                        String::from_utf8_lossy(&body)
                    ));
                }
            }
            failures
        }));
    }
    let mut failures = Vec::new();
    for w in workers {
        failures.extend(w.await.unwrap());
    }
    assert!(failures.is_empty(), "{} of {REQUESTS} answers were wrong:\n{}", failures.len(), failures.join("\n"));

    let health: Value = http.get(format!("{base}/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let console = proxy.output();
    assert!(!contains_bytes(&console, b"panicked"), "{}", String::from_utf8_lossy(&console));
    // Nothing refused was stored as a log line or a transaction, and the fake vendor saw nothing.
    assert!(env.run_ok(&["logs", "--json"]).trim().is_empty());
    assert_eq!(env.run_ok(&["txs", "--json"]).trim(), "[]");
    assert!(fake.requests().is_empty(), "{:?}", fake.requests().iter().map(|r| &r.path_and_query).collect::<Vec<_>>());
}
