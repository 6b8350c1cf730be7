//! {{name}}: an Assegai agent.
//!
//! It holds no key and no secret, only an id and a token for the local Assegai proxy
//! (`ASSEGAI_AGENT_ID`, `ASSEGAI_AGENT_TOKEN`, `ASSEGAI_API_PROXY`, set by `assegai run`). The proxy
//! reads the chain for it, checks every transaction against `assegai.json`, and asks a person
//! before the user's wallet signs anything.
//!
//! What it does: logs the names of the environment variables it sees, reads its wallet address
//! and balance on the first chain its manifest allows, asks for a 0.0001 ETH transfer there, then
//! logs a heartbeat until it gets SIGTERM or Ctrl-C. What it logs goes to the proxy, and
//! `assegai run` shows it with the agent's output (`assegai logs` later).

use std::{
    future::Future,
    time::{Duration, Instant},
};

use anyhow::Context;
use assegai_sdk::{Assegai, ChainId, Error, LogLevel, U256, wire::TxRequest};

/// Its manifest, as it was when the agent was built (`assegai run` builds it before every run).
const MANIFEST: &str = include_str!("../assegai.json");
/// Who receives the example transfer.
const RECIPIENT: &str = "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045";
/// 0.0001 ETH, in wei.
const AMOUNT_WEI: u128 = 100_000_000_000_000;
/// Seconds between heartbeats unless `HEARTBEAT_SECS` says otherwise. `assegai run` hands the agent
/// only `ASSEGAI_*` variables, `PATH`, `HOME`, `LANG` and `TERM`, so under it this default applies.
const DEFAULT_HEARTBEAT_SECS: u64 = 30;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Installed before any work starts, so an early SIGTERM is a clean stop rather than a kill.
    let shutdown = shutdown_signal().context("installing the signal handlers")?;
    let assegai = Assegai::from_env()
        .context("configuring the Assegai client (start this agent with `assegai run .`)")?;
    tokio::select! {
        result = work(&assegai) => result,
        signal = shutdown => {
            // The proxy may be gone already; do not hang on the goodbye.
            let bye = say(&assegai, LogLevel::Info, format!("received {signal}, shutting down"));
            let _ = tokio::time::timeout(Duration::from_secs(2), bye).await;
            Ok(())
        }
    }
}

/// The chain this agent works on: the first one its manifest allows (`permissions.chains`).
fn chain() -> anyhow::Result<ChainId> {
    let manifest: serde_json::Value =
        serde_json::from_str(MANIFEST).context("reading assegai.json")?;
    let first = manifest["permissions"]["chains"][0]
        .as_str()
        .context("assegai.json allows no chain (`permissions.chains` is empty)")?;
    first
        .parse()
        .with_context(|| format!("`{first}` in assegai.json is not a chain id such as eip155:1"))
}

async fn work(assegai: &Assegai) -> anyhow::Result<()> {
    let chain = chain()?;
    // Names only, never values: a value could be a secret.
    let mut names: Vec<String> = std::env::vars_os()
        .map(|(name, _)| name.to_string_lossy().into_owned())
        .collect();
    names.sort();
    say(
        assegai,
        LogLevel::Info,
        format!("environment: {}", names.join(", ")),
    )
    .await;

    let me = assegai
        .wallet_address(chain)
        .await
        .context("asking the proxy for the wallet address")?;
    say(assegai, LogLevel::Info, format!("wallet on {chain}: {me}")).await;
    let wei = assegai
        .balance(chain, me)
        .await
        .context("reading the wallet's balance")?;
    say(
        assegai,
        LogLevel::Info,
        format!("balance: {} ETH ({wei} wei)", format_eth(wei)),
    )
    .await;

    request_transfer(assegai, chain).await?;
    heartbeat(assegai).await
}

/// Asks for the example transfer and waits for a person to decide. A "no" or no answer is part of
/// normal life for an agent: it logs it and carries on.
async fn request_transfer(assegai: &Assegai, chain: ChainId) -> anyhow::Result<()> {
    let request = TxRequest {
        chain,
        to: RECIPIENT.into(),
        value: AMOUNT_WEI.to_string(),
        data: None,
        gas_limit: None,
    };
    let amount = format_eth(U256::from(AMOUNT_WEI));
    say(
        assegai,
        LogLevel::Info,
        format!("requesting a transfer of {amount} ETH to {RECIPIENT}; it waits for your decision"),
    )
    .await;
    match assegai.request_transaction(&request).await {
        Ok(hash) => say(assegai, LogLevel::Success, format!("transfer sent: {hash}")).await,
        Err(Error::Rejected { message }) => {
            say(
                assegai,
                LogLevel::Warn,
                format!("transfer rejected ({message}); carrying on"),
            )
            .await;
        }
        Err(Error::ApprovalTimeout { message }) => {
            say(
                assegai,
                LogLevel::Warn,
                format!("nobody approved the transfer in time ({message}); carrying on"),
            )
            .await;
        }
        Err(Error::Forbidden { reason, .. }) => {
            say(
                assegai,
                LogLevel::Error,
                format!("the policy refused the transfer: {reason}"),
            )
            .await;
        }
        Err(e) => return Err(anyhow::Error::new(e).context("requesting the transfer")),
    }
    Ok(())
}

/// Logs a line every `HEARTBEAT_SECS` seconds, forever.
async fn heartbeat(assegai: &Assegai) -> anyhow::Result<()> {
    let secs = std::env::var("HEARTBEAT_SECS")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|&s| s > 0)
        .unwrap_or(DEFAULT_HEARTBEAT_SECS);
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_secs(secs));
    ticks.tick().await; // The first tick is immediate.
    loop {
        ticks.tick().await;
        say(
            assegai,
            LogLevel::Info,
            format!("heartbeat: up {}s", started.elapsed().as_secs()),
        )
        .await;
    }
}

/// Sends a line to the proxy, which stores it for `assegai logs` (and `assegai run` shows it), so
/// it is not printed here too. A line the proxy does not take is printed on stderr instead; it is
/// never fatal.
async fn say(assegai: &Assegai, level: LogLevel, message: String) {
    if let Err(e) = assegai.log(level, message.clone(), None).await {
        eprintln!("[{}] {message} (not sent to the Assegai proxy: {e})", level.as_str());
    }
}

/// Resolves with the signal's name on SIGTERM or SIGINT (Ctrl-C elsewhere than Unix).
fn shutdown_signal() -> std::io::Result<impl Future<Output = &'static str>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        })
    }
}

/// `wei` as an exact decimal amount of ETH ("0.0001", "10000").
fn format_eth(wei: U256) -> String {
    let unit = U256::from(1_000_000_000_000_000_000_u128);
    let (whole, frac) = (wei / unit, wei % unit);
    if frac.is_zero() {
        return whole.to_string();
    }
    let frac = format!("{:0>18}", frac.to_string());
    format!("{whole}.{}", frac.trim_end_matches('0'))
}
