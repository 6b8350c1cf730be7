//! What counts against spending limits, kept per agent, chain and hour so that a window's sum
//! reads a few buckets. What counts, and for how long, is `tx::limits`'s rule, not this module's.

use alloy_primitives::U256;
use assegai_sdk::wire::TxStatus;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Result, Store, txs::parse_wei};
use crate::ids::AgentId;
use crate::tx::limits;

impl Store {
    /// (settled, pending) of what an agent's requests on a chain since `since_ms` count against
    /// its limits (value and fees, see [`limits::counted`]): settled is approved, confirmed and
    /// reverted, pending is what still waits for a person.
    pub fn spend_breakdown(&self, agent_id: &AgentId, chain_id: u64, since_ms: i64) -> Result<(U256, U256)> {
        let total = self.spent_since(agent_id, chain_id, since_ms)?;
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT value_wei, max_fee_wei FROM transactions WHERE agent_id = ?1 AND chain_id = ?2 AND created_at >= ?3
                 AND status = 'pending'",
        )?;
        let rows = stmt.query_map(params![agent_id, i64::try_from(chain_id).unwrap_or(i64::MAX), since_ms], |r| {
            Ok((parse_wei(&r.get::<_, String>(0)?)?, r.get::<_, Option<String>>(1)?))
        })?;
        let mut pending = U256::ZERO;
        for row in rows {
            let (value, max_fee) = row?;
            let max_fee = max_fee.as_deref().map(parse_wei).transpose()?;
            pending = pending.saturating_add(limits::counted(TxStatus::Pending, value, max_fee, None));
        }
        Ok((total.saturating_sub(pending), pending))
    }

    /// What an agent's requests on a chain since `since_ms` count against its limits.
    pub fn spent_since(&self, agent_id: &AgentId, chain_id: u64, since_ms: i64) -> Result<U256> {
        Ok(sum_wei(&self.conn(), agent_id, chain_id, since_ms)?)
    }
}

/// Statuses whose requests may count against spending limits (see [`limits::counted`]); the
/// others count nothing.
pub(super) const SPENDING_STATUSES: &str = "('pending', 'approved', 'confirmed', 'reverted')";

/// The statuses of migration 0005, before fees: only value counted, and not for a revert.
pub(super) const VALUE_STATUSES: &str = "('pending', 'approved', 'confirmed')";

/// Sum of counted value in wei; stored as decimal text and added with overflow checks here,
/// because SQLite integers cannot hold wei.
pub(super) const HOUR_MS: i64 = 3_600_000;

/// Committed value of an agent on a chain since `since_ms`: whole hours from `spend_hours`, the
/// partial first hour from `transactions` (through the (agent_id, created_at) index).
pub(super) fn sum_wei(conn: &Connection, agent_id: &AgentId, chain_id: u64, since_ms: i64) -> rusqlite::Result<U256> {
    let chain = i64::try_from(chain_id).unwrap_or(i64::MAX);
    let next_hour = since_ms.div_euclid(HOUR_MS) + 1;
    let mut total = U256::ZERO;
    let mut add = |text: String| -> rusqlite::Result<()> {
        total = total.saturating_add(parse_wei(&text)?);
        Ok(())
    };
    let mut hours =
        conn.prepare_cached("SELECT wei FROM spend_hours WHERE agent_id = ?1 AND chain_id = ?2 AND hour >= ?3")?;
    for v in hours.query_map(params![agent_id, chain, next_hour], |r| r.get::<_, String>(0))? {
        add(v?)?;
    }
    let mut edge = conn.prepare_cached(&format!(
        "SELECT status, value_wei, max_fee_wei, fee_wei FROM transactions WHERE agent_id = ?1 AND created_at >= ?2
         AND created_at < ?3 AND chain_id = ?4 AND status IN {SPENDING_STATUSES}"
    ))?;
    let rows = edge.query_map(params![agent_id, since_ms, next_hour * HOUR_MS, chain], |r| {
        let status: String = r.get(0)?;
        let status = status
            .parse::<TxStatus>()
            .map_err(|e: String| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into()))?;
        let opt = |i: usize| -> rusqlite::Result<Option<U256>> {
            r.get::<_, Option<String>>(i)?.as_deref().map(parse_wei).transpose()
        };
        Ok(limits::counted(status, parse_wei(&r.get::<_, String>(1)?)?, opt(2)?, opt(3)?))
    })?;
    for counted in rows {
        total = total.saturating_add(counted?);
    }
    Ok(total)
}

/// Adds `wei` to (or, with `add` false, takes it from) the hour bucket of a request.
pub(super) fn add_spend(
    conn: &Connection,
    agent_id: &AgentId,
    chain_id: u64,
    created_at: i64,
    wei: U256,
    add: bool,
) -> rusqlite::Result<()> {
    let (chain, hour) = (i64::try_from(chain_id).unwrap_or(i64::MAX), created_at.div_euclid(HOUR_MS));
    let current: Option<String> = conn
        .query_row(
            "SELECT wei FROM spend_hours WHERE agent_id = ?1 AND chain_id = ?2 AND hour = ?3",
            params![agent_id, chain, hour],
            |r| r.get(0),
        )
        .optional()?;
    let current = current.as_deref().map(parse_wei).transpose()?.unwrap_or_default();
    // Saturating: a bucket is a cache of `transactions`; it can never legitimately wrap, and a
    // limit must not be lifted by an overflow.
    let next = if add { current.saturating_add(wei) } else { current.saturating_sub(wei) };
    conn.execute(
        "INSERT INTO spend_hours (agent_id, chain_id, hour, wei) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (agent_id, chain_id, hour) DO UPDATE SET wei = ?4",
        params![agent_id, chain, hour, next.to_string()],
    )?;
    Ok(())
}

/// Fills `spend_hours` from `transactions` (migration 0005, for requests stored before it).
pub(super) fn rebuild_spend_hours(t: &Connection) -> rusqlite::Result<()> {
    t.execute("DELETE FROM spend_hours", [])?;
    let mut stmt = t.prepare(&format!(
        "SELECT agent_id, chain_id, created_at, value_wei FROM transactions WHERE status IN {VALUE_STATUSES}"
    ))?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, AgentId>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, String>(3)?))
    })?;
    for row in rows {
        let (agent, chain, created_at, value) = row?;
        add_spend(t, &agent, u64::try_from(chain).unwrap_or_default(), created_at, parse_wei(&value)?, true)?;
    }
    Ok(())
}
