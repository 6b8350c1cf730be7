//! Where state lives (`Home`) and the user's settings (`config.toml`).
//!
//! Every setting has a default, so a missing file is fine; an unreadable or malformed one is an
//! error naming the file and the key, never silently ignored.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use assegai_sdk::ChainId;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The directory holding all of Assegai's state, and the paths inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `explicit` (from `--home` or `ASSEGAI_HOME`, resolved by the caller), else the platform data
    /// dir (`~/.local/share/assegai` on Linux).
    pub fn resolve(explicit: Option<PathBuf>) -> Result<Self> {
        let root = match explicit {
            Some(p) => p,
            None => dirs::data_dir()
                .ok_or_else(|| Error::Config {
                    file: PathBuf::from("$ASSEGAI_HOME"),
                    message: "cannot find a data directory for this user; set ASSEGAI_HOME".into(),
                })?
                .join("assegai"),
        };
        Ok(Home { root })
    }

    /// A home at exactly `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Home { root: root.into() }
    }

    /// Creates the directory (mode 0700: it holds the database and the admin socket).
    pub fn ensure(&self) -> Result<()> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if !self.root.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.root)
                .map_err(|e| Error::io(&self.root, e))?;
        }
        let meta = std::fs::metadata(&self.root).map_err(|e| Error::io(&self.root, e))?;
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io(&self.root, e))?;
        }
        Ok(())
    }

    /// The home directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `config.toml`.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// `assegai.db`.
    pub fn database(&self) -> PathBuf {
        self.root.join("assegai.db")
    }

    /// `admin.sock`, the proxy's admin API.
    pub fn admin_socket(&self) -> PathBuf {
        self.root.join("admin.sock")
    }

    /// `admin.token`, the capability every admin request carries (0600, new at each proxy start).
    pub fn admin_token(&self) -> PathBuf {
        self.root.join("admin.token")
    }

    /// `runners/`, one file per running `assegai run` (see [`crate::runners`]).
    pub fn runners_dir(&self) -> PathBuf {
        self.root.join("runners")
    }

    /// `keys.enc`, the encrypted-file key store.
    pub fn keys_file(&self) -> PathBuf {
        self.root.join("keys.enc")
    }

    /// `model_prices.json`, a pricing file installed by `assegai pricing update`.
    pub fn pricing_file(&self) -> PathBuf {
        self.root.join("model_prices.json")
    }

    /// `workspaces/<agent-id>/`.
    pub fn workspace(&self, agent_id: &str) -> PathBuf {
        self.root.join("workspaces").join(agent_id)
    }
}

/// A rate limit: at most `requests` per `per_secs` seconds, refilled evenly (GCRA).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests allowed per window (also the burst size).
    pub requests: u32,
    /// Window length in seconds.
    pub per_secs: u64,
}

impl RateLimit {
    fn validate(&self, key: &str, file: &Path) -> Result<()> {
        if self.requests == 0 || self.per_secs == 0 {
            return Err(Error::Config {
                file: file.to_owned(),
                message: format!("`rate_limits.{key}`: `requests` and `per_secs` must both be at least 1"),
            });
        }
        Ok(())
    }
}

/// Per-service rate limits, per agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// OpenAI calls (default 100 / 60 s).
    pub openai: RateLimit,
    /// Anthropic calls (default 50 / 60 s).
    pub anthropic: RateLimit,
    /// DeepSeek calls (default 50 / 60 s).
    pub deepseek: RateLimit,
    /// Chain reads: query-chain and /rpc share it (default 30 / 10 s).
    pub rpc: RateLimit,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            openai: RateLimit { requests: 100, per_secs: 60 },
            anthropic: RateLimit { requests: 50, per_secs: 60 },
            deepseek: RateLimit { requests: 50, per_secs: 60 },
            rpc: RateLimit { requests: 30, per_secs: 10 },
        }
    }
}

/// Settings for one chain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// JSON-RPC endpoint used when the agent's manifest names none.
    pub rpc: String,
}

/// Where one AI provider is reached.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Base URL the agent's path is appended to (the vendor's API, or a local stand-in).
    pub base_url: String,
}

/// `[providers.*]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Providers {
    /// OpenAI (default `https://api.openai.com`).
    pub openai: ProviderConfig,
    /// Anthropic (default `https://api.anthropic.com`).
    pub anthropic: ProviderConfig,
    /// DeepSeek (default `https://api.deepseek.com`).
    pub deepseek: ProviderConfig,
}

impl Default for Providers {
    fn default() -> Self {
        let at = |url: &str| ProviderConfig { base_url: url.into() };
        Providers {
            openai: at("https://api.openai.com"),
            anthropic: at("https://api.anthropic.com"),
            deepseek: at("https://api.deepseek.com"),
        }
    }
}

impl Providers {
    /// The settings of `provider`.
    pub fn get(&self, provider: crate::manifest::Provider) -> &ProviderConfig {
        use crate::manifest::Provider;
        match provider {
            Provider::Openai => &self.openai,
            Provider::Anthropic => &self.anthropic,
            Provider::Deepseek => &self.deepseek,
        }
    }
}

