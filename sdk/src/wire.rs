//! The proxy's HTTP protocol: request and response bodies, written once and used by both sides.
//!
//! Field names follow the original product's API (camelCase where it used camelCase), because
//! agents written against its TypeScript SDK must work unchanged.

use alloy_primitives::Address;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ChainId;

/// `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Health {
    /// Always `"ok"`.
    pub status: String,
    /// Milliseconds since the Unix epoch, from the proxy's clock.
    pub timestamp: u64,
}

/// `POST /agent/query-chain`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueryChainRequest {
    /// The chain to query; must be in the agent's manifest.
    pub chain: ChainId,
    /// The JSON-RPC method; must be a read method.
    pub method: String,
    /// The method's positional parameters.
    #[serde(default = "empty_params")]
    pub params: Value,
}

fn empty_params() -> Value {
    Value::Array(Vec::new())
}

/// Reply to `POST /agent/query-chain`: the JSON-RPC `result`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueryChainResponse {
    /// The node's `result`, untouched.
    pub result: Value,
}

/// Reply to `GET /agent/wallet-address/{chain}`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct WalletAddressResponse {
    /// The address the proxy would sign with on that chain (EIP-55 checksummed on the wire).
    #[serde(serialize_with = "checksummed")]
    pub address: Address,
}

fn checksummed<S: serde::Serializer>(address: &Address, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&address.to_checksum(None))
}

/// `POST /agent/request-transaction`, as agents send it: strings, so that the proxy can say
/// exactly what is wrong with each field.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TxRequest {
    /// The chain (CAIP-2).
    pub chain: ChainId,
    /// Recipient or contract, `0x` + 40 hex digits.
    pub to: String,
    /// Native value in wei, a decimal string.
    pub value: String,
    /// Calldata, `0x`-prefixed hex (default `0x`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Gas limit, a decimal string (default: 21000 for transfers, estimated for calls).
    #[serde(default, rename = "gasLimit", skip_serializing_if = "Option::is_none")]
    pub gas_limit: Option<String>,
}

/// Reply to an approved and broadcast transaction.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TxSent {
    /// Always `true`.
    pub success: bool,
    /// The transaction hash.
    #[serde(rename = "txHash")]
    pub tx_hash: alloy_primitives::B256,
    /// The proxy's id for the request (`GET /agent/transactions/{id}`).
    #[serde(default, rename = "transactionId", skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
}

/// Where a transaction request stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum TxStatus {
    /// Waiting for a person.
    Pending,
    /// Approved; being signed and broadcast.
    Approved,
    /// Broadcast; mined with status 1.
    Confirmed,
    /// Broadcast; mined with status 0.
    Reverted,
    /// Refused by a person (or by the kill switch).
    Rejected,
    /// Nobody decided in time, or the proxy restarted while it waited.
    Expired,
    /// Signing or broadcasting failed.
    Failed,
}

impl TxStatus {
    /// Every status.
    pub const ALL: [TxStatus; 7] = [
        TxStatus::Pending,
        TxStatus::Approved,
        TxStatus::Confirmed,
        TxStatus::Reverted,
        TxStatus::Rejected,
        TxStatus::Expired,
        TxStatus::Failed,
    ];

    /// The wire name (`"pending"`).
    pub fn as_str(self) -> &'static str {
        match self {
            TxStatus::Pending => "pending",
            TxStatus::Approved => "approved",
            TxStatus::Confirmed => "confirmed",
            TxStatus::Reverted => "reverted",
            TxStatus::Rejected => "rejected",
            TxStatus::Expired => "expired",
            TxStatus::Failed => "failed",
        }
    }
}

impl std::str::FromStr for TxStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TxStatus::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| {
            format!(
                "unknown status `{s}` (expected pending, approved, confirmed, reverted, rejected, expired or failed)"
            )
        })
    }
}

/// `GET /agent/transactions/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TxInfo {
    /// The proxy's id for the request.
    pub id: String,
    /// Where it stands.
    pub status: TxStatus,
    /// The chain.
    pub chain: ChainId,
    /// Recipient or contract (checksummed).
    #[serde(serialize_with = "checksummed")]
    pub to: Address,
    /// Native value in wei (decimal).
    pub value: String,
    /// Calldata.
    pub data: String,
    /// What the calldata does, in words.
    pub action: String,
    /// The hash, once broadcast.
    #[serde(default, rename = "txHash", skip_serializing_if = "Option::is_none")]
    pub tx_hash: Option<alloy_primitives::B256>,
    /// Why it failed, was rejected or expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was requested (ms).
    #[serde(rename = "createdAt")]
    pub created_at: i64,
    /// The fees fixed when it was requested (what is signed), and what it paid.
    #[serde(flatten)]
    pub fees: TxFeeInfo,
    /// What simulating it predicted for the user's wallet (`native_wei`, `tokens`), or null when
    /// it was not simulated.
    #[serde(default)]
    pub simulation: Option<serde_json::Value>,
}

/// A request's gas and fee figures, as decimal strings (wei, or gas for `gas_limit`); absent on
/// requests from before fees were fixed at request time.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TxFeeInfo {
    /// The gas limit signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gas_limit: Option<String>,
    /// Max fee per gas (on chains without a base fee: the gas price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fee_per_gas: Option<String>,
    /// Max priority fee per gas (EIP-1559 chains).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_priority_fee_per_gas: Option<String>,
    /// The worst case: gas limit × max fee per gas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fee_wei: Option<String>,
    /// What it paid (gas used × effective gas price), once the receipt is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee_wei: Option<String>,
}

