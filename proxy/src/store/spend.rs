//! What counts against spending limits, kept per agent, chain and hour so that a window's sum
//! reads a few buckets. What counts, and for how long, is `tx::limits`'s rule, not this module's.

use alloy_primitives::U256;
use assegai_sdk::wire::TxStatus;

use super::{
    Result, Store, StoreError,
    sql::{Db, args},
};
use crate::{ids::AgentId, tx::limits};

impl Store {
    /// (settled, pending) of what an agent's requests on a chain since `since_ms` count against
    /// its limits (value and fees, see [`limits::counted`]): settled is approved, confirmed and
    /// reverted, pending is what still waits for a person.
    pub fn spend_breakdown(&self, agent_id: &AgentId, chain_id: u64, since_ms: i64) -> Result<(U256, U256)> {
        self.read(|db| {
            let total = sum_wei(db, agent_id, chain_id, since_ms)?;
            let rows = db.query(
                "SELECT value_wei, max_fee_wei FROM transactions WHERE agent_id = ?1 AND chain_id = ?2 AND created_at >= ?3
                 AND status = 'pending'",
                args![agent_id, chain_id, since_ms],
            )?;
            let mut pending = U256::ZERO;
            for r in rows {
                let max_fee = r.get::<Option<String>>(1)?.as_deref().map(parse_wei).transpose()?;
                pending = pending.saturating_add(limits::counted(
                    TxStatus::Pending,
                    parse_wei(&r.get::<String>(0)?)?,
                    max_fee,
                    None,
                ));
            }
            Ok((total.saturating_sub(pending), pending))
        })
    }

    /// What an agent's requests on a chain since `since_ms` count against its limits.
    pub fn spent_since(&self, agent_id: &AgentId, chain_id: u64, since_ms: i64) -> Result<U256> {
        self.read(|db| sum_wei(db, agent_id, chain_id, since_ms))
    }
}

/// Statuses whose requests may count against spending limits (see [`limits::counted`]); the
/// others count nothing.
pub(super) const SPENDING_STATUSES: &str = "('pending', 'approved', 'confirmed', 'reverted')";

/// The statuses of migration 0005, before fees: only value counted, and not for a revert.
pub(super) const VALUE_STATUSES: &str = "('pending', 'approved', 'confirmed')";

/// One hour, the size of a `spend_hours` bucket.
pub(super) const HOUR_MS: i64 = 3_600_000;

/// Wei are kept as decimal text (neither database's integers hold them) and added here, with
/// overflow checks.
pub(super) fn parse_wei(text: &str) -> Result<U256> {
    U256::from_str_radix(text, 10).map_err(|e| StoreError::Corrupt(format!("wei `{text}`: {e}")))
}

/// Committed value of an agent on a chain since `since_ms`: whole hours from `spend_hours`, the
/// partial first hour from `transactions` (through the (agent_id, created_at) index).
pub(super) fn sum_wei(db: &mut dyn Db, agent_id: &AgentId, chain_id: u64, since_ms: i64) -> Result<U256> {
    let next_hour = since_ms.div_euclid(HOUR_MS) + 1;
    let mut total = U256::ZERO;
    db.query_each(
        "SELECT wei FROM spend_hours WHERE agent_id = ?1 AND chain_id = ?2 AND hour >= ?3",
        args![agent_id, chain_id, next_hour],
        &mut |r| {
            total = total.saturating_add(parse_wei(r.text(0)?)?);
            Ok(())
        },
    )?;
    db.query_each(
        &format!(
            "SELECT status, value_wei, max_fee_wei, fee_wei FROM transactions WHERE agent_id = ?1 AND created_at >= ?2
             AND created_at < ?3 AND chain_id = ?4 AND status IN {SPENDING_STATUSES}"
        ),
        args![agent_id, since_ms, next_hour * HOUR_MS, chain_id],
        &mut |r| {
            let status = r.text(0)?.parse::<TxStatus>().map_err(StoreError::Corrupt)?;
            let opt = |i: usize| -> Result<Option<U256>> {
                r.get::<Option<String>>(i)?.as_deref().map(parse_wei).transpose()
            };
            total = total.saturating_add(limits::counted(status, parse_wei(r.text(1)?)?, opt(2)?, opt(3)?));
            Ok(())
        },
    )?;
    Ok(total)
}

/// Adds `wei` to (or, with `add` false, takes it from) the hour bucket of a request. The caller
/// holds the agent's [`super::sql::spend_key`] lock, so no other proxy moves the same bucket meanwhile.
pub(super) fn add_spend(
    db: &mut dyn Db,
    agent_id: &AgentId,
    chain_id: u64,
    created_at: i64,
    wei: U256,
    add: bool,
) -> Result<()> {
    let hour = created_at.div_euclid(HOUR_MS);
    let current = db
        .query_opt(
            "SELECT wei FROM spend_hours WHERE agent_id = ?1 AND chain_id = ?2 AND hour = ?3",
            args![agent_id, chain_id, hour],
        )?
        .map(|r| parse_wei(&r.get::<String>(0)?))
        .transpose()?
        .unwrap_or_default();
    // Saturating: a bucket is a cache of `transactions`; it can never legitimately wrap, and a
    // limit must not be lifted by an overflow.
    let next = if add { current.saturating_add(wei) } else { current.saturating_sub(wei) };
    db.execute(
        "INSERT INTO spend_hours (agent_id, chain_id, hour, wei) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (agent_id, chain_id, hour) DO UPDATE SET wei = excluded.wei",
        args![agent_id, chain_id, hour, next.to_string()],
    )?;
    Ok(())
}

/// Fills `spend_hours` from `transactions` (SQLite's migration 0005, for requests stored before it).
pub(super) fn rebuild_spend_hours(db: &mut dyn Db) -> Result<()> {
    db.execute("DELETE FROM spend_hours", args![])?;
    let rows = db.query(
        &format!("SELECT agent_id, chain_id, created_at, value_wei FROM transactions WHERE status IN {VALUE_STATUSES}"),
        args![],
    )?;
    for r in rows {
        let agent: AgentId = r.get(0)?;
        add_spend(db, &agent, r.get(1)?, r.get(2)?, parse_wei(&r.get::<String>(3)?)?, true)?;
    }
    Ok(())
}
