//! `assegai wallet address|import|use-test-account`: the signer of approved transactions.

use crate::{cli::WalletArgs, printer::Printer, settings::Settings};

pub async fn run(_args: &WalletArgs, _settings: &Settings, _printer: Printer) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
