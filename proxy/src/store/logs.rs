//! Agents' log lines.

use assegai_sdk::LogLevel;
use rusqlite::params;
use serde::Serialize;

use super::{Result, Store, StoreError};
use crate::ids::AgentId;

/// A log line to store.
#[derive(Debug, Clone)]
pub struct NewLog {
    /// The agent's id.
    pub agent_id: AgentId,
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
    pub agent_id: AgentId,
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
    pub agent_id: Option<AgentId>,
    /// Only this level.
    pub level: Option<LogLevel>,
    /// Only lines with a larger id.
    pub after_id: Option<i64>,
    /// The newest `limit` lines (oldest first in the result).
    pub limit: Option<u32>,
}

impl Store {
    /// Stores log lines in one transaction.
    pub fn insert_logs(&self, logs: &[NewLog]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO logs (agent_id, agent_name, level, message, data, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
            for l in logs {
                let data = l.data.as_ref().map(|d| d.to_string());
                stmt.execute(params![l.agent_id, l.agent_name, l.level.as_str(), l.message, data, l.created_at])?;
            }
        }
        Ok(tx.commit()?)
    }

    /// Reads log lines, oldest first.
    pub fn logs(&self, q: &LogQuery) -> Result<Vec<LogRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, agent_id, agent_name, level, message, data, created_at FROM (
                   SELECT * FROM logs
                   WHERE (?1 IS NULL OR agent_id = ?1) AND (?2 IS NULL OR level = ?2) AND id > ?3
                   ORDER BY id DESC LIMIT ?4
                 ) ORDER BY id",
        )?;
        let limit = q.limit.map_or(-1, i64::from);
        let rows =
            stmt.query_map(params![q.agent_id, q.level.map(LogLevel::as_str), q.after_id.unwrap_or(0), limit], |r| {
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
            })?;
        rows.map(|row| {
            let (mut row, level) = row?;
            row.level = level.parse().map_err(StoreError::Corrupt)?;
            Ok(row)
        })
        .collect()
    }

    /// How many log lines there are, optionally of one agent and/or level.
    pub fn log_count(&self, agent_id: Option<&AgentId>, level: Option<LogLevel>) -> Result<u64> {
        Ok(self
            .conn()
            .query_row(
                "SELECT COUNT(*) FROM logs WHERE (?1 IS NULL OR agent_id = ?1) AND (?2 IS NULL OR level = ?2)",
                params![agent_id, level.map(LogLevel::as_str)],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)?)
    }
}
