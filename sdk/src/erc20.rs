//! ERC-20 calldata, encoded with alloy's ABI encoder, and transaction requests built from it.
//!
//! The proxy decodes these same calls (SPEC §3.4): a `transfer` or `approve` is checked against the
//! token allowance in the agent's manifest and shown to the approver in words ("Transfer 12.5 USDC
//! to 0x…"). This module only builds requests; it neither sends them nor knows any token's
//! decimals, so amounts are always in the token's base units (12.5 of a 6-decimal token is
//! `12_500_000`).
//!
//! ```no_run
//! use assegai_sdk::{Address, Assegai, ChainId, U256, erc20};
//! # async fn run(assegai: Assegai) -> assegai_sdk::Result<()> {
//! let token: Address = "0x5FbDB2315678afecb367f032d93F642f64180aa3".parse().unwrap();
//! let to: Address = "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045".parse().unwrap();
//! let request = erc20::transfer_request(ChainId::ANVIL, token, to, U256::from(12_500_000u64));
//! let hash = assegai.request_transaction(&request).await?;
//! let receipt = assegai.wait_for_receipt(ChainId::ANVIL, hash, std::time::Duration::from_secs(60)).await?;
//! assert!(receipt.success);
//! # Ok(()) }
//! ```

use alloy_primitives::{Address, Bytes, U256};
use alloy_sol_types::SolCall;

use crate::{ChainId, wire::TxRequest};

mod abi {
    alloy_sol_types::sol! {
        function transfer(address to, uint256 amount) returns (bool);
        function approve(address spender, uint256 amount) returns (bool);
        function balanceOf(address owner) returns (uint256);
    }
}

/// Calldata for `transfer(to, amount)`: send `amount` base units of the token to `to`.
///
/// ```
/// use assegai_sdk::{Address, U256, erc20};
/// let to: Address = "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045".parse().unwrap();
/// // 12.5 tokens of a token with 6 decimals.
/// let data = erc20::transfer_calldata(to, U256::from(12_500_000u64));
/// assert_eq!(data[..4], [0xa9, 0x05, 0x9c, 0xbb]); // the selector the proxy checks
/// assert_eq!(data.len(), 4 + 32 + 32);
/// assert_eq!(data[16..36], to[..]);
/// ```
pub fn transfer_calldata(to: Address, amount: U256) -> Bytes {
    abi::transferCall { to, amount }.abi_encode().into()
}

/// Calldata for `approve(spender, amount)`: let `spender` move up to `amount` base units of the
/// caller's tokens. The proxy refuses `U256::MAX` (an unlimited approval) unless the manifest names
/// the spender in `permissions.spenders`; any other amount counts against the token's allowance.
///
/// ```
/// use assegai_sdk::{Address, U256, erc20};
/// let spender: Address = "0x3fC91A3afd70395Cd496C647d5a6CC9D4B2b7FAD".parse().unwrap();
/// let data = erc20::approve_calldata(spender, U256::from(1_000_000u64));
/// assert_eq!(data[..4], [0x09, 0x5e, 0xa7, 0xb3]);
/// assert_eq!(data.len(), 4 + 32 + 32);
/// ```
pub fn approve_calldata(spender: Address, amount: U256) -> Bytes {
    abi::approveCall { spender, amount }.abi_encode().into()
}

/// Calldata for the read `balanceOf(owner)`, to pass to `eth_call` through
/// [`Assegai::query_chain`](crate::Assegai::query_chain).
///
/// ```no_run
/// use assegai_sdk::{Address, Assegai, ChainId, U256, erc20};
/// use serde_json::json;
/// # async fn f(a: Assegai) -> assegai_sdk::Result<()> {
/// let token: Address = "0x5FbDB2315678afecb367f032d93F642f64180aa3".parse().unwrap();
/// let me = a.wallet_address(ChainId::ANVIL).await?;
/// let call = json!({"to": token, "data": erc20::balance_of_calldata(me)});
/// // One 32-byte word, which is also how a JSON-RPC quantity of that size reads.
/// let balance: U256 = a.query_chain(ChainId::ANVIL, "eth_call", (call, "latest")).await?;
/// # Ok(()) }
/// ```
pub fn balance_of_calldata(owner: Address) -> Bytes {
    abi::balanceOfCall { owner }.abi_encode().into()
}

