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
    pub fn workspace(&self, agent_id: &crate::ids::AgentId) -> PathBuf {
        self.root.join("workspaces").join(agent_id.as_str())
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
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// The user's JSON-RPC endpoint: it serves reads when the agent's manifest names none, and it
    /// always signs, fixes nonces and fees (an agent's manifest must not choose what it pays).
    #[serde(default)]
    pub rpc: Option<String>,
    /// Refuse requests whose max fee per gas is above this many gwei (default
    /// [`DEFAULT_MAX_FEE_PER_GAS_GWEI`]).
    #[serde(default)]
    pub max_fee_per_gas_gwei: Option<GweiAmount>,
    /// Refuse requests whose worst-case fee (gas limit × max fee per gas) is above this, in the
    /// chain's native currency (default [`DEFAULT_MAX_FEE_ETH`]).
    #[serde(default)]
    pub max_fee_eth: Option<crate::manifest::NativeAmount>,
}

/// A gwei amount ("500", "0.5"), exact to the wei.
pub type GweiAmount = crate::manifest::Amount<9>;

/// The cap on max fee per gas where `config.toml` sets none: far above what a transfer needs on
/// Ethereum on an ordinary day (a few to tens of gwei), and below what a node lying about fees
/// would ask.
pub const DEFAULT_MAX_FEE_PER_GAS_GWEI: &str = "500";
/// The cap on one request's worst-case fee where `config.toml` sets none, in the native currency.
pub const DEFAULT_MAX_FEE_ETH: &str = "0.05";

/// The fee caps that apply on one chain, in wei.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeeCaps {
    /// Largest max fee per gas.
    pub max_fee_per_gas: alloy_primitives::U256,
    /// Largest worst-case fee of one request.
    pub max_fee: alloy_primitives::U256,
}

/// Where one AI provider is reached, and what the user lets agents do with the key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Base URL the agent's path is appended to (the vendor's API, or a local stand-in); the
    /// vendor's own when the table leaves it out.
    #[serde(default)]
    pub base_url: String,
    /// Endpoints beyond the built-in inference ones that agents may call with the user's key,
    /// e.g. `["POST /v1/audio/speech", "GET /v1/files/*"]` (see [`crate::ai::endpoints`]).
    #[serde(default)]
    pub extra_endpoints: Vec<crate::ai::endpoints::Endpoint>,
    /// `OpenAI-Organization` sent with every call (OpenAI only); agents cannot choose it.
    #[serde(default)]
    pub organization: Option<String>,
    /// `OpenAI-Project` sent with every call (OpenAI only); agents cannot choose it.
    #[serde(default)]
    pub project: Option<String>,
}

impl ProviderConfig {
    /// A provider at `base_url`, with nothing else set.
    pub fn new(base_url: &str) -> Self {
        ProviderConfig { base_url: base_url.into(), extra_endpoints: Vec::new(), organization: None, project: None }
    }
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
        Providers {
            openai: ProviderConfig::new("https://api.openai.com"),
            anthropic: ProviderConfig::new("https://api.anthropic.com"),
            deepseek: ProviderConfig::new("https://api.deepseek.com"),
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
    /// Most agent connections open at once; past it, new ones only get `/health` (see
    /// [`crate::server`]).
    pub max_connections: usize,
    /// Per-agent rate limits.
    pub rate_limits: RateLimits,
    /// Per-chain settings, keyed by CAIP-2 id.
    pub chains: BTreeMap<ChainId, ChainConfig>,
    /// Where secrets are kept.
    pub keys: KeysConfig,
    /// AI providers.
    pub providers: Providers,
    /// AI metering and budgets.
    pub ai: AiSettings,
    /// `redis://…`: the per-agent rate limits are shared with every proxy using this Redis (see
    /// [`crate::ratelimit`]); without it, each proxy limits on its own.
    pub redis_url: Option<String>,
    /// `postgres://…`: the team's shared database instead of `assegai.db` in the home (see
    /// [`crate::store`]); `ASSEGAI_DATABASE_URL` overrides it.
    pub database_url: Option<String>,
    /// Where `database_url` came from (the file, or the environment).
    #[serde(skip)]
    pub database_url_source: Source,
}

/// `[ai]`: how AI calls are metered and held to budgets (see [`crate::ai::meter`] and
/// [`crate::ai::budget`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AiSettings {
    /// How long the proxy goes on reading a reply its agent stopped reading, for the provider's
    /// usage, in seconds (default 600); then the call is recorded as an estimate.
    pub abandoned_reply_secs: u64,
    /// How many bytes of such a reply it reads at most (default 64 MiB).
    pub abandoned_reply_bytes: u64,
    /// For an agent with an AI budget: the output tokens reserved, and set in the request, when
    /// neither the request nor the price list gives the model's maximum (default 8192).
    pub default_max_output_tokens: u64,
}

