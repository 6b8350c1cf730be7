//! All SQL lives here: the SQLite database (`assegai.db`), its migrations, and typed functions for
//! everything the engine stores. Handlers and commands never write SQL.
//!
//! The database is opened in WAL mode so the proxy and CLI commands can use it at once. Calls are
//! blocking; async code runs them on the blocking pool. A shared PostgreSQL for teams would be a
//! second implementation of these functions, not a change to their callers.

use std::{
    path::{Path, PathBuf},
    sync::{LazyLock, Mutex, MutexGuard},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use alloy_primitives::U256;
use assegai_sdk::{LogLevel, wire::TxStatus};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use rusqlite_migration::{M, Migrations};
use serde::Serialize;

use crate::tx::{
    fees::TxFees,
    limits::{self, SpendWindow},
};

/// A database failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("{path}: {source}", path = path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// The schema could not be brought up to date.
    #[error("{path}: cannot apply migrations: {message}", path = path.display())]
    Migration {
        /// The database file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A stored value is not what this version expects.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The name is taken by another agent.
    #[error("an agent named `{0}` already exists")]
    NameTaken(String),
    /// The name belongs to an agent run from another directory.
    #[error("an agent named `{name}` already runs from {dir}; give this one another `name` in its assegai.json")]
    NameTakenElsewhere {
        /// The name.
        name: String,
        /// The other agent's directory.
        dir: String,
    },
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

static MIGRATIONS: LazyLock<Migrations<'static>> = LazyLock::new(|| {
    Migrations::new(vec![
        M::up(include_str!("migrations/0001_init.sql")),
        M::up(include_str!("migrations/0002_api_usage.sql")),
        M::up(include_str!("migrations/0003_transactions.sql")),
        M::up(include_str!("migrations/0004_allowances.sql")),
        M::up_with_hook(include_str!("migrations/0005_spend_hours.sql"), |t: &rusqlite::Transaction<'_>| {
            rebuild_spend_hours(t).map_err(rusqlite_migration::HookError::RusqliteError)
        }),
        // Rows before it have no fees: what they count is unchanged, so the buckets stand.
        M::up(include_str!("migrations/0006_tx_fees.sql")),
        M::up(include_str!("migrations/0007_usage_estimated.sql")),
    ])
});

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A registered agent, as stored.
#[derive(Debug, Clone, Serialize)]
pub struct AgentRow {
    /// Stable id (`ag_…`).
    pub id: String,
    /// Unique display name.
    pub name: String,
    /// Manifest JSON.
    #[serde(skip)]
    pub manifest: String,
    /// Where it was registered from, if by `assegai run`.
    pub source_dir: Option<String>,
    /// Paused by the kill switch.
    pub paused: bool,
    /// Registration time (ms).
    pub created_at: i64,
    /// Last update (ms).
    pub updated_at: i64,
    /// SHA-256 of the current token.
    #[serde(skip)]
    pub token_hash: Option<[u8; 32]>,
}

/// A log line to store.
#[derive(Debug, Clone)]
pub struct NewLog {
    /// The agent's id.
    pub agent_id: String,
    /// The agent's name at the time.
    pub agent_name: String,
    /// Severity.
    pub level: LogLevel,
    /// The agent's text, stored as sent (neutralised only when shown).
    pub message: String,
    /// Optional JSON detail.
    pub data: Option<serde_json::Value>,
    /// When it arrived (ms).
    pub created_at: i64,
}

/// A stored log line.
#[derive(Debug, Clone, Serialize)]
pub struct LogRow {
    /// Increasing id; `logs -f` follows by id.
    pub id: i64,
    /// The agent's id.
    pub agent_id: String,
    /// The agent's name.
    pub agent_name: String,
    /// Severity.
    pub level: LogLevel,
    /// The text as sent.
    pub message: String,
    /// Optional JSON detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// When it arrived (ms).
    pub created_at: i64,
}

/// Which log lines to read.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Only this agent.
    pub agent_id: Option<String>,
    /// Only this level.
    pub level: Option<LogLevel>,
    /// Only lines with a larger id.
    pub after_id: Option<i64>,
    /// The newest `limit` lines (oldest first in the result).
    pub limit: Option<u32>,
}

/// An audit event.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    /// Increasing id.
    pub id: i64,
    /// When (ms).
    pub at: i64,
    /// Who: `cli`, `proxy`, or an agent id.
    pub actor: String,
    /// What, e.g. `agent.registered`.
    pub kind: String,
    /// The agent concerned.
    pub agent_id: Option<String>,
    /// Optional JSON detail.
    pub detail: Option<serde_json::Value>,
}

/// One forwarded AI call, to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUsage {
    /// The agent's id.
    pub agent_id: String,
    /// The agent's name at the time.
    pub agent_name: String,
    /// `openai`, `anthropic` or `deepseek`.
    pub provider: &'static str,
    /// The model the provider reported (or the request named).
    pub model: Option<String>,
    /// Input tokens that were neither cache reads nor cache writes.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Input tokens read from the provider's cache.
    pub cache_read_tokens: u64,
    /// Input tokens written to the provider's cache.
    pub cache_write_tokens: u64,
    /// Cost in nano-USD; `None` when the model has no known price.
    pub cost_nano_usd: Option<u64>,
    /// From request to the end of the reply.
    pub latency_ms: u64,
    /// The upstream's HTTP status.
    pub status: u16,
    /// Whether the reply was a stream.
    pub streamed: bool,
    /// Whether the tokens are the proxy's estimate (the reply gave no final usage).
    pub estimated: bool,
    /// When it finished (ms).
    pub created_at: i64,
}

