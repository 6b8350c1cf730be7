//! Which JSON-RPC methods an agent may call: an allow-list of reads.
//!
//! Anything not listed is refused, so a node's new or vendor-specific write method is refused by
//! default. Sending and signing (`eth_send*`, `*Sync`, `eth_sign*`, `personal_*`) and dev-node
//! administration (`anvil_*`, `hardhat_*`, `evm_*`, `tenderly_*`, `admin_*`, `miner_*`, `debug_*`
//! other than tracing) are therefore never forwarded.

use crate::{Error, Result, sanitize::quote};

/// Exact method names that only read.
const READ_METHODS: &[&str] = &[
    "eth_blobBaseFee",
    "eth_blockNumber",
    "eth_call",
    "eth_chainId",
    "eth_createAccessList",
    "eth_estimateGas",
    "eth_feeHistory",
    "eth_gasPrice",
    "eth_maxPriorityFeePerGas",
    "eth_newBlockFilter",
    "eth_newFilter",
    "eth_newPendingTransactionFilter",
    "eth_protocolVersion",
    "eth_simulateV1",
    "eth_syncing",
    "eth_uninstallFilter",
    "net_listening",
    "net_peerCount",
    "net_version",
    "trace_block",
    "trace_call",
    "trace_callMany",
    "trace_filter",
    "trace_get",
    "trace_replayBlockTransactions",
    "trace_replayTransaction",
    "trace_transaction",
    "web3_clientVersion",
    "web3_sha3",
];

/// Prefixes whose every method only reads (`eth_getBalance`, `debug_traceCall`, …).
const READ_PREFIXES: &[&str] = &["eth_get", "debug_trace"];

/// Whether `method` is a read an agent may make.
pub fn is_read_method(method: &str) -> bool {
    READ_METHODS.binary_search(&method).is_ok()
        || READ_PREFIXES.iter().any(|p| {
            method.len() > p.len()
                && method.starts_with(p)
                && method.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

/// Refuses `method` unless it is a read.
pub fn check_method(method: &str) -> Result<()> {
    if is_read_method(method) { Ok(()) } else { Err(Error::MethodNotAllowed(quote(method, 64))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_is_sorted_for_binary_search() {
        assert!(READ_METHODS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn reads_pass() {
        for m in [
            "eth_call",
            "eth_getBalance",
            "eth_getLogs",
            "eth_blockNumber",
            "eth_chainId",
            "net_version",
            "web3_clientVersion",
            "debug_traceTransaction",
            "eth_feeHistory",
            "eth_gasPrice",
            "eth_estimateGas",
        ] {
            assert!(is_read_method(m), "{m}");
        }
    }

    #[test]
    fn writes_and_admin_are_refused() {
        for m in [
            "eth_sendTransaction",
            "eth_sendRawTransaction",
            "eth_sendRawTransactionSync",
            "eth_sendTransactionSync",
            "eth_sign",
            "eth_signTransaction",
            "eth_signTypedData_v4",
            "eth_signRawTransaction",
            "personal_sign",
            "personal_unlockAccount",
            "anvil_setBalance",
            "anvil_impersonateAccount",
            "hardhat_setBalance",
            "evm_mine",
            "evm_revert",
            "tenderly_setBalance",
            "admin_addPeer",
            "miner_start",
            "debug_setHead",
            "eth_get",
            "ETH_GETBALANCE",
            "eth_getBalance\u{0}",
            "",
            "eth_accounts",
            "eth_subscribe",
        ] {
            assert!(!is_read_method(m), "{m:?} must be refused");
        }
    }

    #[test]
    fn refused_names_are_quoted_inert() {
        let e = check_method("anvil_\u{202e}x\x1b[2J").unwrap_err().to_string();
        assert!(e.contains("anvil_\\u{202e}x\\x1b[2J"), "{e}");
    }
}
