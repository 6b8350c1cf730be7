//! Reading calldata: the token calls that move or expose a wallet's tokens.
//!
//! Checking only `transfer` leaves the usual drains open (`approve` the attacker, then
//! `transferFrom`), so every token-spending call is decoded here, with alloy's ABI decoder.

use alloy_primitives::{Address, U256};
use alloy_sol_types::{SolCall, sol};

sol! {
    function transfer(address to, uint256 amount) returns (bool);
    function approve(address spender, uint256 amount) returns (bool);
    function increaseAllowance(address spender, uint256 addedValue) returns (bool);
    function transferFrom(address from, address to, uint256 amount) returns (bool);
    function setApprovalForAll(address operator, bool approved);
}

/// A decoded token call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCall {
    /// `transfer(to, amount)`.
    Transfer {
        /// Recipient.
        to: Address,
        /// Amount in the token's base units.
        amount: U256,
    },
    /// `approve(spender, amount)`.
    Approve {
        /// Who may spend.
        spender: Address,
        /// How much (U256::MAX = unlimited).
        amount: U256,
    },
    /// `increaseAllowance(spender, amount)`.
    IncreaseAllowance {
        /// Who may spend.
        spender: Address,
        /// How much more.
        amount: U256,
    },
    /// `transferFrom(from, to, amount)`.
    TransferFrom {
        /// Whose tokens.
        from: Address,
        /// Recipient.
        to: Address,
        /// Amount.
        amount: U256,
    },
    /// `setApprovalForAll(operator, approved)`.
    SetApprovalForAll {
        /// Who may move every token.
        operator: Address,
        /// Granted or revoked.
        approved: bool,
    },
}

/// `transfer(address,uint256)`.
pub const TRANSFER_SELECTOR: [u8; 4] = transferCall::SELECTOR;

/// Decodes `data` if its selector is one of the token calls. `Ok(None)`: some other call;
/// `Err`: the selector is a token call's but the arguments are malformed.
pub fn decode(data: &[u8]) -> Result<Option<TokenCall>, String> {
    let Some(selector) = data.get(..4) else { return Ok(None) };
    let bad = |name: &str, e: alloy_sol_types::Error| format!("malformed {name} calldata: {e}");
    let call = match <[u8; 4]>::try_from(selector).unwrap_or_default() {
        transferCall::SELECTOR => {
            let c = transferCall::abi_decode(data).map_err(|e| bad("transfer", e))?;
            TokenCall::Transfer { to: c.to, amount: c.amount }
        }
        approveCall::SELECTOR => {
            let c = approveCall::abi_decode(data).map_err(|e| bad("approve", e))?;
            TokenCall::Approve { spender: c.spender, amount: c.amount }
        }
        increaseAllowanceCall::SELECTOR => {
            let c = increaseAllowanceCall::abi_decode(data).map_err(|e| bad("increaseAllowance", e))?;
            TokenCall::IncreaseAllowance { spender: c.spender, amount: c.addedValue }
        }
        transferFromCall::SELECTOR => {
            let c = transferFromCall::abi_decode(data).map_err(|e| bad("transferFrom", e))?;
            TokenCall::TransferFrom { from: c.from, to: c.to, amount: c.amount }
        }
        setApprovalForAllCall::SELECTOR => {
            let c = setApprovalForAllCall::abi_decode(data).map_err(|e| bad("setApprovalForAll", e))?;
            TokenCall::SetApprovalForAll { operator: c.operator, approved: c.approved }
        }
        _ => return Ok(None),
    };
    Ok(Some(call))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::address;

    #[test]
    fn selectors_are_the_well_known_ones() {
        assert_eq!(TRANSFER_SELECTOR, [0xa9, 0x05, 0x9c, 0xbb]);
        assert_eq!(approveCall::SELECTOR, [0x09, 0x5e, 0xa7, 0xb3]);
        assert_eq!(setApprovalForAllCall::SELECTOR, [0xa2, 0x2c, 0xb4, 0x65]);
        assert_eq!(increaseAllowanceCall::SELECTOR, [0x39, 0x50, 0x93, 0x51]);
        assert_eq!(transferFromCall::SELECTOR, [0x23, 0xb8, 0x72, 0xdd]);
    }

    #[test]
    fn decodes_and_refuses_malformed() {
        let to = address!("d8dA6BF26964aF9D7eEd9e03E53415D37aA96045");
        let data = transferCall { to, amount: U256::from(1000) }.abi_encode();
        assert_eq!(decode(&data).unwrap(), Some(TokenCall::Transfer { to, amount: U256::from(1000) }));
        let data = approveCall { spender: to, amount: U256::MAX }.abi_encode();
        assert_eq!(decode(&data).unwrap(), Some(TokenCall::Approve { spender: to, amount: U256::MAX }));
        assert!(decode(&TRANSFER_SELECTOR).is_err());
        assert_eq!(decode(&[0x12, 0x34, 0x56, 0x78, 0]).unwrap(), None);
        assert_eq!(decode(&[]).unwrap(), None);
    }
}
