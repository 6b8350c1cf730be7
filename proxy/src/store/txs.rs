//! Transaction requests and their life: pending (checked against the limits in the same SQL
//! transaction as the insert), decided, sent, settled.

use alloy_primitives::{Address, B256, Bytes, U256};
use assegai_sdk::wire::TxStatus;

use super::{
    Result, Store, StoreError,
    audit::insert_audit,
    now_ms,
    spend::{add_spend, parse_wei, sum_wei},
    sql::{Row, args, spend_key},
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
    /// The proxy that waits for its decision and signs it (see [`crate::state::holder_name`]).
    pub held_by: Option<String>,
    /// When its holder's approval timeout ends (ms).
    pub expires_at: Option<i64>,
}

/// The channel on which a shared database announces every change of a request's status (the
/// payload is its id), so that the proxy holding it wakes without polling.
pub const TX_CHANNEL: &str = "assegai_tx";

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
    /// The proxy that waits for its decision and signs it.
    pub held_by: Option<String>,
}

impl Store {
    /// Checks `tx` against the rolling `windows` and stores it as pending, as one step: the
    /// check runs inside a write transaction holding the agent's spending lock on the chain, so
    /// two racing requests, on one proxy or on two sharing a database, can never both fit under
    /// a limit. What it counts is its value plus its worst-case fee ([`limits::counted`]).
    /// Returns the window that would be exceeded, if any.
    pub fn insert_pending_tx(&self, tx: &NewTx, windows: &[SpendWindow]) -> Result<Option<SpendWindow>> {
        let max_fee = tx.fees.map(|f| f.max_fee_wei);
        let cost = limits::counted(TxStatus::Pending, tx.value_wei, max_fee, None);
        let gas_limit = tx
            .gas_limit
            .map(|g| i64::try_from(g).map_err(|_| StoreError::Corrupt(format!("gas limit {g} does not fit a row"))))
            .transpose()?;
        if i64::try_from(tx.chain_id).is_err() {
            return Err(StoreError::Corrupt(format!("chain id {} does not fit a row", tx.chain_id)));
        }
        self.write(|db| {
            db.lock(&spend_key(&tx.agent_id, tx.chain_id))?;
            for w in windows {
                let since = w.window.since(tx.created_at);
                let spent = sum_wei(db, &tx.agent_id, tx.chain_id, since)?;
                if tx.value_wei.checked_add(max_fee.unwrap_or_default()).is_none() || !limits::fits(spent, cost, w.limit) {
                    return Ok(Some(*w));
                }
            }
            let fees = tx.fees;
            db.execute(
                "INSERT INTO transactions (id, agent_id, agent_name, chain_id, to_address, value_wei, data, gas_limit,
                   action, detail, status, created_at, fee_model, max_fee_per_gas, max_priority_fee_per_gas, max_fee_wei,
                   held_by, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'pending', ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
                args![
                    &tx.id,
                    &tx.agent_id,
                    &tx.agent_name,
                    tx.chain_id,
                    &tx.to,
                    tx.value_wei.to_string(),
                    &tx.data,
                    gas_limit,
                    &tx.action,
                    tx.detail.as_ref().map(|d| d.to_string()),
                    tx.created_at,
                    fees.map(|f| f.model.as_str()),
                    fees.map(|f| f.max_fee_per_gas.to_string()),
                    fees.and_then(|f| f.max_priority_fee_per_gas).map(|v| v.to_string()),
                    fees.map(|f| f.max_fee_wei.to_string()),
                    tx.held_by.as_ref(),
                    tx.expires_at,
                ],
            )?;
            add_spend(db, &tx.agent_id, tx.chain_id, tx.created_at, cost, true)?;
            insert_audit(
                db,
                tx.agent_id.as_str(),
                "tx.requested",
                Some(&tx.agent_id),
                Some(&serde_json::json!({"tx": tx.id})),
            )?;
            Ok(None)
        })
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
    /// after minus before, and an audit event records it, in the same SQL transaction, under the
    /// agent's spending lock on the chain.
    fn move_tx(
        &self,
        id: &TxId,
        from: TxStatus,
        to: TxStatus,
        error: Option<&str>,
        fee: Option<U256>,
        by: &str,
    ) -> Result<bool> {
        self.write(|db| {
            let Some(owner) = db.query_opt("SELECT agent_id, chain_id FROM transactions WHERE id = ?1", args![id])?
            else {
                return Ok(false);
            };
            let (agent, chain): (AgentId, u64) = (owner.get(0)?, owner.get(1)?);
            db.lock(&spend_key(&agent, chain))?;
            let n = db.execute(
                "UPDATE transactions SET status = ?3, error = COALESCE(?4, error), decided_at = ?5, decided_by = ?6,
                   fee_wei = COALESCE(?7, fee_wei)
                 WHERE id = ?1 AND status = ?2",
                args![id, from.as_str(), to.as_str(), error, now_ms(), by, fee.map(|f| f.to_string())],
            )?;
            if n == 0 {
                return Ok(false);
            }
            let row = db
                .query_opt(
                    "SELECT created_at, value_wei, max_fee_wei, fee_wei FROM transactions WHERE id = ?1",
                    args![id],
                )?
                .ok_or_else(|| StoreError::Corrupt(format!("request {id} vanished")))?;
            let created_at: i64 = row.get(0)?;
            let value = parse_wei(&row.get::<String>(1)?)?;
            let wei =
                |i| -> Result<Option<U256>> { row.get::<Option<String>>(i)?.as_deref().map(parse_wei).transpose() };
            let (max_fee, paid) = (wei(2)?, wei(3)?);
            // Before: the same row as it was (no receipt fee yet when it settles now).
            let before = limits::counted(from, value, max_fee, if fee.is_some() { None } else { paid });
            let after = limits::counted(to, value, max_fee, paid);
            if after > before {
                add_spend(db, &agent, chain, created_at, after - before, true)?;
            } else if before > after {
                add_spend(db, &agent, chain, created_at, before - after, false)?;
            }
            let mut detail = serde_json::json!({"tx": id, "from": from.as_str(), "to": to.as_str(), "error": error});
            if let Some(fee) = fee {
                detail["fee_wei"] = fee.to_string().into();
            }
            insert_audit(db, by, &format!("tx.{}", to.as_str()), Some(&agent), Some(&detail))?;
            db.notify(TX_CHANNEL, id.as_str())?;
            Ok(true)
        })
    }

    /// Records the hash of a broadcast request.
    pub fn set_tx_hash(&self, id: &TxId, hash: &str) -> Result<()> {
        self.write(|db| db.execute("UPDATE transactions SET tx_hash = ?2 WHERE id = ?1", args![id, hash]).map(drop))
    }

    /// Marks expired every pending request `holder` held (at its start: nobody is waiting for
    /// them any more), and those no proxy was named for; with no `holder` (a database only one
    /// proxy uses, wherever its home has moved), every pending request.
    pub fn expire_all_pending(&self, holder: Option<&str>, reason: &str) -> Result<Vec<TxId>> {
        let ids: Vec<TxId> = self.read(|db| {
            db.query(
                "SELECT id FROM transactions WHERE status = 'pending'
                 AND (CAST(?1 AS TEXT) IS NULL OR held_by IS NULL OR held_by = ?1)",
                args![holder],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect()
        })?;
        self.expire(ids, reason)
    }

    /// Marks expired every pending request whose approval timeout ended before `ended_before`
    /// (ms), whoever holds it: on a shared database, what a proxy that died was holding (its own
    /// timer would have ended them before). Requests stored without a timeout are left alone.
    pub fn expire_stale_pending(&self, ended_before: i64, reason: &str) -> Result<Vec<TxId>> {
        let ids: Vec<TxId> = self.read(|db| {
            db.query("SELECT id FROM transactions WHERE status = 'pending' AND expires_at < ?1", args![ended_before])?
                .iter()
                .map(|r| r.get(0))
                .collect()
        })?;
        self.expire(ids, reason)
    }

    fn expire(&self, ids: Vec<TxId>, reason: &str) -> Result<Vec<TxId>> {
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
        self.read(|db| {
            db.query_opt(&format!("{TX_SELECT} WHERE id = ?1"), args![id])?.as_ref().map(tx_from_row).transpose()
        })
    }

    /// Requests, newest first, optionally for one agent and/or status.
    pub fn txs(&self, agent_id: Option<&AgentId>, status: Option<TxStatus>, limit: u32) -> Result<Vec<TxRow>> {
        // One statement per case: `?1 IS NULL OR agent_id = ?1` would hide the indexes from
        // SQLite and scan (and sort) the whole table.
        let filter = match (agent_id.is_some(), status.is_some()) {
            (true, true) => "WHERE agent_id = ?1 AND status = ?2",
            (true, false) => "WHERE agent_id = ?1 AND CAST(?2 AS TEXT) IS NULL",
            (false, true) => "WHERE status = ?2 AND CAST(?1 AS TEXT) IS NULL",
            (false, false) => "WHERE CAST(?1 AS TEXT) IS NULL AND CAST(?2 AS TEXT) IS NULL",
        };
        self.read(|db| {
            db.query(
                &format!("{TX_SELECT} {filter} ORDER BY created_at DESC, id DESC LIMIT ?3"),
                args![agent_id, status.map(TxStatus::as_str), limit],
            )?
            .iter()
            .map(tx_from_row)
            .collect()
        })
    }

    /// How many transaction requests an agent has in each status (statuses with none are left out).
    pub fn tx_counts(&self, agent_id: &AgentId) -> Result<Vec<(TxStatus, u64)>> {
        let mut counts = self.read(|db| {
            db.query("SELECT status, COUNT(*) FROM transactions WHERE agent_id = ?1 GROUP BY status", args![agent_id])?
                .iter()
                .map(|r| Ok((r.get::<String>(0)?.parse::<TxStatus>().map_err(StoreError::Corrupt)?, r.get(1)?)))
                .collect::<Result<Vec<_>>>()
        })?;
        counts.sort_by_key(|(s, _)| TxStatus::ALL.iter().position(|x| x == s));
        Ok(counts)
    }
}

const TX_SELECT: &str =
    "SELECT id, agent_id, agent_name, chain_id, to_address, value_wei, data, gas_limit, action, detail,
     status, tx_hash, error, created_at, decided_at, decided_by, fee_model, max_fee_per_gas,
     max_priority_fee_per_gas, max_fee_wei, fee_wei, held_by FROM transactions";

/// Reads a stored request, every value back in its type: a row that does not parse is an error,
/// never a zero on the approve card.
fn tx_from_row(r: &Row) -> Result<TxRow> {
    fn typed<T, E: std::fmt::Display>(
        r: &Row,
        i: usize,
        parse: impl Fn(&str) -> std::result::Result<T, E>,
    ) -> Result<Option<T>> {
        let Some(text) = r.get::<Option<String>>(i)? else { return Ok(None) };
        parse(&text).map(Some).map_err(|e| StoreError::Corrupt(format!("column {i}: `{text}`: {e}")))
    }
    fn required<T>(v: Option<T>, i: usize) -> Result<T> {
        v.ok_or_else(|| StoreError::Corrupt(format!("column {i} is empty")))
    }
    let wei = |s: &str| U256::from_str_radix(s, 10);
    let detail: Option<String> = r.get(9)?;
    let status: String = r.get(10)?;
    Ok(TxRow {
        id: r.get(0)?,
        agent_id: r.get(1)?,
        agent_name: r.get(2)?,
        chain_id: r.get(3)?,
        to: required(typed(r, 4, str::parse::<Address>)?, 4)?,
        value_wei: required(typed(r, 5, wei)?, 5)?,
        data: required(typed(r, 6, str::parse::<Bytes>)?, 6)?,
        gas_limit: r.get(7)?,
        action: r.get(8)?,
        detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
        status: status.parse().map_err(StoreError::Corrupt)?,
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
        held_by: r.get(21)?,
    })
}
