//! The one place output is written. Data for pipes goes to stdout; prose, progress and errors go
//! to stderr. Colours are used only on terminals and never when `NO_COLOR` is set, and every
//! message reads the same without them.

use std::{
    io::{IsTerminal, Write},
    sync::Mutex,
};

use assegai_sdk::U256;
use console::style;

/// Lines from a running agent wait here while a person answers a prompt, so the prompt is not
/// torn apart by output (`assegai run` asking inline).
static HELD: Mutex<Option<Vec<(AgentStream, String)>>> = Mutex::new(None);

/// Where a line from a running agent goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentStream {
    /// Its standard output (stdout).
    Out,
    /// Its standard error (stderr).
    Err,
    /// A log line it sent the proxy (stderr; hidden by `--quiet`).
    Log,
}

/// Whether a prompt is on screen (agent lines are being held back).
pub fn prompt_open() -> bool {
    HELD.lock().unwrap_or_else(|p| p.into_inner()).is_some()
}

/// While alive, agent lines are held back; dropping it prints them.
#[must_use]
pub struct HeldLines(Printer);

impl Drop for HeldLines {
    fn drop(&mut self) {
        let lines = HELD.lock().unwrap_or_else(|p| p.into_inner()).take().unwrap_or_default();
        for (stream, line) in lines {
            self.0.write_agent_line(stream, &line);
        }
    }
}

/// Writes a line of data to stdout, see [`data_bytes`].
fn data_line(line: impl std::fmt::Display) {
    data_bytes(format!("{line}\n").as_bytes());
}

/// Writes data to stdout: the one way anything reaches stdout. When the reader has gone (`assegai
/// txs | head`) the rest of the data has nowhere to go: the command ends quietly and successfully,
/// as Unix tools do, rather than panicking the way `println!` does.
fn data_bytes(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// `eprintln!` that never panics: a closed stderr must not turn a message into a crash.
macro_rules! prose {
    ($($arg:tt)*) => {
        drop(writeln!(std::io::stderr().lock(), $($arg)*))
    };
}

/// How to print.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    quiet: bool,
}

impl Printer {
    /// Decides about colour once for the whole process.
    pub fn new(quiet: bool) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        console::set_colors_enabled(!no_color && std::io::stdout().is_terminal());
        console::set_colors_enabled_stderr(!no_color && std::io::stderr().is_terminal());
        Printer { quiet }
    }

    /// A line of data (stdout).
    pub fn data(&self, line: impl std::fmt::Display) {
        data_line(line);
    }

    /// Data as it is, with no newline added (stdout): a generated file such as a completion script.
    pub fn data_raw(&self, bytes: &[u8]) {
        data_bytes(bytes);
    }

    /// A line from a running agent: printed now, or once the prompt on screen is answered.
    pub fn agent_line(&self, stream: AgentStream, line: String) {
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        match held.as_mut() {
            Some(buffer) => buffer.push((stream, line)),
            None => {
                drop(held);
                self.write_agent_line(stream, &line);
            }
        }
    }

    fn write_agent_line(&self, stream: AgentStream, line: &str) {
        match stream {
            // The agent keeps running (and is stopped cleanly later) even if nobody reads on.
            AgentStream::Out => drop(writeln!(std::io::stdout().lock(), "{line}")),
            AgentStream::Err => drop(writeln!(std::io::stderr().lock(), "{line}")),
            AgentStream::Log => self.info(line),
        }
    }

    /// Holds agent lines back until the returned guard is dropped.
    pub fn hold_agent_lines(&self) -> HeldLines {
        HELD.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(Vec::new);
        HeldLines(*self)
    }

    /// A value as pretty JSON (stdout). Invisible and control characters in strings are written
    /// as `\u` escapes: the same data for a program, inert on a terminal.
    pub fn json<T: serde::Serialize>(&self, value: &T) -> anyhow::Result<()> {
        data_line(assegai_proxy::sanitize::to_json_string_pretty(value)?);
        Ok(())
    }

    /// A value as one line of JSON (stdout), escaped as [`Printer::json`].
    pub fn json_line<T: serde::Serialize>(&self, value: &T) -> anyhow::Result<()> {
        data_line(assegai_proxy::sanitize::to_json_string(value)?);
        Ok(())
    }

    /// Prose for a person (stderr); hidden by `--quiet`.
    pub fn info(&self, line: impl std::fmt::Display) {
        if !self.quiet {
            prose!("{line}");
        }
    }

    /// A success message (stderr).
    pub fn success(&self, line: impl std::fmt::Display) {
        if !self.quiet {
            prose!("{} {line}", style("✓").green().bold());
        }
    }

    /// A warning (stderr), shown even with `--quiet`.
    pub fn warn(&self, line: impl std::fmt::Display) {
        prose!("{} {line}", style("warning:").yellow().bold());
    }

    /// An error and its causes, with a hint when there is one (stderr).
    pub fn error(&self, err: &anyhow::Error, hint: Option<&str>) {
        prose!("{} {err}", style("error:").red().bold());
        let mut said = err.to_string();
        for cause in err.chain().skip(1) {
            // Many errors already quote their source in their own message; say each thing once.
            let text = cause.to_string();
            if !said.contains(&text) {
                prose!("  {} {text}", style("caused by:").red());
            }
            said = text;
        }
        if let Some(hint) = hint {
            prose!("{} {hint}", style("hint:").cyan().bold());
        }
    }

    /// A spinner on stderr for slow work; hidden when stderr is not a terminal or with `--quiet`.
    pub fn spinner(&self, message: &str) -> indicatif::ProgressBar {
        let bar = if self.quiet || !std::io::stderr().is_terminal() {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new_spinner()
        };
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(std::time::Duration::from_millis(100));
        bar
    }

    /// Whether a person is at a terminal to answer prompts: they type on standard input, and the
    /// process has a controlling terminal to ask on. Where stdout and stderr go does not matter
    /// (`assegai run … 2>&1 | tee log` still asks), see [`prompt_term`].
    pub fn interactive(&self) -> bool {
        std::io::stdin().is_terminal() && controlling_terminal().is_some()
    }
}

