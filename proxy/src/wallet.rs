//! The signer the proxy would use on each chain.
//!
//! Until a wallet can be imported, the only signer is the well-known Anvil test account, and only
//! on local chains: its key is public, so it must never be offered for a real network.

use alloy_primitives::{Address, address};
use assegai_sdk::ChainId;

use crate::{Error, Result};

/// Address of Anvil's first test account (its private key is published in Anvil's docs).
pub const ANVIL_TEST_ACCOUNT: Address = address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266");

/// The address that signs for `chain`.
pub fn address_for(chain: ChainId) -> Result<Address> {
    if chain.is_local() { Ok(ANVIL_TEST_ACCOUNT) } else { Err(Error::WalletNotConfigured(chain)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_account_only_on_local_chains() {
        assert_eq!(address_for(ChainId::ANVIL).unwrap(), ANVIL_TEST_ACCOUNT);
        assert_eq!(address_for(ChainId::eip155(1337)).unwrap(), ANVIL_TEST_ACCOUNT);
        assert!(matches!(address_for(ChainId::eip155(1)), Err(Error::WalletNotConfigured(_))));
    }
}
