//! The admin API: HTTP over the Unix socket `$ASSEGAI_HOME/admin.sock` (mode 0600), reachable only
//! by the user's own CLI, never by agents. The CLI uses it for whatever needs the running proxy.
//!
//! Routes: `GET /status`, `POST /agents/{id}/changed` (forget the cached agent),
//! `POST /keys/changed` (forget cached provider keys and the wallet).

use std::path::{Path, PathBuf};

use axum::{
    Json, Router,
    extract::{Path as UrlPath, State},
    routing::{get, post},
};
use http_body_util::{BodyExt, Full};
use hyper::{Request, body::Bytes};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result, server::AppState};

/// What `GET /status` returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// The proxy's process id.
    pub pid: u32,
    /// The agent-facing address.
    pub listen: String,
    /// Version of the running proxy.
    pub version: String,
    /// Start time (ms since the epoch).
    pub started_at: i64,
}

/// The admin router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/agents/{id}/changed", post(agent_changed))
        .route("/keys/changed", post(keys_changed))
        .route("/pricing/changed", post(pricing_changed))
        .route("/txs/{id}/reject", post(reject_tx))
        .route("/txs/{id}/approve", post(approve_tx))
        .route("/agents/{id}/paused", post(agent_paused))
        .with_state(state)
}

async fn status(State(state): State<AppState>) -> Json<Status> {
    Json(state.status())
}

async fn agent_changed(State(state): State<AppState>, UrlPath(id): UrlPath<String>) -> Json<Value> {
    state.agents().invalidate(&id);
    Json(serde_json::json!({"success": true}))
}

async fn keys_changed(State(state): State<AppState>) -> Json<Value> {
    state.credentials().invalidate();
    state.wallet().invalidate();
    Json(serde_json::json!({"success": true, "keys_readable": state.credentials().has_store()}))
}

async fn pricing_changed(State(state): State<AppState>) -> Result<Json<Value>> {
    let models = state.reload_pricing()?;
    Ok(Json(serde_json::json!({"models": models})))
}

/// The agent was paused: forget its cached (unpaused) state and reject what it has pending.
async fn agent_paused(State(state): State<AppState>, UrlPath(id): UrlPath<String>) -> Result<Json<Value>> {
    state.agents().invalidate(&id);
    let rejected = crate::tx::reject_all_of(&state, &id, "kill switch").await?;
    Ok(Json(serde_json::json!({"rejected": rejected})))
}

async fn approve_tx(State(state): State<AppState>, UrlPath(id): UrlPath<String>) -> Result<Json<Value>> {
    let approved = crate::tx::approve(&state, &id, "cli").await?;
    Ok(Json(serde_json::json!({"approved": approved})))
}

async fn reject_tx(State(state): State<AppState>, UrlPath(id): UrlPath<String>) -> Result<Json<Value>> {
    let rejected = crate::tx::reject(&state, &id, "cli").await?;
    Ok(Json(serde_json::json!({"rejected": rejected})))
}

/// The CLI's side of the admin socket.
#[derive(Debug, Clone)]
pub struct AdminClient {
    socket: PathBuf,
}

impl AdminClient {
    /// A client for the proxy whose socket is at `socket`.
    pub fn new(socket: &Path) -> Self {
        AdminClient { socket: socket.to_owned() }
    }

    /// The running proxy's status, or `None` when no proxy answers on the socket.
    pub async fn status(&self) -> Option<Status> {
        let v = self.call("GET", "/status", None).await.ok()??;
        serde_json::from_value(v).ok()
    }

    /// Tells a running proxy that an agent changed. `Ok(false)` when no proxy is running.
    pub async fn agent_changed(&self, id: &str) -> Result<bool> {
        Ok(self.call("POST", &format!("/agents/{id}/changed"), None).await?.is_some())
    }

    /// Tells a running proxy that stored keys changed. `Ok(None)` when no proxy is running, else
    /// whether that proxy can read the key store at all (one started before the key file existed
    /// cannot, until it is restarted).
    pub async fn keys_changed(&self) -> Result<Option<bool>> {
        let reply = self.call("POST", "/keys/changed", None).await?;
        Ok(reply.map(|v| v["keys_readable"].as_bool().unwrap_or(true)))
    }

    /// Tells a running proxy to re-read the installed pricing file; returns how many models it
    /// prices now, or `None` when no proxy is running.
    pub async fn pricing_changed(&self) -> Result<Option<u64>> {
        let reply = self.call("POST", "/pricing/changed", None).await?;
        Ok(reply.map(|v| v["models"].as_u64().unwrap_or(0)))
    }

    /// Tells a running proxy an agent was paused; returns how many pending requests it rejected,
    /// or `None` when no proxy is running.
    pub async fn agent_paused(&self, id: &str) -> Result<Option<u64>> {
        let reply = self.call("POST", &format!("/agents/{id}/paused"), None).await?;
        Ok(reply.map(|v| v["rejected"].as_u64().unwrap_or(0)))
    }

    /// Asks the running proxy to approve (sign and broadcast) a pending request. `Ok(None)`: no
    /// proxy is running; `Ok(Some(false))`: it was not pending any more.
    pub async fn approve_tx(&self, id: &str) -> Result<Option<bool>> {
        let reply = self.call("POST", &format!("/txs/{id}/approve"), None).await?;
        Ok(reply.map(|v| v["approved"].as_bool().unwrap_or(false)))
    }

    /// Asks the running proxy to reject a pending request. `Ok(None)`: no proxy is running;
    /// `Ok(Some(false))`: it was not pending.
    pub async fn reject_tx(&self, id: &str) -> Result<Option<bool>> {
        let reply = self.call("POST", &format!("/txs/{id}/reject"), None).await?;
        Ok(reply.map(|v| v["rejected"].as_bool().unwrap_or(false)))
    }

    /// One request; `Ok(None)` when nothing listens on the socket.
    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Option<Value>> {
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
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "assegai")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Error::Internal(e.to_string()))?;
        let resp = sender.send_request(req).await.map_err(|e| Error::Internal(format!("admin request: {e}")))?;
        let status = resp.status();
        let bytes =
            resp.into_body().collect().await.map_err(|e| Error::Internal(format!("admin reply: {e}")))?.to_bytes();
        conn.abort();
        if !status.is_success() {
            return Err(Error::Internal(format!(
                "the proxy refused {method} {path}: {}",
                String::from_utf8_lossy(&bytes)
            )));
        }
        serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::Internal(format!("admin reply: {e}")))
    }
}
