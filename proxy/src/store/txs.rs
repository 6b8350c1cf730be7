//! Transaction requests and their life: pending (checked against the limits in the same SQLite
//! transaction as the insert), decided, sent, settled.

use alloy_primitives::{Address, B256, Bytes, U256};
use assegai_sdk::wire::TxStatus;
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{
    Result, Store, StoreError,
    audit::insert_audit,
    now_ms,
    spend::{add_spend, sum_wei},
};
use crate::{
    ids::{AgentId, TxId},
    tx::{
        fees::{FeeModel, TxFees},
        limits::{self, SpendWindow},
    },
};

/// A transaction request that passed validation, to store as pending.
#[derive(Debug, Clone)]
pub struct NewTx {
    /// The request's id (`tx_…`).
    pub id: TxId,
    /// The agent's id.
    pub agent_id: AgentId,
    /// The agent's name at the time.
    pub agent_name: String,
    /// Numeric chain id.
    pub chain_id: u64,
    /// Checksummed recipient or contract.
    pub to: String,
    /// Native value.
    pub value_wei: U256,
    /// `0x`-hex calldata.
    pub data: String,
    /// Gas limit (always fixed by the request path; `None` only for rows written without fees).
    pub gas_limit: Option<u64>,
    /// The fees fixed at request time.
    pub fees: Option<TxFees>,
    /// What it does, for people.
    pub action: String,
    /// Structured detail for the approver.
    pub detail: Option<serde_json::Value>,
    /// When it was requested (ms).
    pub created_at: i64,
}

/// A stored transaction request.
#[derive(Debug, Clone)]
pub struct TxRow {
    /// The request's id.
    pub id: TxId,
    /// The agent's id.
    pub agent_id: AgentId,
    /// The agent's name.
    pub agent_name: String,
    /// Numeric chain id.
    pub chain_id: u64,
    /// Recipient or contract.
    pub to: Address,
    /// Native value in wei.
    pub value_wei: U256,
    /// Calldata.
    pub data: Bytes,
    /// Gas limit, if given.
    pub gas_limit: Option<u64>,
    /// EIP-1559 or legacy (then `max_fee_per_gas` is the gas price), if fees were fixed.
    pub fee_model: Option<FeeModel>,
    /// Max fee per gas (legacy: the gas price), wei.
    pub max_fee_per_gas: Option<U256>,
    /// Max priority fee per gas, wei (EIP-1559 only).
    pub max_priority_fee_per_gas: Option<U256>,
    /// The worst-case fee, gas limit × max fee per gas, wei.
    pub max_fee_wei: Option<U256>,
    /// The fee paid (gas used × effective gas price), wei, once the receipt is in.
    pub fee_wei: Option<U256>,
    /// What it does, for people.
    pub action: String,
    /// Structured detail for the approver.
    pub detail: Option<serde_json::Value>,
    /// Where it stands.
    pub status: TxStatus,
    /// The hash, once broadcast.
    pub tx_hash: Option<B256>,
    /// Why it failed, was rejected or expired.
    pub error: Option<String>,
    /// When it was requested (ms).
    pub created_at: i64,
    /// When it was decided (ms).
    pub decided_at: Option<i64>,
    /// Who decided (`cli`, `proxy`…).
    pub decided_by: Option<String>,
}

