//! `assegai usage`: AI calls, tokens and cost per agent, provider and model, with totals: the
//! settled spend, and what the calls in flight on the running proxy reserve against budgets. Costs
//! of models without a known price are shown as unknown, never as 0; calls whose tokens are the
//! proxy's estimate (their reply gave no final usage) get rows of their own, marked `estimated`.
//! `--by day` draws the cost of each day as a bar instead (the bars of `limits`).

use anyhow::bail;
use assegai_proxy::{
    agents,
    ai::budget::InFlight,
    ids::AgentId,
    sanitize::neutralize,
    store::{Store, now_ms},
    units::format_usd,
};
use assegai_sdk::U256;
use comfy_table::{Table, presets::NOTHING};
use serde_json::json;

use crate::{
    cli::{UsageArgs, UsagePeriod},
    printer::{Printer, bar, timestamp},
    settings::Settings,
};

pub async fn run(args: &UsageArgs, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    let since_ms = match parse_since(&args.since) {
        Some(ms) => now_ms() - ms,
        None if args.since == "all" => 0,
        None => bail!("`--since {}` is not a duration: use e.g. 30m, 24h, 7d or `all`", args.since),
    };
    let store = settings.existing_store()?;
    let agent = args.agent.as_deref().map(|a| agents::find(&store, a)).transpose()?;
    if args.by == Some(UsagePeriod::Day) {
        return by_day(args, &store, settings, agent.as_ref().map(|a| (&a.id, a.name.as_str())), since_ms, printer);
    }
    let rows = store.usage_summary(agent.as_ref().map(|a| &a.id), since_ms)?;
    let total_calls: u64 = rows.iter().map(|r| r.calls).sum();
    let total_cost: u64 = rows.iter().map(|r| r.cost_nano_usd).sum();
    let total_unpriced: u64 = rows.iter().map(|r| r.unpriced_calls).sum();
    let total_estimated: u64 = rows.iter().filter(|r| r.estimated).map(|r| r.calls).sum();
    let mut flying = in_flight(settings, printer).await;
    if let Some(a) = &agent {
        flying.retain(|f| a.id == f.agent_id.as_str());
    }
    let flying_calls: u64 = flying.iter().map(|f| u64::from(f.calls)).sum();
    let reserved: u64 = flying.iter().map(|f| f.reserved_nano_usd).sum();
    let name_of = |id: &AgentId| store.agent(id).ok().flatten().map(|a| a.name).unwrap_or_else(|| id.to_string());
    if args.json.json {
        let out: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "agent_id": r.agent_id, "agent": r.agent_name, "provider": r.provider, "model": r.model,
                    "estimated": r.estimated,
                    "calls": r.calls, "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
                    "cache_read_tokens": r.cache_read_tokens, "cache_write_tokens": r.cache_write_tokens,
                    "cost_usd": cost_json(r.cost_nano_usd, r.unpriced_calls, r.calls),
                    "unpriced_calls": r.unpriced_calls,
                })
            })
            .collect();
        let flying_json: Vec<_> = flying
            .iter()
            .map(|f| {
                json!({"agent_id": f.agent_id, "agent": name_of(&f.agent_id), "calls": f.calls,
                       "reserved_usd": usd(f.reserved_nano_usd)})
            })
            .collect();
        return printer.json(&json!({
            "since_ms": since_ms,
            "rows": out,
            "in_flight": flying_json,
            "total": {
                "calls": total_calls, "cost_usd": cost_json(total_cost, total_unpriced, total_calls),
                "unpriced_calls": total_unpriced, "estimated_calls": total_estimated,
                "in_flight_calls": flying_calls, "reserved_usd": usd(reserved),
            },
        }));
    }
    let in_flight_line = || {
        let who: Vec<String> = flying
            .iter()
            .map(|f| {
                format!(
                    "{} {} ({} USD)",
                    neutralize(&name_of(&f.agent_id)),
                    calls(u64::from(f.calls)),
                    usd(f.reserved_nano_usd)
                )
            })
            .collect();
        format!("In flight: {} reserving {} USD: {}", calls(flying_calls), usd(reserved), who.join(", "))
    };
    if rows.is_empty() {
        let agent = agent.as_ref().map(|a| (&a.id, a.name.as_str()));
        printer.info(nothing_matches(&store, settings, agent, &args.since)?);
        if flying_calls > 0 {
            printer.data(in_flight_line());
        }
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(NOTHING).set_header([
        "AGENT",
        "PROVIDER",
        "MODEL",
        "CALLS",
        "INPUT",
        "OUTPUT",
        "CACHE READ",
        "CACHE WRITE",
        "COST (USD)",
    ]);
    for r in &rows {
        table.add_row([
            neutralize(&r.agent_name),
            r.provider.clone(),
            match (r.model.as_deref().map_or_else(|| "-".into(), neutralize), r.estimated) {
                (model, true) => format!("{model} (estimated)"),
                (model, false) => model,
            },
            r.calls.to_string(),
            r.input_tokens.to_string(),
            r.output_tokens.to_string(),
            r.cache_read_tokens.to_string(),
            r.cache_write_tokens.to_string(),
            cost_text(r.cost_nano_usd, r.unpriced_calls, r.calls),
        ]);
    }
    table.add_row([
        "TOTAL".to_owned(),
        String::new(),
        String::new(),
        total_calls.to_string(),
        rows.iter().map(|r| r.input_tokens).sum::<u64>().to_string(),
        rows.iter().map(|r| r.output_tokens).sum::<u64>().to_string(),
        rows.iter().map(|r| r.cache_read_tokens).sum::<u64>().to_string(),
        rows.iter().map(|r| r.cache_write_tokens).sum::<u64>().to_string(),
        cost_text(total_cost, total_unpriced, total_calls),
    ]);
    printer.data(table);
    let estimated = match total_estimated {
        0 => String::new(),
        n => format!(" ({} estimated: their replies gave no final usage)", calls(n)),
    };
    let settled = match (total_unpriced, total_calls) {
        (0, _) => format!("{} USD", usd(total_cost)),
        (u, c) if u == c => "unknown (no call's model has a known price)".to_owned(),
        (u, _) => format!("{} USD + {} of unknown cost", usd(total_cost), calls(u)),
    };
    printer.data(format!("Settled: {settled}{estimated}."));
    printer.data(if flying_calls == 0 { "In flight: none.".to_owned() } else { in_flight_line() });
    Ok(())
}

