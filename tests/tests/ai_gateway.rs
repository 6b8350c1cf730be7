//! The AI gateway end to end: the real `assegai` binary forwarding to a local fake of the
//! providers' APIs (`assegai_e2e::fake_ai`), keys in the encrypted-file store, usage read back
//! with `assegai usage --json`. Every test ends by checking that no provider key shows up in any
//! response, CLI output, proxy output or file of the home.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use assegai_e2e::{
    Proxy, TestEnv, contains_bytes,
    fake_ai::{self, FakeAi, Recorded, usage::*},
};
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::{Value, json};

const OPENAI_KEY: &str = "sk-proj-E2eOpenAiSecret7Qx9Zk2Lm4Np6Rs8Tv0WyQ3";
const ANTHROPIC_KEY: &str = "sk-ant-api03-E2eAnthropicSecret3Cd5Ef7Gh9Jk1Mn";
const DEEPSEEK_KEY: &str = "sk-e2eDeepSeekSecret24681357acegikmoq";
const ALL_KEYS: &[(&str, &str)] = &[("openai", OPENAI_KEY), ("anthropic", ANTHROPIC_KEY), ("deepseek", DEEPSEEK_KEY)];

const CLAUDE_CANDIDATES: &[&str] = &[
    "claude-sonnet-4-5",
    "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5",
    "claude-sonnet-4-20250514",
    "claude-3-7-sonnet-20250219",
    "claude-3-5-haiku-20241022",
];

/// What a gateway test starts with.
#[derive(Default)]
struct Setup<'a> {
    /// Top-level `config.toml` lines (before any table).
    top: &'a str,
    /// Lines of the `[rate_limits]` table.
    rate_limits: &'a str,
    /// Overrides OpenAI's base URL (else the fake).
    openai_base: Option<&'a str>,
    /// Keys stored before the proxy starts.
    keys: &'a [(&'a str, &'a str)],
}

/// One proxy in front of one fake upstream, and everything agents and the CLI were shown.
struct Gateway {
    // Fields drop in order: the proxy first, the home last.
    proxy: Option<Proxy>,
    fake: FakeAi,
    env: TestEnv,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Gateway {
    fn start(setup: Setup<'_>) -> Self {
        let fake = FakeAi::start();
        let env = TestEnv::new();
        let url = fake.url();
        let openai = setup.openai_base.unwrap_or(&url);
        let mut config = format!(
            "{top}\n[keys]\nbackend = \"file\"\n\n[providers.openai]\nbase_url = \"{openai}\"\n\n\
             [providers.anthropic]\nbase_url = \"{url}\"\n\n[providers.deepseek]\nbase_url = \"{url}\"\n",
            top = setup.top
        );
        if !setup.rate_limits.is_empty() {
            config.push_str(&format!("\n[rate_limits]\n{}\n", setup.rate_limits));
        }
        env.write_config(&config);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let g = Gateway { proxy: None, fake, env, seen };
        for (provider, key) in setup.keys {
            g.set_key(provider, key);
        }
        Gateway { proxy: Some(g.env.start_proxy()), ..g }
    }

    fn proxy(&self) -> &Proxy {
        self.proxy.as_ref().expect("the proxy runs")
    }

    /// `assegai keys set PROVIDER --stdin`; its output counts as something the user was shown.
    fn set_key(&self, provider: &str, key: &str) {
        let out = fake_ai::set_key(&self.env, provider, key);
        self.show(&out.stdout);
        self.show(&out.stderr);
    }

    /// Runs the CLI, asserts success, records and returns stdout.
    fn cli(&self, args: &[&str]) -> String {
        let out = self.env.run(args);
        self.show(&out.stdout);
        self.show(&out.stderr);
        assert!(out.status.success(), "assegai {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn show(&self, bytes: &[u8]) {
        let mut seen = self.seen.lock().unwrap();
        seen.extend_from_slice(bytes);
        seen.push(b'\n');
    }

    /// Registers an agent whose manifest lists `apis`, with an optional daily AI budget.
    fn agent(&self, name: &str, apis: &[&str], daily_usd: Option<&str>) -> Agent {
        let mut manifest = json!({"name": name, "permissions": {"chains": ["eip155:31337"], "apis": apis}});
        if let Some(d) = daily_usd {
            manifest["ai_budget"] = json!({"daily_usd": d});
        }
        let (id, token) = self.env.add_agent(name, Some(&manifest));
        Agent { http: reqwest::Client::new(), base: self.proxy().url.clone(), id, token, seen: Arc::clone(&self.seen) }
    }

    /// No key, nor a key without its last four characters (more than the masked tail), in any file
    /// of the home, the proxy's output, or anything shown to agents and the user.
    fn assert_no_leaks(&self) {
        let mut files = Vec::new();
        collect_files(self.env.home(), &mut files);
        let names: Vec<String> = files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        if self.env.database_url().is_none() {
            assert!(names.iter().any(|n| n == "assegai.db"), "no database in the home: {names:?}");
        }
        let mut places: Vec<(String, Vec<u8>)> =
            files.iter().map(|p| (p.display().to_string(), std::fs::read(p).unwrap_or_default())).collect();
        places.push(("the database".into(), self.env.database_bytes()));
        if let Some(p) = &self.proxy {
            places.push(("the proxy's stdout/stderr".into(), p.output()));
        }
        places.push(("responses and CLI output".into(), self.seen.lock().unwrap().clone()));
        for (_, key) in ALL_KEYS {
            for needle in [*key, &key[..key.len() - 4]] {
                for (place, bytes) in &places {
                    assert!(!contains_bytes(bytes, needle.as_bytes()), "a key ({needle}) leaked into {place}");
                }
            }
        }
    }
}

fn collect_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            collect_files(&path, out);
        } else if meta.is_file() {
            out.push(path);
        }
    }
}

/// A registered agent calling the proxy over HTTP.
struct Agent {
    http: reqwest::Client,
    base: String,
    id: String,
    token: String,
    seen: Arc<Mutex<Vec<u8>>>,
}

/// A reply, read whole.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("a JSON reply, got {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn assert_error(&self, status: StatusCode, code: &str, message_part: &str) {
        let v = self.json();
        assert_eq!(self.status, status, "{v}");
        assert_eq!(v["code"], code, "{v}");
        let msg = v["error"].as_str().expect("an error message");
        assert!(msg.contains(message_part), "expected {message_part:?} in {msg:?}");
    }
}

