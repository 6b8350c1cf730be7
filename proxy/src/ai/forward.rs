//! `ANY /api/{openai,anthropic,deepseek}/*`: the agent's request goes to the provider with the
//! user's key, and the reply comes back as it arrives, while a copy is read for usage and cost.
//!
//! What never crosses: paths that try to leave the provider's API (`..`, encoded slashes, empty
//! segments), endpoints other than the provider's inference ones, and any request header not on
//! the allow-list (the agent's `Authorization`, `x-api-key`, `X-Assegai-*`, account and forwarding
//! headers among them): [`endpoints`] decides both, and sets the provider's auth. Streams are not
//! buffered: each upstream chunk is forwarded as soon as it is complete enough to forward (an SSE
//! event when the proxy must hide the usage chunk it asked for, else the chunk itself).
//!
//! Before a call is forwarded its worst-case cost is reserved against the agent's AI budget
//! ([`budget`]); from then on it is metered to the end of its reply, even if the agent goes away
//! ([`meter`]).

use std::{sync::Arc, time::Instant};

use axum::{
    Extension,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, header},
    response::Response,
};
use http_body_util::Full;

use crate::{
    Error, Result,
    ai::{budget, endpoints, meter, usage},
    auth::Agent,
    extract::ApiPath,
    manifest::Provider,
    ratelimit::Service,
    state::AppState,
    store::now_ms,
};

/// Response headers that describe the upstream connection, not the reply.
const DROPPED_RESPONSE_HEADERS: &[&str] =
    &["connection", "keep-alive", "proxy-authenticate", "te", "trailer", "transfer-encoding", "upgrade"];

/// The handler.
pub async fn forward(
    State(state): State<AppState>,
    Extension(agent): Extension<Arc<Agent>>,
    ApiPath((provider, _rest)): ApiPath<(String, String)>,
    req: Request,
) -> Result<Response> {
    let started = Instant::now();
    let provider: Provider = provider
        .parse()
        .map_err(|_| Error::NotFound(format!("No AI provider `{}`", crate::sanitize::neutralize(&provider))))?;
    if !agent.manifest.permissions.apis.contains(&provider) {
        return Err(Error::ApiNotAllowed(provider));
    }
    // What the key may reach is decided before anything is spent on the call.
    let provider_config = state.config().providers.get(provider);
    let prefix_len = "/api/".len() + provider.as_str().len();
    let rest = req.uri().path().get(prefix_len..).unwrap_or("");
    check_path(rest)?;
    endpoints::check(provider, provider_config, req.method(), rest)?;
    state.limits().check(service(provider), &agent.id).await?;
    let key = state.credentials().get(provider).await?;

    let (parts, body) = req.into_parts();
    let prefix_len = "/api/".len() + provider.as_str().len();
    let rest = parts.uri.path().get(prefix_len..).unwrap_or("");
    let base = provider_config.base_url.trim_end_matches('/');
    let mut target = format!("{base}{rest}");
    if let Some(q) = parts.uri.query() {
        target.push('?');
        target.push_str(q);
    }

    let limit = state.config().max_ai_body_bytes;
    let bytes = crate::extract::read_body(body, limit).await?;
    let prepared = usage::prepare_request_bytes(provider, bytes);
    // The call's worst case is reserved against the agent's AI budget (its output limit lowered
    // to what the budget affords, if need be), or it is refused here.
    let pricing = state.pricing();
    let mut plan = budget::plan(
        state.metering().ledger(),
        &pricing,
        state.metering().plan_settings(),
        agent.id.as_str(),
        agent.manifest.ai_budget.as_ref(),
        provider,
        &parts.method,
        rest,
        &prepared,
        now_ms(),
    )?;

    let mut upstream_req = hyper::Request::builder()
        .method(parts.method.clone())
        .uri(&target)
        .body(Full::new(plan.body.take().unwrap_or_else(|| prepared.body.clone())))
        .map_err(|e| Error::BadRequest(format!("Cannot forward this request: {e}")))?;
    let headers = upstream_req.headers_mut();
    *headers = endpoints::request_headers(provider, provider_config, &parts.headers);
    endpoints::set_auth(provider, key.expose(), headers)?;

    let call = meter::Call {
        provider,
        request_model: prepared.model,
        agent_id: agent.id.clone(),
        agent_name: agent.name.clone(),
        started,
        injected_usage: prepared.injected_usage,
        billable: plan.billable,
        budgeted: plan.budgeted,
        input_tokens_bound: plan.input_tokens_bound,
        charge: plan.charge,
        pricing,
        sink: state.usage_sink().clone(),
    };
    // From here on the call is metered to its end even if the agent goes away.
    let (resp, call) = state.metering().send(state.upstream(), upstream_req, call).await?;
    let (mut head, incoming) = resp.into_parts();
    strip(&mut head.headers, DROPPED_RESPONSE_HEADERS);
    let is_sse = meter::is_sse(&head.headers);
    if is_sse && prepared.injected_usage {
        // The client gets the stream minus the usage chunk it did not ask for.
        head.headers.remove(header::CONTENT_LENGTH);
    }
    if let Some(limit) = plan.output_limit {
        head.headers.insert(budget::OUTPUT_LIMIT_HEADER, HeaderValue::from(limit));
    }
    let body = state.metering().body(incoming, call.meter(head.status.as_u16(), is_sse));
    Ok(Response::from_parts(head, Body::new(body)))
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

fn strip(headers: &mut HeaderMap, names: &[&str]) {
    for n in names {
        headers.remove(*n);
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
