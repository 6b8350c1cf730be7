//! Every AI reply is metered to its end, whether or not the agent stays to read it.
//!
//! A forwarded call ends in exactly one usage row and one settlement of its budget reservation
//! ([`crate::ai::budget`]). The reply reaches the agent as it arrives ([`Metered`] is its body), and
//! a tap reads a copy for usage. When the agent goes away first — it closes the connection after
//! the last content chunk, before the usage chunk; or before a non-streamed reply is even there —
//! the proxy does not stop: it keeps reading the upstream's reply without delivering it, for up to
//! `[ai] abandoned_reply_secs` (default 600 s) and `[ai] abandoned_reply_bytes` (default 64 MiB)
//! from `config.toml`, so the provider's own usage is what gets recorded. The work moves to a task
//! of its own only then ([`send`] and [`Metered`] hand it over when dropped), so a call whose agent
//! stays costs no extra task.
//!
//! When no final usage ever comes — the upstream ends without it, the bound is hit, the reply
//! breaks off, the proxy stops — a successful reply of a billed endpoint is recorded as a
//! conservative **estimate**, flagged `estimated`: input tokens = the request body's length in
//! bytes (unless the reply reported its input), output tokens = the bytes of generated text seen
//! (the stream's content deltas; a JSON reply's whole length). A tokenizer spends at least one byte
//! per token, so neither falls short of what the text holds. (Output a provider generates but never
//! sends — hidden reasoning tokens — cannot be seen and so is not in an estimate.) The estimate is
//! priced like any usage and counted against the budget.
//!
//! This module does not decide what is forwarded or reserved ([`crate::ai::forward`],
//! [`crate::ai::budget`]) nor parse usage ([`crate::ai::usage`]).

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use tokio::sync::{mpsc, watch};

use crate::{
    Result,
    ai::{
        budget::{Charge, Ledger, PlanSettings},
        pricing::Pricing,
        usage::{self, StreamTap, Usage},
    },
    config::AiSettings,
    ids::AgentId,
    manifest::Provider,
    store::{NewUsage, Store, now_ms},
    upstream::Upstream,
};

/// Largest non-streamed reply read for usage; a bigger one still passes through, and is estimated.
const MAX_METERED_BODY: usize = 64 * 1024 * 1024;

/// The proxy's metering: the budget ledger, and the bounds and stop signal of replies read after
/// their agent left. Cheap to share (one per proxy, in its state).
#[derive(Debug)]
pub struct Metering {
    ledger: Arc<Ledger>,
    stop: watch::Sender<bool>,
    limits: DrainLimits,
    settings: PlanSettings,
}

/// How much of a reply is read after its agent left.
#[derive(Debug, Clone, Copy)]
struct DrainLimits {
    time: Duration,
    bytes: u64,
}

impl Metering {
    /// Metering with the ledger loaded from `store` (the last 30 days of spend).
    pub fn open(store: &Store, settings: &AiSettings) -> Result<Self> {
        let ledger = Arc::new(Ledger::new());
        let since = now_ms() - crate::ai::budget::Window::Monthly.len_ms();
        ledger.load(store.ai_spend_by_minute(since)?);
        Ok(Metering {
            ledger,
            stop: watch::channel(false).0,
            limits: DrainLimits {
                time: Duration::from_secs(settings.abandoned_reply_secs),
                bytes: settings.abandoned_reply_bytes,
            },
            settings: PlanSettings { default_max_output_tokens: settings.default_max_output_tokens },
        })
    }

    /// The budget ledger.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// What budget plans need from `config.toml`.
    pub fn plan_settings(&self) -> PlanSettings {
        self.settings
    }

    /// Tells every reply still being read after its agent left to stop now and record what it has
    /// (at shutdown); replies abandoned from now on are recorded at once.
    pub fn stop_reading(&self) {
        self.stop.send_replace(true);
    }

    /// Sends `req` upstream and returns the response head with the call, as soon as the head is
    /// there. If the caller stops waiting (the agent went away), the exchange goes on in a task of
    /// its own and its reply is read to the end for the usage; if it fails (502, 504), the call's
    /// reservation is released.
    pub async fn send(
        &self,
        upstream: &Upstream,
        req: hyper::Request<Full<Bytes>>,
        call: Call,
    ) -> Result<(hyper::Response<Incoming>, Call)> {
        let upstream = upstream.clone();
        let pending = Pending {
            fut: Some(Box::pin(async move { upstream.send(req).await })),
            call: Some(call),
            stop: self.stop.subscribe(),
            limits: self.limits,
        };
        let (result, call) = pending.await;
        // On an error the call is dropped here: no reply, no cost, the reservation released.
        Ok((result?, call))
    }