/// A streamed reply: each body chunk with the time it arrived.
struct Streamed {
    status: StatusCode,
    headers: HeaderMap,
    chunks: Vec<(Instant, Bytes)>,
}

impl Streamed {
    fn body(&self) -> Vec<u8> {
        self.chunks.iter().flat_map(|(_, c)| c.iter().copied()).collect()
    }

    /// The SSE events (each with its blank line), with the time each was complete.
    fn events(&self) -> Vec<(Instant, Vec<u8>)> {
        let mut out = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        for (at, chunk) in &self.chunks {
            buf.extend_from_slice(chunk);
            while let Some(i) = buf.windows(2).position(|w| w == b"\n\n") {
                let ev: Vec<u8> = buf.drain(..i + 2).collect();
                out.push((*at, ev));
            }
        }
        assert!(buf.is_empty(), "the stream ended inside an event: {:?}", String::from_utf8_lossy(&buf));
        out
    }
}

impl Agent {
    fn record(&self, headers: &HeaderMap, body: &[u8]) {
        let mut seen = self.seen.lock().unwrap();
        for (n, v) in headers {
            seen.extend_from_slice(n.as_str().as_bytes());
            seen.extend_from_slice(b": ");
            seen.extend_from_slice(v.as_bytes());
            seen.push(b'\n');
        }
        seen.extend_from_slice(body);
        seen.push(b'\n');
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-Assegai-Agent-ID", &self.id)
            .header("X-Assegai-Agent-Token", &self.token);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req
    }

    async fn send(&self, method: Method, path: &str, body: Option<&Value>, headers: &[(&str, &str)]) -> Reply {
        let resp = self.request(method, path, body, headers).send().await.expect("the proxy answers");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("a whole reply");
        self.record(&headers, &body);
        Reply { status, headers, body }
    }

    async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(Method::POST, path, Some(body), &[]).await
    }

    async fn stream(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Streamed {
        let resp = self.request(Method::POST, path, Some(body), headers).send().await.expect("the proxy answers");
        let status = resp.status();
        let headers = resp.headers().clone();
        let mut chunks = Vec::new();
        let mut s = resp.bytes_stream();
        while let Some(c) = s.next().await {
            let c = c.expect("the stream does not break off");
            chunks.push((Instant::now(), c));
        }
        let streamed = Streamed { status, headers, chunks };
        self.record(&streamed.headers, &streamed.body());
        streamed
    }
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Say hello."}], "temperature": 0})
}

