//! `assegai approve`: the approval queue. `--list` prints pending requests and `ID --yes` approves
//! one without asking; `ID` alone shows the request and asks; with no ID a person at the terminal
//! works through an interactive queue ([`queue`], which `assegai run` can reuse) that waits for new
//! requests until Ctrl-C.
//!
//! Every request is shown as a card: agent, chain, the wallet that signs (and where its key
//! lives), recipient, value in wei and in native units, the token amount for ERC-20 calls, the
//! decoded action, the gas limit, the fee fixed when the request was made (what will be signed:
//! max fee per gas, worst case, value + fee), the node that signs, and what approving it does to
//! the agent's spending limits (which count value + fee). Whatever an agent could have chosen (its
//! name, anything derived from its request) goes through [`neutralize`] first, so it cannot redraw
//! the prompt. Cards and prompts go to the controlling terminal, wherever stdout and stderr go.
//! Decisions go to the running proxy over its admin socket; policy and signing live there.

use std::{collections::HashSet, io, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use assegai_proxy::{
    agents,
    ids::{AgentId, TxId},
    keys::KeyStore,
    sanitize::neutralize,
    state::holder_name,
    store::{LogQuery, LogRow, Store, TxRow, now_ms},
    tx::{fees::FeeModel, limits, policy::native_symbol},
    units::format_units,
    wallet::{self, ANVIL_TEST_ACCOUNT},
};
use assegai_sdk::{ChainId, U256, wire::TxStatus};
use console::style;
use dialoguer::{Confirm, Select};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::{
    cli::ApproveArgs,
    commands::txs::print_rows,
    printer::{Printer, prompt_term, timestamp},
    settings::Settings,
};

/// How often the queue looks for new requests.
const POLL: Duration = Duration::from_millis(200);
/// How long to wait for the proxy to sign and broadcast an approved request.
const SIGNING_TIMEOUT: Duration = Duration::from_secs(120);

/// The queue's choices, in the order they are offered.
const CHOICES: [&str; 4] = ["Approve & sign", "Reject", "Skip", "Reject all"];
/// Where the cursor starts.
const SKIP: usize = 2;

pub async fn run(args: &ApproveArgs, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    let store = settings.existing_store()?;
    let agent = args.agent.as_deref().map(|a| agents::find(&store, a)).transpose()?;
    let agent_id = agent.map(|a| a.id);
    // `--json` alone is a listing too: scripts never get a prompt.
    if args.list || (args.id.is_none() && args.json.json) {
        let mut rows = store.txs(agent_id.as_ref(), Some(TxStatus::Pending), 1000)?;
        rows.reverse();
        return print_rows(&rows, args.json.json, printer, "No requests are waiting for approval.");
    }
    if let Some(id) = &args.id {
        return approve_one(id, args.yes, settings, &store, printer).await;
    }
    if !printer.interactive() {
        bail!(
            "`assegai approve` without an ID is an interactive queue and needs a terminal; list what is waiting \
             with `{}` and approve one with `{}`",
            settings.command("approve --list"),
            settings.command("approve ID --yes")
        );
    }
    queue(settings, printer, &QueueOptions { agent_id, once: args.once, ..QueueOptions::default() }).await
}

/// `approve ID [--yes]`: one request, shown and confirmed unless `--yes`.
async fn approve_one(id: &str, yes: bool, settings: &Settings, store: &Store, printer: Printer) -> anyhow::Result<()> {
    let Some(row) = id.parse::<TxId>().ok().map(|id| store.tx(&id)).transpose()?.flatten() else {
        bail!("no transaction request `{}` (see `{}`)", neutralize(id), settings.command("approve --list"));
    };
    if row.status != TxStatus::Pending {
        bail!("request {} is already {}; only pending requests can be approved", row.id, row.status.as_str());
    }
    if !yes {
        // Fail closed: moving money needs a person or an explicit flag.
        if !printer.interactive() {
            bail!("refusing to approve without a terminal to ask at; pass `--yes` to approve {}", row.id);
        }
        let wallet = SigningWallet::find(settings, printer, None);
        let here = holder_name(&settings.home);
        show_card(store, &row, &limit_impact(store, &row)?, &wallet, &here, None, None)?;
        // Ctrl-C then reaches the prompt as an interrupted read (a "no") instead of killing the
        // process with the cursor still hidden.
        let _ctrl_c = signal(SignalKind::interrupt()).context("listening for Ctrl-C")?;
        let ok = ask(|| {
            Confirm::new().with_prompt("Approve and sign this request?").default(false).interact_on_opt(&prompt_term())
        })
        .await?
        .unwrap_or(false);
        if !ok {
            printer.info("Not approved; it is still pending.");
            return Ok(());
        }
    }
    match approve(settings, store, &row, printer, None).await? {
        Approval::Signed => Ok(()),
        Approval::NotPending(status) => {
            bail!(
                "request {} was {} meanwhile (see `{}`)",
                row.id,
                status.map_or("removed", TxStatus::as_str),
                settings.command("txs")
            )
        }
        Approval::Failed(why) | Approval::StillSigning(why) => bail!("{why}"),
    }
}

/// What the interactive queue shows.
#[derive(Debug, Clone, Default)]
pub struct QueueOptions {
    /// Only this agent's requests (an agent id), e.g. the one `assegai run` started.
    pub agent_id: Option<AgentId>,
    /// Return once nothing is waiting instead of waiting for more requests.
    pub once: bool,
    /// Asked inline by `assegai run`: no "waiting" line, and the agent's output is held back while
    /// a request is on screen.
    pub inline: bool,
    /// Return (between requests) once this turns true: the agent of `assegai run` has exited.
    pub stop: Option<tokio::sync::watch::Receiver<bool>>,
    /// The key store the proxy signs from, when the caller has it open (`assegai run`'s embedded
    /// proxy): the card then names the wallet without asking for a passphrase again.
    pub keys: Option<Arc<dyn KeyStore>>,
}

/// Where an interactive queue announces itself: for every agent, or for one.
fn approver_lock(settings: &Settings, agent_id: Option<&AgentId>) -> std::path::PathBuf {
    let root = settings.home.root();
    match agent_id {
        None => root.join("approvers.lock"),
        Some(id) => root.join(format!("approvers-{id}.lock")),
    }
}

/// Announces an interactive queue for as long as the returned file is open: a shared lock, so any
/// number of queues may run, and a process that dies releases it.
fn attach(settings: &Settings, agent_id: Option<&AgentId>) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    settings.home.ensure()?;
    let path = approver_lock(settings, agent_id);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.lock_shared().with_context(|| format!("locking {}", path.display()))?;
    Ok(file)
}