impl Default for AiSettings {
    fn default() -> Self {
        AiSettings {
            abandoned_reply_secs: 600,
            abandoned_reply_bytes: 64 * 1024 * 1024,
            default_max_output_tokens: 8192,
        }
    }
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
            max_connections: 1024,
            rate_limits: RateLimits::default(),
            chains: BTreeMap::new(),
            keys: KeysConfig::default(),
            providers: Providers::default(),
            ai: AiSettings::default(),
            redis_url: None,
            database_url: None,
            database_url_source: Source::Default,
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
        let mut config: Config = toml::from_str(text)
            .map_err(|e| Error::Config { file: file.to_owned(), message: e.to_string().trim_end().to_owned() })?;
        for (key, limit) in [
            ("openai", &config.rate_limits.openai),
            ("anthropic", &config.rate_limits.anthropic),
            ("deepseek", &config.rate_limits.deepseek),
            ("rpc", &config.rate_limits.rpc),
        ] {
            limit.validate(key, file)?;
        }
        let defaults = Providers::default();
        for (p, default) in [
            (&mut config.providers.openai, defaults.openai),
            (&mut config.providers.anthropic, defaults.anthropic),
            (&mut config.providers.deepseek, defaults.deepseek),
        ] {
            if p.base_url.is_empty() {
                p.base_url = default.base_url;
            }
        }
        let bad = |message: String| Err(Error::Config { file: file.to_owned(), message });
        if config.approval_timeout_secs == 0 {
            return bad("`approval_timeout_secs` must be at least 1".into());
        }
        if config.ai.default_max_output_tokens < crate::ai::budget::MIN_OUTPUT_TOKENS {
            return bad(format!(
                "`ai.default_max_output_tokens` must be at least {}",
                crate::ai::budget::MIN_OUTPUT_TOKENS
            ));
        }
        if config.upstream_timeout_secs == 0 {
            return bad("`upstream_timeout_secs` must be at least 1".into());
        }
        if config.max_body_bytes < 1024 {
            return bad("`max_body_bytes` must be at least 1024".into());
        }
        if config.max_connections == 0 {
            return bad("`max_connections` must be at least 1".into());
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
            for (key, value) in [("organization", &p.organization), ("project", &p.project)] {
                let Some(value) = value else { continue };
                if name != "openai" {
                    return bad(format!("`providers.{name}.{key}`: only OpenAI has organizations and projects"));
                }
                if value.is_empty() || axum::http::HeaderValue::from_str(value).is_err() {
                    return bad(format!("`providers.{name}.{key}`: `{value}` is not a valid header value"));
                }
            }
        }
        if let Some(url) = &config.redis_url {
            match url::Url::parse(url) {
                Ok(u) if u.scheme() == "redis" && u.host_str().is_some() => {}
                Ok(_) => return bad("`redis_url`: give a `redis://host:port` URL".into()),
                Err(e) => return bad(format!("`redis_url`: {e}")),
            }
        }
        if let Some(url) = &config.database_url {
            if let Err(e) = check_database_url(url) {
                return bad(format!("`database_url`: {e}"));
            }
            config.database_url_source = Source::File;
        }
        for (chain, c) in &config.chains {
            if let Some(Err(e)) = c.rpc.as_deref().map(crate::chain::parse_rpc_url) {
                return bad(format!("`chains.\"{chain}\".rpc`: {e}"));
            }
        }
        Ok(config)
    }

    /// The fee caps for `chain`: `[chains."…"]`'s, else the defaults.
    pub fn fee_caps(&self, chain: ChainId) -> FeeCaps {
        let c = self.chains.get(&chain);
        let default = |text: &str, decimals: u8| crate::units::parse_units(text, decimals).unwrap_or_default();
        FeeCaps {
            max_fee_per_gas: c
                .and_then(|c| c.max_fee_per_gas_gwei.as_ref())
                .map_or_else(|| default(DEFAULT_MAX_FEE_PER_GAS_GWEI, 9), |a| a.base_units()),
            max_fee: c
                .and_then(|c| c.max_fee_eth.as_ref())
                .map_or_else(|| default(DEFAULT_MAX_FEE_ETH, 18), |a| a.base_units()),
        }
    }

    /// The user's own RPC for `chain` (`[chains."…"] rpc`), which signs when it is set.
    pub fn user_rpc(&self, chain: ChainId) -> Option<&str> {
        self.chains.get(&chain).and_then(|c| c.rpc.as_deref())
    }

    /// Every setting as it applies, for `assegai config`: each key `config.toml` knows, with its
    /// value (the file's, else the default) and where it came from. `file_text` is the file as
    /// read, to tell which keys it sets (`None`: there is no file). Each chain with a table of its
    /// own shows the fee caps that apply to it, and `chains."*"` those of every other chain.
    ///
    /// URLs are shown only as [`crate::chain::shown_url`] shows them: a provider's RPC URL often
    /// carries its API key. Nothing else in the file is a secret (keys live in the key store).
    pub fn effective(&self, file_text: Option<&str>) -> Vec<Setting> {
        let file = file_text.and_then(|t| t.parse::<toml::Table>().ok()).unwrap_or_default();
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(chains) = value.get_mut("chains").and_then(serde_json::Value::as_object_mut) {
            let defaults = ChainConfig {
                rpc: None,
                max_fee_per_gas_gwei: GweiAmount::parse(DEFAULT_MAX_FEE_PER_GAS_GWEI).ok(),
                max_fee_eth: crate::manifest::NativeAmount::parse(DEFAULT_MAX_FEE_ETH).ok(),
            };
            let defaults = serde_json::to_value(&defaults).unwrap_or_default();
            for chain in chains.values_mut() {
                for key in ["max_fee_per_gas_gwei", "max_fee_eth"] {
                    if chain[key].is_null() {
                        chain[key] = defaults[key].clone();
                    }
                }
            }
            let mut others = defaults;
            if let Some(o) = others.as_object_mut() {
                o.remove("rpc");
            }
            chains.insert("*".into(), others);
        }
        // Organizations and projects are OpenAI's alone: elsewhere they are mistakes, not settings.
        for provider in ["anthropic", "deepseek"] {
            if let Some(p) =
                value.get_mut("providers").and_then(|p| p.get_mut(provider)).and_then(|p| p.as_object_mut())
            {
                p.remove("organization");
                p.remove("project");
            }
        }
        let mut out = Vec::new();
        flatten_settings(self, &mut out, &mut Vec::new(), &value, &file);
        // As a file reads: the top-level keys first, then the tables.
        out.sort_by_key(|s| s.key.contains('.'));
        out
    }

    /// `ASSEGAI_DATABASE_URL`, which names the shared database in place of the file's
    /// `database_url` (an empty value is no override).
    pub fn with_database_url_from_env(mut self, url: Option<String>) -> std::result::Result<Self, String> {
        if let Some(url) = url.filter(|u| !u.is_empty()) {
            check_database_url(&url).map_err(|e| format!("{}: {e}", assegai_sdk::env::DATABASE_URL))?;
            self.database_url = Some(url);
            self.database_url_source = Source::Environment;
        }
        Ok(self)
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

/// Where the value of a setting comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum Source {
    /// Nothing sets it: the built-in default.
    #[serde(rename = "default")]
    #[default]
    Default,
    /// `config.toml` sets it.
    #[serde(rename = "config.toml")]
    File,
    /// An environment variable sets it (`ASSEGAI_DATABASE_URL`).
    #[serde(rename = "environment")]
    Environment,
}