    /// The body that delivers `incoming` to the agent while `meter` reads it.
    pub fn body(&self, incoming: Incoming, meter: Meter) -> Metered {
        Metered { incoming: Some(incoming), meter: Some(meter), stop: self.stop.subscribe(), limits: self.limits }
    }
}

/// One forwarded call, as far as metering is concerned.
#[derive(Debug)]
pub struct Call {
    /// The provider.
    pub provider: Provider,
    /// The request's `model`.
    pub request_model: Option<String>,
    /// The agent's id.
    pub agent_id: AgentId,
    /// The agent's name.
    pub agent_name: String,
    /// When the proxy got the request.
    pub started: Instant,
    /// `stream_options.include_usage` was added for the agent (the tap hides it again).
    pub injected_usage: bool,
    /// The endpoint is billed by the token (a 2xx reply without usage is estimated).
    pub billable: bool,
    /// The agent has a budget: a reply whose model is unpriced is charged at the request's.
    pub budgeted: bool,
    /// The request body's length, the input estimate.
    pub input_tokens_bound: u64,
    /// The hold on the budget.
    pub charge: Charge,
    /// The prices the call started with.
    pub pricing: Arc<Pricing>,
    /// Where the usage row goes.
    pub sink: mpsc::UnboundedSender<NewUsage>,
}

impl Call {
    /// The meter for this call's reply: `status` and whether it is a stream, from its head.
    pub fn meter(self, status: u16, is_sse: bool) -> Meter {
        let tap = if is_sse {
            Tap::Sse(StreamTap::new(self.provider, self.injected_usage, self.request_model.clone()))
        } else {
            Tap::Json { buf: Vec::new(), overflow: false, received: 0 }
        };
        Meter { tap: Some(tap), status, streamed: is_sse, call: Some(self) }
    }
}

/// The upstream exchange until its head arrives; if dropped before, it goes on in a task.
struct Pending<F: Future<Output = Result<hyper::Response<Incoming>>> + Send + 'static> {
    fut: Option<Pin<Box<F>>>,
    call: Option<Call>,
    stop: watch::Receiver<bool>,
    limits: DrainLimits,
}

impl<F: Future<Output = Result<hyper::Response<Incoming>>> + Send + 'static> Future for Pending<F> {
    type Output = (Result<hyper::Response<Incoming>>, Call);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(fut) = this.fut.as_mut() else { return Poll::Pending };
        match fut.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                this.fut = None;
                let call = this.call.take().expect("a pending exchange holds its call");
                Poll::Ready((result, call))
            }
        }
    }
}

impl<F: Future<Output = Result<hyper::Response<Incoming>>> + Send + 'static> Drop for Pending<F> {
    fn drop(&mut self) {
        let (Some(fut), Some(call)) = (self.fut.take(), self.call.take()) else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (mut stop, limits) = (self.stop.clone(), self.limits);
        runtime.spawn(async move {
            let result = tokio::select! {
                r = fut => r,
                // Stopping: the exchange is cut like a timeout (nothing recorded, nothing held).
                _ = stop.wait_for(|s| *s) => return,
            };
            if let Ok(resp) = result {
                let (head, incoming) = resp.into_parts();
                let meter = call.meter(head.status.as_u16(), is_sse(&head.headers));
                drain(incoming, meter, stop, limits).await;
            }
        });
    }
}

/// Whether a response is a server-sent-event stream.
pub fn is_sse(headers: &hyper::HeaderMap) -> bool {
    headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"))
}

/// A reply's body on its way to the agent: each upstream chunk goes out as the tap releases it.
/// Dropped before the end (the agent went away), it hands the rest of the reply to a task that reads
/// it for the usage.
pub struct Metered {
    incoming: Option<Incoming>,
    meter: Option<Meter>,
    stop: watch::Receiver<bool>,
    limits: DrainLimits,
}

