//! CAIP-2 chain identifiers (`eip155:1`).

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A CAIP-2 chain id in the `eip155` namespace, e.g. `eip155:31337`.
///
/// Only EVM chains are supported; any other namespace is refused when parsed.
///
/// ```
/// use assegai_sdk::ChainId;
/// let chain: ChainId = "eip155:31337".parse().unwrap();
/// assert_eq!(chain.id(), 31337);
/// assert!(chain.is_local());
/// assert_eq!(chain.to_string(), "eip155:31337");
/// assert!("ethereum".parse::<ChainId>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChainId(u64);

impl ChainId {
    /// The local Anvil/Hardhat chain, `eip155:31337`.
    pub const ANVIL: ChainId = ChainId(31337);

    /// A chain from its numeric EVM chain id.
    pub const fn eip155(id: u64) -> Self {
        ChainId(id)
    }

    /// The numeric EVM chain id.
    pub const fn id(self) -> u64 {
        self.0
    }

    /// Whether this is a local development chain (31337 or 1337), the only chains the well-known
    /// Anvil test account may sign for.
    pub const fn is_local(self) -> bool {
        matches!(self.0, 31337 | 1337)
    }

    /// A human name for well-known chains ("Ethereum Mainnet"), `None` otherwise.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "Ethereum Mainnet",
            5 => "Ethereum Goerli",
            10 => "Optimism",
            56 => "BNB Smart Chain",
            137 => "Polygon",
            1337 => "Local Dev Chain",
            8453 => "Base",
            31337 => "Local Anvil",
            42161 => "Arbitrum One",
            43114 => "Avalanche C-Chain",
            11155111 => "Sepolia",
            _ => return None,
        })
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "eip155:{}", self.0)
    }
}

/// Why a string is not a CAIP-2 chain id we support.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a CAIP-2 chain id: {reason} (expected `eip155:<chain id>`, e.g. `eip155:1`)")]
pub struct ParseChainIdError {
    input: String,
    reason: &'static str,
}

impl FromStr for ChainId {
    type Err = ParseChainIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseChainIdError { input: s.chars().take(64).collect(), reason };
        let (namespace, reference) = s.split_once(':').ok_or_else(|| err("missing `:`"))?;
        if namespace != "eip155" {
            return Err(err("only the `eip155` namespace is supported"));
        }
        if reference.is_empty()
            || !reference.bytes().all(|b| b.is_ascii_digit())
            || (reference.len() > 1 && reference.starts_with('0'))
        {
            return Err(err("the chain id must be a decimal number without leading zeros"));
        }
        let id = reference.parse::<u64>().map_err(|_| err("the chain id is too large"))?;
        if id == 0 {
            return Err(err("the chain id must not be 0"));
        }
        Ok(ChainId(id))
    }
}

impl Serialize for ChainId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ChainId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        assert_eq!("eip155:1".parse::<ChainId>().unwrap(), ChainId::eip155(1));
        for bad in [
            "",
            "eip155",
            "eip155:",
            "eip155:01",
            "eip155:-1",
            "eip155:0",
            "cosmos:1",
            "eip155:1x",
            "eip155:99999999999999999999999",
        ] {
            assert!(bad.parse::<ChainId>().is_err(), "{bad} should be refused");
        }
        let e = "solana:abc".parse::<ChainId>().unwrap_err().to_string();
        assert!(e.contains("eip155"), "{e}");
    }

    #[test]
    fn serde_round_trip() {
        let c: ChainId = serde_json::from_str("\"eip155:137\"").unwrap();
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"eip155:137\"");
        assert!(serde_json::from_str::<ChainId>("\"137\"").is_err());
    }
}