/// Usage totals for one agent, provider and model.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UsageSummary {
    /// The agent's id.
    pub agent_id: String,
    /// The agent's name.
    pub agent_name: String,
    /// The provider.
    pub provider: String,
    /// The model (`null` when none was reported).
    pub model: Option<String>,
    /// Whether these calls' tokens are the proxy's estimates (estimated calls get rows of their own).
    pub estimated: bool,
    /// Number of calls.
    pub calls: u64,
    /// Sum of uncached input tokens.
    pub input_tokens: u64,
    /// Sum of output tokens.
    pub output_tokens: u64,
    /// Sum of cache-read tokens.
    pub cache_read_tokens: u64,
    /// Sum of cache-write tokens.
    pub cache_write_tokens: u64,
    /// Sum of known costs, nano-USD.
    pub cost_nano_usd: u64,
    /// Calls whose cost is unknown (their cost is not in the sum).
    pub unpriced_calls: u64,
}

/// A transaction request that passed validation, to store as pending.
#[derive(Debug, Clone)]
pub struct NewTx {
    /// The request's id (`tx_…`).
    pub id: String,
    /// The agent's id.
    pub agent_id: String,
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

/// A token allowance set with `assegai allowance set`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AllowanceRow {
    /// The agent.
    pub agent_id: String,
    /// The chain id.
    pub chain_id: u64,
    /// The token contract, checksummed.
    pub token: String,
    /// Decimal amount in token units.
    pub amount: String,
    /// When it was set (ms since the epoch).
    pub updated_at: i64,
}

/// A stored transaction request.
#[derive(Debug, Clone, Serialize)]
pub struct TxRow {
    /// The request's id.
    pub id: String,
    /// The agent's id.
    pub agent_id: String,
    /// The agent's name.
    pub agent_name: String,
    /// Numeric chain id.
    pub chain_id: u64,
    /// Checksummed recipient or contract.
    pub to: String,
    /// Native value in wei (decimal).
    pub value_wei: String,
    /// `0x`-hex calldata.
    pub data: String,
    /// Gas limit, if given.
    pub gas_limit: Option<u64>,
    /// `eip1559` or `legacy` (then `max_fee_per_gas` is the gas price), if fees were fixed.
    pub fee_model: Option<String>,
    /// Max fee per gas (legacy: the gas price), wei, decimal.
    pub max_fee_per_gas: Option<String>,
    /// Max priority fee per gas, wei, decimal (EIP-1559 only).
    pub max_priority_fee_per_gas: Option<String>,
    /// The worst-case fee, gas limit × max fee per gas, wei, decimal.
    pub max_fee_wei: Option<String>,
    /// The fee paid (gas used × effective gas price), wei, decimal, once the receipt is in.
    pub fee_wei: Option<String>,
    /// What it does, for people.
    pub action: String,
    /// Structured detail for the approver.
    pub detail: Option<serde_json::Value>,
    /// Where it stands.
    pub status: TxStatus,
    /// The hash, once broadcast.
    pub tx_hash: Option<String>,
    /// Why it failed, was rejected or expired.
    pub error: Option<String>,
    /// When it was requested (ms).
    pub created_at: i64,
    /// When it was decided (ms).
    pub decided_at: Option<i64>,
    /// Who decided (`cli`, `proxy`…).
    pub decided_by: Option<String>,
}

/// Statuses whose requests may count against spending limits (see [`limits::counted`]); the
/// others count nothing.
const SPENDING_STATUSES: &str = "('pending', 'approved', 'confirmed', 'reverted')";

/// The statuses of migration 0005, before fees: only value counted, and not for a revert.
const VALUE_STATUSES: &str = "('pending', 'approved', 'confirmed')";

