//! The audit trail: who did what to which agent, written in the same transaction as the change.

use rusqlite::{Connection, params};
use serde::Serialize;

use super::{Result, Store, now_ms};
use crate::ids::AgentId;

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
    pub agent_id: Option<AgentId>,
    /// Optional JSON detail.
    pub detail: Option<serde_json::Value>,
}

impl Store {
    /// Records an audit event.
    pub fn audit(
        &self,
        actor: &str,
        kind: &str,
        agent_id: Option<&AgentId>,
        detail: Option<&serde_json::Value>,
    ) -> Result<()> {
        Ok(insert_audit(&self.conn(), actor, kind, agent_id, detail)?)
    }

    /// The newest `limit` audit events, oldest first.
    pub fn audit_events(&self, limit: u32) -> Result<Vec<AuditRow>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT * FROM (SELECT id, at, actor, kind, agent_id, detail FROM audit_events ORDER BY id DESC LIMIT ?1) ORDER BY id")?;
        let rows = stmt.query_map([limit], |r| {
            let detail: Option<String> = r.get(5)?;
            Ok(AuditRow {
                id: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                kind: r.get(3)?,
                agent_id: r.get(4)?,
                detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

pub(super) fn insert_audit(
    conn: &Connection,
    actor: &str,
    kind: &str,
    agent_id: Option<&AgentId>,
    detail: Option<&serde_json::Value>,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO audit_events (at, actor, kind, agent_id, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![now_ms(), actor, kind, agent_id, detail.map(|d| d.to_string())],
    )?;
    Ok(())
}