/// What an empty `usage` says: which filter left nothing, and how many calls the looser listing
/// shows (`No AI calls for `pyscout` in the last 30d (4 others: `assegai usage --agent pyscout --since all`)`).
fn nothing_matches(
    store: &Store,
    settings: &Settings,
    agent: Option<(&AgentId, &str)>,
    since: &str,
) -> anyhow::Result<String> {
    let calls_of = |agent_id: Option<&AgentId>, since_ms: i64| -> anyhow::Result<u64> {
        Ok(store.usage_summary(agent_id, since_ms)?.iter().map(|r| r.calls).sum())
    };
    let window = parse_since(since).map(|ms| now_ms() - ms);
    let in_window = if window.is_some() { format!(" in the last {since}") } else { String::new() };
    let (said, others, looser) = match (agent, window) {
        (None, None) => return Ok("No AI calls yet.".to_owned()),
        (None, Some(_)) => (format!("No AI calls{in_window}"), calls_of(None, 0)?, "usage --since all".to_owned()),
        (Some((id, name)), window) => {
            let name = neutralize(name);
            match calls_of(Some(id), 0)? {
                theirs if theirs > 0 && window.is_some() => (
                    format!("No AI calls for `{name}`{in_window}"),
                    theirs,
                    format!("usage --agent {name} --since all"),
                ),
                _ => {
                    let since_flag = if window.is_some() { format!(" --since {since}") } else { String::new() };
                    (
                        format!("No AI calls for `{name}`{in_window}"),
                        calls_of(None, window.unwrap_or(0))?,
                        format!("usage{since_flag}"),
                    )
                }
            }
        }
    };
    Ok(match others {
        0 if agent.is_none() => "No AI calls yet.".to_owned(),
        0 => format!("{said}."),
        1 => format!("{said} (1 other: `{}`).", settings.command(&looser)),
        n => format!("{said} ({n} others: `{}`).", settings.command(&looser)),
    })
}

