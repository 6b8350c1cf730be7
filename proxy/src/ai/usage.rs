//! Token usage from AI responses — JSON bodies and SSE streams — with each token class counted once.
//!
//! Every provider reports usage differently, and the differences are where gateways miscount:
//!
//! * **OpenAI** (Chat Completions `usage.prompt_tokens` / `completion_tokens` /
//!   `prompt_tokens_details.cached_tokens`; Responses API `usage.input_tokens` / `output_tokens` /
//!   `input_tokens_details.cached_tokens`): the prompt count *includes* the cached tokens, so
//!   [`Usage::input_tokens`] = prompt − cached and [`Usage::cache_read_tokens`] = cached. Newer models
//!   may also report `cache_write_tokens` in the same details object (LiteLLM's naming; also included
//!   in the prompt count); it is subtracted as well and becomes [`Usage::cache_write_tokens`].
//! * **DeepSeek** is OpenAI-compatible but reports `prompt_cache_hit_tokens` (a cache read) and
//!   `prompt_cache_miss_tokens` (ordinary input); those win when present.
//! * **Anthropic** reports `input_tokens` *excluding* `cache_read_input_tokens` and
//!   `cache_creation_input_tokens`. In a stream, `message_start` carries the input and cache counts
//!   in `message.usage`, and every `message_delta` carries a **cumulative** `usage` (the latest value
//!   of each field wins; nothing is ever added up).
//!
//! Streams: an OpenAI-style upstream only reports usage in a stream when asked
//! (`stream_options.include_usage`). [`prepare_request`] asks on the client's behalf and
//! [`StreamTap`] then hides what that changed — the usage-only chunk and the `"usage":null` member
//! OpenAI adds to every other chunk — so the client receives exactly the stream it asked for.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::manifest::Provider;

/// The tokens one AI call consumed, split into classes that are each priced exactly once.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// The model that answered (the response's `model`; else the request's).
    pub model: Option<String>,
    /// Input tokens that are neither cache reads nor cache writes.
    pub input_tokens: u64,
    /// Output tokens (reasoning tokens included, as the providers count them).
    pub output_tokens: u64,
    /// Input tokens read from the provider's prompt cache.
    pub cache_read_tokens: u64,
    /// Input tokens written to the provider's prompt cache.
    pub cache_write_tokens: u64,
}

impl Usage {
    /// All input tokens: ordinary + cache reads + cache writes (what long-context price tiers are
    /// measured against).
    pub fn prompt_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.cache_read_tokens).saturating_add(self.cache_write_tokens)
    }
}

/// A request body ready to forward, and what the response handling needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The body to send upstream: the client's bytes unchanged unless `injected_usage`.
    pub body: Bytes,
    /// The request asked for a stream (`"stream": true`).
    pub stream: bool,
    /// The request's `model`, the fallback when a response names none.
    pub model: Option<String>,
    /// `stream_options.include_usage = true` was added on the client's behalf: the response must go
    /// through a [`StreamTap`] created with `injected_usage = true`, which hides the extra usage.
    pub injected_usage: bool,
    /// The output limits the request sets (non-negative integers only).
    pub limits: OutputLimits,
    /// How many answers the request asks for (`n`, or a legacy completion's `best_of`, whichever
    /// is larger; 1 when absent): the output limit applies to each.
    pub choices: u64,
}

/// The output limits a request body sets, by the name each API gives them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputLimits {
    /// `max_tokens` (Anthropic, DeepSeek, OpenAI's legacy fields).
    pub max_tokens: Option<u64>,
    /// `max_completion_tokens` (OpenAI Chat Completions).
    pub max_completion_tokens: Option<u64>,
    /// `max_output_tokens` (OpenAI Responses).
    pub max_output_tokens: Option<u64>,
}

impl OutputLimits {
    /// The names of the limit fields, in the order of the struct.
    pub const FIELDS: [&'static str; 3] = ["max_tokens", "max_completion_tokens", "max_output_tokens"];

    /// The tightest limit set, if any (a request with two is refused by the provider, or bound by
    /// the smaller).
    pub fn tightest(&self) -> Option<u64> {
        [self.max_tokens, self.max_completion_tokens, self.max_output_tokens].into_iter().flatten().min()
    }
}

/// Inspects a request body and, for an OpenAI-style streamed completion that did not ask for usage,
/// asks for it.
///
/// For `openai` and `deepseek`, when the body is a JSON object with `"stream": true`, is a Chat
/// Completions (`messages`) or legacy Completions (string or array `prompt`) request, and does not
/// already carry `stream_options.include_usage: true`, the body gets
/// `stream_options.include_usage = true` (other `stream_options` members keep their values byte for
/// byte; everything outside `stream_options` is untouched) and
/// [`Prepared::injected_usage`] is set. The Responses API (`input`) always reports usage in its
/// `response.completed` event and rejects `include_usage`, so it is left alone, as is every other
/// body: non-JSON, non-object, non-streamed and Anthropic bodies pass through byte-identical.
pub fn prepare_request(provider: Provider, body: &[u8]) -> Prepared {
    prepare_request_bytes(provider, Bytes::copy_from_slice(body))
}

/// [`prepare_request`] for a body already held as [`Bytes`]: an unchanged body is returned without
/// a copy.
pub fn prepare_request_bytes(provider: Provider, body: Bytes) -> Prepared {
    let mut prepared = Prepared {
        body: body.clone(),
        stream: false,
        model: None,
        injected_usage: false,
        limits: OutputLimits::default(),
        choices: 1,
    };
    let Ok(text) = std::str::from_utf8(&body) else { return prepared };
    let Some(members) = Members::parse(text) else { return prepared };
    prepared.stream = members.get("stream").is_some_and(|v| v.get() == "true");
    prepared.model = members.get("model").and_then(json_string);
    let count = |name: &str| members.get(name).and_then(|v| v.get().parse::<u64>().ok());
    prepared.limits = OutputLimits {
        max_tokens: count("max_tokens"),
        max_completion_tokens: count("max_completion_tokens"),
        max_output_tokens: count("max_output_tokens"),
    };
    prepared.choices = count("n").max(count("best_of")).unwrap_or(1).max(1);
    if !prepared.stream || provider == Provider::Anthropic || !accepts_include_usage(&members) {
        return prepared;
    }
    if let Some(body) = with_include_usage(text, &members) {
        prepared.body = Bytes::from(body);
        prepared.injected_usage = true;
    }
    prepared
}

/// Whether the endpoint the body is meant for takes `stream_options.include_usage`: Chat Completions
/// (`messages`) and legacy Completions (a string or array `prompt`; the Responses API's `prompt` is
/// an object).
fn accepts_include_usage(members: &Members<'_>) -> bool {
    members.get("messages").is_some()
        || members.get("prompt").is_some_and(|v| v.get().starts_with('"') || v.get().starts_with('['))
}

/// The body with `stream_options.include_usage = true`, or `None` when it already asks for usage or
/// its `stream_options` is not an object (an invalid request is forwarded as the client wrote it).
fn with_include_usage(text: &str, members: &Members<'_>) -> Option<String> {
    const INCLUDE: &str = r#""include_usage":true"#;
    let Some(options) = members.get("stream_options") else {
        // Insert as the first member: the object is not empty (it has `stream`).
        let open = offset_in(text, text.trim_start()) + 1;
        return Some(format!("{}\"stream_options\":{{{INCLUDE}}},{}", &text[..open], &text[open..]));
    };
    let raw = options.get();
    let replacement = if raw == "null" {
        format!("{{{INCLUDE}}}")
    } else {
        let inner = Members::parse(raw)?;
        if inner.get("include_usage").is_some_and(|v| v.get() == "true") {
            return None;
        }
        let mut object = String::with_capacity(raw.len() + INCLUDE.len() + 1);
        object.push('{');
        for (key, value) in inner.0.iter().filter(|(key, _)| key.0 != "include_usage") {
            object.push_str(&serde_json::to_string(&*key.0).ok()?);
            object.push(':');
            object.push_str(value.get());
            object.push(',');
        }
        object.push_str(INCLUDE);
        object.push('}');
        object
    };
    let start = offset_in(text, raw);
    Some(format!("{}{replacement}{}", &text[..start], &text[start + raw.len()..]))
}

/// The body with its output limit set to `value`: every limit field it has
/// ([`OutputLimits::FIELDS`]) gets `value`, and when it has none, `field` is added (as the first
/// member). Everything else stays byte for byte. `None` when the body is not a JSON object.
pub fn with_output_limit(body: &[u8], field: &str, value: u64) -> Option<Bytes> {
    let text = std::str::from_utf8(body).ok()?;
    let members = Members::parse(text)?;
    let mut present: Vec<&RawValue> =
        members.0.iter().filter(|(key, _)| OutputLimits::FIELDS.contains(&&*key.0)).map(|(_, v)| *v).collect();
    if present.is_empty() {
        let open = offset_in(text, text.trim_start()) + 1;
        let rest = &text[open..];
        let comma = if rest.trim_start().starts_with('}') { "" } else { "," };
        let field = serde_json::to_string(field).ok()?;
        return Some(Bytes::from(format!("{}{field}:{value}{comma}{rest}", &text[..open])));
    }
    present.sort_by_key(|v| offset_in(text, v.get()));
    let mut out = String::with_capacity(text.len() + 8);
    let mut at = 0;
    for raw in present {
        let start = offset_in(text, raw.get());
        out.push_str(&text[at..start]);
        out.push_str(&value.to_string());
        at = start + raw.get().len();
    }
    out.push_str(&text[at..]);
    Some(Bytes::from(out))
}

/// Usage from a non-streamed JSON response body; `None` when the body is not JSON or reports no
/// usage (an error body, for instance).
pub fn from_json_body(provider: Provider, body: &[u8], request_model: Option<&str>) -> Option<Usage> {
    let text = std::str::from_utf8(body).ok()?;
    let members = Members::parse(text)?;
    let mut acc = Accumulator::default();
    if let Some(model) = members.get("model").and_then(json_string) {
        acc.model = Some(model);
    }
    if let Some(usage) = members.get("usage") {
        acc.apply(provider, usage);
    }
    acc.usage(request_model)
}

/// Longest SSE line or event data the tap parses (a usage event is a few hundred bytes). Longer
/// events are forwarded untouched and not inspected.
const MAX_EVENT_BYTES: usize = 1 << 20;

/// An incremental reader of a server-sent-event response that records the usage it reports and,
/// when usage was asked for on the client's behalf, hides it from the client.
///
/// Feed it the upstream's chunks as they arrive — they may split anywhere, inside a UTF-8 character
/// or between `\r` and `\n` — and forward what [`StreamTap::push`] returns at once. Lines may end in
/// `\n`, `\r\n` or `\r`; an event ends at a blank line.
///
/// * Without injected usage the tap is a pure observer: `push` returns exactly its input, at once
///   (with [`StreamTap::push_bytes`], the very same buffer), and parses a copy of the event data.
/// * With injected usage it holds back the bytes of the event in progress and releases each event
///   as soon as its blank line arrives, minus what the client did not ask for: the usage-only chunk
///   (`"choices":[]` with a `usage` object) is dropped whole, and a `usage` member on any other chunk
///   (OpenAI adds `"usage":null` to every chunk once usage is requested) is cut out of its JSON.
///   Every other byte, `data: [DONE]`, comments, `event:`/`id:` lines and the line endings included,
///   is forwarded unchanged.
#[derive(Debug)]
pub struct StreamTap(Box<TapState>);

impl StreamTap {
    /// A tap for a response from `provider`. `injected_usage` is [`Prepared::injected_usage`];
    /// `request_model` is the fallback model name.
    pub fn new(provider: Provider, injected_usage: bool, request_model: Option<String>) -> StreamTap {
        StreamTap(Box::new(TapState::new(provider, injected_usage, request_model)))
    }

