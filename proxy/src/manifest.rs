//! The agent manifest, `assegai.json`: typed parsing and validation.
//!
//! Every mistake is reported with the file, the field (as a path like `permissions.chains[1]`)
//! and what is wrong. A manifest that parses here is valid: later code never re-checks it.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

use alloy_primitives::{Address, U256};
use assegai_sdk::ChainId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::units::{UnitsError, parse_units};

/// A manifest that could not be read or is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    /// The manifest file.
    pub file: PathBuf,
    /// Where in the file: a field path, or a line and column for JSON syntax errors.
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file.display(), self.field, self.problem)
    }
}

/// How the agent is started.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// A Cargo project.
    Rust,
    /// A Node.js project.
    Node,
    /// A Python script.
    Python,
    /// An arbitrary command (`"command": [...]`).
    Command,
}

/// An AI provider the proxy can forward to.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// OpenAI.
    Openai,
    /// Anthropic.
    Anthropic,
    /// DeepSeek (OpenAI-compatible).
    Deepseek,
}

impl Provider {
    /// Every provider.
    pub const ALL: [Provider; 3] = [Provider::Openai, Provider::Anthropic, Provider::Deepseek];

    /// The name used in URLs, manifests and commands (`openai`).
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Openai => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Deepseek => "deepseek",
        }
    }

    /// The vendor's name (`OpenAI`).
    pub fn display_name(self) -> &'static str {
        match self {
            Provider::Openai => "OpenAI",
            Provider::Anthropic => "Anthropic",
            Provider::Deepseek => "DeepSeek",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Provider {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Provider::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown provider `{s}` (expected openai, anthropic or deepseek)"))
    }
}

/// A decimal amount as written in the manifest, with its exact value in base units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amount<const DECIMALS: u8> {
    text: String,
    base_units: U256,
}

/// An amount of a chain's native currency ("0.1" ETH), exact to the wei.
pub type NativeAmount = Amount<18>;
/// A USD amount ("5.00"), exact to a nano-dollar (the unit costs are recorded in).
pub type UsdAmount = Amount<9>;

impl<const D: u8> Amount<D> {
    /// Parses a decimal with at most `D` decimal places.
    pub fn parse(text: &str) -> Result<Self, UnitsError> {
        Ok(Amount { text: text.to_owned(), base_units: parse_units(text, D)? })
    }

    /// The amount as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The exact value in base units (wei for [`NativeAmount`]).
    pub fn base_units(&self) -> U256 {
        self.base_units
    }
}

impl<const D: u8> Serialize for Amount<D> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de, const D: u8> Deserialize<'de> for Amount<D> {
    fn deserialize<De: Deserializer<'de>>(d: De) -> Result<Self, De::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(serde_json::Number),
        }
        match Raw::deserialize(d)? {
            Raw::Text(t) => Amount::parse(&t).map_err(serde::de::Error::custom),
            Raw::Number(n) => Err(serde::de::Error::custom(format!(
                "write amounts as strings (\"{n}\"), so they are exact; a JSON number may be rounded"
            ))),
        }
    }
}

/// What the agent may touch.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    /// Chains the agent may read and transact on.
    #[serde(default)]
    pub chains: Vec<ChainId>,
    /// RPC endpoint per chain (each chain must also be in `chains`).
    #[serde(default)]
    pub rpcs: BTreeMap<ChainId, String>,
    /// AI providers the agent may call.
    #[serde(default)]
    pub apis: Vec<Provider>,
    /// Contracts the agent may call with arbitrary calldata.
    #[serde(default)]
    pub contracts: Vec<Address>,
    /// Addresses that may receive an unlimited token approval or approval-for-all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spenders: Vec<Address>,
    /// Whether `npm install` may run the dependencies' install scripts (off: `--ignore-scripts`).
    /// They run in the build's sandbox either way; this only lets them run at all.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub install_scripts: bool,
}

