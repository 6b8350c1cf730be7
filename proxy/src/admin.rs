//! The admin API: HTTP over the Unix socket `$ASSEGAI_HOME/admin.sock` (mode 0600), for the user's
//! own CLI, never for agents. The CLI uses it for whatever needs the running proxy.
//!
//! The socket's mode keeps other users out, not the user's own agents, so every request must
//! also (see [`Guard`]) come from a process of the proxy's own user that does not descend from an
//! `assegai run` runner (`SO_PEERCRED`, [`crate::runners`]), and carry the token of
//! `$ASSEGAI_HOME/admin.token`, a file written 0600 at each proxy start that the sandbox keeps
//! out of agents' reach. Anything else is refused with 401, audited and reported.
//!
//! Routes: `GET /status`, `POST /agents/{id}/changed` (forget the cached agent),
//! `POST /keys/changed` (forget cached provider keys and the wallet), `GET /ai/in-flight` (AI calls
//! in flight and what they reserve against budgets).

use std::path::{Path, PathBuf};

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{ConnectInfo, Path as UrlPath, Request, State, connect_info::Connected},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{get, post},
    serve::IncomingStream,
};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use subtle::ConstantTimeEq;

use crate::{Error, Result, config::Home, state::AppState, store::Store};

/// The header the admin token travels in.
const TOKEN_HEADER: &str = "x-assegai-admin-token";

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

/// Writes a fresh admin token to `$ASSEGAI_HOME/admin.token` (0600, replacing the previous
/// proxy's in one rename) and returns it.
pub fn issue_token(home: &Home) -> Result<String> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let token = format!("asgadm_{}", crate::auth::mint_token().trim_start_matches("asg_"));
    let file = home.admin_token();
    let tmp = file.with_extension(format!("token.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, e))?;
    out.write_all(token.as_bytes()).and_then(|()| out.sync_all()).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &file).map_err(|e| Error::io(&file, e))?;
    Ok(token)
}

/// Who is on the other end of an admin connection (`SO_PEERCRED`, read when it connects).
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    uid: Option<u32>,
    pid: Option<i32>,
}

impl Connected<IncomingStream<'_, tokio::net::UnixListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, tokio::net::UnixListener>) -> Self {
        match stream.io().peer_cred() {
            Ok(cred) => Peer { uid: Some(cred.uid()), pid: cred.pid() },
            Err(_) => Peer { uid: None, pid: None },
        }
    }
}

/// What every admin request is checked against.
#[derive(Clone)]
pub struct Guard {
    token: Arc<str>,
    uid: u32,
    runners: PathBuf,
    store: Arc<Store>,
}

impl Guard {
    /// Requests must carry `token`, come from the proxy's own user and not from a runner's tree.
    pub fn new(token: String, home: &Home, store: Arc<Store>) -> Self {
        Guard { token: token.into(), uid: nix::unistd::getuid().as_raw(), runners: home.runners_dir(), store }
    }