    /// Takes the next chunk from upstream; returns the bytes to send the client now (possibly empty).
    pub fn push(&mut self, chunk: &[u8]) -> Bytes {
        self.0.push(chunk)
    }

    /// [`StreamTap::push`] for a chunk already held as [`Bytes`]: without injected usage the chunk
    /// itself is returned (no copy), and with it complete events are sliced out of it where possible.
    pub fn push_bytes(&mut self, chunk: Bytes) -> Bytes {
        self.0.push_bytes(chunk)
    }

    /// The usage reported so far.
    pub fn usage(&self) -> Option<Usage> {
        self.0.usage()
    }

    /// Ends the stream: returns the bytes still held back (an unterminated last event is completed
    /// as if its blank line had arrived) and the usage the stream reported, `None` if none.
    pub fn finish(self) -> (Bytes, Option<Usage>) {
        let (rest, report) = self.finish_report();
        (rest, report.usage)
    }

    /// [`StreamTap::finish`], with everything else the stream showed: whether its usage is final
    /// and how much content it carried (for an estimate when it is not).
    pub fn finish_report(self) -> (Bytes, StreamReport) {
        self.0.finish()
    }
}

/// What a stream reported, read at its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamReport {
    /// The usage reported, `None` if none.
    pub usage: Option<Usage>,
    /// Whether that usage is the provider's final count: OpenAI's and DeepSeek's usage chunk, the
    /// Responses API's `response.completed` (or `.incomplete`, `.failed`), Anthropic's
    /// `message_delta`. Anthropic's `message_start` alone is not (its output count is 1).
    pub final_usage: bool,
    /// UTF-8 bytes of generated text in the stream's deltas (content, reasoning, refusals, tool-call
    /// arguments): no fewer than the output tokens they encode, since every token is at least a byte.
    pub content_bytes: u64,
}

/// The tap's state (boxed: a response future carrying a tap stays small).
#[derive(Debug)]
struct TapState {
    provider: Provider,
    injected: bool,
    request_model: Option<String>,
    acc: Accumulator,
    /// Stream offset of the next byte pushed.
    pos: u64,
    /// Stream offset of the line in progress.
    line_start: u64,
    /// The line in progress, when it began in an earlier chunk.
    line: Vec<u8>,
    line_overflow: bool,
    /// The last byte seen was a `\r` ending a line; `Some(true)` when that line was blank.
    after_cr: Option<bool>,
    /// The data of the event in progress, one `\n`-terminated line per `data:` field.
    data: Vec<u8>,
    data_lines: u32,
    data_overflow: bool,
    /// Stream offset of the first `data:` value of the event in progress.
    data_start: u64,
    /// Stream offset where the event in progress began.
    event_start: u64,
    // Output bookkeeping, used only with injected usage.
    /// Stream offset up to which bytes have been released (or dropped).
    emitted: u64,
    /// Stream offset up to which the fate of every byte is known.
    decided: u64,
    /// Bytes from `emitted` to `pos`.
    held: Vec<u8>,
    /// Stream ranges to leave out, in order, all within `emitted..decided`.
    cuts: Vec<(u64, u64)>,
    last_event_dropped: bool,
}

impl TapState {
    fn new(provider: Provider, injected_usage: bool, request_model: Option<String>) -> TapState {
        TapState {
            provider,
            injected: injected_usage && provider != Provider::Anthropic,
            request_model,
            acc: Accumulator::default(),
            pos: 0,
            line_start: 0,
            line: Vec::new(),
            line_overflow: false,
            after_cr: None,
            data: Vec::new(),
            data_lines: 0,
            data_overflow: false,
            data_start: 0,
            event_start: 0,
            emitted: 0,
            decided: 0,
            held: Vec::new(),
            cuts: Vec::new(),
            last_event_dropped: false,
        }
    }

    fn push(&mut self, chunk: &[u8]) -> Bytes {
        if self.injected {
            self.push_bytes(Bytes::copy_from_slice(chunk))
        } else {
            self.scan(chunk);
            Bytes::copy_from_slice(chunk)
        }
    }

    fn push_bytes(&mut self, chunk: Bytes) -> Bytes {
        let base = self.pos;
        self.scan(&chunk);
        if !self.injected {
            return chunk;
        }
        if self.line_overflow || self.data_overflow {
            // An event this large is never usage: release it as it comes.
            self.decided = self.pos;
        }
        self.release(&chunk, base)
    }

    fn usage(&self) -> Option<Usage> {
        self.acc.usage(self.request_model.as_deref())
    }

    fn finish(mut self) -> (Bytes, StreamReport) {
        if self.line_start < self.pos {
            let line = std::mem::take(&mut self.line);
            let overflow = self.line_overflow;
            self.on_line(&line, overflow, self.line_start);
            self.line_start = self.pos;
        }
        if self.data_lines > 0 || self.data_overflow {
            self.dispatch(self.pos);
        }
        let rest = if self.injected {
            self.decided = self.pos;
            self.release(&Bytes::new(), self.pos)
        } else {
            Bytes::new()
        };
        let report = StreamReport {
            usage: self.usage(),
            final_usage: self.acc.final_usage,
            content_bytes: self.acc.content_bytes,
        };
        (rest, report)
    }

