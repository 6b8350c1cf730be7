//! ERC-20 approvals outlive the agent that asked for them: a spender it approved can move the
//! user's tokens after the agent is gone. This module finds what an agent's confirmed approvals
//! granted, reads what is left of each on chain (`allowance(owner, spender)`), and queues
//! `approve(spender, 0)` requests to take them back — requests like any other, signed only once a
//! person approves them.

use std::sync::Arc;

use alloy_primitives::{Address, U256};
use alloy_sol_types::{SolCall, sol};
use assegai_sdk::{
    ChainId,
    wire::{TxRequest, TxStatus},
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{Error, Result, auth::Agent, state::AppState};

sol! {
    function allowance(address owner, address spender) external view returns (uint256);
    function approve(address spender, uint256 amount) external returns (bool);
}

/// One approval an agent's request granted, as the chain has it now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Granted {
    /// The chain.
    pub chain: ChainId,
    /// The token contract, checksummed.
    pub token: String,
    /// Its symbol, as the request's card showed it.
    pub symbol: String,
    /// Its decimals.
    pub decimals: u8,
    /// Who may spend, checksummed.
    pub spender: String,
    /// What is left of the allowance now, base units (decimal); `None` if the chain could not be
    /// read.
    pub remaining: Option<String>,
    /// Why it could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The approvals `agent`'s confirmed requests granted, newest first, each (chain, token, spender)
/// once, with what the chain says is left.
pub async fn granted(state: &AppState, agent: &Agent) -> Result<Vec<Granted>> {
    let id = agent.id.clone();
    let rows = state.db(move |s| s.txs(Some(&id), Some(TxStatus::Confirmed), u32::MAX)).await?;
    let mut seen: Vec<(u64, Address, Address)> = Vec::new();
    let mut out = Vec::new();
    for row in rows {
        let Some(detail) = &row.detail else { continue };
        let (Some(token), Some(spender)) = (
            detail["token"]["address"].as_str().and_then(|a| a.parse::<Address>().ok()),
            detail["spender"].as_str().and_then(|a| a.parse::<Address>().ok()),
        ) else {
            continue;
        };
        if seen.contains(&(row.chain_id, token, spender)) {
            continue;
        }
        seen.push((row.chain_id, token, spender));
        let chain = ChainId::eip155(row.chain_id);
        let (remaining, error) = match remaining(state, agent, chain, token, spender).await {
            Ok(v) => (Some(v.to_string()), None),
            Err(e) => (None, Some(e.to_string())),
        };
        out.push(Granted {
            chain,
            token: token.to_checksum(None),
            symbol: detail["token"]["symbol"].as_str().unwrap_or("?").to_owned(),
            decimals: detail["token"]["decimals"].as_u64().and_then(|d| u8::try_from(d).ok()).unwrap_or(0),
            spender: spender.to_checksum(None),
            remaining,
            error,
        });
    }
    Ok(out)
}

/// `allowance(wallet, spender)` of `token`, read through the signing RPC.
async fn remaining(state: &AppState, agent: &Agent, chain: ChainId, token: Address, spender: Address) -> Result<U256> {
    let owner = state.wallet().address_for(chain).await?;
    let url = state.chain().signing_rpc_url(&agent.manifest, chain)?;
    let data = allowanceCall { owner, spender }.abi_encode();
    let params = json!([{"to": token, "data": format!("0x{}", hex::encode(data))}, "latest"]);
    let raw = state.chain().query(url, "eth_call", &params).await?;
    let hex: String = serde_json::from_str(raw.get()).map_err(|e| Error::BadUpstream(e.to_string()))?;
    let bytes = hex::decode(hex.trim_start_matches("0x")).map_err(|e| Error::BadUpstream(e.to_string()))?;
    if bytes.len() < 32 {
        return Err(Error::BadUpstream(format!("allowance() of {token} returned {} bytes", bytes.len())));
    }
    Ok(U256::from_be_slice(&bytes[..32]))
}

/// Queues `approve(spender, 0)` for every approval of `agent` with something left, as requests a
/// person decides on like any other (nobody but the queue waits for them). Returns how many.
pub async fn revoke(state: &AppState, agent: Arc<Agent>) -> Result<usize> {
    let mut queued = 0;
    for g in granted(state, &agent).await? {
        if g.remaining.as_deref().is_none_or(|r| r == "0") {
            continue;
        }
        let spender: Address = g.spender.parse().map_err(|_| Error::Internal("stored spender".into()))?;
        let data = approveCall { spender, amount: U256::ZERO }.abi_encode();
        let req = TxRequest {
            chain: g.chain,
            to: g.token.clone(),
            value: "0".into(),
            data: Some(format!("0x{}", hex::encode(data))),
            gas_limit: None,
        };
        // Checked and stored now, so what cannot be queued is said at once; the decision is
        // waited for in the background.
        let pending = super::queue(state, &agent, req).await?;
        let (state, id) = (state.clone(), pending.id.clone());
        tokio::spawn(async move {
            if let Err(e) = pending.wait(&state).await {
                tracing::info!(tx = %id, error = %e, "a revoke request was not sent");
            }
        });
        queued += 1;
    }
    Ok(queued)
}
