//! A local stand-in for the AI providers: one HTTP server that speaks OpenAI's, Anthropic's and
//! DeepSeek's wire formats (JSON and SSE, usage included) and records every request it receives
//! and every response chunk it sends, with the time it sent it.
//!
//! Behaviour is keyed by the request's `"model"`:
//! * `"error-400"`: the vendor's 400 error JSON;
//! * `"slow"`: waits [`SLOW_DELAY`] before sending the response head;
//! * anything else: a normal reply naming that model, with the token counts of [`usage`].
//!
//! and, for every model, by the [`Behaviour`] a test sets ([`FakeAi::set_behaviour`]): replies
//! held before their head or their usage until the test opens the gate ([`FakeAi::open_gate`]), a
//! pause before a stream's usage, streams that never report usage, counts a real vendor could give
//! for the request, or an error status for everything.
//!
//! Routes: `POST /v1/chat/completions` and `/chat/completions` (OpenAI, DeepSeek), `POST
//! /v1/messages` (Anthropic), `GET /v1/models` and `/models` (Anthropic's list when the request
//! carries `x-api-key`, else OpenAI's). Anything else gets OpenAI's 404 `Invalid URL` error.
//! Like the vendors, it refuses requests without their auth header (401), and Anthropic requests
//! without `anthropic-version` or `max_tokens` (400).
//!
//! Also here: helpers the AI tests share (storing a key through the CLI, reading `assegai usage
//! --json`, exact expected costs from the shipped pricing file).

use std::{
    collections::HashMap,
    convert::Infallible,
    process::Output,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    response::Response,
};
use serde_json::{Value, json};

use crate::{TestEnv, workspace_root};

/// Pause between two SSE events.
pub const CHUNK_GAP: Duration = Duration::from_millis(150);
/// How long `"model": "slow"` waits before the response head.
pub const SLOW_DELAY: Duration = Duration::from_secs(5);
/// The reply text, and how the streams split it.
pub const CONTENT_PIECES: [&str; 4] = ["Hello", " from the", " fake", " upstream."];

/// The token counts every reply reports (streamed or not).
pub mod usage {
    /// OpenAI `prompt_tokens`: includes the cached ones.
    pub const OPENAI_PROMPT_TOKENS: u64 = 1_337;
    /// OpenAI `prompt_tokens_details.cached_tokens`.
    pub const OPENAI_CACHED_TOKENS: u64 = 1_024;
    /// OpenAI `completion_tokens`.
    pub const OPENAI_COMPLETION_TOKENS: u64 = 211;
    /// Anthropic `input_tokens`: excludes cache reads and writes.
    pub const ANTHROPIC_INPUT_TOKENS: u64 = 57;
    /// Anthropic `cache_read_input_tokens`.
    pub const ANTHROPIC_CACHE_READ_TOKENS: u64 = 2_049;
    /// Anthropic `cache_creation_input_tokens`.
    pub const ANTHROPIC_CACHE_WRITE_TOKENS: u64 = 1_103;
    /// Anthropic `output_tokens` (the final, cumulative value; `message_start` reports 1).
    pub const ANTHROPIC_OUTPUT_TOKENS: u64 = 213;
}

/// One response body chunk as the fake handed it to the connection.
#[derive(Debug, Clone)]
pub struct SentChunk {
    /// When.
    pub at: Instant,
    /// What (for SSE: exactly one event, with its terminating blank line).
    pub data: Bytes,
}

/// One request the fake received, and what it answered.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `GET`, `POST`, …
    pub method: String,
    /// The request target as received, e.g. `/v1/models?limit=2`.
    pub path_and_query: String,
    /// Every header, names lower-case, in order.
    pub headers: Vec<(String, String)>,
    /// The request body.
    pub body: Vec<u8>,
    /// When the request (head and body) had arrived.
    pub received_at: Instant,
    /// The status answered (0 until the head was sent).
    pub status: u16,
    /// The response body, chunk by chunk.
    pub sent: Vec<SentChunk>,
    /// Whether the response body is complete.
    pub done: bool,
    /// For an OpenAI-style stream that asked for usage: the exact stream the fake would have sent
    /// had the request not asked (no usage chunk, no `"usage": null` members).
    pub stream_without_usage: Option<Vec<u8>>,
}