/// A shared database's URL: `postgres://` (or `postgresql://`) with a host, so that it can be
/// shown without its password (see [`crate::chain::shown_url`]).
fn check_database_url(url: &str) -> std::result::Result<(), String> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") && u.host_str().is_some_and(|h| !h.is_empty()) => {
            Ok(())
        }
        Ok(_) => Err("give a `postgres://user:password@host:port/database` URL".into()),
        // The parser's message never repeats the URL.
        Err(e) => Err(format!("not a URL ({e})")),
    }
}

/// One setting as it applies (see [`Config::effective`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting {
    /// The key as `config.toml` spells it, tables joined with dots: `chains."eip155:1".rpc`.
    pub key: String,
    /// The value; `null` for an optional key nothing sets.
    pub value: serde_json::Value,
    /// Where the value comes from.
    pub source: Source,
    /// Whether part of the value is left out: a URL's path, query or user info.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shortened: bool,
}

/// Adds one [`Setting`] per leaf of `value` (tables are walked; arrays are values).
fn flatten_settings(
    config: &Config,
    out: &mut Vec<Setting>,
    path: &mut Vec<String>,
    value: &serde_json::Value,
    file: &toml::Table,
) {
    if let serde_json::Value::Object(table) = value {
        for (key, v) in table {
            path.push(key.clone());
            flatten_settings(config, out, path, v, file);
            path.pop();
        }
        return;
    }
    let mut in_file = Some(file);
    let mut set = false;
    for (i, key) in path.iter().enumerate() {
        let Some(entry) = in_file.and_then(|t| t.get(key)) else { break };
        set = i + 1 == path.len();
        in_file = entry.as_table();
    }
    let (value, shortened) = match value {
        serde_json::Value::String(text) => match crate::chain::shown_url(text) {
            Some(shown) => (serde_json::Value::String(shown), crate::chain::url_is_shortened(text)),
            None => (value.clone(), false),
        },
        _ => (value.clone(), false),
    };
    let key = path
        .iter()
        .map(|k| {
            let bare = !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if bare { k.clone() } else { format!("\"{k}\"") }
        })
        .collect::<Vec<_>>()
        .join(".");
    let source = match (set, key.as_str()) {
        (_, "database_url") => config.database_url_source,
        (true, _) => Source::File,
        (false, _) => Source::Default,
    };
    out.push(Setting { key, value, source, shortened });
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
        assert_eq!(c.chains[&ChainId::eip155(1)].rpc.as_deref(), Some("https://eth.example"));
    }

    #[test]
    fn fee_caps_default_and_per_chain() {
        let c = parse(
            r#"
            [chains."eip155:1"]
            max_fee_per_gas_gwei = "100"
            max_fee_eth = "0.01"
            "#,
        )
        .unwrap();
        let gwei = alloy_primitives::U256::from(1_000_000_000_u64);
        let caps = c.fee_caps(ChainId::eip155(1));
        assert_eq!(caps.max_fee_per_gas, gwei * alloy_primitives::U256::from(100));
        assert_eq!(caps.max_fee, gwei * alloy_primitives::U256::from(10_000_000));
        assert_eq!(c.user_rpc(ChainId::eip155(1)), None, "caps alone name no RPC");
        let other = c.fee_caps(ChainId::eip155(10));
        assert_eq!(other.max_fee_per_gas, gwei * alloy_primitives::U256::from(500));
        assert_eq!(other.max_fee, gwei * alloy_primitives::U256::from(50_000_000));
        assert!(parse("[chains.\"eip155:1\"]\nmax_fee_eth = \"-1\"\n").is_err());
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
        let m = msg("[providers.openai]\nbase_url = \"https://x\"\nextra_endpoints = [\"POST v1/x\"]");
        assert!(m.contains("extra_endpoints") && m.contains("POST v1/x"), "{m}");
        let m = msg("[providers.anthropic]\nbase_url = \"https://x\"\norganization = \"org\"");
        assert!(m.contains("providers.anthropic.organization"), "{m}");
        let m = msg("max_connections = 0");
        assert!(m.contains("max_connections"), "{m}");
    }

    #[test]
    fn effective_settings_say_where_they_come_from_and_hide_url_paths() {
        let text = r#"
            approval_timeout_secs = 60
            [rate_limits]
            rpc = { requests = 3, per_secs = 1000 }
            [chains."eip155:1"]
            rpc = "https://user:pw@eth.example:8443/v3/sekrit?apikey=sekrit2"
            max_fee_eth = "0.01"
            "#;
        let settings = parse(text).unwrap().effective(Some(text));
        let get =
            |key: &str| settings.iter().find(|s| s.key == key).unwrap_or_else(|| panic!("no {key}: {settings:?}"));
        let file = |key: &str, value: serde_json::Value| {
            assert_eq!((&get(key).value, get(key).source), (&value, Source::File), "{key}");
        };
        let default = |key: &str, value: serde_json::Value| {
            assert_eq!((&get(key).value, get(key).source), (&value, Source::Default), "{key}");
        };
        file("approval_timeout_secs", 60.into());
        default("listen", "127.0.0.1:8765".into());
        default("local_rpc_url", "http://localhost:8545".into());
        file("rate_limits.rpc.requests", 3.into());
        default("rate_limits.openai.per_secs", 60.into());
        file("chains.\"eip155:1\".rpc", "https://eth.example:8443".into());
        assert!(get("chains.\"eip155:1\".rpc").shortened);
        assert!(!get("local_rpc_url").shortened);
        file("chains.\"eip155:1\".max_fee_eth", "0.01".into());
        default("chains.\"eip155:1\".max_fee_per_gas_gwei", DEFAULT_MAX_FEE_PER_GAS_GWEI.into());
        default("chains.\"*\".max_fee_eth", DEFAULT_MAX_FEE_ETH.into());
        default("providers.openai.organization", serde_json::Value::Null);
        assert!(settings.iter().all(|s| s.key != "providers.anthropic.project"), "OpenAI only");
        default("providers.deepseek.extra_endpoints", serde_json::json!([]));
        default("ai.default_max_output_tokens", 8192.into());
        default("keys.backend", "auto".into());
        let all = format!("{settings:?}");
        assert!(!all.contains("sekrit") && !all.contains("pw@"), "{all}");
        // Top-level keys first, as a file has them.
        let first_table = settings.iter().position(|s| s.key.contains('.')).unwrap();
        assert!(settings[first_table..].iter().all(|s| s.key.contains('.')), "{settings:?}");
        assert!(Config::default().effective(None).iter().all(|s| s.source == Source::Default));
    }

    #[test]
    fn the_shared_database_url_is_checked_shown_without_its_password_and_taken_from_the_environment() {
        for bad in ["mysql://h/db", "postgres:///db", "host=db password=sekrit", "redis://h:1"] {
            let text = format!("database_url = {bad:?}");
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains("`database_url`") && !e.contains("sekrit"), "{e}");
        }
        let text = r#"database_url = "postgres://team:sekrit@db.internal:5433/assegai""#;
        let config = parse(text).unwrap();
        let shown = config.effective(Some(text));
        let url = shown.iter().find(|s| s.key == "database_url").unwrap();
        assert_eq!((&url.value, url.source), (&"postgres://db.internal:5433".into(), Source::File));
        assert!(!format!("{shown:?}").contains("sekrit"));

        let env = config.clone().with_database_url_from_env(Some("postgresql://u:p2@other:5432/x".into())).unwrap();
        assert_eq!(env.database_url.as_deref(), Some("postgresql://u:p2@other:5432/x"));
        let url = env.effective(Some(text)).into_iter().find(|s| s.key == "database_url").unwrap();
        assert_eq!((url.value, url.source), ("postgresql://other:5432".into(), Source::Environment));
        assert_eq!(config.clone().with_database_url_from_env(Some(String::new())).unwrap(), config, "empty: none");
        let e = Config::default().with_database_url_from_env(Some("sqlite://x:sekrit@h".into())).unwrap_err();
        assert!(e.starts_with("ASSEGAI_DATABASE_URL: ") && !e.contains("sekrit"), "{e}");
    }

    #[test]
    fn provider_settings() {
        let c = parse(
            r#"
            max_connections = 64
            [providers.openai]
            base_url = "https://api.openai.com"
            extra_endpoints = ["POST /v1/audio/speech"]
            organization = "org-abc"
            project = "proj_def"
            "#,
        )
        .unwrap();
        assert_eq!(c.max_connections, 64);
        let p = &c.providers.openai;
        assert_eq!(p.extra_endpoints, vec!["POST /v1/audio/speech".parse().unwrap()]);
        assert_eq!((p.organization.as_deref(), p.project.as_deref()), (Some("org-abc"), Some("proj_def")));
        assert!(c.providers.anthropic.extra_endpoints.is_empty());
        // A table that only opens an endpoint keeps the vendor's URL.
        let c = parse("[providers.openai]\nextra_endpoints = [\"POST /v1/audio/speech\"]").unwrap();
        assert_eq!(c.providers.openai.base_url, "https://api.openai.com");
    }
}