/// A request to transfer `amount` base units of `token` to `to` on `chain`: native value `"0"`,
/// the [`transfer_calldata`] as data, and no gas limit (the proxy estimates it).
///
/// ```
/// use assegai_sdk::{Address, ChainId, U256, erc20};
/// let token: Address = "0x5FbDB2315678afecb367f032d93F642f64180aa3".parse().unwrap();
/// let to: Address = "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045".parse().unwrap();
/// let request = erc20::transfer_request(ChainId::ANVIL, token, to, U256::from(12_500_000u64));
/// assert_eq!(request.to, "0x5FbDB2315678afecb367f032d93F642f64180aa3");
/// assert_eq!(request.value, "0");
/// assert!(request.data.as_deref().unwrap().starts_with("0xa9059cbb"));
/// ```
pub fn transfer_request(chain: ChainId, token: Address, to: Address, amount: U256) -> TxRequest {
    token_call(chain, token, transfer_calldata(to, amount))
}

/// A request to approve `spender` for `amount` base units of `token` on `chain`, built like
/// [`transfer_request`].
///
/// ```
/// use assegai_sdk::{Address, ChainId, U256, erc20};
/// let token: Address = "0x5FbDB2315678afecb367f032d93F642f64180aa3".parse().unwrap();
/// let spender: Address = "0x3fC91A3afd70395Cd496C647d5a6CC9D4B2b7FAD".parse().unwrap();
/// let request = erc20::approve_request(ChainId::ANVIL, token, spender, U256::from(5u64));
/// assert!(request.data.as_deref().unwrap().starts_with("0x095ea7b3"));
/// assert_eq!(request.gas_limit, None);
/// ```
pub fn approve_request(chain: ChainId, token: Address, spender: Address, amount: U256) -> TxRequest {
    token_call(chain, token, approve_calldata(spender, amount))
}

fn token_call(chain: ChainId, token: Address, data: Bytes) -> TxRequest {
    TxRequest { chain, to: token.to_checksum(None), value: "0".into(), data: Some(data.to_string()), gas_limit: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TO: Address = alloy_primitives::address!("d8dA6BF26964aF9D7eEd9e03E53415D37aA96045");

    #[test]
    fn encodes_the_standard_abi() {
        // The words the ABI specifies, written out by hand once, to check the encoder against.
        let expected = concat!(
            "0xa9059cbb",
            "000000000000000000000000d8da6bf26964af9d7eed9e03e53415d37aa96045",
            "0000000000000000000000000000000000000000000000000000000000bebc20",
        );
        assert_eq!(transfer_calldata(TO, U256::from(12_500_000u64)).to_string(), expected);
        let max = approve_calldata(TO, U256::MAX).to_string();
        assert!(max.starts_with("0x095ea7b3000000000000000000000000d8da6bf2"), "{max}");
        assert!(max.ends_with(&"f".repeat(64)), "{max}");
        assert_eq!(
            balance_of_calldata(TO).to_string(),
            "0x70a08231000000000000000000000000d8da6bf26964af9d7eed9e03e53415d37aa96045"
        );
    }

    #[test]
    fn requests_carry_no_value() {
        let r = transfer_request(ChainId::eip155(1), TO, TO, U256::from(1));
        assert_eq!((r.chain, r.value.as_str(), r.gas_limit.as_deref()), (ChainId::eip155(1), "0", None));
        assert_eq!(r.data.unwrap(), transfer_calldata(TO, U256::from(1)).to_string());
        let json = serde_json::to_value(approve_request(ChainId::ANVIL, TO, TO, U256::ZERO)).unwrap();
        assert_eq!(json["to"], "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045");
        assert!(json.get("gasLimit").is_none(), "{json}");
    }
}
