//! The user's key reaches only inference endpoints, with only the allowed headers: the real proxy
//! in front of the fake vendor (which records everything it receives) shows that refused
//! endpoints and headers never arrive, that account headers come only from config.toml, and that
//! `extra_endpoints` opens exactly the one it names.

use assegai_e2e::{
    Proxy, TestEnv,
    fake_ai::{FakeAi, set_key},
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const OPENAI_KEY: &str = "sk-proj-AllowListOpenAiSecret9Qx7Zk2Lm4Np6Rs";
const ANTHROPIC_KEY: &str = "sk-ant-api03-AllowListAnthropicSecret3Cd5Ef7";
const DEEPSEEK_KEY: &str = "sk-AllowListDeepSeekSecret24681357acegik";

struct Setup {
    fake: FakeAi,
    env: TestEnv,
    proxy: Proxy,
    id: String,
    token: String,
    http: reqwest::Client,
}

impl Setup {
    /// `openai_extra` is added to `[providers.openai]`.
    fn start(top: &str, openai_extra: &str) -> Self {
        let fake = FakeAi::start();
        let env = TestEnv::new();
        let url = fake.url();
        env.write_config(&format!(
            "{top}\n[keys]\nbackend = \"file\"\n\n[providers.openai]\nbase_url = \"{url}\"\n{openai_extra}\n\n\
             [providers.anthropic]\nbase_url = \"{url}\"\n\n[providers.deepseek]\nbase_url = \"{url}\"\n"
        ));
        for (p, k) in [("openai", OPENAI_KEY), ("anthropic", ANTHROPIC_KEY), ("deepseek", DEEPSEEK_KEY)] {
            set_key(&env, p, k);
        }
        let proxy = env.start_proxy();
        let manifest = json!({"name": "caller", "permissions": {
            "chains": ["eip155:31337"], "apis": ["openai", "anthropic", "deepseek"]}});
        let (id, token) = env.add_agent("caller", Some(&manifest));
        Setup { fake, env, proxy, id, token, http: reqwest::Client::new() }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.proxy.url))
            .header("X-Assegai-Agent-ID", &self.id)
            .header("X-Assegai-Agent-Token", &self.token);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("the proxy answers");
        let status = resp.status();
        let bytes = resp.bytes().await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

fn chat() -> Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello."}]})
}

