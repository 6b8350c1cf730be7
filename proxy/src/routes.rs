//! The agent-facing HTTP handlers (SPEC §3). Authentication happens in middleware before these
//! run; each handler checks the policy for its own resource and returns `Result<_, Error>`.

use std::sync::Arc;

use crate::{
    Error, Result,
    auth::Agent,
    chain::{jsonrpc, policy},
    extract::{ApiJson, ApiPath, RawBody},
    ids::TxId,
    ratelimit::Service,
    state::AppState,
    store::{NewLog, now_ms},
};
use assegai_sdk::{
    ChainId,
    wire::{Health, LogRequest, Success, TxInfo, TxRequest, TxSent, WalletAddressResponse},
};
use axum::{
    Extension, Json,
    extract::State,
    http::{Method, Uri, header},
    response::{IntoResponse, Response},
};

/// `GET /health`.
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok".into(), timestamp: now_ms().max(0) as u64 })
}

/// `POST /agent/query-chain`.
/// The reply is `QueryChainResponse`, written around the node's raw `result` so a large
/// result (a block, logs) is never parsed and re-serialised.
///
/// Every chain route checks in one order: the body parses strictly, the chain is in the manifest,
/// every method is a read, and only then is a rate-limit token spent and the node's chain id
/// checked (cached) before anything is forwarded.
pub async fn query_chain(
    State(state): State<AppState>,
    Extension(agent): Extension<Arc<Agent>>,
    RawBody(body): RawBody,
) -> Result<Response> {
    let req = jsonrpc::parse_query(&body)?;
    let url = state.chain().rpc_url(&agent.manifest, req.chain)?;
    policy::check_method(&req.method)?;
    state.limits().check(Service::Rpc, &agent.id).await?;
    state.chain().verify(&url, req.chain).await?;
    let result = state.chain().query(url, &req.method, &req.params).await?;
    let body = format!("{{\"result\":{}}}", result.get());
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `POST /rpc/{chain}`: JSON-RPC, single or batch, every element a read. The node gets the
/// proxy's serialisation of what was checked, never the agent's bytes.
pub async fn rpc(
    State(state): State<AppState>,
    Extension(agent): Extension<Arc<Agent>>,
    ApiPath(chain): ApiPath<String>,
    RawBody(body): RawBody,
) -> Result<Response> {
    let chain = parse_chain(&chain)?;
    let url = state.chain().rpc_url(&agent.manifest, chain)?;
    let checked = jsonrpc::RpcBody::parse(&body)?;
    state.limits().check(Service::Rpc, &agent.id).await?;
    state.chain().verify(&url, chain).await?;
    let (status, reply) = state.chain().forward(url, &checked).await?;
    Ok((status, [(header::CONTENT_TYPE, "application/json")], reply).into_response())
}

/// `GET /agent/wallet-address/{chain}`: only for the chains of the agent's manifest.
pub async fn wallet_address(
    State(state): State<AppState>,
    Extension(agent): Extension<Arc<Agent>>,
    ApiPath(chain): ApiPath<String>,
) -> Result<Json<WalletAddressResponse>> {
    let chain = parse_chain(&chain)?;
    if !agent.manifest.allows_chain(chain) {
        return Err(Error::ChainNotAllowed(chain));
    }
    Ok(Json(WalletAddressResponse { address: state.wallet().address_for(chain).await? }))
}

/// `POST /agent/log`.
pub async fn log(
    State(state): State<AppState>,
    Extension(agent): Extension<Arc<Agent>>,
    ApiJson(req): ApiJson<LogRequest>,
) -> Json<Success> {
    state.logs().send(NewLog {
        agent_id: agent.id.clone(),
        agent_name: agent.name.clone(),
        level: req.level,
        message: req.message,
        data: req.data,
        created_at: now_ms(),
    });
    Json(Success { success: true })
}

/// `POST /agent/request-transaction`: blocks until a person decides.
pub async fn request_transaction(
    State(state): State<AppState>,
    Extension(agent): Extension<Arc<Agent>>,
    ApiJson(req): ApiJson<TxRequest>,
) -> Result<Json<TxSent>> {
    let (id, tx_hash) = crate::tx::request(&state, &agent, req).await?;
    Ok(Json(TxSent { success: true, tx_hash, transaction_id: Some(id.to_string()) }))
}

/// `GET /agent/transactions/{id}`: one of the caller's own requests.
pub async fn transaction(
    State(state): State<AppState>,
    Extension(agent): Extension<Arc<Agent>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TxInfo>> {
    // Not an id at all, or another agent's: the same answer.
    let row = match id.parse::<TxId>() {
        Ok(key) => state.db(move |s| s.tx(&key)).await?,
        Err(_) => None,
    };
    let row = row.filter(|r| r.agent_id == agent.id).ok_or_else(|| {
        Error::NotFound(format!("No transaction `{}` for this agent", crate::sanitize::neutralize(&id)))
    })?;
    // The wire writes amounts as decimal strings (JSON numbers would round them).
    let decimal = |v: Option<alloy_primitives::U256>| v.map(|v| v.to_string());
    Ok(Json(TxInfo {
        id: row.id.to_string(),
        status: row.status,
        chain: ChainId::eip155(row.chain_id),
        to: row.to,
        value: row.value_wei.to_string(),
        data: row.data.to_string(),
        action: row.action.clone(),
        tx_hash: row.tx_hash,
        error: row.error.clone(),
        created_at: row.created_at,
        fees: assegai_sdk::wire::TxFeeInfo {
            gas_limit: row.gas_limit.map(|g| g.to_string()),
            max_fee_per_gas: decimal(row.max_fee_per_gas),
            max_priority_fee_per_gas: decimal(row.max_priority_fee_per_gas),
            max_fee_wei: decimal(row.max_fee_wei),
            fee_wei: decimal(row.fee_wei),
        },
        simulation: row.detail.as_ref().map(|d| d["simulation"].clone()).filter(|s| !s.is_null()),
    }))
}

/// Any route that does not exist.
pub async fn not_found(method: Method, uri: Uri) -> Error {
    let path: String = uri.path().chars().take(200).collect();
    Error::NotFound(format!("No route for {method} {}", crate::sanitize::neutralize(&path)))
}

fn parse_chain(text: &str) -> Result<ChainId> {
    text.parse().map_err(|e: assegai_sdk::ParseChainIdError| Error::BadRequest(e.to_string()))
}
