//! Token allowances set with `assegai allowance set`.

use alloy_primitives::Address;
use rusqlite::{OptionalExtension, params, types::Type};
use serde::Serialize;

use super::{Result, Store, audit::insert_audit, now_ms};
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
        let mut conn = self.conn();
        let t = conn.transaction()?;
        t.execute(
            "INSERT INTO allowances (agent_id, chain_id, token, amount, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (agent_id, chain_id, token) DO UPDATE SET amount = ?4, updated_at = ?5",
            params![agent_id, i64::try_from(chain_id).unwrap_or(i64::MAX), token, amount, now_ms()],
        )?;
        let detail = serde_json::json!({"chain_id": chain_id, "token": token, "amount": amount});
        insert_audit(&t, by, "allowance.set", Some(agent_id), Some(&detail))?;
        Ok(t.commit()?)
    }

    /// Allowances set with the CLI, for one agent or all.
    pub fn allowances(&self, agent_id: Option<&AgentId>) -> Result<Vec<AllowanceRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT agent_id, chain_id, token, amount, updated_at FROM allowances
                 WHERE ?1 IS NULL OR agent_id = ?1 ORDER BY agent_id, chain_id, token",
        )?;
        let rows = stmt.query_map([agent_id], allowance_from_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The CLI-set allowance of an agent for a token, if any.
    pub fn allowance(&self, agent_id: &AgentId, chain_id: u64, token: Address) -> Result<Option<AllowanceRow>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT agent_id, chain_id, token, amount, updated_at FROM allowances
                 WHERE agent_id = ?1 AND chain_id = ?2 AND token = ?3",
                params![agent_id, i64::try_from(chain_id).unwrap_or(i64::MAX), token.to_checksum(None)],
                allowance_from_row,
            )
            .optional()?)
    }
}

pub(super) fn allowance_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AllowanceRow> {
    Ok(AllowanceRow {
        agent_id: r.get(0)?,
        chain_id: u64::try_from(r.get::<_, i64>(1)?).unwrap_or_default(),
        token: r
            .get::<_, String>(2)?
            .parse()
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, Type::Text, Box::new(e)))?,
        amount: r.get(3)?,
        updated_at: r.get(4)?,
    })
}
