//! The signer the proxy would use on each chain.
//!
//! Until a wallet can be imported, the only signer is the well-known Anvil test account, and only
//! on local chains: its key is public, so it must never be offered for a real network.

use alloy::signers::local::PrivateKeySigner;
use alloy_primitives::{Address, address, b256};
use assegai_sdk::ChainId;

use crate::{Error, Result};

/// Address of Anvil's first test account (its private key is published in Anvil's docs).
pub const ANVIL_TEST_ACCOUNT: Address = address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266");

/// Anvil's first test account's key: public knowledge, printed by every Anvil at start-up.
const ANVIL_TEST_KEY: alloy_primitives::B256 =
    b256!("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80");

/// The signer for `chain`.
pub fn signer_for(chain: ChainId) -> Result<PrivateKeySigner> {
    if !chain.is_local() {
        return Err(Error::WalletNotConfigured(chain));
    }
    let signer = PrivateKeySigner::from_bytes(&ANVIL_TEST_KEY).map_err(|e| Error::Internal(e.to_string()))?;
    debug_assert_eq!(signer.address(), ANVIL_TEST_ACCOUNT);
    Ok(signer)
}

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
        assert_eq!(signer_for(ChainId::ANVIL).unwrap().address(), ANVIL_TEST_ACCOUNT);
        assert!(matches!(signer_for(ChainId::eip155(1)), Err(Error::WalletNotConfigured(_))));
    }
}