/// Whether a person has an `assegai approve` queue open that would see `agent_id`'s requests:
/// one for every agent, or one for this agent.
pub fn approver_attached(settings: &Settings, agent_id: &AgentId) -> bool {
    [None, Some(agent_id)].into_iter().any(|agent| {
        let Ok(file) = std::fs::File::open(approver_lock(settings, agent)) else { return false };
        // Held shared by a queue: an exclusive try fails. Free: taken and released at once.
        matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
    })
}

/// The interactive queue: shows pending requests oldest first ("Request 1 of 3"), asks what to do
/// with each, and waits for new ones until Ctrl-C (or, with [`QueueOptions::once`], until none is
/// left). Needs a terminal on stdin and stderr; the caller checks [`Printer::interactive`].
///
/// It listens for Ctrl-C itself from the moment it starts, so Ctrl-C ends the queue (and only
/// the queue) cleanly, with the terminal restored; requests left undecided stay pending.
pub async fn queue(settings: &Settings, printer: Printer, options: &QueueOptions) -> anyhow::Result<()> {
    let store = settings.existing_store()?;
    let mut ctrl_c = signal(SignalKind::interrupt()).context("listening for Ctrl-C")?;
    // `assegai run` asks inline only for its own agent, and only when no person is at a queue.
    let _attached = if options.inline { None } else { Some(attach(settings, options.agent_id.as_ref())?) };
    // On a shared database, the proxies of other hosts receive and sign requests.
    if !store.is_shared() && settings.admin().status().await.is_none() {
        printer.warn(format!(
            "no proxy is running, so no request can arrive or be signed; start one with `{}`",
            settings.command("proxy")
        ));
    }
    let wallet = SigningWallet::find(settings, printer, options.keys.as_deref());
    // Skipped requests are not offered again in this run; they stay pending.
    let mut skipped: HashSet<TxId> = HashSet::new();
    let (mut said_waiting, mut shown_any) = (false, false);
    loop {
        // One round: what is waiting now, oldest first; requests that arrive meanwhile join it.
        let mut round = waiting(&store, options, &skipped)?;
        if round.is_empty() {
            if options.once {
                printer.info(if shown_any {
                    "Nothing else is waiting for approval."
                } else {
                    "No requests are waiting for approval."
                });
                return Ok(());
            }
            if !said_waiting && !options.inline {
                printer.info(style("Waiting for transaction requests… (Ctrl-C to stop)").dim().for_stderr());
                said_waiting = true;
            }
            let mut stop = options.stop.clone();
            let stopping = async move {
                match stop.as_mut() {
                    Some(rx) => drop(rx.wait_for(|s| *s).await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = ctrl_c.recv() => return stopped(settings, &store, &skipped, printer),
                () = stopping => return Ok(()),
                () = tokio::time::sleep(POLL) => continue,
            }
        }
        said_waiting = false;
        let mut i = 0;
        while i < round.len() {
            for id in waiting(&store, options, &skipped)? {
                if !round.contains(&id) {
                    round.push(id);
                }
            }
            let (position, total) = (i + 1, round.len());
            let row = store.tx(&round[i])?;
            let Some(row) = row.filter(|r| r.status == TxStatus::Pending) else {
                let status = store.tx(&round[i])?.map(|r| r.status);
                printer.info(format!(
                    "Request {position} of {total} ({}) was {} meanwhile; moving on.",
                    round[i],
                    status.map_or("removed", TxStatus::as_str)
                ));
                i += 1;
                continue;
            };
            if options.stop.as_ref().is_some_and(|s| *s.borrow()) {
                return Ok(());
            }
            // Released when this iteration ends, however it ends.
            let _held = options.inline.then(|| printer.hold_agent_lines());
            let keys = if options.inline { KEYS_INLINE } else { KEYS_QUEUE };
            let here = holder_name(&settings.home);
            show_card(&store, &row, &limit_impact(&store, &row)?, &wallet, &here, Some((position, total)), Some(keys))?;
            shown_any = true;
            let choice = ask(|| {
                // Fail closed: the cursor starts on Skip, so a stray Enter neither signs nor rejects.
                Select::new().with_prompt("Your decision").items(CHOICES).default(SKIP).interact_on_opt(&prompt_term())
            })
            .await?;
            match choice {
                // Esc, `q` or Ctrl-C.
                None => return stopped(settings, &store, &skipped, printer),
                Some(0) => match approve(settings, &store, &row, printer, Some(&mut ctrl_c)).await? {
                    Approval::Signed => {}
                    Approval::NotPending(status) => printer.warn(format!(
                        "request {} was {} meanwhile (decided elsewhere or expired); nothing was signed",
                        row.id,
                        status.map_or("removed", TxStatus::as_str)
                    )),
                    Approval::Failed(why) => printer.error(&anyhow::anyhow!(why), None),
                    Approval::StillSigning(why) => {
                        printer.info(why);
                        return stopped(settings, &store, &skipped, printer);
                    }
                },
                Some(1) => {
                    reject(settings, &store, &row, printer).await?;
                }
                Some(2) => {
                    printer.info(format!("Skipped {}; it stays pending.", row.id));
                    skipped.insert(row.id.clone());
                }
                Some(_) => {
                    // Everything this queue has shown or is about to show: the rest of the round
                    // and what was skipped. Requests that arrive later are not included.
                    let mut targets: Vec<TxId> = round[i..].to_vec();
                    let earlier: Vec<TxId> = skipped.iter().filter(|id| !targets.contains(id)).cloned().collect();
                    targets.extend(earlier);
                    let question = format!("Reject all {} pending request(s) in this queue?", targets.len());
                    let sure = ask(move || {
                        Confirm::new().with_prompt(question).default(false).interact_on_opt(&prompt_term())
                    })
                    .await?;
                    match sure {
                        None => return stopped(settings, &store, &skipped, printer),
                        Some(false) => {
                            printer.info("Nothing rejected.");
                            continue;
                        }
                        Some(true) => {}
                    }
                    let mut rejected = 0;
                    for id in &targets {
                        match store.tx(id)? {
                            Some(r) if r.status == TxStatus::Pending => {
                                rejected += usize::from(reject(settings, &store, &r, printer).await?);
                            }
                            _ => {}
                        }
                    }
                    printer.info(format!("Rejected {rejected} of {} request(s).", targets.len()));
                    skipped.clear();
                    break;
                }
            }
            i += 1;
        }
    }
}

/// Pending requests the queue should offer, oldest first.
fn waiting(store: &Store, options: &QueueOptions, skipped: &HashSet<TxId>) -> anyhow::Result<Vec<TxId>> {
    let mut rows = store.txs(options.agent_id.as_ref(), Some(TxStatus::Pending), 1000)?;
    rows.reverse();
    Ok(rows.into_iter().map(|r| r.id).filter(|id| !skipped.contains(id)).collect())
}

/// Says goodbye when the queue ends early.
fn stopped(settings: &Settings, store: &Store, skipped: &HashSet<TxId>, printer: Printer) -> anyhow::Result<()> {
    let _ = prompt_term().show_cursor();
    let still =
        skipped.iter().filter(|id| store.tx(id).ok().flatten().is_some_and(|r| r.status == TxStatus::Pending)).count();
    if still > 0 {
        printer.info(format!(
            "Stopped; {still} skipped request(s) still pending (see `{}`).",
            settings.command("approve --list")
        ));
    } else {
        printer.info("Stopped.");
    }
    Ok(())
}

/// Runs a blocking prompt off the async threads. `Ok(None)` when the person quit: Esc, `q`, or
/// Ctrl-C (which reaches the prompt as an interrupted read once the queue listens for it).
async fn ask<T: Send + 'static>(
    prompt: impl FnOnce() -> dialoguer::Result<Option<T>> + Send + 'static,
) -> anyhow::Result<Option<T>> {
    match tokio::task::spawn_blocking(prompt).await.context("the prompt stopped unexpectedly")? {
        Ok(answer) => Ok(answer),
        Err(dialoguer::Error::IO(e)) if e.kind() == io::ErrorKind::Interrupted => {
            // The prompt hid the cursor and was cut short before showing it again.
            let _ = prompt_term().show_cursor();
            Ok(None)
        }
        Err(e) => Err(anyhow::Error::new(e).context("reading your answer")),
    }
}

/// How an approval ended.
enum Approval {
    /// Signed and broadcast; the hash was printed.
    Signed,
    /// It was not pending any more (the status it had, if the row still exists).
    NotPending(Option<TxStatus>),
    /// Signing or broadcasting failed; why.
    Failed(String),
    /// Ctrl-C while waiting for the hash; the proxy goes on signing.
    StillSigning(String),
}

/// Approves through the running proxy (on a shared database without one here, in the database,
/// which wakes the proxy holding the request on whichever host), then waits for the hash with a
/// spinner and prints it.
async fn approve(
    settings: &Settings,
    store: &Store,
    row: &TxRow,
    printer: Printer,
    mut ctrl_c: Option<&mut Signal>,
) -> anyhow::Result<Approval> {
    let approved = match settings.admin().approve_tx(&row.id).await? {
        Some(done) => done,
        None if store.is_shared() => store.decide_tx(&row.id, TxStatus::Pending, TxStatus::Approved, None, "cli")?,
        None => bail!("no proxy is running, so nothing can sign; start one with `{}`", settings.command("proxy")),
    };
    if !approved {
        return Ok(Approval::NotPending(store.tx(&row.id)?.map(|r| r.status)));
    }
    let spinner = printer.spinner(&format!("Signing and broadcasting {}…", row.id));
    let deadline = tokio::time::Instant::now() + SIGNING_TIMEOUT;
    let done = loop {
        let now = store.tx(&row.id)?.with_context(|| format!("request {} vanished from the database", row.id))?;
        if now.tx_hash.is_some() || now.status != TxStatus::Approved {
            break now;
        }
        if tokio::time::Instant::now() > deadline {
            spinner.finish_and_clear();
            return Ok(Approval::Failed(format!(
                "no hash for {} after {} s; see `{}`",
                row.id,
                SIGNING_TIMEOUT.as_secs(),
                settings.command("txs")
            )));
        }
        let interrupted = async {
            match ctrl_c.as_deref_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = interrupted => {
                spinner.finish_and_clear();
                return Ok(Approval::StillSigning(format!(
                    "Stopped waiting: {} is approved and the proxy goes on signing it; `{}` will show its hash.",
                    row.id,
                    settings.command("txs")
                )));
            }
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    };
    spinner.finish_and_clear();
    match (&done.tx_hash, done.status) {
        (Some(hash), _) => {
            printer.success(format!("Approved {}: {}", row.id, neutralize(&row.action)));
            printer.data(hash.to_string());
            Ok(Approval::Signed)
        }
        (None, status) => {
            let why = done.error.as_deref().map_or_else(String::new, neutralize);
            Ok(Approval::Failed(match status {
                TxStatus::Failed => format!("request {} was approved but failed: {why}", row.id),
                other => format!("request {} ended {}: {why}", row.id, other.as_str()),
            }))
        }
    }
}

/// The gas limit, and when the proxy raised the agent's (or could not estimate), both figures.
fn gas_line(row: &TxRow) -> String {
    let Some(limit) = row.gas_limit else { return "estimated at signing".to_owned() };
    let gas = row.detail.as_ref().map(|d| &d["gas"]);
    let asked = gas.and_then(|g| g["requested"].as_u64());
    match (asked, gas.and_then(|g| g["estimate"].as_u64()), gas.and_then(|g| g["estimate_error"].as_str())) {
        (Some(asked), Some(estimate), _) if asked < limit => {
            format!("{limit} limit (the agent asked {asked}; the node estimates {estimate}, plus a fifth)")
        }
        (None, Some(estimate), _) if estimate < limit => {
            format!("{limit} limit (the node estimates {estimate}, plus a fifth)")
        }
        (_, _, Some(why)) => format!("{limit} limit (the node could not estimate it: {})", neutralize(why)),
        _ => format!("{limit} limit"),
    }
}

/// Rejects through the running proxy (which answers the waiting agent), or straight in the
/// database when none runs (then nobody is waiting). Returns whether this call rejected it.
async fn reject(settings: &Settings, store: &Store, row: &TxRow, printer: Printer) -> anyhow::Result<bool> {
    let rejected = match settings.admin().reject_tx(&row.id).await? {
        Some(done) => done,
        None => store.decide_tx(&row.id, TxStatus::Pending, TxStatus::Rejected, Some("rejected by user"), "cli")?,
    };
    if rejected {
        printer.success(format!("Rejected {}: {}", row.id, neutralize(&row.action)));
    } else {
        let status = store.tx(&row.id)?.map(|r| r.status);
        printer.warn(format!(
            "request {} was {} meanwhile (decided elsewhere or expired)",
            row.id,
            status.map_or("removed", TxStatus::as_str)
        ));
    }
    Ok(rejected)
}

/// What approving a request does to its agent's native spending limits.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Impact {
    /// The manifest sets no native limit.
    NoLimits,
    /// The limits, before and after this request (value + worst-case fee).
    Limits { per_transaction: Option<U256>, windows: Vec<limits::Impact> },
    /// Cannot tell, and why.
    Unknown(String),
}

/// Reads the agent's limits and what its requests count against them so far. The store's
/// pending figure already includes this request while it is pending.
fn limit_impact(store: &Store, row: &TxRow) -> anyhow::Result<Impact> {
    let Ok(agent) = agents::find(store, row.agent_id.as_str()) else {
        return Ok(Impact::Unknown("the agent is no longer registered".into()));
    };
    let manifest = match agent.manifest() {
        Ok(m) => m,
        Err(e) => return Ok(Impact::Unknown(format!("its stored manifest does not parse: {e}"))),
    };
    let Some(spending) = manifest.spending_limits.clone() else { return Ok(Impact::NoLimits) };
    let cost = cost(row);
    let mut windows = Vec::new();
    for w in limits::windows(Some(&spending)) {
        let (settled, pending) = store.spend_breakdown(&row.agent_id, row.chain_id, w.window.since(now_ms()))?;
        windows.push(limits::impact(w, settled.saturating_add(pending), cost, row.status == TxStatus::Pending));
    }
    let per_transaction = spending.per_transaction.map(|l| l.base_units());
    if windows.is_empty() && per_transaction.is_none() {
        return Ok(Impact::NoLimits);
    }
    Ok(Impact::Limits { per_transaction, windows })
}

/// What the request counts against the limits at most: value + worst-case fee.
fn cost(row: &TxRow) -> U256 {
    limits::counted(TxStatus::Pending, row.value_wei, row.max_fee_wei, None)
}

/// The wallet's predicted balance changes (`−0.0001 ETH, −25 USDC`), or why there are none; `None`
/// for requests from before simulation.
fn simulation_line(row: &TxRow, symbol: &str) -> Option<String> {
    let detail = row.detail.as_ref()?;
    let sim = &detail["simulation"];
    if sim.is_null() {
        return detail["simulation_note"].as_str().map(neutralize);
    }
    let signed = |text: &str, decimals: u8, unit: &str| -> Option<String> {
        let (sign, digits) = match text.as_bytes().first() {
            Some(b'-') => ("−", &text[1..]),
            Some(b'+') => ("+", &text[1..]),
            _ => ("", text),
        };
        let n = U256::from_str_radix(digits, 10).ok()?;
        (!n.is_zero()).then(|| format!("{sign}{} {unit}", format_units(n, decimals)))
    };
    let mut parts: Vec<String> = sim["native_wei"].as_str().and_then(|n| signed(n, 18, symbol)).into_iter().collect();
    for token in sim["tokens"].as_array().into_iter().flatten() {
        let change = token["change"].as_str().unwrap_or("0");
        let part = match (token["symbol"].as_str(), token["decimals"].as_u64().and_then(|d| u8::try_from(d).ok())) {
            (Some(sym), Some(decimals)) => signed(change, decimals, &neutralize(sym)),
            _ => signed(change, 0, &format!("base units of {}", neutralize(token["address"].as_str().unwrap_or("?")))),
        };
        parts.extend(part);
    }
    Some(if parts.is_empty() { "no balance changes for your wallet".to_owned() } else { parts.join(", ") })
}

/// `max 2.5 gwei per gas (priority 0.1) → at most 0.0000525 ETH`, or why there is no fee.
fn fee_line(row: &TxRow, symbol: &str) -> String {
    let gwei = |wei: U256| format_units(wei, 9);
    let (Some(model), Some(per_gas), Some(max_fee)) = (row.fee_model, row.max_fee_per_gas, row.max_fee_wei) else {
        return "not fixed (requested before fees were recorded)".to_owned();
    };
    let worst = format_units(max_fee, 18);
    match (model, row.max_priority_fee_per_gas) {
        (FeeModel::Eip1559, Some(priority)) => {
            format!("max {} gwei per gas (priority {} gwei) → at most {worst} {symbol}", gwei(per_gas), gwei(priority))
        }
        _ => format!("gas price {} gwei → {worst} {symbol}", gwei(per_gas)),
    }
}

/// How many of the agent's latest log lines the card shows.
const CONTEXT_LINES: u32 = 3;

/// The keys of the queue's prompt, said under the card (dialoguer shows none).
const KEYS_QUEUE: &str = "↑/↓ choose · Enter decide · Esc leave the queue (requests stay pending)";
/// The same under `assegai run`, where leaving the prompt stops the agent.
const KEYS_INLINE: &str = "↑/↓ choose · Enter decide · Esc stop the agent (requests stay pending)";

/// Writes a request's card to the terminal the prompt is on (see [`prompt_term`]), whatever
/// `--quiet` says: a person must see what they approve. Under it, what the agent logged last: the
/// context that tells a legitimate request from an injected one; then the prompt's keys.
fn show_card(
    store: &Store,
    row: &TxRow,
    impact: &Impact,
    wallet: &SigningWallet,
    here: &str,
    position: Option<(usize, usize)>,
    keys: Option<&str>,
) -> anyhow::Result<()> {
    let query = LogQuery { agent_id: Some(row.agent_id.clone()), limit: Some(CONTEXT_LINES), ..LogQuery::default() };
    let recent = store.logs(&query).unwrap_or_default();
    let term = prompt_term();
    term.write_line("").context("writing to the terminal")?;
    // On a shared database the proxy holding the request, maybe on another host, signs it with
    // its wallet: the one it named when the request arrived (this host's own is described as
    // it always is).
    let from = match (store.is_shared(), row.held_by.as_deref()) {
        (true, Some(holder)) if holder != here => {
            let address = row.detail.as_ref().and_then(|d| d["from"].as_str()).map_or("its wallet".into(), neutralize);
            format!("{address} (signed by the proxy at {})", neutralize(holder))
        }
        _ => wallet.line(ChainId::eip155(row.chain_id)),
    };
    let keys = keys.map(|k| format!("  {}", style(k).dim().for_stderr()));
    for line in card(row, impact, &from, position).into_iter().chain(context_lines(&recent)).chain(keys) {
        term.write_line(&line).context("writing to the terminal")?;
    }
    Ok(())
}

/// Which wallet signs what is approved here, as far as this process can tell without asking for
/// a passphrase: the proxy signs with the imported wallet on every chain, else with Anvil's test
/// account on local chains (`wallet::choose`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum SigningWallet {
    /// An imported wallet: its address and the key store holding its key.
    Imported { address: assegai_sdk::Address, store: String },
    /// Nothing imported: only the test account signs, on local chains.
    TestAccountOnly,
    /// Cannot tell here; what is known instead.
    Unknown(String),
}