/// The controlling terminal (`/dev/tty`), opened for reading and writing.
fn controlling_terminal() -> Option<(std::fs::File, std::fs::File)> {
    let tty = std::fs::File::options().read(true).write(true).open("/dev/tty").ok()?;
    let other = tty.try_clone().ok()?;
    Some((tty, other))
}

/// Where prompts and the cards they ask about are drawn: the controlling terminal, so that they
/// reach the person even when stdout and stderr are redirected or piped (`| tee log`), the way
/// `ssh` and `sudo` ask; stderr when there is none. Keys are read from the same terminal (console
/// reads `/dev/tty` when stdin is not one).
pub fn prompt_term() -> console::Term {
    match controlling_terminal() {
        Some((read, write)) => console::Term::read_write_pair(read, write),
        None => console::Term::stderr(),
    }
}

/// `text` as one shell word: as it is when it needs no quoting, else in single quotes.
pub fn shell_quote(text: &str) -> String {
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,~".contains(c)) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// `[███▒▒·····]`: `settled`, then `pending`, then the room left up to `limit`, in 20 cells. The
/// one drawing of amounts against a scale: spending limits (`limits`), cost per day (`usage`).
pub fn bar(settled: U256, pending: U256, limit: U256) -> String {
    const CELLS: u64 = 20;
    let cells = |v: U256| -> u64 {
        if limit.is_zero() {
            return if v.is_zero() { 0 } else { CELLS };
        }
        let scaled = v.saturating_mul(U256::from(CELLS)) / limit;
        scaled.min(U256::from(CELLS)).to::<u64>()
    };
    let s = cells(settled);
    let p = cells(settled.saturating_add(pending)).saturating_sub(s);
    let rest = CELLS.saturating_sub(s + p);
    format!(
        "[{}{}{}]",
        style("█".repeat(s as usize)).green(),
        style("▒".repeat(p as usize)).yellow(),
        "·".repeat(rest as usize)
    )
}

/// Formats milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-from-civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// "Ethereum (eip155:1)", or just the CAIP-2 id for chains without a known name.
pub fn chain_label(chain: assegai_sdk::ChainId) -> String {
    chain.name().map_or_else(|| chain.to_string(), |n| format!("{n} ({chain})"))
}

#[cfg(test)]
mod tests {
    use assegai_sdk::U256;

    #[test]
    fn bars_fill_in_proportion() {
        console::set_colors_enabled(false);
        let eth = |n: u64| U256::from(n) * U256::from(10u64.pow(17));
        assert_eq!(
            super::bar(eth(5), eth(1), eth(10)),
            format!("[{}{}{}]", "█".repeat(10), "▒".repeat(2), "·".repeat(8))
        );
        assert_eq!(super::bar(U256::ZERO, U256::ZERO, eth(10)), format!("[{}]", "·".repeat(20)));
        assert_eq!(super::bar(eth(30), U256::ZERO, eth(10)), format!("[{}]", "█".repeat(20)));
    }

    #[test]
    fn quoting() {
        assert_eq!(super::shell_quote("/home/me/.local/share/assegai"), "/home/me/.local/share/assegai");
        assert_eq!(super::shell_quote("my dir/it's"), r"'my dir/it'\''s'");
    }

    #[test]
    fn timestamps() {
        assert_eq!(super::timestamp(0), "1970-01-01 00:00:00");
        assert_eq!(super::timestamp(1_699_612_800_000), "2023-11-10 10:40:00");
        assert_eq!(super::timestamp(951_782_400_000), "2000-02-29 00:00:00");
    }
}