/// Optional USD budget for AI calls.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AiBudget {
    /// Spend allowed in any rolling 24 hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_usd: Option<UsdAmount>,
    /// Spend allowed in any rolling 30 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_usd: Option<UsdAmount>,
}

/// Container resources.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Memory limit, e.g. `"256MB"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// CPU share, e.g. `"0.5"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
}

/// Native-currency spending limits (decimal native units, e.g. `"0.1"`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SpendingLimits {
    /// Largest single transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_transaction: Option<NativeAmount>,
    /// Approved + pending in any rolling 24 hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<NativeAmount>,
    /// Approved + pending in any rolling 7 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly: Option<NativeAmount>,
    /// Approved + pending in any rolling 30 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly: Option<NativeAmount>,
    /// Largest worst-case fee (gas limit × max fee per gas) of one transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fee_per_transaction: Option<NativeAmount>,
}

/// A token amount as written ("1000"); only its syntax is checked here, since its base units depend
/// on the token's decimals (`base_units` is scaled by 10^18 and is not meaningful on its own).
pub type TokenAmount = Amount<18>;

/// A token amount per token address, per chain (decimal token units).
pub type Allowances = BTreeMap<ChainId, BTreeMap<Address, TokenAmount>>;

/// A parsed and validated `assegai.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Display name.
    pub name: String,
    /// The agent's own version.
    #[serde(default = "default_version")]
    pub version: String,
    /// What the agent does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// How `assegai run` starts it; absent for agents started some other way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Runtime>,
    /// Main file, relative to the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    /// The command line for `runtime: "command"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// What the agent may touch.
    #[serde(default)]
    pub permissions: Permissions,
    /// ERC-20 allowances.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allowances: Allowances,
    /// AI spend budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai_budget: Option<AiBudget>,
    /// Container resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Native-currency spending limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spending_limits: Option<SpendingLimits>,
}

fn default_version() -> String {
    "0.0.0".into()
}

impl Manifest {
    /// The manifest of an agent registered without one: the local chain only, nothing else.
    pub fn minimal(name: &str) -> Self {
        Manifest {
            name: name.to_owned(),
            version: default_version(),
            description: None,
            runtime: None,
            entrypoint: None,
            command: None,
            permissions: Permissions { chains: vec![ChainId::ANVIL], ..Permissions::default() },
            allowances: BTreeMap::new(),
            ai_budget: None,
            resources: None,
            spending_limits: None,
        }
    }

