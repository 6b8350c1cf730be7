//! `assegai agents [list|add|remove]`.

use anyhow::{Context, bail};
use assegai_proxy::{agents, manifest::Manifest, sanitize::neutralize};
use assegai_sdk::wire::TxStatus;
use comfy_table::{Table, presets::NOTHING};
use console::style;
use serde_json::json;

use crate::{
    cli::{AgentsAddArgs, AgentsArgs, AgentsCommand, AgentsPauseArgs, AgentsRemoveArgs, JsonFlag},
    printer::{Printer, timestamp},
    settings::Settings,
};

pub async fn run(args: &AgentsArgs, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    match &args.command {
        None => list(&JsonFlag { json: false }, settings, printer),
        Some(AgentsCommand::List(json)) => list(json, settings, printer),
        Some(AgentsCommand::Add(add_args)) => add(add_args, settings, printer).await,
        Some(AgentsCommand::Remove(remove_args)) => remove(remove_args, settings, printer).await,
        Some(AgentsCommand::Pause(which)) => pause(which, true, settings, printer).await,
        Some(AgentsCommand::Resume(which)) => pause(which, false, settings, printer).await,
    }
}

/// The kill switch. The flag is written first, so the proxy refuses the agent's next request
/// even if telling the running proxy fails; then its pending transactions are rejected.
async fn pause(which: &AgentsPauseArgs, paused: bool, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    let store = settings.store()?;
    let targets = match &which.agent {
        Some(a) => vec![agents::find(&store, a)?],
        None => store.list_agents()?,
    };
    if targets.is_empty() {
        printer.info("No agents are registered.");
        return Ok(());
    }
    let admin = settings.admin();
    let mut failures = 0;
    for agent in &targets {
        store.set_paused(&agent.id, paused, "cli")?;
        let name = neutralize(&agent.name);
        if !paused {
            admin.agent_changed(&agent.id).await.ok();
            printer.success(format!("Resumed `{name}` ({}).", agent.id));
            continue;
        }
        let rejected = match admin.agent_paused(&agent.id).await {
            Ok(Some(n)) => n,
            Ok(None) => {
                // No proxy: nobody waits for the pending rows; reject them here.
                let mut n = 0;
                for row in store.txs(Some(&agent.id), Some(TxStatus::Pending), u32::MAX)? {
                    if store.decide_tx(
                        &row.id,
                        TxStatus::Pending,
                        TxStatus::Rejected,
                        Some("agent paused"),
                        "kill switch",
                    )? {
                        n += 1;
                    }
                }
                n
            }
            Err(e) => {
                failures += 1;
                printer.warn(format!("the running proxy could not be told to pause `{name}` ({e}); restart it"));
                0
            }
        };
        printer.success(format!("Paused `{name}` ({}); rejected {rejected} pending transaction(s).", agent.id));
    }
    if failures > 0 {
        anyhow::bail!("{failures} agent(s) are paused in the database but the running proxy was not told; restart it");
    }
    Ok(())
}

fn list(args: &JsonFlag, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    let store = settings.store()?;
    let rows = store.list_agents()?;
    if args.json {
        let out: Vec<_> = rows
            .iter()
            .map(|a| {
                let manifest: serde_json::Value = serde_json::from_str(&a.manifest).unwrap_or_default();
                json!({
                    "id": a.id, "name": a.name, "paused": a.paused, "source_dir": a.source_dir,
                    "created_at": a.created_at, "updated_at": a.updated_at, "manifest": manifest,
                })
            })
            .collect();
        return printer.json(&out);
    }
    if rows.is_empty() {
        printer.info("No agents yet. Register one with `assegai agents add NAME`.");
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(NOTHING).set_header(["ID", "NAME", "STATUS", "CHAINS", "REGISTERED (UTC)"]);
    for a in &rows {
        let chains = Manifest::parse(&a.manifest, std::path::Path::new("(stored)"))
            .map(|m| m.permissions.chains.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
            .unwrap_or_else(|_| "?".into());
        let status = if a.paused { "paused" } else { "active" };
        table.add_row([a.id.clone(), neutralize(&a.name), status.into(), chains, timestamp(a.created_at)]);
    }
    printer.data(table);
    Ok(())
}

async fn add(args: &AgentsAddArgs, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    let manifest = match &args.manifest {
        Some(path) => Manifest::load(path)?,
        None => Manifest::minimal(&args.name),
    };
    let store = settings.store()?;
    let registered = agents::register(&store, &args.name, &manifest, None)?;
    // A running proxy may have the old token cached.
    let notified = settings.admin().agent_changed(&registered.id).await;
    if args.json.json {
        printer.json(&registered)?;
    } else {
        let verb = if registered.created { "Registered" } else { "Rotated the token of" };
        printer.success(format!("{verb} agent `{}` ({})", neutralize(&registered.name), registered.id));
        printer.info(format!(
            "{} this token is shown once; give it to the agent as ASSEGAI_AGENT_TOKEN:",
            style("note:").bold()
        ));
        printer.data(&registered.token);
    }
    if let Err(e) = notified {
        printer.warn(format!(
            "the running proxy could not be told about the change ({e}); restart it so the new token applies"
        ));
    }
    Ok(())
}

async fn remove(args: &AgentsRemoveArgs, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    let store = settings.store()?;
    let agent = agents::find(&store, &args.agent)?;
    if !args.yes {
        if !printer.interactive() {
            bail!(
                "refusing to remove agent `{}` without confirmation; pass `--yes` to remove it",
                neutralize(&agent.name)
            );
        }
        let confirmed = dialoguer::Confirm::new()
            .with_prompt(format!("Remove agent `{}` ({}) and revoke its token?", neutralize(&agent.name), agent.id))
            .default(false)
            .interact()
            .context("reading your answer")?;
        if !confirmed {
            printer.info("Nothing removed.");
            return Ok(());
        }
    }
    store.remove_agent(&agent.id)?;
    if let Err(e) = settings.admin().agent_changed(&agent.id).await {
        printer.warn(format!(
            "the running proxy could not be told about the removal ({e}); restart it to revoke the token there"
        ));
    }
    printer.success(format!("Removed agent `{}` ({}); its token no longer works.", neutralize(&agent.name), agent.id));
    Ok(())
}
