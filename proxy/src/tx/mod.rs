//! Transactions, top to bottom: an agent asks; the policy checks the request's shape, chain and
//! calldata ([`policy`], with [`decode`] reading calldata and [`tokens`] naming known tokens); the
//! signing RPC's chain id, gas limit and fees are fixed and capped ([`fees`]); value + worst-case
//! fee is checked against the per-transaction limit and, atomically with the insert, the rolling
//! windows ([`limits`]); it is simulated, and refused if it would revert ([`simulate`]); the
//! request waits for a person ([`Approvals`]); once approved the user's
//! wallet signs exactly what was shown and broadcasts it ([`signer`]); a watcher records the
//! receipt and the fee paid.

pub mod approvals;
pub mod decode;
pub mod fees;
pub mod limits;
pub mod policy;
pub mod signer;
pub mod simulate;
pub mod tokens;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use alloy_primitives::B256;
use assegai_sdk::wire::{TxRequest, TxStatus};
use hyper::Uri;
use rand::TryRngCore;
use tokio::sync::oneshot;

use crate::{
    Error, Result,
    auth::Agent,
    ids::{AgentId, TxId},
    state::AppState,
    store::{NewTx, now_ms},
};

/// A person's decision on a pending request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Approved: sign and broadcast.
    Approved,
    /// Rejected, with who or what rejected it.
    Rejected(String),
}

/// Why a stopping proxy gives up on the requests still waiting.
const STOPPED: &str = "the proxy stopped while the request waited";

/// The requests currently waiting for a person, by id.
#[derive(Debug)]
pub struct Approvals {
    /// `None` once the proxy is stopping: nothing can be decided any more. One lock for both, so
    /// a request cannot register in the instant the queue closes and then wait forever.
    waiting: Mutex<Option<HashMap<TxId, oneshot::Sender<Decision>>>>,
}

impl Default for Approvals {
    fn default() -> Self {
        Approvals { waiting: Mutex::new(Some(HashMap::new())) }
    }
}

impl Approvals {
    /// A receiver for `id`'s decision; once [`Approvals::close`] has run, one that has already
    /// lost its sender, so the request ends at once instead of holding the shutdown up.
    fn register(&self, id: &TxId) -> oneshot::Receiver<Decision> {
        let (tx, rx) = oneshot::channel();
        if let Some(waiting) = self.waiting.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            waiting.insert(id.clone(), tx);
        }
        rx
    }

    /// The proxy is stopping: every waiting request (and any that arrives now) ends as expired,
    /// rather than the shutdown waiting out their approval timeout.
    pub fn close(&self) {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn forget(&self, id: &TxId) {
        if let Some(waiting) = self.waiting.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            waiting.remove(id);
        }
    }

    /// The requests waiting here.
    fn waiting_ids(&self) -> Vec<TxId> {
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or_else(Vec::new, |w| w.keys().cloned().collect())
    }

    /// Hands a decision to the waiting request; false if nothing waits for `id`.
    pub fn decide(&self, id: &TxId, decision: Decision) -> bool {
        let waiter = self.waiting.lock().unwrap_or_else(|p| p.into_inner()).as_mut().and_then(|w| w.remove(id));
        waiter.is_some_and(|w| w.send(decision).is_ok())
    }
}

fn new_tx_id() -> TxId {
    let mut bytes = [0u8; 8];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).expect("the OS random number generator failed");
    TxId::from_random(&bytes)
}

/// Checks, stores as pending, and waits for the decision. The waiting runs in its own task so
/// that an agent that hangs up does not stop the timeout from expiring its request.
/// Returns the request's id and the broadcast transaction's hash.
pub async fn request(state: &AppState, agent: &Arc<Agent>, req: TxRequest) -> Result<(TxId, B256)> {
    let queued = queue(state, agent, req).await?;
    let id = queued.id.clone();
    let hash = queued.wait(state).await?;
    Ok((id, hash))
}

/// A request stored as pending, whose decision has not been waited for yet.
pub struct Queued {
    /// Its id.
    pub id: TxId,
    decision: oneshot::Receiver<Decision>,
    signing: signer::Signing,
    rpc: Uri,
}

