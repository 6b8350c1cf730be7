//! Which provider endpoints the user's key may reach, and which request headers go with it.
//!
//! The key is the user's, with all of its powers: listing and deleting files, fine-tuning, batch
//! jobs, organisation and admin keys, minting realtime client secrets that an agent could use
//! directly (past the proxy, its limits and its accounting). An agent gets only the inference
//! endpoints of SPEC §3.2 ([`default_endpoints`]); anything else is 403 `ENDPOINT_NOT_ALLOWED`
//! and never forwarded, unless the user lists it in `config.toml`
//! (`[providers.openai] extra_endpoints = ["POST /v1/audio/speech"]`).
//!
//! Headers are an allow-list too ([`request_headers`]): content headers, `accept`, `user-agent`
//! and the provider's documented feature headers pass; account-selecting headers
//! (`OpenAI-Organization`, `OpenAI-Project`) come only from `config.toml`; the provider's auth is
//! set here ([`set_auth`]), for the gateway and for `assegai keys test` alike. This module does not
//! check paths for escapes (`forward::check_path` does, first).

use std::{fmt, str::FromStr};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use serde::{Deserialize, Serialize};

use crate::{Error, Result, config::ProviderConfig, manifest::Provider};

/// One endpoint: a method and a path, or (with a trailing `/*`) a path and everything below it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Endpoint {
    method: Method,
    path: String,
    subpaths: bool,
}

impl Endpoint {
    /// Whether a request of `method` for `path` (no query) is this endpoint.
    pub fn matches(&self, method: &Method, path: &str) -> bool {
        self.method == *method && path_matches(&self.path, self.subpaths, path)
    }
}

fn path_matches(pattern: &str, subpaths: bool, path: &str) -> bool {
    match path.strip_prefix(pattern) {
        Some("") => true,
        // `/v1/models/*` is `/v1/models/gpt-4o`, not `/v1/models/` (nothing named) nor `/v1/modelsx`.
        Some(rest) => subpaths && rest.len() > 1 && rest.starts_with('/'),
        None => false,
    }
}

/// An entry of the built-in lists.
#[derive(Debug)]
pub struct DefaultEndpoint {
    method: Method,
    path: &'static str,
    subpaths: bool,
}

impl DefaultEndpoint {
    fn matches(&self, method: &Method, path: &str) -> bool {
        self.method == *method && path_matches(self.path, self.subpaths, path)
    }
}

impl fmt::Display for DefaultEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}{}", self.method, self.path, if self.subpaths { "[/…]" } else { "" })
    }
}

const fn ep(method: Method, path: &'static str, subpaths: bool) -> DefaultEndpoint {
    DefaultEndpoint { method, path, subpaths }
}

/// The inference endpoints each provider's key may reach (SPEC §3.2).
pub fn default_endpoints(provider: Provider) -> &'static [DefaultEndpoint] {
    const OPENAI: &[DefaultEndpoint] = &[
        ep(Method::POST, "/v1/chat/completions", false),
        ep(Method::POST, "/v1/completions", false),
        ep(Method::POST, "/v1/responses", false),
        ep(Method::POST, "/v1/embeddings", false),
        ep(Method::POST, "/v1/moderations", false),
        ep(Method::GET, "/v1/models", true),
    ];
    const ANTHROPIC: &[DefaultEndpoint] = &[
        ep(Method::POST, "/v1/messages", false),
        ep(Method::POST, "/v1/messages/count_tokens", false),
        ep(Method::GET, "/v1/models", true),
    ];
    const DEEPSEEK: &[DefaultEndpoint] = &[
        ep(Method::POST, "/chat/completions", false),
        ep(Method::POST, "/v1/chat/completions", false),
        ep(Method::GET, "/models", false),
        ep(Method::GET, "/v1/models", false),
    ];
    match provider {
        Provider::Openai => OPENAI,
        Provider::Anthropic => ANTHROPIC,
        Provider::Deepseek => DEEPSEEK,
    }
}

/// Refuses `method path` unless it is one of the provider's inference endpoints or one the user
/// added in `config.toml`.
pub fn check(provider: Provider, config: &ProviderConfig, method: &Method, path: &str) -> Result<()> {
    if default_endpoints(provider).iter().any(|e| e.matches(method, path))
        || config.extra_endpoints.iter().any(|e| e.matches(method, path))
    {
        return Ok(());
    }
    Err(Error::EndpointNotAllowed { provider, method: method.to_string(), path: crate::sanitize::quote(path, 120) })
}

