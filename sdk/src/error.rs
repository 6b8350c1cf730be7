//! The one error type of the SDK.

use std::time::Duration;

/// Everything an SDK call can fail with. Match on it to handle each case differently.
///
/// ```
/// use assegai_sdk::Error;
/// fn advice(e: &Error) -> &'static str {
///     match e {
///         Error::RateLimited { .. } => "slow down",
///         Error::Forbidden { .. } => "the manifest does not allow this",
///         Error::Unauthorized { .. } => "check ASSEGAI_AGENT_ID / ASSEGAI_AGENT_TOKEN",
///         _ => "see the message",
///     }
/// }
/// # let _ = advice;
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// 401: the agent id or token is missing or wrong.
    #[error("unauthorized: {message}")]
    Unauthorized {
        /// The proxy's message.
        message: String,
    },
    /// 403: the agent's policy forbids this (chain, method, limit, paused agent…).
    #[error("forbidden: {reason}")]
    Forbidden {
        /// Why, in the proxy's words.
        reason: String,
        /// The proxy's machine code (`CHAIN_NOT_ALLOWED`, `METHOD_NOT_ALLOWED`, …).
        code: String,
    },
    /// 429: too many requests; try again after `retry_after`.
    #[error("rate limited: {message}")]
    RateLimited {
        /// The proxy's message.
        message: String,
        /// How long until a request would pass, from `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// The user rejected the transaction.
    #[error("{message}")]
    Rejected {
        /// The proxy's message.
        message: String,
    },
    /// Nobody approved the transaction in time.
    #[error("{message}")]
    ApprovalTimeout {
        /// The proxy's message.
        message: String,
    },
    /// The node returned a JSON-RPC error.
    #[error("{message}")]
    Rpc {
        /// `RPC Error: <node's message>`.
        message: String,
    },
    /// 400: the request was malformed.
    #[error("bad request: {message}")]
    BadRequest {
        /// What is wrong, in the proxy's words.
        message: String,
    },
    /// 404: no such object.
    #[error("not found: {message}")]
    NotFound {
        /// The proxy's message.
        message: String,
    },
    /// The proxy could not be reached, or the connection broke.
    #[error("network error talking to the Assegai proxy: {0}")]
    Network(#[source] reqwest::Error),
    /// The proxy (or its upstream) failed: 5xx, or a reply we could not read.
    #[error("server error ({status}): {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// The proxy's message.
        message: String,
        /// The proxy's machine code, if it sent one.
        code: String,
    },
    /// [`Assegai::wait_for_receipt`](crate::Assegai::wait_for_receipt) saw no receipt in the time it
    /// was given. The transaction may still be mined: wait again, or look it up by its hash.
    #[error("no receipt for {tx_hash} after {waited:?}; it may still be mined, so wait again before sending it anew")]
    ReceiptTimeout {
        /// The transaction waited for.
        tx_hash: alloy_primitives::B256,
        /// How long was waited.
        waited: Duration,
    },
    /// The client is misconfigured (missing environment variable, bad URL).
    #[error("configuration error: {0}")]
    Config(String),
}

impl Error {
    /// Whether an idempotent call may be retried after this error.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::RateLimited { .. } | Error::Network(_) => true,
            Error::Server { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// Shorthand for `Result<T, assegai_sdk::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
