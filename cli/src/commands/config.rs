//! `assegai config [--json]`: the settings in effect, each key `config.toml` knows with the value
//! that applies (the file's, else the default) and where it came from. URLs show only their scheme,
//! host and port (see `assegai_proxy::chain::shown_url`): an RPC URL may carry an API key.

use anyhow::Context;
use assegai_proxy::{
    config::{Setting, Source},
    sanitize::neutralize,
};
use comfy_table::{Table, presets::NOTHING};
use serde_json::{Value, json};

use crate::{cli::JsonFlag, printer::Printer, settings::Settings};

pub fn run(args: &JsonFlag, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    let path = settings.home.config_file();
    // `Settings` has already parsed and checked the file; read again only to tell which keys it sets.
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let effective = settings.config.effective(text.as_deref());
    if args.json {
        return printer.json(&json!({
            "file": path,
            "file_exists": text.is_some(),
            "settings": effective,
        }));
    }
    match text {
        Some(_) => printer.info(format!("Settings from {}, defaults for the rest:", path.display())),
        None => printer.info(format!("No {} yet, so every setting is its default:", path.display())),
    }
    let mut table = Table::new();
    table.load_preset(NOTHING).set_header(["KEY", "VALUE", "FROM"]);
    for setting in &effective {
        let source = match setting.source {
            Source::Default => "default",
            Source::File => "config.toml",
            Source::Environment => "environment",
        };
        table.add_row([setting.key.clone(), shown(setting), source.to_owned()]);
    }
    printer.data(table);
    printer.info(
        "`chains.\"*\"` is every chain without a table of its own. URLs show only scheme, host and port \
         (a path or query may hold an API key). What each key does: the `config.toml` table in README.md.",
    );
    Ok(())
}

/// A value as `config.toml` would spell it.
fn shown(setting: &Setting) -> String {
    let text = match &setting.value {
        Value::Null => "(not set)".to_owned(),
        Value::String(s) => format!("\"{}\"", neutralize(s)),
        other => neutralize(&other.to_string()),
    };
    if setting.shortened { format!("{text} (path hidden)") } else { text }
}
