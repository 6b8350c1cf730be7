//! `assegai logs [AGENT] [-f] [--level L] [--json]`: reads the database, so it works whether or not
//! the proxy is running; `-f` follows new lines by id.

use std::time::Duration;

use assegai_proxy::{
    agents,
    ids::AgentId,
    sanitize::neutralize,
    store::{LogQuery, Store},
};
use assegai_sdk::LogLevel;
use console::{Style, style};

use crate::{
    cli::LogsArgs,
    printer::{Printer, timestamp},
    settings::Settings,
};

pub async fn run(args: &LogsArgs, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    let store = settings.existing_store()?;
    let agent = args.agent.as_deref().map(|a| agents::find(&store, a)).transpose()?;
    let agent_id = agent.as_ref().map(|a| a.id.clone());
    let mut query = LogQuery { agent_id, level: args.level, after_id: None, limit: Some(args.lines) };
    let mut shown_any = false;
    loop {
        let rows = store.logs(&query)?;
        for row in &rows {
            if args.json.json {
                printer.json_line(row)?;
            } else {
                printer.data(format_line(&row.agent_name, row.level, &row.message, row.data.as_ref(), row.created_at));
            }
        }
        shown_any |= !rows.is_empty();
        if let Some(last) = rows.last() {
            query.after_id = Some(last.id);
        }
        if !args.follow {
            break;
        }
        query.limit = None;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    if !shown_any && !args.follow && !args.json.json {
        let agent = agent.as_ref().map(|a| (&a.id, a.name.as_str()));
        printer.info(nothing_matches(&store, settings, agent, args.level)?);
    }
    Ok(())
}

/// What an empty `logs` says: which filter left nothing, and how many lines the looser listing
/// shows (`No warn lines from `pyscout` (12 others: `assegai logs pyscout`)`).
fn nothing_matches(
    store: &Store,
    settings: &Settings,
    agent: Option<(&AgentId, &str)>,
    level: Option<LogLevel>,
) -> anyhow::Result<String> {
    let what = level.map_or_else(|| "log lines".to_owned(), |l| format!("{} lines", l.as_str()));
    let (said, others, looser) = match agent {
        None if level.is_none() => return Ok("No log lines yet.".to_owned()),
        None => (format!("No {what}"), store.log_count(None, None)?, "logs".to_owned()),
        Some((id, name)) => {
            let name = neutralize(name);
            match store.log_count(Some(id), None)? {
                theirs if theirs > 0 && level.is_some() => {
                    (format!("No {what} from `{name}`"), theirs, format!("logs {name}"))
                }
                _ => (format!("No log lines from `{name}`"), store.log_count(None, None)?, "logs".to_owned()),
            }
        }
    };
    Ok(match others {
        0 if agent.is_none() => "No log lines yet.".to_owned(),
        0 => format!("{said} yet."),
        1 => format!("{said} (1 other: `{}`).", settings.command(&looser)),
        n => format!("{said} ({n} others: `{}`).", settings.command(&looser)),
    })
}

/// How a level is coloured wherever log lines are shown.
pub fn level_style(level: LogLevel) -> Style {
    match level {
        LogLevel::Debug => Style::new().dim(),
        LogLevel::Info => Style::new().blue(),
        LogLevel::Warn => Style::new().yellow(),
        LogLevel::Error => Style::new().red().bold(),
        LogLevel::Success => Style::new().green(),
    }
}

/// One log line for a person: time, agent, level, message, data — all agent text neutralised.
pub fn format_line(agent: &str, level: LogLevel, message: &str, data: Option<&serde_json::Value>, at: i64) -> String {
    let mut line = format!(
        "{} {} {} {}",
        style(timestamp(at)).dim(),
        style(format!("[{}]", neutralize(agent))).bold(),
        level_style(level).apply_to(format!("{:<7}", level.as_str().to_uppercase())),
        neutralize(message)
    );
    if let Some(data) = data {
        line.push(' ');
        line.push_str(&style(neutralize(&data.to_string())).dim().to_string());
    }
    line
}