impl Queued {
    /// Waits for the person's decision (in a task of its own, so that a caller that goes away
    /// does not stop the timeout from expiring the request), signs if approved, returns the hash.
    pub async fn wait(self, state: &AppState) -> Result<B256> {
        let timeout = state.config().approval_timeout();
        let Queued { id, decision, signing, rpc } = self;
        let waiter = tokio::spawn(wait(state.clone(), id, decision, timeout, signing, rpc));
        waiter.await.map_err(|e| Error::Internal(e.to_string()))?
    }
}

/// Checks a request, fixes its fees, simulates it and stores it as pending (within the limits).
pub async fn queue(state: &AppState, agent: &Arc<Agent>, req: TxRequest) -> Result<Queued> {
    let parsed = policy::parse(&agent.manifest, &req)?;
    let facts = token_facts(state, agent, &parsed).await?;
    let mut checked = policy::check(&agent.manifest, parsed, facts)?;
    let rpc = state.chain().signing_rpc_url(&agent.manifest, checked.chain)?;
    let from = state.wallet().address_for(checked.chain).await.ok();
    let ask = fees::Ask {
        chain: checked.chain,
        from,
        to: checked.to,
        value: checked.value,
        data: &checked.data,
        gas_limit: checked.gas_limit,
    };
    let provider = signer::read_provider(state.upstream(), rpc.clone());
    let fixed = fees::fix(&provider, ask, state.config().fee_caps(checked.chain)).await?;
    let spending = agent.manifest.spending_limits.as_ref();
    if let Some(breach) = limits::per_transaction(spending, checked.value, fixed.fees.max_fee_wei) {
        return Err(Error::Policy(breach_message(breach, checked.chain, checked.value)));
    }
    let call =
        simulate::Call { from, to: checked.to, value: checked.value, data: &checked.data, gas_limit: fixed.gas_limit };
    let (mut simulation, note) = simulate::simulate(&provider, call).await?;
    name_tokens(checked.chain, &mut simulation, &checked.detail);
    checked.detail["simulation"] = simulation;
    if let Some(note) = note {
        checked.detail["simulation_note"] = note.into();
    }
    checked.detail["gas"] = fixed.detail["gas"].clone();
    checked.detail["base_fee_per_gas"] = fixed.detail["base_fee_per_gas"].clone();
    // Where it will be signed, without a path or query (a user's RPC URL may carry an API key),
    // and by which wallet: a person deciding on another host of a team sees this one's.
    checked.detail["signing_rpc"] = rpc.authority().map(|a| a.to_string()).into();
    checked.detail["from"] = from.map(|a| a.to_checksum(None)).into();
    let id = new_tx_id();
    let row = NewTx {
        id: id.clone(),
        agent_id: agent.id.clone(),
        agent_name: agent.name.clone(),
        chain_id: checked.chain.id(),
        to: checked.to.to_checksum(None),
        value_wei: checked.value,
        data: format!("0x{}", hex::encode(&checked.data)),
        gas_limit: Some(fixed.gas_limit),
        fees: Some(fixed.fees),
        action: checked.action.clone(),
        detail: Some(checked.detail.clone()),
        created_at: now_ms(),
        held_by: Some(state.holder().to_owned()),
        expires_at: Some(now_ms().saturating_add(state.config().approval_timeout().as_millis() as i64)),
    };
    // Registered before the row exists, so a decision made the instant it appears is not lost.
    let decision = state.approvals().register(&id);
    let windows = limits::windows(spending);
    match state.db(move |s| s.insert_pending_tx(&row, &windows)).await {
        Ok(None) => {}
        Ok(Some(window)) => {
            state.approvals().forget(&id);
            tracing::info!(agent = %agent.id, window = window.name(), "spending limit reached");
            return Err(Error::Policy("Total spending limit exceeded".into()));
        }
        Err(e) => {
            state.approvals().forget(&id);
            return Err(e);
        }
    }
    let signing = signer::Signing {
        chain: checked.chain,
        to: checked.to,
        value: checked.value,
        data: checked.data,
        gas_limit: fixed.gas_limit,
        fees: fixed.fees,
    };
    Ok(Queued { id, decision, signing, rpc })
}

