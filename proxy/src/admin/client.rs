//! The CLI's side of the admin socket: one typed call per route of [`super::wire`].

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde::de::DeserializeOwned;

use super::wire::{self, TOKEN_HEADER, path};
use crate::{
    Error, Result,
    ids::{AgentId, TxId},
};

/// The CLI's side of the admin socket.
#[derive(Debug, Clone)]
pub struct AdminClient {
    socket: PathBuf,
    token_file: PathBuf,
}

impl AdminClient {
    /// A client for the proxy whose socket is at `socket` (its token beside it).
    pub fn new(socket: &Path) -> Self {
        AdminClient { socket: socket.to_owned(), token_file: socket.with_file_name("admin.token") }
    }

    /// The running proxy's status, or `None` when no proxy answers on the socket.
    pub async fn status(&self) -> Option<wire::Status> {
        self.call("GET", path::STATUS).await.ok()?
    }

    /// Tells a running proxy that an agent changed. `Ok(false)` when no proxy is running.
    pub async fn agent_changed(&self, id: &AgentId) -> Result<bool> {
        let reply: Option<wire::AgentChanged> = self.call("POST", &path::with_id(path::AGENT_CHANGED, id)).await?;
        Ok(reply.is_some())
    }

    /// Tells a running proxy that stored keys changed. `Ok(None)` when no proxy is running, else
    /// whether that proxy can read the key store at all.
    pub async fn keys_changed(&self) -> Result<Option<bool>> {
        let reply: Option<wire::KeysChanged> = self.call("POST", path::KEYS_CHANGED).await?;
        Ok(reply.map(|r| r.keys_readable))
    }

    /// Tells a running proxy to re-read the installed pricing file; returns how many models it
    /// prices now, or `None` when no proxy is running.
    pub async fn pricing_changed(&self) -> Result<Option<usize>> {
        let reply: Option<wire::PricingChanged> = self.call("POST", path::PRICING_CHANGED).await?;
        Ok(reply.map(|r| r.models))
    }

    /// Tells a running proxy an agent was paused; returns how many pending requests it rejected,
    /// or `None` when no proxy is running.
    pub async fn agent_paused(&self, id: &AgentId) -> Result<Option<usize>> {
        let reply: Option<wire::AgentPaused> = self.call("POST", &path::with_id(path::AGENT_PAUSED, id)).await?;
        Ok(reply.map(|r| r.rejected))
    }

    /// The AI calls in flight on the running proxy, per agent, with what they reserve against
    /// budgets; `Ok(None)` when no proxy is running (so nothing is in flight).
    pub async fn ai_in_flight(&self) -> Result<Option<Vec<wire::InFlight>>> {
        self.call("GET", path::AI_IN_FLIGHT).await
    }

    /// The approvals an agent's requests granted, read back from the chain by the running proxy;
    /// `Ok(None)` when no proxy is running.
    pub async fn agent_approvals(&self, id: &AgentId) -> Result<Option<Vec<wire::Granted>>> {
        let reply: Option<wire::Approvals> = self.call("GET", &path::with_id(path::AGENT_APPROVALS, id)).await?;
        Ok(reply.map(|r| r.approvals))
    }

    /// Asks the running proxy to queue revokes of an agent's approvals; returns how many, or
    /// `None` when no proxy is running.
    pub async fn revoke_approvals(&self, id: &AgentId) -> Result<Option<usize>> {
        let reply: Option<wire::RevokeQueued> = self.call("POST", &path::with_id(path::REVOKE_APPROVALS, id)).await?;
        Ok(reply.map(|r| r.queued))
    }

    /// Asks the running proxy to approve (sign and broadcast) a pending request. `Ok(None)`: no
    /// proxy is running; `Ok(Some(false))`: it was not pending any more.
    pub async fn approve_tx(&self, id: &TxId) -> Result<Option<bool>> {
        let reply: Option<wire::TxApproved> = self.call("POST", &path::with_id(path::TX_APPROVE, id)).await?;
        Ok(reply.map(|r| r.approved))
    }

    /// Asks the running proxy to reject a pending request. `Ok(None)`: no proxy is running;
    /// `Ok(Some(false))`: it was not pending.
    pub async fn reject_tx(&self, id: &TxId) -> Result<Option<bool>> {
        let reply: Option<wire::TxRejected> = self.call("POST", &path::with_id(path::TX_REJECT, id)).await?;
        Ok(reply.map(|r| r.rejected))
    }

    /// One request with an empty body, its reply parsed as `T`; `Ok(None)` when nothing listens
    /// on the socket.
    async fn call<T: DeserializeOwned>(&self, method: &str, path: &str) -> Result<Option<T>> {
        let stream = match tokio::net::UnixStream::connect(&self.socket).await {
            Ok(s) => s,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
                return Ok(None);
            }
            Err(e) => return Err(Error::io(&self.socket, e)),
        };
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(io)
            .await
            .map_err(|e| Error::Internal(format!("admin socket handshake: {e}")))?;
        let conn = tokio::spawn(conn);
        // Read at each call: a restarted proxy has a new one.
        let token = std::fs::read_to_string(&self.token_file).unwrap_or_default();
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "assegai")
            .header(TOKEN_HEADER, token.trim())
            .body(Full::new(Bytes::new()))
            .map_err(|e| Error::Internal(e.to_string()))?;
        let resp = sender.send_request(req).await.map_err(|e| Error::Internal(format!("admin request: {e}")))?;
        let status = resp.status();
        let bytes =
            resp.into_body().collect().await.map_err(|e| Error::Internal(format!("admin reply: {e}")))?.to_bytes();
        conn.abort();
        if !status.is_success() {
            let why = serde_json::from_slice::<wire::Refused>(&bytes)
                .map(|r| r.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            return Err(Error::Internal(format!("the proxy refused {method} {path}: {why}")));
        }
        serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::Internal(format!("admin reply to {path}: {e}")))
    }
}
