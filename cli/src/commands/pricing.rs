//! `assegai pricing update --file PATH`: installs a newer LiteLLM price file after checking it.

use anyhow::Context;
use assegai_proxy::ai::pricing::Pricing;

use crate::{
    cli::{PricingArgs, PricingCommand},
    printer::Printer,
    settings::Settings,
};

pub fn run(args: &PricingArgs, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    let PricingCommand::Update(update) = &args.command;
    let text = std::fs::read_to_string(&update.file).with_context(|| format!("reading {}", update.file.display()))?;
    let pricing = Pricing::from_json(&text)
        .with_context(|| format!("{} is not a usable LiteLLM price file", update.file.display()))?;
    settings.home.ensure()?;
    let target = settings.home.pricing_file();
    // Write beside the target and rename, so a running proxy never reads half a file.
    let tmp = target.with_extension("json.tmp");
    std::fs::write(&tmp, &text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &target).with_context(|| format!("installing {}", target.display()))?;
    printer.success(format!(
        "Installed prices for {} models to {}; restart a running proxy to use them.",
        pricing.len(),
        target.display()
    ));
    Ok(())
}
