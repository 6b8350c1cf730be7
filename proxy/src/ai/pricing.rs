//! What an AI call cost, in integer nano-USD, from LiteLLM's `model_prices_and_context_window.json`.
//!
//! # The embedded snapshot
//!
//! `model_prices.json` (next to this file, 38,277 bytes, 162 entries for 156
//! distinct model ids) is LiteLLM's
//! `litellm/model_prices_and_context_window_backup.json` from the PyPI wheel **litellm 1.109.1**
//! (`litellm-1.109.1-cp310-abi3-manylinux_2_28_x86_64.whl`), trimmed to the entries whose
//! `litellm_provider` is `openai`, `anthropic` or `deepseek` and whose `mode` is `chat` or
//! `responses` and that have both token prices, keeping only `litellm_provider`, `mode`,
//! `input_cost_per_token`, `output_cost_per_token`, `cache_read_input_token_cost`,
//! `cache_creation_input_token_cost` and their long-context tiers (`…_above_<N>k_tokens`), and
//! `max_output_tokens` (appended last, where the entry has one: 158 do). Numbers are copied as
//! written (no float round trip); keys are sorted. Regenerate by running the same
//! filter over a newer file; nothing is fetched at run time. `assegai pricing update --file PATH`
//! installs a full, newer file instead (see [`Pricing::install`]); the loader applies the same
//! filter except for `mode`, so e.g. embedding models are priced too.
//!
//! # Exactness
//!
//! Money is never a float. A per-token price such as `2.5e-06` is read from its decimal text
//! (serde_json's raw number text, not an `f64`) into an integer number of atto-USD (1e-18 USD)
//! per token; a call's cost is
//! `round_half_up((input·p_in + cache_read·p_read + cache_write·p_write + output·p_out) / 1e9)`
//! nano-USD (1e-9 USD, the base unit of the manifest's `UsdAmount`), computed in `u128`. Each token
//! class of [`Usage`] is priced exactly once — the classes are disjoint (see [`crate::ai::usage`]).
//!
//! Price rules (LiteLLM's own):
//! * A missing cache-read price falls back to the input price, and so does a missing cache-write
//!   price (a provider that publishes no cache price bills those tokens as ordinary input). An
//!   explicit `0.0` is a real price.
//! * Long-context tiers: when the call's prompt (input + cache reads + cache writes) is larger than
//!   `N`·1000 tokens for a model with `…_above_<N>k_tokens` prices, the highest such tier's prices
//!   apply to the whole call (classes the tier does not list keep the lower price).
//!
//! Not modelled (the [`Usage`] record does not carry what they need, or they depend on the time
//! of day): batch/flex/priority service tiers, DeepSeek's off-peak discounts, Anthropic's 1-hour
//! cache-write price (all cache writes are priced at the 5-minute rate), audio-token prices.
//!
//! # Model ids
//!
//! [`Pricing::price`] resolves `gpt-4o`, `openai/gpt-4o`, `anthropic/claude-…`,
//! `deepseek/deepseek-chat` (the file's own keys may carry the prefix too; when both `x` and
//! `provider/x` exist, the prefixed entry wins, as in LiteLLM), only within the entries whose
//! `litellm_provider` is the call's provider. A fine-tuned `ft:BASE:org:name:id` resolves to the
//! file's `ft:BASE`. A dated id missing from the file (`claude-3-opus-20240229`,
//! `gpt-4o-2099-01-01`) falls back to its undated family entry (a trailing `-YYYYMMDD` or
//! `-YYYY-MM-DD` stripped) — and when that is missing too, the model is unpriced: the cost is
//! `None`, never 0.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use serde_json::value::RawValue;

use crate::ai::usage::Usage;
use crate::manifest::Provider;

/// atto-USD (1e-18) per nano-USD (1e-9).
const ATTO_PER_NANO: u128 = 1_000_000_000;

/// The price table: per provider, model id → prices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pricing {
    /// Indexed by [`slot`].
    models: [HashMap<String, ModelPrice>; 3],
}

/// One model's prices, in atto-USD (1e-18 USD) per token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPrice {
    /// The entry's key in the pricing file (e.g. `deepseek/deepseek-chat`).
    pub key: String,
    /// The entry's `litellm_provider`.
    pub provider: Provider,
    /// Prices for prompts up to the first tier.
    pub base: Rates,
    /// Long-context tiers, by ascending threshold.
    pub tiers: Vec<Tier>,
    /// The most output tokens one call can produce (`max_output_tokens`), when the file says.
    pub max_output_tokens: Option<u64>,
}

/// Per-token prices in atto-USD; `None` where the file gives none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    /// `input_cost_per_token`.
    pub input: u128,
    /// `output_cost_per_token`.
    pub output: u128,
    /// `cache_read_input_token_cost` (falls back to the input price).
    pub cache_read: Option<u128>,
    /// `cache_creation_input_token_cost` (falls back to the input price).
    pub cache_write: Option<u128>,
}

