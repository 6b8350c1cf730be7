//! Whether a manifest grants more than another: the file in an agent's directory (the agent
//! author's wish, which the agent itself may have rewritten) against the registered one (the
//! user's decision). See SPEC §8, "Permissions widen only when a person says so".
//!
//! [`widening`] lists every way `wanted` grants more than `registered`, one readable line each.
//! Values are compared typed (base units, addresses, chain ids, parsed URLs, bytes), never as
//! text, so `"1.0"` and `"1"` are the same limit and a checksum change is not a new contract.
//! Narrowing (fewer chains, lower limits) is never listed: taking it needs no question.

use std::fmt;

use url::Url;

use crate::{
    chain::parse_rpc_url,
    manifest::{Amount, Manifest, Runtime},
    sanitize::neutralize,
};

/// One way a manifest grants more than the registered one.
///
/// The fields hold the text as the manifests have it (agent-supplied); [`fmt::Display`]
/// neutralises it, so show a widening with `to_string()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Widening {
    /// The field, as a path: `spending_limits.daily`, `permissions.rpcs[eip155:1]`.
    pub field: String,
    /// What the registered manifest says; `None` when `to` is added to a list.
    pub from: Option<String>,
    /// What the wider manifest says.
    pub to: String,
}

impl fmt::Display for Widening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (field, to) = (neutralize(&self.field), neutralize(&self.to));
        match &self.from {
            None => write!(f, "{field}: + {to}"),
            Some(from) => write!(f, "{field}: {} → {to}", neutralize(from)),
        }
    }
}

/// Shown for a limit, budget or resource that `wanted` removes.
pub const NO_LIMIT: &str = "(no limit)";
/// Shown for an RPC URL the registered manifest leaves to `config.toml`.
pub const DEFAULT_RPC: &str = "(the configured default)";
/// Shown for an allowance, runtime, entrypoint or command the registered manifest does not have.
pub const NONE: &str = "(none)";

