//! The admin protocol's routes and bodies, shared by the proxy's handlers and [`super::AdminClient`]
//! (as `sdk::wire` is for agents), so that the two sides cannot drift apart: a reply that does
//! not parse as its type is an error on the CLI's side, never a silent zero.

use serde::{Deserialize, Serialize};

pub use crate::{ai::budget::InFlight, tx::approvals::Granted};

/// The header the admin token travels in.
pub const TOKEN_HEADER: &str = "x-assegai-admin-token";

/// What `GET /status` returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// The proxy's process id.
    pub pid: u32,
    /// The agent-facing address.
    pub listen: String,
    /// Version of the running proxy.
    pub version: String,
    /// Start time (ms since the epoch).
    pub started_at: i64,
}

/// `POST /agents/{id}/changed`: the cached agent was forgotten.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentChanged {
    /// Always true: the proxy rereads the agent on its next request.
    pub success: bool,
}

/// `POST /keys/changed`: cached provider keys and the wallet were forgotten.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeysChanged {
    /// Whether the proxy can read the key store at all (one started before the key file existed
    /// cannot, until it is restarted).
    pub keys_readable: bool,
}

/// `POST /pricing/changed`: the installed pricing file was reread.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PricingChanged {
    /// How many models it prices now.
    pub models: usize,
}

/// `POST /agents/{id}/paused`: the agent's cached state was forgotten and its pending requests
/// rejected.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentPaused {
    /// How many pending requests were rejected.
    pub rejected: usize,
}

/// `GET /agents/{id}/approvals`: the ERC-20 approvals the agent's requests granted, as the chain
/// has them now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Approvals {
    /// Newest first, each (chain, token, spender) once.
    pub approvals: Vec<Granted>,
}

/// `POST /agents/{id}/revoke-approvals`: `approve(spender, 0)` requests were queued.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokeQueued {
    /// How many (a person still approves each).
    pub queued: usize,
}

/// `POST /txs/{id}/approve`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TxApproved {
    /// False when the request was not pending any more.
    pub approved: bool,
}

/// `POST /txs/{id}/reject`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TxRejected {
    /// False when the request was not pending.
    pub rejected: bool,
}

/// The error body of a refused or failed admin request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refused {
    /// What went wrong, for a person.
    pub error: String,
}

/// The routes, as the router mounts them and the client calls them.
pub mod path {
    /// `GET`: [`super::Status`].
    pub const STATUS: &str = "/status";
    /// `POST`: [`super::KeysChanged`].
    pub const KEYS_CHANGED: &str = "/keys/changed";
    /// `POST`: [`super::PricingChanged`].
    pub const PRICING_CHANGED: &str = "/pricing/changed";
    /// `GET`: the [`super::InFlight`] list.
    pub const AI_IN_FLIGHT: &str = "/ai/in-flight";
    /// `POST`: [`super::AgentChanged`].
    pub const AGENT_CHANGED: &str = "/agents/{id}/changed";
    /// `POST`: [`super::AgentPaused`].
    pub const AGENT_PAUSED: &str = "/agents/{id}/paused";
    /// `GET`: [`super::Approvals`].
    pub const AGENT_APPROVALS: &str = "/agents/{id}/approvals";
    /// `POST`: [`super::RevokeQueued`].
    pub const REVOKE_APPROVALS: &str = "/agents/{id}/revoke-approvals";
    /// `POST`: [`super::TxApproved`].
    pub const TX_APPROVE: &str = "/txs/{id}/approve";
    /// `POST`: [`super::TxRejected`].
    pub const TX_REJECT: &str = "/txs/{id}/reject";

    /// `route` with its `{id}` filled in.
    pub fn with_id(route: &str, id: &impl AsRef<str>) -> String {
        route.replace("{id}", id.as_ref())
    }
}
