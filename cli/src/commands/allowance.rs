//! `assegai allowance set|list`: per-request token allowances per agent and chain.

use crate::{cli::AllowanceArgs, printer::Printer, settings::Settings};

pub fn run(_args: &AllowanceArgs, _settings: &Settings, _printer: Printer) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