impl Store {
    /// Checks `tx` against the rolling `windows` and stores it as pending, as one step: the
    /// check runs inside an immediate (write-locked) transaction, so two racing requests can
    /// never both fit under a limit. What it counts is its value plus its worst-case fee
    /// ([`limits::counted`]). Returns the window that would be exceeded, if any.
    pub fn insert_pending_tx(&self, tx: &NewTx, windows: &[SpendWindow]) -> Result<Option<SpendWindow>> {
        let max_fee = tx.fees.map(|f| f.max_fee_wei);
        let cost = limits::counted(TxStatus::Pending, tx.value_wei, max_fee, None);
        let gas_limit = tx
            .gas_limit
            .map(|g| i64::try_from(g).map_err(|_| StoreError::Corrupt(format!("gas limit {g} does not fit a row"))))
            .transpose()?;
        let mut conn = self.conn();
        let t = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for w in windows {
            let since = w.window.since(tx.created_at);
            let spent = sum_wei(&t, &tx.agent_id, tx.chain_id, since)?;
            if tx.value_wei.checked_add(max_fee.unwrap_or_default()).is_none() || !limits::fits(spent, cost, w.limit) {
                return Ok(Some(*w));
            }
        }
        let fees = tx.fees;
        t.execute(
            "INSERT INTO transactions (id, agent_id, agent_name, chain_id, to_address, value_wei, data, gas_limit, action,
               detail, status, created_at, fee_model, max_fee_per_gas, max_priority_fee_per_gas, max_fee_wei)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'pending', ?11, ?12, ?13, ?14, ?15)",
            params![
                tx.id,
                tx.agent_id,
                tx.agent_name,
                i64::try_from(tx.chain_id).map_err(|_| StoreError::Corrupt(format!("chain id {}", tx.chain_id)))?,
                tx.to,
                tx.value_wei.to_string(),
                tx.data,
                gas_limit,
                tx.action,
                tx.detail.as_ref().map(|d| d.to_string()),
                tx.created_at,
                fees.map(|f| f.model.as_str()),
                fees.map(|f| f.max_fee_per_gas.to_string()),
                fees.and_then(|f| f.max_priority_fee_per_gas).map(|v| v.to_string()),
                fees.map(|f| f.max_fee_wei.to_string()),
            ],
        )?;
        add_spend(&t, &tx.agent_id, tx.chain_id, tx.created_at, cost, true)?;
        insert_audit(
            &t,
            tx.agent_id.as_str(),
            "tx.requested",
            Some(&tx.agent_id),
            Some(&serde_json::json!({"tx": tx.id})),
        )?;
        t.commit()?;
        Ok(None)
    }

    /// Moves a request from `from` to `to` (with an error text and who decided), and records the
    /// decision as an audit event. Returns false when it was not in `from` any more.
    pub fn decide_tx(&self, id: &TxId, from: TxStatus, to: TxStatus, error: Option<&str>, by: &str) -> Result<bool> {
        self.move_tx(id, from, to, error, None, by)
    }

    /// Records a request's receipt: `to` is confirmed or reverted, `fee_wei` what it paid (gas
    /// used × effective gas price), which then counts instead of its worst case.
    pub fn settle_tx(&self, id: &TxId, to: TxStatus, fee_wei: U256, error: Option<&str>) -> Result<bool> {
        self.move_tx(id, TxStatus::Approved, to, error, Some(fee_wei), "proxy")
    }

    /// One status change with its bookkeeping: the hour bucket moves by what the request counts
    /// after minus before, and an audit event records it, in the same SQL transaction.
    fn move_tx(
        &self,
        id: &TxId,
        from: TxStatus,
        to: TxStatus,
        error: Option<&str>,
        fee: Option<U256>,
        by: &str,
    ) -> Result<bool> {
        let mut conn = self.conn();
        let t = conn.transaction()?;
        let n = t.execute(
            "UPDATE transactions SET status = ?3, error = COALESCE(?4, error), decided_at = ?5, decided_by = ?6,
                   fee_wei = COALESCE(?7, fee_wei)
                 WHERE id = ?1 AND status = ?2",
            params![id, from.as_str(), to.as_str(), error, now_ms(), by, fee.map(|f| f.to_string())],
        )?;
        if n > 0 {
            type Row = (AgentId, i64, i64, String, Option<String>, Option<String>);
            let row: Option<Row> = t
                .query_row(
                    "SELECT agent_id, chain_id, created_at, value_wei, max_fee_wei, fee_wei FROM transactions WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
                )
                .optional()?;
            if let Some((agent, chain, created_at, value, max_fee, paid)) = &row {
                let wei = |t: &str| U256::from_str_radix(t, 10).map_err(|e| StoreError::Corrupt(format!("wei: {e}")));
                let value = wei(value)?;
                let max_fee = max_fee.as_deref().map(wei).transpose()?;
                let paid = paid.as_deref().map(wei).transpose()?;
                // Before: the same row as it was (no receipt fee yet when it settles now).
                let before = limits::counted(from, value, max_fee, if fee.is_some() { None } else { paid });
                let after = limits::counted(to, value, max_fee, paid);
                let chain = u64::try_from(*chain).unwrap_or_default();
                if after > before {
                    add_spend(&t, agent, chain, *created_at, after - before, true)?;
                } else if before > after {
                    add_spend(&t, agent, chain, *created_at, before - after, false)?;
                }
            }
            let agent = row.map(|r| r.0);
            let mut detail = serde_json::json!({"tx": id, "from": from.as_str(), "to": to.as_str(), "error": error});
            if let Some(fee) = fee {
                detail["fee_wei"] = fee.to_string().into();
            }
            insert_audit(&t, by, &format!("tx.{}", to.as_str()), agent.as_ref(), Some(&detail))?;
        }
        t.commit()?;
        Ok(n > 0)
    }

    /// Records the hash of a broadcast request.
    pub fn set_tx_hash(&self, id: &TxId, hash: &str) -> Result<()> {
        Ok(self.conn().execute("UPDATE transactions SET tx_hash = ?2 WHERE id = ?1", params![id, hash]).map(drop)?)
    }

    /// Marks every pending request expired (at proxy start: nobody is waiting for them any more).
    pub fn expire_all_pending(&self, reason: &str) -> Result<Vec<TxId>> {
        let ids: Vec<TxId> = {
            let conn = self.conn();
            let mut stmt = conn.prepare("SELECT id FROM transactions WHERE status = 'pending'")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut expired = Vec::new();
        for id in ids {
            if self.decide_tx(&id, TxStatus::Pending, TxStatus::Expired, Some(reason), "proxy")? {
                expired.push(id);
            }
        }
        Ok(expired)
    }

    /// One request.
    pub fn tx(&self, id: &TxId) -> Result<Option<TxRow>> {
        Ok(self.conn().query_row(&format!("{TX_SELECT} WHERE id = ?1"), [id], tx_from_row).optional()?)
    }

    /// Requests, newest first, optionally for one agent and/or status.
    pub fn txs(&self, agent_id: Option<&AgentId>, status: Option<TxStatus>, limit: u32) -> Result<Vec<TxRow>> {
        // One statement per case: `?1 IS NULL OR agent_id = ?1` would hide the indexes from
        // SQLite and scan (and sort) the whole table.
        let filter = match (agent_id.is_some(), status.is_some()) {
            (true, true) => "WHERE agent_id = ?1 AND status = ?2",
            (true, false) => "WHERE agent_id = ?1 AND ?2 IS NULL",
            (false, true) => "WHERE status = ?2 AND ?1 IS NULL",
            (false, false) => "WHERE ?1 IS NULL AND ?2 IS NULL",
        };
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached(&format!("{TX_SELECT} {filter} ORDER BY created_at DESC, id DESC LIMIT ?3"))?;
        let rows = stmt.query_map(params![agent_id, status.map(TxStatus::as_str), limit], tx_from_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// How many transaction requests an agent has in each status (statuses with none are left out).
    pub fn tx_counts(&self, agent_id: &AgentId) -> Result<Vec<(TxStatus, u64)>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT status, COUNT(*) FROM transactions WHERE agent_id = ?1 GROUP BY status")?;
        let rows = stmt.query_map(params![agent_id], |r| {
            let status: String = r.get(0)?;
            let status = status.parse::<TxStatus>().map_err(|e: String| {
                rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
            })?;
            Ok((status, u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0)))
        })?;
        let mut counts = rows.collect::<Result<Vec<_>, _>>()?;
        counts.sort_by_key(|(s, _)| TxStatus::ALL.iter().position(|x| x == s));
        Ok(counts)
    }
}

