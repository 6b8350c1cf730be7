//! `ANY /api/{openai,anthropic,deepseek}/*`: the agent's request goes to the provider with the
//! user's key, and the reply comes back as it arrives, while a copy is read for usage and cost.
//!
//! What never crosses: the agent's `Authorization`, `x-api-key` and `X-Assegai-*` headers (the
//! proxy sets the provider's auth itself), hop-by-hop headers, and paths that try to leave the
//! provider's API (`..`, encoded slashes, empty segments). Streams are not buffered: each upstream
//! chunk is forwarded as soon as it is complete enough to forward (an SSE event when the proxy
//! must hide the usage chunk it asked for, else the chunk itself).

use std::{sync::Arc, time::Instant};

use axum::{
    Extension,
    body::Body,
    extract::{Path, Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, header},
    response::Response,
};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use tokio::sync::mpsc;

use crate::{
    Error, Result,
    ai::{
        pricing::Pricing,
        usage::{self, StreamTap, Usage},
    },
    auth::Agent,
    manifest::Provider,
    ratelimit::Service,
    server::AppState,
    store::{NewUsage, now_ms},
};

/// Largest non-streamed reply read for usage; bigger replies still pass through, unmetered.
const MAX_METERED_BODY: usize = 64 * 1024 * 1024;

/// Request headers that are the proxy's business, not the provider's.
const DROPPED_REQUEST_HEADERS: &[&str] = &[
    "authorization",
    "x-api-key",
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "accept-encoding",
    "cookie",
];

/// Response headers that describe the upstream connection, not the reply.
const DROPPED_RESPONSE_HEADERS: &[&str] =
    &["connection", "keep-alive", "proxy-authenticate", "te", "trailer", "transfer-encoding", "upgrade"];

/// The handler.
pub async fn forward(
    State(state): State<AppState>,
    Extension(agent): Extension<Arc<Agent>>,
    Path((provider, _rest)): Path<(String, String)>,
    req: Request,
) -> Result<Response> {
    let started = Instant::now();
    let provider: Provider = provider
        .parse()
        .map_err(|_| Error::NotFound(format!("No AI provider `{}`", crate::sanitize::neutralize(&provider))))?;
    if !agent.manifest.permissions.apis.contains(&provider) {
        return Err(Error::ApiNotAllowed(provider));
    }
    state.limits().check(service(provider), &agent.id)?;
    check_budget(&state, &agent).await?;
    let key = state.credentials().get(provider).await?;

    let (parts, body) = req.into_parts();
    let prefix_len = "/api/".len() + provider.as_str().len();
    let rest = parts.uri.path().get(prefix_len..).unwrap_or("");
    check_path(rest)?;
    let base = state.config().providers.get(provider).base_url.trim_end_matches('/');
    let mut target = format!("{base}{rest}");
    if let Some(q) = parts.uri.query() {
        target.push('?');
        target.push_str(q);
    }

    let limit = state.config().max_ai_body_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| Error::PayloadTooLarge { limit })?;
    let prepared = usage::prepare_request_bytes(provider, bytes);

    let mut upstream_req = hyper::Request::builder()
        .method(parts.method.clone())
        .uri(&target)
        .body(Full::new(prepared.body.clone()))
        .map_err(|e| Error::BadRequest(format!("Cannot forward this request: {e}")))?;
    let headers = upstream_req.headers_mut();
    copy_request_headers(&parts.headers, headers);
    set_auth(provider, key.expose(), headers)?;

    let resp = state.upstream().send(upstream_req).await?;
    let (mut head, incoming) = resp.into_parts();
    strip(&mut head.headers, DROPPED_RESPONSE_HEADERS);
    let is_sse = head
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    if is_sse && prepared.injected_usage {
        // The client gets the stream minus the usage chunk it did not ask for.
        head.headers.remove(header::CONTENT_LENGTH);
    }

    let meter = Meter {
        tap: Some(if is_sse {
            Tap::Sse(StreamTap::new(provider, prepared.injected_usage, prepared.model.clone()))
        } else {
            Tap::Json { buf: Vec::new(), overflow: false }
        }),
        provider,
        request_model: prepared.model,
        agent_id: agent.id.clone(),
        agent_name: agent.name.clone(),
        status: head.status.as_u16(),
        streamed: is_sse,
        started,
        pricing: state.pricing(),
        sink: state.usage_sink().clone(),
    };
    let body = futures_util::stream::unfold(Some((incoming.into_data_stream(), meter)), |st| async move {
        let (mut data, mut meter) = st?;
        loop {
            match data.next().await {
                Some(Ok(chunk)) => {
                    let out = meter.push(chunk);
                    if !out.is_empty() {
                        return Some((Ok::<Bytes, std::io::Error>(out), Some((data, meter))));
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "upstream stream broke off");
                    return Some((Err(std::io::Error::other(e)), None));
                }
                None => {
                    let rest = meter.finish();
                    return (!rest.is_empty()).then_some((Ok(rest), None));
                }
            }
        }
    });
    Ok(Response::from_parts(head, Body::from_stream(body)))
}

