//! AI budgets that hold: an agent's `ai_budget` (USD per rolling day and 30 days) is checked and
//! *reserved* in one step before a call is forwarded, and settled to what the call cost once its
//! reply has been read (by [`crate::ai::meter`]), so concurrent calls can never all squeeze under
//! the same remaining budget.
//!
//! # Reserve, then settle
//!
//! Before forwarding, [`plan`] works out the call's worst-case cost ([`WorstCase`]):
//!
//! * **input**: the request body's length in bytes, as tokens — every provider's tokenizer spends
//!   at least one byte of text per token, so this bounds the prompt, the tool definitions and
//!   inline (base64) images. The tokens are priced at the dearest input class the model has
//!   (ordinary, cache read, cache write: which one the provider bills is only known afterwards), at
//!   the long-context tier that many tokens select. Content the provider fetches itself (an image
//!   or PDF given by URL) is not in the body and is not bounded here; it is counted when the reply
//!   reports it.
//! * **output**: the request's `max_tokens` / `max_completion_tokens` / `max_output_tokens` (the
//!   tightest, capped at the model's maximum), else the model's `max_output_tokens` from the price
//!   list, else `[ai] default_max_output_tokens` from `config.toml` (default 8192) — which is then
//!   also set in the request, so the provider cannot exceed what was reserved. Times `n` (or a
//!   legacy completion's `best_of`): each answer has its own limit.
//!
//! The [`Ledger`] holds every agent's settled spend per window and what its calls in flight have
//! reserved, under one lock: the check and the reservation are one step. When the reply has been
//! read, the reservation is replaced by the call's actual cost (or the conservative estimate the
//! meter records when the provider never reported usage). A call that fails before any reply (502,
//! 504) or gets an error reply releases its reservation and costs nothing. Reservations live in the
//! proxy's memory only: a restarted proxy starts with none, so none is ever counted forever. The
//! ledger's settled spend is loaded from the database at start and kept in step with every usage
//! row the proxy writes.
//!
//! # When the worst case does not fit: the output limit is lowered
//!
//! A call whose worst case does not fit the remaining budget is not refused outright: the proxy
//! lowers the request's output limit to what the budget still affords, forwards it, and says so in
//! the response header `X-Assegai-Output-Limit: N`. An agent with a small budget can then still
//! make calls without setting `max_tokens` itself, and whatever the replies say, the recorded total
//! never exceeds the budget. Only when the budget cannot afford the input plus
//! [`MIN_OUTPUT_TOKENS`] output tokens is the call refused, with 403 `AI budget exceeded (…)` naming
//! the window, what is spent and reserved, and what the call needs at least. The same header reports
//! the limit set from `default_max_output_tokens` for a model whose maximum is unknown. (Lowering an
//! Anthropic `max_tokens` below the request's `thinking.budget_tokens` makes the provider refuse it
//! with a 400, which costs nothing.)
//!
//! A call to a model the price list does not know cannot be held to a budget, so with a budget set
//! it is refused (403, `AI budget exceeded`), never waved through; so is a priced endpoint whose
//! body names no model. Free endpoints (`GET`s such as the model lists, OpenAI's moderations,
//! Anthropic's `count_tokens`) reserve nothing.
//!
//! # Windows
//!
//! Settled spend is kept in buckets of a minute (the daily window) and of an hour (the 30-day
//! window). A bucket counts while any part of it is inside the window, so a cost leaves a window up
//! to a minute (an hour) after it is 24 hours (30 days) old, never before: the proxy may refuse a
//! little early, never late. `assegai agents show` and `assegai usage`, reading the database, use
//! the exact times.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
};

use alloy_primitives::U256;
use axum::http::Method;
use bytes::Bytes;

use crate::{
    Error, Result,
    ai::{
        pricing::Pricing,
        usage::{self, Prepared},
    },
    ids::AgentId,
    manifest::{AiBudget, Provider},
    units::format_usd,
};

/// The fewest output tokens a call is lowered to; below this it is refused instead. (OpenAI's
/// Responses API refuses a `max_output_tokens` below 16.)
pub const MIN_OUTPUT_TOKENS: u64 = 16;

/// The response header that reports an output limit the proxy set.
pub const OUTPUT_LIMIT_HEADER: &str = "x-assegai-output-limit";

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
const ATTO_PER_NANO: u128 = 1_000_000_000;

/// A budget window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Any rolling 24 hours (`daily_usd`).
    Daily,
    /// Any rolling 30 days (`monthly_usd`).
    Monthly,
}

impl Window {
    /// Both, shortest first.
    pub const ALL: [Window; 2] = [Window::Daily, Window::Monthly];