    /// Splits a chunk into lines and lines into events.
    fn scan(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        let base = self.pos;
        self.pos += chunk.len() as u64;
        let mut i = 0;
        if let Some(blank) = self.after_cr.take()
            && chunk.first() == Some(&b'\n')
        {
            // The second half of a `\r\n` split across chunks.
            i = 1;
            self.line_start = base + 1;
            if blank {
                self.absorb_lf(base);
            }
        }
        while let Some(k) = chunk[i..].iter().position(|&b| b == b'\n' || b == b'\r') {
            let end = i + k;
            let mut next = end + 1;
            let mut crlf_pending = None;
            if chunk[end] == b'\r' {
                match chunk.get(end + 1) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    None => crlf_pending = Some(()),
                }
            }
            let blank = if self.line.is_empty() && !self.line_overflow {
                self.on_line(&chunk[i..end], false, self.line_start)
            } else {
                self.extend_line(&chunk[i..end]);
                let line = std::mem::take(&mut self.line);
                let overflow = std::mem::replace(&mut self.line_overflow, false);
                let blank = self.on_line(&line, overflow, self.line_start);
                self.line = line;
                self.line.clear();
                blank
            };
            if blank {
                self.dispatch(base + next as u64);
            }
            if crlf_pending.is_some() {
                self.after_cr = Some(blank);
            }
            i = next;
            self.line_start = base + i as u64;
        }
        if i < chunk.len() {
            self.extend_line(&chunk[i..]);
        }
    }

    fn extend_line(&mut self, bytes: &[u8]) {
        if self.line_overflow {
            return;
        }
        if self.line.len() + bytes.len() > MAX_EVENT_BYTES {
            self.line_overflow = true;
            self.line = Vec::new();
        } else {
            self.line.extend_from_slice(bytes);
        }
    }

    /// Handles one complete line (without its ending); returns whether it was blank.
    fn on_line(&mut self, line: &[u8], overflow: bool, start: u64) -> bool {
        if overflow {
            self.data_overflow = true;
            return false;
        }
        if line.is_empty() {
            return true;
        }
        if line[0] == b':' {
            return false; // a comment
        }
        let (name, value_at) = match line.iter().position(|&b| b == b':') {
            Some(colon) if line.get(colon + 1) == Some(&b' ') => (&line[..colon], colon + 2),
            Some(colon) => (&line[..colon], colon + 1),
            None => (line, line.len()),
        };
        if name == b"data" {
            if self.data_lines == 0 {
                self.data_start = start + value_at as u64;
            }
            self.data_lines += 1;
            let value = &line[value_at..];
            if self.data.len() + value.len() + 1 > MAX_EVENT_BYTES {
                self.data_overflow = true;
                self.data = Vec::new();
            } else if !self.data_overflow {
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
            }
        }
        // `event:`, `id:`, `retry:` and unknown fields carry nothing we need: the payloads name
        // their own type.
        false
    }

    /// Ends the event in progress at stream offset `end` (just past its blank line).
    fn dispatch(&mut self, end: u64) {
        let start = std::mem::replace(&mut self.event_start, end);
        let mut verdict = Verdict::Keep;
        if self.data_lines > 0 && !self.data_overflow {
            let data = &self.data[..self.data.len() - 1];
            verdict = observe_event(self.provider, data, &mut self.acc, self.injected);
        }
        let single_line = self.data_lines == 1;
        self.data.clear();
        self.data_lines = 0;
        self.data_overflow = false;
        if !self.injected {
            return;
        }
        match verdict {
            Verdict::Drop => self.cuts.push((start, end)),
            Verdict::Cut(from, to) if single_line => {
                self.cuts.push((self.data_start + from as u64, self.data_start + to as u64));
            }
            _ => {}
        }
        self.last_event_dropped = verdict == Verdict::Drop;
        self.decided = end;
    }

    /// The `\n` at stream offset `at` completes the `\r\n` that ended the previous event: it shares
    /// that event's fate.
    fn absorb_lf(&mut self, at: u64) {
        self.event_start = at + 1;
        if self.injected {
            if self.last_event_dropped {
                self.cuts.push((at, at + 1));
            }
            self.decided = at + 1;
        }
    }

    /// Releases the decided bytes (`emitted..decided`) minus the cuts; keeps the rest held.
    /// `chunk` holds stream offsets `base..self.pos`, `held` holds `emitted..base`.
    fn release(&mut self, chunk: &Bytes, base: u64) -> Bytes {
        let to = self.decided;
        if to == self.emitted {
            self.held.extend_from_slice(chunk);
            return Bytes::new();
        }
        if self.held.is_empty() && self.cuts.is_empty() {
            // Fast path: whole events at the front of this chunk, nothing removed.
            let n = (to - base) as usize;
            self.held.extend_from_slice(&chunk[n..]);
            self.emitted = to;
            return chunk.slice(..n);
        }
        self.held.extend_from_slice(chunk);
        let start = self.emitted;
        let mut out = Vec::with_capacity((to - start) as usize);
        let mut at = start;
        for (from, until) in self.cuts.drain(..) {
            out.extend_from_slice(&self.held[(at - start) as usize..(from - start) as usize]);
            at = until;
        }
        out.extend_from_slice(&self.held[(at - start) as usize..(to - start) as usize]);
        self.held.drain(..(to - start) as usize);
        self.emitted = to;
        Bytes::from(out)
    }
}

/// What the client should see of an event when usage was injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Keep,
    /// The usage-only chunk: leave the whole event out.
    Drop,
    /// Leave out this byte range of the event's data (the `usage` member).
    Cut(usize, usize),
}

/// Records the usage an event's data reports and decides what the client sees of it.
fn observe_event(provider: Provider, data: &[u8], acc: &mut Accumulator, injected: bool) -> Verdict {
    acc.content_bytes = acc.content_bytes.saturating_add(content_bytes(data));
    if !contains(data, br#""usage""#) {
        return Verdict::Keep; // most events: content deltas, pings, `[DONE]`
    }
    let Ok(text) = std::str::from_utf8(data) else { return Verdict::Keep };
    let Some(members) = Members::parse(text) else { return Verdict::Keep };
    if let Some(model) = members.get("model").and_then(json_string) {
        acc.model = Some(model);
    }
    // Anthropic's `message_start` and the Responses API's `response.*` events nest the message.
    let nested = match provider {
        Provider::Anthropic => "message",
        Provider::Openai | Provider::Deepseek => "response",
    };
    if let Some(inner) = members.get(nested).and_then(|raw| Members::parse(raw.get())) {
        if let Some(model) = inner.get("model").and_then(json_string) {
            acc.model = Some(model);
        }
        if let Some(usage) = inner.get("usage") {
            // The Responses API's last event carries the final usage in `response`; Anthropic's
            // `message_start` only the input (its output count is a placeholder).
            let applied = acc.apply(provider, usage);
            acc.final_usage |= applied && provider != Provider::Anthropic;
        }
    }
    let Some(usage) = members.get("usage") else { return Verdict::Keep };
    acc.final_usage |= acc.apply(provider, usage);
    if !injected {
        return Verdict::Keep;
    }
    if members.get("choices").is_some_and(is_empty_array) && usage.get() != "null" {
        return Verdict::Drop;
    }
    members.member_range(text, "usage").map_or(Verdict::Keep, |(from, to)| Verdict::Cut(from, to))
}

