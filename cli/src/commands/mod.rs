//! One file per subcommand; each takes its parsed arguments and the resolved settings.

pub mod agents;
pub mod allowance;
pub mod approve;
pub mod completions;
pub mod config;
pub mod doctor;
pub mod keys;
pub mod limits;
pub mod logs;
pub mod new;
pub mod pricing;
pub mod proxy;
pub mod run;
pub mod txs;
pub mod usage;
pub mod wallet;
