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

mod client;
pub mod wire;

use std::{path::PathBuf, sync::Arc};

use axum::{
    Json, Router,
    extract::{ConnectInfo, Path as UrlPath, Request, State, connect_info::Connected},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{get, post},
    serve::IncomingStream,
};
use subtle::ConstantTimeEq;

pub use client::AdminClient;
pub use wire::Status;
use wire::{TOKEN_HEADER, path};

use crate::{
    Error, Result,
    config::Home,
    ids::{AgentId, TxId},
    state::AppState,
    store::Store,
};

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
    let body = wire::Refused { error: format!("admin request refused: {why}") };
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

/// The admin router, every route behind `guard`.
pub fn router(state: AppState, guard_with: Guard) -> Router {
    Router::new()
        .route(path::STATUS, get(status))
        .route(path::AGENT_CHANGED, post(agent_changed))
        .route(path::KEYS_CHANGED, post(keys_changed))
        .route(path::PRICING_CHANGED, post(pricing_changed))
        .route(path::TX_REJECT, post(reject_tx))
        .route(path::TX_APPROVE, post(approve_tx))
        .route(path::AGENT_PAUSED, post(agent_paused))
        .route(path::AGENT_APPROVALS, get(agent_approvals))
        .route(path::REVOKE_APPROVALS, post(revoke_approvals))
        .route(path::AI_IN_FLIGHT, get(ai_in_flight))
        .layer(axum::middleware::from_fn_with_state(guard_with, guard))
        .with_state(state)
}

async fn status(State(state): State<AppState>) -> Json<Status> {
    Json(state.status())
}

async fn agent_changed(State(state): State<AppState>, UrlPath(id): UrlPath<String>) -> Json<wire::AgentChanged> {
    state.agents().invalidate(&id);
    Json(wire::AgentChanged { success: true })
}

async fn keys_changed(State(state): State<AppState>) -> Json<wire::KeysChanged> {
    state.credentials().invalidate();
    state.wallet().invalidate();
    Json(wire::KeysChanged { keys_readable: state.credentials().has_store() })
}

async fn pricing_changed(State(state): State<AppState>) -> Result<Json<wire::PricingChanged>> {
    Ok(Json(wire::PricingChanged { models: state.reload_pricing()? }))
}

/// The agent was paused: forget its cached (unpaused) state and reject what it has pending.
async fn agent_paused(State(state): State<AppState>, UrlPath(id): UrlPath<AgentId>) -> Result<Json<wire::AgentPaused>> {
    state.agents().invalidate(id.as_str());
    let rejected = crate::tx::reject_all_of(&state, &id, "kill switch").await?;
    Ok(Json(wire::AgentPaused { rejected }))
}

/// AI calls in flight per agent and what they reserve against budgets.
async fn ai_in_flight(State(state): State<AppState>) -> Json<Vec<wire::InFlight>> {
    Json(state.metering().ledger().in_flight())
}

/// The ERC-20 approvals the agent's confirmed requests granted, with what is left on chain.
async fn agent_approvals(State(state): State<AppState>, UrlPath(id): UrlPath<String>) -> Result<Json<wire::Approvals>> {
    let agent = state.agents().registered(&id).await?;
    let approvals = crate::tx::approvals::granted(&state, &agent).await?;
    Ok(Json(wire::Approvals { approvals }))
}

/// Queues `approve(spender, 0)` for each of them (a person still approves each).
async fn revoke_approvals(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<wire::RevokeQueued>> {
    let agent = state.agents().registered(&id).await?;
    let queued = crate::tx::approvals::revoke(&state, agent).await?;
    Ok(Json(wire::RevokeQueued { queued }))
}

async fn approve_tx(State(state): State<AppState>, UrlPath(id): UrlPath<TxId>) -> Result<Json<wire::TxApproved>> {
    let approved = crate::tx::approve(&state, &id, "cli").await?;
    Ok(Json(wire::TxApproved { approved }))
}

async fn reject_tx(State(state): State<AppState>, UrlPath(id): UrlPath<TxId>) -> Result<Json<wire::TxRejected>> {
    let rejected = crate::tx::reject(&state, &id, "cli").await?;
    Ok(Json(wire::TxRejected { rejected }))
}
