//! `assegai pricing [list]` shows the model prices AI cost is computed from; `pricing update
//! --file PATH` installs a newer LiteLLM price file after checking it, and a running proxy switches
//! to it at once.

use anyhow::Context;
use assegai_proxy::{
    ai::pricing::{ModelPrice, Pricing},
    units::format_usd,
};
use assegai_sdk::U256;
use comfy_table::{Table, presets::NOTHING};
use serde_json::json;

use crate::{
    cli::{PricingArgs, PricingCommand, PricingListArgs, PricingUpdateArgs},
    printer::Printer,
    settings::Settings,
};

pub async fn run(args: &PricingArgs, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    match &args.command {
        None => list(&args.list, settings, printer),
        Some(PricingCommand::List(list_args)) => list(list_args, settings, printer),
        Some(PricingCommand::Update(update_args)) => update(update_args, settings, printer).await,
    }
}

fn list(args: &PricingListArgs, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    let file = settings.home.pricing_file();
    let (pricing, installed) = Pricing::installed_or_embedded(&file)?;
    let source = if installed { file.display().to_string() } else { "the snapshot built into assegai".to_owned() };
    let filter = args.filter.as_deref().map(str::to_ascii_lowercase);
    let models: Vec<(&str, &ModelPrice)> = pricing
        .models()
        .into_iter()
        .filter(|(_, p)| args.provider.is_none_or(|want| p.provider == want))
        .filter(|(id, _)| filter.as_deref().is_none_or(|f| id.to_ascii_lowercase().contains(f)))
        .collect();

    if args.json.json {
        let rows: Vec<_> = models
            .iter()
            .map(|(id, p)| {
                let r = p.rates_for(0);
                json!({
                    "provider": p.provider.as_str(),
                    "model": id,
                    "usd_per_million_tokens": {
                        "input": per_million(r.input),
                        "output": per_million(r.output),
                        "cache_read": per_million(r.cache_read),
                        "cache_write": per_million(r.cache_write),
                    },
                    "long_context_tiers": p.tiers.iter().map(|t| t.above_tokens).collect::<Vec<_>>(),
                })
            })
            .collect();
        return printer.json(&json!({"source": source, "models": rows}));
    }
    if models.is_empty() {
        printer.info(format!(
            "No priced model matches; calls to such a model are recorded as unpriced (prices from {source})."
        ));
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(NOTHING).set_header(["PROVIDER", "MODEL", "INPUT", "OUTPUT", "CACHE READ", "CACHE WRITE"]);
    for (id, p) in &models {
        let r = p.rates_for(0);
        let mut model = (*id).to_owned();
        if let Some(top) = p.tiers.last() {
            model.push_str(&format!(" (dearer above {}k tokens)", top.above_tokens / 1000));
        }
        table.add_row([
            p.provider.as_str().to_owned(),
            model,
            per_million(r.input),
            per_million(r.output),
            per_million(r.cache_read),
            per_million(r.cache_write),
        ]);
    }
    printer.data(table);
    printer.info(format!(
        "USD per million tokens, from {source}; `assegai pricing update --file PATH` installs newer ones."
    ));
    Ok(())
}

/// atto-USD (1e-18) per token → USD per million tokens, exactly.
fn per_million(atto_per_token: u128) -> String {
    format_usd(U256::from(atto_per_token), 12)
}

async fn update(args: &PricingUpdateArgs, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    settings.home.ensure()?;
    let target = settings.home.pricing_file();
    // Checked before anything is written; installed by rename, so a proxy never reads half a file.
    let pricing = Pricing::install(&args.file, &target)
        .with_context(|| format!("installing prices from {}", args.file.display()))?;
    printer.success(format!("Installed prices for {} models to {}.", pricing.len(), target.display()));
    match settings.admin().pricing_changed().await {
        Ok(None) => {}
        Ok(Some(_)) => printer.info("The running proxy prices calls with them from now on."),
        Err(e) => printer.warn(format!("the running proxy could not switch to them ({e}); restart it to use them")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::per_million;

    #[test]
    fn prices_per_million_tokens_are_exact() {
        assert_eq!(per_million(2_500_000_000_000), "2.50"); // 2.5e-6 USD a token
        assert_eq!(per_million(10_000_000_000_000), "10.00");
        assert_eq!(per_million(75_000_000_000), "0.075");
        assert_eq!(per_million(1), "0.000000000001");
        assert_eq!(per_million(0), "0.00");
    }
}