/// Bytes of generated text in one event's data (see [`StreamReport::content_bytes`]): OpenAI and
/// DeepSeek `choices[].delta.{content, reasoning_content, refusal, tool_calls[].function.arguments}`
/// and legacy `choices[].text`; the Responses API's `*.delta` strings; Anthropic's
/// `delta.{text, partial_json, thinking}`. Data that is not JSON (`[DONE]`) counts nothing; a JSON
/// object of an unexpected shape counts its whole length, so the count stays an upper bound.
fn content_bytes(data: &[u8]) -> u64 {
    let trimmed = data.trim_ascii_start();
    if trimmed.first() != Some(&b'{') {
        return 0;
    }
    // Most events carry no text at all (pings, stops, usage); skip parsing those.
    const KEYS: [&[u8]; 6] =
        [br#""content""#, br#""delta""#, br#""text""#, br#""arguments""#, br#""partial_json""#, br#""thinking""#];
    if !KEYS.iter().any(|k| contains(data, k)) {
        return 0;
    }
    let Ok(event) = serde_json::from_slice::<ContentEvent<'_>>(trimmed) else { return data.len() as u64 };
    let len = |s: &Option<Cow<'_, str>>| s.as_ref().map_or(0, |s| s.len() as u64);
    let delta_len = |d: &ContentDelta<'_>| {
        len(&d.content)
            + len(&d.reasoning_content)
            + len(&d.refusal)
            + len(&d.text)
            + len(&d.partial_json)
            + len(&d.thinking)
            + d.tool_calls.iter().flatten().filter_map(|c| c.function.as_ref()).map(|f| len(&f.arguments)).sum::<u64>()
    };
    let mut total = 0;
    for choice in event.choices.iter().flatten() {
        total += len(&choice.text) + choice.delta.as_ref().map_or(0, delta_len);
    }
    if let Some(delta) = event.delta {
        let raw = delta.get();
        if raw.starts_with('"') {
            total += serde_json::from_str::<Cow<'_, str>>(raw).map_or(raw.len(), |s| s.len()) as u64;
        } else if raw.starts_with('{') {
            total += serde_json::from_str::<ContentDelta<'_>>(raw).map_or(raw.len() as u64, |d| delta_len(&d));
        }
    }
    total
}

/// The parts of a stream event that carry generated text.
#[derive(serde::Deserialize)]
struct ContentEvent<'a> {
    #[serde(default, borrow)]
    choices: Option<Vec<ContentChoice<'a>>>,
    #[serde(default, borrow)]
    delta: Option<&'a RawValue>,
}

#[derive(serde::Deserialize)]
struct ContentChoice<'a> {
    #[serde(default, borrow)]
    delta: Option<ContentDelta<'a>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct ContentDelta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    refusal: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    thinking: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<ToolCallDelta<'a>>>,
}

#[derive(serde::Deserialize)]
struct ToolCallDelta<'a> {
    #[serde(default, borrow)]
    function: Option<FunctionDelta<'a>>,
}

#[derive(serde::Deserialize)]
struct FunctionDelta<'a> {
    #[serde(default, borrow)]
    arguments: Option<Cow<'a, str>>,
}

/// Usage fields seen so far; each is overwritten by a later report, never added to.
#[derive(Debug, Default)]
struct Accumulator {
    seen: bool,
    /// A report that ends the count was seen (see [`StreamReport::final_usage`]).
    final_usage: bool,
    /// See [`StreamReport::content_bytes`].
    content_bytes: u64,
    model: Option<String>,
    input: Option<u64>,
    output: Option<u64>,
    cache_read: Option<u64>,
    cache_write: Option<u64>,
}

impl Accumulator {
    /// Applies a `usage` object; returns whether it reported anything.
    fn apply(&mut self, provider: Provider, raw: &RawValue) -> bool {
        let Ok(Value::Object(usage)) = serde_json::from_str::<Value>(raw.get()) else { return false };
        let before = self.seen;
        self.seen = false;
        match provider {
            Provider::Anthropic => self.apply_anthropic(&usage),
            Provider::Openai | Provider::Deepseek => self.apply_openai(&usage),
        }
        let applied = self.seen;
        self.seen |= before;
        applied
    }

    /// Anthropic: `input_tokens` excludes the cache classes; a stream's later reports are
    /// cumulative, so each field present replaces the one before.
    fn apply_anthropic(&mut self, usage: &Map<String, Value>) {
        let count = |name: &str| usage.get(name).and_then(Value::as_u64);
        let cache_write = count("cache_creation_input_tokens").or_else(|| {
            // Only the per-TTL breakdown given: its sum.
            let by_ttl = usage.get("cache_creation")?.as_object()?;
            by_ttl.values().map(Value::as_u64).sum()
        });
        for (slot, value) in [
            (&mut self.input, count("input_tokens")),
            (&mut self.output, count("output_tokens")),
            (&mut self.cache_read, count("cache_read_input_tokens")),
            (&mut self.cache_write, cache_write),
        ] {
            if value.is_some() {
                *slot = value;
                self.seen = true;
            }
        }
    }

    /// OpenAI and DeepSeek: one report holds the whole usage; the prompt count includes cached
    /// (and cache-write) tokens.
    fn apply_openai(&mut self, usage: &Map<String, Value>) {
        let count = |name: &str| usage.get(name).and_then(Value::as_u64);
        let (prompt, details, output) = if let Some(prompt) = count("prompt_tokens") {
            (prompt, "prompt_tokens_details", count("completion_tokens"))
        } else if let Some(input) = count("input_tokens") {
            (input, "input_tokens_details", count("output_tokens"))
        } else {
            return;
        };
        let detail = |name: &str| usage.get(details)?.get(name)?.as_u64();
        let mut cache_read = detail("cached_tokens").unwrap_or(0);
        let cache_write = detail("cache_write_tokens").or_else(|| detail("cache_creation_tokens")).unwrap_or(0);
        if let Some(hit) = count("prompt_cache_hit_tokens") {
            cache_read = hit;
        }
        let input = count("prompt_cache_miss_tokens")
            .unwrap_or_else(|| prompt.saturating_sub(cache_read).saturating_sub(cache_write));
        self.input = Some(input);
        self.output = Some(output.unwrap_or(0));
        self.cache_read = Some(cache_read);
        self.cache_write = Some(cache_write);
        self.seen = true;
    }

    fn usage(&self, request_model: Option<&str>) -> Option<Usage> {
        self.seen.then(|| Usage {
            model: self.model.clone().or_else(|| request_model.map(str::to_owned)),
            input_tokens: self.input.unwrap_or(0),
            output_tokens: self.output.unwrap_or(0),
            cache_read_tokens: self.cache_read.unwrap_or(0),
            cache_write_tokens: self.cache_write.unwrap_or(0),
        })
    }
}

/// The members of a JSON object in order, borrowing their raw text from the document.
struct Members<'a>(Vec<(Key<'a>, &'a RawValue)>);

impl<'a> Members<'a> {
    /// `None` unless `text` is exactly one JSON object.
    fn parse(text: &'a str) -> Option<Members<'a>> {
        if !text.trim_start().starts_with('{') {
            return None;
        }
        serde_json::from_str(text).ok()
    }

    /// The last member named `name` (the one a JSON parser keeps).
    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0.iter().rev().find(|(key, _)| key.0 == name).map(|(_, value)| *value)
    }