    /// Why this request is refused, if it is.
    fn refusal(&self, peer: Peer, req: &Request) -> Option<String> {
        if peer.uid != Some(self.uid) {
            return Some(format!("a process of another user (uid {:?})", peer.uid));
        }
        let pid = peer.pid.and_then(|p| u32::try_from(p).ok());
        if let Some(runner) = pid.and_then(|p| crate::runners::runner_ancestor(&self.runners, p)) {
            return Some(format!("process {} descends from `assegai run` (pid {runner}): an agent", pid.unwrap_or(0)));
        }
        let given = req.headers().get(TOKEN_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
        if !bool::from(given.ct_eq(self.token.as_bytes())) {
            return Some(format!("process {} sent no valid admin token", pid.unwrap_or(0)));
        }
        None
    }
}

async fn guard(State(guard): State<Guard>, ConnectInfo(peer): ConnectInfo<Peer>, req: Request, next: Next) -> Response {
    let Some(why) = guard.refusal(peer, &req) else { return next.run(req).await };
    let what = format!("{} {}", req.method(), req.uri().path());
    tracing::warn!(request = %what, "refused an admin request: {why}");
    let detail = serde_json::json!({"request": what, "why": why, "pid": peer.pid, "uid": peer.uid});
    let _ = crate::state::db(&guard.store, move |s| s.audit("admin", "admin.refused", None, Some(&detail))).await;
    let body = serde_json::json!({"error": format!("admin request refused: {why}")});
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

/// The admin router, every route behind `guard`.
pub fn router(state: AppState, guard_with: Guard) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/agents/{id}/changed", post(agent_changed))
        .route("/keys/changed", post(keys_changed))
        .route("/pricing/changed", post(pricing_changed))
        .route("/txs/{id}/reject", post(reject_tx))
        .route("/txs/{id}/approve", post(approve_tx))
        .route("/agents/{id}/paused", post(agent_paused))
        .route("/agents/{id}/approvals", get(agent_approvals))
        .route("/agents/{id}/revoke-approvals", post(revoke_approvals))
        .route("/ai/in-flight", get(ai_in_flight))
        .layer(axum::middleware::from_fn_with_state(guard_with, guard))
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

/// AI calls in flight per agent and what they reserve against budgets.
async fn ai_in_flight(State(state): State<AppState>) -> Json<Vec<crate::ai::budget::InFlight>> {
    Json(state.metering().ledger().in_flight())
}

/// The ERC-20 approvals the agent's confirmed requests granted, with what is left on chain.
async fn agent_approvals(State(state): State<AppState>, UrlPath(id): UrlPath<String>) -> Result<Json<Value>> {
    let agent = state.agents().registered(&id).await?;
    let granted = crate::tx::approvals::granted(&state, &agent).await?;
    Ok(Json(serde_json::json!({"approvals": granted})))
}

/// Queues `approve(spender, 0)` for each of them (a person still approves each).
async fn revoke_approvals(State(state): State<AppState>, UrlPath(id): UrlPath<String>) -> Result<Json<Value>> {
    let agent = state.agents().registered(&id).await?;
    let queued = crate::tx::approvals::revoke(&state, agent).await?;
    Ok(Json(serde_json::json!({"queued": queued})))
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
    token_file: PathBuf,
}

impl AdminClient {
    /// A client for the proxy whose socket is at `socket` (its token beside it).
    pub fn new(socket: &Path) -> Self {
        AdminClient { socket: socket.to_owned(), token_file: socket.with_file_name("admin.token") }
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

    /// The AI calls in flight on the running proxy, per agent, with what they reserve against
    /// budgets; `Ok(None)` when no proxy is running (so nothing is in flight).
    pub async fn ai_in_flight(&self) -> Result<Option<Vec<crate::ai::budget::InFlight>>> {
        let Some(reply) = self.call("GET", "/ai/in-flight", None).await? else { return Ok(None) };
        serde_json::from_value(reply).map(Some).map_err(|e| Error::Internal(format!("admin reply: {e}")))
    }

    /// The approvals an agent's requests granted, read back from the chain by the running proxy;
    /// `Ok(None)` when no proxy is running.
    pub async fn agent_approvals(&self, id: &str) -> Result<Option<Value>> {
        Ok(self.call("GET", &format!("/agents/{id}/approvals"), None).await?.map(|v| v["approvals"].clone()))
    }

    /// Asks the running proxy to queue revokes of an agent's approvals; returns how many, or
    /// `None` when no proxy is running.
    pub async fn revoke_approvals(&self, id: &str) -> Result<Option<u64>> {
        let reply = self.call("POST", &format!("/agents/{id}/revoke-approvals"), None).await?;
        Ok(reply.map(|v| v["queued"].as_u64().unwrap_or(0)))
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
        // Read at each call: a restarted proxy has a new one.
        let token = std::fs::read_to_string(&self.token_file).unwrap_or_default();
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "assegai")
            .header(TOKEN_HEADER, token.trim())
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