    /// `daily` or `monthly`, as the manifest names them.
    pub fn name(self) -> &'static str {
        match self {
            Window::Daily => "daily",
            Window::Monthly => "monthly",
        }
    }

    /// The window's length.
    pub fn len_ms(self) -> i64 {
        match self {
            Window::Daily => DAY_MS,
            Window::Monthly => 30 * DAY_MS,
        }
    }

    /// The budget's limit for this window, if it sets one.
    pub fn limit(self, budget: &AiBudget) -> Option<&crate::manifest::UsdAmount> {
        match self {
            Window::Daily => budget.daily_usd.as_ref(),
            Window::Monthly => budget.monthly_usd.as_ref(),
        }
    }

    fn bucket_ms(self) -> i64 {
        match self {
            Window::Daily => MINUTE_MS,
            Window::Monthly => HOUR_MS,
        }
    }
}

/// The most a call can cost, in parts: what its input costs at most, and what each output token
/// costs (for all its answers together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorstCase {
    /// Input tokens at the dearest input price, atto-USD.
    pub input_atto: u128,
    /// One more output token (in each answer), atto-USD.
    pub output_atto_per_token: u128,
    /// The output limit the request asks for (or implies).
    pub output_tokens: u64,
}

impl WorstCase {
    /// The call's worst case with `output_tokens` of output, in atto-USD (saturating).
    pub fn atto_with(&self, output_tokens: u64) -> u128 {
        self.input_atto.saturating_add(self.output_atto_per_token.saturating_mul(u128::from(output_tokens)))
    }

    /// The whole worst case in nano-USD, rounded up.
    pub fn nano(&self) -> u64 {
        atto_to_nano_up(self.atto_with(self.output_tokens))
    }
}

fn atto_to_nano_up(atto: u128) -> u64 {
    u64::try_from(atto.div_ceil(ATTO_PER_NANO)).unwrap_or(u64::MAX)
}

/// What to do with a call, given what remains of the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The worst case fits: reserve it.
    Fits {
        /// nano-USD to reserve.
        reserve: u64,
    },
    /// It fits with fewer output tokens: lower the request's limit to `output_tokens`.
    Lower {
        /// The new output limit (≥ [`MIN_OUTPUT_TOKENS`]).
        output_tokens: u64,
        /// nano-USD to reserve.
        reserve: u64,
    },
    /// Not even the input and [`MIN_OUTPUT_TOKENS`] fit.
    Refuse {
        /// nano-USD the call needs at the least.
        needs: u64,
    },
}

/// The decision for `worst` when `remaining` nano-USD are left: pure arithmetic, exact in atto-USD.
pub fn decide(remaining: u64, worst: &WorstCase) -> Decision {
    let full = worst.nano();
    if full <= remaining {
        return Decision::Fits { reserve: full };
    }
    let floor = MIN_OUTPUT_TOKENS.min(worst.output_tokens);
    let needs = atto_to_nano_up(worst.atto_with(floor));
    let left = u128::from(remaining) * ATTO_PER_NANO;
    if needs > remaining || worst.output_atto_per_token == 0 {
        return Decision::Refuse { needs };
    }
    let affordable = (left - worst.input_atto) / worst.output_atto_per_token;
    let output_tokens = u64::try_from(affordable).unwrap_or(u64::MAX).min(worst.output_tokens);
    if output_tokens < floor {
        return Decision::Refuse { needs };
    }
    Decision::Lower { output_tokens, reserve: atto_to_nano_up(worst.atto_with(output_tokens)) }
}

/// Settled spend inside one rolling window, in time buckets, with a running total.
#[derive(Debug)]
struct Buckets {
    window: Window,
    /// (bucket index, nano-USD), oldest first.
    buckets: VecDeque<(i64, u64)>,
    total: u64,
}

impl Buckets {
    fn new(window: Window) -> Self {
        Buckets { window, buckets: VecDeque::new(), total: 0 }
    }

    fn add(&mut self, at_ms: i64, nano: u64) {
        if nano == 0 {
            return;
        }
        let bucket = at_ms.div_euclid(self.window.bucket_ms());
        match self.buckets.back_mut() {
            // A cost stamped a little before the newest bucket (settled on another thread) joins
            // it: it then leaves the window a little later, never earlier.
            Some((last, sum)) if *last >= bucket => *sum = sum.saturating_add(nano),
            _ => self.buckets.push_back((bucket, nano)),
        }
        self.total = self.total.saturating_add(nano);
    }

    /// The spend still inside the window at `now_ms`: buckets wholly older than it are dropped.
    fn total_at(&mut self, now_ms: i64) -> u64 {
        let cutoff = now_ms - self.window.len_ms();
        let bucket_ms = self.window.bucket_ms();
        while let Some(&(bucket, nano)) = self.buckets.front() {
            if (bucket + 1) * bucket_ms > cutoff {
                break;
            }
            self.buckets.pop_front();
            self.total = self.total.saturating_sub(nano);
        }
        self.total
    }
}