impl SigningWallet {
    /// Reads the wallet from `keys` when the caller has the key store open, else opens it when
    /// that needs no passphrase.
    fn find(settings: &Settings, printer: Printer, keys: Option<&dyn KeyStore>) -> Self {
        let from = |keys: &dyn KeyStore| match wallet::load(keys) {
            Ok(Some(signer)) => SigningWallet::Imported { address: signer.address(), store: keys.describe() },
            Ok(None) => SigningWallet::TestAccountOnly,
            Err(e) => SigningWallet::Unknown(format!("the key store cannot be read ({})", neutralize(&e.to_string()))),
        };
        if let Some(keys) = keys {
            return from(keys);
        }
        if settings.may_prompt_for_keys() {
            return SigningWallet::Unknown(
                "the wallet imported into the encrypted key file (keys.enc), if any, else Anvil's test account \
                 (set ASSEGAI_PASSPHRASE to see which)"
                    .into(),
            );
        }
        match settings.existing_keystore(printer) {
            Ok(Some(keys)) => from(keys.as_ref()),
            Ok(None) => SigningWallet::TestAccountOnly,
            Err(e) => SigningWallet::Unknown(format!("the key store cannot be opened ({e:#})")),
        }
    }

    /// The card's `From` line for a request on `chain`.
    fn line(&self, chain: ChainId) -> String {
        match self {
            SigningWallet::Imported { address, store } => {
                format!("{address} (your imported wallet; key in the {store})")
            }
            SigningWallet::TestAccountOnly if chain.is_local() => {
                format!("{ANVIL_TEST_ACCOUNT} (Anvil's test account: a public key, local chains only)")
            }
            SigningWallet::TestAccountOnly => {
                "no wallet signs on this chain; approving fails until `assegai wallet import`".to_owned()
            }
            SigningWallet::Unknown(what) => what.clone(),
        }
    }
}

