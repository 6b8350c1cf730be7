//! Agents' log lines.

use assegai_sdk::LogLevel;
use serde::Serialize;

use super::{Result, Store, StoreError, sql::args};
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
        self.write(|db| {
            for l in logs {
                let data = l.data.as_ref().map(|d| d.to_string());
                db.execute(
                    "INSERT INTO logs (agent_id, agent_name, level, message, data, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    args![&l.agent_id, &l.agent_name, l.level.as_str(), &l.message, data, l.created_at],
                )?;
            }
            Ok(())
        })
    }

    /// Reads log lines, oldest first.
    pub fn logs(&self, q: &LogQuery) -> Result<Vec<LogRow>> {
        let limit = q.limit.map_or(i64::MAX, i64::from);
        self.read(|db| {
            db.query(
                "SELECT id, agent_id, agent_name, level, message, data, created_at FROM (
                   SELECT * FROM logs
                   WHERE (CAST(?1 AS TEXT) IS NULL OR agent_id = ?1) AND (CAST(?2 AS TEXT) IS NULL OR level = ?2)
                     AND id > ?3
                   ORDER BY id DESC LIMIT ?4
                 ) AS newest ORDER BY id",
                args![q.agent_id.as_ref(), q.level.map(LogLevel::as_str), q.after_id.unwrap_or(0), limit],
            )?
            .iter()
            .map(|r| {
                let level: String = r.get(3)?;
                let data: Option<String> = r.get(5)?;
                Ok(LogRow {
                    id: r.get(0)?,
                    agent_id: r.get(1)?,
                    agent_name: r.get(2)?,
                    level: level.parse().map_err(StoreError::Corrupt)?,
                    message: r.get(4)?,
                    data: data.and_then(|d| serde_json::from_str(&d).ok()),
                    created_at: r.get(6)?,
                })
            })
            .collect()
        })
    }

    /// How many log lines there are, optionally of one agent and/or level.
    pub fn log_count(&self, agent_id: Option<&AgentId>, level: Option<LogLevel>) -> Result<u64> {
        self.read(|db| {
            db.query_opt(
                "SELECT COUNT(*) FROM logs
                 WHERE (CAST(?1 AS TEXT) IS NULL OR agent_id = ?1) AND (CAST(?2 AS TEXT) IS NULL OR level = ?2)",
                args![agent_id, level.map(LogLevel::as_str)],
            )?
            .map_or(Ok(0), |r| r.get(0))
        })
    }
}