#[derive(Debug)]
struct AgentSpend {
    windows: [Buckets; 2],
    /// nano-USD reserved by calls in flight.
    reserved: u64,
    /// Calls in flight (with a budget or not).
    in_flight: u32,
}

impl AgentSpend {
    fn new() -> Self {
        AgentSpend { windows: Window::ALL.map(Buckets::new), reserved: 0, in_flight: 0 }
    }
}

/// A call in flight, as [`Ledger::in_flight`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InFlight {
    /// The agent.
    pub agent_id: AgentId,
    /// Its calls in flight.
    pub calls: u32,
    /// What they reserve against its budget, nano-USD.
    pub reserved_nano_usd: u64,
}

/// Every agent's settled AI spend and reservations (see the module docs).
#[derive(Debug, Default)]
pub struct Ledger {
    agents: Mutex<HashMap<String, AgentSpend>>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Ledger::default()
    }

    /// Adds settled spend, `(agent id, time in ms, nano-USD)` in ascending time per agent (what
    /// [`crate::store::Store::ai_spend_by_minute`] returns).
    pub fn load(&self, rows: impl IntoIterator<Item = (String, i64, u64)>) {
        let mut agents = self.lock();
        for (agent, at, nano) in rows {
            let spend = agents.entry(agent).or_insert_with(AgentSpend::new);
            for w in &mut spend.windows {
                w.add(at, nano);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, AgentSpend>> {
        // Every update is a few additions that cannot be left half done: a poisoned lock is safe.
        self.agents.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The agent's entry, created if new (without allocating a key when it exists).
fn spend_of<'a>(agents: &'a mut HashMap<String, AgentSpend>, agent_id: &str) -> &'a mut AgentSpend {
    if !agents.contains_key(agent_id) {
        agents.insert(agent_id.to_owned(), AgentSpend::new());
    }
    agents.get_mut(agent_id).expect("just inserted")
}

impl Ledger {
    /// Opens a call with no reservation (an agent without a budget, a free endpoint); its cost is
    /// still added when it settles.
    pub fn open(self: &Arc<Self>, agent_id: &str) -> Charge {
        spend_of(&mut self.lock(), agent_id).in_flight += 1;
        Charge { ledger: Arc::clone(self), agent_id: agent_id.to_owned(), reserved: 0, open: true }
    }

    /// Checks a call against `budget` at `now_ms` and, in the same step, reserves what it may cost.
    /// Returns the charge to settle and the output limit to set when the call had to be lowered.
    pub fn reserve(
        self: &Arc<Self>,
        agent_id: &str,
        budget: &AiBudget,
        worst: &WorstCase,
        now_ms: i64,
    ) -> Result<(Charge, Option<u64>), Refusal> {
        let mut agents = self.lock();
        let spend = spend_of(&mut agents, agent_id);
        // The window with the least room decides.
        let mut tightest: Option<(Window, u64, u64, u64)> = None; // (window, limit, spent, remaining)
        for (window, buckets) in Window::ALL.into_iter().zip(spend.windows.iter_mut()) {
            let spent = buckets.total_at(now_ms);
            let Some(limit) = window.limit(budget) else { continue };
            let limit = u64::try_from(limit.base_units()).unwrap_or(u64::MAX);
            let remaining = limit.saturating_sub(spent).saturating_sub(spend.reserved);
            if tightest.is_none_or(|(_, _, _, r)| remaining < r) {
                tightest = Some((window, limit, spent, remaining));
            }
        }
        let Some((window, limit, spent, remaining)) = tightest else {
            spend.in_flight += 1;
            return Ok((
                Charge { ledger: Arc::clone(self), agent_id: agent_id.to_owned(), reserved: 0, open: true },
                None,
            ));
        };
        let (reserve, lowered) = match decide(remaining, worst) {
            Decision::Fits { reserve } => (reserve, None),
            Decision::Lower { output_tokens, reserve } => (reserve, Some(output_tokens)),
            Decision::Refuse { needs } => {
                return Err(Refusal { window, limit, spent, reserved: spend.reserved, needs });
            }
        };
        spend.reserved = spend.reserved.saturating_add(reserve);
        spend.in_flight += 1;
        Ok((Charge { ledger: Arc::clone(self), agent_id: agent_id.to_owned(), reserved: reserve, open: true }, lowered))
    }

    /// Calls in flight per agent (agents with none are left out), by agent id.
    pub fn in_flight(&self) -> Vec<InFlight> {
        let agents = self.lock();
        let mut out: Vec<InFlight> = agents
            .iter()
            .filter(|(_, s)| s.in_flight > 0)
            .map(|(id, s)| InFlight {
                agent_id: AgentId::from(id.as_str()),
                calls: s.in_flight,
                reserved_nano_usd: s.reserved,
            })
            .collect();
        out.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        out
    }

    /// An agent's settled spend in `window` at `now_ms`, as the ledger counts it.
    pub fn spent(&self, agent_id: &str, window: Window, now_ms: i64) -> u64 {
        let mut agents = self.lock();
        agents.get_mut(agent_id).map_or(0, |s| {
            let i = Window::ALL.iter().position(|w| *w == window).unwrap_or(0);
            s.windows[i].total_at(now_ms)
        })
    }

    fn close(&self, agent_id: &str, reserved: u64, cost: Option<(u64, i64)>) {
        let mut agents = self.lock();
        let spend = spend_of(&mut agents, agent_id);
        spend.reserved = spend.reserved.saturating_sub(reserved);
        spend.in_flight = spend.in_flight.saturating_sub(1);
        if let Some((nano, at)) = cost {
            for w in &mut spend.windows {
                w.add(at, nano);
            }
        }
    }
}

/// A call's hold on its agent's budget: settled with [`Charge::settle`], or released (costing
/// nothing) when dropped unsettled — a call that never got a reply.
#[derive(Debug)]
pub struct Charge {
    ledger: Arc<Ledger>,
    agent_id: String,
    reserved: u64,
    open: bool,
}

impl Charge {
    /// What this call reserved, nano-USD (0 without a budget).
    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Replaces the reservation with the call's cost, spent at `at_ms`.
    pub fn settle(mut self, cost_nano: u64, at_ms: i64) {
        self.open = false;
        self.ledger.close(&self.agent_id, self.reserved, Some((cost_nano, at_ms)));
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.open {
            self.ledger.close(&self.agent_id, self.reserved, None);
        }
    }
}

/// Why a call does not fit its budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The window with the least room.
    pub window: Window,
    /// Its limit, nano-USD.
    pub limit: u64,
    /// Settled spend in it, nano-USD.
    pub spent: u64,
    /// Reserved by calls in flight, nano-USD.
    pub reserved: u64,
    /// The least this call needs, nano-USD.
    pub needs: u64,
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Error {
        let usd = |nano: u64| format_usd(U256::from(nano), 9);
        let mut text = format!("{} limit {} USD: {} USD spent", r.window.name(), usd(r.limit), usd(r.spent));
        if r.reserved > 0 {
            text.push_str(&format!(", {} USD reserved by calls in flight", usd(r.reserved)));
        }
        if r.spent.saturating_add(r.reserved) < r.limit {
            text.push_str(&format!("; this call needs at least {} USD", usd(r.needs)));
        }
        Error::BudgetExceeded(text)
    }
}

/// What [`plan`] decided for one call.
#[derive(Debug)]
pub struct Plan {
    /// The call's hold on the budget (a zero reservation without one).
    pub charge: Charge,
    /// The body to forward instead of the prepared one, when the output limit was set.
    pub body: Option<Bytes>,
    /// The output limit the proxy set, for [`OUTPUT_LIMIT_HEADER`].
    pub output_limit: Option<u64>,
    /// Whether the endpoint is billed by the token (a reply without usage is then estimated).
    pub billable: bool,
    /// The body's size as input tokens (the conservative input estimate).
    pub input_tokens_bound: u64,
    /// Whether the agent has a budget (an unpriced reply is then charged at the request's model).
    pub budgeted: bool,
}

/// Settings of [`plan`] from `config.toml`.
#[derive(Debug, Clone, Copy)]
pub struct PlanSettings {
    /// Output tokens assumed (and set) when neither the request nor the price list gives a limit.
    pub default_max_output_tokens: u64,
}

/// Whether a request is billed by the token: every `POST` except the free endpoints.
pub fn is_billable(provider: Provider, method: &Method, path: &str) -> bool {
    let free = match provider {
        Provider::Openai => path == "/v1/moderations",
        Provider::Anthropic => path == "/v1/messages/count_tokens",
        Provider::Deepseek => false,
    };
    method == Method::POST && !free
}

/// The request field that sets the output limit of `provider`'s endpoint `path`.
fn limit_field(provider: Provider, path: &str) -> &'static str {
    match (provider, path) {
        (Provider::Openai, "/v1/chat/completions") => "max_completion_tokens",
        (Provider::Openai, "/v1/responses") => "max_output_tokens",
        _ => "max_tokens",
    }
}

