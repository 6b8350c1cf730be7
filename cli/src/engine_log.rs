//! Where the engine's own log lines go under `assegai run`: into `proxy.log` in the home, not
//! between the agent's lines. The person sees one plain warning the first time the engine warns
//! (an upstream that does not answer, say), naming the file that has the rest. Other commands log
//! to stderr as before (see `main.rs`).

use std::{
    fs::File,
    io::Write,
    path::{Path, PathBuf},
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
};

use assegai_proxy::sanitize::neutralize;
use console::style;
use tracing::{Event, Level, Subscriber, field::Field};
use tracing_subscriber::{layer::Context, registry::LookupSpan};

use crate::printer::{AgentStream, Printer};

/// The file, once [`to_file`] has opened it, and its path for the warning.
static FILE: OnceLock<(Mutex<File>, PathBuf)> = OnceLock::new();
/// Whether the person has been told (or told already, in other words) that the engine warns.
static TOLD: AtomicBool = AtomicBool::new(false);
/// Whether the CLI is checking something itself and will say what it finds in its own words.
static CHECKING: AtomicBool = AtomicBool::new(false);

/// Sends the engine's lines to `proxy.log` in `home` from now on (appended; only the user reads it).
pub fn to_file(home: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = home.join("proxy.log");
    let file = File::options().create(true).append(true).mode(0o600).open(&path)?;
    let _ = FILE.set((Mutex::new(file), path.clone()));
    Ok(path)
}

/// The next engine warning goes to the file only: the person was already told about the problem
/// in plain words (a local chain that does not answer, say).
pub fn already_told() {
    TOLD.store(true, Ordering::Relaxed);
}

/// While `check` runs, the engine's warnings go to the file only: `check` reports what it finds in
/// its own words (and says whether it did, see [`already_told`]).
pub async fn checking<T>(check: impl Future<Output = T>) -> T {
    CHECKING.store(true, Ordering::Relaxed);
    let result = check.await;
    CHECKING.store(false, Ordering::Relaxed);
    result
}

/// The writer `tracing_subscriber::fmt` writes through: the file once open, stderr before.
pub fn writer() -> EngineWriter {
    EngineWriter
}

/// See [`writer`].
#[derive(Debug)]
pub struct EngineWriter;

impl Write for EngineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match FILE.get() {
            Some((file, _)) => file.lock().unwrap_or_else(|p| p.into_inner()).write(buf),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match FILE.get() {
            Some((file, _)) => file.lock().unwrap_or_else(|p| p.into_inner()).flush(),
            None => std::io::stderr().flush(),
        }
    }
}

/// A tracing layer that turns the first warning written to the file into one plain line for the
/// person, held back like the agent's output while a prompt is on screen.
#[derive(Debug, Clone, Copy)]
pub struct FirstWarning(pub Printer);

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for FirstWarning {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if *event.metadata().level() > Level::WARN {
            return;
        }
        let Some((_, path)) = FILE.get() else { return };
        if CHECKING.load(Ordering::Relaxed) || TOLD.swap(true, Ordering::Relaxed) {
            return;
        }
        let mut text = Text::default();
        event.record(&mut text);
        let detail = if text.fields.is_empty() { String::new() } else { format!(" ({})", text.fields.join(", ")) };
        let line = format!(
            "{} the proxy: {}{detail}; its log is in {}",
            style("warning:").yellow().bold().for_stderr(),
            neutralize(&text.message),
            path.display()
        );
        self.0.agent_line(AgentStream::Err, line);
    }
}

/// An event's message and its other fields as `name: value`.
#[derive(Default)]
struct Text {
    message: String,
    fields: Vec<String>,
}

impl tracing::field::Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields.push(format!("{}: {}", field.name(), neutralize(&format!("{value:?}"))));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.fields.push(format!("{}: {}", field.name(), neutralize(value)));
        }
    }
}