impl Recorded {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    /// The request body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The whole response body sent so far.
    pub fn response_body(&self) -> Vec<u8> {
        self.sent.iter().flat_map(|c| c.data.iter().copied()).collect()
    }

    /// When the last chunk was sent.
    pub fn finished_at(&self) -> Option<Instant> {
        self.sent.last().map(|c| c.at)
    }
}

/// How the fake answers, beyond what the model selects (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Each reply waits before its head until the gate is open.
    pub hold_heads: bool,
    /// Each stream waits before its usage (OpenAI's usage chunk, Anthropic's `message_delta`) until
    /// the gate is open.
    pub hold_usage: bool,
    /// A stream pauses this long before its usage.
    pub usage_delay: Duration,
    /// Streams end without reporting usage (OpenAI: no usage chunk even when asked; Anthropic: no
    /// `usage` in `message_start` nor `message_delta`).
    pub withhold_usage: bool,
    /// The most a real vendor could report for the request: as many input tokens as the body has
    /// bytes (no cache), and the request's own output limit (`max_completion_tokens`, `max_tokens`,
    /// `max_output_tokens`) as output tokens, else the [`usage`] constant.
    pub usage_from_request: bool,
    /// Every `POST` is answered with this status and the vendor's error JSON.
    pub fail_with: Option<u16>,
}

/// The token counts of one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// OpenAI `prompt_tokens` (cached included) / Anthropic `input_tokens` (cache excluded).
    pub input: u64,
    /// Cached (OpenAI) or cache-read (Anthropic) input tokens.
    pub cache_read: u64,
    /// Anthropic cache-write tokens.
    pub cache_write: u64,
    /// Output tokens.
    pub output: u64,
}

impl Counts {
    /// What every OpenAI-style reply reports by default.
    pub const OPENAI: Counts = Counts {
        input: usage::OPENAI_PROMPT_TOKENS,
        cache_read: usage::OPENAI_CACHED_TOKENS,
        cache_write: 0,
        output: usage::OPENAI_COMPLETION_TOKENS,
    };
    /// What every Anthropic reply reports by default.
    pub const ANTHROPIC: Counts = Counts {
        input: usage::ANTHROPIC_INPUT_TOKENS,
        cache_read: usage::ANTHROPIC_CACHE_READ_TOKENS,
        cache_write: usage::ANTHROPIC_CACHE_WRITE_TOKENS,
        output: usage::ANTHROPIC_OUTPUT_TOKENS,
    };

    /// The counts [`Behaviour::usage_from_request`] reports for a request body.
    pub fn from_request(body: &[u8], default_output: u64) -> Counts {
        let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let output = ["max_completion_tokens", "max_tokens", "max_output_tokens"]
            .iter()
            .find_map(|k| req[*k].as_u64())
            .unwrap_or(default_output);
        Counts { input: body.len() as u64, cache_read: 0, cache_write: 0, output }
    }
}

struct Shared {
    requests: Mutex<Vec<Recorded>>,
    counter: Mutex<u64>,
    behaviour: Mutex<Behaviour>,
    /// `true` while the gate is open.
    gate: tokio::sync::watch::Sender<bool>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            requests: Mutex::default(),
            counter: Mutex::default(),
            behaviour: Mutex::default(),
            gate: tokio::sync::watch::channel(true).0,
        }
    }
}

impl Shared {
    fn push_chunk(&self, idx: usize, data: Bytes, last: bool) {
        let mut reqs = self.requests.lock().unwrap();
        let r = &mut reqs[idx];
        r.sent.push(SentChunk { at: Instant::now(), data });
        r.done = last;
    }

