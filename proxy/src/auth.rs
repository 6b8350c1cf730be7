//! Agent credentials: minting tokens, hashing them, and checking every request's headers.
//!
//! Tokens are 256 random bits, shown once, stored only as a SHA-256 hash (a slow hash adds
//! nothing for a uniformly random secret of this size) and compared in constant time. Verified
//! agents are cached in memory; the CLI tells a running proxy over the admin socket when an
//! agent changes, and a token that does not match the cache is re-checked against the database
//! once before being refused, so a rotation is never missed.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use axum::{extract::Request, extract::State, middleware::Next, response::Response};
use rand::TryRngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{Error, Result, ids::AgentId, manifest::Manifest, state::AppState, store::Store};

/// A fresh agent token: `asg_` and 64 hex digits (256 bits from the OS generator).
pub fn mint_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).expect("the OS random number generator failed");
    format!("asg_{}", hex::encode(bytes))
}

/// A fresh agent id: `ag_` and 16 hex digits.
pub fn new_agent_id() -> AgentId {
    let mut bytes = [0u8; 8];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).expect("the OS random number generator failed");
    AgentId::from_random(&bytes)
}

/// The stored form of a token.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A verified agent, as handlers see it.
#[derive(Debug)]
pub struct Agent {
    /// Stable id.
    pub id: AgentId,
    /// Display name.
    pub name: String,
    /// Its validated manifest.
    pub manifest: Manifest,
    /// Paused by the kill switch.
    pub paused: bool,
    token_hash: [u8; 32],
}

/// Verified agents by id, backed by the database.
#[derive(Debug)]
pub struct AgentCache {
    store: Arc<Store>,
    agents: RwLock<HashMap<AgentId, Arc<Agent>>>,
}

impl AgentCache {
    /// An empty cache over `store`.
    pub fn new(store: Arc<Store>) -> Self {
        AgentCache { store, agents: RwLock::new(HashMap::new()) }
    }

    /// Forgets an agent, so the next request re-reads it from the database.
    pub fn invalidate(&self, id: &str) {
        self.agents.write().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// Forgets every agent (after missing announcements of changes, see [`follow_changes`]).
    pub fn clear(&self) {
        self.agents.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Checks an id and token; returns the agent, or why it is refused.
    pub async fn authenticate(&self, id: &str, token: &str) -> Result<Arc<Agent>> {
        let hash = hash_token(token);
        let cached = self.agents.read().unwrap_or_else(|p| p.into_inner()).get(id).cloned();
        if let Some(agent) = cached
            && bool::from(agent.token_hash.ct_eq(&hash))
        {
            return Ok(agent);
        }
        // An id that is not one cannot be registered: refused without a look at the database.
        let id: AgentId = id.parse().map_err(|_| Error::InvalidCredentials)?;
        let agent = self.load(&id).await?.ok_or(Error::InvalidCredentials)?;
        if bool::from(agent.token_hash.ct_eq(&hash)) { Ok(agent) } else { Err(Error::InvalidCredentials) }
    }

    /// The agent with this id (or name) as registered, whether or not it holds a token (for the
    /// user's own requests about it; never cached, never authenticates anything).
    pub async fn registered(&self, id_or_name: &str) -> Result<Arc<Agent>> {
        let key = id_or_name.to_owned();
        let row = crate::state::db(&self.store, move |s| crate::agents::find(s, &key)).await?;
        let manifest = row.manifest()?.clone();
        Ok(Arc::new(Agent { id: row.id, name: row.name, manifest, paused: row.paused, token_hash: [0; 32] }))
    }

    async fn load(&self, id: &AgentId) -> Result<Option<Arc<Agent>>> {
        let key = id.clone();
        let row = crate::state::db(&self.store, move |s| s.agent(&key)).await?;
        let Some(row) = row else {
            self.invalidate(id.as_str());
            return Ok(None);
        };
        let Some(token_hash) = row.token_hash else { return Ok(None) };
        let manifest = row.manifest()?.clone();
        let agent = Arc::new(Agent { id: row.id, name: row.name, manifest, paused: row.paused, token_hash });
        self.agents.write().unwrap_or_else(|p| p.into_inner()).insert(agent.id.clone(), agent.clone());
        Ok(Some(agent))
    }
}

/// On a shared database, agents change on other hosts too (`assegai agents pause`, a new token,
/// a revocation): each announced change drops the agent from this proxy's cache, so the next
/// request reads it again; after a reconnection, whose missed announcements are unknown, the whole
/// cache goes.
pub async fn follow_changes(cache: &AgentCache, mut changed: tokio::sync::mpsc::UnboundedReceiver<Option<String>>) {
    while let Some(announced) = changed.recv().await {
        match announced {
            Some(id) => cache.invalidate(&id),
            None => cache.clear(),
        }
    }
}

/// Middleware on every agent route: verifies the headers and puts the [`Agent`] in the request's
/// extensions.
pub async fn require_agent(State(state): State<AppState>, mut req: Request, next: Next) -> Result<Response> {
    use assegai_sdk::env::{HEADER_AGENT_ID, HEADER_AGENT_TOKEN};
    // Owned copies: the request body is not `Sync`, so no borrow of the request may live across
    // the await below.
    let (id, token) = {
        let header =
            |name| req.headers().get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()).map(str::to_owned);
        match (header(HEADER_AGENT_ID), header(HEADER_AGENT_TOKEN)) {
            (Some(id), Some(token)) => (id, token),
            _ => return Err(Error::MissingCredentials),
        }
    };
    if id.len() > 128 || token.len() > 256 {
        return Err(Error::InvalidCredentials);
    }
    let agent = state.agents().authenticate(&id, &token).await?;
    if agent.paused {
        return Err(Error::AgentPaused);
    }
    req.extensions_mut().insert(agent);
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hashed() {
        let a = mint_token();
        let b = mint_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 64);
        assert_ne!(hash_token(&a), hash_token(&b));
        assert_eq!(hash_token(&a), hash_token(&a));
    }
}