pub(super) const TX_SELECT: &str =
    "SELECT id, agent_id, agent_name, chain_id, to_address, value_wei, data, gas_limit, action, detail,
     status, tx_hash, error, created_at, decided_at, decided_by, fee_model, max_fee_per_gas,
     max_priority_fee_per_gas, max_fee_wei, fee_wei FROM transactions";

/// Reads a stored request, every value back in its type: a row that does not parse is an error,
/// never a zero on the approve card.
pub(super) fn tx_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TxRow> {
    fn typed<T, E: std::fmt::Display>(
        r: &rusqlite::Row<'_>,
        i: usize,
        parse: impl Fn(&str) -> std::result::Result<T, E>,
    ) -> rusqlite::Result<Option<T>> {
        let Some(text) = r.get::<_, Option<String>>(i)? else { return Ok(None) };
        parse(&text).map(Some).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, format!("`{text}`: {e}").into())
        })
    }
    fn required<T>(v: Option<T>, i: usize) -> rusqlite::Result<T> {
        v.ok_or(rusqlite::Error::InvalidColumnType(i, "(null)".into(), rusqlite::types::Type::Null))
    }
    let wei = |s: &str| U256::from_str_radix(s, 10);
    let detail: Option<String> = r.get(9)?;
    let status: String = r.get(10)?;
    Ok(TxRow {
        id: r.get(0)?,
        agent_id: r.get(1)?,
        agent_name: r.get(2)?,
        chain_id: r.get::<_, i64>(3)?.max(0) as u64,
        to: required(typed(r, 4, str::parse::<Address>)?, 4)?,
        value_wei: required(typed(r, 5, wei)?, 5)?,
        data: required(typed(r, 6, str::parse::<Bytes>)?, 6)?,
        gas_limit: r.get::<_, Option<i64>>(7)?.map(|g| g.max(0) as u64),
        action: r.get(8)?,
        detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
        status: status.parse().map_err(|e: String| {
            rusqlite::Error::FromSqlConversionFailure(10, rusqlite::types::Type::Text, e.into())
        })?,
        tx_hash: typed(r, 11, str::parse::<B256>)?,
        error: r.get(12)?,
        created_at: r.get(13)?,
        decided_at: r.get(14)?,
        decided_by: r.get(15)?,
        fee_model: typed(r, 16, |s| FeeModel::parse(s).ok_or("not a fee model"))?,
        max_fee_per_gas: typed(r, 17, wei)?,
        max_priority_fee_per_gas: typed(r, 18, wei)?,
        max_fee_wei: typed(r, 19, wei)?,
        fee_wei: typed(r, 20, wei)?,
    })
}

pub(super) fn parse_wei(text: &str) -> rusqlite::Result<U256> {
    U256::from_str_radix(text, 10)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into()))
}