/// Prices that replace the base prices when the prompt exceeds `above_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    /// The threshold: applies when prompt tokens > this.
    pub above_tokens: u64,
    /// `input_cost_per_token_above_<N>k_tokens`.
    pub input: Option<u128>,
    /// `output_cost_per_token_above_<N>k_tokens`.
    pub output: Option<u128>,
    /// `cache_read_input_token_cost_above_<N>k_tokens`.
    pub cache_read: Option<u128>,
    /// `cache_creation_input_token_cost_above_<N>k_tokens`.
    pub cache_write: Option<u128>,
}

/// The per-token prices that apply to one call, fallbacks resolved, in atto-USD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectiveRates {
    /// Ordinary input.
    pub input: u128,
    /// Output.
    pub output: u128,
    /// Cache reads.
    pub cache_read: u128,
    /// Cache writes.
    pub cache_write: u128,
}

/// Why a pricing file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    /// The file could not be read.
    #[error("cannot read the pricing file {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file could not be written.
    #[error("cannot write the pricing file {}: {source}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Not JSON.
    #[error("the pricing file is not valid JSON ({0}); expected LiteLLM's model_prices_and_context_window.json")]
    Json(#[source] serde_json::Error),
    /// JSON, but not an object of models.
    #[error("the pricing file is not a JSON object of models; expected LiteLLM's model_prices_and_context_window.json")]
    NotAnObject,
    /// No entry priced an OpenAI, Anthropic or DeepSeek model.
    #[error(
        "the pricing file has no usable prices for OpenAI, Anthropic or DeepSeek models (entries need \
         `litellm_provider` and numeric `input_cost_per_token` and `output_cost_per_token`)"
    )]
    NoModels,
}

static EMBEDDED: LazyLock<Pricing> = LazyLock::new(|| {
    Pricing::from_json(include_str!("model_prices.json")).expect("the embedded model_prices.json is valid")
});

impl Pricing {
    /// The snapshot built into the binary (parsed once, on first use).
    pub fn embedded() -> &'static Pricing {
        &EMBEDDED
    }

    /// Parses a LiteLLM pricing file. Keys that are not models (`sample_spec`), entries of other
    /// providers and entries without numeric token prices are skipped.
    pub fn from_json(text: &str) -> Result<Pricing, PricingError> {
        let document: &RawValue = serde_json::from_str(text).map_err(PricingError::Json)?;
        if !document.get().starts_with('{') {
            return Err(PricingError::NotAnObject);
        }
        let entries: Vec<(String, &RawValue)> =
            serde_json::from_str::<Entries<'_>>(document.get()).map_err(PricingError::Json)?.0;
        let mut pricing = Pricing { models: Default::default() };
        // Whether each stored entry came from a `provider/…` key (those win over bare ones).
        let mut prefixed: [HashMap<String, bool>; 3] = Default::default();
        for (key, raw) in entries {
            if key == "sample_spec" {
                continue;
            }
            let Some(price) = parse_entry(&key, raw) else { continue };
            let slot = slot(price.provider);
            let (id, is_prefixed) = match strip_prefix_ci(&key, provider_name(price.provider)) {
                Some(rest) => (rest.to_owned(), true),
                None => (key.clone(), false),
            };
            if !is_prefixed && prefixed[slot].get(&id) == Some(&true) {
                continue;
            }
            prefixed[slot].insert(id.clone(), is_prefixed);
            pricing.models[slot].insert(id, price);
        }
        if pricing.is_empty() {
            return Err(PricingError::NoModels);
        }
        Ok(pricing)
    }

    /// The prices in force for a home whose installed pricing file is `path`: that file when it
    /// exists, else the embedded snapshot. Returns whether the file was used.
    pub fn installed_or_embedded(path: &Path) -> Result<(Pricing, bool), PricingError> {
        if path.exists() { Ok((Pricing::load(path)?, true)) } else { Ok((Pricing::embedded().clone(), false)) }
    }

    /// Every priced model, by provider then model id.
    pub fn models(&self) -> Vec<(&str, &ModelPrice)> {
        let mut all: Vec<(&str, &ModelPrice)> =
            self.models.iter().flat_map(|table| table.iter().map(|(id, price)| (id.as_str(), price))).collect();
        all.sort_by(|a, b| (slot(a.1.provider), a.0).cmp(&(slot(b.1.provider), b.0)));
        all
    }

    /// Reads and parses an installed pricing file.
    pub fn load(path: &Path) -> Result<Pricing, PricingError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| PricingError::Read { path: path.to_owned(), source })?;
        Pricing::from_json(&text)
    }

    /// Validates the pricing file at `source` and, only if it is usable, copies it to `dest`
    /// atomically (a temporary file next to `dest`, then a rename; the parent directory is created
    /// if needed). Returns the parsed prices.
    pub fn install(source: &Path, dest: &Path) -> Result<Pricing, PricingError> {
        let text = std::fs::read_to_string(source)
            .map_err(|source_err| PricingError::Read { path: source.to_owned(), source: source_err })?;
        let pricing = Pricing::from_json(&text)?;
        let write_err = |source| PricingError::Write { path: dest.to_owned(), source };
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(write_err)?;
        }
        let mut tmp_name = dest.file_name().unwrap_or_default().to_owned();
        tmp_name.push(".tmp");
        let tmp = dest.with_file_name(tmp_name);
        if let Err(e) = write_then_rename(&tmp, dest, text.as_bytes()) {
            let _ = std::fs::remove_file(&tmp);
            return Err(write_err(e));
        }
        Ok(pricing)
    }

    /// The number of priced models.
    pub fn len(&self) -> usize {
        self.models.iter().map(HashMap::len).sum()
    }

    /// Whether no model is priced (never true for a parsed file).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The prices for `model` as `provider` names it (see the module docs for how ids resolve);
    /// `None` when unpriced.
    pub fn price(&self, provider: Provider, model: &str) -> Option<&ModelPrice> {
        let table = &self.models[slot(provider)];
        let model = model.trim();
        let id = match model.split_once('/') {
            Some((prefix, rest)) if prefix.eq_ignore_ascii_case(provider_name(provider)) => rest,
            // Another provider's model is never priced as this provider's.
            Some((prefix, _)) if PROVIDERS.iter().any(|p| prefix.eq_ignore_ascii_case(provider_name(*p))) => {
                return None;
            }
            _ => model,
        };
        let lookup = |id: &str| table.get(id).or_else(|| table.get(&id.to_ascii_lowercase()));
        if let Some(price) = lookup(id) {
            return Some(price);
        }
        if let Some(rest) = id.strip_prefix("ft:") {
            // `ft:gpt-4o-mini-2024-07-18:org:name:id` is priced as `ft:gpt-4o-mini-2024-07-18`.
            let base = rest.split(':').next().unwrap_or_default();
            return lookup(&format!("ft:{base}"));
        }
        strip_date_suffix(id).and_then(lookup)
    }

    /// The cost of a call in nano-USD; `None` when its model is unknown or unpriced (never 0 for
    /// lack of a price).
    pub fn cost_nano_usd(&self, provider: Provider, usage: &Usage) -> Option<u64> {
        self.price(provider, usage.model.as_deref()?)?.cost_nano_usd(usage)
    }
}

