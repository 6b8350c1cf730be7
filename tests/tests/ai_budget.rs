//! AI spend that holds (SPEC §3.2): budgets exact under concurrency, replies metered to their end
//! when the agent goes away. The real `assegai` binary in front of the fake vendor
//! (`assegai_e2e::fake_ai`, told per test to hold replies, delay or withhold usage, or fail), a
//! real SQLite file, spend read back with `assegai usage --json` and `assegai agents show --json`.
//!
//! Budgets here are set in multiples of one call's worst case, computed independently of the
//! proxy from the shipped price list: the request body's bytes as input tokens at the dearest input
//! price, plus the request's output limit at the output price.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use assegai_e2e::{
    Proxy, TestEnv,
    fake_ai::{self, Behaviour, Counts, FakeAi, Prices},
    wait_until,
};
use futures_util::StreamExt;
use reqwest::{StatusCode, header::HeaderMap};
use serde_json::{Value, json};

const OPENAI_KEY: &str = "sk-proj-BudgetTestKey0123456789abcdefghij";
const ANTHROPIC_KEY: &str = "sk-ant-api03-BudgetTestKey0123456789abcdef";
const CHAT: &str = "/api/openai/v1/chat/completions";
const MESSAGES: &str = "/api/anthropic/v1/messages";
const MODEL: &str = "gpt-4o-mini";
const CLAUDE: &str = "claude-sonnet-4-5";
const LIMIT_HEADER: &str = "x-assegai-output-limit";

/// One proxy in front of one fake vendor.
struct Gateway {
    proxy: Option<Proxy>,
    fake: FakeAi,
    env: TestEnv,
}

impl Gateway {
    /// `top`: top-level `config.toml` lines; `openai_base`: OpenAI's base URL (else the fake);
    /// `ai`: lines of the `[ai]` table.
    fn start(top: &str, openai_base: Option<&str>, ai: &str) -> Self {
        let fake = FakeAi::start();
        let env = TestEnv::new();
        let url = fake.url();
        let openai = openai_base.unwrap_or(&url);
        env.write_config(&format!(
            "{top}\n[keys]\nbackend = \"file\"\n\n[providers.openai]\nbase_url = \"{openai}\"\n\n\
             [providers.anthropic]\nbase_url = \"{url}\"\n\n[ai]\n{ai}\n"
        ));
        fake_ai::set_key(&env, "openai", OPENAI_KEY);
        fake_ai::set_key(&env, "anthropic", ANTHROPIC_KEY);
        let proxy = env.start_proxy();
        Gateway { proxy: Some(proxy), fake, env }
    }

    fn proxy(&self) -> &Proxy {
        self.proxy.as_ref().expect("the proxy runs")
    }

    /// Registers an agent allowed OpenAI and Anthropic, with a daily budget of `daily_nano`.
    fn agent(&self, name: &str, daily_nano: u128) -> Agent {
        let manifest = json!({
            "name": name,
            "permissions": {"chains": ["eip155:31337"], "apis": ["openai", "anthropic"]},
            "ai_budget": {"daily_usd": fake_ai::usd(daily_nano)},
        });
        let (id, token) = self.env.add_agent(name, Some(&manifest));
        Agent { http: reqwest::Client::new(), base: self.proxy().url.clone(), id, token }
    }

    fn usage(&self) -> Value {
        fake_ai::usage_json(&self.env, &[])
    }

    /// `usage --json` once it counts `calls` settled calls and none in flight.
    fn settled(&self, calls: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let u = self.usage();
            if u["total"]["calls"] == calls && u["total"]["in_flight_calls"] == 0 {
                return u;
            }
            assert!(Instant::now() < deadline, "never {calls} settled calls with none in flight: {u:#}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn shown(&self, agent: &str) -> Value {
        serde_json::from_str(&self.env.run_ok(&["agents", "show", agent, "--json"])).expect("agents show --json")
    }

    /// Requests the fake has received.
    fn received(&self) -> usize {
        self.fake.requests().len()
    }
}

/// An agent calling the proxy.
#[derive(Clone)]
struct Agent {
    http: reqwest::Client,
    base: String,
    id: String,
    token: String,
}

/// A reply, read whole.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    fn limit(&self) -> Option<u64> {
        self.headers.get(LIMIT_HEADER).map(|v| v.to_str().unwrap().parse().unwrap())
    }

    fn assert_budget_exceeded(&self, part: &str) {
        assert_eq!(self.status, StatusCode::FORBIDDEN, "{self:?}");
        assert_eq!(self.body["code"], "BUDGET_EXCEEDED", "{self:?}");
        let msg = self.body["error"].as_str().unwrap();
        assert!(msg.starts_with("AI budget exceeded (") && msg.contains(part), "{msg}");
    }
}

