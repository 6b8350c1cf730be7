//! `assegai new NAME`: scaffolds an agent from a template embedded in the binary.

use crate::{cli::NewArgs, printer::Printer};

pub fn run(_args: &NewArgs, _printer: Printer) -> anyhow::Result<()> {
    anyhow::bail!("`assegai new` is not built yet")
}
