//! A team deployment: two proxies, each with a home of its own (two hosts, as far as they can
//! tell), on one real PostgreSQL, one real Anvil and, for the rate limits, one real Redis. A
//! request waiting on one host is approved from the other and signed by its holder; a spending
//! limit holds exactly across both; two proxies signing with one wallet never reuse a nonce; a
//! proxy killed with a request pending leaves it to expire, not to wait forever; a shared rate
//! limit lets the 101st call through neither proxy; and a pause or a new token on one host holds
//! on the other at once.

use std::time::Duration;

use alloy_primitives::U256;
use assegai_e2e::{Anvil, Proxy, TestEnv, fake_ai, redis::Redis, wait_until};
use reqwest::StatusCode;
use serde_json::{Value, json};

const LOCAL: &str = "eip155:31337";
const RECIPIENT: &str = "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045";
const TENTH: u128 = 100_000_000_000_000_000;

/// Two homes on one database, one chain; `extra` TOML in both configs.
struct Team {
    a: TestEnv,
    b: TestEnv,
}

impl Team {
    fn new(extra: &str) -> Self {
        let mut a = TestEnv::on_postgres();
        a.anvil = Some(Anvil::start());
        a.write_config(extra);
        let b = TestEnv::beside(&a);
        b.write_config(&format!("local_rpc_url = \"{}\"\n{extra}", a.anvil().url));
        Team { a, b }
    }

    fn anvil(&self) -> &Anvil {
        self.a.anvil()
    }
}

/// An agent registered on one host, which may call either proxy.
#[derive(Clone)]
struct Agent {
    http: reqwest::Client,
    id: String,
    token: String,
}

impl Agent {
    fn register(env: &TestEnv, name: &str, limits: Value) -> Self {
        let manifest = json!({"name": name, "permissions": {"chains": [LOCAL]}, "spending_limits": limits});
        let (id, token) = env.add_agent(name, Some(&manifest));
        Agent { http: reqwest::Client::new(), id, token }
    }

    /// Asks `proxy` to send `wei` to [`RECIPIENT`]; the reply when it comes (after a decision).
    async fn pay(&self, proxy: &str, wei: u128) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{proxy}/agent/request-transaction"))
            .header("X-Assegai-Agent-ID", &self.id)
            .header("X-Assegai-Agent-Token", &self.token)
            .json(&json!({"chain": LOCAL, "to": RECIPIENT, "value": wei.to_string()}))
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .expect("the proxy answers");
        let status = resp.status();
        (status, resp.json().await.expect("a JSON reply"))
    }

    async fn chat(&self, proxy: &str) -> reqwest::Response {
        self.http
            .post(format!("{proxy}/api/openai/v1/chat/completions"))
            .header("X-Assegai-Agent-ID", &self.id)
            .header("X-Assegai-Agent-Token", &self.token)
            .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .expect("the proxy answers")
    }
}

fn pending(env: &TestEnv) -> Vec<Value> {
    serde_json::from_str::<Value>(&env.run_ok(&["approve", "--list", "--json"])).unwrap().as_array().unwrap().clone()
}

fn max_fee(entry: &Value) -> U256 {
    entry["max_fee_wei"].as_str().unwrap().parse().unwrap()
}

async fn rpc(anvil: &Anvil, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let reply: Value = reqwest::Client::new().post(&anvil.url).json(&body).send().await.unwrap().json().await.unwrap();
    reply["result"].clone()
}

