//! `assegai proxy`: runs the proxy in the foreground and prints agent log lines as they arrive.

use std::sync::Arc;

use anyhow::Context;
use assegai_proxy::{
    keys::KeyStore,
    server::{self, RunningProxy},
};
use console::style;

use crate::{
    cli::ProxyArgs,
    commands::logs::format_line,
    printer::{AgentStream, Printer},
    settings::Settings,
};

pub async fn run(args: &ProxyArgs, mut settings: Settings, printer: Printer) -> anyhow::Result<()> {
    // Installed before anything is announced: a SIGTERM sent as soon as the proxy says it is
    // listening must stop it cleanly, not kill it.
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the Ctrl-C handler")?;
    if let Some(listen) = args.listen {
        settings.config.listen = listen;
    }
    let keys = open_keys(&settings, printer);
    let proxy = server::start(&settings.home, settings.config, keys).await?;
    printer.info(format!(
        "{} listening on {} (home {})",
        style("Assegai proxy").bold(),
        style(format!("http://{}", proxy.addr())).cyan(),
        settings.home.root().display()
    ));
    printer.info("Press Ctrl-C to stop.");
    printer.info(format!("Keys: {}", proxy.key_store()));

    let printing = print_logs(&proxy, printer);

    tokio::select! {
        _ = interrupt.recv() => {}
        _ = term.recv() => {}
    }
    printer.info("Stopping…");
    proxy.stop().await;
    printing.abort();
    printer.success("Proxy stopped.");
    Ok(())
}

/// The key store for a proxy. Without a usable one the proxy still serves chain reads, logs and
/// the test account; AI calls and imported wallets say why they fail.
pub fn open_keys(settings: &Settings, printer: Printer) -> Result<Arc<dyn KeyStore>, String> {
    match settings.existing_keystore(printer) {
        Ok(Some(store)) => Ok(Arc::from(store)),
        Ok(None) => {
            printer.info("No keys stored yet: AI calls need `assegai keys set PROVIDER` first.");
            Err("no keys stored yet; run `assegai keys set PROVIDER`".into())
        }
        Err(e) => {
            let why = format!("{e:#}");
            printer.warn(format!("AI calls will fail until this is fixed: {why}"));
            Err(why)
        }
    }
}

/// Prints agents' log lines on the console as the proxy receives them.
pub fn print_logs(proxy: &RunningProxy, printer: Printer) -> tokio::task::JoinHandle<()> {
    let mut lines = proxy.subscribe_logs();
    tokio::spawn(async move {
        loop {
            match lines.recv().await {
                Ok(line) => {
                    let text =
                        format_line(&line.agent_name, line.level, &line.message, line.data.as_ref(), line.created_at);
                    printer.agent_line(AgentStream::Log, text);
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    printer.warn(format!("{n} log lines were not shown (the console fell behind); see `assegai logs`"));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    })
}