/// The worst case of a call (see the module docs) with the prices of `price`.
pub fn worst_case(
    price: &crate::ai::pricing::ModelPrice,
    input_tokens: u64,
    output_tokens: u64,
    choices: u64,
) -> WorstCase {
    let rates = price.rates_for(input_tokens);
    let input_rate = rates.input.max(rates.cache_read).max(rates.cache_write);
    WorstCase {
        input_atto: u128::from(input_tokens).saturating_mul(input_rate),
        output_atto_per_token: rates.output.saturating_mul(u128::from(choices.max(1))),
        output_tokens,
    }
}

/// Checks a call against the agent's budget and reserves its worst case (lowering its output
/// limit where that makes it fit), or refuses it. `path` is the provider path (`/v1/…`).
#[allow(clippy::too_many_arguments)]
pub fn plan(
    ledger: &Arc<Ledger>,
    pricing: &Pricing,
    settings: PlanSettings,
    agent_id: &str,
    budget: Option<&AiBudget>,
    provider: Provider,
    method: &Method,
    path: &str,
    prepared: &Prepared,
    now_ms: i64,
) -> Result<Plan> {
    let billable = is_billable(provider, method, path);
    let input_tokens_bound = prepared.body.len() as u64;
    let budget = budget.filter(|b| b.daily_usd.is_some() || b.monthly_usd.is_some());
    let budgeted = budget.is_some();
    let Some(budget) = budget.filter(|_| billable) else {
        let charge = ledger.open(agent_id);
        return Ok(Plan { charge, body: None, output_limit: None, billable, input_tokens_bound, budgeted });
    };
    let first_limit = || {
        Window::ALL
            .into_iter()
            .find_map(|w| w.limit(budget).map(|l| format!("{} limit of {} USD", w.name(), l.as_str())))
            .unwrap_or_default()
    };
    let Some(model) = prepared.model.as_deref() else {
        return Err(Error::BudgetExceeded(format!(
            "the request names no `model`, so its cost cannot be held to the {}",
            first_limit()
        )));
    };
    let Some(price) = pricing.price(provider, model) else {
        return Err(Error::BudgetExceeded(format!(
            "`{}` has no known price, so no call to it can be held to the {}; use a priced model, or install \
             newer prices with `assegai pricing update --file …`",
            crate::sanitize::neutralize(model),
            first_limit()
        )));
    };
    let embeddings = provider == Provider::Openai && path == "/v1/embeddings";
    let (output_tokens, set_limit) = if embeddings {
        (0, false)
    } else {
        match (prepared.limits.tightest(), price.max_output_tokens) {
            (Some(asked), Some(max)) => (asked.min(max), false),
            (Some(asked), None) => (asked, false),
            (None, Some(max)) => (max, false),
            (None, None) => (settings.default_max_output_tokens, true),
        }
    };
    let worst = worst_case(price, input_tokens_bound, output_tokens, prepared.choices);
    let (charge, lowered) = ledger.reserve(agent_id, budget, &worst, now_ms)?;
    let output_limit = lowered.or(set_limit.then_some(output_tokens));
    let mut body = None;
    if let Some(limit) = output_limit {
        // (Unreachable for a body that named a model, which is a JSON object; the reservation is
        // released on the way out all the same.)
        let Some(rewritten) = usage::with_output_limit(&prepared.body, limit_field(provider, path), limit) else {
            return Err(Error::BudgetExceeded(format!(
                "the request body is not a JSON object, so its output limit cannot be set to fit the {}",
                first_limit()
            )));
        };
        body = Some(rewritten);
    }
    Ok(Plan { charge, body, output_limit, billable, input_tokens_bound, budgeted })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::UsdAmount;

    fn budget(daily: Option<&str>, monthly: Option<&str>) -> AiBudget {
        AiBudget {
            daily_usd: daily.map(|d| UsdAmount::parse(d).unwrap()),
            monthly_usd: monthly.map(|m| UsdAmount::parse(m).unwrap()),
        }
    }

    /// 1000 nano-USD of input, 10 nano-USD per output token, 100 tokens: 2000 nano-USD.
    fn worst() -> WorstCase {
        WorstCase { input_atto: 1000 * ATTO_PER_NANO, output_atto_per_token: 10 * ATTO_PER_NANO, output_tokens: 100 }
    }

    #[test]
    fn decisions_are_exact() {
        let w = worst();
        assert_eq!(w.nano(), 2000);
        assert_eq!(decide(2000, &w), Decision::Fits { reserve: 2000 });
        assert_eq!(decide(u64::MAX, &w), Decision::Fits { reserve: 2000 });
        // One nano short: 99 tokens fit, exactly 1990.
        assert_eq!(decide(1999, &w), Decision::Lower { output_tokens: 99, reserve: 1990 });
        // The floor: input + 16 tokens = 1160.
        assert_eq!(decide(1160, &w), Decision::Lower { output_tokens: 16, reserve: 1160 });
        assert_eq!(decide(1159, &w), Decision::Refuse { needs: 1160 });
        assert_eq!(decide(0, &w), Decision::Refuse { needs: 1160 });
        // A call asking for fewer than the floor is never lowered, only fits or not.
        let small = WorstCase { output_tokens: 5, ..w };
        assert_eq!(decide(1050, &small), Decision::Fits { reserve: 1050 });
        assert_eq!(decide(1049, &small), Decision::Refuse { needs: 1050 });
        // Free output: fits or is refused on its input.
        let free_out = WorstCase { output_atto_per_token: 0, ..w };
        assert_eq!(decide(1000, &free_out), Decision::Fits { reserve: 1000 });
        assert_eq!(decide(999, &free_out), Decision::Refuse { needs: 1000 });
    }

    #[test]
    fn fractions_of_a_nano_round_up_when_reserving() {
        // 0.4 nano of input + 0.3 nano per token × 10 = 3.4 → reserve 4.
        let w = WorstCase { input_atto: 400_000_000, output_atto_per_token: 300_000_000, output_tokens: 10 };
        assert_eq!(w.nano(), 4);
        // 3 nano left: (3e9 − 0.4e9) / 0.3e9 = 8.67 → 8 tokens (2.8 nano → 3).
        assert_eq!(decide(3, &WorstCase { output_tokens: 100, ..w }), Decision::Refuse { needs: 6 });
        let w16 = WorstCase { output_tokens: 100, output_atto_per_token: 100_000_000, ..w };
        // 16 tokens: 0.4 + 1.6 = 2.0 nano; 3 nano left: (3 − 0.4) / 0.1 = 26 tokens = 3.0 nano.
        assert_eq!(decide(3, &w16), Decision::Lower { output_tokens: 26, reserve: 3 });
    }

    #[test]
    fn worst_case_uses_the_dearest_input_class_and_every_answer() {
        let pricing = Pricing::embedded();
        // claude-sonnet-4-5: input 3e-06, cache write 3.75e-06 (the dearest), output 1.5e-05.
        let p = pricing.price(Provider::Anthropic, "claude-sonnet-4-5").unwrap();
        let w = worst_case(p, 1000, 256, 1);
        assert_eq!(w.input_atto, 1000 * 3_750_000_000_000);
        assert_eq!(w.output_atto_per_token, 15_000_000_000_000);
        // 0.00375 + 256 × 0.000015 = 0.00759 USD.
        assert_eq!(w.nano(), 7_590_000);
        // gpt-4o, n = 3: three answers of 100 tokens at 1e-05.
        let p = pricing.price(Provider::Openai, "gpt-4o").unwrap();
        let w = worst_case(p, 10, 100, 3);
        assert_eq!(w.nano(), 10 * 2_500 + 3 * 100 * 10_000);
        assert_eq!(p.max_output_tokens, Some(16_384));
    }

    #[test]
    fn reserve_then_settle_is_exact() {
        let ledger = Arc::new(Ledger::new());
        let b = budget(Some("0.000005"), None); // 5000 nano-USD
        let now = 1_700_000_000_000;
        let (c1, lowered) = ledger.reserve("ag", &b, &worst(), now).unwrap();
        assert_eq!((c1.reserved(), lowered), (2000, None));
        let (c2, _) = ledger.reserve("ag", &b, &worst(), now).unwrap();
        // 1000 left: not even the input fits beside two reservations.
        let r = ledger.reserve("ag", &b, &worst(), now).unwrap_err();
        assert_eq!(r, Refusal { window: Window::Daily, limit: 5000, spent: 0, reserved: 4000, needs: 1160 });
        assert_eq!(ledger.in_flight(), [InFlight { agent_id: "ag".into(), calls: 2, reserved_nano_usd: 4000 }]);
        // The first costs 1500 in the end; the second fails and costs nothing.
        c1.settle(1500, now);
        drop(c2);
        assert!(ledger.in_flight().is_empty());
        assert_eq!(ledger.spent("ag", Window::Daily, now), 1500);
        // 3500 left: a full call fits, then 1500: lowered to 50 tokens (1000 + 500).
        let (c3, lowered) = ledger.reserve("ag", &b, &worst(), now).unwrap();
        assert_eq!((c3.reserved(), lowered), (2000, None));
        let (c4, lowered) = ledger.reserve("ag", &b, &worst(), now).unwrap();
        assert_eq!((c4.reserved(), lowered), (1500, Some(50)));
        c3.settle(2000, now);
        c4.settle(1500, now);
        assert_eq!(ledger.spent("ag", Window::Daily, now), 5000);
        let r = ledger.reserve("ag", &b, &worst(), now).unwrap_err();
        assert_eq!((r.spent, r.reserved), (5000, 0));
        let text = Error::from(r).to_string();
        assert_eq!(text, "AI budget exceeded (daily limit 0.000005 USD: 0.000005 USD spent)");
        // Other agents are not affected.
        assert!(ledger.reserve("other", &b, &worst(), now).is_ok());
    }

    #[test]
    fn the_tightest_window_decides_and_spend_leaves_each_window_in_time() {
        let ledger = Arc::new(Ledger::new());
        let day0 = 1_700_000_020_000; // 40 s into a minute
        ledger.load([("ag".to_owned(), day0, 3000)]);
        let b = budget(Some("0.000004"), Some("0.000006"));
        // Daily: 1000 left; monthly: 3000 left. Daily decides: refused (needs 1160).
        let r = ledger.reserve("ag", &b, &worst(), day0 + 1000).unwrap_err();
        assert_eq!((r.window, r.limit, r.spent), (Window::Daily, 4000, 3000));
        let text = Error::from(r).to_string();
        assert!(
            text.contains("daily limit 0.000004 USD: 0.000003 USD spent; this call needs at least 0.00000116 USD"),
            "{text}"
        );
        // 24 h later the daily bucket (its whole minute) has left; the monthly one has not.
        let next_day = day0 + DAY_MS;
        assert_eq!(ledger.spent("ag", Window::Daily, next_day - 40_000), 3000, "within the window");
        assert_eq!(ledger.spent("ag", Window::Daily, next_day + 20_000), 0, "the minute is over");
        let (c, lowered) = ledger.reserve("ag", &b, &worst(), next_day + 20_000).unwrap();
        assert_eq!((c.reserved(), lowered), (2000, None));
        drop(c);
        // Monthly now has 3000 left and decides for a call of 4000.
        let big = WorstCase { output_tokens: 300, ..worst() };
        let (c, lowered) = ledger.reserve("ag", &b, &big, next_day + 20_000).unwrap();
        assert_eq!((c.reserved(), lowered), (3000, Some(200)));
        drop(c);
        assert_eq!(ledger.spent("ag", Window::Monthly, day0 + 30 * DAY_MS + HOUR_MS), 0);
    }

    #[test]
    fn a_cost_never_leaves_a_window_early() {
        for offset in [0, 1, 59_999, 60_000, 3_599_999] {
            let at = 1_700_000_000_000 + offset;
            for window in Window::ALL {
                let mut b = Buckets::new(window);
                b.add(at, 7);
                assert_eq!(b.total_at(at + window.len_ms()), 7, "{window:?} {offset}: exactly its age");
                assert_eq!(b.total_at(at + window.len_ms() + window.bucket_ms()), 0, "{window:?} {offset}");
            }
        }
        // Out-of-order settles join the newest bucket.
        let mut b = Buckets::new(Window::Daily);
        b.add(120_000, 1);
        b.add(60_000, 2);
        assert_eq!(b.buckets, [(2, 3)]);
    }

    #[test]
    fn no_budget_still_counts_spend_and_calls() {
        let ledger = Arc::new(Ledger::new());
        let b = budget(None, None);
        let (c, lowered) = ledger.reserve("ag", &b, &worst(), 0).unwrap();
        assert_eq!((c.reserved(), lowered), (0, None));
        let open = ledger.open("ag");
        assert_eq!(ledger.in_flight()[0].calls, 2);
        c.settle(10, 0);
        open.settle(5, 0);
        assert_eq!(ledger.spent("ag", Window::Daily, 0), 15);
    }

    #[test]
    fn billable_endpoints() {
        assert!(is_billable(Provider::Openai, &Method::POST, "/v1/chat/completions"));
        assert!(is_billable(Provider::Openai, &Method::POST, "/v1/embeddings"));
        assert!(!is_billable(Provider::Openai, &Method::POST, "/v1/moderations"));
        assert!(!is_billable(Provider::Openai, &Method::GET, "/v1/models"));
        assert!(!is_billable(Provider::Anthropic, &Method::POST, "/v1/messages/count_tokens"));
        assert!(is_billable(Provider::Anthropic, &Method::POST, "/v1/messages"));
    }

    fn prepared(provider: Provider, body: &str) -> Prepared {
        usage::prepare_request(provider, body.as_bytes())
    }

    fn run_plan(budget_usd: &str, provider: Provider, path: &str, body: &str) -> Result<Plan> {
        let ledger = Arc::new(Ledger::new());
        let b = budget(Some(budget_usd), None);
        plan(
            &ledger,
            Pricing::embedded(),
            PlanSettings { default_max_output_tokens: 8192 },
            "ag",
            Some(&b),
            provider,
            &Method::POST,
            path,
            &prepared(provider, body),
            0,
        )
    }

    #[test]
    fn plans_reserve_lower_or_refuse() {
        let chat = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}]}"#;
        // gpt-4o's maximum (16384 × 1e-05 = 0.16384 USD) fits 1 USD: forwarded as written.
        let p = run_plan("1", Provider::Openai, "/v1/chat/completions", chat).unwrap();
        let input = chat.len() as u64 * 2_500; // nano-USD at 2.5e-06
        assert_eq!(p.charge.reserved(), input + 163_840_000);
        assert_eq!((p.body.clone(), p.output_limit), (None, None));
        // 0.01 USD: lowered to what it affords, as `max_completion_tokens`.
        let p = run_plan("0.01", Provider::Openai, "/v1/chat/completions", chat).unwrap();
        let tokens = (10_000_000 - input) / 10_000;
        assert_eq!(p.output_limit, Some(tokens));
        let sent: serde_json::Value = serde_json::from_slice(p.body.as_ref().unwrap()).unwrap();
        assert_eq!(sent["max_completion_tokens"], tokens);
        assert_eq!(sent["messages"][0]["content"], "Hi");
        assert_eq!(p.charge.reserved(), input + tokens * 10_000);
        // An existing limit is replaced where it stands.
        let limited = r#"{"model":"gpt-4o","max_tokens":4000,"messages":[]}"#;
        let p = run_plan("0.01", Provider::Openai, "/v1/chat/completions", limited).unwrap();
        let sent = String::from_utf8(p.body.unwrap().to_vec()).unwrap();
        assert_eq!(sent, format!(r#"{{"model":"gpt-4o","max_tokens":{},"messages":[]}}"#, p.output_limit.unwrap()));
        // Nothing fits: refused.
        let e = run_plan("0.0001", Provider::Openai, "/v1/chat/completions", chat).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("AI budget exceeded (daily limit 0.0001 USD: 0.00 USD spent; this call needs at least"),
            "{e}"
        );
        // Unpriced, or no model: refused, whatever the budget.
        let e =
            run_plan("1000", Provider::Openai, "/v1/chat/completions", r#"{"model":"gpt-imaginary","messages":[]}"#)
                .unwrap_err();
        assert!(e.to_string().contains("`gpt-imaginary` has no known price"), "{e}");
        let e = run_plan("1000", Provider::Openai, "/v1/chat/completions", r#"{"messages":[]}"#).unwrap_err();
        assert!(e.to_string().contains("names no `model`"), "{e}");
        // A model without a known maximum gets the default cap, set in the request.
        let e = r#"{"model":"gpt-5.5-cyber","input":"Hi"}"#;
        assert_eq!(Pricing::embedded().price(Provider::Openai, "gpt-5.5-cyber").unwrap().max_output_tokens, None);
        let p = run_plan("1000", Provider::Openai, "/v1/responses", e).unwrap();
        assert_eq!(p.output_limit, Some(8192));
        let sent: serde_json::Value = serde_json::from_slice(p.body.as_ref().unwrap()).unwrap();
        assert_eq!(sent["max_output_tokens"], 8192);
        // Anthropic's `max_tokens` is lowered in place.
        let m = r#"{"model":"claude-sonnet-4-5","max_tokens":64000,"messages":[]}"#;
        let p = run_plan("0.05", Provider::Anthropic, "/v1/messages", m).unwrap();
        let sent: serde_json::Value = serde_json::from_slice(p.body.as_ref().unwrap()).unwrap();
        assert_eq!(sent["max_tokens"], p.output_limit.unwrap());
        assert!(p.charge.reserved() <= 50_000_000);
    }

    #[test]
    fn free_endpoints_and_no_budget_reserve_nothing() {
        let ledger = Arc::new(Ledger::new());
        let b = budget(Some("0.000001"), None);
        let settings = PlanSettings { default_max_output_tokens: 8192 };
        let body = prepared(Provider::Openai, r#"{"model":"gpt-imaginary","input":"x"}"#);
        let p = plan(
            &ledger,
            Pricing::embedded(),
            settings,
            "ag",
            Some(&b),
            Provider::Openai,
            &Method::POST,
            "/v1/moderations",
            &body,
            0,
        )
        .unwrap();
        assert_eq!((p.charge.reserved(), p.billable, p.budgeted), (0, false, true));
        let p = plan(
            &ledger,
            Pricing::embedded(),
            settings,
            "ag",
            None,
            Provider::Openai,
            &Method::POST,
            "/v1/chat/completions",
            &body,
            0,
        )
        .unwrap();
        assert_eq!((p.charge.reserved(), p.billable, p.budgeted), (0, true, false));
        assert_eq!(ledger.in_flight()[0].calls, 2);
    }
}