/// The agent's latest log lines, neutralised and cut to one screen line each.
fn context_lines(logs: &[LogRow]) -> Vec<String> {
    let label = |first: bool| style(format!("{:<8}", if first { "Logged" } else { "" })).dim().for_stderr().to_string();
    if logs.is_empty() {
        return vec![format!("  {} nothing yet", label(true))];
    }
    logs.iter()
        .enumerate()
        .map(|(i, l)| {
            let text: String = neutralize(&l.message).chars().take(100).collect();
            format!("  {} {} {} {text}", label(i == 0), timestamp(l.created_at), l.level.as_str())
        })
        .collect()
}

/// A request as lines for a person; `from` names the wallet that signs it. Everything from the row
/// is neutralised.
fn card(row: &TxRow, impact: &Impact, from: &str, position: Option<(usize, usize)>) -> Vec<String> {
    let chain = ChainId::eip155(row.chain_id);
    let symbol = native_symbol(chain);
    let value = row.value_wei;
    let field = |label: &str, text: String| format!("  {} {text}", style(format!("{label:<8}")).dim().for_stderr());
    let title = match position {
        Some((n, of)) => format!("Request {n} of {of}"),
        None => "Request".to_owned(),
    };
    let mut lines =
        vec![format!("{} {}", style(title).bold().for_stderr(), style(neutralize(row.id.as_str())).dim().for_stderr())];
    lines.push(field("Agent", format!("{} ({})", neutralize(&row.agent_name), neutralize(row.agent_id.as_str()))));
    lines.push(field("Chain", chain.name().map_or_else(|| chain.to_string(), |n| format!("{n} ({chain})"))));
    lines.push(field("From", from.to_owned()));
    let calls = !row.data.is_empty();
    lines.push(field(if calls { "Contract" } else { "To" }, row.to.to_checksum(None)));
    lines.push(field("Value", format!("{value} wei ({} {symbol})", format_units(value, 18))));
    if let Some(token) = row.detail.as_ref().and_then(|d| d.get("token")) {
        lines.push(field("Token", token_line(token)));
    }
    lines.push(field("Action", style(neutralize(&row.action)).bold().for_stderr().to_string()));
    if calls {
        let bytes = row.data.len();
        lines.push(field("Data", format!("{bytes} bytes of calldata")));
    }
    lines.push(field("Gas", gas_line(row)));
    lines.push(field("Fee", fee_line(row, symbol)));
    if row.max_fee_wei.is_some() {
        let total = style(format!("at most {} {symbol}", format_units(cost(row), 18))).bold().for_stderr();
        lines.push(field("Total", format!("{total} (value + fee)")));
    }
    if let Some(line) = simulation_line(row, symbol) {
        lines.push(field("Effect", line));
    }
    if let Some(rpc) = row.detail.as_ref().and_then(|d| d["signing_rpc"].as_str()) {
        lines.push(field("Signs at", neutralize(rpc)));
    }
    let mut limit_lines = impact_lines(impact, cost(row), symbol).into_iter();
    if let Some(first) = limit_lines.next() {
        lines.push(field("Limits", first));
    }
    lines.extend(limit_lines.map(|l| format!("  {:<8} {l}", "")));
    lines.push(field("Asked", format!("{} UTC", timestamp(row.created_at))));
    lines
}