    fn set_status(&self, idx: usize, status: u16) {
        self.requests.lock().unwrap()[idx].status = status;
    }

    fn next_id(&self) -> u64 {
        let mut c = self.counter.lock().unwrap();
        *c += 1;
        *c
    }

    fn behaviour(&self) -> Behaviour {
        self.behaviour.lock().unwrap().clone()
    }

    /// Waits until the gate is open.
    async fn through_gate(&self) {
        let mut open = self.gate.subscribe();
        let _ = open.wait_for(|o| *o).await;
    }
}

/// The fake upstream. Runs on its own thread and runtime, so it works from any test; stops when
/// dropped.
pub struct FakeAi {
    url: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeAi {
    /// Starts the fake on a free loopback port.
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake AI upstream");
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared::default());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new().fallback(handle).with_state(Arc::clone(&shared));
        let thread = std::thread::Builder::new()
            .name("fake-ai".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("fake AI runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    tokio::select! {
                        r = axum::serve(listener, app) => r.expect("fake AI server"),
                        _ = stop_rx => {}
                    }
                });
                rt.shutdown_background();
            })
            .expect("spawn the fake AI thread");
        FakeAi { url, shared, stop: Some(stop_tx), thread: Some(thread) }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Everything received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Forgets the requests received so far.
    pub fn clear(&self) {
        self.shared.requests.lock().unwrap().clear();
    }

    /// How requests are answered from now on.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self.shared.behaviour.lock().unwrap() = behaviour;
    }

    /// Closes the gate: replies held by [`Behaviour::hold_heads`] or [`Behaviour::hold_usage`] wait.
    pub fn close_gate(&self) {
        self.shared.gate.send_replace(false);
    }

    /// Opens the gate: everything waiting goes on.
    pub fn open_gate(&self) {
        self.shared.gate.send_replace(true);
    }
}

