//! `assegai`: the command-line front over `assegai-proxy`. Commands are thin; see `commands/`.

mod cli;
mod commands;
mod docker;
mod engine_log;
mod manifest_check;
mod printer;
mod runner;
mod sandbox;
mod settings;

use std::{io::Write, process::ExitCode};

use clap::Parser;

use crate::{
    cli::{Cli, Command},
    printer::Printer,
    settings::Settings,
};

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if sandbox::is_trampoline(&args) {
        // Before anything else: this process is about to become agent code.
        let err = sandbox::trampoline(&args[2..]);
        // Not `eprintln!`: a closed stderr must not turn this message into a panic.
        let _ = writeln!(std::io::stderr(), "assegai sandbox: {err:#}");
        return ExitCode::from(126);
    }
    // No other process of this user can read this one's environment or memory, or ptrace it:
    // the passphrase, the keys and the admin token live here.
    let _ = nix::sys::prctl::set_dumpable(false);
    let cli = Cli::parse_from(args);
    let printer = Printer::new(cli.global.quiet);
    // Commands that host the proxy report its warnings (an upstream that fails, say); the others
    // say what went wrong in their own words, so engine warnings there would only repeat it.
    let default_filter = match cli.command {
        Command::Proxy(_) | Command::Run(_) => "warn",
        _ => "error",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ASSEGAI_LOG").unwrap_or_else(|_| default_filter.into());
    if let Command::Run(_) = cli.command {
        // The agent's output is the stream under `run`: the embedded proxy's lines go to a file
        // in the home (once `run` knows it), and the first warning becomes one plain line.
        use tracing_subscriber::layer::SubscriberExt;
        let file = tracing_subscriber::fmt::layer().with_writer(engine_log::writer).with_ansi(false);
        let subscriber = tracing_subscriber::registry().with(file).with(engine_log::FirstWarning(printer)).with(filter);
        let _ = tracing::subscriber::set_global_default(subscriber);
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(console::colors_enabled_stderr())
            .init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            printer.error(&anyhow::Error::new(e).context("starting the async runtime"), None);
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli, printer));
    // A prompt cut short may still hold a blocking thread reading the terminal: don't wait for it.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            printer.error(&e, hint(&e).as_deref());
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, printer: Printer) -> anyhow::Result<()> {
    if let Command::Completions(args) = &cli.command {
        commands::completions::run(args, printer);
        return Ok(());
    }
    if let Command::New(args) = &cli.command {
        // Needs no state: works before anything else is set up.
        return commands::new::run(args, printer);
    }
    let settings = Settings::resolve(&cli.global)?;
    match &cli.command {
        Command::Proxy(args) => commands::proxy::run(args, settings, printer).await,
        Command::Agents(args) => commands::agents::run(args, &settings, printer).await,
        Command::Logs(args) => commands::logs::run(args, &settings, printer).await,
        Command::Approve(args) => commands::approve::run(args, &settings, printer).await,
        Command::Reject(args) => commands::txs::reject(args, &settings, printer).await,
        Command::Txs(args) => commands::txs::history(args, &settings, printer),
        Command::Limits(args) => commands::limits::run(args, &settings, printer),
        Command::Keys(args) => commands::keys::run(args, &settings, printer).await,
        Command::Usage(args) => commands::usage::run(args, &settings, printer).await,
        Command::Pricing(args) => commands::pricing::run(args, &settings, printer).await,
        Command::Wallet(args) => commands::wallet::run(args, &settings, printer).await,
        Command::Allowance(args) => commands::allowance::run(args, &settings, printer),
        Command::Run(args) => commands::run::run(args, settings, printer).await,
        Command::Doctor(args) => commands::doctor::run(args, &settings, printer).await,
        Command::Config(args) => commands::config::run(args, &settings, printer),
        Command::Completions(_) | Command::New(_) => unreachable!("handled above"),
    }
}

/// What to do next, for errors whose message does not already say.
fn hint(err: &anyhow::Error) -> Option<String> {
    use assegai_proxy::{Error, manifest::ManifestError};
    if err.downcast_ref::<ManifestError>().is_some() {
        return Some("fix that field in the manifest and run the command again".into());
    }
    match err.downcast_ref::<Error>()? {
        Error::Manifest(_) => Some("fix that field in the manifest and run the command again".into()),
        Error::Config { .. } => Some("fix config.toml (or remove the line to use the default) and try again".into()),
        Error::AlreadyRunning(_) => Some("stop the other proxy (Ctrl-C in its terminal), or keep using it".into()),
        Error::Store(_) => Some("check that the home directory is writable; `--home DIR` picks another".into()),
        _ => None,
    }
}