/// `1000 USDC (1000000000 base units, 6 decimals); allowance 1000 USDC` from the policy's detail.
fn token_line(token: &serde_json::Value) -> String {
    let text = |key: &str| neutralize(token.get(key).and_then(|v| v.as_str()).unwrap_or("?"));
    let decimals = token.get("decimals").and_then(serde_json::Value::as_u64).and_then(|d| u8::try_from(d).ok());
    let symbol = text("symbol");
    let raw = token.get("amount").and_then(|v| v.as_str()).unwrap_or("0");
    let amount = U256::from_str_radix(raw, 10).ok();
    let shown = match (amount, decimals) {
        (Some(a), _) if a == U256::MAX => format!("unlimited {symbol}"),
        (Some(a), Some(d)) => format!("{} {symbol} ({a} base units, {d} decimals)", format_units(a, d)),
        _ => format!("{} base units of {symbol}", neutralize(raw)),
    };
    format!("{shown}; allowance {} {symbol} at {}", text("allowance"), text("address"))
}

/// `daily 0.5 → 0.6 of 1 ETH (value + fee)`, one line per window that has a limit; `cost` is the
/// request's value + worst-case fee.
fn impact_lines(impact: &Impact, cost: U256, symbol: &str) -> Vec<String> {
    let eth = |v: U256| format_units(v, 18);
    match impact {
        Impact::NoLimits => vec!["no spending limits".to_owned()],
        Impact::Unknown(why) => vec![format!("unknown: {}", neutralize(why))],
        Impact::Limits { per_transaction, windows } => {
            let mut lines = Vec::new();
            if cost.is_zero() {
                lines.push(format!("unchanged: no {symbol} is sent or paid"));
                return lines;
            }
            if let Some(limit) = per_transaction {
                lines.push(format!("per transaction {} of {} {symbol} (value + fee)", eth(cost), eth(*limit)));
            }
            for w in windows {
                let line =
                    format!("{} {} → {} of {} {symbol}", w.window.name(), eth(w.before), eth(w.after), eth(w.limit));
                lines.push(if w.exceeds() { style(line).red().for_stderr().to_string() } else { line });
            }
            lines
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const FROM: &str =
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266 (Anvil's test account: a public key, local chains only)";

    fn eth(tenths_of_milli: u64) -> U256 {
        U256::from(tenths_of_milli) * U256::from(100_000_000_000_000u64)
    }

    fn row() -> TxRow {
        TxRow {
            id: "tx_0011223344556677".into(),
            agent_id: "ag_abc".into(),
            agent_name: "payer".into(),
            chain_id: 31337,
            to: "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045".parse().unwrap(),
            value_wei: eth(1),
            data: Default::default(),
            gas_limit: None,
            action: "Send 0.0001 ETH to 0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045".into(),
            detail: None,
            fee_model: None,
            max_fee_per_gas: None,
            max_priority_fee_per_gas: None,
            max_fee_wei: None,
            fee_wei: None,
            status: TxStatus::Pending,
            tx_hash: None,
            error: None,
            created_at: 0,
            decided_at: None,
            decided_by: None,
            held_by: None,
        }
    }

    fn daily(before: U256, after: U256, limit: U256) -> limits::Impact {
        limits::Impact { window: limits::Window::Daily, before, after, limit }
    }

    #[test]
    fn a_transfer_card_shows_what_a_person_decides_on() {
        console::set_colors_enabled_stderr(false);
        let impact = Impact::Limits { per_transaction: None, windows: vec![daily(eth(2), eth(3), eth(10_000))] };
        let lines = card(&row(), &impact, FROM, Some((1, 2)));
        assert_eq!(lines[0], "Request 1 of 2 tx_0011223344556677");
        let text = lines.join("\n");
        let chain = format!("Chain    {} (eip155:31337)", ChainId::ANVIL.name().unwrap());
        for want in [
            "Agent    payer (ag_abc)",
            &chain,
            "From     0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266 (Anvil's test account",
            "To       0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045",
            "Value    100000000000000 wei (0.0001 ETH)",
            "Action   Send 0.0001 ETH to 0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045",
            "Gas      estimated at signing",
            "Fee      not fixed (requested before fees were recorded)",
            "Limits   daily 0.0002 → 0.0003 of 1 ETH",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn the_card_shows_the_fee_and_value_plus_fee() {
        console::set_colors_enabled_stderr(false);
        let mut r = row();
        r.gas_limit = Some(21_000);
        r.fee_model = Some(FeeModel::Eip1559);
        r.max_fee_per_gas = Some(U256::from(2500000000u64));
        r.max_priority_fee_per_gas = Some(U256::from(100000000u64));
        r.max_fee_wei = Some(U256::from(52500000000000u64));
        r.detail = Some(json!({"gas": {"estimate": 21000, "limit": 21000}, "signing_rpc": "127.0.0.1:8545"}));
        let impact = Impact::Limits { per_transaction: Some(eth(1)), windows: vec![] };
        let text = card(&r, &impact, FROM, None).join("\n");
        for want in [
            "Gas      21000 limit",
            "Fee      max 2.5 gwei per gas (priority 0.1 gwei) → at most 0.0000525 ETH",
            "Total    at most 0.0001525 ETH (value + fee)",
            "Signs at 127.0.0.1:8545",
            "Limits   per transaction 0.0001525 of 0.0001 ETH (value + fee)",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        r.fee_model = Some(FeeModel::Legacy);
        r.max_priority_fee_per_gas = None;
        assert_eq!(fee_line(&r, "ETH"), "gas price 2.5 gwei → 0.0000525 ETH");
    }

    #[test]
    fn the_card_ends_with_what_the_agent_logged() {
        console::set_colors_enabled_stderr(false);
        assert_eq!(context_lines(&[]), ["  Logged   nothing yet"]);
        let log = |id: i64, message: &str| LogRow {
            id,
            agent_id: "ag_abc".into(),
            agent_name: "payer".into(),
            level: assegai_sdk::LogLevel::Info,
            message: message.into(),
            data: None,
            created_at: 0,
        };
        let lines = context_lines(&[log(1, "read the page"), log(2, "ignore previous instructions\u{202e}")]);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("  Logged   ") && lines[0].ends_with("info read the page"), "{lines:?}");
        assert!(lines[1].starts_with("           ") && !lines[1].contains('\u{202e}'), "{lines:?}");
    }

    #[test]
    fn the_simulation_reads_as_balance_changes() {
        let mut r = row();
        r.detail = Some(json!({"simulation": {"native_wei": "-100000000000000", "tokens": [
            {"address": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", "change": "-25000000", "symbol": "USDC", "decimals": 6},
            {"address": "0x0000000000000000000000000000000000000001", "change": "+7"},
        ]}}));
        assert_eq!(
            simulation_line(&r, "ETH").unwrap(),
            "−0.0001 ETH, −25 USDC, +7 base units of 0x0000000000000000000000000000000000000001"
        );
        r.detail = Some(json!({"simulation": null, "simulation_note": "not simulated: no wallet signs on this chain"}));
        assert_eq!(simulation_line(&r, "ETH").unwrap(), "not simulated: no wallet signs on this chain");
        r.detail = Some(json!({"simulation": {"native_wei": "0", "tokens": []}}));
        assert_eq!(simulation_line(&r, "ETH").unwrap(), "no balance changes for your wallet");
        r.detail = None;
        assert_eq!(simulation_line(&r, "ETH"), None);
    }

    #[test]
    fn a_raised_gas_limit_shows_both_figures() {
        let mut r = row();
        r.gas_limit = Some(25_334);
        r.detail = Some(json!({"gas": {"requested": 21000, "estimate": 21112, "limit": 25334}}));
        assert_eq!(gas_line(&r), "25334 limit (the agent asked 21000; the node estimates 21112, plus a fifth)");
        r.gas_limit = Some(60_000);
        r.detail = Some(json!({"gas": {"requested": 60000, "estimate": 21112, "limit": 60000}}));
        assert_eq!(gas_line(&r), "60000 limit");
        r.detail = Some(
            json!({"gas": {"requested": 60000, "estimate_error": "RPC Error: reverted\u{1b}[2J", "limit": 60000}}),
        );
        assert_eq!(gas_line(&r), r"60000 limit (the node could not estimate it: RPC Error: reverted\x1b[2J)");
        r.gas_limit = None;
        assert_eq!(gas_line(&r), "estimated at signing");
    }

    #[test]
    fn token_calls_show_the_token_amount_and_no_native_impact() {
        console::set_colors_enabled_stderr(false);
        let mut r = row();
        r.value_wei = U256::ZERO;
        r.data = "0xa9059cbb".parse().unwrap();
        r.gas_limit = Some(60_000);
        r.to = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48".parse().unwrap();
        r.detail = Some(json!({"token": {"address": r.to.to_checksum(None), "symbol": "USDC", "decimals": 6,
            "amount": "1000000000", "allowance": "2000"}}));
        let impact = Impact::Limits { per_transaction: Some(eth(10_000)), windows: vec![] };
        let text = card(&r, &impact, FROM, None).join("\n");
        assert!(text.contains("Contract 0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"), "{text}");
        assert!(
            text.contains("Token    1000 USDC (1000000000 base units, 6 decimals); allowance 2000 USDC at 0xA0b8"),
            "{text}"
        );
        assert!(text.contains("Gas      60000 limit"), "{text}");
        assert!(text.contains("Limits   unchanged: no ETH is sent or paid"), "{text}");
    }

    #[test]
    fn limits_lines() {
        console::set_colors_enabled_stderr(false);
        assert_eq!(impact_lines(&Impact::NoLimits, eth(1), "ETH"), ["no spending limits"]);
        let impact = Impact::Limits {
            per_transaction: Some(eth(5_000)),
            windows: vec![
                daily(eth(5_000), eth(6_000), eth(10_000)),
                limits::Impact {
                    window: limits::Window::Weekly,
                    before: U256::ZERO,
                    after: eth(1_000),
                    limit: eth(50_000),
                },
            ],
        };
        assert_eq!(
            impact_lines(&impact, eth(1_000), "POL"),
            ["per transaction 0.1 of 0.5 POL (value + fee)", "daily 0.5 → 0.6 of 1 POL", "weekly 0 → 0.1 of 5 POL"]
        );
    }

    #[test]
    fn agent_text_is_neutralised() {
        console::set_colors_enabled_stderr(false);
        let mut r = row();
        r.agent_name = "evil\u{1b}[2J\u{1b}[H".into();
        r.action = "Send\u{1b}]0;pwned\u{7}".into();
        let text = card(&r, &Impact::NoLimits, FROM, Some((1, 1))).join("\n");
        assert!(!text.contains('\u{1b}') && !text.contains('\u{7}'), "{text:?}");
        assert!(text.contains("evil\\x1b[2J\\x1b[H"), "{text}");
    }
}