fn service(provider: Provider) -> Service {
    match provider {
        Provider::Openai => Service::OpenAi,
        Provider::Anthropic => Service::Anthropic,
        Provider::Deepseek => Service::DeepSeek,
    }
}

/// Refuses paths that could reach anything but the provider's API under its base URL.
fn check_path(rest: &str) -> Result<()> {
    let refuse = |why: &str| Err(Error::BadRequest(format!("Refused path: {why}")));
    if rest.is_empty() {
        return refuse("a path after the provider is required, e.g. /api/openai/v1/chat/completions");
    }
    if !rest.starts_with('/') {
        return refuse("the path must continue with `/`");
    }
    let lower = rest.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || rest.contains('\\') {
        return refuse("encoded or back slashes are not allowed");
    }
    if lower.contains("%25") {
        return refuse("double percent-encoding is not allowed");
    }
    if rest.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return refuse("control characters are not allowed");
    }
    if rest.contains("//") {
        return refuse("empty path segments are not allowed");
    }
    for segment in rest[1..].split('/') {
        let decoded = segment.replace("%2e", ".").replace("%2E", ".");
        if decoded == "." || decoded == ".." {
            return refuse("`.` and `..` segments are not allowed");
        }
    }
    Ok(())
}

fn copy_request_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        let n = name.as_str();
        if DROPPED_REQUEST_HEADERS.contains(&n) || n.starts_with("x-assegai-") {
            continue;
        }
        to.append(name.clone(), value.clone());
    }
    // Usage is read from the reply, so it must not come back compressed.
    to.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
}

fn set_auth(provider: Provider, key: &str, headers: &mut HeaderMap) -> Result<()> {
    let bad_key = || {
        Error::KeyStoreUnavailable(format!("the stored {} key is not a valid header value", provider.display_name()))
    };
    match provider {
        Provider::Openai | Provider::Deepseek => {
            let mut v = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| bad_key())?;
            v.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, v);
        }
        Provider::Anthropic => {
            let mut v = HeaderValue::from_str(key).map_err(|_| bad_key())?;
            v.set_sensitive(true);
            headers.insert(HeaderName::from_static("x-api-key"), v);
            headers
                .entry(HeaderName::from_static("anthropic-version"))
                .or_insert(HeaderValue::from_static("2023-06-01"));
        }
    }
    Ok(())
}

fn strip(headers: &mut HeaderMap, names: &[&str]) {
    for n in names {
        headers.remove(*n);
    }
}

