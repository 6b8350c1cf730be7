//! The audit trail: who did what to which agent, written in the same transaction as the change.

use serde::Serialize;

use super::{
    Result, Store, now_ms,
    sql::{Db, args},
};
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
        self.write(|db| insert_audit(db, actor, kind, agent_id, detail))
    }

    /// The newest `limit` audit events, oldest first.
    pub fn audit_events(&self, limit: u32) -> Result<Vec<AuditRow>> {
        self.read(|db| {
            db.query(
                "SELECT * FROM (SELECT id, at, actor, kind, agent_id, detail FROM audit_events ORDER BY id DESC LIMIT ?1)
                 AS newest ORDER BY id",
                args![limit],
            )?
            .iter()
            .map(|r| {
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
            .collect()
        })
    }
}

pub(super) fn insert_audit(
    db: &mut dyn Db,
    actor: &str,
    kind: &str,
    agent_id: Option<&AgentId>,
    detail: Option<&serde_json::Value>,
) -> Result<()> {
    db.execute(
        "INSERT INTO audit_events (at, actor, kind, agent_id, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        args![now_ms(), actor, kind, agent_id, detail.map(|d| d.to_string())],
    )?;
    Ok(())
}
