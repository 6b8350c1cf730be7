//! `assegai logs [AGENT] [-f] [--level L] [--json]`: reads the database, so it works whether or not
//! the proxy is running; `-f` follows new lines by id.

use std::time::Duration;

use assegai_proxy::{agents, sanitize::neutralize, store::LogQuery};
use assegai_sdk::LogLevel;
use console::{Style, style};

use crate::{
    cli::LogsArgs,
    printer::{Printer, timestamp},
    settings::Settings,
};

pub async fn run(args: &LogsArgs, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    let store = settings.store()?;
    let agent_id = match &args.agent {
        Some(a) => Some(agents::find(&store, a)?.id),
        None => None,
    };
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
        printer.info("No log lines yet.");
    }
    Ok(())
}

/// One log line for a person: time, agent, level, message, data — all agent text neutralised.
pub fn format_line(agent: &str, level: LogLevel, message: &str, data: Option<&serde_json::Value>, at: i64) -> String {
    let level_style = match level {
        LogLevel::Debug => Style::new().dim(),
        LogLevel::Info => Style::new().blue(),
        LogLevel::Warn => Style::new().yellow(),
        LogLevel::Error => Style::new().red().bold(),
        LogLevel::Success => Style::new().green(),
    };
    let mut line = format!(
        "{} {} {} {}",
        style(timestamp(at)).dim(),
        style(format!("[{}]", neutralize(agent))).bold(),
        level_style.apply_to(format!("{:<7}", level.as_str().to_uppercase())),
        neutralize(message)
    );
    if let Some(data) = data {
        line.push(' ');
        line.push_str(&style(neutralize(&data.to_string())).dim().to_string());
    }
    line
}