/// The database.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self> {
        let sql = |source| StoreError::Sqlite { path: path.to_owned(), source };
        let mut conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(sql)?;
        // Two processes opening a new database at once (a command beside a starting proxy) would
        // both read version 0 and both apply the first migration; one waits for the other here.
        let migration = |message: String| StoreError::Migration { path: path.to_owned(), message };
        let mut lock_name = path.file_name().unwrap_or_default().to_owned();
        lock_name.push(".lock");
        let lock_path = path.with_file_name(lock_name);
        let lock = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&lock_path)
                .map_err(|e| migration(format!("cannot open {}: {e}", lock_path.display())))?
        };
        lock.lock().map_err(|e| migration(format!("cannot lock {}: {e}", lock_path.display())))?;
        MIGRATIONS.to_latest(&mut conn).map_err(|e| migration(e.to_string()))?;
        drop(lock);
        restrict_permissions(path);
        Ok(Store { conn: Mutex::new(conn), path: path.to_owned() })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll
        // back on drop), so a poisoned lock is still safe to use.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite { path: self.path.clone(), source }
    }

    /// Registers an agent, or updates the one with this name, and sets its token hash.
    /// Returns the row and whether it is new. The audit event is written in the same transaction.
    pub fn upsert_agent(
        &self,
        new_id: &str,
        name: &str,
        manifest_json: &str,
        source_dir: Option<&str>,
        token_hash: &[u8; 32],
    ) -> Result<(AgentRow, bool)> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let now = now_ms();
        let by_name: Option<(String, Option<String>)> = tx
            .query_row("SELECT id, source_dir FROM agents WHERE name = ?1", [name], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(|e| self.err(e))?;
        // An agent run from a directory keeps its id across runs, even if its manifest renames it;
        // a name is never taken over from an agent that runs from another directory.
        let by_dir: Option<String> = match source_dir {
            Some(dir) => tx
                .query_row("SELECT id FROM agents WHERE source_dir = ?1", [dir], |r| r.get(0))
                .optional()
                .map_err(|e| self.err(e))?,
            None => None,
        };
        if let (Some(dir), Some((other, Some(other_dir)))) = (source_dir, &by_name)
            && other_dir != dir
            && by_dir.as_ref() != Some(other)
        {
            return Err(StoreError::NameTakenElsewhere { name: name.to_owned(), dir: other_dir.clone() });
        }
        if let (Some(mine), Some((other, _))) = (&by_dir, &by_name)
            && mine != other
        {
            return Err(StoreError::NameTaken(name.to_owned()));
        }
        let existing = by_dir.or(by_name.map(|(id, _)| id));
        let (id, created) = match existing {
            Some(id) => {
                tx.execute(
                    "UPDATE agents SET name = ?5, manifest = ?2, source_dir = COALESCE(?3, source_dir), updated_at = ?4
                     WHERE id = ?1",
                    params![id, manifest_json, source_dir, now, name],
                )
                .map_err(|e| self.err(e))?;
                (id, false)
            }
            None => {
                tx.execute(
                    "INSERT INTO agents (id, name, manifest, source_dir, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                    params![new_id, name, manifest_json, source_dir, now],
                )
                .map_err(|e| self.err(e))?;
                (new_id.to_owned(), true)
            }
        };
        tx.execute(
            "INSERT INTO agent_tokens (agent_id, token_hash, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (agent_id) DO UPDATE SET token_hash = excluded.token_hash, created_at = excluded.created_at",
            params![id, &token_hash[..], now],
        )
        .map_err(|e| self.err(e))?;
        let kind = if created { "agent.registered" } else { "agent.token_rotated" };
        insert_audit(&tx, "cli", kind, Some(&id), None).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        drop(conn);
        let row = self.agent(&id)?.ok_or_else(|| StoreError::Corrupt(format!("agent {id} vanished")))?;
        Ok((row, created))
    }

    /// The agent with this id.
    pub fn agent(&self, id: &str) -> Result<Option<AgentRow>> {
        self.conn()
            .query_row(&format!("{AGENT_SELECT} WHERE a.id = ?1"), [id], agent_from_row)
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The agent with this id, or else this name.
    pub fn find_agent(&self, id_or_name: &str) -> Result<Option<AgentRow>> {
        self.conn()
            .query_row(
                &format!("{AGENT_SELECT} WHERE a.id = ?1 OR a.name = ?1 ORDER BY a.id = ?1 DESC LIMIT 1"),
                [id_or_name],
                agent_from_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every agent, by name.
    pub fn list_agents(&self) -> Result<Vec<AgentRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{AGENT_SELECT} ORDER BY a.name")).map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], agent_from_row).map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Pauses or resumes an agent, with an audit event. Returns whether the flag changed.
    pub fn set_paused(&self, id: &str, paused: bool, by: &str) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let n = tx
            .execute(
                "UPDATE agents SET paused = ?2, updated_at = ?3 WHERE id = ?1 AND paused != ?2",
                params![id, paused, now_ms()],
            )
            .map_err(|e| self.err(e))?;
        if n > 0 {
            let kind = if paused { "agent.paused" } else { "agent.resumed" };
            insert_audit(&tx, by, kind, Some(id), None).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    /// Revokes the agent's token if it is still `token_hash` (a later registration's token stays),
    /// with an audit event. Returns whether a token was revoked.
    pub fn revoke_token(&self, id: &str, token_hash: &[u8; 32], why: &str) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let n = tx
            .execute("DELETE FROM agent_tokens WHERE agent_id = ?1 AND token_hash = ?2", params![id, &token_hash[..]])
            .map_err(|e| self.err(e))?;
        if n > 0 {
            let detail = serde_json::json!({ "why": why });
            insert_audit(&tx, "cli", "agent.token_revoked", Some(id), Some(&detail)).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    /// Removes an agent and its token (its logs and audit trail stay). Returns whether it existed.
    pub fn remove_agent(&self, id: &str) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let n = tx.execute("DELETE FROM agents WHERE id = ?1", [id]).map_err(|e| self.err(e))?;
        if n > 0 {
            insert_audit(&tx, "cli", "agent.removed", Some(id), None).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    /// Stores log lines in one transaction.
    pub fn insert_logs(&self, logs: &[NewLog]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO logs (agent_id, agent_name, level, message, data, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(|e| self.err(e))?;
            for l in logs {
                let data = l.data.as_ref().map(|d| d.to_string());
                stmt.execute(params![l.agent_id, l.agent_name, l.level.as_str(), l.message, data, l.created_at])
                    .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Reads log lines, oldest first.
    pub fn logs(&self, q: &LogQuery) -> Result<Vec<LogRow>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, agent_id, agent_name, level, message, data, created_at FROM (
                   SELECT * FROM logs
                   WHERE (?1 IS NULL OR agent_id = ?1) AND (?2 IS NULL OR level = ?2) AND id > ?3
                   ORDER BY id DESC LIMIT ?4
                 ) ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let limit = q.limit.map_or(-1, i64::from);
        let rows = stmt
            .query_map(params![q.agent_id, q.level.map(LogLevel::as_str), q.after_id.unwrap_or(0), limit], |r| {
                let level: String = r.get(3)?;
                let data: Option<String> = r.get(5)?;
                Ok((
                    LogRow {
                        id: r.get(0)?,
                        agent_id: r.get(1)?,
                        agent_name: r.get(2)?,
                        level: LogLevel::Info,
                        message: r.get(4)?,
                        data: data.and_then(|d| serde_json::from_str(&d).ok()),
                        created_at: r.get(6)?,
                    },
                    level,
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.map(|row| {
            let (mut row, level) = row.map_err(|e| self.err(e))?;
            row.level = level.parse().map_err(StoreError::Corrupt)?;
            Ok(row)
        })
        .collect()
    }

    /// Stores AI usage rows in one transaction.
    pub fn insert_usage(&self, rows: &[NewUsage]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO api_usage (agent_id, agent_name, provider, model, input_tokens, output_tokens,
                       cache_read_tokens, cache_write_tokens, cost_nano_usd, latency_ms, status, streamed, created_at,
                       estimated)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                )
                .map_err(|e| self.err(e))?;
            for u in rows {
                let big = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
                stmt.execute(params![
                    u.agent_id,
                    u.agent_name,
                    u.provider,
                    u.model,
                    big(u.input_tokens),
                    big(u.output_tokens),
                    big(u.cache_read_tokens),
                    big(u.cache_write_tokens),
                    u.cost_nano_usd.map(big),
                    big(u.latency_ms),
                    u.status,
                    u.streamed,
                    u.created_at,
                    u.estimated
                ])
                .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Usage per agent, provider and model since `since_ms`, optionally for one agent.
    pub fn usage_summary(&self, agent_id: Option<&str>, since_ms: i64) -> Result<Vec<UsageSummary>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT agent_id, MAX(agent_name), provider, model, COUNT(*), SUM(input_tokens), SUM(output_tokens),
                        SUM(cache_read_tokens), SUM(cache_write_tokens), COALESCE(SUM(cost_nano_usd), 0),
                        SUM(cost_nano_usd IS NULL), estimated
                 FROM api_usage WHERE created_at >= ?1 AND (?2 IS NULL OR agent_id = ?2)
                 GROUP BY agent_id, provider, model, estimated ORDER BY MAX(agent_name), provider, model, estimated",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![since_ms, agent_id], |r| {
                let n = |i| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
                Ok(UsageSummary {
                    agent_id: r.get(0)?,
                    agent_name: r.get(1)?,
                    provider: r.get(2)?,
                    model: r.get(3)?,
                    estimated: r.get(11)?,
                    calls: n(4)?,
                    input_tokens: n(5)?,
                    output_tokens: n(6)?,
                    cache_read_tokens: n(7)?,
                    cache_write_tokens: n(8)?,
                    cost_nano_usd: n(9)?,
                    unpriced_calls: n(10)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Known AI spend per agent and minute since `since_ms`: `(agent id, the minute's start in ms,
    /// nano-USD)`, by agent then time (what the budget ledger starts from).
    pub fn ai_spend_by_minute(&self, since_ms: i64) -> Result<Vec<(String, i64, u64)>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT agent_id, created_at / 60000, SUM(cost_nano_usd) FROM api_usage
                 WHERE created_at >= ?1 AND cost_nano_usd IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([since_ms], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? * 60_000, r.get::<_, i64>(2)?.max(0) as u64))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// An agent's known AI spend since `since_ms`, in nano-USD.
    pub fn ai_spend_since(&self, agent_id: &str, since_ms: i64) -> Result<u64> {
        self.conn()
            .query_row(
                "SELECT COALESCE(SUM(cost_nano_usd), 0) FROM api_usage WHERE agent_id = ?1 AND created_at >= ?2",
                params![agent_id, since_ms],
                |r| r.get::<_, i64>(0),
            )
            .map(|v| v.max(0) as u64)
            .map_err(|e| self.err(e))
    }

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
        let t = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.err(e))?;
        for w in windows {
            let since = w.window.since(tx.created_at);
            let spent = sum_wei(&t, &tx.agent_id, tx.chain_id, since).map_err(|e| self.err(e))?;
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
        )
        .map_err(|e| self.err(e))?;
        add_spend(&t, &tx.agent_id, tx.chain_id, tx.created_at, cost, true).map_err(|e| self.err(e))?;
        insert_audit(&t, &tx.agent_id, "tx.requested", Some(&tx.agent_id), Some(&serde_json::json!({"tx": tx.id})))
            .map_err(|e| self.err(e))?;
        t.commit().map_err(|e| self.err(e))?;
        Ok(None)
    }

    /// (settled, pending) of what an agent's requests on a chain since `since_ms` count against
    /// its limits (value and fees, see [`limits::counted`]): settled is approved, confirmed and
    /// reverted, pending is what still waits for a person.
    pub fn spend_breakdown(&self, agent_id: &str, chain_id: u64, since_ms: i64) -> Result<(U256, U256)> {
        let total = self.spent_since(agent_id, chain_id, since_ms)?;
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT value_wei, max_fee_wei FROM transactions WHERE agent_id = ?1 AND chain_id = ?2 AND created_at >= ?3
                 AND status = 'pending'",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![agent_id, i64::try_from(chain_id).unwrap_or(i64::MAX), since_ms], |r| {
                Ok((parse_wei(&r.get::<_, String>(0)?)?, r.get::<_, Option<String>>(1)?))
            })
            .map_err(|e| self.err(e))?;
        let mut pending = U256::ZERO;
        for row in rows {
            let (value, max_fee) = row.map_err(|e| self.err(e))?;
            let max_fee = max_fee.as_deref().map(parse_wei).transpose().map_err(|e| self.err(e))?;
            pending = pending.saturating_add(limits::counted(TxStatus::Pending, value, max_fee, None));
        }
        Ok((total.saturating_sub(pending), pending))
    }

    /// What an agent's requests on a chain since `since_ms` count against its limits.
    pub fn spent_since(&self, agent_id: &str, chain_id: u64, since_ms: i64) -> Result<U256> {
        sum_wei(&self.conn(), agent_id, chain_id, since_ms).map_err(|e| self.err(e))
    }

    /// Moves a request from `from` to `to` (with an error text and who decided), and records the
    /// decision as an audit event. Returns false when it was not in `from` any more.
    pub fn decide_tx(&self, id: &str, from: TxStatus, to: TxStatus, error: Option<&str>, by: &str) -> Result<bool> {
        self.move_tx(id, from, to, error, None, by)
    }

    /// Records a request's receipt: `to` is confirmed or reverted, `fee_wei` what it paid (gas
    /// used × effective gas price), which then counts instead of its worst case.
    pub fn settle_tx(&self, id: &str, to: TxStatus, fee_wei: U256, error: Option<&str>) -> Result<bool> {
        self.move_tx(id, TxStatus::Approved, to, error, Some(fee_wei), "proxy")
    }

    /// One status change with its bookkeeping: the hour bucket moves by what the request counts
    /// after minus before, and an audit event records it, in the same SQL transaction.
    fn move_tx(
        &self,
        id: &str,
        from: TxStatus,
        to: TxStatus,
        error: Option<&str>,
        fee: Option<U256>,
        by: &str,
    ) -> Result<bool> {
        let mut conn = self.conn();
        let t = conn.transaction().map_err(|e| self.err(e))?;
        let n = t
            .execute(
                "UPDATE transactions SET status = ?3, error = COALESCE(?4, error), decided_at = ?5, decided_by = ?6,
                   fee_wei = COALESCE(?7, fee_wei)
                 WHERE id = ?1 AND status = ?2",
                params![id, from.as_str(), to.as_str(), error, now_ms(), by, fee.map(|f| f.to_string())],
            )
            .map_err(|e| self.err(e))?;
        if n > 0 {
            type Row = (String, i64, i64, String, Option<String>, Option<String>);
            let row: Option<Row> = t
                .query_row(
                    "SELECT agent_id, chain_id, created_at, value_wei, max_fee_wei, fee_wei FROM transactions WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
                )
                .optional()
                .map_err(|e| self.err(e))?;
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
                    add_spend(&t, agent, chain, *created_at, after - before, true).map_err(|e| self.err(e))?;
                } else if before > after {
                    add_spend(&t, agent, chain, *created_at, before - after, false).map_err(|e| self.err(e))?;
                }
            }
            let agent = row.map(|r| r.0);
            let mut detail = serde_json::json!({"tx": id, "from": from.as_str(), "to": to.as_str(), "error": error});
            if let Some(fee) = fee {
                detail["fee_wei"] = fee.to_string().into();
            }
            insert_audit(&t, by, &format!("tx.{}", to.as_str()), agent.as_deref(), Some(&detail))
                .map_err(|e| self.err(e))?;
        }
        t.commit().map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    /// Records the hash of a broadcast request.
    pub fn set_tx_hash(&self, id: &str, hash: &str) -> Result<()> {
        self.conn()
            .execute("UPDATE transactions SET tx_hash = ?2 WHERE id = ?1", params![id, hash])
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Marks every pending request expired (at proxy start: nobody is waiting for them any more).
    pub fn expire_all_pending(&self, reason: &str) -> Result<Vec<String>> {
        let ids: Vec<String> = {
            let conn = self.conn();
            let mut stmt =
                conn.prepare("SELECT id FROM transactions WHERE status = 'pending'").map_err(|e| self.err(e))?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(|e| self.err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.err(e))?
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
    pub fn tx(&self, id: &str) -> Result<Option<TxRow>> {
        self.conn()
            .query_row(&format!("{TX_SELECT} WHERE id = ?1"), [id], tx_from_row)
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Requests, newest first, optionally for one agent and/or status.
    pub fn txs(&self, agent_id: Option<&str>, status: Option<TxStatus>, limit: u32) -> Result<Vec<TxRow>> {
        // One statement per case: `?1 IS NULL OR agent_id = ?1` would hide the indexes from
        // SQLite and scan (and sort) the whole table.
        let filter = match (agent_id.is_some(), status.is_some()) {
            (true, true) => "WHERE agent_id = ?1 AND status = ?2",
            (true, false) => "WHERE agent_id = ?1 AND ?2 IS NULL",
            (false, true) => "WHERE status = ?2 AND ?1 IS NULL",
            (false, false) => "WHERE ?1 IS NULL AND ?2 IS NULL",
        };
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!("{TX_SELECT} {filter} ORDER BY created_at DESC, id DESC LIMIT ?3"))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![agent_id, status.map(TxStatus::as_str), limit], tx_from_row)
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// How many transaction requests an agent has in each status (statuses with none are left out).
    pub fn tx_counts(&self, agent_id: &str) -> Result<Vec<(TxStatus, u64)>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT status, COUNT(*) FROM transactions WHERE agent_id = ?1 GROUP BY status")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![agent_id], |r| {
                let status: String = r.get(0)?;
                let status = status.parse::<TxStatus>().map_err(|e: String| {
                    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
                })?;
                Ok((status, u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0)))
            })
            .map_err(|e| self.err(e))?;
        let mut counts = rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))?;
        counts.sort_by_key(|(s, _)| TxStatus::ALL.iter().position(|x| x == s));
        Ok(counts)
    }

    /// Sets an agent's allowance for a token (replacing any earlier one), as an audited decision.
    pub fn set_allowance(&self, agent_id: &str, chain_id: u64, token: &str, amount: &str, by: &str) -> Result<()> {
        let mut conn = self.conn();
        let t = conn.transaction().map_err(|e| self.err(e))?;
        t.execute(
            "INSERT INTO allowances (agent_id, chain_id, token, amount, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (agent_id, chain_id, token) DO UPDATE SET amount = ?4, updated_at = ?5",
            params![agent_id, i64::try_from(chain_id).unwrap_or(i64::MAX), token, amount, now_ms()],
        )
        .map_err(|e| self.err(e))?;
        let detail = serde_json::json!({"chain_id": chain_id, "token": token, "amount": amount});
        insert_audit(&t, by, "allowance.set", Some(agent_id), Some(&detail)).map_err(|e| self.err(e))?;
        t.commit().map_err(|e| self.err(e))
    }

    /// Allowances set with the CLI, for one agent or all.
    pub fn allowances(&self, agent_id: Option<&str>) -> Result<Vec<AllowanceRow>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT agent_id, chain_id, token, amount, updated_at FROM allowances
                 WHERE ?1 IS NULL OR agent_id = ?1 ORDER BY agent_id, chain_id, token",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([agent_id], allowance_from_row).map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// The CLI-set allowance of an agent for a token, if any.
    pub fn allowance(&self, agent_id: &str, chain_id: u64, token: &str) -> Result<Option<AllowanceRow>> {
        self.conn()
            .query_row(
                "SELECT agent_id, chain_id, token, amount, updated_at FROM allowances
                 WHERE agent_id = ?1 AND chain_id = ?2 AND token = ?3",
                params![agent_id, i64::try_from(chain_id).unwrap_or(i64::MAX), token],
                allowance_from_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Records an audit event.
    pub fn audit(
        &self,
        actor: &str,
        kind: &str,
        agent_id: Option<&str>,
        detail: Option<&serde_json::Value>,
    ) -> Result<()> {
        insert_audit(&self.conn(), actor, kind, agent_id, detail).map_err(|e| self.err(e))
    }

    /// The newest `limit` audit events, oldest first.
    pub fn audit_events(&self, limit: u32) -> Result<Vec<AuditRow>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT * FROM (SELECT id, at, actor, kind, agent_id, detail FROM audit_events ORDER BY id DESC LIMIT ?1) ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([limit], |r| {
                let detail: Option<String> = r.get(5)?;
                Ok(AuditRow {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    actor: r.get(2)?,
                    kind: r.get(3)?,
                    agent_id: r.get(4)?,
                    detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }
}

const TX_SELECT: &str =
    "SELECT id, agent_id, agent_name, chain_id, to_address, value_wei, data, gas_limit, action, detail,
     status, tx_hash, error, created_at, decided_at, decided_by, fee_model, max_fee_per_gas,
     max_priority_fee_per_gas, max_fee_wei, fee_wei FROM transactions";

fn tx_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TxRow> {
    let detail: Option<String> = r.get(9)?;
    let status: String = r.get(10)?;
    Ok(TxRow {
        id: r.get(0)?,
        agent_id: r.get(1)?,
        agent_name: r.get(2)?,
        chain_id: r.get::<_, i64>(3)?.max(0) as u64,
        to: r.get(4)?,
        value_wei: r.get(5)?,
        data: r.get(6)?,
        gas_limit: r.get::<_, Option<i64>>(7)?.map(|g| g.max(0) as u64),
        action: r.get(8)?,
        detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
        status: status.parse().map_err(|e: String| {
            rusqlite::Error::FromSqlConversionFailure(10, rusqlite::types::Type::Text, e.into())
        })?,
        tx_hash: r.get(11)?,
        error: r.get(12)?,
        created_at: r.get(13)?,
        decided_at: r.get(14)?,
        decided_by: r.get(15)?,
        fee_model: r.get(16)?,
        max_fee_per_gas: r.get(17)?,
        max_priority_fee_per_gas: r.get(18)?,
        max_fee_wei: r.get(19)?,
        fee_wei: r.get(20)?,
    })
}

/// Sum of counted value in wei; stored as decimal text and added with overflow checks here,
/// because SQLite integers cannot hold wei.
const HOUR_MS: i64 = 3_600_000;

fn parse_wei(text: &str) -> rusqlite::Result<U256> {
    U256::from_str_radix(text, 10)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into()))
}

/// Committed value of an agent on a chain since `since_ms`: whole hours from `spend_hours`, the
/// partial first hour from `transactions` (through the (agent_id, created_at) index).
fn sum_wei(conn: &Connection, agent_id: &str, chain_id: u64, since_ms: i64) -> rusqlite::Result<U256> {
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
fn add_spend(
    conn: &Connection,
    agent_id: &str,
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
fn rebuild_spend_hours(t: &Connection) -> rusqlite::Result<()> {
    t.execute("DELETE FROM spend_hours", [])?;
    let mut stmt = t.prepare(&format!(
        "SELECT agent_id, chain_id, created_at, value_wei FROM transactions WHERE status IN {VALUE_STATUSES}"
    ))?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, String>(3)?))
    })?;
    for row in rows {
        let (agent, chain, created_at, value) = row?;
        add_spend(t, &agent, u64::try_from(chain).unwrap_or_default(), created_at, parse_wei(&value)?, true)?;
    }
    Ok(())
}

fn allowance_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AllowanceRow> {
    Ok(AllowanceRow {
        agent_id: r.get(0)?,
        chain_id: u64::try_from(r.get::<_, i64>(1)?).unwrap_or_default(),
        token: r.get(2)?,
        amount: r.get(3)?,
        updated_at: r.get(4)?,
    })
}

const AGENT_SELECT: &str =
    "SELECT a.id, a.name, a.manifest, a.source_dir, a.paused, a.created_at, a.updated_at, t.token_hash
     FROM agents a LEFT JOIN agent_tokens t ON t.agent_id = a.id";

fn agent_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AgentRow> {
    let hash: Option<Vec<u8>> = r.get(7)?;
    Ok(AgentRow {
        id: r.get(0)?,
        name: r.get(1)?,
        manifest: r.get(2)?,
        source_dir: r.get(3)?,
        paused: r.get(4)?,
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
        token_hash: hash.and_then(|h| h.try_into().ok()),
    })
}

fn insert_audit(
    conn: &Connection,
    actor: &str,
    kind: &str,
    agent_id: Option<&str>,
    detail: Option<&serde_json::Value>,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO audit_events (at, actor, kind, agent_id, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![now_ms(), actor, kind, agent_id, detail.map(|d| d.to_string())],
    )?;
    Ok(())
}

/// The database holds hashes and history only, but it is nobody else's business.
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.db")).unwrap();
        (dir, s)
    }

    #[test]
    fn migrations_are_valid() {
        MIGRATIONS.validate().unwrap();
    }

    #[test]
    fn a_new_database_opened_by_many_at_once_is_migrated_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("race.db");
        let openers: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || Store::open(&path).map(drop).map_err(|e| e.to_string()))
            })
            .collect();
        for o in openers {
            o.join().unwrap().unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert!(s.list_agents().unwrap().is_empty());
    }

    /// With fees: pending and approved requests count value and worst-case fee, confirmed ones
    /// value and the fee paid, reverted ones the fee alone; the buckets agree with a full scan
    /// through inserts, decisions and receipts.
    #[test]
    fn rolling_sums_with_fees_match_a_full_scan() {
        fn scan(s: &Store, agent: &str, since: i64) -> U256 {
            let conn = s.conn();
            let mut stmt = conn
                .prepare(
                    "SELECT status, value_wei, max_fee_wei, fee_wei FROM transactions WHERE agent_id = ?1
                     AND created_at >= ?2",
                )
                .unwrap();
            let rows = stmt
                .query_map(params![agent, since], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                })
                .unwrap();
            let wei = |t: &str| U256::from_str_radix(t, 10).unwrap();
            rows.map(Result::unwrap).fold(U256::ZERO, |a, (status, v, max, fee)| {
                a + limits::counted(status.parse().unwrap(), wei(&v), max.as_deref().map(wei), fee.as_deref().map(wei))
            })
        }
        let (_d, s) = store();
        let base = 1_700_000_000_000_i64;
        let mut seed = 11_u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            seed >> 33
        };
        for i in 0..300 {
            let gwei = U256::from(1_000_000_000_u64);
            let max_fee_per_gas = U256::from(1 + next() % 100) * gwei;
            let fees = TxFees {
                model: crate::tx::fees::FeeModel::Eip1559,
                max_fee_per_gas,
                max_priority_fee_per_gas: Some(gwei),
                max_fee_wei: max_fee_per_gas * U256::from(21_000),
            };
            let tx = NewTx {
                id: format!("tx_{i}"),
                agent_id: "ag_a".into(),
                agent_name: "a".into(),
                chain_id: 31337,
                to: "0x0".into(),
                value_wei: U256::from(next() % 1_000_000) * gwei,
                data: "0x".into(),
                gas_limit: Some(21_000),
                fees: Some(fees),
                action: "send".into(),
                detail: None,
                created_at: base + (next() % (48 * HOUR_MS as u64)) as i64,
            };
            assert!(s.insert_pending_tx(&tx, &[]).unwrap().is_none());
            match next() % 4 {
                0 => {}
                1 => assert!(s.decide_tx(&tx.id, TxStatus::Pending, TxStatus::Rejected, None, "t").unwrap()),
                _ => {
                    assert!(s.decide_tx(&tx.id, TxStatus::Pending, TxStatus::Approved, None, "t").unwrap());
                    let paid = fees.max_fee_wei / U256::from(1 + next() % 4);
                    match next() % 3 {
                        0 => {}
                        1 => assert!(s.settle_tx(&tx.id, TxStatus::Confirmed, paid, None).unwrap()),
                        _ => assert!(s.settle_tx(&tx.id, TxStatus::Reverted, paid, Some("reverted")).unwrap()),
                    }
                }
            }
        }
        for _ in 0..100 {
            let since = base - HOUR_MS + (next() % (50 * HOUR_MS as u64)) as i64;
            assert_eq!(s.spent_since("ag_a", 31337, since).unwrap(), scan(&s, "ag_a", since), "{since}");
        }
    }

    /// The hour buckets give exactly what a full scan of `transactions` gives, for windows that
    /// start anywhere within an hour, through inserts and every kind of decision.
    #[test]
    fn rolling_sums_match_a_full_scan() {
        fn scan(s: &Store, agent: &str, chain: u64, since: i64) -> U256 {
            let conn = s.conn();
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT value_wei FROM transactions WHERE agent_id = ?1 AND chain_id = ?2 AND created_at >= ?3
                     AND status IN {VALUE_STATUSES}"
                ))
                .unwrap();
            let rows = stmt.query_map(params![agent, chain as i64, since], |r| r.get::<_, String>(0)).unwrap();
            rows.map(|v| U256::from_str_radix(&v.unwrap(), 10).unwrap()).fold(U256::ZERO, |a, b| a + b)
        }
        let (_d, s) = store();
        let base = 1_700_000_000_000_i64;
        let mut seed = 7_u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            seed >> 33
        };
        let fates = [TxStatus::Approved, TxStatus::Rejected, TxStatus::Expired, TxStatus::Failed];
        for i in 0..400 {
            let agent = if i % 3 == 0 { "ag_b" } else { "ag_a" };
            let chain = if i % 5 == 0 { 1 } else { 31337 };
            let tx = NewTx {
                id: format!("tx_{i}"),
                agent_id: agent.into(),
                agent_name: agent.into(),
                chain_id: chain,
                to: "0x0".into(),
                value_wei: U256::from(next() % 1_000_000) * U256::from(1_000_000_000_000_u64),
                data: "0x".into(),
                gas_limit: None,
                fees: None,
                action: "send".into(),
                detail: None,
                created_at: base + (next() % (72 * HOUR_MS as u64)) as i64,
            };
            assert!(s.insert_pending_tx(&tx, &[]).unwrap().is_none());
            match next() % 5 {
                0 => {}
                n => {
                    let to = fates[n as usize - 1];
                    assert!(s.decide_tx(&tx.id, TxStatus::Pending, to, None, "t").unwrap());
                    if to == TxStatus::Approved && next() % 2 == 0 {
                        let fin = if next() % 3 == 0 { TxStatus::Reverted } else { TxStatus::Confirmed };
                        assert!(s.decide_tx(&tx.id, TxStatus::Approved, fin, None, "t").unwrap());
                    }
                }
            }
        }
        for _ in 0..200 {
            let since = base - HOUR_MS + (next() % (74 * HOUR_MS as u64)) as i64;
            for (agent, chain) in [("ag_a", 31337), ("ag_b", 31337), ("ag_a", 1), ("ag_c", 31337)] {
                assert_eq!(s.spent_since(agent, chain, since).unwrap(), scan(&s, agent, chain, since), "{since}");
            }
        }
        // A rebuild (what migration 0005 does for older databases) gives the same buckets.
        let before: Vec<(String, i64, i64, String)> = {
            let conn = s.conn();
            let mut st = conn.prepare("SELECT * FROM spend_hours WHERE wei != '0' ORDER BY 1, 2, 3").unwrap();
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        rebuild_spend_hours(&s.conn()).unwrap();
        let conn = s.conn();
        let mut st = conn.prepare("SELECT * FROM spend_hours ORDER BY 1, 2, 3").unwrap();
        let after: Vec<(String, i64, i64, String)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(before, after);
    }

    #[test]
    fn agents_run_from_a_directory_keep_their_id_and_their_name() {
        let (_d, s) = store();
        let (a, _) = s.upsert_agent("ag_1", "bot", "{}", Some("/a"), &[1; 32]).unwrap();
        // Renamed in its manifest: same agent.
        let (b, created) = s.upsert_agent("ag_2", "robot", "{}", Some("/a"), &[2; 32]).unwrap();
        assert!(!created);
        assert_eq!((b.id.as_str(), b.name.as_str()), (a.id.as_str(), "robot"));
        // Another directory cannot take the name.
        let e = s.upsert_agent("ag_3", "robot", "{}", Some("/b"), &[3; 32]).unwrap_err();
        assert!(e.to_string().contains("already runs from /a"), "{e}");
        // Nor can the first directory take a name another agent has.
        s.upsert_agent("ag_4", "other", "{}", None, &[4; 32]).unwrap();
        let e = s.upsert_agent("ag_5", "other", "{}", Some("/a"), &[5; 32]).unwrap_err();
        assert!(matches!(e, StoreError::NameTaken(_)), "{e}");
        // An agent added by name only is adopted by the first directory that runs it.
        let (c, created) = s.upsert_agent("ag_6", "other", "{}", Some("/c"), &[6; 32]).unwrap();
        assert!(!created);
        assert_eq!((c.id.as_str(), c.source_dir.as_deref()), ("ag_4", Some("/c")));
    }

    #[test]
    fn upsert_rotates_and_keeps_the_id() {
        let (_d, s) = store();
        let (a, created) = s.upsert_agent("ag_1", "bot", "{}", None, &[1; 32]).unwrap();
        assert!(created);
        let (b, created) = s.upsert_agent("ag_2", "bot", "{}", Some("/x"), &[2; 32]).unwrap();
        assert!(!created);
        assert_eq!(a.id, b.id);
        assert_eq!(b.token_hash, Some([2; 32]));
        assert_eq!(b.source_dir.as_deref(), Some("/x"));
        assert_eq!(s.find_agent("bot").unwrap().unwrap().id, "ag_1");
        assert!(s.remove_agent("ag_1").unwrap());
        assert!(s.find_agent("ag_1").unwrap().is_none());
        let kinds: Vec<_> = s.audit_events(10).unwrap().into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["agent.registered", "agent.token_rotated", "agent.removed"]);
    }

    #[test]
    fn usage_sums_by_agent_provider_and_model() {
        let (_d, s) = store();
        let row = |model: &str, cost: Option<u64>, at: i64| NewUsage {
            agent_id: "ag_1".into(),
            agent_name: "bot".into(),
            provider: "openai",
            model: Some(model.into()),
            input_tokens: 10,
            output_tokens: 5,
            cache_read_tokens: 2,
            cache_write_tokens: 0,
            cost_nano_usd: cost,
            latency_ms: 3,
            status: 200,
            streamed: false,
            estimated: false,
            created_at: at,
        };
        let now = now_ms();
        s.insert_usage(&[
            row("gpt-4o", Some(100), now),
            row("gpt-4o", Some(50), now),
            row("mystery", None, now),
            row("gpt-4o", Some(7), 0),
        ])
        .unwrap();
        let sum = s.usage_summary(None, now - 1000).unwrap();
        assert_eq!(sum.len(), 2);
        let gpt = sum.iter().find(|r| r.model.as_deref() == Some("gpt-4o")).unwrap();
        assert_eq!((gpt.calls, gpt.input_tokens, gpt.cost_nano_usd, gpt.unpriced_calls), (2, 20, 150, 0));
        let mystery = sum.iter().find(|r| r.model.as_deref() == Some("mystery")).unwrap();
        assert_eq!((mystery.cost_nano_usd, mystery.unpriced_calls), (0, 1));
        assert_eq!(s.ai_spend_since("ag_1", now - 1000).unwrap(), 150);
        assert_eq!(s.ai_spend_since("ag_1", 0).unwrap(), 157);
        // Estimated calls are counted in a row of their own, and spent all the same.
        let mut estimate = row("gpt-4o", Some(40), now);
        estimate.estimated = true;
        s.insert_usage(&[estimate]).unwrap();
        let sum = s.usage_summary(Some("ag_1"), now - 1000).unwrap();
        let flags: Vec<_> = sum.iter().map(|r| (r.model.as_deref(), r.estimated, r.calls)).collect();
        assert_eq!(flags, [(Some("gpt-4o"), false, 2), (Some("gpt-4o"), true, 1), (Some("mystery"), false, 1)]);
        assert_eq!(s.ai_spend_since("ag_1", now - 1000).unwrap(), 190);
        // Per minute, for the budget ledger: the unpriced row is not spend.
        let minute = now.div_euclid(60_000) * 60_000;
        assert_eq!(s.ai_spend_by_minute(1).unwrap(), [("ag_1".to_owned(), minute, 190)]);
        assert_eq!(s.ai_spend_by_minute(0).unwrap(), [("ag_1".to_owned(), 0, 7), ("ag_1".to_owned(), minute, 190)]);
    }

    #[test]
    fn logs_filter_and_follow() {
        let (_d, s) = store();
        let mk = |level, message: &str| NewLog {
            agent_id: "ag_1".into(),
            agent_name: "bot".into(),
            level,
            message: message.into(),
            data: None,
            created_at: now_ms(),
        };
        s.insert_logs(&[mk(LogLevel::Info, "a"), mk(LogLevel::Error, "b"), mk(LogLevel::Info, "c")]).unwrap();
        let all = s.logs(&LogQuery::default()).unwrap();
        assert_eq!(all.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        let errors = s.logs(&LogQuery { level: Some(LogLevel::Error), ..Default::default() }).unwrap();
        assert_eq!(errors.len(), 1);
        let after = s.logs(&LogQuery { after_id: Some(all[0].id), ..Default::default() }).unwrap();
        assert_eq!(after.len(), 2);
        let last = s.logs(&LogQuery { limit: Some(1), ..Default::default() }).unwrap();
        assert_eq!(last[0].message, "c");
    }
}
