//! `assegai txs` and `assegai reject ID`: transaction requests from the database, and rejections
//! through the running proxy. Approving lives in `approve.rs`.

use anyhow::bail;
use assegai_proxy::{
    agents,
    ids::{AgentId, TxId},
    sanitize::neutralize,
    store::{Store, TxRow},
    tx::{fees::FeeModel, policy::native_symbol},
    units::format_units,
};
use assegai_sdk::{ChainId, U256, wire::TxStatus};
use comfy_table::{Table, presets::NOTHING};
use serde_json::{Value, json};

use crate::{
    cli::{RejectArgs, TxsArgs},
    printer::{Printer, timestamp},
    settings::Settings,
};

pub fn history(args: &TxsArgs, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    let store = settings.existing_store()?;
    let agent = args.agent.as_deref().map(|a| agents::find(&store, a)).transpose()?;
    let rows = store.txs(agent.as_ref().map(|a| &a.id), args.status, args.limit)?;
    let empty = if rows.is_empty() && !args.json.json {
        let agent = agent.as_ref().map(|a| (&a.id, a.name.as_str()));
        nothing_matches(&store, settings, agent, args.status)?
    } else {
        String::new()
    };
    print_rows(&rows, args.json.json, printer, &empty)
}

/// What an empty `txs` says: which filter left nothing, and how many requests the looser listing
/// shows (`No confirmed requests for `pyscout` (1 other: `assegai txs --agent pyscout`)`).
fn nothing_matches(
    store: &Store,
    settings: &Settings,
    agent: Option<(&AgentId, &str)>,
    status: Option<TxStatus>,
) -> anyhow::Result<String> {
    let count =
        |agent_id: &AgentId| -> anyhow::Result<u64> { Ok(store.tx_counts(agent_id)?.iter().map(|(_, n)| n).sum()) };
    let everyone =
        || -> anyhow::Result<u64> { store.list_agents()?.iter().map(|a| count(&a.id)).sum::<anyhow::Result<u64>>() };
    let what = status.map_or_else(|| "transaction requests".to_owned(), |s| format!("{} requests", s.as_str()));
    let (said, others, looser) = match agent {
        None if status.is_none() => return Ok("No transaction requests yet.".to_owned()),
        None => (format!("No {what}"), everyone()?, "txs".to_owned()),
        Some((id, name)) => {
            let name = neutralize(name);
            let theirs = count(id)?;
            match status {
                Some(_) if theirs > 0 => (format!("No {what} for `{name}`"), theirs, format!("txs --agent {name}")),
                _ => (format!("No transaction requests for `{name}`"), everyone()?, "txs".to_owned()),
            }
        }
    };
    Ok(match others {
        0 if agent.is_none() => "No transaction requests yet.".to_owned(),
        0 => format!("{said} yet."),
        1 => format!("{said} (1 other: `{}`).", settings.command(&looser)),
        n => format!("{said} ({n} others: `{}`).", settings.command(&looser)),
    })
}

pub async fn reject(args: &RejectArgs, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    let store = settings.store()?;
    let Some(row) = args.id.parse::<TxId>().ok().map(|id| store.tx(&id)).transpose()?.flatten() else {
        bail!("no transaction request `{}` (see `{}`)", neutralize(&args.id), settings.command("approve --list"));
    };
    if row.status != TxStatus::Pending {
        bail!("request {} is already {}; only pending requests can be rejected", row.id, row.status.as_str());
    }
    match settings.admin().reject_tx(&row.id).await? {
        Some(true) => {}
        Some(false) => bail!("request {} was decided meanwhile (see `{}`)", row.id, settings.command("txs")),
        None => {
            // No proxy: nobody waits for it; record the decision directly.
            if !store.decide_tx(&row.id, TxStatus::Pending, TxStatus::Rejected, Some("rejected by user"), "cli")? {
                bail!("request {} was decided meanwhile (see `{}`)", row.id, settings.command("txs"));
            }
        }
    }
    printer.success(format!("Rejected {}: {}", row.id, neutralize(&row.action)));
    Ok(())
}

pub fn print_rows(rows: &[TxRow], json: bool, printer: Printer, empty: &str) -> anyhow::Result<()> {
    if json {
        return printer.json(&rows.iter().map(row_json).collect::<Vec<_>>());
    }
    if rows.is_empty() {
        printer.info(empty);
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(NOTHING).set_header([
        "ID",
        "AGENT",
        "STATUS",
        "CHAIN",
        "ACTION",
        "REQUESTED (UTC)",
        "HASH / WHY",
    ]);
    for r in rows {
        table.add_row([
            r.id.to_string(),
            neutralize(&r.agent_name),
            r.status.as_str().to_owned(),
            chain_label(r.chain_id),
            neutralize(&r.action),
            timestamp(r.created_at),
            outcome(r.tx_hash.map(|h| h.to_string()).as_deref(), r.error.as_deref()),
        ]);
    }
    printer.data(table);
    Ok(())
}

fn chain_label(id: u64) -> String {
    crate::printer::chain_label(ChainId::eip155(id))
}

fn row_json(r: &TxRow) -> Value {
    let chain = ChainId::eip155(r.chain_id);
    // Amounts as decimal strings, exact (a JSON number would round them).
    let decimal = |v: Option<U256>| v.map(|v| v.to_string());
    json!({
        "id": r.id, "agent": r.agent_name, "agent_id": r.agent_id, "status": r.status,
        "chain": chain, "chain_name": chain.name(), "to": r.to.to_checksum(None), "value": r.value_wei.to_string(),
        "value_display": format!("{} {}", format_units(r.value_wei, 18), native_symbol(chain)),
        "data": r.data.to_string(), "gas_limit": r.gas_limit, "action": r.action, "detail": r.detail,
        "fee_model": r.fee_model.map(FeeModel::as_str), "max_fee_per_gas": decimal(r.max_fee_per_gas),
        "max_priority_fee_per_gas": decimal(r.max_priority_fee_per_gas), "max_fee_wei": decimal(r.max_fee_wei),
        "fee_wei": decimal(r.fee_wei),
        "simulation": r.detail.as_ref().map_or(&Value::Null, |d| &d["simulation"]),
        "tx_hash": r.tx_hash, "error": r.error, "created_at": r.created_at, "decided_at": r.decided_at,
        "decided_by": r.decided_by, "held_by": r.held_by,
    })
}

/// The hash, shortened as wallets show it (`--json` has it whole), or why there is none.
fn outcome(hash: Option<&str>, error: Option<&str>) -> String {
    match (hash, error) {
        (Some(h), _) if h.len() > 14 && h.is_ascii() => format!("{}…{}", &h[..8], &h[h.len() - 6..]),
        (Some(h), _) => neutralize(h),
        (None, Some(e)) => {
            let e = neutralize(e);
            if e.chars().count() > 48 { format!("{}…", e.chars().take(47).collect::<String>()) } else { e }
        }
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::outcome;

    #[test]
    fn outcomes_are_short() {
        let hash = "0x2491aa768f6d3f5516e31e9828d87f62048db8173165c42cd9aa26c159b812d0";
        assert_eq!(outcome(Some(hash), None), "0x2491aa…b812d0");
        assert_eq!(outcome(None, Some("agent paused")), "agent paused");
        assert_eq!(outcome(None, Some(&"x".repeat(60))).chars().count(), 48);
        assert_eq!(outcome(None, Some("\u{1b}[31mred")), "\\x1b[31mred");
        assert_eq!(outcome(None, None), "");
    }
}
