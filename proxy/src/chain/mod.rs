//! Chain access: which RPC endpoint serves an agent's chain, and forwarding reads to it.
//!
//! What agents send is parsed by [`jsonrpc`] and checked by [`policy`]; this module resolves URLs
//! and talks to nodes, which only ever get the proxy's own serialisation of a checked request.

pub mod jsonrpc;
pub mod policy;

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use assegai_sdk::ChainId;
use bytes::Bytes;
use hyper::{StatusCode, Uri};
use serde::Deserialize;
use serde_json::{Value, value::RawValue};
use url::Url;

use crate::{Error, Result, config::Config, manifest::Manifest, upstream::Upstream};

/// Parses an RPC URL: `http` or `https` with a host.
pub fn parse_rpc_url(text: &str) -> std::result::Result<Url, String> {
    let url =
        Url::parse(text).map_err(|e| format!("`{text}` is not a URL ({e}); write e.g. \"http://localhost:8545\""))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("`{text}` must be an http:// or https:// URL with a host"));
    }
    Ok(url)
}

/// An RPC (or API base) URL as it may be shown to a person: its scheme, host and port only. A
/// provider's RPC URL often carries its API key in the path (`/v2/KEY`), the query (`?apikey=`)
/// or the user info, so none of those is ever shown; `None` when it is not a URL with a host.
/// `assegai doctor` and `assegai config` show URLs only through this.
pub fn shown_url(text: &str) -> Option<String> {
    let url = Url::parse(text).ok()?;
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    })
}

/// Whether [`shown_url`] leaves out part of `text` (a path, query, fragment or user info).
pub fn url_is_shortened(text: &str) -> bool {
    shown_url(text).is_none_or(|shown| shown != text.trim_end_matches('/'))
}

/// Forwards JSON-RPC reads to nodes.
#[derive(Debug)]
pub struct ChainClient {
    http: Upstream,
    config: Arc<Config>,
    /// Parsed endpoints by their text: URL parsing is a visible share of a forwarded read.
    parsed: RwLock<HashMap<String, Uri>>,
    /// Endpoints whose `eth_chainId` answered the chain they serve, and when it was asked.
    verified: RwLock<HashMap<(Uri, u64), Instant>>,
}

/// How long an endpoint's chain id is trusted before it is asked again: a URL can be re-pointed
/// at another node, or reconnect to one, at any time, and a pooled connection says nothing about
/// which node answers the next one.
const VERIFIED_FOR: Duration = Duration::from_secs(60);

/// The parts of a JSON-RPC reply the proxy looks at; `result` stays unparsed.
#[derive(Deserialize)]
struct Reply<'a> {
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<Value>,
}

impl ChainClient {
    /// A client sharing `http`'s connection pool.
    pub fn new(http: Upstream, config: Arc<Config>) -> Self {
        ChainClient { http, config, parsed: RwLock::new(HashMap::new()), verified: RwLock::new(HashMap::new()) }
    }

    /// The RPC URL for `chain`: the manifest's, else config.toml's, else (local chains only) the
    /// local RPC URL. Refuses chains the manifest does not list.
    pub fn rpc_url(&self, manifest: &Manifest, chain: ChainId) -> Result<Uri> {
        if !manifest.allows_chain(chain) {
            return Err(Error::ChainNotAllowed(chain));
        }
        let text = manifest
            .permissions
            .rpcs
            .get(&chain)
            .or_else(|| self.config.chains.get(&chain).and_then(|c| c.rpc.as_ref()))
            .or_else(|| chain.is_local().then_some(&self.config.local_rpc_url))
            .ok_or(Error::RpcNotConfigured(chain))?;
        self.uri(text)
    }

    /// The RPC that signs, and fixes nonces and fees, for `chain`: the user's own
    /// (`[chains."…"] rpc` in config.toml) when it is set — an agent's manifest must not choose
    /// the node that tells the user what to pay — else the one that serves the agent's reads.
    pub fn signing_rpc_url(&self, manifest: &Manifest, chain: ChainId) -> Result<Uri> {
        match self.config.user_rpc(chain) {
            Some(text) if manifest.allows_chain(chain) => self.uri(text),
            _ => self.rpc_url(manifest, chain),
        }
    }

    /// `text` as a URI, parsed once.
    fn uri(&self, text: &str) -> Result<Uri> {
        if let Some(uri) = self.parsed.read().unwrap_or_else(|p| p.into_inner()).get(text) {
            return Ok(uri.clone());
        }
        let mut url = parse_rpc_url(text).map_err(Error::BadRequest)?;
        // Manifests written for agents in containers name the host this way; the proxy runs on
        // the host itself.
        if url.host_str() == Some("host.docker.internal") {
            url.set_host(Some("127.0.0.1")).map_err(|e| Error::Internal(e.to_string()))?;
        }
        let uri: Uri = url.as_str().parse().map_err(|e| Error::Internal(format!("RPC URL {url}: {e}")))?;
        let mut parsed = self.parsed.write().unwrap_or_else(|p| p.into_inner());
        // Manifests are few; the bound only guards against a pathological registry.
        if parsed.len() > 1024 {
            parsed.clear();
        }
        parsed.insert(text.to_owned(), uri.clone());
        Ok(uri)
    }

