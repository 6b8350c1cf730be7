//! Every `ASSEGAI_*` environment variable name, in one place.
//!
//! The CLI sets these for an agent it starts, the proxy reads the home directory from them, and
//! the SDK reads the agent's credentials from them. Nothing else spells these names.

/// Base URL of the proxy an agent talks to (`http://127.0.0.1:8765`).
pub const API_PROXY: &str = "ASSEGAI_API_PROXY";
/// The agent's id, sent as `X-Assegai-Agent-ID`.
pub const AGENT_ID: &str = "ASSEGAI_AGENT_ID";
/// The agent's token, sent as `X-Assegai-Agent-Token`.
pub const AGENT_TOKEN: &str = "ASSEGAI_AGENT_TOKEN";
/// The agent's persistent writable directory.
pub const WORKSPACE: &str = "ASSEGAI_WORKSPACE";
/// Where the CLI and proxy keep their state (config, database, admin socket).
pub const HOME: &str = "ASSEGAI_HOME";
/// Passphrase for the encrypted-file key store.
pub const PASSPHRASE: &str = "ASSEGAI_PASSPHRASE";
/// A team's shared PostgreSQL (`postgres://…`), in place of `database_url` in `config.toml`.
pub const DATABASE_URL: &str = "ASSEGAI_DATABASE_URL";

/// Proxy URL used when [`API_PROXY`] is unset: the host as seen from inside a container.
pub const DEFAULT_API_PROXY: &str = "http://host.docker.internal:8765";

/// Header carrying the agent id.
pub const HEADER_AGENT_ID: &str = "x-assegai-agent-id";
/// Header carrying the agent token.
pub const HEADER_AGENT_TOKEN: &str = "x-assegai-agent-token";