/// The contents of `config.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the agent-facing proxy listens on.
    pub listen: SocketAddr,
    /// RPC URL of the local development chain (31337 / 1337) when nothing else names one.
    pub local_rpc_url: String,
    /// How long a transaction request waits for a person, in seconds.
    pub approval_timeout_secs: u64,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Largest body accepted on the AI routes (prompts can be large), in bytes.
    pub max_ai_body_bytes: usize,
    /// How long an upstream (RPC node, AI provider) may take, in seconds.
    pub upstream_timeout_secs: u64,
    /// Per-agent rate limits.
    pub rate_limits: RateLimits,
    /// Per-chain settings, keyed by CAIP-2 id.
    pub chains: BTreeMap<ChainId, ChainConfig>,
    /// Where secrets are kept.
    pub keys: KeysConfig,
    /// AI providers.
    pub providers: Providers,
}

/// `[keys]`: the key store.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// `auto` (the OS key store when one answers, else `keys.enc`), `keyring` or `file`.
    pub backend: crate::keys::BackendChoice,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8765)),
            local_rpc_url: "http://localhost:8545".into(),
            approval_timeout_secs: 300,
            max_body_bytes: 1024 * 1024,
            max_ai_body_bytes: 32 * 1024 * 1024,
            upstream_timeout_secs: 30,
            rate_limits: RateLimits::default(),
            chains: BTreeMap::new(),
            keys: KeysConfig::default(),
            providers: Providers::default(),
        }
    }
}

impl Config {
    /// Reads `config.toml` from `home`; a missing file gives the defaults.
    pub fn load(home: &Home) -> Result<Self> {
        let path = home.config_file();
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Parses and validates the text of a config file.
    pub fn parse(text: &str, file: &Path) -> Result<Self> {
        let config: Config = toml::from_str(text)
            .map_err(|e| Error::Config { file: file.to_owned(), message: e.to_string().trim_end().to_owned() })?;
        for (key, limit) in [
            ("openai", &config.rate_limits.openai),
            ("anthropic", &config.rate_limits.anthropic),
            ("deepseek", &config.rate_limits.deepseek),
            ("rpc", &config.rate_limits.rpc),
        ] {
            limit.validate(key, file)?;
        }
        let bad = |message: String| Err(Error::Config { file: file.to_owned(), message });
        if config.approval_timeout_secs == 0 {
            return bad("`approval_timeout_secs` must be at least 1".into());
        }
        if config.upstream_timeout_secs == 0 {
            return bad("`upstream_timeout_secs` must be at least 1".into());
        }
        if config.max_body_bytes < 1024 {
            return bad("`max_body_bytes` must be at least 1024".into());
        }
        if let Err(e) = crate::chain::parse_rpc_url(&config.local_rpc_url) {
            return bad(format!("`local_rpc_url`: {e}"));
        }
        for (name, p) in [
            ("openai", &config.providers.openai),
            ("anthropic", &config.providers.anthropic),
            ("deepseek", &config.providers.deepseek),
        ] {
            if let Err(e) = crate::chain::parse_rpc_url(&p.base_url) {
                return bad(format!("`providers.{name}.base_url`: {e}"));
            }
        }
        for (chain, c) in &config.chains {
            if let Err(e) = crate::chain::parse_rpc_url(&c.rpc) {
                return bad(format!("`chains.\"{chain}\".rpc`: {e}"));
            }
        }
        Ok(config)
    }

    /// [`approval_timeout_secs`](Self::approval_timeout_secs) as a duration.
    pub fn approval_timeout(&self) -> Duration {
        Duration::from_secs(self.approval_timeout_secs)
    }

    /// [`upstream_timeout_secs`](Self::upstream_timeout_secs) as a duration.
    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_secs(self.upstream_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config> {
        Config::parse(s, Path::new("/h/config.toml"))
    }

    #[test]
    fn empty_file_is_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn overrides_and_chains() {
        let c = parse(
            r#"
            listen = "127.0.0.1:9000"
            approval_timeout_secs = 5
            [rate_limits]
            rpc = { requests = 3, per_secs = 1000 }
            [chains."eip155:1"]
            rpc = "https://eth.example"
            "#,
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.rate_limits.rpc, RateLimit { requests: 3, per_secs: 1000 });
        assert_eq!(c.rate_limits.openai.requests, 100);
        assert_eq!(c.chains[&ChainId::eip155(1)].rpc, "https://eth.example");
    }

    #[test]
    fn mistakes_name_the_file_and_key() {
        let msg = |s: &str| parse(s).unwrap_err().to_string();
        let m = msg("listn = \"x\"");
        assert!(m.contains("/h/config.toml") && m.contains("listn"), "{m}");
        let m = msg("[chains.\"eth:1\"]\nrpc = \"http://x\"");
        assert!(m.contains("eip155"), "{m}");
        let m = msg("[rate_limits]\nrpc = { requests = 0, per_secs = 1 }");
        assert!(m.contains("rate_limits.rpc"), "{m}");
        let m = msg("local_rpc_url = \"localhost:8545\"");
        assert!(m.contains("local_rpc_url"), "{m}");
    }
}
