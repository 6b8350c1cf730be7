//! The Assegai engine: the local proxy agents talk to, and everything it enforces and records.
//!
//! Agents hold only an id and a token. This crate owns authentication ([`auth`]), rate limits
//! ([`ratelimit`]), chain access and its read-only policy ([`chain`]), agent logs ([`logs`]),
//! the signer's address ([`wallet`]), the registry ([`agents`]), the manifest ([`manifest`]) and
//! whether one grants more than another ([`manifest_diff`]), settings and paths ([`config`]), the
//! database ([`store`]), the admin socket ([`admin`]) and the server's lifecycle ([`server`]).
//! Wire types come from `assegai-sdk`, so the protocol is written once. The CLI is a thin front
//! over this crate; nothing here prints or prompts.

#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod admin;
pub mod agents;
pub mod ai;
pub mod auth;
pub mod chain;
pub mod config;
mod error;
mod extract;
pub mod ids;
pub mod keys;
pub mod logs;
pub mod manifest;
pub mod manifest_diff;
pub mod ratelimit;
mod routes;
pub mod runners;
pub mod sanitize;
pub mod server;
pub mod state;
pub mod store;
pub mod tx;
pub mod units;
pub mod upstream;
pub mod wallet;
pub mod writer;

pub use error::{Error, Result};
