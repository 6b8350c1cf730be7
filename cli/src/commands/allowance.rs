//! `assegai allowance set|list`: how much of a token an agent may move per request, per chain.
//! Allowances set here are kept in the database and win over the manifest's for the same token.

use anyhow::Context;
use assegai_proxy::{
    agents,
    ids::AgentId,
    manifest::TokenAmount,
    sanitize::neutralize,
    store::{AgentRow, Store},
    tx::{policy::parse_address, tokens},
    units::parse_units,
};
use assegai_sdk::ChainId;
use comfy_table::{Table, presets::NOTHING};
use serde_json::json;

use crate::{
    cli::{AllowanceArgs, AllowanceCommand, AllowanceListArgs, AllowanceSetArgs},
    printer::{Printer, chain_label, timestamp},
    settings::Settings,
};

pub fn run(args: &AllowanceArgs, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    match &args.command {
        AllowanceCommand::Set(a) => set(a, settings, printer),
        AllowanceCommand::List(a) => list(a, settings, printer),
    }
}

fn set(args: &AllowanceSetArgs, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    let store = settings.store()?;
    let agent = agents::find(&store, &args.agent)?;
    let (token, known) = if args.token.starts_with("0x") {
        let address = parse_address(&args.token).map_err(|e| anyhow::anyhow!("--token: {e}"))?;
        (address, tokens::known(args.chain, address))
    } else {
        let (address, token) = tokens::by_symbol(args.chain, &args.token).with_context(|| {
            format!(
                "no token named `{}` is known on {}; give the token contract's address instead (--token 0x…)",
                neutralize(&args.token),
                args.chain
            )
        })?;
        (address, Some(token))
    };
    // Syntax first (any token), then, when the decimals are known, that it fits them exactly.
    TokenAmount::parse(&args.amount).map_err(|e| anyhow::anyhow!("AMOUNT: {e}"))?;
    if let Some(t) = known {
        parse_units(&args.amount, t.decimals).map_err(|e| anyhow::anyhow!("AMOUNT for {}: {e}", t.symbol))?;
    }
    let manifest = agent.manifest()?;
    if !manifest.allows_chain(args.chain) {
        printer.warn(format!(
            "{} is not in the agent's `permissions.chains`, so this allowance has no effect until it is",
            args.chain
        ));
    }
    let checksummed = token.to_checksum(None);
    store.set_allowance(&agent.id, args.chain.id(), token, &args.amount, "cli")?;
    let name = known.map_or_else(|| checksummed.clone(), |t| format!("{} ({checksummed})", t.symbol));
    printer.success(format!(
        "{} may move up to {} of {name} per request on {}.",
        neutralize(&agent.name),
        args.amount,
        chain_label(args.chain)
    ));
    Ok(())
}

/// One allowance in force: from the manifest, or set with the CLI (which wins for its token).
pub struct Entry {
    agent: String,
    agent_id: AgentId,
    pub chain: ChainId,
    pub token: String,
    pub symbol: Option<&'static str>,
    pub amount: String,
    pub source: &'static str,
    updated_at: Option<i64>,
}

impl Entry {
    pub fn json(&self) -> serde_json::Value {
        json!({"agent": self.agent, "agent_id": self.agent_id, "chain": self.chain, "token": self.token,
               "symbol": self.symbol, "amount": self.amount, "source": self.source, "updated_at": self.updated_at})
    }
}

/// The allowances in force for `agent`: the CLI's, and the manifest's for the tokens the CLI has
/// not set.
pub fn effective(store: &Store, agent: &AgentRow) -> anyhow::Result<Vec<Entry>> {
    let set = store.allowances(Some(&agent.id))?;
    let manifest = agent.manifest()?;
    let mut entries = Vec::new();
    for (chain, tokens) in &manifest.allowances {
        for (token, amount) in tokens {
            let key = token.to_checksum(None);
            if set.iter().any(|r| r.chain_id == chain.id() && r.token == *token) {
                continue; // overridden below
            }
            entries.push(entry(agent, *chain, key, amount.as_str().to_owned(), "manifest", None));
        }
    }
    for r in set {
        let chain = ChainId::eip155(r.chain_id);
        entries.push(entry(agent, chain, r.token.to_checksum(None), r.amount, "cli", Some(r.updated_at)));
    }
    Ok(entries)
}

fn list(args: &AllowanceListArgs, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    let store = settings.store()?;
    let agents = match &args.agent {
        Some(a) => vec![agents::find(&store, a)?],
        None => store.list_agents()?,
    };
    let mut entries = Vec::new();
    for agent in &agents {
        entries.extend(effective(&store, agent)?);
    }
    entries.sort_by(|a, b| (&a.agent, a.chain.id(), &a.token).cmp(&(&b.agent, b.chain.id(), &b.token)));
    if args.json.json {
        let out: Vec<_> = entries.iter().map(Entry::json).collect();
        return printer.json(&out);
    }
    if entries.is_empty() {
        printer
            .info("No token allowances. Set one with `assegai allowance set AGENT --chain eip155:1 --token USDC 100`.");
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(NOTHING).set_header(["AGENT", "CHAIN", "TOKEN", "PER REQUEST", "FROM", "SET (UTC)"]);
    for e in &entries {
        table.add_row([
            neutralize(&e.agent),
            chain_label(e.chain),
            e.symbol.map_or_else(|| e.token.clone(), |s| format!("{s} {}", e.token)),
            e.amount.clone(),
            e.source.to_owned(),
            e.updated_at.map(timestamp).unwrap_or_default(),
        ]);
    }
    printer.data(table);
    Ok(())
}

fn entry(
    agent: &AgentRow,
    chain: ChainId,
    token: String,
    amount: String,
    source: &'static str,
    updated_at: Option<i64>,
) -> Entry {
    let symbol = token.parse().ok().and_then(|a| tokens::known(chain, a)).map(|t| t.symbol);
    Entry { agent: agent.name.clone(), agent_id: agent.id.clone(), chain, token, symbol, amount, source, updated_at }
}