impl Drop for FakeAi {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Vendor {
    OpenAi,
    Anthropic,
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let idx = {
        let mut reqs = shared.requests.lock().unwrap();
        reqs.push(Recorded {
            method: parts.method.as_str().to_owned(),
            path_and_query,
            headers,
            body: body.to_vec(),
            received_at: Instant::now(),
            status: 0,
            sent: Vec::new(),
            done: false,
            stream_without_usage: None,
        });
        reqs.len() - 1
    };
    let reply = route(&shared, idx, parts.method.as_str(), parts.uri.path(), &parts.headers, &body).await;
    shared.set_status(idx, reply.status.as_u16());
    let mut builder = Response::builder()
        .status(reply.status)
        .header("x-request-id", format!("req_fake_{}", shared.next_id()))
        .header("openai-processing-ms", "7");
    match reply.body {
        ReplyBody::Json(v) => {
            let data = Bytes::from(serde_json::to_vec(&v).unwrap());
            shared.push_chunk(idx, data.clone(), true);
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            builder.body(Body::from(data)).unwrap()
        }
        ReplyBody::Sse { events, usage_at } => {
            builder = builder
                .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
                .header(header::CACHE_CONTROL, "no-cache");
            let n = events.len();
            let behaviour = shared.behaviour();
            let stream =
                futures_util::stream::unfold((events.into_iter().enumerate(), shared), move |(mut it, shared)| {
                    let behaviour = behaviour.clone();
                    async move {
                        let (i, ev) = it.next()?;
                        if i > 0 {
                            tokio::time::sleep(CHUNK_GAP).await;
                        }
                        if i == usage_at {
                            tokio::time::sleep(behaviour.usage_delay).await;
                            if behaviour.hold_usage {
                                shared.through_gate().await;
                            }
                        }
                        let data = Bytes::from(ev);
                        shared.push_chunk(idx, data.clone(), i + 1 == n);
                        Some((Ok::<_, Infallible>(data), (it, shared)))
                    }
                });
            builder.body(Body::from_stream(stream)).unwrap()
        }
    }
}

enum ReplyBody {
    Json(Value),
    /// Events, and the index of the usage event (or where it would be).
    Sse {
        events: Vec<String>,
        usage_at: usize,
    },
}

struct Reply {
    status: StatusCode,
    body: ReplyBody,
}

fn json_reply(status: StatusCode, v: Value) -> Reply {
    Reply { status, body: ReplyBody::Json(v) }
}

fn openai_error(status: StatusCode, message: &str, kind: &str, param: Value, code: Value) -> Reply {
    json_reply(status, json!({"error": {"message": message, "type": kind, "param": param, "code": code}}))
}

fn anthropic_error(status: StatusCode, kind: &str, message: &str) -> Reply {
    json_reply(
        status,
        json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake_anthropic"}),
    )
}

async fn route(shared: &Shared, idx: usize, method: &str, path: &str, headers: &HeaderMap, body: &[u8]) -> Reply {
    let vendor = match (method, path) {
        ("POST", "/v1/messages") => Vendor::Anthropic,
        ("GET", "/v1/models" | "/models") if headers.contains_key("x-api-key") => Vendor::Anthropic,
        ("POST", "/v1/chat/completions" | "/chat/completions") | ("GET", "/v1/models" | "/models") => Vendor::OpenAi,
        _ => {
            return openai_error(
                StatusCode::NOT_FOUND,
                &format!("Invalid URL ({method} {path})"),
                "invalid_request_error",
                Value::Null,
                Value::Null,
            );
        }
    };
    // Auth, as the vendors check it.
    match vendor {
        Vendor::OpenAi => {
            let ok = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .is_some_and(|k| !k.is_empty());
            if !ok {
                return openai_error(
                    StatusCode::UNAUTHORIZED,
                    "You didn't provide an API key. You need to provide your API key in an Authorization header \
                     using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                    "invalid_request_error",
                    Value::Null,
                    Value::Null,
                );
            }
        }
        Vendor::Anthropic => {
            // Anthropic takes `x-api-key`, or (as newer client libraries send it) a Bearer token.
            let bearer = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .is_some_and(|k| !k.is_empty());
            if !bearer && headers.get("x-api-key").is_none_or(|v| v.is_empty()) {
                return anthropic_error(
                    StatusCode::UNAUTHORIZED,
                    "authentication_error",
                    "x-api-key header is required",
                );
            }
            if !headers.contains_key("anthropic-version") {
                return anthropic_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "anthropic-version: header is required",
                );
            }
        }
    }
    if method == "GET" {
        return match vendor {
            Vendor::OpenAi => json_reply(
                StatusCode::OK,
                json!({"object": "list", "data": [
                    {"id": "gpt-4o", "object": "model", "created": 1_715_367_049, "owned_by": "system"},
                    {"id": "gpt-4o-mini", "object": "model", "created": 1_721_172_741, "owned_by": "system"},
                ]}),
            ),
            Vendor::Anthropic => json_reply(
                StatusCode::OK,
                json!({"data": [{"type": "model", "id": "claude-sonnet-4-5-20250929", "display_name": "Claude Sonnet 4.5",
                    "created_at": "2025-09-29T00:00:00Z"}],
                    "has_more": false, "first_id": "claude-sonnet-4-5-20250929", "last_id": "claude-sonnet-4-5-20250929"}),
            ),
        };
    }
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return match vendor {
            Vendor::OpenAi => openai_error(
                StatusCode::BAD_REQUEST,
                "We could not parse the JSON body of your request.",
                "invalid_request_error",
                Value::Null,
                Value::Null,
            ),
            Vendor::Anthropic => anthropic_error(StatusCode::BAD_REQUEST, "invalid_request_error", "Invalid JSON"),
        };
    };
    let model = req["model"].as_str().unwrap_or_default().to_owned();
    if model.is_empty() {
        return match vendor {
            Vendor::OpenAi => openai_error(
                StatusCode::BAD_REQUEST,
                "you must provide a model parameter",
                "invalid_request_error",
                Value::Null,
                Value::Null,
            ),
            Vendor::Anthropic => {
                anthropic_error(StatusCode::BAD_REQUEST, "invalid_request_error", "model: Field required")
            }
        };
    }
    if model == "error-400" {
        return match vendor {
            Vendor::OpenAi => openai_error(
                StatusCode::BAD_REQUEST,
                "Invalid value for 'model': 'error-400'.",
                "invalid_request_error",
                json!("model"),
                json!("invalid_value"),
            ),
            Vendor::Anthropic => anthropic_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "model: error-400 is not a valid model",
            ),
        };
    }
    if vendor == Vendor::Anthropic && req.get("max_tokens").is_none() {
        return anthropic_error(StatusCode::BAD_REQUEST, "invalid_request_error", "max_tokens: Field required");
    }
    let behaviour = shared.behaviour();
    if let Some(status) = behaviour.fail_with {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return match vendor {
            Vendor::OpenAi => openai_error(status, "The server had an error", "server_error", Value::Null, Value::Null),
            Vendor::Anthropic => anthropic_error(status, "api_error", "Internal server error"),
        };
    }
    if model == "slow" {
        tokio::time::sleep(SLOW_DELAY).await;
    }
    if behaviour.hold_heads {
        shared.through_gate().await;
    }
    let stream = req["stream"].as_bool().unwrap_or(false);
    let n = shared.next_id();
    let counts = |default: Counts| {
        if behaviour.usage_from_request { Counts::from_request(body, default.output) } else { default }
    };
    match (vendor, stream) {
        (Vendor::OpenAi, false) => json_reply(StatusCode::OK, openai_completion(n, &model, counts(Counts::OPENAI))),
        (Vendor::OpenAi, true) => {
            let include_usage = req["stream_options"]["include_usage"].as_bool().unwrap_or(false);
            let counts = counts(Counts::OPENAI);
            if include_usage {
                let plain = openai_stream(n, &model, None).concat().into_bytes();
                shared.requests.lock().unwrap()[idx].stream_without_usage = Some(plain);
            }
            let usage = (include_usage && !behaviour.withhold_usage).then_some(counts);
            let events =
                openai_stream(n, &model, usage.map(|c| (c, true)).or(include_usage.then_some((counts, false))));
            // The usage chunk is the one before `[DONE]`; without it, `[DONE]` is where it would be.
            let usage_at = events.len() - if usage.is_some() { 2 } else { 1 };
            Reply { status: StatusCode::OK, body: ReplyBody::Sse { events, usage_at } }
        }
        (Vendor::Anthropic, false) => {
            json_reply(StatusCode::OK, anthropic_message(n, &model, counts(Counts::ANTHROPIC)))
        }
        (Vendor::Anthropic, true) => {
            let usage = (!behaviour.withhold_usage).then(|| counts(Counts::ANTHROPIC));
            let events = anthropic_stream(n, &model, usage);
            // `message_delta`, before `message_stop`.
            let usage_at = events.len() - 2;
            Reply { status: StatusCode::OK, body: ReplyBody::Sse { events, usage_at } }
        }
    }
}

