//! Permissions widen only when a person says so (SPEC §8). Before `assegai run` or `agents add`
//! re-registers an agent, the manifest it brings (the agent author's wish, which the agent itself
//! may have rewritten) is compared with the registered one (the user's decision). Narrowing is
//! taken silently; anything wider is shown, one line per field, and asked about (default No).
//! Without a terminal it is refused unless `--accept-manifest` says yes beforehand.

use std::path::Path;

use anyhow::{Context, bail};
use assegai_proxy::{
    manifest::Manifest,
    manifest_diff::{self, Widening},
    sanitize::neutralize,
    store::{AgentRow, Store},
};
use console::{Term, style};

use crate::printer::Printer;

/// Where the manifest to register comes from.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// `assegai run DIR`: the agent in DIR (registered by directory first, as `register` does).
    Run(&'a Path),
    /// `agents add NAME --manifest PATH`.
    File(&'a Path),
    /// `agents add NAME` without a manifest: the minimal one.
    Default,
}

impl Origin<'_> {
    fn describe(self) -> String {
        match self {
            Origin::Run(dir) => format!("The manifest in {}", neutralize(&dir.display().to_string())),
            Origin::File(path) if path.is_dir() => {
                format!("The manifest in {}", neutralize(&path.display().to_string()))
            }
            Origin::File(path) => format!("The manifest {}", neutralize(&path.display().to_string())),
            Origin::Default => "The default manifest (the local chain only)".to_owned(),
        }
    }
}

/// Settles whether `wanted` may replace what `name` is registered with: `Ok` means register it,
/// an error means nothing may change (and nothing has).
///
/// `Ok` at once when no such agent is registered yet, or when `wanted` grants nothing more than
/// the registered manifest. Otherwise prints each widening (even with `--quiet`: a person must see
/// what they accept) and is `Ok` with `accept`, or when a person at the terminal says yes; an
/// error when they say no or nobody can be asked.
pub async fn settle(
    store: &Store,
    name: &str,
    origin: Origin<'_>,
    wanted: &Manifest,
    accept: bool,
    printer: Printer,
) -> anyhow::Result<()> {
    let Some(agent) = registered(store, name, origin)? else { return Ok(()) };
    let lines = match agent.manifest() {
        Ok(current) => manifest_diff::widening(current, wanted).iter().map(Widening::to_string).collect::<Vec<_>>(),
        // Every stored manifest was validated; one that no longer parses cannot be compared, so
        // replacing it is a person's decision too.
        Err(e) => vec![format!(
            "the registered manifest cannot be read ({}); this one would replace it",
            neutralize(&e.to_string())
        )],
    };
    if lines.is_empty() {
        return Ok(());
    }
    let agent_name = neutralize(&agent.name);
    let source = origin.describe();
    // On the terminal it is asked at; in the error output when nobody is there to ask.
    show(
        if !accept && printer.interactive() { crate::printer::prompt_term() } else { Term::stderr() },
        &source,
        &agent_name,
        &lines,
    )?;
    if accept {
        printer.info("Accepted with `--accept-manifest`.");
        return Ok(());
    }
    if !printer.interactive() {
        bail!(
            "{} grants `{agent_name}` more than the registered one (listed above); nothing changed. Review it and \
             run again with `--accept-manifest` to accept, or run it in a terminal to be asked",
            lowercase_first(&source)
        );
    }
    let answer = tokio::task::spawn_blocking(|| {
        dialoguer::Confirm::new()
            .with_prompt("Register these wider permissions?")
            .default(false)
            .interact_on_opt(&crate::printer::prompt_term())
    })
    .await
    .context("the prompt stopped unexpectedly")?;
    match answer {
        Ok(Some(true)) => Ok(()),
        // No, Esc or `q`, or Ctrl-C (read as a key by the prompt): nothing is registered.
        other => {
            if other.is_err() {
                // The prompt hid the cursor and was cut short before showing it again.
                let _ = crate::printer::prompt_term().show_cursor();
            }
            bail!("nothing changed: `{agent_name}` keeps the permissions you registered")
        }
    }
}

/// The agent `register` would update: the one run from this directory, else the one with this
/// name. `None` when there is none, or when `register` will refuse anyway (the name belongs to an
/// agent run from another directory).
fn registered(store: &Store, name: &str, origin: Origin<'_>) -> anyhow::Result<Option<AgentRow>> {
    let agents = store.list_agents()?;
    let dir = match origin {
        Origin::Run(dir) => Some(dir.display().to_string()),
        Origin::File(_) | Origin::Default => None,
    };
    let by_dir = dir.as_ref().and_then(|d| agents.iter().find(|a| a.source_dir.as_ref() == Some(d)));
    let by_name = agents.iter().find(|a| a.name == name);
    if let (Some(dir), None, Some(other)) = (&dir, by_dir, by_name)
        && other.source_dir.as_ref().is_some_and(|o| o != dir)
    {
        return Ok(None);
    }
    Ok(by_dir.or(by_name).cloned())
}

/// Writes the differences to `term`, whatever `--quiet` says. Every line is neutralised (the
/// widenings neutralise themselves).
fn show(term: Term, source: &str, agent_name: &str, lines: &[String]) -> anyhow::Result<()> {
    let header = format!("{source} grants `{agent_name}` more than you registered:");
    term.write_line(&style(header).yellow().bold().for_stderr().to_string()).context("writing to the terminal")?;
    for line in lines {
        term.write_line(&format!("  {line}")).context("writing to the terminal")?;
    }
    Ok(())
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |c| c.to_lowercase().chain(chars).collect())
}