    /// Reads and validates a manifest file (`assegai.json`, or a directory containing one).
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let file = if path.is_dir() { path.join("assegai.json") } else { path.to_owned() };
        let text = std::fs::read_to_string(&file).map_err(|e| ManifestError {
            file: file.clone(),
            field: "file".into(),
            problem: format!("cannot read it ({e})"),
        })?;
        Self::parse(&text, &file)
    }

    /// Parses and validates manifest text; `file` is only used in messages.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ManifestError> {
        let err = |field: String, problem: String| ManifestError { file: file.to_owned(), field, problem };
        let de = &mut serde_json::Deserializer::from_str(text);
        let manifest: Manifest = serde_path_to_error::deserialize(de).map_err(|e| {
            let inner = e.inner();
            if inner.is_syntax() || inner.is_eof() {
                return err(
                    format!("line {} column {}", inner.line(), inner.column()),
                    format!("invalid JSON: {}", strip_position(&inner.to_string())),
                );
            }
            let path = e.path().to_string();
            let field = if path == "." { "(top level)".to_owned() } else { format!("`{path}`") };
            err(field, strip_position(&inner.to_string()))
        })?;
        manifest.validate().map_err(|(field, problem)| err(format!("`{field}`"), problem))?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let name = self.name.trim();
        if name.is_empty() {
            return Err(("name".into(), "must not be empty".into()));
        }
        if name.chars().count() > 64 || self.name.chars().any(char::is_control) {
            return Err(("name".into(), "must be at most 64 characters, without control characters".into()));
        }
        match (self.runtime, &self.command) {
            (Some(Runtime::Command), None) => {
                return Err((
                    "command".into(),
                    "is required when `runtime` is \"command\" (e.g. [\"./agent.sh\"])".into(),
                ));
            }
            (Some(Runtime::Command), Some(c)) if c.is_empty() || c[0].trim().is_empty() => {
                return Err(("command".into(), "must name a program as its first element".into()));
            }
            (Some(Runtime::Rust | Runtime::Node | Runtime::Python) | None, Some(_)) => {
                return Err(("command".into(), "is only used with `runtime: \"command\"`".into()));
            }
            _ => {}
        }
        for (chain, url) in &self.permissions.rpcs {
            if !self.permissions.chains.contains(chain) {
                return Err((
                    format!("permissions.rpcs.{chain}"),
                    format!(
                        "an RPC is given for {chain}, which is not in `permissions.chains`; add it there or remove this entry"
                    ),
                ));
            }
            if let Err(e) = crate::chain::parse_rpc_url(url) {
                return Err((format!("permissions.rpcs.{chain}"), e));
            }
        }
        if let Some(mem) = self.resources.as_ref().and_then(|r| r.memory.as_deref()) {
            parse_memory(mem).map_err(|e| ("resources.memory".to_owned(), e))?;
        }
        if let Some(cpu) = self.resources.as_ref().and_then(|r| r.cpu.as_deref()) {
            match cpu.parse::<f64>() {
                Ok(c) if c.is_finite() && c > 0.0 && c <= 1024.0 => {}
                _ => {
                    return Err((
                        "resources.cpu".into(),
                        format!("`{cpu}` is not a CPU count such as \"0.5\" or \"2\""),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The memory limit in bytes, if one is set.
    pub fn memory_limit_bytes(&self) -> Option<u64> {
        self.resources.as_ref()?.memory.as_deref().and_then(|m| parse_memory(m).ok())
    }

    /// Whether `chain` is in `permissions.chains`.
    pub fn allows_chain(&self, chain: ChainId) -> bool {
        self.permissions.chains.contains(&chain)
    }
}

/// serde_json appends " at line X column Y" to messages; the field path already says where.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// Parses `"256MB"`, `"1GiB"`, `"512m"` into bytes.
fn parse_memory(text: &str) -> Result<u64, String> {
    let bad = || format!("`{text}` is not a memory size such as \"256MB\" or \"1GB\"");
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    let bytes = n.checked_mul(mult).ok_or_else(bad)?;
    if bytes < 4 << 20 {
        return Err(format!("`{text}` is too small: an agent needs at least 4MB"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
      "name": "Local Test Agent", "version": "1.0.0",
      "runtime": "rust", "entrypoint": "src/main.rs",
      "permissions": {
        "chains": ["eip155:31337"],
        "rpcs": { "eip155:31337": "http://localhost:8545" },
        "apis": ["openai"],
        "contracts": []
      },
      "allowances": { "eip155:1": { "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48": "1000" } },
      "ai_budget": { "daily_usd": "5.00", "monthly_usd": "50.00" },
      "resources": { "memory": "256MB", "cpu": "0.5" },
      "spending_limits": { "per_transaction": "1.0", "daily": "10.0", "weekly": "50.0", "monthly": "100.0" }
    }"#;

    fn parse(s: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(s, Path::new("agent/assegai.json"))
    }

    #[test]
    fn the_spec_example_parses() {
        let m = parse(GOOD).unwrap();
        assert_eq!(m.runtime, Some(Runtime::Rust));
        assert_eq!(m.permissions.apis, vec![Provider::Openai]);
        let limits = m.spending_limits.as_ref().unwrap();
        assert_eq!(limits.daily.as_ref().unwrap().base_units(), U256::from(10u128 * 10u128.pow(18)));
        assert_eq!(m.memory_limit_bytes(), Some(256 << 20));
        assert!(m.allows_chain(ChainId::ANVIL));
        // Round-trips through JSON (it is stored in the database that way).
        let again = parse(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(again, m);
    }

    fn mistake(patch: impl Fn(&mut serde_json::Value)) -> String {
        let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        patch(&mut v);
        let e = parse(&v.to_string()).unwrap_err();
        assert_eq!(e.file, Path::new("agent/assegai.json"));
        e.to_string()
    }

    #[test]
    fn each_mistake_has_its_own_message() {
        let m = mistake(|v| v["permissions"]["chains"][0] = "ethereum:1".into());
        assert!(m.contains("`permissions.chains[0]`") && m.contains("eip155"), "{m}");

        let m = mistake(|v| v["permissions"]["rpcs"]["eip155:1"] = "http://x".into());
        assert!(m.contains("permissions.rpcs.eip155:1") && m.contains("not in `permissions.chains`"), "{m}");

        let m = mistake(|v| v["spending_limits"]["daily"] = "ten".into());
        assert!(m.contains("`spending_limits.daily`") && m.contains("not a plain decimal"), "{m}");

        let m = mistake(|v| v["spending_limits"]["daily"] = 10.into());
        assert!(m.contains("`spending_limits.daily`") && m.contains("strings"), "{m}");

        let m = mistake(|v| v["spending_limits"]["per_transaction"] = "0.0000000000000000001".into());
        assert!(m.contains("more than 18 decimal places"), "{m}");

        let m = mistake(|v| v["runtime"] = "java".into());
        assert!(m.contains("`runtime`") && m.contains("unknown variant `java`"), "{m}");

        let m = mistake(|v| v["permissions"]["apis"][0] = "gemini".into());
        assert!(m.contains("`permissions.apis[0]`") && m.contains("gemini"), "{m}");

        let m = mistake(|v| v["permissions"]["contracts"] = serde_json::json!(["0x1234"]));
        assert!(m.contains("`permissions.contracts[0]`"), "{m}");

        let m = mistake(|v| v["spending_limit"] = serde_json::json!({}));
        assert!(m.contains("unknown field `spending_limit`"), "{m}");

        let m = mistake(|v| {
            v.as_object_mut().unwrap().remove("name");
        });
        assert!(m.contains("missing field `name`"), "{m}");

        let m = mistake(|v| v["runtime"] = "command".into());
        assert!(m.contains("`command`") && m.contains("required"), "{m}");

        let m = mistake(|v| v["resources"]["memory"] = "lots".into());
        assert!(m.contains("`resources.memory`"), "{m}");

        let m = mistake(|v| v["permissions"]["rpcs"]["eip155:31337"] = "localhost:8545".into());
        assert!(m.contains("permissions.rpcs.eip155:31337") && m.contains("http"), "{m}");
    }

    #[test]
    fn json_syntax_errors_give_a_position() {
        let e = parse("{\n  \"name\": \"x\",\n  oops\n}").unwrap_err();
        assert_eq!(e.field, "line 3 column 3");
        assert!(e.problem.starts_with("invalid JSON"), "{e}");
        let e = parse("").unwrap_err();
        assert!(e.problem.contains("EOF"), "{e}");
    }

    #[test]
    fn the_readme_example_is_valid() {
        let m = parse(include_str!("../../examples/assegai.json")).unwrap();
        assert_eq!(m.runtime, Some(Runtime::Command));
    }

    #[test]
    fn the_minimal_manifest_is_valid() {
        let m = Manifest::minimal("bot");
        assert_eq!(parse(&serde_json::to_string(&m).unwrap()).unwrap(), m);
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("512m").unwrap(), 512 << 20);
        assert_eq!(parse_memory("1GiB").unwrap(), 1 << 30);
        assert!(parse_memory("1").is_err());
        assert!(parse_memory("99999999999999999999GB").is_err());
    }
}
