//! One file per subcommand; each takes its parsed arguments and the resolved settings.

pub mod agents;
pub mod completions;
pub mod keys;
pub mod limits;
pub mod logs;
pub mod pricing;
pub mod proxy;
pub mod txs;
pub mod usage;
