//! `assegai limits AGENT`: per chain, what the agent has spent (approved or confirmed) and has
//! pending, against each of its native spending limits, as bars. Fees count: value + worst-case
//! fee while a request may still be sent, value + the fee paid once its receipt is in.

use assegai_proxy::{
    agents,
    sanitize::neutralize,
    store::now_ms,
    tx::{limits::Window, policy::native_symbol},
    units::format_units,
};
use assegai_sdk::U256;
use console::style;
use serde_json::json;

use crate::{
    cli::LimitsArgs,
    printer::{Printer, bar},
    settings::Settings,
};

pub fn run(args: &LimitsArgs, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    let store = settings.store()?;
    let agent = agents::find(&store, &args.agent)?;
    let manifest = agent.manifest()?;
    let limits = manifest.spending_limits.clone().unwrap_or_default();
    let mut out = Vec::new();
    for chain in &manifest.permissions.chains {
        let symbol = native_symbol(*chain);
        let mut rows = Vec::new();
        for window in Window::ALL {
            let (settled, pending) = store.spend_breakdown(&agent.id, chain.id(), window.since(now_ms()))?;
            rows.push((window.name(), settled, pending, window.limit(&limits)));
        }
        out.push((*chain, symbol, rows));
    }
    if args.json.json {
        let chains: Vec<_> = out
            .iter()
            .map(|(chain, symbol, rows)| {
                let windows: Vec<_> = rows
                    .iter()
                    .map(|(name, settled, pending, limit)| {
                        json!({"window": name, "spent_wei": settled.to_string(), "pending_wei": pending.to_string(),
                               "limit_wei": limit.map(|l| l.to_string())})
                    })
                    .collect();
                json!({"chain": chain, "symbol": symbol, "windows": windows})
            })
            .collect();
        return printer.json(&json!({
            "agent": agent.name, "agent_id": agent.id,
            "per_transaction": limits.per_transaction.as_ref().map(|l| l.as_str()),
            "chains": chains,
        }));
    }
    printer.data(format!("{} ({})", style(neutralize(&agent.name)).bold(), agent.id));
    match &limits.per_transaction {
        Some(l) => printer.data(format!("  per transaction: {} (native units)", l.as_str())),
        None => printer.data("  per transaction: no limit"),
    }
    printer.data("  (amounts are value + fee: the worst case while pending, the fee paid once confirmed)");
    for (chain, symbol, rows) in &out {
        printer.data(format!("  {}", chain.name().map_or_else(|| chain.to_string(), |n| format!("{n} ({chain})"))));
        for (name, settled, pending, limit) in rows {
            let amounts = |v: &U256| format_units(*v, 18);
            match limit {
                Some(limit) => printer.data(format!(
                    "    {name:<8} {} {} + {} pending of {} {symbol}",
                    bar(*settled, *pending, *limit),
                    amounts(settled),
                    amounts(pending),
                    amounts(limit)
                )),
                None => printer.data(format!(
                    "    {name:<8} no limit ({} + {} pending {symbol})",
                    amounts(settled),
                    amounts(pending)
                )),
            }
        }
    }
    Ok(())
}