/// The facts the policy needs for a token call: the allowance in force (one set with `assegai
/// allowance set` wins over the manifest's, so a person can change it without editing files), and
/// — when there is one — the token's symbol and decimals (known, or `decimals()` from the chain).
async fn token_facts(state: &AppState, agent: &Agent, parsed: &policy::Parsed) -> Result<policy::Facts> {
    let Some(token) = parsed.token() else { return Ok(policy::Facts::default()) };
    let chain = parsed.chain;
    let id = agent.id.clone();
    let set = state.db(move |s| s.allowance(&id, chain.id(), token)).await?;
    let allowance = set.map(|row| row.amount).or_else(|| {
        agent.manifest.allowances.get(&chain).and_then(|tokens| tokens.get(&token)).map(|a| a.as_str().to_owned())
    });
    // Without an allowance the request is refused whatever the token is: nothing to read.
    let token_info = match (&allowance, tokens::known(chain, token)) {
        (None, _) => None,
        (Some(_), Some(t)) => Some(Ok((t.symbol.to_owned(), t.decimals))),
        (Some(_), None) => {
            Some(read_decimals(state, agent, chain, token).await.map(|d| (format!("tokens of {token}"), d)))
        }
    };
    Ok(policy::Facts { allowance, token: token_info })
}

/// `decimals()` of a token the proxy does not know, from the agent's RPC for that chain.
async fn read_decimals(
    state: &AppState,
    agent: &Agent,
    chain: assegai_sdk::ChainId,
    token: alloy_primitives::Address,
) -> Result<u8> {
    let url = state.chain().rpc_url(&agent.manifest, chain)?;
    let params = serde_json::json!([{"to": token, "data": "0x313ce567"}, "latest"]);
    let raw = state.chain().query(url, "eth_call", &params).await?;
    let hex: String =
        serde_json::from_str(raw.get()).map_err(|_| Error::BadUpstream("decimals() returned no hex".into()))?;
    let n = alloy_primitives::U256::from_str_radix(hex.trim_start_matches("0x"), 16)
        .ok()
        .filter(|n| *n <= alloy_primitives::U256::from(77));
    n.map(|n| n.to::<u8>()).ok_or_else(|| {
        Error::Policy(format!("Cannot read the decimals of {token} on {chain}: is it an ERC-20 token contract?"))
    })
}

/// Adds symbol and decimals to the simulated token changes the proxy can name: known tokens, and
/// the token the request itself calls (whose decimals the policy read).
fn name_tokens(chain: assegai_sdk::ChainId, simulation: &mut serde_json::Value, detail: &serde_json::Value) {
    let Some(changes) = simulation.get_mut("tokens").and_then(|t| t.as_array_mut()) else { return };
    for change in changes {
        let Some(address) = change["address"].as_str().and_then(|a| a.parse::<alloy_primitives::Address>().ok()) else {
            continue;
        };
        if let Some(t) = tokens::known(chain, address) {
            change["symbol"] = t.symbol.into();
            change["decimals"] = t.decimals.into();
        } else if detail["token"]["address"].as_str().and_then(|a| a.parse().ok()) == Some(address) {
            change["symbol"] = detail["token"]["symbol"].clone();
            change["decimals"] = detail["token"]["decimals"].clone();
        }
    }
}

/// What the agent is told when value + worst-case fee breaks a per-transaction limit.
fn breach_message(breach: limits::Breach, chain: assegai_sdk::ChainId, value: alloy_primitives::U256) -> String {
    use crate::units::format_units;
    let symbol = policy::native_symbol(chain);
    match breach {
        limits::Breach::PerTransaction { cost, limit } => format!(
            "Transaction value {} {symbol} plus its worst-case fee ({} {symbol} in all) exceeds the per-transaction limit of {} {symbol}",
            format_units(value, 18),
            cost.map_or_else(|| "more than any amount".to_owned(), |c| format_units(c, 18)),
            format_units(limit, 18)
        ),
        limits::Breach::Fee { max_fee, cap } => format!(
            "Transaction fee exceeds the agent's `max_fee_per_transaction` ({} {symbol} worst case, limit {} {symbol})",
            format_units(max_fee, 18),
            format_units(cap, 18)
        ),
    }
}