async fn check_budget(state: &AppState, agent: &Agent) -> Result<()> {
    let Some(budget) = agent.manifest.ai_budget.clone() else { return Ok(()) };
    let windows = [(budget.daily_usd, 1, "daily"), (budget.monthly_usd, 30, "monthly")];
    for (limit, days, name) in windows {
        let Some(limit) = limit else { continue };
        let store = state.store().clone();
        let id = agent.id.clone();
        let since = now_ms() - i64::from(days) * 86_400_000;
        let spent = tokio::task::spawn_blocking(move || store.ai_spend_since(&id, since))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        if alloy_primitives::U256::from(spent) >= limit.base_units() {
            return Err(Error::BudgetExceeded(format!("{name} limit {} USD", limit.as_str())));
        }
    }
    Ok(())
}

/// What is being read from the reply for usage.
enum Tap {
    Sse(StreamTap),
    Json { buf: Vec<u8>, overflow: bool },
}

/// Meters one reply and records its usage exactly once: at the end of the body, or when the
/// client goes away first (drop).
struct Meter {
    tap: Option<Tap>,
    provider: Provider,
    request_model: Option<String>,
    agent_id: String,
    agent_name: String,
    status: u16,
    streamed: bool,
    started: Instant,
    pricing: Arc<Pricing>,
    sink: mpsc::UnboundedSender<NewUsage>,
}

impl Meter {
    fn push(&mut self, chunk: Bytes) -> Bytes {
        match &mut self.tap {
            Some(Tap::Sse(tap)) => tap.push_bytes(chunk),
            Some(Tap::Json { buf, overflow }) => {
                if !*overflow {
                    if buf.len() + chunk.len() > MAX_METERED_BODY {
                        *overflow = true;
                        buf.clear();
                    } else {
                        buf.extend_from_slice(&chunk);
                    }
                }
                chunk
            }
            None => chunk,
        }
    }

    fn finish(&mut self) -> Bytes {
        let (rest, usage) = match self.tap.take() {
            Some(Tap::Sse(tap)) => tap.finish(),
            Some(Tap::Json { buf, overflow }) => {
                let usage = (!overflow)
                    .then(|| usage::from_json_body(self.provider, &buf, self.request_model.as_deref()))
                    .flatten();
                (Bytes::new(), usage)
            }
            None => return Bytes::new(),
        };
        self.record(usage);
        rest
    }

    fn record(&self, usage: Option<Usage>) {
        // A reply without usage is still a call worth counting. An error reply is not billed; a
        // successful one whose usage never came (a cut stream, an unknown shape) has an unknown
        // cost, which must not read as free.
        let (usage, cost) = match usage {
            Some(u) => {
                let cost = self.pricing.cost_nano_usd(self.provider, &u);
                (u, cost)
            }
            None => {
                let cost = (!(200..300).contains(&self.status)).then_some(0);
                (Usage { model: self.request_model.clone(), ..Usage::default() }, cost)
            }
        };
        let row = NewUsage {
            agent_id: self.agent_id.clone(),
            agent_name: self.agent_name.clone(),
            provider: self.provider.as_str(),
            model: usage.model.clone().or_else(|| self.request_model.clone()),
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cache_read_tokens: usage.cache_read_tokens,
            cache_write_tokens: usage.cache_write_tokens,
            cost_nano_usd: cost,
            latency_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            status: self.status,
            streamed: self.streamed,
            created_at: now_ms(),
        };
        let _ = self.sink.send(row);
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        if self.tap.is_some() {
            let _ = self.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_path;

    #[test]
    fn paths_that_escape_are_refused() {
        for ok in ["/v1/chat/completions", "/v1/models", "/v1/messages", "/v1/models/gpt-4o", "/v1/files/"] {
            check_path(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            "v1",
            "/../v1",
            "/v1/../../x",
            "/v1/%2e%2e/x",
            "/v1/%2E%2e/x",
            "/v1/./x",
            "/v1%2f..%2fx",
            "/v1%2Fx",
            "/v1%5cx",
            "/v1\\x",
            "//evil.example/v1",
            "/v1//x",
            "/v1/%252e%252e/x",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