impl ModelPrice {
    /// The prices for a call with `prompt_tokens` input tokens in all (tiers applied, cache prices
    /// defaulted to the input price).
    pub fn rates_for(&self, prompt_tokens: u64) -> EffectiveRates {
        let mut rates = self.base;
        for tier in self.tiers.iter().filter(|t| prompt_tokens > t.above_tokens) {
            rates.input = tier.input.unwrap_or(rates.input);
            rates.output = tier.output.unwrap_or(rates.output);
            rates.cache_read = tier.cache_read.or(rates.cache_read);
            rates.cache_write = tier.cache_write.or(rates.cache_write);
        }
        EffectiveRates {
            input: rates.input,
            output: rates.output,
            cache_read: rates.cache_read.unwrap_or(rates.input),
            cache_write: rates.cache_write.unwrap_or(rates.input),
        }
    }

    /// The exact cost in atto-USD (1e-18); `None` only on overflow (beyond 3.4e20 USD).
    pub fn cost_atto_usd(&self, usage: &Usage) -> Option<u128> {
        let rates = self.rates_for(usage.prompt_tokens());
        [
            (usage.input_tokens, rates.input),
            (usage.cache_read_tokens, rates.cache_read),
            (usage.cache_write_tokens, rates.cache_write),
            (usage.output_tokens, rates.output),
        ]
        .into_iter()
        .try_fold(0u128, |sum, (tokens, price)| sum.checked_add(u128::from(tokens).checked_mul(price)?))
    }

    /// The cost in nano-USD, rounded half up; `None` only on overflow.
    pub fn cost_nano_usd(&self, usage: &Usage) -> Option<u64> {
        let atto = self.cost_atto_usd(usage)?;
        u64::try_from(atto.checked_add(ATTO_PER_NANO / 2)? / ATTO_PER_NANO).ok()
    }
}

fn write_then_rename(tmp: &Path, dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::File::create(tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(tmp, dest)
}

const PROVIDERS: [Provider; 3] = [Provider::Openai, Provider::Anthropic, Provider::Deepseek];

fn slot(provider: Provider) -> usize {
    match provider {
        Provider::Openai => 0,
        Provider::Anthropic => 1,
        Provider::Deepseek => 2,
    }
}

/// The provider's name as LiteLLM's `litellm_provider` and model prefixes spell it.
fn provider_name(provider: Provider) -> &'static str {
    match provider {
        Provider::Openai => "openai",
        Provider::Anthropic => "anthropic",
        Provider::Deepseek => "deepseek",
    }
}

fn strip_prefix_ci<'a>(key: &'a str, provider: &str) -> Option<&'a str> {
    let (prefix, rest) = key.split_once('/')?;
    prefix.eq_ignore_ascii_case(provider).then_some(rest)
}