    /// The byte range of `text` (the parsed document) to remove to delete the member `name` with
    /// its separating comma; `None` unless it occurs exactly once and its neighbours' keys are
    /// written without escapes (so their positions are known).
    fn member_range(&self, text: &str, name: &str) -> Option<(usize, usize)> {
        let mut found = self.0.iter().enumerate().filter(|(_, (key, _))| key.0 == name);
        let (index, (key, value)) = found.next()?;
        if found.next().is_some() {
            return None;
        }
        let value_end = offset_in(text, value.get()) + value.get().len();
        if let Some((_, previous)) = index.checked_sub(1).and_then(|i| self.0.get(i)) {
            let previous_end = offset_in(text, previous.get()) + previous.get().len();
            return Some((previous_end, value_end));
        }
        let key_start = key.quote_offset(text)?;
        match self.0.get(index + 1) {
            Some((next, _)) => Some((key_start, next.quote_offset(text)?)),
            None => Some((key_start, value_end)),
        }
    }
}

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    members.push((key, map.next_value::<&'de RawValue>()?));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// An object key: borrowed from the document unless it had to be unescaped.
struct Key<'a>(Cow<'a, str>);

impl Key<'_> {
    /// Offset in `text` of the key's opening quote, when the key is borrowed from `text`.
    fn quote_offset(&self, text: &str) -> Option<usize> {
        match &self.0 {
            Cow::Borrowed(key) => offset_in(text, key).checked_sub(1),
            Cow::Owned(_) => None,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Offset of `inner` within `outer`; `inner` must be a slice of `outer`.
fn offset_in(outer: &str, inner: &str) -> usize {
    inner.as_ptr() as usize - outer.as_ptr() as usize
}

fn json_string(raw: &RawValue) -> Option<String> {
    serde_json::from_str(raw.get()).ok()
}

fn is_empty_array(raw: &RawValue) -> bool {
    raw.get().starts_with('[')
        && serde_json::from_str::<Vec<serde::de::IgnoredAny>>(raw.get()).is_ok_and(|items| items.is_empty())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const OPENAI: Provider = Provider::Openai;
    const ANTHROPIC: Provider = Provider::Anthropic;
    const DEEPSEEK: Provider = Provider::Deepseek;

    /// A usage record, for tests here and in `pricing`.
    pub(crate) fn usage(model: &str, input: u64, output: u64, cache_read: u64, cache_write: u64) -> Usage {
        Usage {
            model: Some(model.to_owned()),
            input_tokens: input,
            output_tokens: output,
            cache_read_tokens: cache_read,
            cache_write_tokens: cache_write,
        }
    }

    fn json(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    // ---- prepare_request ----

    #[test]
    fn injects_include_usage_into_a_streamed_chat_completion() {
        let body = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi"}],"stream":true}"#;
        let prepared = prepare_request(OPENAI, body);
        assert!(prepared.stream && prepared.injected_usage);
        assert_eq!(prepared.model.as_deref(), Some("gpt-4o-mini"));
        let mut expected = json(body);
        expected["stream_options"] = serde_json::json!({"include_usage": true});
        assert_eq!(json(&prepared.body), expected);
        // The client's own bytes are all still there, in order.
        assert_eq!(
            &prepared.body[..],
            br#"{"stream_options":{"include_usage":true},"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi"}],"stream":true}"#
        );
    }

    #[test]
    fn keeps_other_stream_options_and_overrides_include_usage_false() {
        let body = br#" { "model": "deepseek-chat", "messages": [], "stream": true, "stream_options": {"include_obfuscation": false, "include_usage": false}, "n": 1 }"#;
        let prepared = prepare_request(DEEPSEEK, body);
        assert!(prepared.injected_usage);
        assert_eq!(
            std::str::from_utf8(&prepared.body).unwrap(),
            r#" { "model": "deepseek-chat", "messages": [], "stream": true, "stream_options": {"include_obfuscation":false,"include_usage":true}, "n": 1 }"#
        );
        let null_options = br#"{"model":"gpt-4o","messages":[],"stream":true,"stream_options":null}"#;
        let prepared = prepare_request(OPENAI, null_options);
        assert!(prepared.injected_usage);
        assert_eq!(json(&prepared.body)["stream_options"], serde_json::json!({"include_usage": true}));
        let legacy = br#"{"model":"gpt-3.5-turbo-instruct","prompt":"Say hi","stream":true}"#;
        assert!(prepare_request(OPENAI, legacy).injected_usage);
    }

    #[test]
    fn passes_other_bodies_through_byte_identical() {
        let cases: &[(Provider, &[u8])] = &[
            (OPENAI, br#"{"model":"gpt-4o","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#),
            (OPENAI, br#"{"model":"gpt-4o","messages":[],"stream":false}"#),
            (OPENAI, br#"{"model":"gpt-4o","messages":[]}"#),
            (OPENAI, br#"{"model":"gpt-4o","messages":[],"stream":"yes"}"#),
            (OPENAI, br#"{"model":"gpt-4o","messages":[],"stream":true,"stream_options":"bad"}"#),
            (OPENAI, br#"{"model":"gpt-5","input":"Hi","stream":true}"#), // Responses API
            (ANTHROPIC, br#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[],"stream":true}"#),
            (OPENAI, b"not json"),
            (OPENAI, br#"[{"stream":true}]"#),
            (OPENAI, br#""stream""#),
            (OPENAI, b""),
            (OPENAI, b"\xff\xfe{"),
            (OPENAI, br#"{"model":"gpt-4o","messages":[],"stream":true"#), // truncated
        ];
        for (provider, body) in cases {
            let prepared = prepare_request(*provider, body);
            assert!(!prepared.injected_usage, "{}", String::from_utf8_lossy(body));
            assert_eq!(&prepared.body[..], *body);
        }
        let anthropic = prepare_request(ANTHROPIC, cases[6].1);
        assert!(anthropic.stream);
        assert_eq!(anthropic.model.as_deref(), Some("claude-sonnet-4-5"));
        let bytes = Bytes::from_static(br#"{"model":"gpt-4o","messages":[]}"#);
        let prepared = prepare_request_bytes(OPENAI, bytes.clone());
        assert_eq!(prepared.body.as_ptr(), bytes.as_ptr(), "no copy");
    }

    #[test]
    fn duplicate_keys_follow_the_last_one() {
        let body = br#"{"model":"gpt-4o","messages":[],"stream":false,"stream":true}"#;
        assert!(prepare_request(OPENAI, body).injected_usage);
        let body = br#"{"model":"gpt-4o","messages":[],"stream":true,"stream":false}"#;
        assert!(!prepare_request(OPENAI, body).stream);
    }

    // ---- JSON bodies ----

    const OPENAI_JSON: &str = r#"{
  "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
  "object": "chat.completion",
  "created": 1741570283,
  "model": "gpt-4o-2024-08-06",
  "choices": [
    {
      "index": 0,
      "message": {
        "role": "assistant",
        "content": "The image shows a wooden boardwalk extending through a lush green marshland.",
        "refusal": null,
        "annotations": []
      },
      "logprobs": null,
      "finish_reason": "stop"
    }
  ],
  "usage": {
    "prompt_tokens": 1117,
    "completion_tokens": 46,
    "total_tokens": 1163,
    "prompt_tokens_details": {
      "cached_tokens": 1024,
      "audio_tokens": 0
    },
    "completion_tokens_details": {
      "reasoning_tokens": 0,
      "audio_tokens": 0,
      "accepted_prediction_tokens": 0,
      "rejected_prediction_tokens": 0
    }
  },
  "service_tier": "default",
  "system_fingerprint": "fp_fc9f1d7035"
}"#;

    #[test]
    fn openai_json_subtracts_cached_tokens_from_the_prompt() {
        let got = from_json_body(OPENAI, OPENAI_JSON.as_bytes(), Some("gpt-4o")).unwrap();
        assert_eq!(got, usage("gpt-4o-2024-08-06", 1117 - 1024, 46, 1024, 0));
    }

    #[test]
    fn openai_json_without_details_or_model() {
        let body = br#"{"object":"chat.completion","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}"#;
        assert_eq!(from_json_body(OPENAI, body, Some("gpt-4o-mini")).unwrap(), usage("gpt-4o-mini", 9, 12, 0, 0));
        assert_eq!(from_json_body(OPENAI, body, None).unwrap().model, None);
        let write = br#"{"model":"gpt-6-sol","usage":{"prompt_tokens":5000,"completion_tokens":10,"prompt_tokens_details":{"cached_tokens":1000,"cache_write_tokens":3000}}}"#;
        assert_eq!(from_json_body(OPENAI, write, None).unwrap(), usage("gpt-6-sol", 1000, 10, 1000, 3000));
    }

    #[test]
    fn openai_responses_api_json() {
        let body = br#"{"id":"resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b","object":"response","created_at":1741476542,"status":"completed","model":"gpt-4.1-2025-04-14","output":[{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"Hi","annotations":[]}]}],"usage":{"input_tokens":2006,"input_tokens_details":{"cached_tokens":1920},"output_tokens":300,"output_tokens_details":{"reasoning_tokens":128},"total_tokens":2306}}"#;
        assert_eq!(from_json_body(OPENAI, body, None).unwrap(), usage("gpt-4.1-2025-04-14", 86, 300, 1920, 0));
    }

    #[test]
    fn anthropic_json_counts_cache_reads_and_writes_separately() {
        let body = br#"{
  "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
  "type": "message",
  "role": "assistant",
  "model": "claude-sonnet-4-5-20250929",
  "content": [{"type": "text", "text": "Hello!"}],
  "stop_reason": "end_turn",
  "stop_sequence": null,
  "usage": {
    "input_tokens": 12,
    "cache_creation_input_tokens": 2048,
    "cache_read_input_tokens": 1800,
    "cache_creation": {"ephemeral_5m_input_tokens": 2048, "ephemeral_1h_input_tokens": 0},
    "output_tokens": 27,
    "service_tier": "standard"
  }
}"#;
        let got = from_json_body(ANTHROPIC, body, Some("claude-sonnet-4-5")).unwrap();
        assert_eq!(got, usage("claude-sonnet-4-5-20250929", 12, 27, 1800, 2048));
        // The same body read as OpenAI would miss the cache classes: the provider decides.
        assert_eq!(from_json_body(OPENAI, body, None).unwrap().cache_write_tokens, 0);
    }

    #[test]
    fn deepseek_json_uses_hit_and_miss_counts() {
        let body = br#"{"id":"930c60df-bf64-41c9-a88e-3ec75f81e00e","object":"chat.completion","created":1737962043,"model":"deepseek-chat","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1500,"completion_tokens":200,"total_tokens":1700,"prompt_tokens_details":{"cached_tokens":1280},"prompt_cache_hit_tokens":1280,"prompt_cache_miss_tokens":220},"system_fingerprint":"fp_3a5770e1b4_prod0225"}"#;
        assert_eq!(from_json_body(DEEPSEEK, body, None).unwrap(), usage("deepseek-chat", 220, 200, 1280, 0));
        // Hit/miss win over cached_tokens when they disagree.
        let body = br#"{"model":"deepseek-reasoner","usage":{"prompt_tokens":100,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":0},"prompt_cache_hit_tokens":64,"prompt_cache_miss_tokens":36,"completion_tokens_details":{"reasoning_tokens":3}}}"#;
        assert_eq!(from_json_body(DEEPSEEK, body, None).unwrap(), usage("deepseek-reasoner", 36, 5, 64, 0));
    }

    #[test]
    fn missing_usage_and_garbage_give_none() {
        let bodies: &[&[u8]] = &[
            br#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#,
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            br#"{"model":"gpt-4o","usage":null}"#,
            br#"{"model":"gpt-4o","usage":"lots"}"#,
            br#"{"model":"gpt-4o","usage":{"total_tokens":5}}"#,
            b"",
            b"<html>502 Bad Gateway</html>",
            b"\xc3\x28\x00\xff",
            br#"[1,2,3]"#,
            br#"{"usage":{"prompt_tokens":1"#,
            b"{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{",
        ];
        for provider in [OPENAI, ANTHROPIC, DEEPSEEK] {
            for body in bodies {
                assert_eq!(from_json_body(provider, body, Some("m")), None, "{}", String::from_utf8_lossy(body));
            }
        }
        // Nonsense counts do not underflow.
        let body =
            br#"{"usage":{"prompt_tokens":5,"completion_tokens":-1,"prompt_tokens_details":{"cached_tokens":9}}}"#;
        assert_eq!(from_json_body(OPENAI, body, None).unwrap(), Usage { cache_read_tokens: 9, ..Usage::default() });
    }

    // ---- streams ----

    /// The stream a client that did not ask for usage receives from OpenAI.
    const OPENAI_CLIENT_STREAM: &str = concat!(
        "data: {\"id\":\"chatcmpl-BxJ3\",\"object\":\"chat.completion.chunk\",\"created\":1753271000,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_34a54ae93c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"obfuscation\":\"N8q1\"}\n\n",
        "data: {\"id\":\"chatcmpl-BxJ3\",\"object\":\"chat.completion.chunk\",\"created\":1753271000,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_34a54ae93c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Héllo \\\"usage\\\" 🌍\"},\"logprobs\":null,\"finish_reason\":null}],\"obfuscation\":\"x\"}\n\n",
        "data: {\"id\":\"chatcmpl-BxJ3\",\"object\":\"chat.completion.chunk\",\"created\":1753271000,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_34a54ae93c\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n",
        "data: [DONE]\n\n",
    );

    /// The same stream as OpenAI sends it once `include_usage` is set: `"usage":null` on every
    /// chunk and a usage-only chunk before `[DONE]`.
    const OPENAI_UPSTREAM_STREAM: &str = concat!(
        "data: {\"id\":\"chatcmpl-BxJ3\",\"object\":\"chat.completion.chunk\",\"created\":1753271000,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_34a54ae93c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null,\"obfuscation\":\"N8q1\"}\n\n",
        "data: {\"id\":\"chatcmpl-BxJ3\",\"object\":\"chat.completion.chunk\",\"created\":1753271000,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_34a54ae93c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Héllo \\\"usage\\\" 🌍\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null,\"obfuscation\":\"x\"}\n\n",
        "data: {\"id\":\"chatcmpl-BxJ3\",\"object\":\"chat.completion.chunk\",\"created\":1753271000,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_34a54ae93c\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-BxJ3\",\"object\":\"chat.completion.chunk\",\"created\":1753271000,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_34a54ae93c\",\"choices\":[],\"usage\":{\"prompt_tokens\":1234,\"completion_tokens\":7,\"total_tokens\":1241,\"prompt_tokens_details\":{\"cached_tokens\":1152,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}},\"obfuscation\":\"k1\"}\n\n",
        "data: [DONE]\n\n",
    );

    fn openai_stream_usage() -> Usage {
        usage("gpt-4o-mini-2024-07-18", 1234 - 1152, 7, 1152, 0)
    }

    /// Feeds `stream` in the given pieces; returns what the client got and the usage.
    fn run(tap: StreamTap, stream: &[u8], cuts: &[usize]) -> (Vec<u8>, Option<Usage>) {
        let mut tap = tap;
        let mut out = Vec::new();
        let mut at = 0;
        for &cut in cuts.iter().chain([stream.len()].iter()) {
            out.extend_from_slice(&tap.push(&stream[at..cut]));
            at = cut;
        }
        let (rest, usage) = tap.finish();
        out.extend_from_slice(&rest);
        (out, usage)
    }

    fn injected_openai() -> StreamTap {
        StreamTap::new(OPENAI, true, Some("gpt-4o-mini".into()))
    }

    #[test]
    fn injected_openai_stream_hides_exactly_what_was_added() {
        let (out, got) = run(injected_openai(), OPENAI_UPSTREAM_STREAM.as_bytes(), &[]);
        assert_eq!(String::from_utf8(out).unwrap(), OPENAI_CLIENT_STREAM);
        assert_eq!(got, Some(openai_stream_usage()));
    }

    #[test]
    fn injected_openai_stream_split_at_every_offset() {
        let stream = OPENAI_UPSTREAM_STREAM.as_bytes();
        for cut in 0..=stream.len() {
            let (out, got) = run(injected_openai(), stream, &[cut]);
            assert_eq!(out, OPENAI_CLIENT_STREAM.as_bytes(), "split at {cut}");
            assert_eq!(got, Some(openai_stream_usage()), "split at {cut}");
        }
        let every_byte: Vec<usize> = (1..stream.len()).collect();
        let (out, got) = run(injected_openai(), stream, &every_byte);
        assert_eq!(out, OPENAI_CLIENT_STREAM.as_bytes());
        assert_eq!(got, Some(openai_stream_usage()));
    }

    #[test]
    fn injected_stream_forwards_each_event_as_soon_as_it_is_complete() {
        let stream = OPENAI_UPSTREAM_STREAM.as_bytes();
        let first_end = OPENAI_UPSTREAM_STREAM.find("\n\n").unwrap() + 2;
        let mut tap = injected_openai();
        assert!(tap.push(&stream[..first_end - 1]).is_empty(), "incomplete event held");
        let out = tap.push(&stream[first_end - 1..first_end]);
        let client_first_end = OPENAI_CLIENT_STREAM.find("\n\n").unwrap() + 2;
        assert_eq!(&out[..], &OPENAI_CLIENT_STREAM.as_bytes()[..client_first_end]);
        // A chunk of whole events without `usage` members is passed on without a copy.
        let mut tap = injected_openai();
        let plain = Bytes::from_static(b": keep-alive\n\ndata: {\"choices\":[]}\n\n");
        let out = tap.push_bytes(plain.clone());
        assert_eq!(out, plain);
        assert_eq!(out.as_ptr(), plain.as_ptr());
    }

    #[test]
    fn not_injected_stream_is_byte_identical_and_immediate() {
        // The client asked for usage itself: it gets everything, and the usage is still read.
        let stream = OPENAI_UPSTREAM_STREAM.as_bytes();
        for cut in 0..=stream.len() {
            let mut tap = StreamTap::new(OPENAI, false, None);
            let a = tap.push(&stream[..cut]);
            let b = tap.push(&stream[cut..]);
            assert_eq!(&a[..], &stream[..cut]);
            assert_eq!(&b[..], &stream[cut..]);
            let (rest, got) = tap.finish();
            assert!(rest.is_empty());
            assert_eq!(got, Some(openai_stream_usage()), "split at {cut}");
        }
        let mut tap = StreamTap::new(OPENAI, false, None);
        let chunk = Bytes::from_static(b"data: {\"choices\":[]");
        assert_eq!(tap.push_bytes(chunk.clone()).as_ptr(), chunk.as_ptr(), "zero-copy");
        // A stream without usage: nothing recorded.
        let (out, got) = run(StreamTap::new(OPENAI, false, None), OPENAI_CLIENT_STREAM.as_bytes(), &[10, 200]);
        assert_eq!(out, OPENAI_CLIENT_STREAM.as_bytes());
        assert_eq!(got, None);
    }

    #[test]
    fn injected_stream_with_crlf_and_extra_fields() {
        let upstream = concat!(
            ": OPENROUTER PROCESSING\r\n\r\n",
            "id: 1\r\nevent: chunk\r\ndata: {\"id\":\"c\",\"model\":\"deepseek-chat\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\r\n\r\n",
            "data: {\"usage\":null,\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\r\n\r\n",
            "data: {\"id\":\"c\",\"model\":\"deepseek-chat\",\"choices\":[],\"usage\":{\"prompt_tokens\":300,\"completion_tokens\":20,\"total_tokens\":320,\"prompt_tokens_details\":{\"cached_tokens\":256},\"prompt_cache_hit_tokens\":256,\"prompt_cache_miss_tokens\":44}}\r\n\r\n",
            "data: [DONE]\r\n\r\n",
        );
        let client = concat!(
            ": OPENROUTER PROCESSING\r\n\r\n",
            "id: 1\r\nevent: chunk\r\ndata: {\"id\":\"c\",\"model\":\"deepseek-chat\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\r\n\r\n",
            "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\r\n\r\n",
            "data: [DONE]\r\n\r\n",
        );
        let expected = usage("deepseek-chat", 44, 20, 256, 0);
        let stream = upstream.as_bytes();
        for cut in 0..=stream.len() {
            let (out, got) = run(StreamTap::new(DEEPSEEK, true, None), stream, &[cut]);
            assert_eq!(String::from_utf8(out).unwrap(), client, "split at {cut}");
            assert_eq!(got.as_ref(), Some(&expected));
        }
        // Bare `\r` line endings, split between every pair of bytes.
        let cr_up = upstream.replace("\r\n", "\r");
        let cr_client = client.replace("\r\n", "\r");
        let every: Vec<usize> = (1..cr_up.len()).collect();
        let (out, got) = run(StreamTap::new(DEEPSEEK, true, None), cr_up.as_bytes(), &every);
        assert_eq!(String::from_utf8(out).unwrap(), cr_client);
        assert_eq!(got, Some(expected));
    }

    #[test]
    fn injected_streams_survive_random_chunkings_and_line_endings() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |bound: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % bound as u64) as usize
        };
        for ending in ["\n", "\r\n", "\r"] {
            let upstream = OPENAI_UPSTREAM_STREAM.replace('\n', ending);
            let client = OPENAI_CLIENT_STREAM.replace('\n', ending);
            for _ in 0..500 {
                let mut cuts: Vec<usize> = (0..next(12)).map(|_| next(upstream.len() + 1)).collect();
                cuts.sort_unstable();
                let (out, got) = run(injected_openai(), upstream.as_bytes(), &cuts);
                assert_eq!(String::from_utf8(out).unwrap(), client, "{ending:?} cuts {cuts:?}");
                assert_eq!(got, Some(openai_stream_usage()));
            }
        }
    }

    #[test]
    fn injected_usage_on_a_content_chunk_is_cut_not_dropped() {
        // Some OpenAI-compatible servers put the usage on the last content chunk.
        let upstream = "data: {\"model\":\"deepseek-chat\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n";
        let client = "data: {\"model\":\"deepseek-chat\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
        let (out, got) = run(StreamTap::new(DEEPSEEK, true, None), upstream.as_bytes(), &[]);
        assert_eq!(String::from_utf8(out).unwrap(), client);
        assert_eq!(got, Some(usage("deepseek-chat", 10, 3, 0, 0)));
    }

    #[test]
    fn unterminated_last_event_is_still_read_and_filtered() {
        let upstream = "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}],\"usage\":null}\n\ndata: {\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2}}";
        let (out, got) = run(injected_openai(), upstream.as_bytes(), &[]);
        assert_eq!(String::from_utf8(out).unwrap(), "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n");
        assert_eq!(got, Some(usage("gpt-4o", 4, 2, 0, 0)));
        // A stream cut short before the usage chunk: everything forwarded, no usage.
        let (out, got) = run(injected_openai(), b"data: {\"choices\":[{\"delta\":{}}]", &[3]);
        assert_eq!(out, b"data: {\"choices\":[{\"delta\":{}}]");
        assert_eq!(got, None);
    }

    #[test]
    fn responses_api_stream_reads_response_completed() {
        let stream = concat!(
            "event: response.created\n",
            "data: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\",\"model\":\"gpt-5-2025-08-07\",\"output\":[],\"usage\":null}}\n\n",
            "event: response.output_text.delta\n",
            "data: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi\"}\n\n",
            "event: response.completed\n",
            "data: {\"type\":\"response.completed\",\"sequence_number\":9,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"completed\",\"model\":\"gpt-5-2025-08-07\",\"output\":[],\"usage\":{\"input_tokens\":3000,\"input_tokens_details\":{\"cached_tokens\":2048},\"output_tokens\":150,\"output_tokens_details\":{\"reasoning_tokens\":64},\"total_tokens\":3150}}}\n\n",
        );
        let (out, got) = run(StreamTap::new(OPENAI, false, None), stream.as_bytes(), &[100, 101, 400]);
        assert_eq!(out, stream.as_bytes());
        assert_eq!(got, Some(usage("gpt-5-2025-08-07", 952, 150, 2048, 0)));
    }

    const ANTHROPIC_STREAM: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01KfA3\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":12,\"cache_creation_input_tokens\":2048,\"cache_read_input_tokens\":1800,\"cache_creation\":{\"ephemeral_5m_input_tokens\":2048,\"ephemeral_1h_input_tokens\":0},\"output_tokens\":1,\"service_tier\":\"standard\"}}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\n",
        "data: {\"type\": \"ping\"}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Héllo, \\\"usage\\\": 🌍\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"pause_turn\",\"stop_sequence\":null},\"usage\":{\"input_tokens\":12,\"cache_creation_input_tokens\":2048,\"cache_read_input_tokens\":1800,\"output_tokens\":15}}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":27}}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );

    fn anthropic_stream_usage() -> Usage {
        usage("claude-sonnet-4-5-20250929", 12, 27, 1800, 2048)
    }

    #[test]
    fn anthropic_stream_usage_is_cumulative_last_wins() {
        let (out, got) = run(StreamTap::new(ANTHROPIC, false, None), ANTHROPIC_STREAM.as_bytes(), &[]);
        assert_eq!(out, ANTHROPIC_STREAM.as_bytes());
        assert_eq!(got, Some(anthropic_stream_usage()));
    }

    #[test]
    fn anthropic_stream_split_everywhere_and_crlf() {
        for stream in [ANTHROPIC_STREAM.to_owned(), ANTHROPIC_STREAM.replace('\n', "\r\n")] {
            let bytes = stream.as_bytes();
            for cut in 0..=bytes.len() {
                // `injected_usage` is meaningless for Anthropic and ignored.
                let (out, got) = run(StreamTap::new(ANTHROPIC, true, None), bytes, &[cut]);
                assert_eq!(out, bytes, "split at {cut}");
                assert_eq!(got, Some(anthropic_stream_usage()), "split at {cut}");
            }
        }
    }

    #[test]
    fn anthropic_stream_with_only_message_start() {
        let start = ANTHROPIC_STREAM.split("event: content_block_start").next().unwrap();
        let (_, got) = run(StreamTap::new(ANTHROPIC, false, Some("claude-x".into())), start.as_bytes(), &[]);
        assert_eq!(got, Some(usage("claude-sonnet-4-5-20250929", 12, 1, 1800, 2048)));
    }

    #[test]
    fn garbage_streams_never_panic() {
        let samples: Vec<Vec<u8>> = vec![
            b"\xff\xfe\x00garbage\r\r\n\n\n".to_vec(),
            b"data: {\"usage\":{\"prompt_tokens\":\"x\"}}\n\n".to_vec(),
            b"data: {\"usage\":\n\ndata: \"usage\"\n\n".to_vec(),
            b"data\ndata:\ndata:{\"usage\"\n\n:\n\n\r\r\r".to_vec(),
            b"data: {\"choices\":[],\"usage\":null}\n\n".to_vec(),
            b"data: {\"choices\":[],\"usage\":{}}\n\n".to_vec(),
            vec![b'\r'; 64],
            vec![b'\n'; 64],
            (0..=255u8).collect(),
        ];
        for sample in &samples {
            for provider in [OPENAI, ANTHROPIC, DEEPSEEK] {
                for injected in [false, true] {
                    for cut in 0..=sample.len() {
                        let (out, _) = run(StreamTap::new(provider, injected, None), sample, &[cut]);
                        if !injected || provider == ANTHROPIC {
                            assert_eq!(&out, sample);
                        }
                    }
                }
            }
        }
        let (out, got) = run(injected_openai(), b"data: {\"choices\":[],\"usage\":{}}\n\n", &[]);
        assert!(out.is_empty());
        assert_eq!(got, None, "an empty usage object reports nothing");
    }

    #[test]
    fn oversized_events_are_forwarded_unparsed() {
        let big = format!(
            "data: {{\"choices\":[{{\"delta\":{{\"content\":\"{}\"}}}}],\"usage\":null}}\n\n",
            "a".repeat(MAX_EVENT_BYTES + 10)
        );
        let stream = format!("{big}data: [DONE]\n\n");
        let mut tap = injected_openai();
        let mut out = Vec::new();
        for piece in stream.as_bytes().chunks(64 * 1024) {
            let released = tap.push(piece);
            assert!(tap.0.held.len() <= MAX_EVENT_BYTES + 64 * 1024);
            out.extend_from_slice(&released);
        }
        let (rest, got) = tap.finish();
        out.extend_from_slice(&rest);
        assert_eq!(out, stream.as_bytes());
        assert_eq!(got, None);
    }

    // ---- output limits, choices, stream reports ----

    #[test]
    fn limits_and_choices_are_read_from_the_request() {
        let p = prepare_request(OPENAI, br#"{"model":"gpt-4o","max_completion_tokens":300,"max_tokens":500,"n":3}"#);
        assert_eq!(
            p.limits,
            OutputLimits { max_tokens: Some(500), max_completion_tokens: Some(300), max_output_tokens: None }
        );
        assert_eq!((p.limits.tightest(), p.choices), (Some(300), 3));
        let p = prepare_request(OPENAI, br#"{"model":"gpt-3.5-turbo-instruct","prompt":"x","best_of":5,"n":2}"#);
        assert_eq!((p.limits.tightest(), p.choices), (None, 5));
        // Not a count: ignored (the provider refuses such a request anyway).
        let p = prepare_request(ANTHROPIC, br#"{"model":"c","max_tokens":-1,"n":0}"#);
        assert_eq!((p.limits.tightest(), p.choices), (None, 1));
        let p = prepare_request(OPENAI, br#"{"model":"gpt-5","max_output_tokens":64.5}"#);
        assert_eq!(p.limits.tightest(), None);
        assert_eq!(prepare_request(OPENAI, b"not json").choices, 1);
    }

    #[test]
    fn output_limits_are_set_in_place_or_added() {
        let set = |body: &str, field: &str, value: u64| {
            with_output_limit(body.as_bytes(), field, value).map(|b| String::from_utf8(b.to_vec()).unwrap())
        };
        // Every limit field present is replaced where it stands, duplicates included.
        assert_eq!(
            set(
                r#"{"model":"m", "max_tokens" : 4000,"x":{"max_tokens":9},"max_completion_tokens":1,"max_tokens":7}"#,
                "max_tokens",
                42
            )
            .unwrap(),
            r#"{"model":"m", "max_tokens" : 42,"x":{"max_tokens":9},"max_completion_tokens":42,"max_tokens":42}"#
        );
        // None present: the named field is added first.
        assert_eq!(
            set(r#"  {"model":"m","messages":[]}"#, "max_completion_tokens", 16).unwrap(),
            r#"  {"max_completion_tokens":16,"model":"m","messages":[]}"#
        );
        assert_eq!(set("{ }", "max_output_tokens", 16).unwrap(), r#"{"max_output_tokens":16 }"#);
        assert_eq!(set("[1]", "max_tokens", 1), None);
        assert_eq!(set("nope", "max_tokens", 1), None);
        // What the provider will read is what the budget was planned for.
        let out = set(r#"{"model":"m","max_tokens":"lots"}"#, "max_tokens", 5).unwrap();
        assert_eq!(json(out.as_bytes())["max_tokens"], 5);
    }

    fn report(tap: StreamTap, stream: &str) -> StreamReport {
        let mut tap = tap;
        for piece in stream.as_bytes().chunks(7) {
            let _ = tap.push(piece);
        }
        tap.finish_report().1
    }

    #[test]
    fn stream_reports_say_whether_usage_is_final_and_how_much_text_came() {
        let text = "Héllo \"usage\" 🌍";
        let r = report(injected_openai(), OPENAI_UPSTREAM_STREAM);
        assert_eq!((r.usage, r.final_usage, r.content_bytes), (Some(openai_stream_usage()), true, text.len() as u64));
        // Cut before the usage chunk: no usage, but the text seen.
        let r = report(StreamTap::new(OPENAI, false, None), OPENAI_CLIENT_STREAM);
        assert_eq!((r.usage, r.final_usage, r.content_bytes), (None, false, text.len() as u64));
        // Anthropic: `message_start` gives the input only; the `message_delta` makes it final.
        let start = ANTHROPIC_STREAM.split("event: message_delta").next().unwrap();
        let r = report(StreamTap::new(ANTHROPIC, false, None), start);
        assert_eq!((r.final_usage, r.usage.unwrap().output_tokens), (false, 1));
        assert_eq!(r.content_bytes, "Héllo, \"usage\": 🌍".len() as u64);
        let r = report(StreamTap::new(ANTHROPIC, false, None), ANTHROPIC_STREAM);
        assert!(r.final_usage);
        // Responses API: `response.created` carries `usage: null` (not final), `.completed` does.
        let created = concat!(
            "event: response.created\n",
            "data: {\"type\":\"response.created\",\"response\":{\"model\":\"gpt-5\",\"usage\":null}}\n\n",
            "event: response.output_text.delta\n",
            "data: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi \\u00e9\"}\n\n",
            "event: response.output_text.done\n",
            "data: {\"type\":\"response.output_text.done\",\"text\":\"Hi \\u00e9\"}\n\n",
        );
        let r = report(StreamTap::new(OPENAI, false, None), created);
        assert_eq!((r.final_usage, r.content_bytes), (false, "Hi é".len() as u64), "deltas only, decoded");
        let completed = format!(
            "{created}data: {{\"type\":\"response.completed\",\"response\":{{\"usage\":{{\"input_tokens\":3,\"output_tokens\":2}}}}}}\n\n"
        );
        let r = report(StreamTap::new(OPENAI, false, None), &completed);
        assert!(r.final_usage);
    }

    #[test]
    fn content_is_counted_in_every_delta_kind() {
        let cases: [(&str, u64); 9] = [
            (r#"{"choices":[{"delta":{"content":"abc"}},{"delta":{"content":"de"}}]}"#, 5),
            (r#"{"choices":[{"delta":{"reasoning_content":"think","content":null}}]}"#, 5),
            (r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":1}"}}]}}]}"#, 7),
            (r#"{"choices":[{"text":"legacy","index":0}]}"#, 6),
            (r#"{"type":"content_block_delta","delta":{"type":"thinking_delta","thinking":"hmm"}}"#, 3),
            (r#"{"type":"content_block_delta","delta":{"type":"input_json_delta","partial_json":"{\"x\""}}"#, 4),
            (r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}"#, 0),
            (r#"{"type":"ping"}"#, 0),
            // An unexpected shape counts whole: the estimate stays an upper bound.
            (r#"{"choices":[{"delta":{"content":["odd"]}}]}"#, 43),
        ];
        for (data, bytes) in cases {
            assert_eq!(content_bytes(data.as_bytes()), bytes, "{data}");
        }
        assert_eq!(content_bytes(b"[DONE]"), 0);
    }
}
