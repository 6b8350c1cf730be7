//! Rate limits shared through a real Redis (`redis_url` in `config.toml`): two limiters, as two
//! proxies would hold, let through exactly one quota between them, also when racing; and a proxy
//! whose Redis is down refuses calls with 503 (never unlimited) until Redis is back.

use std::{sync::Arc, time::Duration};

use assegai_e2e::{TestEnv, redis::Redis};
use assegai_proxy::{
    Error,
    config::{RateLimit, RateLimits},
    ids::AgentId,
    ratelimit::{RateLimiter, Service},
};
use serde_json::{Value, json};

fn limits(requests: u32, per_secs: u64) -> RateLimits {
    RateLimits { rpc: RateLimit { requests, per_secs }, ..RateLimits::default() }
}

#[tokio::test]
async fn two_proxies_share_one_quota_exactly() {
    let redis = Redis::start();
    let a = RateLimiter::shared(&limits(30, 10), &redis.url()).unwrap();
    let b = RateLimiter::shared(&limits(30, 10), &redis.url()).unwrap();
    assert!(a.is_shared());
    let agent = AgentId::from("ag_01");
    for i in 0..30 {
        let proxy = if i % 2 == 0 { &a } else { &b };
        proxy.check(Service::Rpc, &agent).await.unwrap_or_else(|e| panic!("call {i}: {e}"));
    }
    // The 31st, on either proxy, waits for the next slot: 10 s / 30, told as 1 s (rounded up).
    for proxy in [&a, &b] {
        match proxy.check(Service::Rpc, &agent).await {
            Err(Error::RateLimited { retry_after_secs }) => assert_eq!(retry_after_secs, 1),
            other => panic!("expected a rate limit, got {other:?}"),
        }
    }
    // Another agent, and another service, have quotas of their own.
    a.check(Service::Rpc, &AgentId::from("ag_02")).await.unwrap();
    b.check(Service::OpenAi, &agent).await.unwrap();
}

#[tokio::test]
async fn racing_proxies_let_through_no_more_than_the_quota() {
    let redis = Redis::start();
    let proxies: Vec<Arc<RateLimiter>> =
        (0..4).map(|_| Arc::new(RateLimiter::shared(&limits(25, 3600), &redis.url()).unwrap())).collect();
    let agent = AgentId::from("ag_0a");
    let mut calls = Vec::new();
    for i in 0..100 {
        let (proxy, agent) = (Arc::clone(&proxies[i % 4]), agent.clone());
        calls.push(tokio::spawn(async move { proxy.check(Service::Rpc, &agent).await }));
    }
    let mut passed = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(()) => passed += 1,
            Err(Error::RateLimited { retry_after_secs }) => assert!(retry_after_secs >= 1),
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!(passed, 25, "exactly the quota passed across four proxies");
}

#[tokio::test]
async fn without_redis_calls_are_refused_with_503_until_it_is_back() {
    let redis = Redis::start();
    let port = redis.port();
    let env = TestEnv::with_anvil();
    env.write_config(&format!("redis_url = \"{}\"\n", redis.url()));
    let proxy = env.start_proxy();
    let (id, token) = env.add_agent("reader", None);
    let http = reqwest::Client::new();
    let read = || {
        http.post(format!("{}/agent/query-chain", proxy.url))
            .header("X-Assegai-Agent-ID", &id)
            .header("X-Assegai-Agent-Token", &token)
            .json(&json!({"chain": "eip155:31337", "method": "eth_blockNumber", "params": []}))
            .send()
    };
    let ok = read().await.unwrap();
    assert_eq!(ok.status(), 200, "{:?}", ok.text().await);

    redis.stop();
    let refused = read().await.unwrap();
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "LIMITS_UNAVAILABLE", "{body}");
    assert!(body["error"].as_str().unwrap().contains("Redis"), "the message says why: {body}");

    let _redis = Redis::start_on(port);
    // Once Redis answers again (the proxy retries after a second), calls go through.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = read().await.unwrap().status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "refused while Redis is coming back, never anything else");
        assert!(std::time::Instant::now() < deadline, "calls did not resume once Redis was back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn doctor_says_where_the_limits_are_kept_and_whether_redis_answers() {
    let rate_limits = |env: &TestEnv| -> Value {
        let out = env.run(&["doctor", "--json"]);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        report["checks"].as_array().unwrap().iter().find(|c| c["check"] == "rate limits").cloned().unwrap()
    };
    let env = TestEnv::new();
    let local = rate_limits(&env);
    assert_eq!(local["level"], "ok", "{local}");
    assert!(local["detail"].as_str().unwrap().contains("each proxy"), "{local}");

    // A Redis that takes anyone: an agent could reset its own limits there, so doctor warns.
    let open = Redis::start();
    env.write_config(&format!("redis_url = \"{}\"\n", open.url()));
    let warned = rate_limits(&env);
    assert_eq!(warned["level"], "warn", "{warned}");
    assert!(warned["fix"].as_str().unwrap().contains("requirepass"), "{warned}");
    drop(open);

    let redis = Redis::start_with_password("sekrit-pass");
    env.write_config(&format!("redis_url = \"{}\"\n", redis.url()));
    let shared = rate_limits(&env);
    assert_eq!(shared["level"], "ok", "{shared}");
    assert!(shared["detail"].as_str().unwrap().contains(&format!("127.0.0.1:{}", redis.port())), "{shared}");
    assert!(!shared.to_string().contains("sekrit"), "the password is not shown: {shared}");

    let port = redis.port();
    redis.stop();
    env.write_config(&format!("redis_url = \"redis://:sekrit-pass@127.0.0.1:{port}\"\n"));
    let down = rate_limits(&env);
    assert_eq!(down["level"], "fail", "{down}");
    assert!(down["fix"].as_str().unwrap().contains("redis_url"), "{down}");
    assert!(!down.to_string().contains("sekrit"), "the password is not shown: {down}");
}

/// SPEC §8: an agent can open sockets, so with a password-protected Redis (what doctor asks for)
/// a client without the password, as an agent would be, can neither read nor reset a limit, while
/// the proxy, which has the password from config.toml, goes on limiting.
#[tokio::test]
async fn a_client_without_the_password_cannot_reset_a_limit() {
    let redis = Redis::start_with_password("team-secret");
    let proxy = RateLimiter::shared(&limits(2, 3600), &redis.url()).unwrap();
    let agent = AgentId::from("ag_0b");
    proxy.check(Service::Rpc, &agent).await.unwrap();
    proxy.check(Service::Rpc, &agent).await.unwrap();
    assert!(matches!(proxy.check(Service::Rpc, &agent).await, Err(Error::RateLimited { .. })));

    // The agent's attempt: connect and delete every key.
    let mut intruder = std::net::TcpStream::connect(("127.0.0.1", redis.port())).unwrap();
    use std::io::{Read, Write};
    intruder.write_all(b"FLUSHALL\r\n").unwrap();
    let mut reply = [0u8; 64];
    let n = intruder.read(&mut reply).unwrap();
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(reply.starts_with("-NOAUTH"), "Redis refused the command: {reply}");
    assert!(matches!(proxy.check(Service::Rpc, &agent).await, Err(Error::RateLimited { .. })), "still limited");

    // A proxy configured without the password is refused too: 503, never unlimited.
    let url = format!("redis://127.0.0.1:{}", redis.port());
    let careless = RateLimiter::shared(&limits(2, 3600), &url).unwrap();
    assert!(matches!(careless.check(Service::Rpc, &agent).await, Err(Error::LimitsUnavailable(_))));
}