const CREATED: u64 = 1_760_000_000;

/// OpenAI's usage object (plus DeepSeek's cache fields for `deepseek-*` models).
pub fn openai_usage(model: &str) -> Value {
    openai_usage_of(model, Counts::OPENAI)
}

/// OpenAI's usage object with `c`.
pub fn openai_usage_of(model: &str, c: Counts) -> Value {
    let mut u = json!({
        "prompt_tokens": c.input,
        "completion_tokens": c.output,
        "total_tokens": c.input + c.output,
        "prompt_tokens_details": {"cached_tokens": c.cache_read, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0
        }
    });
    if model.starts_with("deepseek") {
        u["prompt_cache_hit_tokens"] = json!(c.cache_read);
        u["prompt_cache_miss_tokens"] = json!(c.input - c.cache_read);
    }
    u
}

/// Anthropic's usage object.
pub fn anthropic_usage() -> Value {
    anthropic_usage_of(Counts::ANTHROPIC)
}

/// Anthropic's usage object with `c`.
pub fn anthropic_usage_of(c: Counts) -> Value {
    json!({
        "input_tokens": c.input,
        "cache_creation_input_tokens": c.cache_write,
        "cache_read_input_tokens": c.cache_read,
        "cache_creation": {"ephemeral_5m_input_tokens": c.cache_write, "ephemeral_1h_input_tokens": 0},
        "output_tokens": c.output,
        "service_tier": "standard"
    })
}

