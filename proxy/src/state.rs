//! What every handler shares ([`AppState`]): the settings, the database, the caches and
//! clients, and the one way to call the database from async code ([`AppState::db`]).

use std::{net::SocketAddr, sync::Arc};

use crate::{
    Error, Result, admin,
    ai::{self, credentials::Credentials, pricing::Pricing},
    auth::AgentCache,
    chain::ChainClient,
    config::Config,
    logs::LogSink,
    ratelimit::RateLimiter,
    store::{NewUsage, Store},
    upstream::Upstream,
};

/// [`AppState::db`] for code that holds the database but not the state (the agent cache).
pub async fn db<T, E>(
    store: &Arc<Store>,
    call: impl FnOnce(&Store) -> std::result::Result<T, E> + Send + 'static,
) -> Result<T>
where
    T: Send + 'static,
    E: Into<Error> + Send + 'static,
{
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || call(&store))
        .await
        .map_err(|e| Error::Internal(format!("a database call stopped: {e}")))?
        .map_err(Into::into)
}

/// Everything handlers share. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

/// What [`AppState`] holds; built once, by `server::start`.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: Arc<Config>,
    pub(crate) store: Arc<Store>,
    pub(crate) agents: AgentCache,
    pub(crate) limits: RateLimiter,
    pub(crate) chain: ChainClient,
    pub(crate) upstream: Upstream,
    pub(crate) credentials: Credentials,
    /// Swapped whole by `assegai pricing update`; calls in flight keep the prices they started with.
    pub(crate) pricing: std::sync::RwLock<Arc<Pricing>>,
    pub(crate) pricing_file: std::path::PathBuf,
    pub(crate) usage: tokio::sync::mpsc::UnboundedSender<NewUsage>,
    pub(crate) metering: ai::meter::Metering,
    pub(crate) approvals: crate::tx::Approvals,
    pub(crate) signer: crate::tx::signer::Signer,
    pub(crate) wallet: crate::wallet::Wallet,
    pub(crate) logs: LogSink,
    pub(crate) listen: SocketAddr,
    pub(crate) started_at: i64,
    /// This proxy's name on the requests it holds (see [`holder_name`]).
    pub(crate) holder: String,
}

/// How a proxy names itself on the requests it holds, for people deciding them from another host
/// (`host (home)`): the host, and the home that tells two proxies of one host apart.
pub fn holder_name(home: &crate::config::Home) -> String {
    let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "?".into());
    let root = std::path::absolute(home.root()).unwrap_or_else(|_| home.root().to_owned());
    format!("{host} ({})", root.display())
}

impl AppState {
    pub(crate) fn new(inner: Inner) -> Self {
        AppState(Arc::new(inner))
    }

    /// Runs `call` with the database on the blocking pool: every store call blocks on SQLite, and
    /// a handler must not hold a runtime thread while it does.
    pub async fn db<T, E>(&self, call: impl FnOnce(&Store) -> std::result::Result<T, E> + Send + 'static) -> Result<T>
    where
        T: Send + 'static,
        E: Into<Error> + Send + 'static,
    {
        db(&self.0.store, call).await
    }

    /// This proxy's name on the requests it holds.
    pub fn holder(&self) -> &str {
        &self.0.holder
    }

    /// The settings in force.
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// The database.
    pub fn store(&self) -> &Arc<Store> {
        &self.0.store
    }

    /// Verified agents.
    pub fn agents(&self) -> &AgentCache {
        &self.0.agents
    }

    /// Rate limits.
    pub fn limits(&self) -> &RateLimiter {
        &self.0.limits
    }

    /// Chain forwarding.
    pub fn chain(&self) -> &ChainClient {
        &self.0.chain
    }

    /// Agent log lines.
    pub fn logs(&self) -> &LogSink {
        &self.0.logs
    }

    /// The shared upstream HTTP client.
    pub fn upstream(&self) -> &Upstream {
        &self.0.upstream
    }

    /// Provider keys.
    pub fn credentials(&self) -> &Credentials {
        &self.0.credentials
    }

    /// Model prices.
    pub fn pricing(&self) -> Arc<Pricing> {
        self.0.pricing.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Re-reads the installed pricing file (or goes back to the embedded snapshot when it is gone);
    /// returns how many models are priced now. A file that does not parse leaves the prices as
    /// they were.
    pub fn reload_pricing(&self) -> Result<usize> {
        let file = &self.0.pricing_file;
        let (pricing, _) = Pricing::installed_or_embedded(file)
            .map_err(|e| Error::Config { file: file.clone(), message: e.to_string() })?;
        let models = pricing.len();
        *self.0.pricing.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(pricing);
        Ok(models)
    }

    /// Transaction requests waiting for a person.
    pub fn approvals(&self) -> &crate::tx::Approvals {
        &self.0.approvals
    }

    /// The wallet's signer.
    pub fn signer(&self) -> &crate::tx::signer::Signer {
        &self.0.signer
    }

    /// The user's wallet.
    pub fn wallet(&self) -> &crate::wallet::Wallet {
        &self.0.wallet
    }

    /// Where AI usage rows go.
    pub fn usage_sink(&self) -> &tokio::sync::mpsc::UnboundedSender<NewUsage> {
        &self.0.usage
    }

    /// AI budgets and the metering of replies to their end.
    pub fn metering(&self) -> &ai::meter::Metering {
        &self.0.metering
    }

    /// What the admin API reports.
    pub fn status(&self) -> admin::Status {
        admin::Status {
            pid: std::process::id(),
            listen: self.0.listen.to_string(),
            version: env!("CARGO_PKG_VERSION").into(),
            started_at: self.0.started_at,
        }
    }
}