/// `usage --by day`: the cost of each UTC day as a bar against the dearest day, the days without
/// calls between them included.
fn by_day(
    args: &UsageArgs,
    store: &Store,
    settings: &Settings,
    agent: Option<(&AgentId, &str)>,
    since_ms: i64,
    printer: Printer,
) -> anyhow::Result<()> {
    const DAY_MS: i64 = 86_400_000;
    let days = store.usage_by_day(agent.map(|(id, _)| id), since_ms)?;
    if args.json.json {
        let out: Vec<_> = days
            .iter()
            .map(|(day, calls, nano, unpriced)| {
                json!({"day": &timestamp(*day)[..10], "calls": calls, "cost_usd": cost_json(*nano, *unpriced, *calls),
                       "unpriced_calls": unpriced})
            })
            .collect();
        return printer.json(&json!({"since_ms": since_ms, "agent_id": agent.map(|(id, _)| id), "days": out}));
    }
    let (Some(first), Some(last)) = (days.first(), days.last()) else {
        printer.info(nothing_matches(store, settings, agent, &args.since)?);
        return Ok(());
    };
    let whose = agent.map_or_else(String::new, |(_, name)| format!(" of `{}`", neutralize(name)));
    let window =
        if args.since == "all" { "since the first call".to_owned() } else { format!("in the last {}", args.since) };
    printer.data(format!("AI cost per day{whose} (USD, UTC days), {window}:"));
    let dearest = days.iter().map(|(_, _, nano, _)| *nano).max().unwrap_or(0);
    // Every day from the first to the last with calls, so that gaps show as gaps (up to a year).
    let span: Vec<i64> = if (last.0 - first.0) / DAY_MS <= 366 {
        (0..=(last.0 - first.0) / DAY_MS).map(|i| first.0 + i * DAY_MS).collect()
    } else {
        days.iter().map(|(day, ..)| *day).collect()
    };
    for day in span {
        let date = &timestamp(day)[..10];
        match days.iter().find(|(d, ..)| *d == day) {
            Some((_, n, nano, unpriced)) => {
                let unknown = if *unpriced > 0 { format!(" + {unpriced} unpriced") } else { String::new() };
                printer.data(format!(
                    "  {date} {} {:>10} · {}{unknown}",
                    bar(U256::from(*nano), U256::ZERO, U256::from(dearest)),
                    usd(*nano),
                    calls(*n)
                ));
            }
            None => printer.data(format!("  {date} {}", bar(U256::ZERO, U256::ZERO, U256::from(dearest.max(1))))),
        }
    }
    let (n, nano, unpriced) = days.iter().fold((0, 0, 0), |(c, n, u), d| (c + d.1, n + d.2, u + d.3));
    let cost = match cost_text(nano, unpriced, n) {
        unknown if unknown == "unknown" => unknown,
        known => format!("{known} USD"),
    };
    let active = if days.len() == 1 { "1 day".to_owned() } else { format!("{} days", days.len()) };
    printer.data(format!("  Total: {cost} ({} on {active})", calls(n)));
    Ok(())
}

/// The AI calls in flight on the running proxy (none when no proxy runs; a warning when it cannot
/// be asked).
pub async fn in_flight(settings: &Settings, printer: Printer) -> Vec<InFlight> {
    match settings.admin().ai_in_flight().await {
        Ok(list) => list.unwrap_or_default(),
        Err(e) => {
            printer.warn(format!(
                "cannot ask the running proxy about AI calls in flight ({e}); showing settled spend only"
            ));
            Vec::new()
        }
    }
}

/// `1 call`, `3 calls`.
fn calls(n: u64) -> String {
    if n == 1 { "1 call".into() } else { format!("{n} calls") }
}

/// `30m`, `24h`, `7d`, `2w` → milliseconds.
fn parse_since(text: &str) -> Option<i64> {
    let (num, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = num.parse().ok()?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return None,
    };
    n.checked_mul(unit_ms)
}

fn usd(nano: u64) -> String {
    format_usd(assegai_sdk::U256::from(nano), 9)
}

fn cost_text(nano: u64, unpriced: u64, calls: u64) -> String {
    match (unpriced, calls) {
        (0, _) => usd(nano),
        (u, c) if u == c => "unknown".into(),
        (u, _) => format!("{} + {u} unpriced", usd(nano)),
    }
}

fn cost_json(nano: u64, unpriced: u64, calls: u64) -> serde_json::Value {
    if unpriced == calls && calls > 0 { serde_json::Value::Null } else { json!(usd(nano)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_money() {
        assert_eq!(parse_since("7d"), Some(7 * 86_400_000));
        assert_eq!(parse_since("30m"), Some(1_800_000));
        assert_eq!(parse_since("7"), None);
        assert_eq!(parse_since("d"), None);
        assert_eq!(usd(0), "0.00");
        assert_eq!(usd(1_500_000_000), "1.50");
        assert_eq!(usd(1_234), "0.000001234");
        assert_eq!(cost_text(0, 2, 2), "unknown");
        assert_eq!(cost_text(10_000_000, 1, 3), "0.01 + 1 unpriced");
    }
}