    /// Checks that the node at `uri` is `chain` (its `eth_chainId`), asked at most once per
    /// [`VERIFIED_FOR`]: nothing is read from a node that is another chain.
    pub async fn verify(&self, uri: &Uri, chain: ChainId) -> Result<()> {
        let key = (uri.clone(), chain.id());
        let fresh = self.verified.read().unwrap_or_else(|p| p.into_inner()).get(&key).copied();
        if fresh.is_some_and(|at| at.elapsed() < VERIFIED_FOR) {
            return Ok(());
        }
        let raw = self.query(uri.clone(), "eth_chainId", &Value::Array(Vec::new())).await?;
        let reported = serde_json::from_str::<alloy::primitives::U64>(raw.get())
            .map_err(|_| Error::BadUpstream("the node's eth_chainId is not a hex quantity".into()))?
            .to::<u64>();
        let mut verified = self.verified.write().unwrap_or_else(|p| p.into_inner());
        if reported != chain.id() {
            verified.remove(&key);
            return Err(Error::ChainIdMismatch { reported, expected: chain });
        }
        if verified.len() > 1024 {
            verified.clear();
        }
        verified.insert(key, Instant::now());
        Ok(())
    }

    /// Calls one read method and returns its `result` as raw JSON text, unparsed.
    pub async fn query(&self, uri: Uri, method: &str, params: &Value) -> Result<Box<RawValue>> {
        policy::check_method(method)?;
        let request = Request { jsonrpc: "2.0", id: 1, method, params };
        let bytes = serde_json::to_vec(&request).map_err(|e| Error::Internal(e.to_string()))?;
        let (_, reply) = self.post(uri, Bytes::from(bytes)).await?;
        let reply: Reply<'_> =
            serde_json::from_slice(&reply).map_err(|_| Error::BadUpstream("the node's reply is not JSON".into()))?;
        if let Some(err) = reply.error.filter(|e| !e.is_null()) {
            // A node's text is shown to agents and people: short and inert like any other.
            let message = err.get("message").and_then(Value::as_str).map_or_else(|| err.to_string(), str::to_owned);
            return Err(Error::Rpc(crate::sanitize::quote(&message, 500)));
        }
        match reply.result {
            Some(result) => Ok(result.to_owned()),
            None => Err(Error::BadUpstream("the node's reply has neither `result` nor `error`".into())),
        }
    }

    /// Sends the proxy's serialisation of a checked JSON-RPC body and returns the node's status and
    /// body unchanged.
    pub async fn forward(&self, uri: Uri, body: &jsonrpc::RpcBody) -> Result<(StatusCode, Bytes)> {
        self.post(uri, body.to_bytes()).await
    }

    async fn post(&self, uri: Uri, body: Bytes) -> Result<(StatusCode, Bytes)> {
        self.http.post_json(uri, body).await
    }
}

#[derive(serde::Serialize)]
struct Request<'a> {
    jsonrpc: &'static str,
    id: u32,
    method: &'a str,
    params: &'a Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(json: &str) -> Manifest {
        Manifest::parse(json, std::path::Path::new("m.json")).unwrap()
    }

    #[test]
    fn url_resolution_order() {
        let mut config = Config::default();
        config.chains.insert(
            ChainId::eip155(1),
            crate::config::ChainConfig { rpc: Some("https://eth.example/".into()), ..Default::default() },
        );
        let http = Upstream::new(&config).unwrap();
        let client = ChainClient::new(http, Arc::new(config));
        let m = manifest(
            r#"{"name":"a","runtime":"node","permissions":{"chains":["eip155:31337","eip155:1","eip155:10"],
                "rpcs":{"eip155:10":"http://host.docker.internal:9545"}}}"#,
        );
        assert_eq!(client.rpc_url(&m, ChainId::ANVIL).unwrap().to_string(), "http://localhost:8545/");
        assert_eq!(client.rpc_url(&m, ChainId::eip155(1)).unwrap().to_string(), "https://eth.example/");
        assert_eq!(client.rpc_url(&m, ChainId::eip155(10)).unwrap().to_string(), "http://127.0.0.1:9545/");
        // Cached: the same answer the second time.
        assert_eq!(client.rpc_url(&m, ChainId::eip155(10)).unwrap().to_string(), "http://127.0.0.1:9545/");
        assert!(matches!(client.rpc_url(&m, ChainId::eip155(137)), Err(Error::ChainNotAllowed(_))));
        let m = manifest(r#"{"name":"a","runtime":"node","permissions":{"chains":["eip155:8453"]}}"#);
        assert!(matches!(client.rpc_url(&m, ChainId::eip155(8453)), Err(Error::RpcNotConfigured(_))));
    }
}