/// Every way `wanted` grants more than `registered`, in manifest order; empty when it grants
/// nothing more (equal, narrower, or different only in name, version or description).
pub fn widening(registered: &Manifest, wanted: &Manifest) -> Vec<Widening> {
    let mut out = Vec::new();
    let mut push = |field: String, from: Option<String>, to: String| out.push(Widening { field, from, to });

    // What gets executed. A manifest without a runtime starts nothing (the agent is run some other
    // way, with a token the person hands it), so dropping the runtime is no widening. Any other
    // change of runtime, entrypoint or command is one: it decides which program runs with the
    // agent's token and which build step runs first (`cargo build` runs `build.rs`, `npm install`
    // install scripts), and `["/bin/sh", "-c", "…"]` in place of `["./agent.sh"]` is a different
    // agent than the person agreed to run. (The agent's own files can still change between runs;
    // that is its code, contained by the sandbox, not a permission.)
    if wanted.runtime.is_some() {
        if wanted.runtime != registered.runtime {
            push("runtime".into(), Some(runtime_text(registered.runtime)), runtime_text(wanted.runtime));
        }
        if wanted.entrypoint != registered.entrypoint {
            let text = |e: &Option<String>| e.clone().unwrap_or_else(|| NONE.into());
            push("entrypoint".into(), Some(text(&registered.entrypoint)), text(&wanted.entrypoint));
        }
        if wanted.command != registered.command {
            push("command".into(), Some(command_text(&registered.command)), command_text(&wanted.command));
        }
    }

    let (old, new) = (&registered.permissions, &wanted.permissions);
    for chain in new.chains.iter().filter(|c| !old.chains.contains(c)) {
        push("permissions.chains".into(), None, chain.to_string());
    }
    // A new endpoint is where the agent's reads (and what they reveal) go, and what it answers is
    // what the agent believes; falling back to the configured default is the user's own choice.
    for (chain, url) in &new.rpcs {
        let from = match old.rpcs.get(chain) {
            Some(before) if same_url(before, url) => continue,
            Some(before) => before.clone(),
            None => DEFAULT_RPC.into(),
        };
        push(format!("permissions.rpcs[{chain}]"), Some(from), url.clone());
    }
    for api in new.apis.iter().filter(|a| !old.apis.contains(a)) {
        push("permissions.apis".into(), None, api.as_str().into());
    }
    for contract in new.contracts.iter().filter(|c| !old.contracts.contains(c)) {
        push("permissions.contracts".into(), None, contract.to_checksum(None));
    }
    for spender in new.spenders.iter().filter(|s| !old.spenders.contains(s)) {
        push("permissions.spenders".into(), None, spender.to_checksum(None));
    }
    if new.install_scripts && !old.install_scripts {
        push("permissions.install_scripts".into(), Some("false".into()), "true".into());
    }

    for (chain, tokens) in &wanted.allowances {
        for (token, amount) in tokens {
            let field = format!("allowances[{chain}][{}]", token.to_checksum(None));
            // Both sides are scaled by the same 10^18, so their base units order them exactly.
            match registered.allowances.get(chain).and_then(|t| t.get(token)) {
                None => push(field, Some(NONE.into()), amount.as_str().into()),
                Some(before) if amount.base_units() > before.base_units() => {
                    push(field, Some(before.as_str().into()), amount.as_str().into());
                }
                Some(_) => {}
            }
        }
    }

    let budget = (registered.ai_budget.clone().unwrap_or_default(), wanted.ai_budget.clone().unwrap_or_default());
    for (field, before, after) in [
        ("ai_budget.daily_usd", &budget.0.daily_usd, &budget.1.daily_usd),
        ("ai_budget.monthly_usd", &budget.0.monthly_usd, &budget.1.monthly_usd),
    ] {
        if let Some((from, to)) = higher_limit(before.as_ref(), after.as_ref()) {
            push(field.into(), Some(from), to);
        }
    }

    let limits =
        (registered.spending_limits.clone().unwrap_or_default(), wanted.spending_limits.clone().unwrap_or_default());
    for (field, before, after) in [
        ("spending_limits.per_transaction", &limits.0.per_transaction, &limits.1.per_transaction),
        ("spending_limits.daily", &limits.0.daily, &limits.1.daily),
        ("spending_limits.weekly", &limits.0.weekly, &limits.1.weekly),
        ("spending_limits.monthly", &limits.0.monthly, &limits.1.monthly),
        (
            "spending_limits.max_fee_per_transaction",
            &limits.0.max_fee_per_transaction,
            &limits.1.max_fee_per_transaction,
        ),
    ] {
        if let Some((from, to)) = higher_limit(before.as_ref(), after.as_ref()) {
            push(field.into(), Some(from), to);
        }
    }

    let memory_text = |m: &Manifest| m.resources.as_ref().and_then(|r| r.memory.clone()).unwrap_or_default();
    match (registered.memory_limit_bytes(), wanted.memory_limit_bytes()) {
        (Some(_), None) => push("resources.memory".into(), Some(memory_text(registered)), NO_LIMIT.into()),
        (Some(before), Some(after)) if after > before => {
            push("resources.memory".into(), Some(memory_text(registered)), memory_text(wanted));
        }
        _ => {}
    }
    let cpu = |m: &Manifest| {
        let text = m.resources.as_ref()?.cpu.clone()?;
        Some((text.parse::<f64>().ok()?, text))
    };
    match (cpu(registered), cpu(wanted)) {
        (Some((_, before)), None) => push("resources.cpu".into(), Some(before), NO_LIMIT.into()),
        (Some((before, text_before)), Some((after, text_after))) if after > before => {
            push("resources.cpu".into(), Some(text_before), text_after);
        }
        _ => {}
    }
    out
}

/// `Some((from, to))` when `after` allows more than `before`: higher, or removed (no limit).
fn higher_limit<const D: u8>(before: Option<&Amount<D>>, after: Option<&Amount<D>>) -> Option<(String, String)> {
    match (before, after) {
        (Some(b), None) => Some((b.as_str().into(), NO_LIMIT.into())),
        (Some(b), Some(a)) if a.base_units() > b.base_units() => Some((b.as_str().into(), a.as_str().into())),
        _ => None,
    }
}

/// Whether two RPC URLs name the same endpoint (compared parsed: `HTTP://Host:80` is `http://host`).
fn same_url(a: &str, b: &str) -> bool {
    let parse = |s: &str| -> Option<Url> { parse_rpc_url(s).ok() };
    match (parse(a), parse(b)) {
        (Some(a), Some(b)) => a == b,
        // Stored and loaded manifests are validated; an unparsable URL is compared as it is.
        _ => a == b,
    }
}

/// The runtime as the manifest spells it (`"node"`).
fn runtime_text(runtime: Option<Runtime>) -> String {
    match runtime {
        None => NONE,
        Some(Runtime::Rust) => "rust",
        Some(Runtime::Node) => "node",
        Some(Runtime::Python) => "python",
        Some(Runtime::Command) => "command",
    }
    .into()
}

