//! Agents: registration (one id per directory, names unique), pause, token revocation, removal.

use std::path::Path;

use serde::Serialize;

use super::{
    Result, Store, StoreError,
    audit::insert_audit,
    now_ms,
    sql::{Db, Row, args},
};
use crate::{
    ids::AgentId,
    manifest::{Manifest, ManifestError},
};

/// A registered agent, as stored.
#[derive(Debug, Clone, Serialize)]
pub struct AgentRow {
    /// Stable id (`ag_…`).
    pub id: AgentId,
    /// Unique display name.
    pub name: String,
    /// The manifest as stored (JSON).
    #[serde(skip)]
    pub manifest_json: String,
    /// The manifest, parsed once when the row was read; see [`AgentRow::manifest`].
    #[serde(skip)]
    manifest: std::result::Result<Manifest, ManifestError>,
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

impl AgentRow {
    /// The agent's manifest. It was checked when it was stored, so an error here means a newer
    /// Assegai reads it more strictly: the row still lists and shows, only acting on it fails
    /// (and says to register the manifest again).
    pub fn manifest(&self) -> std::result::Result<&Manifest, ManifestError> {
        self.manifest.as_ref().map_err(Clone::clone)
    }
}

/// The channel on which a shared database announces every change to an agent (its id): a new
/// token, a pause, a revocation, a removal. Every proxy forgets what it cached of the agent, so a
/// kill switch pulled on one host holds on all of them at once.
pub const AGENT_CHANNEL: &str = "assegai_agent";

impl Store {
    /// Registers an agent, or updates the one with this name, and sets its token hash.
    /// Returns the row and whether it is new. The audit event is written in the same transaction.
    pub fn upsert_agent(
        &self,
        new_id: &AgentId,
        name: &str,
        manifest_json: &str,
        source_dir: Option<&str>,
        token_hash: &[u8; 32],
    ) -> Result<(AgentRow, bool)> {
        self.write(|db| {
            // Two registrations of one name on two hosts at once: the second waits, then sees
            // the first's row.
            db.lock(&format!("agent-name/{name}"))?;
            let now = now_ms();
            let by_name: Option<(AgentId, Option<String>)> = db
                .query_opt("SELECT id, source_dir FROM agents WHERE name = ?1", args![name])?
                .map(|r| Ok::<_, StoreError>((r.get(0)?, r.get(1)?)))
                .transpose()?;
            // An agent run from a directory keeps its id across runs, even if its manifest renames
            // it; a name is never taken over from an agent that runs from another directory.
            let by_dir: Option<AgentId> = match source_dir {
                Some(dir) => {
                    db.query_opt("SELECT id FROM agents WHERE source_dir = ?1", args![dir])?.map(|r| r.get(0)).transpose()?
                }
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
                    db.execute(
                        "UPDATE agents SET name = ?5, manifest = ?2, source_dir = COALESCE(?3, source_dir), updated_at = ?4
                         WHERE id = ?1",
                        args![&id, manifest_json, source_dir, now, name],
                    )?;
                    (id, false)
                }
                None => {
                    db.execute(
                        "INSERT INTO agents (id, name, manifest, source_dir, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                        args![new_id, name, manifest_json, source_dir, now],
                    )?;
                    (new_id.clone(), true)
                }
            };
            db.execute(
                "INSERT INTO agent_tokens (agent_id, token_hash, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (agent_id) DO UPDATE SET token_hash = excluded.token_hash, created_at = excluded.created_at",
                args![&id, &token_hash[..], now],
            )?;
            let kind = if created { "agent.registered" } else { "agent.token_rotated" };
            insert_audit(db, "cli", kind, Some(&id), None)?;
            db.notify(AGENT_CHANNEL, id.as_str())?;
            let row = agent_by_id(db, &id)?.ok_or_else(|| StoreError::Corrupt(format!("agent {id} vanished")))?;
            Ok((row, created))
        })
    }