/// The whole reply text.
pub fn content() -> String {
    CONTENT_PIECES.concat()
}

fn openai_completion(n: u64, model: &str, counts: Counts) -> Value {
    json!({
        "id": format!("chatcmpl-fake{n}"),
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content(), "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": openai_usage_of(model, counts),
        "service_tier": "default",
        "system_fingerprint": "fp_fake"
    })
}

/// An OpenAI stream; with `usage` as asked for (`include_usage`): the counts, and whether the
/// usage chunk is sent (without it the stream still has the `"usage": null` members).
fn openai_stream(n: u64, model: &str, usage: Option<(Counts, bool)>) -> Vec<String> {
    let include_usage = usage.is_some();
    let chunk = |choices: Value| {
        let mut c = json!({
            "id": format!("chatcmpl-fake{n}"),
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
            "choices": choices,
        });
        // With include_usage, OpenAI puts `"usage": null` on every other chunk.
        if include_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    let mut out = vec![chunk(json!([{
        "index": 0, "delta": {"role": "assistant", "content": "", "refusal": null},
        "logprobs": null, "finish_reason": null
    }]))];
    for piece in CONTENT_PIECES {
        out.push(chunk(json!([{"index": 0, "delta": {"content": piece}, "logprobs": null, "finish_reason": null}])));
    }
    out.push(chunk(json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}])));
    if let Some((counts, true)) = usage {
        let mut u = chunk(json!([]));
        u["usage"] = openai_usage_of(model, counts);
        out.push(u);
    }
    let mut events: Vec<String> = out.iter().map(|c| format!("data: {c}\n\n")).collect();
    events.push("data: [DONE]\n\n".to_owned());
    events
}