impl Body for Metered {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        loop {
            let (Some(incoming), Some(meter)) = (this.incoming.as_mut(), this.meter.as_mut()) else {
                return Poll::Ready(None);
            };
            match Pin::new(&mut *incoming).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are the upstream connection's business.
                    let Ok(chunk) = frame.into_data() else { continue };
                    let mut out = meter.push(chunk);
                    if incoming.is_end_stream() {
                        // The last chunk of a reply of known length: hyper sends it and drops the
                        // body without asking for more, so the reply ends here.
                        this.incoming = None;
                        let rest = this.meter.take().map(|mut m| m.finish(End::Complete)).unwrap_or_default();
                        if !rest.is_empty() {
                            out = [out, rest].concat().into();
                        }
                        return Poll::Ready((!out.is_empty()).then(|| Ok(Frame::data(out))));
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!(error = %e, "upstream reply broke off");
                    this.incoming = None;
                    if let Some(mut meter) = this.meter.take() {
                        meter.finish(End::Broken);
                    }
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    this.incoming = None;
                    let rest = this.meter.take().map(|mut m| m.finish(End::Complete)).unwrap_or_default();
                    return Poll::Ready((!rest.is_empty()).then(|| Ok(Frame::data(rest))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_none()
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        let (Some(incoming), Some(mut meter)) = (self.incoming.take(), self.meter.take()) else { return };
        if incoming.is_end_stream() {
            // Nothing more to read (an empty reply hyper never asked for).
            meter.finish(End::Complete);
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(drain(incoming, meter, self.stop.clone(), self.limits));
            }
            // No runtime to read on (it is shutting down): the meter records what it saw.
            Err(_) => drop(meter),
        }
    }
}

/// Reads the rest of a reply nobody waits for, within `limits` or until the proxy stops, and
/// records its usage.
async fn drain(mut incoming: Incoming, mut meter: Meter, mut stop: watch::Receiver<bool>, limits: DrainLimits) {
    let deadline = tokio::time::Instant::now() + limits.time;
    let mut read = 0u64;
    let end = loop {
        if *stop.borrow_and_update() {
            break End::Cut;
        }
        let frame = tokio::select! {
            f = incoming.frame() => f,
            _ = tokio::time::sleep_until(deadline) => break End::Cut,
            changed = stop.changed() => {
                // A closed channel means the proxy is going away: stop too.
                if changed.is_err() {
                    break End::Cut;
                }
                continue;
            }
        };
        match frame {
            None => break End::Complete,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "upstream reply broke off while read after the agent left");
                break End::Broken;
            }
            Some(Ok(frame)) => {
                let Ok(chunk) = frame.into_data() else { continue };
                read = read.saturating_add(chunk.len() as u64);
                // Nobody to deliver to: what the tap releases is dropped.
                drop(meter.push(chunk));
                if read > limits.bytes {
                    break End::Cut;
                }
            }
        }
    };
    if end == End::Cut {
        tracing::info!(agent = %meter.agent_id(), "stopped reading a reply its agent had left; its usage is estimated");
    }
    meter.finish(end);
}

/// How a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The upstream ended it.
    Complete,
    /// It broke off.
    Broken,
    /// The proxy stopped reading (a bound, a shutdown, or nobody read it).
    Cut,
}

/// What is being read from the reply for usage.
enum Tap {
    Sse(StreamTap),
    Json { buf: Vec<u8>, overflow: bool, received: u64 },
}

/// Meters one reply and records it exactly once: at its end, or when dropped first.
pub struct Meter {
    tap: Option<Tap>,
    status: u16,
    streamed: bool,
    call: Option<Call>,
}

impl Meter {
    fn agent_id(&self) -> &str {
        self.call.as_ref().map_or("", |c| c.agent_id.as_str())
    }

    /// Takes the next chunk; returns the bytes to deliver now.
    fn push(&mut self, chunk: Bytes) -> Bytes {
        match &mut self.tap {
            Some(Tap::Sse(tap)) => tap.push_bytes(chunk),
            Some(Tap::Json { buf, overflow, received }) => {
                *received = received.saturating_add(chunk.len() as u64);
                if !*overflow {
                    if buf.len() + chunk.len() > MAX_METERED_BODY {
                        *overflow = true;
                        *buf = Vec::new();
                    } else {
                        buf.extend_from_slice(&chunk);
                    }
                }
                chunk
            }
            None => chunk,
        }
    }

    /// Ends the reply; returns the bytes the tap still held.
    fn finish(&mut self, end: End) -> Bytes {
        let Some(tap) = self.tap.take() else { return Bytes::new() };
        let Some(call) = self.call.take() else { return Bytes::new() };
        let (rest, reported, final_usage, content_bytes) = match tap {
            Tap::Sse(tap) => {
                let (rest, report) = tap.finish_report();
                (rest, report.usage, report.final_usage, report.content_bytes)
            }
            Tap::Json { buf, overflow, received } => {
                let usage = (end == End::Complete && !overflow)
                    .then(|| usage::from_json_body(call.provider, &buf, call.request_model.as_deref()))
                    .flatten();
                let fin = usage.is_some();
                (Bytes::new(), usage, fin, received)
            }
        };
        self.record(call, Reading { reported, final_usage, content_bytes });
        rest
    }