    /// The agent with this id.
    pub fn agent(&self, id: &AgentId) -> Result<Option<AgentRow>> {
        self.read(|db| agent_by_id(db, id))
    }

    /// The agent with this id, or else this name.
    pub fn find_agent(&self, id_or_name: &str) -> Result<Option<AgentRow>> {
        self.read(|db| {
            db.query_opt(
                &format!("{AGENT_SELECT} WHERE a.id = ?1 OR a.name = ?1 ORDER BY a.id = ?1 DESC LIMIT 1"),
                args![id_or_name],
            )?
            .as_ref()
            .map(agent_from_row)
            .transpose()
        })
    }

    /// Every agent, by name.
    pub fn list_agents(&self) -> Result<Vec<AgentRow>> {
        self.read(|db| {
            db.query(&format!("{AGENT_SELECT} ORDER BY a.name"), args![])?.iter().map(agent_from_row).collect()
        })
    }

    /// Pauses or resumes an agent, with an audit event. Returns whether the flag changed.
    pub fn set_paused(&self, id: &AgentId, paused: bool, by: &str) -> Result<bool> {
        self.write(|db| {
            let n = db.execute(
                "UPDATE agents SET paused = ?2, updated_at = ?3 WHERE id = ?1 AND paused != ?2",
                args![id, paused, now_ms()],
            )?;
            if n > 0 {
                let kind = if paused { "agent.paused" } else { "agent.resumed" };
                insert_audit(db, by, kind, Some(id), None)?;
                db.notify(AGENT_CHANNEL, id.as_str())?;
            }
            Ok(n > 0)
        })
    }

    /// Revokes the agent's token if it is still `token_hash` (a later registration's token stays),
    /// with an audit event. Returns whether a token was revoked.
    pub fn revoke_token(&self, id: &AgentId, token_hash: &[u8; 32], why: &str) -> Result<bool> {
        self.write(|db| {
            let n = db.execute(
                "DELETE FROM agent_tokens WHERE agent_id = ?1 AND token_hash = ?2",
                args![id, &token_hash[..]],
            )?;
            if n > 0 {
                let detail = serde_json::json!({ "why": why });
                insert_audit(db, "cli", "agent.token_revoked", Some(id), Some(&detail))?;
                db.notify(AGENT_CHANNEL, id.as_str())?;
            }
            Ok(n > 0)
        })
    }

    /// Removes an agent and its token (its logs and audit trail stay). Returns whether it existed.
    pub fn remove_agent(&self, id: &AgentId) -> Result<bool> {
        self.write(|db| {
            let n = db.execute("DELETE FROM agents WHERE id = ?1", args![id])?;
            if n > 0 {
                insert_audit(db, "cli", "agent.removed", Some(id), None)?;
                db.notify(AGENT_CHANNEL, id.as_str())?;
            }
            Ok(n > 0)
        })
    }
}

const AGENT_SELECT: &str =
    "SELECT a.id, a.name, a.manifest, a.source_dir, a.paused, a.created_at, a.updated_at, t.token_hash
     FROM agents a LEFT JOIN agent_tokens t ON t.agent_id = a.id";

fn agent_by_id(db: &mut dyn Db, id: &AgentId) -> Result<Option<AgentRow>> {
    db.query_opt(&format!("{AGENT_SELECT} WHERE a.id = ?1"), args![id])?.as_ref().map(agent_from_row).transpose()
}

fn agent_from_row(r: &Row) -> Result<AgentRow> {
    let hash: Option<Vec<u8>> = r.get(7)?;
    let name: String = r.get(1)?;
    let manifest_json: String = r.get(2)?;
    let manifest = Manifest::parse(&manifest_json, Path::new(&format!("(the stored manifest of `{name}`)")));
    Ok(AgentRow {
        id: r.get(0)?,
        name,
        manifest_json,
        manifest,
        source_dir: r.get(3)?,
        paused: r.get(4)?,
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
        token_hash: hash.and_then(|h| h.try_into().ok()),
    })
}
