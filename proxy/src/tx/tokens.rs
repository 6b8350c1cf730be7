//! Tokens whose symbol and decimals are known without asking the chain.

use alloy_primitives::{Address, address};
use assegai_sdk::ChainId;

/// A token's display facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// Ticker.
    pub symbol: &'static str,
    /// Decimal places.
    pub decimals: u8,
}

const KNOWN: &[(u64, Address, Token)] = &[
    (1, address!("A0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"), Token { symbol: "USDC", decimals: 6 }),
    (137, address!("3c499c542cEF5E3811e1192ce70d8cC03d5c3359"), Token { symbol: "USDC", decimals: 6 }),
    (137, address!("2791Bca1f2de4661ED88A30C99A7a9449Aa84174"), Token { symbol: "USDC.e", decimals: 6 }),
    (8453, address!("833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"), Token { symbol: "USDC", decimals: 6 }),
];

/// The known token at `address` on `chain`.
pub fn known(chain: ChainId, address: Address) -> Option<Token> {
    KNOWN.iter().find(|(c, a, _)| *c == chain.id() && *a == address).map(|(_, _, t)| *t)
}

/// The known token named `symbol` on `chain` (for `assegai allowance set --token USDC`).
pub fn by_symbol(chain: ChainId, symbol: &str) -> Option<(Address, Token)> {
    KNOWN.iter().find(|(c, _, t)| *c == chain.id() && t.symbol.eq_ignore_ascii_case(symbol)).map(|(_, a, t)| (*a, *t))
}