/// The command line as JSON (`["/bin/sh", "agent.sh"]`), so arguments with spaces stay apart.
fn command_text(command: &Option<Vec<String>>) -> String {
    match command {
        None => NONE.into(),
        Some(c) => serde_json::to_string(c).unwrap_or_else(|_| format!("{c:?}")),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::{Value, json};

    use super::*;

    const USDC: &str = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48";
    const ROUTER: &str = "0x7a250d5630B4cF539739dF2C5dAcb4c659F2488D";
    const OTHER: &str = "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045";

    /// A manifest with every field set.
    fn base() -> Value {
        json!({
            "name": "bot", "version": "1.0.0",
            "runtime": "command", "command": ["/bin/sh", "agent.sh"],
            "permissions": {
                "chains": ["eip155:31337", "eip155:1"],
                "rpcs": { "eip155:1": "https://eth.example.org/rpc" },
                "apis": ["openai"],
                "contracts": [ROUTER],
                "spenders": [ROUTER]
            },
            "allowances": { "eip155:1": { USDC: "1000" } },
            "ai_budget": { "daily_usd": "5.00", "monthly_usd": "50" },
            "resources": { "memory": "256MB", "cpu": "0.5" },
            "spending_limits": { "per_transaction": "1.0", "daily": "10", "weekly": "50", "monthly": "100" }
        })
    }

    fn manifest(v: &Value) -> Manifest {
        Manifest::parse(&v.to_string(), Path::new("test/assegai.json")).unwrap()
    }

    /// The widenings of `base()` patched by `patch`, as shown.
    fn diff(patch: impl Fn(&mut Value)) -> Vec<String> {
        let mut wanted = base();
        patch(&mut wanted);
        widening(&manifest(&base()), &manifest(&wanted)).iter().map(ToString::to_string).collect()
    }

    fn one(patch: impl Fn(&mut Value)) -> String {
        let lines = diff(patch);
        assert_eq!(lines.len(), 1, "{lines:?}");
        lines[0].clone()
    }

    fn none(patch: impl Fn(&mut Value)) {
        let lines = diff(patch);
        assert!(lines.is_empty(), "a narrowing or an equal value was taken for a widening: {lines:?}");
    }

    fn remove(v: &mut Value, path: &[&str]) {
        let (last, parents) = path.split_last().unwrap();
        let mut at = v;
        for p in parents {
            at = &mut at[*p];
        }
        at.as_object_mut().unwrap().remove(*last);
    }

    #[test]
    fn the_same_manifest_grants_nothing_more() {
        assert!(widening(&manifest(&base()), &manifest(&base())).is_empty());
        // Name, version and description are not permissions.
        none(|v| {
            v["name"] = "renamed".into();
            v["version"] = "2.0.0".into();
            v["description"] = "new words".into();
        });
    }

    #[test]
    fn chains() {
        assert_eq!(
            one(|v| v["permissions"]["chains"] = json!(["eip155:31337", "eip155:1", "eip155:10"])),
            "permissions.chains: + eip155:10"
        );
        none(|v| {
            v["permissions"]["chains"] = json!(["eip155:31337"]);
            remove(v, &["permissions", "rpcs"]);
        });
        // Order does not matter.
        none(|v| v["permissions"]["chains"] = json!(["eip155:1", "eip155:31337"]));
    }

    #[test]
    fn rpcs() {
        assert_eq!(
            one(|v| v["permissions"]["rpcs"]["eip155:1"] = "http://evil.example:8545".into()),
            "permissions.rpcs[eip155:1]: https://eth.example.org/rpc → http://evil.example:8545"
        );
        assert_eq!(
            one(|v| v["permissions"]["rpcs"]["eip155:31337"] = "http://10.0.0.1:8545".into()),
            "permissions.rpcs[eip155:31337]: (the configured default) → http://10.0.0.1:8545"
        );
        // The same endpoint spelt differently is the same endpoint.
        none(|v| v["permissions"]["rpcs"]["eip155:1"] = "HTTPS://ETH.example.org:443/rpc".into());
        // Back to the configured default.
        none(|v| remove(v, &["permissions", "rpcs", "eip155:1"]));
    }

    #[test]
    fn a_new_chain_with_its_rpc_shows_both() {
        let lines = diff(|v| {
            v["permissions"]["chains"] = json!(["eip155:31337", "eip155:1", "eip155:8453"]);
            v["permissions"]["rpcs"]["eip155:8453"] = "https://base.example".into();
        });
        assert_eq!(
            lines,
            [
                "permissions.chains: + eip155:8453",
                "permissions.rpcs[eip155:8453]: (the configured default) → https://base.example"
            ]
        );
    }

    #[test]
    fn apis() {
        assert_eq!(one(|v| v["permissions"]["apis"] = json!(["openai", "anthropic"])), "permissions.apis: + anthropic");
        none(|v| v["permissions"]["apis"] = json!([]));
    }

    #[test]
    fn contracts() {
        assert_eq!(
            one(|v| v["permissions"]["contracts"] = json!([ROUTER, OTHER.to_lowercase()])),
            format!("permissions.contracts: + {OTHER}")
        );
        // The same address in another case is the same contract.
        none(|v| v["permissions"]["contracts"] = json!([ROUTER.to_lowercase()]));
        none(|v| v["permissions"]["contracts"] = json!([]));
    }

    #[test]
    fn install_scripts() {
        assert_eq!(
            one(|v| v["permissions"]["install_scripts"] = true.into()),
            "permissions.install_scripts: false → true"
        );
        none(|v| v["permissions"]["install_scripts"] = false.into());
    }

    #[test]
    fn spenders() {
        assert_eq!(one(|v| v["permissions"]["spenders"] = json!([OTHER])), format!("permissions.spenders: + {OTHER}"));
        none(|v| remove(v, &["permissions", "spenders"]));
    }

    #[test]
    fn allowances() {
        assert_eq!(
            one(|v| v["allowances"]["eip155:1"][USDC] = "1000.5".into()),
            format!("allowances[eip155:1][{USDC}]: 1000 → 1000.5")
        );
        assert_eq!(
            one(|v| v["allowances"]["eip155:1"][OTHER] = "1".into()),
            format!("allowances[eip155:1][{OTHER}]: (none) → 1")
        );
        assert_eq!(
            one(|v| v["allowances"]["eip155:31337"] = json!({ USDC: "5" })),
            format!("allowances[eip155:31337][{USDC}]: (none) → 5")
        );
        none(|v| v["allowances"]["eip155:1"][USDC] = "999.999".into());
        none(|v| v["allowances"]["eip155:1"][USDC] = "1000.000".into());
        none(|v| remove(v, &["allowances"]));
    }

    #[test]
    fn ai_budget() {
        assert_eq!(one(|v| v["ai_budget"]["daily_usd"] = "5.01".into()), "ai_budget.daily_usd: 5.00 → 5.01");
        assert_eq!(one(|v| remove(v, &["ai_budget", "monthly_usd"])), "ai_budget.monthly_usd: 50 → (no limit)");
        assert_eq!(
            diff(|v| remove(v, &["ai_budget"])),
            ["ai_budget.daily_usd: 5.00 → (no limit)", "ai_budget.monthly_usd: 50 → (no limit)"]
        );
        none(|v| v["ai_budget"] = json!({ "daily_usd": "1", "monthly_usd": "50.000" }));
    }

    #[test]
    fn max_fee_per_transaction() {
        // Adding a fee cap narrows; raising or removing it widens.
        none(|v| v["spending_limits"]["max_fee_per_transaction"] = "0.01".into());
        let mut capped = base();
        capped["spending_limits"]["max_fee_per_transaction"] = "0.01".into();
        let lines: Vec<String> =
            widening(&manifest(&capped), &manifest(&base())).iter().map(ToString::to_string).collect();
        assert_eq!(lines, ["spending_limits.max_fee_per_transaction: 0.01 → (no limit)"]);
        let mut higher = capped.clone();
        higher["spending_limits"]["max_fee_per_transaction"] = "0.02".into();
        let lines: Vec<String> =
            widening(&manifest(&capped), &manifest(&higher)).iter().map(ToString::to_string).collect();
        assert_eq!(lines, ["spending_limits.max_fee_per_transaction: 0.01 → 0.02"]);
    }

    #[test]
    fn spending_limits() {
        for field in ["per_transaction", "daily", "weekly", "monthly"] {
            let line = one(|v| v["spending_limits"][field] = "1000".into());
            assert!(line.starts_with(&format!("spending_limits.{field}: ")) && line.ends_with(" → 1000"), "{line}");
            let line = one(|v| remove(v, &["spending_limits", field]));
            assert!(line.ends_with(" → (no limit)"), "{line}");
            none(|v| v["spending_limits"][field] = "0.5".into());
        }
        assert_eq!(
            one(|v| v["spending_limits"]["per_transaction"] = "1.000000000000000001".into()),
            "spending_limits.per_transaction: 1.0 → 1.000000000000000001"
        );
        assert_eq!(diff(|v| remove(v, &["spending_limits"])).len(), 4);
        // The same amount spelt differently.
        none(|v| v["spending_limits"]["per_transaction"] = "1".into());
    }

    #[test]
    fn no_limit_registered_cannot_be_widened_by_a_limit() {
        let mut open = base();
        remove(&mut open, &["spending_limits"]);
        remove(&mut open, &["ai_budget"]);
        remove(&mut open, &["resources"]);
        assert!(widening(&manifest(&open), &manifest(&base())).is_empty());
    }

    #[test]
    fn memory() {
        assert_eq!(one(|v| v["resources"]["memory"] = "1GB".into()), "resources.memory: 256MB → 1GB");
        assert_eq!(one(|v| remove(v, &["resources", "memory"])), "resources.memory: 256MB → (no limit)");
        // Compared in bytes.
        none(|v| v["resources"]["memory"] = "256MiB".into());
        none(|v| v["resources"]["memory"] = "128m".into());
    }

    #[test]
    fn cpu() {
        assert_eq!(one(|v| v["resources"]["cpu"] = "2".into()), "resources.cpu: 0.5 → 2");
        assert_eq!(one(|v| remove(v, &["resources", "cpu"])), "resources.cpu: 0.5 → (no limit)");
        assert_eq!(diff(|v| remove(v, &["resources"])).len(), 2);
        none(|v| v["resources"]["cpu"] = "0.50".into());
        none(|v| v["resources"]["cpu"] = "0.25".into());
    }

    #[test]
    fn what_runs() {
        assert_eq!(
            one(|v| v["command"] = json!(["/bin/sh", "-c", "curl evil"])),
            r#"command: ["/bin/sh","agent.sh"] → ["/bin/sh","-c","curl evil"]"#
        );
        let lines = diff(|v| {
            v["runtime"] = "python".into();
            v["entrypoint"] = "main.py".into();
            remove(v, &["command"]);
        });
        assert_eq!(
            lines,
            [
                "runtime: command → python",
                "entrypoint: (none) → main.py",
                r#"command: ["/bin/sh","agent.sh"] → (none)"#
            ]
        );
        // A manifest that starts nothing (`agents add NAME` without one) runs nothing wider.
        none(|v| {
            remove(v, &["runtime"]);
            remove(v, &["command"]);
        });
        // From nothing to something runs something.
        let mut bare = base();
        remove(&mut bare, &["runtime"]);
        remove(&mut bare, &["command"]);
        let lines: Vec<String> =
            widening(&manifest(&bare), &manifest(&base())).iter().map(ToString::to_string).collect();
        assert_eq!(lines, ["runtime: (none) → command", r#"command: (none) → ["/bin/sh","agent.sh"]"#]);
    }

    #[test]
    fn narrowing_everything_at_once_is_taken_silently() {
        let narrow = json!({
            "name": "bot", "runtime": "command", "command": ["/bin/sh", "agent.sh"],
            "permissions": { "chains": ["eip155:31337"] },
            "ai_budget": { "daily_usd": "1", "monthly_usd": "2" },
            "resources": { "memory": "64MB", "cpu": "0.1" },
            "spending_limits": { "per_transaction": "0.1", "daily": "0.1", "weekly": "0.1", "monthly": "0.1" }
        });
        assert!(widening(&manifest(&base()), &manifest(&narrow)).is_empty());
        // And the way back lists every field it widens.
        let back: Vec<String> =
            widening(&manifest(&narrow), &manifest(&base())).iter().map(ToString::to_string).collect();
        for field in [
            "permissions.chains",
            "permissions.rpcs[eip155:1]",
            "permissions.apis",
            "permissions.contracts",
            "permissions.spenders",
            "allowances[eip155:1]",
            "ai_budget.daily_usd",
            "ai_budget.monthly_usd",
            "resources.memory",
            "resources.cpu",
            "spending_limits.per_transaction",
            "spending_limits.daily",
            "spending_limits.weekly",
            "spending_limits.monthly",
        ] {
            assert!(back.iter().any(|l| l.starts_with(field)), "{field} missing from {back:?}");
        }
    }

    #[test]
    fn agent_text_is_neutralised_when_shown() {
        let line = one(|v| v["permissions"]["rpcs"]["eip155:1"] = "http://evil.example/\u{202e}x".into());
        assert!(!line.contains('\u{202e}'), "{line}");
        let line = one(|v| v["command"] = json!(["/bin/sh", "a\u{1b}[2Jb"]));
        assert!(!line.chars().any(char::is_control), "{line:?}");
        let w = Widening { field: "f".into(), from: Some("a\nb".into()), to: "c\u{1b}d".into() };
        assert_eq!(w.to_string(), "f: a\\nb → c\\x1bd");
    }
}
