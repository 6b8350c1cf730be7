//! Provider keys as the running proxy sees them: read from the key store the first time a request
//! needs one, then held in memory (zeroised on drop) until `assegai keys set/remove` tells the
//! proxy over the admin socket that they changed. Key-store calls (D-Bus, file decryption) run on
//! the blocking pool, never on the request path's async threads.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use crate::{
    Error, Result,
    keys::{KeyStore, Secret},
    manifest::Provider,
};

/// Provider keys, loaded on demand.
#[derive(Debug)]
pub struct Credentials {
    store: Result<Arc<dyn KeyStore>, String>,
    cache: RwLock<HashMap<Provider, Arc<Secret>>>,
}

impl Credentials {
    /// Keys from `store`, or, when the store could not be opened, the reason (AI calls then fail
    /// with it).
    pub fn new(store: Result<Arc<dyn KeyStore>, String>) -> Self {
        Credentials { store, cache: RwLock::new(HashMap::new()) }
    }

    /// A description of the backend in use, or why there is none.
    pub fn describe(&self) -> String {
        match &self.store {
            Ok(s) => s.describe(),
            Err(why) => format!("unavailable ({why})"),
        }
    }

    /// Whether a key store was opened (keys stored later can then be read without a restart).
    pub fn has_store(&self) -> bool {
        self.store.is_ok()
    }

    /// Forgets every cached key.
    pub fn invalidate(&self) {
        self.cache.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The key for `provider`.
    pub async fn get(&self, provider: Provider) -> Result<Arc<Secret>> {
        if let Some(k) = self.cache.read().unwrap_or_else(|p| p.into_inner()).get(&provider) {
            return Ok(k.clone());
        }
        let store = self.store.as_ref().map_err(|why| Error::KeyStoreUnavailable(why.clone()))?.clone();
        let secret = tokio::task::spawn_blocking(move || store.get(provider.as_str()))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(|e| Error::KeyStoreUnavailable(e.to_string()))?
            .ok_or(Error::KeyNotConfigured(provider))?;
        let secret = Arc::new(secret);
        self.cache.write().unwrap_or_else(|p| p.into_inner()).insert(provider, secret.clone());
        Ok(secret)
    }
}