#[tokio::test(flavor = "multi_thread")]
async fn only_inference_endpoints_get_the_key() {
    // Two OpenAI calls an hour: a refused endpoint must not use one up.
    let s = Setup::start("[rate_limits]\nopenai = { requests = 2, per_secs = 3600 }\n", "");
    let refused: &[(Method, &str, Option<Value>)] = &[
        (Method::DELETE, "/api/openai/v1/files/file-abc123", None),
        (Method::GET, "/api/openai/v1/files", None),
        (Method::POST, "/api/openai/v1/fine_tuning/jobs", Some(json!({"model": "gpt-4o-mini", "training_file": "f"}))),
        (
            Method::POST,
            "/api/openai/v1/batches",
            Some(json!({"input_file_id": "f", "endpoint": "/v1/chat/completions"})),
        ),
        (Method::GET, "/api/openai/v1/organization/admin_api_keys", None),
        (Method::POST, "/api/openai/v1/realtime/client_secrets", Some(json!({"session": {"type": "realtime"}}))),
        (Method::POST, "/api/openai/v1/audio/speech", Some(json!({"model": "tts-1", "input": "x", "voice": "alloy"}))),
        (Method::GET, "/api/openai/v1/chat/completions", None),
        (Method::DELETE, "/api/openai/v1/models/ft:gpt-4o:me", None),
        (Method::POST, "/api/anthropic/v1/messages/batches", Some(json!({"requests": []}))),
        (Method::GET, "/api/anthropic/v1/files", None),
        (Method::GET, "/api/deepseek/user/balance", None),
        (Method::PUT, "/api/deepseek/chat/completions", Some(chat())),
    ];
    for (method, path, body) in refused {
        let (status, reply) = s.send(method.clone(), path, body.clone(), &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {reply}");
        assert_eq!(reply["code"], "ENDPOINT_NOT_ALLOWED", "{method} {path}: {reply}");
        let msg = reply["error"].as_str().unwrap();
        assert!(msg.contains(&format!("{method} /")) && msg.contains("extra_endpoints"), "{msg}");
    }
    assert!(s.fake.requests().is_empty(), "the vendor received {:?}", s.fake.requests());

    // The inference endpoints still work, and both calls of the hour are still there.
    let (status, reply) = s.send(Method::POST, "/api/openai/v1/chat/completions", Some(chat()), &[]).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (status, _) = s.send(Method::GET, "/api/openai/v1/models/gpt-4o", None, &[]).await;
    // The fake only knows the list; what matters is that the request reached it, with the key.
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, reply) = s.send(Method::POST, "/api/openai/v1/chat/completions", Some(chat()), &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{reply}");
    let seen = s.fake.requests();
    let targets: Vec<(String, String)> = seen.iter().map(|r| (r.method.clone(), r.path_and_query.clone())).collect();
    assert_eq!(
        targets,
        [("POST".into(), "/v1/chat/completions".into()), ("GET".into(), "/v1/models/gpt-4o".into())],
        "{targets:?}"
    );
    assert_eq!(seen[1].header("authorization"), Some(format!("Bearer {OPENAI_KEY}").as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn extra_endpoints_open_exactly_the_one_listed() {
    let s = Setup::start("", "extra_endpoints = [\"POST /v1/audio/speech\"]");
    let speech = json!({"model": "tts-1", "input": "hello", "voice": "alloy"});
    // The fake has no such route (404), but the request reached it, with the user's key.
    let (status, _) = s.send(Method::POST, "/api/openai/v1/audio/speech", Some(speech.clone()), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for (method, path) in [
        (Method::GET, "/api/openai/v1/audio/speech"),
        (Method::POST, "/api/openai/v1/audio/speech/x"),
        (Method::POST, "/api/openai/v1/audio/transcriptions"),
        (Method::POST, "/api/anthropic/v1/audio/speech"),
        (Method::POST, "/api/deepseek/v1/audio/speech"),
    ] {
        let (status, reply) = s.send(method.clone(), path, Some(speech.clone()), &[]).await;
        assert_eq!((status, reply["code"].as_str()), (StatusCode::FORBIDDEN, Some("ENDPOINT_NOT_ALLOWED")), "{path}");
    }
    let seen = s.fake.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!((seen[0].method.as_str(), seen[0].path_and_query.as_str()), ("POST", "/v1/audio/speech"));
    assert_eq!(seen[0].header("authorization"), Some(format!("Bearer {OPENAI_KEY}").as_str()));
    assert_eq!(seen[0].json(), speech);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_allowed_headers_reach_the_vendor() {
    let s = Setup::start("", "organization = \"org-UserChosen\"\nproject = \"proj_UserChosen\"");
    let sent: &[(&str, &str)] = &[
        ("authorization", "Bearer sk-agent-guess"),
        ("x-api-key", "sk-ant-agent-guess"),
        ("api-key", "agent-azure-style-key"),
        ("openai-organization", "org-AgentChosen"),
        ("openai-project", "proj_AgentChosen"),
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-host", "evil.example"),
        ("forwarded", "for=203.0.113.7;host=evil.example"),
        ("via", "1.1 evil-proxy"),
        ("connection", "x-hop-secret"),
        ("x-hop-secret", "named-in-connection"),
        ("x-custom-tracking", "agent-data"),
        ("cookie", "session=agent"),
        ("x-assegai-extra", "1"),
        ("accept-encoding", "gzip, br"),
        ("user-agent", "AgentClient/1.0"),
        ("accept", "application/json"),
        ("openai-beta", "assistants=v2"),
        ("anthropic-beta", "prompt-caching-2024-07-31"),
    ];
    let never = [
        "sk-agent-guess",
        "sk-ant-agent-guess",
        "agent-azure-style-key",
        "AgentChosen",
        "203.0.113.7",
        "evil",
        "x-hop-secret",
        "named-in-connection",
        "agent-data",
        "session=agent",
        "x-assegai-extra",
        "gzip",
    ];
    let calls: &[(&str, Value)] = &[
        ("/api/openai/v1/chat/completions", chat()),
        ("/api/deepseek/chat/completions", json!({"model": "deepseek-chat", "messages": []})),
        (
            "/api/anthropic/v1/messages",
            json!({"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}),
        ),
    ];
    for (path, body) in calls {
        let (status, reply) = s.send(Method::POST, path, Some(body.clone()), sent).await;
        assert_eq!(status, StatusCode::OK, "{path}: {reply}");
    }
    let seen = s.fake.requests();
    assert_eq!(seen.len(), 3);
    for r in &seen {
        let all = format!("{:?}", r.headers);
        for n in never {
            assert!(!all.contains(n), "{n} reached the vendor at {}: {all}", r.path_and_query);
        }
        assert_eq!(r.header_all("accept-encoding"), ["identity"]);
        assert_eq!(r.header_all("user-agent"), ["AgentClient/1.0"]);
        assert_eq!(r.header_all("accept"), ["application/json"]);
        assert_eq!(r.header_all("content-type"), ["application/json"]);
        let names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
        let mut allowed = vec!["host", "content-length", "content-type", "accept", "user-agent", "accept-encoding"];
        match r.path_and_query.as_str() {
            "/v1/chat/completions" => {
                allowed.extend(["openai-beta", "openai-organization", "openai-project", "authorization"]);
                assert_eq!(r.header_all("openai-organization"), ["org-UserChosen"]);
                assert_eq!(r.header_all("openai-project"), ["proj_UserChosen"]);
                assert_eq!(r.header_all("openai-beta"), ["assistants=v2"]);
                assert_eq!(r.header_all("authorization"), [format!("Bearer {OPENAI_KEY}")]);
            }
            "/chat/completions" => {
                allowed.push("authorization");
                assert_eq!(r.header_all("authorization"), [format!("Bearer {DEEPSEEK_KEY}")]);
            }
            "/v1/messages" => {
                allowed.extend(["anthropic-beta", "anthropic-version", "x-api-key"]);
                assert_eq!(r.header_all("x-api-key"), [ANTHROPIC_KEY]);
                assert_eq!(r.header_all("anthropic-beta"), ["prompt-caching-2024-07-31"]);
                assert!(r.header_all("authorization").is_empty());
            }
            other => panic!("unexpected {other}"),
        }
        for n in &names {
            assert!(allowed.contains(n), "{n} reached the vendor at {}: {names:?}", r.path_and_query);
        }
    }
}

#[test]
fn keys_test_sends_what_the_gateway_sends() {
    let s = Setup::start("", "organization = \"org-UserChosen\"");
    let out = s.env.run(&["keys", "test", "openai"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = s.env.run(&["keys", "test", "anthropic"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen = s.fake.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path_and_query, "/v1/models");
    assert_eq!(seen[0].header_all("authorization"), [format!("Bearer {OPENAI_KEY}")]);
    assert_eq!(seen[0].header_all("openai-organization"), ["org-UserChosen"]);
    assert_eq!(seen[1].header_all("x-api-key"), [ANTHROPIC_KEY]);
    assert_eq!(seen[1].header_all("anthropic-version"), ["2023-06-01"]);
}
