//! `assegai agents [list|show|add|remove|pause|resume]`.

use anyhow::{Context, bail};
use assegai_proxy::{
    admin::wire::Granted, agents, ai::budget::Window, ids::AgentId, manifest::Manifest, sanitize::neutralize,
    store::now_ms, units::format_usd,
};
use assegai_sdk::{U256, wire::TxStatus};
use comfy_table::{Table, presets::NOTHING};
use console::style;
use serde_json::json;

use crate::{
    cli::{AgentsAddArgs, AgentsArgs, AgentsCommand, AgentsPauseArgs, AgentsRemoveArgs, AgentsShowArgs, JsonFlag},
    commands::{allowance, usage::in_flight},
    manifest_check::{self, Origin},
    printer::{Printer, bar, chain_label, timestamp},
    settings::Settings,
};

pub async fn run(args: &AgentsArgs, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    match &args.command {
        None => list(&JsonFlag { json: false }, settings, printer),
        Some(AgentsCommand::List(json)) => list(json, settings, printer),
        Some(AgentsCommand::Show(show_args)) => show(show_args, settings, printer).await,
        Some(AgentsCommand::RevokeApprovals(which)) => revoke_approvals(which, settings, printer).await,
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
                let manifest: serde_json::Value = serde_json::from_str(&a.manifest_json).unwrap_or_default();
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
        let chains = a
            .manifest()
            .map(|m| m.permissions.chains.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
            .unwrap_or_else(|_| "?".into());
        let status = if a.paused { "paused" } else { "active" };
        table.add_row([a.id.to_string(), neutralize(&a.name), status.into(), chains, timestamp(a.created_at)]);
    }
    printer.data(table);
    Ok(())
}

/// How far back `agents show` sums AI usage.
const USAGE_DAYS: i64 = 30;

async fn show(args: &AgentsShowArgs, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    let store = settings.store()?;
    let agent = agents::find(&store, &args.agent)?;
    let manifest = agent.manifest()?;
    let allowances = allowance::effective(&store, &agent)?;
    let txs = store.tx_counts(&agent.id)?;
    let usage = store.usage_summary(Some(&agent.id), now_ms() - USAGE_DAYS * 86_400_000)?;
    let (calls, unpriced) = usage.iter().fold((0, 0), |(c, u), r| (c + r.calls, u + r.unpriced_calls));
    let cost_nano: u64 = usage.iter().map(|r| r.cost_nano_usd).sum();
    // The AI budget as `limits` shows spending: settled spend per window, plus what the calls in
    // flight on the running proxy reserve (against every window at once).
    let flying = in_flight(settings, printer).await.into_iter().find(|f| agent.id == f.agent_id.as_str());
    let (flying_calls, reserved) = flying.map_or((0, 0), |f| (f.calls, f.reserved_nano_usd));
    let mut budget_windows = Vec::new();
    if let Some(b) = &manifest.ai_budget {
        for window in Window::ALL {
            let Some(limit) = window.limit(b) else { continue };
            let spent = store.ai_spend_since(&agent.id, now_ms() - window.len_ms())?;
            budget_windows.push((window.name(), spent, limit.base_units()));
        }
    }
    let usd = |nano: u64| format_usd(U256::from(nano), 9);
    // Read back from the chain by the running proxy (it has the wallet and the signing RPCs).
    let approvals = settings.admin().agent_approvals(&agent.id).await.ok().flatten();

    if args.json.json {
        let manifest_json: serde_json::Value = serde_json::from_str(&agent.manifest_json).unwrap_or_default();
        return printer.json(&json!({
            "id": agent.id, "name": agent.name, "paused": agent.paused, "source_dir": agent.source_dir,
            "created_at": agent.created_at, "updated_at": agent.updated_at, "manifest": manifest_json,
            "allowances": allowances.iter().map(allowance::Entry::json).collect::<Vec<_>>(),
            "approvals_granted": approvals,
            "transactions": txs.iter().map(|(s, n)| (s.as_str().to_owned(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "ai_usage_30d": {"calls": calls, "unpriced_calls": unpriced, "cost_usd": format_usd(U256::from(cost_nano), 9)},
            "ai_budget": (!budget_windows.is_empty()).then(|| json!({
                "in_flight_calls": flying_calls,
                "reserved_usd": usd(reserved),
                "windows": budget_windows.iter().map(|(name, spent, limit)| json!({
                    "window": name, "spent_usd": usd(*spent), "reserved_usd": usd(reserved),
                    "limit_usd": format_usd(*limit, 9),
                })).collect::<Vec<_>>(),
            })),
        }));
    }

    let name = neutralize(&agent.name);
    let status = if agent.paused { style("paused").red().bold() } else { style("active").green() };
    printer.data(format!("{} ({})  {status}", style(&name).bold(), agent.id));
    let field = |label: &str, value: String| printer.data(format!("  {label:<12} {value}"));
    let from = match &agent.source_dir {
        Some(dir) => format!("from {} (assegai run)", neutralize(dir)),
        None => "with `assegai agents add`".to_owned(),
    };
    field("registered", format!("{} UTC, {from}", timestamp(agent.created_at)));
    if let Some(d) = &manifest.description {
        field("about", neutralize(d));
    }
    if let Some(runtime) = manifest.runtime {
        let entry = manifest.entrypoint.as_deref().map(|e| format!(", {}", neutralize(e))).unwrap_or_default();
        // As the manifest spells it (`"runtime": "node"`).
        let runtime =
            serde_json::to_value(runtime).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        field("runtime", format!("{runtime}{entry}"));
    }
    let chains: Vec<String> = manifest
        .permissions
        .chains
        .iter()
        .map(|c| match manifest.permissions.rpcs.get(c) {
            Some(url) => format!("{} via {}", chain_label(*c), neutralize(url)),
            None => chain_label(*c),
        })
        .collect();
    field("chains", list_or(&chains, "none: every chain call is refused"));
    let contracts: Vec<String> = manifest.permissions.contracts.iter().map(|a| a.to_checksum(None)).collect();
    field("contracts", list_or(&contracts, "none: calls with data are refused (token transfers need an allowance)"));
    let apis: Vec<String> = manifest.permissions.apis.iter().map(|p| p.as_str().to_owned()).collect();
    let ai = match (apis.is_empty(), budget_windows.is_empty()) {
        (true, _) => "none: AI calls are refused".to_owned(),
        (false, false) => format!("{}; budget below", apis.join(", ")),
        (false, true) => format!("{}; no budget", apis.join(", ")),
    };
    field("AI", ai);
    for (i, (name, spent, limit)) in budget_windows.iter().enumerate() {
        let label = if i == 0 { "AI budget" } else { "" };
        field(
            label,
            format!(
                "{name:<8} {} {} + {} reserved of {} USD",
                bar(U256::from(*spent), U256::from(reserved), *limit),
                usd(*spent),
                usd(reserved),
                format_usd(*limit, 9)
            ),
        );
    }
    if flying_calls > 0 {
        field("", format!("({flying_calls} AI call(s) in flight)"));
    }
    let limits = manifest.spending_limits.clone().unwrap_or_default();
    let limit_text: Vec<String> = [
        ("per transaction", &limits.per_transaction),
        ("daily", &limits.daily),
        ("weekly", &limits.weekly),
        ("monthly", &limits.monthly),
    ]
    .into_iter()
    .filter_map(|(what, l)| l.as_ref().map(|l| format!("{what} {}", l.as_str())))
    .collect();
    field(
        "limits",
        if limit_text.is_empty() {
            "none (every request still waits for a person)".to_owned()
        } else {
            format!("{} (native units); `assegai limits {}` shows spending", limit_text.join(", "), agent.id)
        },
    );
    let tokens: Vec<String> = allowances
        .iter()
        .map(|e| {
            let token = e.symbol.map_or_else(|| e.token.clone(), str::to_owned);
            format!("{} {token} on {} ({})", e.amount, e.chain, e.source)
        })
        .collect();
    field("allowances", list_or(&tokens, "none: token transfers are refused"));
    field("approvals", approvals_text(approvals.as_ref(), &agent.id));
    if let Some(r) = &manifest.resources {
        let parts: Vec<String> = [
            r.memory.as_ref().map(|m| format!("{} memory", neutralize(m))),
            r.cpu.as_ref().map(|c| format!("{} CPU", neutralize(c))),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !parts.is_empty() {
            field("resources", parts.join(", "));
        }
    }
    let requests: Vec<String> = txs.iter().map(|(s, n)| format!("{n} {}", s.as_str())).collect();
    field("requests", list_or(&requests, "none yet"));
    let cost = match (unpriced, calls) {
        (_, 0) => String::new(),
        (0, _) => format!(", {} USD", format_usd(U256::from(cost_nano), 9)),
        (u, _) => format!(", {} USD + {u} unpriced", format_usd(U256::from(cost_nano), 9)),
    };
    field("AI usage", format!("{calls} calls in the last {USAGE_DAYS} days{cost}"));
    Ok(())
}

/// The ERC-20 approvals the agent's requests granted, as the chain has them now.
fn approvals_text(approvals: Option<&Vec<Granted>>, id: &AgentId) -> String {
    let Some(list) = approvals else {
        return "(start `assegai proxy` to read what its approved requests granted from the chain)".to_owned();
    };
    let items: Vec<String> = list
        .iter()
        .map(|a| {
            let left = match a.remaining.as_deref().map(|r| U256::from_str_radix(r, 10)) {
                Some(Ok(v)) if v == U256::MAX => "unlimited".to_owned(),
                Some(Ok(v)) => assegai_proxy::units::format_units(v, a.decimals),
                _ => format!("unknown ({})", neutralize(a.error.as_deref().unwrap_or("?"))),
            };
            format!(
                "{} may spend {left} {} of {} on {}",
                neutralize(&a.spender),
                neutralize(&a.symbol),
                neutralize(&a.token),
                a.chain
            )
        })
        .collect();
    if items.is_empty() {
        return "none granted".to_owned();
    }
    format!("{}; `assegai agents revoke-approvals {id}` takes them back", items.join(", "))
}

/// `assegai agents revoke-approvals AGENT`: queues `approve(spender, 0)` for each approval the
/// agent's requests granted; each still waits for a person in `assegai approve`.
async fn revoke_approvals(args: &AgentsShowArgs, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    let store = settings.store()?;
    let agent = agents::find(&store, &args.agent)?;
    let Some(queued) = settings.admin().revoke_approvals(&agent.id).await? else {
        anyhow::bail!(
            "no proxy is running: the revokes are requests it holds for your approval; start `assegai proxy` and run this again"
        );
    };
    if args.json.json {
        return printer.json(&json!({"agent_id": agent.id, "queued": queued}));
    }
    if queued == 0 {
        printer.info(format!("Nothing to revoke: no approval of `{}` has anything left.", neutralize(&agent.name)));
    } else {
        printer.success(format!(
            "Queued {queued} revoke request(s) (approve(spender, 0)); approve them with `assegai approve`."
        ));
    }
    Ok(())
}

/// `items` joined with commas, or `empty` when there are none.
fn list_or(items: &[String], empty: &str) -> String {
    if items.is_empty() { empty.to_owned() } else { items.join(", ") }
}

async fn add(args: &AgentsAddArgs, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    let manifest = match &args.manifest {
        Some(path) => Manifest::load(path)?,
        None => Manifest::minimal(&args.name),
    };
    let store = settings.store()?;
    let origin = args.manifest.as_deref().map_or(Origin::Default, Origin::File);
    manifest_check::settle(&store, &args.name, origin, &manifest, args.accept_manifest, printer).await?;
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
            .interact_on(&crate::printer::prompt_term())
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