async fn wait(
    state: AppState,
    id: TxId,
    decision: oneshot::Receiver<Decision>,
    timeout: Duration,
    signing: signer::Signing,
    rpc: Uri,
) -> Result<B256> {
    let mut outcome = tokio::time::timeout(timeout, decision).await;
    state.approvals().forget(&id);
    if outcome.is_err() && !mark(&state, &id, TxStatus::Pending, TxStatus::Expired, &timed_out(timeout)).await? {
        // Decided in the same instant the timeout fired: do what was decided. (A person on
        // another host of a shared database cannot take an approval back once the holder missed
        // it; on one host, `approve` does, so there it stays a timeout.)
        let key = id.clone();
        let row = state.db(move |s| s.tx(&key)).await?;
        outcome = Ok(Ok(match row.map(|r| r.status) {
            Some(TxStatus::Approved) if state.store().is_shared() => Decision::Approved,
            Some(TxStatus::Rejected) => Decision::Rejected("rejected by user".into()),
            _ => return Err(Error::ApprovalTimeout),
        }));
    }
    match outcome {
        Ok(Ok(Decision::Rejected(_))) => Err(Error::Rejected),
        Ok(Ok(Decision::Approved)) => match sign_and_send(&state, &signing, rpc).await {
            Ok(sent) => {
                let hash = sent.hash;
                let (key, text) = (id.clone(), hash.to_string());
                state.db(move |s| s.set_tx_hash(&key, &text)).await?;
                tokio::spawn(watch(state.clone(), id, sent));
                Ok(hash)
            }
            Err(e) => {
                let why = e.to_string();
                mark(&state, &id, TxStatus::Approved, TxStatus::Failed, &why).await?;
                Err(match e {
                    Error::TxFailed(_) => e,
                    other => Error::TxFailed(other.to_string()),
                })
            }
        },
        // Expired above.
        Err(_) => Err(Error::ApprovalTimeout),
        Ok(Err(_)) => {
            // A dropped sender means the proxy is stopping (see `Approvals::close`).
            if mark(&state, &id, TxStatus::Pending, TxStatus::Expired, STOPPED).await? {
                Err(Error::ApprovalTimeout)
            } else {
                // Decided in the same instant: report what really happened.
                let key = id.clone();
                let row = state.db(move |s| s.tx(&key)).await?;
                match row.map(|r| r.status) {
                    Some(TxStatus::Rejected) => Err(Error::Rejected),
                    _ => Err(Error::ApprovalTimeout),
                }
            }
        }
    }
}

fn timed_out(timeout: Duration) -> String {
    format!("no decision within {} s", timeout.as_secs())
}

/// On a shared database, a request is decided wherever a person is (`assegai approve` on any
/// host): the decision is a row, and the database announces it (`LISTEN`/`NOTIFY`, see
/// [`crate::store::Store::listen`]). This hands each decision on a request this proxy holds to
/// the request waiting for it; after a reconnection (announcements meanwhile are lost), it looks
/// at every request still waiting here.
pub async fn follow_decisions(state: AppState, mut decided: tokio::sync::mpsc::UnboundedReceiver<Option<String>>) {
    while let Some(announced) = decided.recv().await {
        let ids = match announced {
            Some(id) => id.parse::<TxId>().ok().into_iter().collect(),
            None => state.approvals().waiting_ids(),
        };
        for id in ids {
            if !state.approvals().waiting_ids().contains(&id) {
                continue;
            }
            let key = id.clone();
            let row = match state.db(move |s| s.tx(&key)).await {
                Ok(row) => row,
                Err(e) => {
                    tracing::warn!(tx = %id, error = %e, "cannot read a decision");
                    continue;
                }
            };
            let decision = match row.as_ref().map(|r| r.status) {
                Some(TxStatus::Approved) => Decision::Approved,
                Some(TxStatus::Rejected) => {
                    Decision::Rejected(row.and_then(|r| r.decided_by).unwrap_or_else(|| "a person".into()))
                }
                _ => continue,
            };
            state.approvals().decide(&id, decision);
        }
    }
}

