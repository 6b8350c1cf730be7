//! Chain access: which RPC endpoint serves an agent's chain, and forwarding reads to it.
//!
//! The method policy lives in [`policy`]; this module resolves URLs and talks to nodes.

pub mod policy;

use std::sync::Arc;

use assegai_sdk::ChainId;
use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{Value, json};
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

/// Forwards JSON-RPC reads to nodes.
#[derive(Debug, Clone)]
pub struct ChainClient {
    http: Upstream,
    config: Arc<Config>,
}

impl ChainClient {
    /// A client sharing `http`'s connection pool.
    pub fn new(http: Upstream, config: Arc<Config>) -> Self {
        ChainClient { http, config }
    }

    /// The RPC URL for `chain`: the manifest's, else config.toml's, else (local chains only) the
    /// local RPC URL. Refuses chains the manifest does not list.
    pub fn rpc_url(&self, manifest: &Manifest, chain: ChainId) -> Result<Url> {
        if !manifest.allows_chain(chain) {
            return Err(Error::ChainNotAllowed(chain));
        }
        let text = manifest
            .permissions
            .rpcs
            .get(&chain)
            .or_else(|| self.config.chains.get(&chain).map(|c| &c.rpc))
            .or_else(|| chain.is_local().then_some(&self.config.local_rpc_url))
            .ok_or(Error::RpcNotConfigured(chain))?;
        let mut url = parse_rpc_url(text).map_err(Error::BadRequest)?;
        // Manifests written for agents in containers name the host this way; the proxy runs on
        // the host itself.
        if url.host_str() == Some("host.docker.internal") {
            url.set_host(Some("127.0.0.1")).map_err(|e| Error::Internal(e.to_string()))?;
        }
        Ok(url)
    }

    /// Calls one read method and returns its `result`.
    pub async fn query(&self, url: Url, method: &str, params: &Value) -> Result<Value> {
        policy::check_method(method)?;
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let bytes = serde_json::to_vec(&body).map_err(|e| Error::Internal(e.to_string()))?;
        let (_, reply) = self.post(url, Bytes::from(bytes)).await?;
        let mut reply: Value =
            serde_json::from_slice(&reply).map_err(|_| Error::BadUpstream("the node's reply is not JSON".into()))?;
        if let Some(err) = reply.get("error").filter(|e| !e.is_null()) {
            let message = err.get("message").and_then(Value::as_str).map_or_else(|| err.to_string(), str::to_owned);
            return Err(Error::Rpc(message));
        }
        match reply.get_mut("result") {
            Some(result) => Ok(result.take()),
            None => Err(Error::BadUpstream("the node's reply has neither `result` nor `error`".into())),
        }
    }

    /// Forwards a raw JSON-RPC body (already checked by [`policy::check_body`]) and returns the
    /// node's status and body unchanged.
    pub async fn forward(&self, url: Url, body: Bytes) -> Result<(StatusCode, Bytes)> {
        self.post(url, body).await
    }

    async fn post(&self, url: Url, body: Bytes) -> Result<(StatusCode, Bytes)> {
        self.http.post_json(url.as_str(), body).await
    }
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
        config.chains.insert(ChainId::eip155(1), crate::config::ChainConfig { rpc: "https://eth.example/".into() });
        let http = Upstream::new(&config).unwrap();
        let client = ChainClient::new(http, Arc::new(config));
        let m = manifest(
            r#"{"name":"a","runtime":"node","permissions":{"chains":["eip155:31337","eip155:1","eip155:10"],
                "rpcs":{"eip155:10":"http://host.docker.internal:9545"}}}"#,
        );
        assert_eq!(client.rpc_url(&m, ChainId::ANVIL).unwrap().as_str(), "http://localhost:8545/");
        assert_eq!(client.rpc_url(&m, ChainId::eip155(1)).unwrap().as_str(), "https://eth.example/");
        assert_eq!(client.rpc_url(&m, ChainId::eip155(10)).unwrap().as_str(), "http://127.0.0.1:9545/");
        assert!(matches!(client.rpc_url(&m, ChainId::eip155(137)), Err(Error::ChainNotAllowed(_))));
        let m = manifest(r#"{"name":"a","runtime":"node","permissions":{"chains":["eip155:8453"]}}"#);
        assert!(matches!(client.rpc_url(&m, ChainId::eip155(8453)), Err(Error::RpcNotConfigured(_))));
    }
}