/// `claude-3-opus-20240229` → `claude-3-opus`, `gpt-4o-2024-08-06` → `gpt-4o`.
fn strip_date_suffix(id: &str) -> Option<&str> {
    let bytes = id.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let plausible = |y: &[u8], m: &[u8], d: &[u8]| {
        let n = |s: &[u8]| s.iter().fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0'));
        (1900..=2199).contains(&n(y)) && (1..=12).contains(&n(m)) && (1..=31).contains(&n(d))
    };
    let n = bytes.len();
    // -YYYY-MM-DD
    if n > 11 {
        let s = &bytes[n - 11..];
        if s[0] == b'-'
            && s[5] == b'-'
            && s[8] == b'-'
            && digits(&s[1..5])
            && digits(&s[6..8])
            && digits(&s[9..11])
            && plausible(&s[1..5], &s[6..8], &s[9..11])
        {
            return Some(&id[..n - 11]);
        }
    }
    // -YYYYMMDD
    if n > 9 {
        let s = &bytes[n - 9..];
        if s[0] == b'-' && digits(&s[1..]) && plausible(&s[1..5], &s[5..7], &s[7..9]) {
            return Some(&id[..n - 9]);
        }
    }
    None
}

/// The members of the top-level object, in file order (a later duplicate key wins on insert).
struct Entries<'a>(Vec<(String, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Entries<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> serde::de::Visitor<'de> for EntriesVisitor {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Entries<'de>, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(256));
                while let Some((key, value)) = map.next_entry::<String, &'de RawValue>()? {
                    entries.push((key, value));
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
    }
}

const INPUT: &str = "input_cost_per_token";
const OUTPUT: &str = "output_cost_per_token";
const CACHE_READ: &str = "cache_read_input_token_cost";
const CACHE_WRITE: &str = "cache_creation_input_token_cost";

/// One file entry as prices, or `None` when it is not a usable model of our providers.
fn parse_entry(key: &str, raw: &RawValue) -> Option<ModelPrice> {
    if !raw.get().starts_with('{') {
        return None;
    }
    let fields: Entries<'_> = serde_json::from_str(raw.get()).ok()?;
    let field = |name: &str| fields.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| *v);
    let provider_text: String = serde_json::from_str(field("litellm_provider")?.get()).ok()?;
    let provider = PROVIDERS.into_iter().find(|p| provider_name(*p) == provider_text)?;
    // A price that is present but not a non-negative number makes the whole entry unusable:
    // guessing around it could misprice.
    let optional = |name: &str| match field(name) {
        None => Some(None),
        Some(v) if v.get() == "null" => Some(None),
        Some(v) => parse_atto(v.get()).map(Some),
    };
    let base = Rates {
        input: optional(INPUT)??,
        output: optional(OUTPUT)??,
        cache_read: optional(CACHE_READ)?,
        cache_write: optional(CACHE_WRITE)?,
    };
    let mut tiers: Vec<Tier> = Vec::new();
    for (name, value) in &fields.0 {
        let Some((class, above_tokens)) = tier_field(name) else { continue };
        let price = Some(parse_atto(value.get())?);
        let index = match tiers.iter().position(|t| t.above_tokens == above_tokens) {
            Some(i) => i,
            None => {
                tiers.push(Tier { above_tokens, input: None, output: None, cache_read: None, cache_write: None });
                tiers.len() - 1
            }
        };
        let tier = &mut tiers[index];
        match class {
            INPUT => tier.input = price,
            OUTPUT => tier.output = price,
            CACHE_READ => tier.cache_read = price,
            _ => tier.cache_write = price,
        }
    }
    tiers.sort_by_key(|t| t.above_tokens);
    // Informational: a missing or odd maximum (a float, a string) is only unknown, never a reason
    // to drop the prices.
    let max_output_tokens = field("max_output_tokens").and_then(|v| v.get().parse::<u64>().ok()).filter(|&n| n > 0);
    Some(ModelPrice { key: key.to_owned(), provider, base, tiers, max_output_tokens })
}