impl Agent {
    fn request(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .header("X-Assegai-Agent-ID", &self.id)
            .header("X-Assegai-Agent-Token", &self.token)
            .header("content-type", "application/json")
            .body(body.to_string())
    }

    async fn post(&self, path: &str, body: &Value) -> Reply {
        let resp = self.request(path, body).send().await.expect("the proxy answers");
        let (status, headers) = (resp.status(), resp.headers().clone());
        let bytes = resp.bytes().await.expect("a whole reply");
        Reply { status, headers, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
    }

    async fn get(&self, path: &str) -> StatusCode {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("X-Assegai-Agent-ID", &self.id)
            .header("X-Assegai-Agent-Token", &self.token)
            .send()
            .await
            .expect("the proxy answers");
        resp.status()
    }

    /// Streams `body` and reads until `last` (the last content chunk) has arrived, then goes away
    /// (the connection is closed). Returns what was read.
    async fn abandon_stream(&self, path: &str, body: &Value, last: &str) -> String {
        // A client of its own, so no pooled connection outlives the abandoned reply.
        let http = reqwest::Client::new();
        let resp = http
            .post(format!("{}{path}", self.base))
            .header("X-Assegai-Agent-ID", &self.id)
            .header("X-Assegai-Agent-Token", &self.token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("the proxy answers");
        assert_eq!(resp.status(), StatusCode::OK);
        let mut stream = resp.bytes_stream();
        let mut read = Vec::new();
        while !String::from_utf8_lossy(&read).contains(last) {
            let chunk = stream.next().await.expect("the stream goes on until its last content").unwrap();
            read.extend_from_slice(&chunk);
        }
        drop(stream);
        drop(http);
        String::from_utf8(read).unwrap()
    }
}

fn chat(max_completion_tokens: u64) -> Value {
    json!({"model": MODEL, "max_completion_tokens": max_completion_tokens,
           "messages": [{"role": "user", "content": "Say hello."}]})
}

fn message(max_tokens: u64) -> Value {
    json!({"model": CLAUDE, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "Say hello."}]})
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn prices(model: &str) -> Prices {
    fake_ai::model_prices(model).unwrap_or_else(|| panic!("{model} is priced in the shipped list"))
}

/// The dearest input price (atto-USD per token).
fn input_rate(p: &Prices) -> u128 {
    p.input.max(p.cache_read.unwrap_or(p.input)).max(p.cache_write.unwrap_or(p.input))
}

/// A call's worst case in nano-USD, rounded up: `body_bytes` input tokens, `output` output tokens.
fn worst_nano(p: &Prices, body_bytes: usize, output: u64) -> u128 {
    (body_bytes as u128 * input_rate(p) + u128::from(output) * p.output).div_ceil(1_000_000_000)
}

/// What the fake reports for a request under `usage_from_request`, priced.
fn reported_nano(p: &Prices, body_bytes: usize, output: u64) -> u128 {
    fake_ai::cost_nano(p, body_bytes as u64, output, 0, 0)
}

/// Nano-USD from a `usage` amount ("0.00123").
fn nano(usd: &Value) -> u128 {
    let text = usd.as_str().unwrap_or_else(|| panic!("an amount, got {usd}"));
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    int.parse::<u128>().unwrap() * 1_000_000_000 + format!("{frac:0<9}").parse::<u128>().unwrap()
}

fn row<'a>(usage: &'a Value, model: &str, estimated: bool) -> &'a Value {
    usage["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == model && r["estimated"] == estimated)
        .unwrap_or_else(|| panic!("no {model} row (estimated: {estimated}) in {usage:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn abandoned_streams_are_metered_with_the_vendors_usage_or_an_estimate() {
    let g = Gateway::start("", None, "");
    let a = g.agent("quitter", 1_000_000_000);
    // The vendor sends its usage a while after the last content chunk; the agent leaves in between.
    g.fake.set_behaviour(Behaviour { usage_delay: Duration::from_millis(800), ..Behaviour::default() });
    let read = a.abandon_stream(CHAT, &with(chat(500), "stream", json!(true)), "\"finish_reason\":\"stop\"").await;
    assert!(!read.contains("\"usage\""), "the agent left before any usage: {read}");
    let read =
        a.abandon_stream(MESSAGES, &with(message(256), "stream", json!(true)), "event: content_block_stop").await;
    assert!(!read.contains("message_delta"), "{read}");

    // Both calls are recorded with the vendor's exact tokens, and cost what those tokens cost.
    let u = g.settled(2);
    let gpt = row(&u, MODEL, false);
    let c = Counts::OPENAI;
    assert_eq!(gpt["calls"], 1, "{u:#}");
    assert_eq!(
        (&gpt["input_tokens"], &gpt["output_tokens"], &gpt["cache_read_tokens"]),
        (&json!(c.input - c.cache_read), &json!(c.output), &json!(c.cache_read)),
        "{u:#}"
    );
    let gpt_cost = fake_ai::openai_call_nano(&prices(MODEL));
    assert_eq!(nano(&gpt["cost_usd"]), gpt_cost);
    let claude = row(&u, CLAUDE, false);
    let c = Counts::ANTHROPIC;
    assert_eq!(
        (
            &claude["input_tokens"],
            &claude["output_tokens"],
            &claude["cache_read_tokens"],
            &claude["cache_write_tokens"]
        ),
        (&json!(c.input), &json!(c.output), &json!(c.cache_read), &json!(c.cache_write)),
        "{u:#}"
    );
    let claude_cost = fake_ai::anthropic_call_nano(&prices(CLAUDE));
    assert_eq!(nano(&claude["cost_usd"]), claude_cost);
    // The budget moved by exactly that.
    let shown = g.shown("quitter");
    let daily = &shown["ai_budget"]["windows"][0];
    assert_eq!((daily["window"].as_str(), nano(&daily["spent_usd"])), (Some("daily"), gpt_cost + claude_cost));
    assert_eq!(nano(&shown["ai_budget"]["reserved_usd"]), 0);

    // The vendor never reports usage: the call is recorded as an estimate, flagged, and counted.
    g.fake.set_behaviour(Behaviour {
        usage_delay: Duration::from_millis(800),
        withhold_usage: true,
        ..Behaviour::default()
    });
    a.abandon_stream(CHAT, &with(chat(500), "stream", json!(true)), "\"finish_reason\":\"stop\"").await;
    let sent_bytes = g.fake.requests().last().unwrap().body.len() as u64;
    let u = g.settled(3);
    let est = row(&u, MODEL, true);
    // Input: the body as sent, one token a byte; output: the bytes of text it carried.
    let text = fake_ai::content().len() as u64;
    assert_eq!((&est["input_tokens"], &est["output_tokens"]), (&json!(sent_bytes), &json!(text)), "{u:#}");
    let est_cost = fake_ai::cost_nano(&prices(MODEL), sent_bytes, text, 0, 0);
    assert_eq!(nano(&est["cost_usd"]), est_cost);
    assert_eq!(u["total"]["estimated_calls"], 1);
    let daily = &g.shown("quitter")["ai_budget"]["windows"][0];
    assert_eq!(nano(&daily["spent_usd"]), gpt_cost + claude_cost + est_cost);
    // People see it as an estimate.
    let table = g.env.run_ok(&["usage", "--since", "all"]);
    assert!(table.contains(&format!("{MODEL} (estimated)")), "{table}");
    assert!(table.contains("1 call estimated"), "{table}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_whose_agent_leaves_before_the_reply_is_metered() {
    let g = Gateway::start("", None, "");
    let a = g.agent("impatient", 1_000_000_000);
    g.fake.set_behaviour(Behaviour { hold_heads: true, ..Behaviour::default() });
    g.fake.close_gate();
    let caller = a.clone();
    let call = tokio::spawn(async move { caller.post(CHAT, &chat(300)).await });
    wait_until(Duration::from_secs(10), "the call to reach the vendor", || (g.received() == 1).then_some(()));
    let u = g.usage();
    assert_eq!((&u["total"]["in_flight_calls"], &u["total"]["calls"]), (&json!(1), &json!(0)), "{u:#}");
    // The agent goes away (its connection closes), then the vendor answers.
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    g.fake.open_gate();
    let u = g.settled(1);
    let r = row(&u, MODEL, false);
    let c = Counts::OPENAI;
    assert_eq!((&r["input_tokens"], &r["output_tokens"]), (&json!(c.input - c.cache_read), &json!(c.output)), "{u:#}");
    assert_eq!(nano(&r["cost_usd"]), fake_ai::openai_call_nano(&prices(MODEL)));
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_calls_never_spend_more_than_the_budget() {
    let g = Gateway::start("", None, "");
    let p = prices(MODEL);
    let body = chat(1000);
    let bytes = body.to_string().len();
    let worst = worst_nano(&p, bytes, 1000);
    let budget = worst * 5 / 2;
    let a = g.agent("swarm", budget);
    // The vendor holds every reply until all 50 calls were either refused or forwarded, so no
    // reservation is settled while the others are decided: the budget alone decides.
    g.fake.set_behaviour(Behaviour { hold_heads: true, usage_from_request: true, ..Behaviour::default() });
    g.fake.close_gate();
    let refused = Arc::new(AtomicUsize::new(0));
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let (a, body, refused) = (a.clone(), body.clone(), Arc::clone(&refused));
            tokio::spawn(async move {
                let r = a.post(CHAT, &body).await;
                if r.status != StatusCode::OK {
                    refused.fetch_add(1, Ordering::SeqCst);
                }
                r
            })
        })
        .collect();
    wait_until(Duration::from_secs(30), "every call refused or forwarded", || {
        (refused.load(Ordering::SeqCst) + g.received() == 50).then_some(())
    });
    let u = g.usage();
    assert_eq!(u["total"]["in_flight_calls"], 3, "{u:#}");
    assert!(nano(&u["total"]["reserved_usd"]) <= budget, "{u:#}");
    g.fake.open_gate();
    let mut replies = Vec::new();
    for c in calls {
        replies.push(c.await.unwrap());
    }

    // Two calls fit whole; the third gets the output limit the rest of the budget affords; the other
    // 47 are refused without reaching the vendor.
    let answered: Vec<&Reply> = replies.iter().filter(|r| r.status == StatusCode::OK).collect();
    assert_eq!(answered.len(), 3, "{replies:#?}");
    for r in replies.iter().filter(|r| r.status != StatusCode::OK) {
        r.assert_budget_exceeded("daily limit");
    }
    assert_eq!(g.received(), 3);
    let lowered: Vec<u64> = answered.iter().filter_map(|r| r.limit()).collect();
    let remaining_atto = (budget - 2 * worst) * 1_000_000_000;
    let affordable = ((remaining_atto - bytes as u128 * input_rate(&p)) / p.output) as u64;
    assert_eq!(lowered, [affordable], "one call lowered to exactly what was left");
    let mut limits: Vec<u64> =
        g.fake.requests().iter().map(|r| r.json()["max_completion_tokens"].as_u64().unwrap()).collect();
    limits.sort_unstable();
    assert_eq!(limits, [affordable, 1000, 1000], "the vendor got the lowered limit");

    // What was spent is what the vendor reported, and never more than the budget.
    let u = g.settled(3);
    let expected = 2 * reported_nano(&p, bytes, 1000)
        + reported_nano(&p, body.to_string().replace("1000", &affordable.to_string()).len(), affordable);
    assert_eq!(nano(&u["total"]["cost_usd"]), expected, "{u:#}");
    assert!(expected <= budget, "{expected} > {budget}");
    assert_eq!(nano(&u["total"]["reserved_usd"]), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_abandoned_stream_and_a_burst_share_one_budget() {
    let g = Gateway::start("", None, "");
    let p = prices(MODEL);
    let body = chat(1000);
    let worst = worst_nano(&p, body.to_string().len(), 1000);
    let budget = worst * 5 / 2;
    let a = g.agent("sneaky", budget);
    // The stream's usage is held back: its reservation stands while the burst is decided.
    g.fake.set_behaviour(Behaviour { hold_usage: true, usage_from_request: true, ..Behaviour::default() });
    g.fake.close_gate();
    a.abandon_stream(CHAT, &with(body.clone(), "stream", json!(true)), "\"finish_reason\":\"stop\"").await;
    g.fake.set_behaviour(Behaviour {
        hold_heads: true,
        hold_usage: true,
        usage_from_request: true,
        ..Behaviour::default()
    });
    let refused = Arc::new(AtomicUsize::new(0));
    let calls: Vec<_> = (0..30)
        .map(|_| {
            let (a, body, refused) = (a.clone(), body.clone(), Arc::clone(&refused));
            tokio::spawn(async move {
                let r = a.post(CHAT, &body).await;
                if r.status != StatusCode::OK {
                    refused.fetch_add(1, Ordering::SeqCst);
                }
                r
            })
        })
        .collect();
    wait_until(Duration::from_secs(30), "every call refused or forwarded", || {
        (refused.load(Ordering::SeqCst) + g.received() == 31).then_some(())
    });
    g.fake.open_gate();
    let mut replies = Vec::new();
    for c in calls {
        replies.push(c.await.unwrap());
    }
    // The stream holds one worst case; of the burst, one fits whole and one lowered.
    let answered = replies.iter().filter(|r| r.status == StatusCode::OK).count();
    assert_eq!(answered, 2, "{replies:#?}");
    assert_eq!(replies.iter().filter(|r| r.limit().is_some()).count(), 1);
    for r in replies.iter().filter(|r| r.status != StatusCode::OK) {
        r.assert_budget_exceeded("reserved by calls in flight");
    }
    let u = g.settled(3);
    assert!(nano(&u["total"]["cost_usd"]) <= budget, "{u:#}");
    // The abandoned stream was metered with the vendor's usage, not estimated.
    assert_eq!(u["total"]["estimated_calls"], 0, "{u:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_calls_release_their_reservations() {
    // OpenAI is unreachable (502); Anthropic is the fake, which may fail, or be slow (504).
    let g = Gateway::start("upstream_timeout_secs = 1", Some("http://127.0.0.1:9"), "");
    let p = prices(CLAUDE);
    let body = message(1000);
    let worst = worst_nano(&p, body.to_string().len(), 1000);
    let a = g.agent("unlucky", worst * 3 / 2);
    let none_in_flight = |g: &Gateway| {
        let u = g.usage();
        assert_eq!((&u["total"]["in_flight_calls"], nano(&u["total"]["reserved_usd"])), (&json!(0), 0), "{u:#}");
    };
    for _ in 0..3 {
        let r = a.post(CHAT, &chat(300)).await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{r:?}");
    }
    none_in_flight(&g);
    g.fake.set_behaviour(Behaviour { fail_with: Some(500), ..Behaviour::default() });
    for _ in 0..3 {
        let r = a.post(MESSAGES, &body).await;
        assert_eq!(
            (r.status, r.body["error"]["type"].as_str()),
            (StatusCode::INTERNAL_SERVER_ERROR, Some("api_error"))
        );
    }
    g.fake.set_behaviour(Behaviour { fail_with: Some(429), ..Behaviour::default() });
    assert_eq!(a.post(MESSAGES, &body).await.status, StatusCode::TOO_MANY_REQUESTS);
    g.fake.set_behaviour(Behaviour { hold_heads: true, ..Behaviour::default() });
    g.fake.close_gate();
    for _ in 0..2 {
        assert_eq!(a.post(MESSAGES, &body).await.status, StatusCode::GATEWAY_TIMEOUT);
    }
    g.fake.open_gate();
    none_in_flight(&g);
    // Error replies cost nothing; the whole budget is still there: a full call, not lowered.
    g.fake.set_behaviour(Behaviour::default());
    let r = a.post(MESSAGES, &body).await;
    assert_eq!((r.status, r.limit()), (StatusCode::OK, None), "{r:?}");
    let u = g.settled(5);
    let spent: u128 = u["rows"].as_array().unwrap().iter().map(|r| nano(&r["cost_usd"])).sum();
    assert_eq!(spent, fake_ai::anthropic_call_nano(&p), "{u:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_leaves_no_reservation_behind() {
    let mut g = Gateway::start("", None, "");
    let p = prices(MODEL);
    let body = chat(1000);
    let worst = worst_nano(&p, body.to_string().len(), 1000);
    let a = g.agent("crasher", worst * 3 / 2);
    g.fake.set_behaviour(Behaviour { hold_heads: true, ..Behaviour::default() });
    g.fake.close_gate();
    let caller = a.clone();
    // (Its connection dies with the proxy: the reply is an error, or none.)
    let call = tokio::spawn(async move { caller.request(CHAT, &chat(1000)).send().await.map(|r| r.status()) });
    wait_until(Duration::from_secs(10), "the call to reach the vendor", || (g.received() == 1).then_some(()));
    // The reservation is visible while the call is in flight: exactly the worst case.
    let u = g.usage();
    assert_eq!((&u["total"]["in_flight_calls"], nano(&u["total"]["reserved_usd"])), (&json!(1), worst), "{u:#}");
    assert_eq!(u["in_flight"][0]["agent"], "crasher");
    let shown = g.shown("crasher");
    assert_eq!(nano(&shown["ai_budget"]["reserved_usd"]), worst, "{shown:#}");
    assert_eq!(shown["ai_budget"]["in_flight_calls"], 1);
    let card = g.env.run_ok(&["agents", "show", "crasher"]);
    let line = card.lines().find(|l| l.contains("AI budget")).unwrap_or_else(|| panic!("{card}"));
    assert!(
        line.contains(&format!("0.00 + {} reserved of {} USD", fake_ai::usd(worst), fake_ai::usd(worst * 3 / 2))),
        "{line}"
    );

    // The proxy dies (SIGKILL) with the call in flight, and a new one starts on the same home.
    drop(g.proxy.take());
    assert!(call.await.unwrap().is_err(), "the call died with the proxy");
    g.proxy = Some(g.env.start_proxy());
    g.fake.open_gate();
    g.fake.set_behaviour(Behaviour::default());
    let a = Agent { base: g.proxy().url.clone(), ..a };
    let u = g.usage();
    assert_eq!((&u["total"]["in_flight_calls"], nano(&u["total"]["reserved_usd"])), (&json!(0), 0), "{u:#}");
    // The whole budget is there: a full call fits, not lowered.
    let r = a.post(CHAT, &chat(1000)).await;
    assert_eq!((r.status, r.limit()), (StatusCode::OK, None), "{r:?}");

    // A clean stop while an abandoned stream is still being read: the proxy does not wait out the
    // bound; it records what it has (an estimate) and stops.
    g.fake.set_behaviour(Behaviour { hold_usage: true, ..Behaviour::default() });
    g.fake.close_gate();
    a.abandon_stream(CHAT, &with(chat(100), "stream", json!(true)), "\"finish_reason\":\"stop\"").await;
    let stopping = Instant::now();
    assert!(g.proxy.take().unwrap().terminate(), "the proxy stops cleanly");
    assert!(stopping.elapsed() < Duration::from_secs(10), "stopped in {:?}", stopping.elapsed());
    let u = g.usage();
    assert_eq!(u["total"]["calls"], 2, "{u:#}");
    let est = row(&u, MODEL, true);
    assert_eq!(est["output_tokens"], fake_ai::content().len(), "{u:#}");
    g.fake.open_gate();
}

#[tokio::test(flavor = "multi_thread")]
async fn budgets_lower_output_limits_or_refuse_and_say_why() {
    let g = Gateway::start("", None, "default_max_output_tokens = 100");
    let p = prices(MODEL);
    let body = chat(1000);
    let bytes = body.to_string().len();
    let worst = worst_nano(&p, bytes, 1000);
    let budget = worst * 3 / 2;
    let a = g.agent("careful", budget);
    let roomy = g.agent("roomy", 1_000_000_000);
    // The vendor reports the most it could for each request: spend is the worst case reserved.
    g.fake.set_behaviour(Behaviour { usage_from_request: true, ..Behaviour::default() });

    // Fits: forwarded as sent, no header.
    let r = a.post(CHAT, &body).await;
    assert_eq!((r.status, r.limit()), (StatusCode::OK, None), "{r:?}");
    assert_eq!(g.fake.requests()[0].body, body.to_string().as_bytes());
    // An unpriced model cannot be held to a budget: refused, not forwarded.
    let r = roomy.post(CHAT, &json!({"model": "gpt-imaginary-9000", "messages": []})).await;
    r.assert_budget_exceeded("`gpt-imaginary-9000` has no known price");
    assert_eq!(g.received(), 1);
    // A model whose maximum the price list does not know, asked without a limit: the default cap
    // (`[ai] default_max_output_tokens`) is reserved, and set in the request.
    let uncapped = json!({"model": "gpt-5.5-cyber", "messages": [{"role": "user", "content": "Hi"}]});
    let r = roomy.post(CHAT, &uncapped).await;
    assert_eq!((r.status, r.limit()), (StatusCode::OK, Some(100)), "{r:?}");
    assert_eq!(g.fake.requests()[1].json()["max_completion_tokens"], 100);
    // Half a call is left: the output limit is lowered to exactly what it affords, and said so.
    g.settled(2);
    let r = a.post(CHAT, &body).await;
    let spent = reported_nano(&p, bytes, 1000);
    let affordable = (((budget - spent) * 1_000_000_000 - bytes as u128 * input_rate(&p)) / p.output) as u64;
    assert_eq!((r.status, r.limit()), (StatusCode::OK, Some(affordable)), "{r:?}");
    assert_eq!(g.fake.requests()[2].json()["max_completion_tokens"], affordable);
    // Nothing fits any more: refused, saying what is spent and what a call needs at least.
    let u = g.settled(3);
    let spent_now = nano(&fake_ai::usage_json(&g.env, &["--agent", "careful"])["total"]["cost_usd"]);
    assert!(spent_now <= budget, "{spent_now} > {budget}: {u:#}");
    let r = a.post(CHAT, &body).await;
    r.assert_budget_exceeded(&format!(
        "daily limit {} USD: {} USD spent; this call needs at least {} USD",
        fake_ai::usd(budget),
        fake_ai::usd(spent_now),
        fake_ai::usd(worst_nano(&p, bytes, 16))
    ));
    assert_eq!(g.received(), 3);
    // Free endpoints still answer.
    assert_eq!(a.get("/api/openai/v1/models").await, StatusCode::OK);
    let card = g.env.run_ok(&["agents", "show", "careful"]);
    let line = card.lines().find(|l| l.contains("AI budget")).unwrap_or_else(|| panic!("{card}"));
    assert!(
        line.contains(&format!("{} + 0.00 reserved of {} USD", fake_ai::usd(spent_now), fake_ai::usd(budget))),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_read_past_its_bounds_is_estimated() {
    // Time: the vendor holds its usage longer than the proxy reads for.
    let g = Gateway::start("", None, "abandoned_reply_secs = 1");
    let a = g.agent("lingerer", 1_000_000_000);
    g.fake.set_behaviour(Behaviour { hold_usage: true, ..Behaviour::default() });
    g.fake.close_gate();
    let started = Instant::now();
    a.abandon_stream(CHAT, &with(chat(500), "stream", json!(true)), "\"finish_reason\":\"stop\"").await;
    let u = g.settled(1);
    assert!(started.elapsed() < Duration::from_secs(10), "given up after {:?}", started.elapsed());
    let est = row(&u, MODEL, true);
    assert_eq!(est["output_tokens"], fake_ai::content().len(), "{u:#}");
    assert!(!g.fake.requests()[0].done, "the vendor was still holding its reply");
    g.fake.open_gate();

    // Bytes: the agent leaves after the first piece of text; the proxy reads one more event, which is
    // past its byte bound, and estimates from the text it saw.
    let g = Gateway::start("", None, "abandoned_reply_bytes = 1");
    let a = g.agent("skimmer", 1_000_000_000);
    let first = fake_ai::CONTENT_PIECES[0];
    a.abandon_stream(CHAT, &with(chat(500), "stream", json!(true)), &format!("\"content\":\"{first}\"")).await;
    let u = g.settled(1);
    let est = row(&u, MODEL, true);
    let seen = (fake_ai::CONTENT_PIECES[0].len() + fake_ai::CONTENT_PIECES[1].len()) as u64;
    assert_eq!(est["output_tokens"], seen, "{u:#}");
    assert!(nano(&est["cost_usd"]) > 0);
}