/// The receipt's status and the transaction's nonce.
async fn mined(anvil: &Anvil, hash: &str) -> (String, u64) {
    let receipt = rpc(anvil, "eth_getTransactionReceipt", json!([hash])).await;
    let tx = rpc(anvil, "eth_getTransactionByHash", json!([hash])).await;
    let nonce = u64::from_str_radix(tx["nonce"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    (receipt["status"].as_str().unwrap_or("(no receipt)").to_owned(), nonce)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_waiting_on_one_host_is_approved_from_the_other() {
    let team = Team::new("");
    let (pa, pb): (Proxy, Proxy) = (team.a.start_proxy(), team.b.start_proxy());
    let agent = Agent::register(&team.a, "payer", json!({"daily": "1.0"}));
    let asked = {
        let (agent, url) = (agent.clone(), pa.url.clone());
        tokio::spawn(async move { agent.pay(&url, TENTH).await })
    };
    // Host B sees it, and which host holds it.
    let entry = wait_until(Duration::from_secs(30), "the request to be listed on host B", || {
        pending(&team.b).into_iter().next()
    });
    let holder = entry["held_by"].as_str().unwrap();
    assert!(holder.ends_with(&format!("({})", team.a.home().display())), "{holder}");
    let id = entry["id"].as_str().unwrap().to_owned();

    let out = team.b.run_ok(&["approve", &id, "--yes"]);
    let (status, reply) = asked.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{reply}");
    let hash = reply["txHash"].as_str().unwrap_or_else(|| panic!("a hash in {reply}")).to_owned();
    assert!(out.contains(&hash), "host B printed the hash: {out}");
    assert_eq!(mined(team.anvil(), &hash).await.0, "0x1");
    let row = wait_until(Duration::from_secs(30), "the receipt to be recorded", || {
        let rows: Value = serde_json::from_str(&team.a.run_ok(&["txs", "--json"])).unwrap();
        Some(rows[0].clone()).filter(|r| r["status"] == "confirmed")
    });
    assert_eq!(row["tx_hash"].as_str(), Some(hash.as_str()), "{row}");

    // A third host runs no proxy at all: its decision is a row, and the holder still signs.
    let c = TestEnv::beside(&team.a);
    let asked = {
        let (agent, url) = (agent.clone(), pa.url.clone());
        tokio::spawn(async move { agent.pay(&url, TENTH).await })
    };
    let entry = wait_until(Duration::from_secs(30), "the request on host C", || pending(&c).into_iter().next());
    let out = c.run_ok(&["approve", entry["id"].as_str().unwrap(), "--yes"]);
    let (status, reply) = asked.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert!(out.contains(reply["txHash"].as_str().unwrap()), "{out}");
    assert_eq!(mined(team.anvil(), reply["txHash"].as_str().unwrap()).await.0, "0x1");
    drop((pa, pb));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_spending_limit_holds_exactly_across_two_proxies() {
    let team = Team::new("");
    let (pa, pb) = (team.a.start_proxy(), team.b.start_proxy());
    // What one transfer's worst-case fee is, from one request rejected at once.
    let probe = Agent::register(&team.a, "probe", json!({}));
    let asked = {
        let (probe, url) = (probe.clone(), pa.url.clone());
        tokio::spawn(async move { probe.pay(&url, 1).await })
    };
    let entry = wait_until(Duration::from_secs(30), "the probe", || pending(&team.a).into_iter().next());
    let fee = max_fee(&entry);
    team.a.run_ok(&["reject", entry["id"].as_str().unwrap()]);
    assert_eq!(asked.await.unwrap().0, StatusCode::FORBIDDEN);

    let agent = Agent::register(&team.a, "racer", json!({"per_transaction": "1.0", "daily": "1.0"}));
    let mut asks = Vec::new();
    for i in 0..50 {
        let (agent, url) = (agent.clone(), if i % 2 == 0 { pa.url.clone() } else { pb.url.clone() });
        asks.push(tokio::spawn(async move { agent.pay(&url, TENTH).await }));
    }
    // Value + worst-case fee each: as many as fit in 1 ETH, which is 9.
    let fit = (U256::from(10 * TENTH) / (U256::from(TENTH) + fee)).to::<usize>();
    assert_eq!(fit, 9);
    let held = wait_until(Duration::from_secs(60), "every request refused or pending", || {
        let refused = asks.iter().filter(|a| a.is_finished()).count();
        let held: Vec<Value> = pending(&team.b).into_iter().filter(|e| e["agent"] == "racer").collect();
        (refused + held.len() >= 50).then_some(held)
    });
    assert_eq!(held.len(), fit, "exactly what fits waits, never one more");
    // Each proxy had 25 of them and at most 9 wait in all: each refused at least 16 itself.
    let (mut refused, mut waiting) = ([0, 0], Vec::new());
    for (i, ask) in asks.into_iter().enumerate() {
        if !ask.is_finished() {
            waiting.push(ask);
        } else {
            let (status, body) = ask.await.unwrap();
            assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
            assert_eq!(body["error"], "Total spending limit exceeded", "{body}");
            refused[i % 2] += 1;
        }
    }
    assert!(refused.iter().all(|n| *n >= 25 - fit), "refused by A and by B: {refused:?}");
    for entry in &held {
        team.b.run_ok(&["reject", entry["id"].as_str().unwrap()]);
    }
    assert_eq!(waiting.len(), fit);
    for ask in waiting {
        assert_eq!(ask.await.unwrap().0, StatusCode::FORBIDDEN, "rejected");
    }
    drop((pa, pb));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_proxies_with_one_wallet_never_reuse_a_nonce() {
    let team = Team::new("");
    let (pa, pb) = (team.a.start_proxy(), team.b.start_proxy());
    let agent = Agent::register(&team.a, "busy", json!({}));
    let mut asks = Vec::new();
    for i in 0..20 {
        let (agent, url) = (agent.clone(), if i % 2 == 0 { pa.url.clone() } else { pb.url.clone() });
        asks.push(tokio::spawn(async move { agent.pay(&url, 1_000 + i).await }));
    }
    let ids: Vec<String> = wait_until(Duration::from_secs(60), "all 20 requests to wait", || {
        let list = pending(&team.a);
        (list.len() == 20).then(|| list.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect())
    });
    // Approved all at once, half from each host, each by the proxy of the host it is approved on.
    let approvals: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let env = if i % 2 == 0 { &team.a } else { &team.b };
            let mut cmd = env.cmd(&["approve", id, "--yes"]);
            cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    for child in approvals {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let mut nonces = Vec::new();
    for ask in asks {
        let (status, reply) = ask.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{reply}");
        let (receipt, nonce) = mined(team.anvil(), reply["txHash"].as_str().unwrap()).await;
        assert_eq!(receipt, "0x1", "{reply}");
        nonces.push(nonce);
    }
    nonces.sort_unstable();
    assert_eq!(nonces, (0..20).collect::<Vec<u64>>(), "20 distinct nonces, no gap");
    drop((pa, pb));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_held_by_a_killed_proxy_expires_and_frees_the_limit() {
    let team = Team::new("approval_timeout_secs = 2\n");
    let (pa, pb) = (team.a.start_proxy(), team.b.start_proxy());
    let agent = Agent::register(&team.a, "orphan", json!({"daily": "1.0"}));
    let asked = {
        let (agent, url) = (agent.clone(), pa.url.clone());
        tokio::spawn(async move { agent.pay(&url, 9 * TENTH).await })
    };
    let entry = wait_until(Duration::from_secs(30), "the request to wait", || pending(&team.b).into_iter().next());
    let id = entry["id"].as_str().unwrap().to_owned();
    std::process::Command::new("kill").args(["-KILL", &pa.pid().to_string()]).status().unwrap();
    assert!(asked.await.is_err(), "the agent's call ends with its proxy");
    let row = wait_until(Duration::from_secs(30), "proxy B to expire what A left", || {
        let rows: Value = serde_json::from_str(&team.b.run_ok(&["txs", "--json"])).unwrap();
        rows.as_array().unwrap().iter().find(|r| r["id"] == id.as_str() && r["status"] != "pending").cloned()
    });
    assert_eq!(row["status"], "expired", "{row}");
    assert!(row["error"].as_str().unwrap().contains("the proxy holding it stopped"), "{row}");
    // The limit is free again: the same amount waits again, through B.
    let again = {
        let (agent, url) = (agent.clone(), pb.url.clone());
        tokio::spawn(async move { agent.pay(&url, 9 * TENTH).await })
    };
    let entry = wait_until(Duration::from_secs(30), "a new request to wait", || pending(&team.b).into_iter().next());
    team.b.run_ok(&["reject", entry["id"].as_str().unwrap()]);
    assert_eq!(again.await.unwrap().0, StatusCode::FORBIDDEN);
    drop(pb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shared_rate_limit_holds_across_two_proxies_and_fails_closed() {
    let redis = Redis::start_with_password("team-pass");
    let fake = fake_ai::FakeAi::start();
    let extra = format!(
        "redis_url = \"{}\"\n[keys]\nbackend = \"file\"\n[providers.openai]\nbase_url = \"{}\"\n",
        redis.url(),
        fake.url()
    );
    let team = Team::new(&extra);
    for env in [&team.a, &team.b] {
        fake_ai::set_key(env, "openai", "sk-team-key-0123456789");
    }
    let (pa, pb) = (team.a.start_proxy(), team.b.start_proxy());
    let manifest = json!({"name": "chatty", "permissions": {"chains": [LOCAL], "apis": ["openai"]}});
    let (id, token) = team.a.add_agent("chatty", Some(&manifest));
    let agent = Agent { http: reqwest::Client::new(), id, token };
    for i in 0..100 {
        let url = if i % 2 == 0 { &pa.url } else { &pb.url };
        let resp = agent.chat(url).await;
        assert_eq!(resp.status(), StatusCode::OK, "call {i}");
    }
    for url in [&pa.url, &pb.url] {
        let resp = agent.chat(url).await;
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        let wait: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
    }
    redis.stop();
    let resp = agent.chat(&pb.url).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "never unlimited");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "LIMITS_UNAVAILABLE", "{body}");
    drop((pa, pb));
}

/// The kill switch and a new token, on one host, hold on every host at once: the other proxy had
/// the agent cached, and the database's announcement makes it read the agent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pausing_or_replacing_a_token_on_one_host_holds_on_every_host() {
    let team = Team::new("");
    let (pa, pb) = (team.a.start_proxy(), team.b.start_proxy());
    let manifest = json!({"name": "roamer", "permissions": {"chains": [LOCAL]}});
    let (id, token) = team.a.add_agent("roamer", Some(&manifest));
    let on_a = team.a.sdk(&pa, &id, &token);
    on_a.block_number(assegai_sdk::ChainId::ANVIL).await.expect("an active agent reads the chain through A");

    team.b.run_ok(&["agents", "pause", "roamer"]);
    let refused = until_refused(&on_a, "proxy A to see the pause").await;
    assert!(
        matches!(&refused, assegai_sdk::Error::Forbidden { reason, .. } if reason == "Agent paused"),
        "{refused:?}"
    );

    team.b.run_ok(&["agents", "resume", "roamer"]);
    // Registered again on B: a new token, and the old one stops working on A too.
    let (same_id, new_token) = team.b.add_agent("roamer", Some(&manifest));
    assert_eq!(same_id, id);
    let refused = until_refused(&on_a, "proxy A to drop the old token").await;
    assert!(matches!(refused, assegai_sdk::Error::Unauthorized { .. }), "{refused:?}");
    let renewed = team.a.sdk(&pa, &id, &new_token);
    renewed.block_number(assegai_sdk::ChainId::ANVIL).await.expect("the new token works on A");
    // Their listeners end with them: a clean stop does not hang on them.
    assert!(pa.terminate() && pb.terminate(), "both proxies stop cleanly");
}

/// Reads the chain through `sdk` until it is refused (10 s at most); the refusal.
async fn until_refused(sdk: &assegai_sdk::Assegai, what: &str) -> assegai_sdk::Error {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match sdk.block_number(assegai_sdk::ChainId::ANVIL).await {
            // The chain-read limit, from asking this often, is not the refusal waited for.
            Err(assegai_sdk::Error::RateLimited { .. }) | Ok(_) => {}
            Err(e) => return e,
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