/// How long after the end of its approval timeout (its holder's, stored with it) a pending
/// request of a shared database is taken for abandoned (its proxy died) and expired by any other:
/// its holder, if alive, ended it before. Also what the hosts' clocks may differ by.
const ABANDONED_AFTER: Duration = Duration::from_secs(5);

/// On a shared database, expires what a proxy that died left pending, once it is past its
/// approval timeout, so that nothing waits forever or holds a spending limit. Runs until the
/// proxy stops.
pub async fn expire_abandoned(state: AppState) {
    let every = (state.config().approval_timeout() / 2).clamp(Duration::from_secs(1), Duration::from_secs(30));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let before = now_ms() - ABANDONED_AFTER.as_millis() as i64;
        let why = "no decision within its approval timeout; the proxy holding it stopped".to_owned();
        match state.db(move |s| s.expire_stale_pending(before, &why)).await {
            Ok(expired) if !expired.is_empty() => {
                tracing::warn!(count = expired.len(), "expired requests a stopped proxy left pending");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot look for abandoned requests"),
        }
    }
}

async fn mark(state: &AppState, id: &TxId, from: TxStatus, to: TxStatus, why: &str) -> Result<bool> {
    let (id, why) = (id.clone(), why.to_owned());
    state.db(move |s| s.decide_tx(&id, from, to, Some(&why), "proxy")).await
}

/// Signs exactly what was approved, through the RPC its fees were read from.
async fn sign_and_send(state: &AppState, signing: &signer::Signing, rpc: Uri) -> Result<signer::Sent> {
    let signer = state.wallet().signer_for(signing.chain).await?;
    state.signer().send(state.upstream(), state.store(), rpc, signer, signing).await
}

/// Records `confirmed` or `reverted` once the receipt is in, with the fee paid, which then counts
/// against the limits instead of the worst case.
async fn watch(state: AppState, id: TxId, sent: signer::Sent) {
    let outcome = match sent.outcome().await {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::warn!(tx = %id, error = %e, "no receipt");
            return;
        }
    };
    let (to, why) = if outcome.succeeded {
        (TxStatus::Confirmed, None)
    } else {
        (TxStatus::Reverted, Some("the transaction reverted"))
    };
    let key = id.clone();
    if let Err(e) = state.db(move |s| s.settle_tx(&key, to, outcome.fee_wei, why)).await {
        tracing::warn!(tx = %id, error = %e, "cannot record the receipt");
    }
}

/// Approves a pending request (from the admin API): records it, then wakes the waiting agent's
/// request, which signs and broadcasts.
pub async fn approve(state: &AppState, id: &TxId, by: &str) -> Result<bool> {
    let (key, who) = (id.clone(), by.to_owned());
    let changed = state.db(move |s| s.decide_tx(&key, TxStatus::Pending, TxStatus::Approved, None, &who)).await?;
    // On a shared database the request may wait on another host, which the database wakes.
    if changed && !state.approvals().decide(id, Decision::Approved) && !state.store().is_shared() {
        // Nobody waits (the agent's request already timed out in this instant): undo.
        mark(state, id, TxStatus::Approved, TxStatus::Expired, "nobody was waiting any more").await?;
        return Ok(false);
    }
    Ok(changed)
}

/// Rejects a pending request (from the admin API): records it, then wakes the waiting agent.
pub async fn reject(state: &AppState, id: &TxId, by: &str) -> Result<bool> {
    let (key, who) = (id.clone(), by.to_owned());
    let changed = state
        .db(move |s| s.decide_tx(&key, TxStatus::Pending, TxStatus::Rejected, Some("rejected by user"), &who))
        .await?;
    if changed {
        state.approvals().decide(id, Decision::Rejected(by.to_owned()));
    }
    Ok(changed)
}

/// The kill switch's second half: rejects every pending request of an agent. Returns how many.
pub async fn reject_all_of(state: &AppState, agent_id: &AgentId, by: &str) -> Result<usize> {
    let key = agent_id.clone();
    let pending = state.db(move |s| s.txs(Some(&key), Some(TxStatus::Pending), u32::MAX)).await?;
    let mut n = 0;
    for row in pending {
        if reject(state, &row.id, by).await? {
            n += 1;
        }
    }
    Ok(n)
}