/// Severity of an agent log line.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Detail for debugging.
    Debug,
    /// Normal progress.
    Info,
    /// Something looks wrong but the agent goes on.
    Warn,
    /// Something failed.
    Error,
    /// Something the user will be glad to hear.
    Success,
}

impl LogLevel {
    /// Every level, lowest first.
    pub const ALL: [LogLevel; 5] =
        [LogLevel::Debug, LogLevel::Info, LogLevel::Warn, LogLevel::Error, LogLevel::Success];

    /// The wire name (`"info"`).
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Success => "success",
        }
    }
}

impl std::fmt::Display for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for LogLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LogLevel::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown log level `{s}` (expected one of debug, info, warn, error, success)"))
    }
}

/// `POST /agent/log`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogRequest {
    /// Severity.
    pub level: LogLevel,
    /// The message; shown to people only after control characters are neutralised.
    pub message: String,
    /// Optional structured detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// `{"success": true}`, the reply of calls that return nothing else.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Success {
    /// Always `true`.
    pub success: bool,
}

/// Every error the proxy returns: a human message and a machine code.
///
/// The `error` strings come from the original product; its TypeScript SDK matches on them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// Human-readable message.
    pub error: String,
    /// Stable machine-readable code, e.g. `RATE_LIMITED`.
    #[serde(default)]
    pub code: String,
}

/// The machine codes of [`ErrorBody::code`].
pub mod codes {
    /// Malformed request: JSON, address, hex, decimal or chain id.
    pub const BAD_REQUEST: &str = "BAD_REQUEST";
    /// Missing or invalid agent credentials.
    pub const UNAUTHORIZED: &str = "UNAUTHORIZED";
    /// The chain is not in the agent's manifest.
    pub const CHAIN_NOT_ALLOWED: &str = "CHAIN_NOT_ALLOWED";
    /// The JSON-RPC method is not a permitted read method.
    pub const METHOD_NOT_ALLOWED: &str = "METHOD_NOT_ALLOWED";
    /// The agent has been paused by the user.
    pub const AGENT_PAUSED: &str = "AGENT_PAUSED";
    /// The agent's manifest does not list this AI provider.
    pub const API_NOT_ALLOWED: &str = "API_NOT_ALLOWED";
    /// The provider endpoint is not an inference endpoint the user's key may reach.
    pub const ENDPOINT_NOT_ALLOWED: &str = "ENDPOINT_NOT_ALLOWED";
    /// The user has not stored a key for this provider (or the key store is locked).
    pub const KEY_NOT_CONFIGURED: &str = "KEY_NOT_CONFIGURED";
    /// The agent's AI budget for the window is spent.
    pub const BUDGET_EXCEEDED: &str = "BUDGET_EXCEEDED";
    /// No such route or object.
    pub const NOT_FOUND: &str = "NOT_FOUND";
    /// No wallet is configured for this chain.
    pub const WALLET_NOT_CONFIGURED: &str = "WALLET_NOT_CONFIGURED";
    /// The request body exceeds the configured limit.
    pub const PAYLOAD_TOO_LARGE: &str = "PAYLOAD_TOO_LARGE";
    /// The request body stopped arriving.
    pub const REQUEST_TIMEOUT: &str = "REQUEST_TIMEOUT";
    /// The proxy has as many agent connections open as it allows.
    pub const TOO_MANY_CONNECTIONS: &str = "TOO_MANY_CONNECTIONS";
    /// The proxy's shared rate limits (Redis) cannot be checked, so the call was refused.
    pub const LIMITS_UNAVAILABLE: &str = "LIMITS_UNAVAILABLE";
    /// The per-agent rate limit was hit; see `Retry-After`.
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    /// The node answered with a JSON-RPC error.
    pub const RPC_ERROR: &str = "RPC_ERROR";
    /// The upstream could not be reached.
    pub const UPSTREAM_UNREACHABLE: &str = "UPSTREAM_UNREACHABLE";
    /// The upstream did not answer in time.
    pub const UPSTREAM_TIMEOUT: &str = "UPSTREAM_TIMEOUT";
    /// The transaction breaks the agent's policy (allowance, contract, limit).
    pub const POLICY_VIOLATION: &str = "POLICY_VIOLATION";
    /// A person rejected the transaction.
    pub const REJECTED: &str = "REJECTED";
    /// Nobody approved the transaction in time.
    pub const APPROVAL_TIMEOUT: &str = "APPROVAL_TIMEOUT";
    /// Signing or broadcasting failed.
    pub const TX_FAILED: &str = "TX_FAILED";
    /// Anything else that went wrong inside the proxy.
    pub const INTERNAL: &str = "INTERNAL";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_chain_params_default_to_empty() {
        let r: QueryChainRequest = serde_json::from_str(r#"{"chain":"eip155:1","method":"eth_blockNumber"}"#).unwrap();
        assert_eq!(r.params, serde_json::json!([]));
    }

    #[test]
    fn wallet_addresses_are_checksummed() {
        let a: Address = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266".parse().unwrap();
        let json = serde_json::to_string(&WalletAddressResponse { address: a }).unwrap();
        assert_eq!(json, r#"{"address":"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"}"#);
        assert_eq!(serde_json::from_str::<WalletAddressResponse>(&json).unwrap().address, a);
    }

    #[test]
    fn log_levels_round_trip() {
        for l in LogLevel::ALL {
            assert_eq!(l.as_str().parse::<LogLevel>().unwrap(), l);
            assert_eq!(serde_json::to_value(l).unwrap(), l.as_str());
        }
        assert!("fatal".parse::<LogLevel>().is_err());
    }
}
