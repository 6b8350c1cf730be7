//! Token allowances set with `assegai allowance set`.

use alloy_primitives::Address;
use serde::Serialize;

use super::{
    Result, Store, StoreError,
    audit::insert_audit,
    now_ms,
    sql::{Row, args},
};
use crate::ids::AgentId;

/// A token allowance set with `assegai allowance set`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AllowanceRow {
    /// The agent.
    pub agent_id: AgentId,
    /// The chain id.
    pub chain_id: u64,
    /// The token contract (stored checksummed).
    pub token: Address,
    /// Decimal amount in token units.
    pub amount: String,
    /// When it was set (ms since the epoch).
    pub updated_at: i64,
}

impl Store {
    /// Sets an agent's allowance for a token (replacing any earlier one), as an audited decision.
    pub fn set_allowance(
        &self,
        agent_id: &AgentId,
        chain_id: u64,
        token: Address,
        amount: &str,
        by: &str,
    ) -> Result<()> {
        let token = token.to_checksum(None);
        self.write(|db| {
            db.execute(
                "INSERT INTO allowances (agent_id, chain_id, token, amount, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (agent_id, chain_id, token) DO UPDATE SET amount = excluded.amount,
                   updated_at = excluded.updated_at",
                args![agent_id, chain_id, &token, amount, now_ms()],
            )?;
            let detail = serde_json::json!({"chain_id": chain_id, "token": token, "amount": amount});
            insert_audit(db, by, "allowance.set", Some(agent_id), Some(&detail))
        })
    }

    /// Allowances set with the CLI, for one agent or all.
    pub fn allowances(&self, agent_id: Option<&AgentId>) -> Result<Vec<AllowanceRow>> {
        self.read(|db| {
            db.query(
                "SELECT agent_id, chain_id, token, amount, updated_at FROM allowances
                 WHERE CAST(?1 AS TEXT) IS NULL OR agent_id = ?1 ORDER BY agent_id, chain_id, token",
                args![agent_id],
            )?
            .iter()
            .map(allowance_from_row)
            .collect()
        })
    }

    /// The CLI-set allowance of an agent for a token, if any.
    pub fn allowance(&self, agent_id: &AgentId, chain_id: u64, token: Address) -> Result<Option<AllowanceRow>> {
        self.read(|db| {
            db.query_opt(
                "SELECT agent_id, chain_id, token, amount, updated_at FROM allowances
                 WHERE agent_id = ?1 AND chain_id = ?2 AND token = ?3",
                args![agent_id, chain_id, token.to_checksum(None)],
            )?
            .as_ref()
            .map(allowance_from_row)
            .transpose()
        })
    }
}

fn allowance_from_row(r: &Row) -> Result<AllowanceRow> {
    let token: String = r.get(2)?;
    Ok(AllowanceRow {
        agent_id: r.get(0)?,
        chain_id: r.get(1)?,
        token: token.parse().map_err(|e| StoreError::Corrupt(format!("allowance token `{token}`: {e}")))?,
        amount: r.get(3)?,
        updated_at: r.get(4)?,
    })
}
