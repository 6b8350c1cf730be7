//! The agent registry: registering (and re-registering) agents with a fresh token, listing and
//! removing them. The token is returned once and only its hash is stored.

use std::path::Path;

use serde::Serialize;

use crate::{
    Error, Result, auth,
    ids::AgentId,
    manifest::Manifest,
    store::{AgentRow, Store},
};

/// The result of registering an agent: the only time its token is visible.
#[derive(Debug, Serialize)]
pub struct Registered {
    /// The agent's id (unchanged when re-registering).
    pub id: AgentId,
    /// The agent's name.
    pub name: String,
    /// The new token. Show it once; it cannot be recovered.
    pub token: String,
    /// Whether the agent is new (false: the token was rotated).
    pub created: bool,
}

/// Checks an agent name given on the command line.
pub fn validate_name(name: &str) -> Result<()> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed != name || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(Error::BadRequest(format!(
            "`{}` is not a valid agent name: use 1 to 64 characters, no control characters, no leading or trailing spaces",
            crate::sanitize::neutralize(name)
        )));
    }
    if name.starts_with("ag_") {
        return Err(Error::BadRequest("agent names must not start with `ag_` (that prefix is for agent ids)".into()));
    }
    Ok(())
}

/// Registers `name` with `manifest`, or rotates its token if it exists. Nothing is written
/// unless everything is valid.
pub fn register(store: &Store, name: &str, manifest: &Manifest, source_dir: Option<&Path>) -> Result<Registered> {
    validate_name(name)?;
    let manifest_json = serde_json::to_string(manifest).map_err(|e| Error::Internal(e.to_string()))?;
    // What is stored must parse again when the proxy loads it.
    Manifest::parse(&manifest_json, Path::new("(manifest to store)"))?;
    let token = auth::mint_token();
    let source = source_dir.map(|p| p.display().to_string());
    let (row, created) = store.upsert_agent(
        &auth::new_agent_id(),
        name,
        &manifest_json,
        source.as_deref(),
        &auth::hash_token(&token),
    )?;
    Ok(Registered { id: row.id, name: row.name, token, created })
}

/// The agent with this id or name, or a not-found error that says how to list them.
pub fn find(store: &Store, id_or_name: &str) -> Result<AgentRow> {
    store.find_agent(id_or_name)?.ok_or_else(|| {
        Error::NotFound(format!("no agent `{}` (see `assegai agents list`)", crate::sanitize::neutralize(id_or_name)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        validate_name("Local Test Agent").unwrap();
        for bad in ["", " x", "x ", "a\u{1b}b", "ag_123", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn register_stores_only_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        let store = Store::open(&db).unwrap();
        let r = register(&store, "bot", &Manifest::minimal("bot"), None).unwrap();
        assert!(r.created);
        let again = register(&store, "bot", &Manifest::minimal("bot"), None).unwrap();
        assert_eq!(again.id, r.id);
        assert_ne!(again.token, r.token);
        drop(store);
        let bytes = std::fs::read(&db).unwrap();
        let wal = std::fs::read(dir.path().join("a.db-wal")).unwrap_or_default();
        for t in [&r.token, &again.token] {
            let needle = t.as_bytes();
            assert!(!bytes.windows(needle.len()).any(|w| w == needle));
            assert!(!wal.windows(needle.len()).any(|w| w == needle));
        }
    }
}