/// The cheap authenticated call `assegai keys test` makes: list the models.
pub fn key_test_path(provider: Provider) -> &'static str {
    match provider {
        Provider::Deepseek => "/models",
        Provider::Openai | Provider::Anthropic => "/v1/models",
    }
}

impl TryFrom<String> for Endpoint {
    type Error = String;

    fn try_from(text: String) -> std::result::Result<Self, String> {
        text.parse()
    }
}

impl From<Endpoint> for String {
    fn from(e: Endpoint) -> String {
        e.to_string()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}{}", self.method, self.path, if self.subpaths { "/*" } else { "" })
    }
}

impl FromStr for Endpoint {
    type Err = String;

    /// `"POST /v1/audio/speech"`, or `"GET /v1/files/*"` for a path and everything below it.
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let bad = |why: &str| format!("`{text}`: {why}; write e.g. \"POST /v1/audio/speech\" or \"GET /v1/files/*\"");
        let (method, path) = text.trim().split_once(' ').ok_or_else(|| bad("expected a method, a space and a path"))?;
        let method = match method {
            "GET" => Method::GET,
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "PATCH" => Method::PATCH,
            "DELETE" => Method::DELETE,
            _ => return Err(bad("the method must be GET, POST, PUT, PATCH or DELETE")),
        };
        let (path, subpaths) = match path.strip_suffix("/*") {
            Some(p) => (p, true),
            None => (path, false),
        };
        if !path.starts_with('/') || path.len() < 2 || path.ends_with('/') {
            return Err(bad("the path must start with `/` and name something"));
        }
        if path.contains(['?', '#', '*', '%', '\\', ' '])
            || path.contains("//")
            || path.bytes().any(|b| !b.is_ascii_graphic())
        {
            return Err(bad("the path must be plain (no query, wildcard inside, encoding or empty segment)"));
        }
        if path.split('/').any(|s| s == "." || s == "..") {
            return Err(bad("`.` and `..` segments are not allowed"));
        }
        Ok(Endpoint { method, path: path.to_owned(), subpaths })
    }
}

/// Content headers and the headers every client sends.
const COMMON_HEADERS: &[&str] = &["accept", "content-type", "content-encoding", "content-language", "user-agent"];

/// The headers `provider` documents as feature switches.
fn feature_headers(provider: Provider) -> &'static [&'static str] {
    match provider {
        Provider::Openai => &["openai-beta"],
        Provider::Anthropic => &["anthropic-version", "anthropic-beta"],
        Provider::Deepseek => &[],
    }
}

/// The headers the provider gets: the allowed ones of the agent's, then the account headers the
/// user configured. Everything else (`Authorization`, `x-api-key`, `api-key`, `X-Assegai-*`,
/// `OpenAI-Organization`/`-Project` from the agent, `Forwarded`, `X-Forwarded-*`, `Via`, cookies,
/// hop-by-hop headers and whatever `Connection` names) is dropped, since none is on the list.
/// `Accept-Encoding` is always `identity`: usage is read from the reply.
pub fn request_headers(provider: Provider, config: &ProviderConfig, from: &HeaderMap) -> HeaderMap {
    let features = feature_headers(provider);
    let mut to = HeaderMap::with_capacity(from.len().min(16) + 4);
    for (name, value) in from {
        let n = name.as_str();
        if COMMON_HEADERS.contains(&n) || features.contains(&n) {
            to.append(name.clone(), value.clone());
        }
    }
    to.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    // Checked to be valid header values when config.toml was read.
    let account = [("openai-organization", &config.organization), ("openai-project", &config.project)];
    for (name, value) in account {
        if let Some(v) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            to.insert(HeaderName::from_static(name), v);
        }
    }
    to
}

/// Sets the provider's auth header (and Anthropic's default `anthropic-version` when the client
/// sent none). The one place the key becomes a header, for the gateway and `assegai keys test`.
pub fn set_auth(provider: Provider, key: &str, headers: &mut HeaderMap) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &[&str]) -> ProviderConfig {
        ProviderConfig {
            extra_endpoints: extra.iter().map(|e| e.parse().unwrap()).collect(),
            ..ProviderConfig::new("https://api.example")
        }
    }

    #[test]
    fn only_inference_endpoints_by_default() {
        let c = config(&[]);
        let ok = |p, m: Method, path: &str| check(p, &c, &m, path).is_ok();
        use Provider::*;
        assert!(ok(Openai, Method::POST, "/v1/chat/completions"));
        assert!(ok(Openai, Method::POST, "/v1/responses"));
        assert!(ok(Openai, Method::GET, "/v1/models"));
        assert!(ok(Openai, Method::GET, "/v1/models/gpt-4o"));
        assert!(!ok(Openai, Method::GET, "/v1/models/"));
        assert!(!ok(Openai, Method::GET, "/v1/modelsx"));
        assert!(!ok(Openai, Method::GET, "/v1/chat/completions"));
        assert!(!ok(Openai, Method::POST, "/v1/chat/completions/x"));
        assert!(!ok(Openai, Method::DELETE, "/v1/files/file-abc"));
        assert!(!ok(Openai, Method::POST, "/v1/fine_tuning/jobs"));
        assert!(!ok(Openai, Method::POST, "/v1/batches"));
        assert!(!ok(Openai, Method::GET, "/v1/organization/admin_api_keys"));
        assert!(!ok(Openai, Method::POST, "/v1/realtime/client_secrets"));
        assert!(!ok(Openai, Method::POST, "/v1/messages"));
        assert!(ok(Anthropic, Method::POST, "/v1/messages"));
        assert!(ok(Anthropic, Method::POST, "/v1/messages/count_tokens"));
        assert!(ok(Anthropic, Method::GET, "/v1/models/claude-x"));
        assert!(!ok(Anthropic, Method::POST, "/v1/messages/batches"));
        assert!(ok(Deepseek, Method::POST, "/chat/completions"));
        assert!(ok(Deepseek, Method::GET, "/models"));
        assert!(!ok(Deepseek, Method::GET, "/models/deepseek-chat"));
        assert!(!ok(Deepseek, Method::GET, "/user/balance"));
    }

    #[test]
    fn extra_endpoints_open_exactly_what_they_name() {
        let c = config(&["POST /v1/audio/speech", "GET /v1/files/*"]);
        let ok = |m: Method, path: &str| check(Provider::Openai, &c, &m, path).is_ok();
        assert!(ok(Method::POST, "/v1/audio/speech"));
        assert!(!ok(Method::GET, "/v1/audio/speech"));
        assert!(!ok(Method::POST, "/v1/audio/transcriptions"));
        assert!(ok(Method::GET, "/v1/files/file-1"));
        assert!(!ok(Method::DELETE, "/v1/files/file-1"));
        assert!(ok(Method::GET, "/v1/files"));
    }

    #[test]
    fn endpoint_syntax() {
        for good in ["POST /v1/audio/speech", "GET /v1/files/*", "DELETE /v1/x"] {
            let e: Endpoint = good.parse().unwrap();
            assert_eq!(e.to_string(), good);
        }
        for bad in [
            "post /v1/x",
            "POST",
            "POST v1/x",
            "POST /",
            "POST /v1/x/",
            "POST /v1/*/x",
            "POST /v1/x?y=1",
            "POST /v1/../x",
            "POST /v1//x",
            "POST /v1/%2e",
            "HEAD /v1/x",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn only_allowed_headers_pass() {
        let mut from = HeaderMap::new();
        for (n, v) in [
            ("authorization", "Bearer agent"),
            ("x-api-key", "agent"),
            ("api-key", "agent"),
            ("x-assegai-agent-token", "t"),
            ("openai-organization", "org-agent"),
            ("openai-project", "proj-agent"),
            ("x-forwarded-for", "1.2.3.4"),
            ("forwarded", "for=1.2.3.4"),
            ("via", "1.1 evil"),
            ("connection", "x-secret"),
            ("x-secret", "1"),
            ("cookie", "a=b"),
            ("accept-encoding", "gzip"),
            ("content-type", "application/json"),
            ("accept", "text/event-stream"),
            ("user-agent", "agent/1"),
            ("openai-beta", "assistants=v2"),
            ("anthropic-beta", "x"),
        ] {
            from.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        let mut c = config(&[]);
        c.organization = Some("org-user".into());
        let to = request_headers(Provider::Openai, &c, &from);
        let names: Vec<&str> = to.keys().map(HeaderName::as_str).collect();
        assert_eq!(
            names,
            ["content-type", "accept", "user-agent", "openai-beta", "accept-encoding", "openai-organization"]
        );
        assert_eq!(to["openai-organization"], "org-user");
        assert_eq!(to["accept-encoding"], "identity");
        let to = request_headers(Provider::Anthropic, &config(&[]), &from);
        assert!(to.contains_key("anthropic-beta") && !to.contains_key("openai-beta"));
    }
}
