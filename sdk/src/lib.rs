//! The agent side of Assegai: a typed client for the local proxy, and the wire types the proxy
//! itself is built on.
//!
//! An agent holds only an id and a token (from `ASSEGAI_AGENT_ID` / `ASSEGAI_AGENT_TOKEN`).
//! Keys, the wallet and the policy live in the proxy; this crate only speaks its HTTP protocol.
//!
//! ```no_run
//! use assegai_sdk::{Assegai, ChainId};
//! # async fn run() -> assegai_sdk::Result<()> {
//! let assegai = Assegai::from_env()?;
//! let me = assegai.wallet_address(ChainId::ANVIL).await?;
//! let wei = assegai.balance(ChainId::ANVIL, me).await?;
//! assegai.info(format!("{me} holds {wei} wei")).await?;
//! # Ok(()) }
//! ```

#![deny(clippy::print_stdout, clippy::print_stderr)]
#![warn(missing_docs)]

mod chain;
mod client;
pub mod env;
pub mod erc20;
mod error;
mod sse;
pub mod wire;

pub use alloy_primitives::{Address, B256, Bytes, U256};
pub use chain::{ChainId, ParseChainIdError};
pub use client::{Assegai, AssegaiBuilder, TxReceipt};
pub use error::{Error, Result};
pub use sse::{EventStream, SseEvent};
pub use wire::LogLevel;