fn anthropic_message(n: u64, model: &str, counts: Counts) -> Value {
    json!({
        "id": format!("msg_fake{n}"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": content()}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": anthropic_usage_of(counts)
    })
}

/// An Anthropic stream; with `usage` `None`, its events carry no usage at all.
fn anthropic_stream(n: u64, model: &str, usage: Option<Counts>) -> Vec<String> {
    let mut start_usage = anthropic_usage_of(usage.unwrap_or(Counts::ANTHROPIC));
    start_usage["output_tokens"] = json!(1);
    let mut delta_usage = anthropic_usage_of(usage.unwrap_or(Counts::ANTHROPIC));
    delta_usage.as_object_mut().unwrap().retain(|k, _| {
        ["input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens"]
            .contains(&k.as_str())
    });
    let with_usage = |mut v: Value, u: Value| {
        if usage.is_some() {
            v["usage"] = u;
        }
        v
    };
    let mut events = vec![
        (
            "message_start",
            json!({"type": "message_start", "message": with_usage(json!({
                "id": format!("msg_fake{n}"), "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": null, "stop_sequence": null
            }), start_usage)}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        ("ping", json!({"type": "ping"})),
    ];
    for piece in CONTENT_PIECES {
        events.push((
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
        ));
    }
    events.push(("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
    events.push((
        "message_delta",
        with_usage(
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}}),
            delta_usage,
        ),
    ));
    events.push(("message_stop", json!({"type": "message_stop"})));
    events.into_iter().map(|(name, data)| format!("event: {name}\ndata: {data}\n\n")).collect()
}

// ---------------------------------------------------------------------------------------------
// Helpers the AI tests share.

/// `assegai keys set PROVIDER --stdin` with `key` on standard input; returns the command's output
/// (for leak checks) after asserting success.
pub fn set_key(env: &TestEnv, provider: &str, key: &str) -> Output {
    let out = set_key_with(env.cmd(&["keys", "set", provider, "--stdin"]), key);
    assert!(
        out.status.success(),
        "keys set {provider} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a prepared `keys set … --stdin` command with `key` on standard input.
pub fn set_key_with(cmd: std::process::Command, key: &str) -> Output {
    crate::output_with_stdin(cmd, format!("{key}\n").as_bytes())
}

/// `assegai usage --json --since all [EXTRA…]`.
pub fn usage_json(env: &TestEnv, extra: &[&str]) -> Value {
    let mut args = vec!["usage", "--json", "--since", "all"];
    args.extend_from_slice(extra);
    serde_json::from_str(&env.run_ok(&args)).expect("usage --json prints JSON")
}

/// The row of `usage` for (agent name, provider, model).
pub fn usage_row(usage: &Value, agent: &str, provider: &str, model: &str) -> Option<Value> {
    usage["rows"]
        .as_array()?
        .iter()
        .find(|r| r["agent"] == agent && r["provider"] == provider && r["model"] == model)
        .cloned()
}

/// Polls `assegai usage` until the row for (agent, provider, model) counts `calls` calls.
pub fn wait_for_usage(env: &TestEnv, agent: &str, provider: &str, model: &str, calls: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let last = usage_json(env, &[]);
        if let Some(row) = usage_row(&last, agent, provider, model).filter(|r| r["calls"] == calls) {
            return row;
        }
        assert!(
            Instant::now() < deadline,
            "no usage row ({agent}, {provider}, {model}) with {calls} calls; last: {last:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `assegai usage --agent AGENT` until its total counts `calls` calls; returns the output.
pub fn wait_for_agent_usage(env: &TestEnv, agent: &str, calls: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let last = usage_json(env, &["--agent", agent]);
        if last["total"]["calls"] == calls {
            return last;
        }
        assert!(Instant::now() < deadline, "`usage --agent {agent}` never counted {calls} calls; last: {last:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Per-token prices of one model, in atto-USD (1e-18) so they are exact integers.
#[derive(Debug, Clone, Copy)]
pub struct Prices {
    /// `input_cost_per_token`.
    pub input: u128,
    /// `output_cost_per_token`.
    pub output: u128,
    /// `cache_read_input_token_cost`.
    pub cache_read: Option<u128>,
    /// `cache_creation_input_token_cost`.
    pub cache_write: Option<u128>,
}

/// The shipped pricing snapshot's text.
pub fn prices_file() -> String {
    let path = workspace_root().join("proxy/src/ai/model_prices.json");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The prices of `model` (exact key) in the shipped pricing snapshot, read from the file's text
/// (not through floats).
pub fn model_prices(model: &str) -> Option<Prices> {
    let all: HashMap<String, Box<serde_json::value::RawValue>> =
        serde_json::from_str(&prices_file()).expect("model_prices.json is a JSON object");
    let entry: HashMap<String, Box<serde_json::value::RawValue>> = serde_json::from_str(all.get(model)?.get()).ok()?;
    let price = |k: &str| entry.get(k).map(|raw| decimal_to_atto(raw.get()));
    Some(Prices {
        input: price("input_cost_per_token")?,
        output: price("output_cost_per_token")?,
        cache_read: price("cache_read_input_token_cost"),
        cache_write: price("cache_creation_input_token_cost"),
    })
}

/// The first of `candidates` that the snapshot prices with every field `need_cache_write` asks
/// for.
pub fn pick_model(candidates: &[&str], need_cache_write: bool) -> (String, Prices) {
    for m in candidates {
        if let Some(p) = model_prices(m)
            && p.cache_read.is_some()
            && (!need_cache_write || p.cache_write.is_some())
        {
            return ((*m).to_owned(), p);
        }
    }
    panic!("none of {candidates:?} is fully priced in proxy/src/ai/model_prices.json");
}

/// A JSON number's text (`2.5e-06`, `0.000003`, `1E-5`, `0`) in atto-units, exactly.
pub fn decimal_to_atto(text: &str) -> u128 {
    let t = text.trim().trim_matches('"');
    let (mantissa, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<i32>().unwrap_or_else(|_| panic!("bad exponent in {t}"))),
        None => (t, 0),
    };
    assert!(!mantissa.starts_with('-'), "negative price {t}");
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: u128 = format!("{int}{frac}").parse().unwrap_or_else(|_| panic!("bad number {t}"));
    let shift = 18 + exp - frac.len() as i32;
    if shift >= 0 {
        digits * 10u128.pow(shift as u32)
    } else {
        let div = 10u128.pow((-shift) as u32);
        assert_eq!(digits % div, 0, "price {t} is finer than 1e-18 USD");
        digits / div
    }
}

/// The cost of one call, in nano-USD rounded half-up: each token class priced once.
pub fn cost_nano(p: &Prices, input: u64, output: u64, cache_read: u64, cache_write: u64) -> u128 {
    let atto = u128::from(input) * p.input
        + u128::from(output) * p.output
        + u128::from(cache_read) * p.cache_read.expect("a cache-read price")
        + if cache_write == 0 { 0 } else { u128::from(cache_write) * p.cache_write.expect("a cache-write price") };
    (atto + 500_000_000) / 1_000_000_000
}

/// Nano-USD as `assegai usage` prints it: at least two decimals, no trailing zeros beyond.
pub fn usd(nano: u128) -> String {
    let int = nano / 1_000_000_000;
    let frac = format!("{:09}", nano % 1_000_000_000);
    let mut frac = frac.trim_end_matches('0').to_owned();
    while frac.len() < 2 {
        frac.push('0');
    }
    format!("{int}.{frac}")
}

/// The cost of one OpenAI-style call of the fake.
pub fn openai_call_nano(p: &Prices) -> u128 {
    use usage::*;
    cost_nano(p, OPENAI_PROMPT_TOKENS - OPENAI_CACHED_TOKENS, OPENAI_COMPLETION_TOKENS, OPENAI_CACHED_TOKENS, 0)
}

/// The cost of one Anthropic call of the fake.
pub fn anthropic_call_nano(p: &Prices) -> u128 {
    use usage::*;
    cost_nano(
        p,
        ANTHROPIC_INPUT_TOKENS,
        ANTHROPIC_OUTPUT_TOKENS,
        ANTHROPIC_CACHE_READ_TOKENS,
        ANTHROPIC_CACHE_WRITE_TOKENS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact() {
        assert_eq!(decimal_to_atto("2.5e-06"), 2_500_000_000_000);
        assert_eq!(decimal_to_atto("1e-05"), 10_000_000_000_000);
        assert_eq!(decimal_to_atto("1.25E-6"), 1_250_000_000_000);
        assert_eq!(decimal_to_atto("0.000003"), 3_000_000_000_000);
        assert_eq!(decimal_to_atto("0.0"), 0);
        assert_eq!(decimal_to_atto("3"), 3_000_000_000_000_000_000);
        assert_eq!(usd(0), "0.00");
        assert_eq!(usd(1_050_000), "0.00105");
        assert_eq!(usd(1_500_000_000), "1.50");
        assert_eq!(usd(12_000_000_000), "12.00");
        let p = Prices { input: 1, output: 0, cache_read: Some(0), cache_write: None };
        assert_eq!(cost_nano(&p, 499_999_999, 0, 0, 0), 0);
        assert_eq!(cost_nano(&p, 500_000_000, 0, 0, 0), 1);
    }
}