    fn record(&self, call: Call, reading: Reading) {
        let ok = (200..300).contains(&self.status);
        let estimated = ok && call.billable && !reading.final_usage;
        let usage = if estimated {
            estimate(call.request_model.as_deref(), call.input_tokens_bound, &reading)
        } else {
            reading.reported.clone().unwrap_or(Usage { model: call.request_model.clone(), ..Usage::default() })
        };
        // An error reply without usage is not billed. A reply of a model the price list does not
        // know has an unknown cost (never 0) — unless the agent has a budget, which was reserved at
        // the request's model's prices and is charged at them.
        let cost = if reading.reported.is_none() && !estimated && !ok {
            Some(0)
        } else {
            call.pricing.cost_nano_usd(call.provider, &usage).or_else(|| {
                let at_request_model = Usage { model: call.request_model.clone(), ..usage.clone() };
                call.budgeted.then(|| call.pricing.cost_nano_usd(call.provider, &at_request_model)).flatten()
            })
        };
        let created_at = now_ms();
        let row = NewUsage {
            agent_id: call.agent_id.clone(),
            agent_name: call.agent_name.clone(),
            provider: call.provider.as_str(),
            model: usage.model.clone().or_else(|| call.request_model.clone()),
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cache_read_tokens: usage.cache_read_tokens,
            cache_write_tokens: usage.cache_write_tokens,
            cost_nano_usd: cost,
            latency_ms: u64::try_from(call.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            status: self.status,
            streamed: self.streamed,
            estimated,
            created_at,
        };
        call.charge.settle(cost.unwrap_or(0), created_at);
        let _ = call.sink.send(row);
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        if self.tap.is_some() {
            let _ = self.finish(End::Cut);
        }
    }
}

/// What the tap read of a reply.
struct Reading {
    reported: Option<Usage>,
    final_usage: bool,
    content_bytes: u64,
}

/// The conservative estimate of a reply without final usage (see the module docs): what the reply
/// did report, each class raised to the estimate where that is larger.
fn estimate(request_model: Option<&str>, input_tokens_bound: u64, reading: &Reading) -> Usage {
    let reported = reading.reported.clone().unwrap_or_default();
    let input_reported = reported.prompt_tokens() > 0;
    Usage {
        model: reported.model.or_else(|| request_model.map(str::to_owned)),
        input_tokens: if input_reported { reported.input_tokens } else { input_tokens_bound },
        output_tokens: reported.output_tokens.max(reading.content_bytes),
        cache_read_tokens: reported.cache_read_tokens,
        cache_write_tokens: reported.cache_write_tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::usage::tests::usage;

    fn reading(reported: Option<Usage>, content_bytes: u64) -> Reading {
        Reading { reported, final_usage: false, content_bytes }
    }

    #[test]
    fn estimates_take_the_body_and_the_text_seen() {
        // Nothing reported: input = the body's bytes, output = the text's bytes.
        let u = estimate(Some("gpt-4o-mini"), 120, &reading(None, 29));
        assert_eq!(u, usage("gpt-4o-mini", 120, 29, 0, 0));
        // gpt-4o-mini: 120 × 1.5e-07 + 29 × 6e-07 = 0.000018 + 0.0000174 = 0.0000354 USD.
        assert_eq!(Pricing::embedded().cost_nano_usd(Provider::Openai, &u), Some(35_400));
        // Anthropic's `message_start` reported the input (exact) and a placeholder output of 1.
        let start = usage("claude-sonnet-4-5-20250929", 12, 1, 1800, 2048);
        let u = estimate(Some("claude-sonnet-4-5"), 5000, &reading(Some(start.clone()), 20));
        assert_eq!(u, usage("claude-sonnet-4-5-20250929", 12, 20, 1800, 2048));
        // 12 × 3e-06 + 1800 × 3e-07 + 2048 × 3.75e-06 + 20 × 1.5e-05
        // = 0.000036 + 0.00054 + 0.00768 + 0.0003 = 0.008556 USD.
        assert_eq!(Pricing::embedded().cost_nano_usd(Provider::Anthropic, &u), Some(8_556_000));
        // A reported output larger than the text seen (hidden reasoning) is kept.
        let u = estimate(None, 10, &reading(Some(usage("m", 0, 500, 0, 0)), 20));
        assert_eq!((u.input_tokens, u.output_tokens, u.model.as_deref()), (10, 500, Some("m")));
    }
}
