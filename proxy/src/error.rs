//! The engine's one error type, and its one conversion into an HTTP response.
//!
//! Handlers return `Result<_, Error>` and never build error JSON themselves. The `error` strings
//! of the agent-facing variants come from the original product: its SDK matches on them.

use std::path::{Path, PathBuf};

use assegai_sdk::{
    ChainId,
    wire::{ErrorBody, codes},
};
use axum::{
    Json,
    http::{HeaderValue, StatusCode, header::RETRY_AFTER},
    response::{IntoResponse, Response},
};

use crate::manifest::ManifestError;

/// Everything the engine can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request is malformed; the message says what is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// No agent headers.
    #[error("Unauthorized: Missing agent credentials in headers")]
    MissingCredentials,
    /// Unknown agent or wrong token.
    #[error("Unauthorized: Invalid agent credentials")]
    InvalidCredentials,
    /// The user paused this agent.
    #[error("Agent paused")]
    AgentPaused,
    /// The chain is not in the agent's manifest.
    #[error("Chain {0} not whitelisted for this agent (add it to `permissions.chains` in assegai.json)")]
    ChainNotAllowed(ChainId),
    /// A JSON-RPC method outside the read-only allow-list.
    #[error(
        "RPC method `{0}` is not allowed: agents have read-only chain access; transactions go through /agent/request-transaction"
    )]
    MethodNotAllowed(String),
    /// No such route or object.
    #[error("{0}")]
    NotFound(String),
    /// The agent's manifest does not list this AI provider.
    #[error("This agent may not use {0}: add \"{0}\" to `permissions.apis` in assegai.json")]
    ApiNotAllowed(crate::manifest::Provider),
    /// The provider endpoint is not one the user's key may reach (SPEC §3.2).
    #[error(
        "{method} {path} is not an inference endpoint of {}, so the user's key is not sent there; the user can allow it in config.toml (`[providers.{}] extra_endpoints = [\"{method} {path}\"]`)",
        .provider.display_name(), .provider.as_str()
    )]
    EndpointNotAllowed {
        /// The provider.
        provider: crate::manifest::Provider,
        /// The request's method.
        method: String,
        /// The path after the provider prefix (neutralised).
        path: String,
    },
    /// The user has not stored a key for this provider.
    #[error("{} API key not configured. Run `assegai keys set {}`.", .0.display_name(), .0.as_str())]
    KeyNotConfigured(crate::manifest::Provider),
    /// The key store cannot be read (locked file store, no Secret Service…).
    #[error("The key store is not available: {0}")]
    KeyStoreUnavailable(String),
    /// The agent has spent its AI budget for the window.
    #[error("AI budget exceeded ({0})")]
    BudgetExceeded(String),
    /// The transaction breaks the agent's policy (allowance, contract, limit).
    #[error("{0}")]
    Policy(String),
    /// A person rejected the transaction.
    #[error("Transaction rejected by user")]
    Rejected,
    /// Nobody approved the transaction in time.
    #[error("Transaction approval timeout")]
    ApprovalTimeout,
    /// Signing or broadcasting failed.
    #[error("Transaction failed: {0}")]
    TxFailed(String),
    /// A private key or keystore given to `wallet import` is unusable (never echoes the key).
    #[error("{0}")]
    InvalidWallet(String),
    /// No signer for this chain.
    #[error("No wallet configured for {0}. Run `assegai wallet import`")]
    WalletNotConfigured(ChainId),
    /// The body is larger than `max_body_bytes`.
    #[error("Request body too large (limit {limit} bytes)")]
    PayloadTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The request body stopped arriving (SPEC §8: connections cannot be hoarded).
    #[error("Request body not received in time")]
    RequestTimeout,
    /// Every agent connection the proxy allows is open; this one only serves `/health`.
    #[error("Too many open connections to the proxy; close idle ones or retry later")]
    TooManyConnections,
    /// The shared rate limits cannot be checked (Redis is down): refused, never unlimited.
    #[error("Service unavailable: {0}")]
    LimitsUnavailable(String),
    /// The agent's per-service rate limit was hit.
    #[error("Rate limit exceeded")]
    RateLimited {
        /// Whole seconds until a request would pass.
        retry_after_secs: u64,
    },
    /// The node answered with a JSON-RPC error.
    #[error("RPC Error: {0}")]
    Rpc(String),
    /// Nobody knows which RPC endpoint serves this chain.
    #[error(
        "No RPC URL configured for {0}: add it to the agent's manifest (`permissions.rpcs`) or to config.toml (`[chains.\"{0}\"] rpc = ...`)"
    )]
    RpcNotConfigured(ChainId),
    /// The upstream could not be reached.
    #[error("Network request failed")]
    Unreachable,
    /// The upstream took longer than `upstream_timeout_secs`.
    #[error("Upstream request timed out")]
    UpstreamTimeout,
    /// The upstream replied with something that is not what the protocol says.
    #[error("Upstream returned an invalid response: {0}")]
    BadUpstream(String),
    /// The RPC endpoint is not the chain it was named for (SPEC §3.3): nothing is read from it
    /// or signed for it.
    #[error("RPC endpoint reports chain id {reported}, not {expected}")]
    ChainIdMismatch {
        /// What `eth_chainId` answered.
        reported: u64,
        /// The chain it was configured for.
        expected: ChainId,
    },
    /// `config.toml` is unreadable or wrong.
    #[error("{file}: {message}", file = file.display())]
    Config {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `assegai.json` is unreadable or wrong.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The database failed.
    #[error("database error: {0}")]
    Store(#[from] crate::store::StoreError),
    /// A file or socket operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or socket.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The agent-facing address cannot be bound.
    #[error(
        "cannot listen on {addr}: {source}; is another proxy running? Use `--listen` or `listen` in config.toml to pick another address"
    )]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another proxy already answers on this home's admin socket.
    #[error("another proxy is already running for this home (it answers on {}); stop it first, or use it", .0.display())]
    AlreadyRunning(PathBuf),
    /// Something else went wrong inside the proxy; details are logged, not returned.
    #[error("Internal error: {0}")]
    Internal(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io { path: path.to_owned(), source }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) | Error::Rpc(_) | Error::InvalidWallet(_) => StatusCode::BAD_REQUEST,
            Error::MissingCredentials | Error::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Error::AgentPaused
            | Error::ChainNotAllowed(_)
            | Error::MethodNotAllowed(_)
            | Error::ApiNotAllowed(_)
            | Error::EndpointNotAllowed { .. }
            | Error::BudgetExceeded(_)
            | Error::Policy(_)
            | Error::Rejected => StatusCode::FORBIDDEN,
            Error::ApprovalTimeout | Error::TxFailed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::KeyNotConfigured(_) | Error::KeyStoreUnavailable(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::NotFound(_) | Error::WalletNotConfigured(_) => StatusCode::NOT_FOUND,
            Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Error::TooManyConnections | Error::LimitsUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Unreachable | Error::BadUpstream(_) | Error::ChainIdMismatch { .. } => StatusCode::BAD_GATEWAY,
            Error::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Error::RpcNotConfigured(_)
            | Error::Config { .. }
            | Error::Manifest(_)
            | Error::Store(_)
            | Error::Io { .. }
            | Error::Bind { .. }
            | Error::AlreadyRunning(_)
            | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest(_) | Error::InvalidWallet(_) => codes::BAD_REQUEST,
            Error::MissingCredentials | Error::InvalidCredentials => codes::UNAUTHORIZED,
            Error::AgentPaused => codes::AGENT_PAUSED,
            Error::ChainNotAllowed(_) => codes::CHAIN_NOT_ALLOWED,
            Error::MethodNotAllowed(_) => codes::METHOD_NOT_ALLOWED,
            Error::NotFound(_) => codes::NOT_FOUND,
            Error::ApiNotAllowed(_) => codes::API_NOT_ALLOWED,
            Error::EndpointNotAllowed { .. } => codes::ENDPOINT_NOT_ALLOWED,
            Error::RequestTimeout => codes::REQUEST_TIMEOUT,
            Error::TooManyConnections => codes::TOO_MANY_CONNECTIONS,
            Error::LimitsUnavailable(_) => codes::LIMITS_UNAVAILABLE,
            Error::KeyNotConfigured(_) | Error::KeyStoreUnavailable(_) => codes::KEY_NOT_CONFIGURED,
            Error::BudgetExceeded(_) => codes::BUDGET_EXCEEDED,
            Error::Policy(_) => codes::POLICY_VIOLATION,
            Error::Rejected => codes::REJECTED,
            Error::ApprovalTimeout => codes::APPROVAL_TIMEOUT,
            Error::TxFailed(_) => codes::TX_FAILED,
            Error::WalletNotConfigured(_) => codes::WALLET_NOT_CONFIGURED,
            Error::PayloadTooLarge { .. } => codes::PAYLOAD_TOO_LARGE,
            Error::RateLimited { .. } => codes::RATE_LIMITED,
            Error::Rpc(_) => codes::RPC_ERROR,
            Error::Unreachable | Error::BadUpstream(_) | Error::ChainIdMismatch { .. } => codes::UPSTREAM_UNREACHABLE,
            Error::UpstreamTimeout => codes::UPSTREAM_TIMEOUT,
            _ => codes::INTERNAL,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        // Internal details (paths, SQL errors) stay in the proxy's own log.
        let tells_the_user_what_to_do = matches!(
            self,
            Error::RpcNotConfigured(_)
                | Error::KeyNotConfigured(_)
                | Error::KeyStoreUnavailable(_)
                | Error::ApprovalTimeout
                | Error::TxFailed(_)
        );
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR && !tells_the_user_what_to_do {
            tracing::error!(error = %self, "request failed");
            "Internal error (see the proxy's output for details)".to_owned()
        } else {
            self.to_string()
        };
        let retry_after = match self {
            Error::RateLimited { retry_after_secs } => Some(retry_after_secs),
            _ => None,
        };
        let mut resp = (status, Json(ErrorBody { error: message, code: self.code().to_owned() })).into_response();
        if let Some(secs) = retry_after {
            resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// Shorthand for `Result<T, assegai_proxy::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