fn message(model: &str) -> Value {
    json!({"model": model, "max_tokens": 256, "messages": [{"role": "user", "content": "Say hello."}]})
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn last(fake: &FakeAi) -> Recorded {
    fake.requests().pop().expect("the upstream got a request")
}

/// Each event reached the client while the upstream was still sending: every event arrived before
/// the upstream sent the event two after it (events are `CHUNK_GAP` apart), and the first before
/// the upstream finished.
fn assert_unbuffered(client: &Streamed, upstream: &Recorded) {
    let events = client.events();
    assert!(!events.is_empty());
    let finished = upstream.finished_at().expect("the upstream sent something");
    assert!(events[0].0 < finished, "the first event reached the client only after the upstream finished");
    for (at, ev) in &events {
        // The same event, up to a `"usage": null` member the proxy may have cut.
        let same = |data: &[u8]| data == ev.as_slice() || sse_data(data) == sse_data(ev);
        let j = upstream.sent.iter().position(|c| same(&c.data)).unwrap_or_else(|| {
            panic!("the client got an event the upstream never sent: {:?}", String::from_utf8_lossy(ev))
        });
        assert!(*at >= upstream.sent[j].at);
        if let Some(later) = upstream.sent.get(j + 2) {
            assert!(
                *at < later.at,
                "event {j} ({:?}) reached the client {:?} after the upstream sent it: buffered",
                String::from_utf8_lossy(ev),
                at.duration_since(upstream.sent[j].at)
            );
        }
    }
}

/// What the client of an OpenAI-style stream must get when it did not ask for usage but the proxy
/// did: exactly the stream the upstream sends to a request that does not ask (no usage chunk, no
/// `"usage": null` members). Asserts the upstream's stream had one usage chunk to hide.
fn without_usage_chunk(upstream: &Recorded) -> Vec<u8> {
    let usage_chunks = upstream.sent.iter().filter(|c| is_usage_chunk(&c.data)).count();
    assert_eq!(usage_chunks, 1, "one usage chunk upstream");
    upstream.stream_without_usage.clone().expect("the upstream was asked for usage")
}

fn is_usage_chunk(data: &[u8]) -> bool {
    let v = sse_data(data);
    v["choices"] == json!([]) && v["usage"].is_object()
}

/// An SSE event's `data:` as JSON (a string when it is not JSON, e.g. `[DONE]`), without the
/// `"usage": null` member OpenAI adds once usage is requested.
fn sse_data(event: &[u8]) -> Value {
    let text = String::from_utf8_lossy(event);
    let data: String = text.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
    let mut v = serde_json::from_str(&data).unwrap_or(Value::String(data));
    if let Some(o) = v.as_object_mut()
        && o.get("usage") == Some(&Value::Null)
    {
        o.remove("usage");
    }
    v
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---------------------------------------------------------------------------------------------

/// The fake itself, called directly: the wire formats the other tests rely on.
#[tokio::test(flavor = "multi_thread")]
async fn the_fake_upstream_speaks_the_vendor_formats() {
    let fake = FakeAi::start();
    let http = reqwest::Client::new();
    let url = fake.url();

    let r = http.post(format!("{url}/v1/chat/completions")).json(&chat("gpt-4o")).send().await.unwrap();
    assert_eq!(r.status(), 401, "no key, no answer");

    let v: Value = http
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth("sk-x")
        .json(&chat("gpt-4o"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], fake_ai::content());
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], OPENAI_CACHED_TOKENS);

    let r = http
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth("sk-x")
        .json(&chat("error-400"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["type"], "invalid_request_error");

    let body = with(chat("gpt-4o"), "stream", json!(true));
    let text = http
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth("sk-x")
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.ends_with("data: [DONE]\n\n") && !text.contains("\"usage\""), "{text}");
    let rec = last(&fake);
    let gaps: Vec<Duration> = rec.sent.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps.iter().all(|g| *g >= fake_ai::CHUNK_GAP - Duration::from_millis(5)), "{gaps:?}");

    let body = with(body, "stream_options", json!({"include_usage": true}));
    let text = http
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth("sk-x")
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("\"choices\":[],") && text.contains("\"cached_tokens\":1024"), "{text}");

    let text = http
        .post(format!("{url}/v1/messages"))
        .header("x-api-key", "sk-ant-x")
        .header("anthropic-version", "2023-06-01")
        .json(&with(message("claude-x"), "stream", json!(true)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.starts_with("event: message_start\n")
            && text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
    );
    let r = http
        .post(format!("{url}/v1/messages"))
        .header("x-api-key", "sk-ant-x")
        .json(&message("claude-x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "anthropic-version is required");
    assert_eq!(fake.requests().len(), 7);
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_injected_and_client_credentials_never_reach_the_upstream() {
    let g = Gateway::start(Setup { keys: ALL_KEYS, ..Setup::default() });
    let a = g.agent("injected", &["openai", "anthropic", "deepseek"], None);
    let sneaky: &[(&str, &str)] = &[
        ("authorization", "Bearer sk-agent-own-guess"),
        ("x-api-key", "sk-ant-agent-own-guess"),
        ("x-assegai-extra", "1"),
        ("accept-encoding", "gzip, br"),
        ("openai-organization", "org-kept"),
    ];
    let assert_common = |up: &Recorded| {
        assert!(up.headers.iter().all(|(n, _)| !n.starts_with("x-assegai")), "{:?}", up.headers);
        assert_eq!(up.header_all("accept-encoding"), ["identity"], "{:?}", up.headers);
    };

    // OpenAI: any method, path and query kept; Bearer key injected; the client's auth dropped.
    let body = chat("gpt-4o");
    let r = a.send(Method::POST, "/api/openai/v1/chat/completions?trace=1&x=a%20b", Some(&body), sneaky).await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r.body));
    let up = last(&g.fake);
    assert_eq!((up.method.as_str(), up.path_and_query.as_str()), ("POST", "/v1/chat/completions?trace=1&x=a%20b"));
    assert_eq!(up.header_all("authorization"), [format!("Bearer {OPENAI_KEY}")]);
    assert!(up.header_all("x-api-key").is_empty(), "{:?}", up.headers);
    // Account headers come only from config.toml, never from the agent.
    assert!(up.header_all("openai-organization").is_empty(), "{:?}", up.headers);
    assert_common(&up);
    assert_eq!(up.body, body.to_string().into_bytes(), "the body is forwarded as sent");
    assert_eq!(r.body.as_ref(), up.response_body().as_slice(), "the reply is passed through as sent");
    assert!(r.headers["x-request-id"].to_str().unwrap().starts_with("req_fake_"));

    let r = a.send(Method::GET, "/api/openai/v1/models?limit=2", None, sneaky).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["data"][0]["id"], "gpt-4o");
    let up = last(&g.fake);
    assert_eq!((up.method.as_str(), up.path_and_query.as_str()), ("GET", "/v1/models?limit=2"));
    assert_eq!(up.header_all("authorization"), [format!("Bearer {OPENAI_KEY}")]);
    assert_common(&up);

    // Not an inference endpoint: refused, and the key never goes there.
    let r = a.send(Method::DELETE, "/api/openai/v1/files/file-abc123?purpose=test", None, sneaky).await;
    r.assert_error(StatusCode::FORBIDDEN, "ENDPOINT_NOT_ALLOWED", "DELETE /v1/files/file-abc123");
    assert_eq!(last(&g.fake).path_and_query, "/v1/models?limit=2");

    // Anthropic: x-api-key injected, default anthropic-version, no Authorization at all.
    let body = message("claude-sonnet-4-5");
    let r = a.send(Method::POST, "/api/anthropic/v1/messages", Some(&body), sneaky).await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r.body));
    let up = last(&g.fake);
    assert_eq!(up.path_and_query, "/v1/messages");
    assert_eq!(up.header_all("x-api-key"), [ANTHROPIC_KEY]);
    assert!(up.header_all("authorization").is_empty(), "{:?}", up.headers);
    assert_eq!(up.header_all("anthropic-version"), ["2023-06-01"]);
    assert_common(&up);
    assert_eq!(r.body.as_ref(), up.response_body().as_slice());

    // The client's own anthropic-version and beta flags are kept, not doubled.
    let own: &[(&str, &str)] = &[
        ("anthropic-version", "2023-01-01"),
        ("anthropic-beta", "prompt-caching-2024-07-31"),
        ("x-api-key", "sk-ant-agent-own-guess"),
    ];
    let r = a.send(Method::POST, "/api/anthropic/v1/messages", Some(&body), own).await;
    assert_eq!(r.status, StatusCode::OK);
    let up = last(&g.fake);
    assert_eq!(up.header_all("anthropic-version"), ["2023-01-01"]);
    assert_eq!(up.header_all("anthropic-beta"), ["prompt-caching-2024-07-31"]);
    assert_eq!(up.header_all("x-api-key"), [ANTHROPIC_KEY]);

    let r = a.send(Method::GET, "/api/anthropic/v1/models", None, sneaky).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["has_more"], false);
    assert_eq!(last(&g.fake).header_all("x-api-key"), [ANTHROPIC_KEY]);

    // DeepSeek: OpenAI-style, at DeepSeek's own paths.
    let r = a.send(Method::POST, "/api/deepseek/chat/completions", Some(&chat("deepseek-chat")), sneaky).await;
    assert_eq!(r.status, StatusCode::OK);
    let up = last(&g.fake);
    assert_eq!(up.path_and_query, "/chat/completions");
    assert_eq!(up.header_all("authorization"), [format!("Bearer {DEEPSEEK_KEY}")]);
    assert!(up.header_all("x-api-key").is_empty());
    assert_common(&up);

    assert_eq!(g.fake.requests().len(), 6);
    g.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_chat_and_streams_pass_through_with_exact_usage() {
    let (model, prices) = fake_ai::pick_model(&["gpt-4o"], false);
    let g = Gateway::start(Setup { keys: ALL_KEYS, ..Setup::default() });
    let a = g.agent("chatty", &["openai"], None);
    let path = "/api/openai/v1/chat/completions";

    // Not streamed.
    let r = a.post(path, &chat(&model)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r.body));
    let v = r.json();
    assert_eq!(v["choices"][0]["message"]["content"], fake_ai::content());
    assert_eq!(v["usage"], fake_ai::openai_usage(&model));
    assert_eq!(r.body.as_ref(), last(&g.fake).response_body().as_slice());

    // Streamed, usage not asked for: the proxy asks for it and hides the extra chunk.
    let body = with(chat(&model), "stream", json!(true));
    let s = a.stream(path, &body, &[]).await;
    assert_eq!(s.status, StatusCode::OK);
    assert!(s.headers["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let up = last(&g.fake);
    let mut sent = up.json();
    assert_eq!(sent["stream_options"]["include_usage"], true, "the proxy asks the upstream for usage");
    sent.as_object_mut().unwrap().remove("stream_options");
    assert_eq!(sent, body, "nothing else of the request changes");
    assert_eq!(text(&s.body()), text(&without_usage_chunk(&up)), "the client's stream is the one it asked for");
    assert!(s.body().ends_with(b"data: [DONE]\n\n"));
    assert_unbuffered(&s, &up);

    // Streamed, usage asked for: the request is untouched and the client gets the usage chunk.
    let body = with(body, "stream_options", json!({"include_usage": true}));
    let s = a.stream(path, &body, &[]).await;
    assert_eq!(s.status, StatusCode::OK);
    let up = last(&g.fake);
    assert_eq!(up.body, body.to_string().into_bytes());
    assert_eq!(text(&s.body()), text(&up.response_body()));
    let usage_events: Vec<Value> = s
        .events()
        .iter()
        .filter_map(|(_, e)| serde_json::from_str::<Value>(text(e).trim().strip_prefix("data: ")?).ok())
        .filter(|v| v["usage"].is_object())
        .collect();
    assert_eq!(usage_events.len(), 1);
    assert_eq!(usage_events[0]["usage"], fake_ai::openai_usage(&model));
    assert_unbuffered(&s, &up);

    // Three calls, each token class counted once, priced from the shipped file.
    let row = fake_ai::wait_for_usage(&g.env, "chatty", "openai", &model, 3);
    let per_call = fake_ai::openai_call_nano(&prices);
    assert_eq!(row["input_tokens"], 3 * (OPENAI_PROMPT_TOKENS - OPENAI_CACHED_TOKENS), "{row}");
    assert_eq!(row["output_tokens"], 3 * OPENAI_COMPLETION_TOKENS, "{row}");
    assert_eq!(row["cache_read_tokens"], 3 * OPENAI_CACHED_TOKENS, "{row}");
    assert_eq!(row["cache_write_tokens"], 0, "{row}");
    assert_eq!(row["cost_usd"], fake_ai::usd(3 * per_call), "{row}");
    assert_eq!(row["unpriced_calls"], 0, "{row}");
    let usage = fake_ai::usage_json(&g.env, &[]);
    assert_eq!(usage["total"]["cost_usd"], fake_ai::usd(3 * per_call), "{usage:#}");
    g.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_messages_and_streams_pass_through_with_exact_usage() {
    let (model, prices) = fake_ai::pick_model(CLAUDE_CANDIDATES, true);
    let g = Gateway::start(Setup { keys: ALL_KEYS, ..Setup::default() });
    let a = g.agent("poet", &["anthropic"], None);
    let path = "/api/anthropic/v1/messages";

    let r = a.post(path, &message(&model)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r.body));
    let v = r.json();
    assert_eq!(v["content"][0]["text"], fake_ai::content());
    assert_eq!(v["usage"], fake_ai::anthropic_usage());
    let up = last(&g.fake);
    assert_eq!(r.body.as_ref(), up.response_body().as_slice());
    assert_eq!(up.body, message(&model).to_string().into_bytes());

    // Streamed: byte for byte, event by event, as the upstream sends it.
    let body = with(message(&model), "stream", json!(true));
    let s = a.stream(path, &body, &[]).await;
    assert_eq!(s.status, StatusCode::OK);
    let up = last(&g.fake);
    assert_eq!(up.body, body.to_string().into_bytes(), "Anthropic requests are not rewritten");
    assert_eq!(text(&s.body()), text(&up.response_body()));
    assert_eq!(s.events().len(), up.sent.len());
    assert_unbuffered(&s, &up);

    // message_start says output 1, message_delta says 213 cumulative: 213 per call, never 214.
    let row = fake_ai::wait_for_usage(&g.env, "poet", "anthropic", &model, 2);
    assert_eq!(row["input_tokens"], 2 * ANTHROPIC_INPUT_TOKENS, "{row}");
    assert_eq!(row["output_tokens"], 2 * ANTHROPIC_OUTPUT_TOKENS, "{row}");
    assert_eq!(row["cache_read_tokens"], 2 * ANTHROPIC_CACHE_READ_TOKENS, "{row}");
    assert_eq!(row["cache_write_tokens"], 2 * ANTHROPIC_CACHE_WRITE_TOKENS, "{row}");
    assert_eq!(row["cost_usd"], fake_ai::usd(2 * fake_ai::anthropic_call_nano(&prices)), "{row}");
    assert_eq!(row["unpriced_calls"], 0, "{row}");
    g.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn deepseek_streams_hide_the_usage_chunk_and_are_priced() {
    let (key, prices) = fake_ai::pick_model(&["deepseek-chat", "deepseek/deepseek-chat"], false);
    let model = key.rsplit('/').next().unwrap().to_owned();
    let g = Gateway::start(Setup { keys: ALL_KEYS, ..Setup::default() });
    let a = g.agent("seeker", &["deepseek"], None);

    let body = with(chat(&model), "stream", json!(true));
    let s = a.stream("/api/deepseek/chat/completions", &body, &[]).await;
    assert_eq!(s.status, StatusCode::OK);
    let up = last(&g.fake);
    assert_eq!(up.json()["stream_options"]["include_usage"], true);
    assert_eq!(text(&s.body()), text(&without_usage_chunk(&up)));
    assert_unbuffered(&s, &up);

    let r = a.post("/api/deepseek/v1/chat/completions", &chat(&model)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(last(&g.fake).path_and_query, "/v1/chat/completions");

    let row = fake_ai::wait_for_usage(&g.env, "seeker", "deepseek", &model, 2);
    assert_eq!(row["input_tokens"], 2 * (OPENAI_PROMPT_TOKENS - OPENAI_CACHED_TOKENS), "{row}");
    assert_eq!(row["output_tokens"], 2 * OPENAI_COMPLETION_TOKENS, "{row}");
    assert_eq!(row["cache_read_tokens"], 2 * OPENAI_CACHED_TOKENS, "{row}");
    assert_eq!(row["cost_usd"], fake_ai::usd(2 * fake_ai::openai_call_nano(&prices)), "{row}");
    g.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_models_are_recorded_unpriced_never_free() {
    let (model, prices) = fake_ai::pick_model(&["gpt-4o"], false);
    let g = Gateway::start(Setup { keys: ALL_KEYS, ..Setup::default() });
    let a = g.agent("explorer", &["openai"], None);
    let b = g.agent("bystander", &["openai"], None);
    let path = "/api/openai/v1/chat/completions";
    let unknown = "gpt-imaginary-9000";
    assert!(fake_ai::model_prices(unknown).is_none());

    assert_eq!(a.post(path, &chat(unknown)).await.status, StatusCode::OK);
    let s = a.stream(path, &with(chat(unknown), "stream", json!(true)), &[]).await;
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(a.post(path, &chat(&model)).await.status, StatusCode::OK);
    assert_eq!(b.post(path, &chat(&model)).await.status, StatusCode::OK);

    let row = fake_ai::wait_for_usage(&g.env, "explorer", "openai", unknown, 2);
    assert_eq!(row["cost_usd"], Value::Null, "an unpriced model costs `unknown`, not 0: {row}");
    assert_eq!(row["unpriced_calls"], 2, "{row}");
    assert_eq!(
        row["input_tokens"],
        2 * (OPENAI_PROMPT_TOKENS - OPENAI_CACHED_TOKENS),
        "tokens are still recorded: {row}"
    );
    assert_eq!(row["output_tokens"], 2 * OPENAI_COMPLETION_TOKENS, "{row}");
    assert_eq!(row["cache_read_tokens"], 2 * OPENAI_CACHED_TOKENS, "{row}");
    fake_ai::wait_for_usage(&g.env, "bystander", "openai", &model, 1);

    // One agent: the priced call is counted, the unpriced ones are reported as such.
    let mine = fake_ai::wait_for_agent_usage(&g.env, "explorer", 3);
    let priced = fake_ai::usage_row(&mine, "explorer", "openai", &model).expect("the priced row");
    let per_call = fake_ai::openai_call_nano(&prices);
    assert_eq!(priced["cost_usd"], fake_ai::usd(per_call), "{mine:#}");
    assert_eq!(mine["total"]["cost_usd"], fake_ai::usd(per_call), "{mine:#}");
    assert_eq!(mine["total"]["unpriced_calls"], 2, "{mine:#}");
    assert_eq!(mine["total"]["calls"], 3, "{mine:#}");
    assert!(mine["rows"].as_array().unwrap().iter().all(|r| r["agent"] == "explorer"), "{mine:#}");

    // The table says so in words.
    let table = g.cli(&["usage", "--since", "all", "--agent", "explorer"]);
    let line = table.lines().find(|l| l.contains(unknown)).unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains("unknown"), "{line}");
    g.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_101st_openai_call_within_60_seconds_is_rate_limited() {
    let g = Gateway::start(Setup {
        keys: ALL_KEYS,
        rate_limits: "anthropic = { requests = 3, per_secs = 3600 }",
        ..Setup::default()
    });
    let a = g.agent("hasty", &["openai", "anthropic"], None);
    let other = g.agent("patient", &["openai"], None);
    let path = "/api/openai/v1/chat/completions";

    let started = Instant::now();
    let mut limited = None;
    for i in 1..=120 {
        let r = a.post(path, &chat("gpt-4o-mini")).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((i, r));
            break;
        }
        assert_eq!(r.status, StatusCode::OK, "call {i}: {}", text(&r.body));
    }
    let elapsed = started.elapsed();
    let (i, r) = limited.expect("the 101st call is refused");
    // The default quota (100 per 60 s) refills one call every 0.6 s.
    let refilled = (elapsed.as_millis() / 600) as usize;
    assert!(i >= 101 && i <= 101 + refilled, "refused at call {i} after {elapsed:?}");
    assert_eq!(r.json(), json!({"error": "Rate limit exceeded", "code": "RATE_LIMITED"}));
    let retry_after: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert_eq!(retry_after, 1, "the next call passes within 0.6 s, not after the whole window");
    let forwarded = g.fake.requests().len();
    assert_eq!(forwarded, i - 1, "the refused call did not reach the upstream");

    // Other providers and other agents have their own quotas.
    let m = message("claude-sonnet-4-5");
    assert_eq!(a.post("/api/anthropic/v1/messages", &m).await.status, StatusCode::OK);
    assert_eq!(other.post(path, &chat("gpt-4o-mini")).await.status, StatusCode::OK);

    // Once the announced time has passed, the agent gets through again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(a.post(path, &chat("gpt-4o-mini")).await.status, StatusCode::OK);

    // A configured quota: 3 Anthropic calls per hour; the 4th is told to wait about 20 minutes
    // (one call's share of the hour), not the whole hour.
    assert_eq!(a.post("/api/anthropic/v1/messages", &m).await.status, StatusCode::OK);
    assert_eq!(a.post("/api/anthropic/v1/messages", &m).await.status, StatusCode::OK);
    let r = a.post("/api/anthropic/v1/messages", &m).await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", "Rate limit exceeded");
    let retry_after: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1_100..=1_200).contains(&retry_after), "Retry-After {retry_after}");
    g.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn providers_outside_the_manifest_are_forbidden() {
    let g = Gateway::start(Setup { keys: ALL_KEYS, ..Setup::default() });
    let a = g.agent("openai-only", &["openai"], None);
    let r = a.post("/api/anthropic/v1/messages", &message("claude-sonnet-4-5")).await;
    r.assert_error(StatusCode::FORBIDDEN, "API_NOT_ALLOWED", "anthropic");
    let r = a.post("/api/deepseek/chat/completions", &chat("deepseek-chat")).await;
    r.assert_error(StatusCode::FORBIDDEN, "API_NOT_ALLOWED", "deepseek");

    // An agent registered without a manifest may use no provider.
    let (id, token) = g.env.add_agent("bare", None);
    let bare =
        Agent { http: reqwest::Client::new(), base: g.proxy().url.clone(), id, token, seen: Arc::clone(&g.seen) };
    let r = bare.post("/api/openai/v1/chat/completions", &chat("gpt-4o")).await;
    r.assert_error(StatusCode::FORBIDDEN, "API_NOT_ALLOWED", "openai");

    // No credentials, wrong credentials.
    let url = format!("{}/api/openai/v1/chat/completions", g.proxy().url);
    let resp = reqwest::Client::new().post(&url).body(chat("gpt-4o").to_string()).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = reqwest::Client::new()
        .post(&url)
        .header("X-Assegai-Agent-ID", &a.id)
        .header("X-Assegai-Agent-Token", "asg_wrong")
        .body(chat("gpt-4o").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    assert!(g.fake.requests().is_empty(), "nothing reached the upstream: {:?}", g.fake.requests());
    assert_eq!(a.post("/api/openai/v1/chat/completions", &chat("gpt-4o")).await.status, StatusCode::OK);
    g.assert_no_leaks();
}

/// One raw HTTP/1.1 request, so the target reaches the proxy exactly as written (an HTTP client
/// library would normalise `..` and `%2e%2e` away).
async fn raw_request(proxy: &Proxy, a: &Agent, target: &str) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = proxy.url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nX-Assegai-Agent-ID: {}\r\nX-Assegai-Agent-Token: {}\r\n\
         Connection: close\r\n\r\n",
        a.id, a.token
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = buf[head_end + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = body.as_slice();
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap().trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[nl + 2..nl + 2 + size]);
            rest = &rest[nl + 2 + size + 2..];
        }
        body = out;
    }
    a.record(&HeaderMap::new(), head.as_bytes());
    a.record(&HeaderMap::new(), &body);
    (status, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn paths_that_escape_the_provider_are_refused() {
    let g = Gateway::start(Setup { keys: ALL_KEYS, ..Setup::default() });
    let a = g.agent("escaper", &["openai", "anthropic", "deepseek"], None);

    // The raw client works: a plain path goes through.
    let (status, body) = raw_request(g.proxy(), &a, "/api/openai/v1/models?limit=1").await;
    assert_eq!(status, 200, "{}", text(&body));
    assert_eq!(last(&g.fake).path_and_query, "/v1/models?limit=1");
    g.fake.clear();

    for target in [
        "/api/openai/v1/../../agent/wallet-address/eip155:31337",
        "/api/openai/../v1/models",
        "/api/openai/v1/%2e%2e/%2e%2e/admin",
        "/api/openai/v1/%2E%2e/models",
        "/api/openai/%2e%2e/v1/models",
        "/api/openai/v1%2f..%2fadmin",
        "/api/openai/v1/models%2F..%2F..%2Fx",
        "/api/anthropic/v1/..%2fmessages",
        "/api/openai//evil.example/v1/models",
        "/api/openai/v1//models",
        "/api/openai/https://evil.example/v1/models",
        "/api/deepseek/./chat/completions",
    ] {
        let (status, body) = raw_request(g.proxy(), &a, target).await;
        assert_eq!(status, 400, "{target}: {}", text(&body));
        let v: Value = serde_json::from_slice(&body).unwrap_or_else(|_| panic!("{target}: {}", text(&body)));
        assert_eq!(v["code"], "BAD_REQUEST", "{target}: {v}");
    }
    assert!(g.fake.requests().is_empty(), "refused paths reached the upstream: {:?}", g.fake.requests());
    g.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_keys_are_explained_and_key_changes_apply_without_restart() {
    let g = Gateway::start(Setup::default());
    let a = g.agent("keyless", &["openai", "anthropic", "deepseek"], None);

    let listed: Value = serde_json::from_str(&g.cli(&["keys", "list", "--json"])).unwrap();
    let entries = listed.as_array().expect("an array");
    for p in ["openai", "anthropic", "deepseek"] {
        let e = entries.iter().find(|e| e["provider"] == p).unwrap_or_else(|| panic!("{p} in {listed}"));
        assert_eq!(e["configured"], false, "{e}");
        assert_eq!(e["masked"], Value::Null, "{e}");
        assert_eq!(e["backend"], "file", "{e}");
    }

    for (path, body, name, provider) in [
        ("/api/openai/v1/chat/completions", chat("gpt-4o"), "OpenAI", "openai"),
        ("/api/anthropic/v1/messages", message("claude-sonnet-4-5"), "Anthropic", "anthropic"),
        ("/api/deepseek/chat/completions", chat("deepseek-chat"), "DeepSeek", "deepseek"),
    ] {
        let r = a.post(path, &body).await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            r.json(),
            json!({
                "error": format!("{name} API key not configured. Run `assegai keys set {provider}`."),
                "code": "KEY_NOT_CONFIGURED"
            })
        );
    }
    assert!(g.fake.requests().is_empty());

    // Set while the proxy runs: the next call uses it.
    g.set_key("openai", OPENAI_KEY);
    let path = "/api/openai/v1/chat/completions";
    let r = a.post(path, &chat("gpt-4o")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r.body));
    assert_eq!(last(&g.fake).header_all("authorization"), [format!("Bearer {OPENAI_KEY}")]);

    let listed: Value = serde_json::from_str(&g.cli(&["keys", "list", "--json"])).unwrap();
    let e = listed.as_array().unwrap().iter().find(|e| e["provider"] == "openai").unwrap().clone();
    assert_eq!(e["configured"], true, "{e}");
    let masked = e["masked"].as_str().expect("a masked key");
    assert!(masked.ends_with(&OPENAI_KEY[OPENAI_KEY.len() - 4..]) && masked.starts_with('•'), "{masked}");

    // Replaced while the proxy runs: the cached key is dropped.
    let rotated = "sk-proj-E2eRotatedSecretZz9Yy8Xx7Ww6Vv5";
    g.set_key("openai", rotated);
    assert_eq!(a.post(path, &chat("gpt-4o")).await.status, StatusCode::OK);
    assert_eq!(last(&g.fake).header_all("authorization"), [format!("Bearer {rotated}")]);
    assert!(!contains_bytes(&g.seen.lock().unwrap(), &rotated.as_bytes()[..rotated.len() - 4]));

    // Removed while the proxy runs: the next call is refused again.
    g.cli(&["keys", "remove", "openai"]);
    let r = a.post(path, &chat("gpt-4o")).await;
    r.assert_error(StatusCode::INTERNAL_SERVER_ERROR, "KEY_NOT_CONFIGURED", "OpenAI API key not configured");
    assert_eq!(g.fake.requests().len(), 2);
    g.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_errors_pass_through_unchanged() {
    let g = Gateway::start(Setup { keys: ALL_KEYS, ..Setup::default() });
    let a = g.agent("unlucky", &["openai", "anthropic"], None);
    for (path, body) in [
        ("/api/openai/v1/chat/completions", chat("error-400")),
        ("/api/openai/v1/chat/completions", with(chat("error-400"), "stream", json!(true))),
        ("/api/anthropic/v1/messages", message("error-400")),
        ("/api/anthropic/v1/messages", with(message("error-400"), "stream", json!(true))),
        // Anthropic's own validation error (no max_tokens).
        ("/api/anthropic/v1/messages", json!({"model": "claude-sonnet-4-5", "messages": []})),
    ] {
        let r = a.post(path, &body).await;
        let up = last(&g.fake);
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path} {body}: {}", text(&r.body));
        assert_eq!(text(&r.body), text(&up.response_body()), "{path} {body}");
        assert_eq!(r.headers["content-type"], "application/json");
    }
    let v = a.post("/api/openai/v1/chat/completions", &chat("error-400")).await.json();
    assert_eq!(v["error"]["code"], "invalid_value");
    g.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_upstream_is_a_502() {
    // Nothing listens on port 9 of loopback.
    let g = Gateway::start(Setup { keys: ALL_KEYS, openai_base: Some("http://127.0.0.1:9"), ..Setup::default() });
    let a = g.agent("stranded", &["openai", "anthropic"], None);
    let r = a.post("/api/openai/v1/chat/completions", &chat("gpt-4o")).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.json(), json!({"error": "Network request failed", "code": "UPSTREAM_UNREACHABLE"}));
    // The other provider is unaffected.
    assert_eq!(a.post("/api/anthropic/v1/messages", &message("claude-sonnet-4-5")).await.status, StatusCode::OK);
    g.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_upstream_is_a_504_but_a_long_stream_is_not_cut() {
    let g = Gateway::start(Setup { keys: ALL_KEYS, top: "upstream_timeout_secs = 1", ..Setup::default() });
    let a = g.agent("waiting", &["openai", "anthropic"], None);
    let started = Instant::now();
    let r = a.post("/api/openai/v1/chat/completions", &chat("slow")).await;
    let took = started.elapsed();
    r.assert_error(StatusCode::GATEWAY_TIMEOUT, "UPSTREAM_TIMEOUT", "");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(4), "504 after {took:?}");

    // The timeout is for the response head: streams longer than it run to the end.
    let s =
        a.stream("/api/anthropic/v1/messages", &with(message("claude-sonnet-4-5"), "stream", json!(true)), &[]).await;
    let up = last(&g.fake);
    let lasted = up.finished_at().unwrap() - up.sent[0].at;
    assert!(lasted > Duration::from_secs(1), "{lasted:?}");
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(text(&s.body()), text(&up.response_body()));
    let s = a.stream("/api/openai/v1/chat/completions", &with(chat("gpt-4o"), "stream", json!(true)), &[]).await;
    assert_eq!(text(&s.body()), text(&without_usage_chunk(&last(&g.fake))));
    g.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ai_budget_stops_calls_once_spent() {
    let (model, prices) = fake_ai::pick_model(&["gpt-4o"], false);
    let g = Gateway::start(Setup { keys: ALL_KEYS, ..Setup::default() });
    let a = g.agent("frugal", &["openai", "anthropic"], Some("0.01"));
    let b = g.agent("unbounded", &["openai"], None);
    let per_call = fake_ai::openai_call_nano(&prices);
    let budget: u128 = 10_000_000; // 0.01 USD in nano-USD
    let allowed = budget.div_ceil(per_call) as u64;
    assert!((1..=20).contains(&allowed), "{per_call} nano-USD a call");
    let path = "/api/openai/v1/chat/completions";

    for i in 1..=allowed {
        let r = a.post(path, &chat(&model)).await;
        assert_eq!(r.status, StatusCode::OK, "call {i} of {allowed}: {}", text(&r.body));
        // Spend is what was recorded; let it land before the next call.
        fake_ai::wait_for_usage(&g.env, "frugal", "openai", &model, i);
    }
    let forwarded = g.fake.requests().len();
    let r = a.post(path, &chat(&model)).await;
    r.assert_error(StatusCode::FORBIDDEN, "BUDGET_EXCEEDED", "AI budget exceeded");
    assert!(r.json()["error"].as_str().unwrap().starts_with("AI budget exceeded"));
    let r = a.post("/api/anthropic/v1/messages", &message("claude-sonnet-4-5")).await;
    r.assert_error(StatusCode::FORBIDDEN, "BUDGET_EXCEEDED", "AI budget exceeded");
    assert_eq!(g.fake.requests().len(), forwarded, "refused calls did not reach the upstream");
    // Another agent is not affected.
    assert_eq!(b.post(path, &chat(&model)).await.status, StatusCode::OK);
    g.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_never_leak_into_files_logs_or_responses() {
    let (claude, _) = fake_ai::pick_model(CLAUDE_CANDIDATES, true);
    let mut g = Gateway::start(Setup { keys: ALL_KEYS, ..Setup::default() });
    let a = g.agent("leaky", &["openai", "anthropic", "deepseek"], None);
    let other = g.agent("other", &["openai"], None);

    // A bit of everything: replies, streams, upstream errors, refusals.
    for (path, body) in [
        ("/api/openai/v1/chat/completions", chat("gpt-4o")),
        ("/api/openai/v1/chat/completions", with(chat("gpt-4o"), "stream", json!(true))),
        ("/api/openai/v1/chat/completions", chat("error-400")),
        ("/api/anthropic/v1/messages", message(&claude)),
        ("/api/anthropic/v1/messages", with(message(&claude), "stream", json!(true))),
        ("/api/anthropic/v1/messages", message("error-400")),
        ("/api/deepseek/chat/completions", with(chat("deepseek-chat"), "stream", json!(true))),
    ] {
        let s = a.stream(path, &body, &[]).await;
        assert!(s.status == StatusCode::OK || s.status == StatusCode::BAD_REQUEST, "{path}: {}", s.status);
    }
    a.send(Method::GET, "/api/openai/v1/models", None, &[]).await;
    a.send(Method::GET, "/api/anthropic/v1/models", None, &[]).await;
    a.send(Method::DELETE, "/api/openai/v1/nowhere", None, &[]).await;
    a.send(Method::GET, "/api/openai/v1//models", None, &[]).await;
    other.send(Method::POST, "/api/anthropic/v1/messages", Some(&message(&claude)), &[]).await;
    // Every request upstream carried the key; none of the replies did.
    let ups = g.fake.requests();
    assert!(ups.len() >= 9, "{}", ups.len());
    for up in &ups {
        let auth = up.header("authorization").or(up.header("x-api-key")).unwrap_or_default().to_owned();
        assert!(ALL_KEYS.iter().any(|(_, k)| auth.ends_with(k)), "{}: {auth}", up.path_and_query);
    }
    fake_ai::wait_for_usage(&g.env, "leaky", "anthropic", &claude, 2);
    let keys_enc = std::fs::read(g.env.home().join("keys.enc")).expect("the keys live in keys.enc");
    assert!(keys_enc.len() > 64, "keys.enc holds the three keys, encrypted");
    for args in [
        &["keys", "list"][..],
        &["keys", "list", "--json"],
        &["usage", "--json", "--since", "all"],
        &["usage", "--since", "all"],
        &["logs", "--json"],
        &["agents", "list"],
    ] {
        g.cli(args);
    }
    g.assert_no_leaks();

    // After a clean shutdown (the database checkpointed), still nothing.
    let proxy = g.proxy.take().unwrap();
    let output = proxy.output();
    assert!(proxy.terminate(), "the proxy exits cleanly");
    g.show(&output);
    g.assert_no_leaks();
    // The usage survived the shutdown.
    let usage = fake_ai::usage_json(&g.env, &[]);
    assert!(fake_ai::usage_row(&usage, "leaky", "openai", "gpt-4o").is_some(), "{usage:#}");
}

fn keys_file(env: &TestEnv) -> std::path::PathBuf {
    env.home().join("keys.enc")
}

fn file_env() -> TestEnv {
    let env = TestEnv::new();
    env.write_config("[keys]\nbackend = \"file\"\n");
    env
}

/// Runs `assegai ARGS` with another passphrase (and the key on stdin for `keys set`).
fn run_with_passphrase(env: &TestEnv, passphrase: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = env.cmd(args);
    cmd.env("ASSEGAI_PASSPHRASE", passphrase);
    fake_ai::set_key_with(cmd, DEEPSEEK_KEY)
}

fn assert_clear_failure(out: &std::process::Output, what: &str, needles: &[&str]) {
    let stderr = text(&out.stderr).to_lowercase();
    assert!(!out.status.success(), "{what} must fail");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert!(needles.iter().any(|n| stderr.contains(n)), "{what}: expected one of {needles:?} in {stderr:?}");
    for (_, key) in ALL_KEYS {
        assert!(!contains_bytes(&out.stdout, key.as_bytes()) && !contains_bytes(&out.stderr, key.as_bytes()));
    }
}

#[test]
fn a_wrong_passphrase_is_a_clear_error_and_changes_nothing() {
    let env = file_env();
    fake_ai::set_key(&env, "openai", OPENAI_KEY);
    let before = std::fs::read(keys_file(&env)).expect("keys.enc was written");
    assert!(!contains_bytes(&before, OPENAI_KEY.as_bytes()));

    for args in [
        &["keys", "list"][..],
        &["keys", "list", "--json"],
        &["keys", "set", "deepseek", "--stdin"],
        &["keys", "remove", "openai"],
    ] {
        let out = run_with_passphrase(&env, "wrong horse battery staple", args);
        assert_clear_failure(&out, &format!("{args:?} with a wrong passphrase"), &["passphrase"]);
        assert_eq!(std::fs::read(keys_file(&env)).unwrap(), before, "{args:?} changed keys.enc");
    }

    // The right passphrase still opens it, with the key intact and nothing added.
    let listed: Value = serde_json::from_str(&env.run_ok(&["keys", "list", "--json"])).unwrap();
    let configured: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["configured"] == true)
        .map(|e| e["provider"].as_str().unwrap())
        .collect();
    assert_eq!(configured, ["openai"]);
}

#[test]
fn a_damaged_keys_file_is_a_clear_error_and_is_not_overwritten() {
    let env = file_env();
    fake_ai::set_key(&env, "openai", OPENAI_KEY);
    fake_ai::set_key(&env, "anthropic", ANTHROPIC_KEY);
    let whole = std::fs::read(keys_file(&env)).unwrap();
    let mut flipped = whole.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;

    for (what, damaged) in [
        ("cut in half", whole[..whole.len() / 2].to_vec()),
        ("cut to 5 bytes", whole[..5].to_vec()),
        ("one bit flipped", flipped),
    ] {
        std::fs::write(keys_file(&env), &damaged).unwrap();
        for args in [&["keys", "list"][..], &["keys", "set", "deepseek", "--stdin"], &["keys", "remove", "openai"]] {
            let out = run_with_passphrase(&env, assegai_e2e::TEST_PASSPHRASE, args);
            assert_clear_failure(&out, &format!("{args:?} on a keys.enc {what}"), &["keys.enc"]);
            assert_eq!(std::fs::read(keys_file(&env)).unwrap(), damaged, "{args:?} rewrote a keys.enc {what}");
        }
    }

    std::fs::write(keys_file(&env), &whole).unwrap();
    let listed = env.run_ok(&["keys", "list", "--json"]);
    assert!(listed.contains("\"anthropic\""), "{listed}");
}

#[test]
fn a_proxy_that_cannot_read_keys_stored_later_says_to_restart_it() {
    let env = file_env();
    // Started in the background with no key file yet and no passphrase: it cannot ask for one.
    let proxy = env.start_proxy_with(|cmd| {
        cmd.env_remove("ASSEGAI_PASSPHRASE");
    });
    let out = fake_ai::set_key(&env, "openai", OPENAI_KEY);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("restart it"), "keys set must say the proxy needs a restart: {stderr}");
    assert!(!contains_bytes(&out.stderr, OPENAI_KEY.as_bytes()) && !contains_bytes(&out.stdout, OPENAI_KEY.as_bytes()));
    assert!(proxy.terminate(), "the proxy exits cleanly");

    // A proxy that could open the store takes the change without a word.
    let proxy = env.start_proxy();
    let out = fake_ai::set_key(&env, "anthropic", ANTHROPIC_KEY);
    assert!(!text(&out.stderr).contains("restart"), "{}", text(&out.stderr));
    assert!(proxy.terminate());
}