/// `input_cost_per_token_above_272k_tokens` → (`input_cost_per_token`, 272000). Service-tier
/// variants (`…_tokens_priority`) and the 1-hour cache-write price are not tiers.
fn tier_field(name: &str) -> Option<(&'static str, u64)> {
    let (class, rest) = name.split_once("_above_")?;
    let class = [INPUT, OUTPUT, CACHE_READ, CACHE_WRITE].into_iter().find(|c| *c == class)?;
    let threshold = rest.strip_suffix("_tokens")?;
    let (digits, scale) = match threshold.strip_suffix('k') {
        Some(digits) => (digits, 1000),
        None => (threshold, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((class, digits.parse::<u64>().ok()?.checked_mul(scale)?))
}

/// A JSON number's text (`2.5e-06`, `0.000168`, `0`) as an exact integer count of atto-USD
/// (1e-18), rounded half up beyond 18 decimals; `None` for anything else, negatives included.
fn parse_atto(text: &str) -> Option<u128> {
    let text = text.trim();
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Some(0); // 0, 0.0, -0.0
    }
    if negative {
        return None;
    }
    // value = digits × 10^(exponent − frac.len()); in atto: × 10^18.
    let scale = i64::from(exponent) - frac.len() as i64 + 18;
    if scale >= 0 {
        let digits: u128 = digits.parse().ok()?;
        digits.checked_mul(10u128.checked_pow(u32::try_from(scale).ok()?)?)
    } else {
        // Drop the `-scale` lowest digits, rounding half up.
        let cut = usize::try_from(-scale).ok()?;
        if cut > digits.len() {
            return Some(0); // below half an atto-USD
        }
        let (kept, dropped) = digits.split_at(digits.len() - cut);
        let kept: u128 = if kept.is_empty() { 0 } else { kept.parse().ok()? };
        let round_up = dropped.as_bytes()[0] >= b'5';
        kept.checked_add(u128::from(round_up))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENAI: Provider = Provider::Openai;
    const ANTHROPIC: Provider = Provider::Anthropic;
    const DEEPSEEK: Provider = Provider::Deepseek;

    use crate::ai::usage::tests::usage;

    fn embedded() -> &'static Pricing {
        Pricing::embedded()
    }

    #[test]
    fn decimal_prices_parse_exactly() {
        let cases = [
            ("2.5e-06", 2_500_000_000_000),
            ("1e-05", 10_000_000_000_000),
            ("1.5625e-05", 15_625_000_000_000),
            ("0.000168", 168_000_000_000_000),
            ("1.25E-7", 125_000_000_000),
            ("5e-09", 5_000_000_000),
            ("0", 0),
            ("0.0", 0),
            ("-0.0", 0),
            ("3", 3_000_000_000_000_000_000),
            ("12.5", 12_500_000_000_000_000_000),
            ("1e+2", 100_000_000_000_000_000_000),
            ("5e-19", 1), // half an atto rounds up
            ("4.9e-19", 0),
            ("1.5e-18", 2),
            ("1e-300", 0),
            ("2.500000000000000000000001e-6", 2_500_000_000_000),
        ];
        for (text, atto) in cases {
            assert_eq!(parse_atto(text), Some(atto), "{text}");
        }
        for bad in ["-1e-6", "\"2.5e-06\"", "abc", "", ".5", "1e", "1e999999999999", "1e400", "null", "true"] {
            assert_eq!(parse_atto(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_embedded_snapshot_parses() {
        let pricing = embedded();
        // 162 entries; six DeepSeek models appear both bare and `deepseek/`-prefixed.
        assert_eq!(pricing.len(), 156);
        let gpt4o = pricing.price(OPENAI, "gpt-4o").unwrap();
        assert_eq!(
            gpt4o.base,
            Rates {
                input: 2_500_000_000_000,
                output: 10_000_000_000_000,
                cache_read: Some(1_250_000_000_000),
                cache_write: None
            }
        );
        assert!(gpt4o.tiers.is_empty());
        // Every entry belongs to the provider it is filed under.
        for (slot, provider) in PROVIDERS.iter().enumerate() {
            assert!(pricing.models[slot].values().all(|p| p.provider == *provider));
            assert!(!pricing.models[slot].is_empty());
        }
    }

    #[test]
    fn openai_with_cached_tokens_prices_each_class_once() {
        // The chat completion in usage.rs's tests: prompt 1117 of which 1024 cached, 46 out.
        // gpt-4o-2024-08-06: input 2.5e-06, cached 1.25e-06, output 1e-05 USD/token.
        // 93 × 2.5e-6 + 1024 × 1.25e-6 + 46 × 1e-5 = 0.0002325 + 0.00128 + 0.00046 = 0.0019725 USD.
        let u = usage("gpt-4o-2024-08-06", 93, 46, 1024, 0);
        assert_eq!(embedded().cost_nano_usd(OPENAI, &u), Some(1_972_500));
        // Pricing the whole prompt as input and the cached part again would be 0.0045325 USD.
        let wrong = usage("gpt-4o-2024-08-06", 1117, 46, 1024, 0);
        assert_eq!(embedded().cost_nano_usd(OPENAI, &wrong), Some(4_532_500));
    }

    #[test]
    fn anthropic_with_cache_read_and_write() {
        // claude-sonnet-4-5-20250929: input 3e-06, output 1.5e-05, cache read 3e-07,
        // cache write 3.75e-06. 12 in, 1800 read, 2048 written, 27 out:
        // 0.000036 + 0.00054 + 0.00768 + 0.000405 = 0.008661 USD.
        let u = usage("claude-sonnet-4-5-20250929", 12, 27, 1800, 2048);
        assert_eq!(embedded().cost_nano_usd(ANTHROPIC, &u), Some(8_661_000));
        assert_eq!(
            embedded().price(ANTHROPIC, "claude-sonnet-4-5-20250929").unwrap().cost_atto_usd(&u),
            Some(8_661_000_000_000_000)
        );
    }

    #[test]
    fn deepseek_hit_and_miss() {
        // deepseek-chat (from the prefixed entry): input 2.8e-07, cache hit 2.8e-08, output 4.2e-07.
        // 220 × 2.8e-7 + 1280 × 2.8e-8 + 200 × 4.2e-7 = 0.0000616 + 0.00003584 + 0.000084
        // = 0.00018144 USD.
        let u = usage("deepseek-chat", 220, 200, 1280, 0);
        assert_eq!(embedded().cost_nano_usd(DEEPSEEK, &u), Some(181_440));
        assert_eq!(embedded().price(DEEPSEEK, "deepseek-chat").unwrap().key, "deepseek/deepseek-chat");
    }

    #[test]
    fn missing_cache_prices_fall_back_to_the_input_price() {
        // gpt-4-turbo has no cache prices: 1e-05 in, 3e-05 out.
        let p = embedded().price(OPENAI, "gpt-4-turbo").unwrap();
        assert_eq!(p.base.cache_read, None);
        let rates = p.rates_for(10);
        assert_eq!((rates.cache_read, rates.cache_write), (rates.input, rates.input));
        let u = usage("gpt-4-turbo", 10, 1, 20, 30);
        assert_eq!(embedded().cost_nano_usd(OPENAI, &u), Some(60 * 10_000 + 30_000));
        // An explicit 0.0 is a price.
        let p = embedded().price(DEEPSEEK, "deepseek-v3").unwrap();
        assert_eq!(p.rates_for(1).cache_write, 0);
    }

    #[test]
    fn long_context_tiers() {
        // gpt-5.4: 2.5e-06 / 1.5e-05 / read 2.5e-07; above 272k: 5e-06 / 2.25e-05 / read 5e-07.
        let at = |input, read| usage("gpt-5.4", input, 1000, read, 0);
        // Exactly 272000 prompt tokens: base prices.
        // 200000 × 2.5e-6 + 72000 × 2.5e-7 + 1000 × 1.5e-5 = 0.5 + 0.018 + 0.015 = 0.533 USD.
        assert_eq!(embedded().cost_nano_usd(OPENAI, &at(200_000, 72_000)), Some(533_000_000));
        // One more: the whole call at the tier.
        // 200001 × 5e-6 + 72000 × 5e-7 + 1000 × 2.25e-5 = 1.000005 + 0.036 + 0.0225 = 1.058505 USD.
        assert_eq!(embedded().cost_nano_usd(OPENAI, &at(200_001, 72_000)), Some(1_058_505_000));
        // gpt-5.5's tier gives no cache-write price: falls back to the tier's input price.
        let p = embedded().price(OPENAI, "gpt-5.5").unwrap();
        assert_eq!(p.rates_for(300_000).cache_write, p.rates_for(300_000).input);
        assert_eq!(p.rates_for(300_000).input, 10_000_000_000_000);
    }

    #[test]
    fn prefixed_and_unprefixed_ids_resolve() {
        let pricing = embedded();
        let gpt = pricing.price(OPENAI, "gpt-4o").unwrap();
        assert_eq!(pricing.price(OPENAI, "openai/gpt-4o"), Some(gpt));
        assert_eq!(pricing.price(OPENAI, "OpenAI/gpt-4o"), Some(gpt));
        assert_eq!(pricing.price(OPENAI, " GPT-4o "), Some(gpt));
        let opus = pricing.price(ANTHROPIC, "claude-opus-4-6").unwrap();
        assert_eq!(pricing.price(ANTHROPIC, "anthropic/claude-opus-4-6"), Some(opus));
        assert!(pricing.price(DEEPSEEK, "deepseek/deepseek-chat").is_some());
        assert_eq!(pricing.price(DEEPSEEK, "deepseek/deepseek-chat"), pricing.price(DEEPSEEK, "deepseek-chat"));
        // Keys that exist only with a prefix in the file.
        assert!(pricing.price(DEEPSEEK, "deepseek-v3").is_some());
        assert!(pricing.price(DEEPSEEK, "deepseek/deepseek-v3").is_some());
        // The provider must match.
        assert_eq!(pricing.price(OPENAI, "claude-opus-4-6"), None);
        assert_eq!(pricing.price(OPENAI, "anthropic/claude-opus-4-6"), None);
        assert_eq!(pricing.price(ANTHROPIC, "openai/gpt-4o"), None);
        assert_eq!(pricing.price(DEEPSEEK, "gpt-4o"), None);
        // Fine-tuned models are priced as their `ft:` base.
        let ft = pricing.price(OPENAI, "ft:gpt-4o-mini-2024-07-18:acme::9xYz").unwrap();
        assert_eq!(ft.key, "ft:gpt-4o-mini-2024-07-18");
        assert_eq!(pricing.price(OPENAI, "ft:gpt-9:acme::1"), None);
    }

    #[test]
    fn dated_ids_fall_back_to_their_family_or_are_unpriced() {
        let pricing = embedded();
        let gpt = pricing.price(OPENAI, "gpt-4o").unwrap();
        assert_eq!(pricing.price(OPENAI, "gpt-4o-2099-01-01"), Some(gpt));
        assert_eq!(pricing.price(OPENAI, "openai/gpt-4o-2099-01-01"), Some(gpt));
        let opus = pricing.price(ANTHROPIC, "claude-opus-4-6").unwrap();
        assert_eq!(pricing.price(ANTHROPIC, "claude-opus-4-6-20991231"), Some(opus));
        // A dated id in the file keeps its own price (gpt-4o-2024-05-13 cost 5e-06, not 2.5e-06).
        assert_eq!(pricing.price(OPENAI, "gpt-4o-2024-05-13").unwrap().base.input, 5_000_000_000_000);
        // A retired model whose family is gone: unpriced, not free.
        let retired = usage("claude-3-opus-20240229", 100, 100, 0, 0);
        assert_eq!(pricing.price(ANTHROPIC, "claude-3-opus-20240229"), None);
        assert_eq!(pricing.cost_nano_usd(ANTHROPIC, &retired), None);
        // Not dates: left alone.
        assert_eq!(strip_date_suffix("gpt-4-0613"), None);
        assert_eq!(strip_date_suffix("model-20241399"), None);
        assert_eq!(strip_date_suffix("-20240229"), None);
        assert_eq!(strip_date_suffix("x-2024-02-29"), Some("x"));
    }

    #[test]
    fn unknown_models_are_unpriced_not_free() {
        let pricing = embedded();
        assert_eq!(pricing.cost_nano_usd(OPENAI, &usage("gpt-7-ultra", 10, 10, 0, 0)), None);
        assert_eq!(pricing.cost_nano_usd(OPENAI, &Usage { input_tokens: 10, ..Usage::default() }), None);
        assert_eq!(pricing.cost_nano_usd(OPENAI, &usage("", 1, 1, 0, 0)), None);
        // A known model with no tokens costs nothing, and says so.
        assert_eq!(pricing.cost_nano_usd(OPENAI, &usage("gpt-4o", 0, 0, 0, 0)), Some(0));
    }

    #[test]
    fn sums_are_exact_where_floats_are_not() {
        // gpt-4.1-nano input: 1e-07 USD/token.
        let pricing = embedded();
        let u = usage("gpt-4.1-nano", 123_456_789_012, 0, 0, 0);
        assert_eq!(pricing.cost_nano_usd(OPENAI, &u), Some(12_345_678_901_200));
        // A million one-token calls: exactly 0.1 USD; summing the float prices is not.
        let one = pricing.cost_nano_usd(OPENAI, &usage("gpt-4.1-nano", 1, 0, 0, 0)).unwrap();
        assert_eq!(one, 100);
        assert_eq!((0..1_000_000).map(|_| one).sum::<u64>(), 100_000_000);
        let float: f64 = (0..1_000_000).map(|_| 1e-7_f64).sum();
        assert_ne!(float, 0.1);
        // Rounding is half up, once, on the total.
        let text = r#"{"m": {"litellm_provider": "openai", "input_cost_per_token": 1.5e-10, "output_cost_per_token": 2.5e-10}}"#;
        let p = Pricing::from_json(text).unwrap();
        assert_eq!(p.cost_nano_usd(OPENAI, &usage("m", 3, 0, 0, 0)), Some(0)); // 0.45 nano
        assert_eq!(p.cost_nano_usd(OPENAI, &usage("m", 10, 0, 0, 0)), Some(2)); // 1.5 nano
        assert_eq!(p.cost_nano_usd(OPENAI, &usage("m", 1, 1, 0, 0)), Some(0)); // 0.4 nano
        assert_eq!(p.cost_nano_usd(OPENAI, &usage("m", 2, 1, 0, 0)), Some(1)); // 0.55 nano
        // Overflow is unpriced, never wrapped.
        let text = r#"{"m": {"litellm_provider": "openai", "input_cost_per_token": 1e20, "output_cost_per_token": 0}}"#;
        let p = Pricing::from_json(text).unwrap();
        assert_eq!(p.cost_nano_usd(OPENAI, &usage("m", u64::MAX, 0, 0, 0)), None);
    }

    const SMALL: &str = r#"{
    "sample_spec": {
        "input_cost_per_token": 0.0,
        "litellm_provider": "one of https://docs.litellm.ai/docs/providers",
        "mode": "one of: chat, embedding, completion",
        "output_cost_per_token": 0.0
    },
    "gpt-4o": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05, "max_tokens": 16384, "supports_vision": true},
    "text-embedding-3-small": {"litellm_provider": "openai", "mode": "embedding", "input_cost_per_token": 2e-08, "output_cost_per_token": 0.0},
    "azure/gpt-4o": {"litellm_provider": "azure", "mode": "chat", "input_cost_per_token": 9e-06, "output_cost_per_token": 1e-05},
    "openai/container": {"litellm_provider": "openai", "mode": "chat", "code_interpreter_cost_per_session": 0.03},
    "broken-price": {"litellm_provider": "openai", "input_cost_per_token": "cheap", "output_cost_per_token": 1e-05},
    "negative": {"litellm_provider": "openai", "input_cost_per_token": -1e-06, "output_cost_per_token": 1e-05},
    "not-an-object": 42,
    "claude-x": {"litellm_provider": "anthropic", "input_cost_per_token": 1e-06, "output_cost_per_token": 5e-06, "cache_read_input_token_cost": null}
}"#;

    #[test]
    fn sample_spec_and_unusable_entries_are_skipped() {
        let p = Pricing::from_json(SMALL).unwrap();
        assert_eq!(p.len(), 3);
        assert!(p.price(OPENAI, "sample_spec").is_none());
        assert!(p.price(OPENAI, "gpt-4o").is_some());
        assert!(p.price(OPENAI, "text-embedding-3-small").is_some());
        assert_eq!(p.price(OPENAI, "gpt-4o").unwrap().base.input, 2_500_000_000_000, "not azure's");
        assert!(p.price(OPENAI, "container").is_none());
        assert!(p.price(OPENAI, "broken-price").is_none());
        assert!(p.price(OPENAI, "negative").is_none());
        assert_eq!(p.price(ANTHROPIC, "claude-x").unwrap().base.cache_read, None);
    }

    #[test]
    fn max_output_tokens_are_read_where_usable() {
        let text = r#"{
            "a": {"litellm_provider": "openai", "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06, "max_output_tokens": 4096},
            "b": {"litellm_provider": "openai", "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06, "max_output_tokens": 1.5},
            "c": {"litellm_provider": "openai", "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06, "max_output_tokens": "x"},
            "d": {"litellm_provider": "openai", "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06, "max_tokens": 8192}
        }"#;
        let p = Pricing::from_json(text).unwrap();
        let max = |m: &str| p.price(OPENAI, m).unwrap().max_output_tokens;
        assert_eq!(
            (max("a"), max("b"), max("c"), max("d")),
            (Some(4096), None, None, None),
            "odd values: unknown, still priced"
        );
        let e = embedded();
        assert_eq!(e.price(OPENAI, "gpt-4o").unwrap().max_output_tokens, Some(16_384));
        assert_eq!(e.price(ANTHROPIC, "claude-sonnet-4-5").unwrap().max_output_tokens, Some(64_000));
        assert_eq!(e.price(DEEPSEEK, "deepseek-chat").unwrap().max_output_tokens, Some(8_192));
        assert_eq!(e.models().iter().filter(|(_, m)| m.max_output_tokens.is_some()).count(), 152);
    }

    #[test]
    fn malformed_files_are_refused_clearly() {
        let cases = [
            ("", "not valid JSON"),
            ("{\"gpt-4o\": {", "not valid JSON"),
            (&SMALL[..SMALL.len() / 2], "not valid JSON"),
            ("<html>", "not valid JSON"),
            ("[{\"litellm_provider\": \"openai\"}]", "not a JSON object"),
            ("\"text\"", "not a JSON object"),
            ("{}", "no usable prices"),
            (
                r#"{"sample_spec": {"litellm_provider": "openai", "input_cost_per_token": 0.0, "output_cost_per_token": 0.0}}"#,
                "no usable prices",
            ),
        ];
        for (text, message) in cases {
            let err = Pricing::from_json(text).unwrap_err();
            assert!(err.to_string().contains(message), "{text:?}: {err}");
        }
    }

    #[test]
    fn prefixed_file_keys_win_over_bare_ones_in_either_order() {
        for text in [
            r#"{"openai/m": {"litellm_provider": "openai", "input_cost_per_token": 2e-06, "output_cost_per_token": 0}, "m": {"litellm_provider": "openai", "input_cost_per_token": 1e-06, "output_cost_per_token": 0}}"#,
            r#"{"m": {"litellm_provider": "openai", "input_cost_per_token": 1e-06, "output_cost_per_token": 0}, "openai/m": {"litellm_provider": "openai", "input_cost_per_token": 2e-06, "output_cost_per_token": 0}}"#,
        ] {
            let p = Pricing::from_json(text).unwrap();
            assert_eq!(p.len(), 1);
            assert_eq!(p.price(OPENAI, "m").unwrap().base.input, 2_000_000_000_000);
        }
    }

    #[test]
    fn tier_fields() {
        assert_eq!(tier_field("input_cost_per_token_above_272k_tokens"), Some((INPUT, 272_000)));
        assert_eq!(tier_field("cache_read_input_token_cost_above_200000_tokens"), Some((CACHE_READ, 200_000)));
        assert_eq!(tier_field("input_cost_per_token_above_272k_tokens_priority"), None);
        assert_eq!(tier_field("cache_creation_input_token_cost_above_1hr"), None);
        assert_eq!(tier_field("cache_creation_input_token_cost_above_1hr_above_100k_tokens"), None);
        assert_eq!(tier_field("output_cost_per_token_batches"), None);
    }

    #[test]
    fn load_and_install() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        assert!(matches!(Pricing::load(&missing), Err(PricingError::Read { .. })));
        let source = dir.path().join("full.json");
        std::fs::write(&source, SMALL).unwrap();
        let dest = dir.path().join("data/model_prices.json");
        let installed = Pricing::install(&source, &dest).unwrap();
        assert_eq!(Pricing::load(&dest).unwrap(), installed);
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), SMALL);
        // A bad file is refused and the installed one left alone.
        std::fs::write(&source, "{\"truncated\": ").unwrap();
        assert!(matches!(Pricing::install(&source, &dest), Err(PricingError::Json(_))));
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), SMALL);
        assert_eq!(std::fs::read_dir(dir.path().join("data")).unwrap().count(), 1, "no temp file left");
    }
}
