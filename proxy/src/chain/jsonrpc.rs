//! The one parser for what agents send the chain routes (`/agent/query-chain` and `/rpc/{chain}`),
//! and the bytes the node gets instead of the agent's.
//!
//! A node must receive exactly what was checked. Checking a parsed copy and forwarding the raw
//! body is not enough: JSON parsers disagree about duplicate keys (first or last wins), about
//! members whose names differ only by case (Go's `encoding/json` matches `Method` to `method`),
//! and about data after the value. So a body is parsed once, strictly — a duplicate key anywhere,
//! anything but whitespace after the value, or a member named like a JSON-RPC member but spelt
//! otherwise is a 400 saying what is wrong — and the node gets the proxy's own serialisation of
//! the checked calls ([`RpcBody::to_bytes`]). The method policy is [`super::policy`].

use std::fmt;

use assegai_sdk::wire::QueryChainRequest;
use bytes::Bytes;
use serde::{
    Deserialize, Deserializer, Serialize,
    de::{self, MapAccess, SeqAccess, Visitor},
};
use serde_json::{Map, Value};

use crate::{Error, Result, chain::policy, sanitize::quote};

/// The members of a JSON-RPC 2.0 request; nothing else may appear in one sent to `/rpc`.
const RPC_MEMBERS: &[&str] = &["jsonrpc", "id", "method", "params"];
/// The members of a `/agent/query-chain` body.
const QUERY_MEMBERS: &[&str] = &["chain", "method", "params"];

/// One checked JSON-RPC call, as the node will get it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Call {
    /// Always `"2.0"`.
    jsonrpc: &'static str,
    /// The caller's id (a string, a number or null); absent for a notification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    /// The method, a read the policy allows.
    pub method: String,
    /// Positional (array) or named (object) parameters, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
}

/// A checked `/rpc/{chain}` body: one call, or a batch of them.
#[derive(Debug, Clone, PartialEq)]
pub enum RpcBody {
    /// `{…}`.
    Single(Call),
    /// `[{…}, …]`, never empty.
    Batch(Vec<Call>),
}

impl RpcBody {
    /// Parses a raw JSON-RPC body strictly and checks every call against the method policy; a
    /// batch with any refused element is refused whole.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let body = match parse_strict(bytes)? {
            Value::Object(call) => RpcBody::Single(rpc_call(call, None)?),
            Value::Array(calls) if calls.is_empty() => return Err(Error::BadRequest("Empty JSON-RPC batch".into())),
            Value::Array(calls) => RpcBody::Batch(
                calls
                    .into_iter()
                    .enumerate()
                    .map(|(i, call)| match call {
                        Value::Object(call) => rpc_call(call, Some(i)),
                        _ => Err(Error::BadRequest(format!("JSON-RPC batch element {i} is not an object"))),
                    })
                    .collect::<Result<_>>()?,
            ),
            _ => return Err(Error::BadRequest("A JSON-RPC request must be an object or an array of objects".into())),
        };
        body.calls().try_for_each(|c| policy::check_method(&c.method))?;
        Ok(body)
    }

    /// The calls, in order.
    pub fn calls(&self) -> impl Iterator<Item = &Call> {
        match self {
            RpcBody::Single(c) => std::slice::from_ref(c).iter(),
            RpcBody::Batch(cs) => cs.iter(),
        }
    }

    /// The proxy's serialisation of the checked calls: what the node receives.
    pub fn to_bytes(&self) -> Bytes {
        let bytes = match self {
            RpcBody::Single(c) => serde_json::to_vec(c),
            RpcBody::Batch(cs) => serde_json::to_vec(cs),
        };
        // Serialising strings, numbers and `Value`s into memory cannot fail.
        Bytes::from(bytes.unwrap_or_default())
    }
}

/// Parses a `/agent/query-chain` body with the same strictness as `/rpc` (duplicate keys, trailing
/// data, case variants of its members). The method is not checked here: the route checks it after
/// the chain, so the order is the same on every chain route.
pub fn parse_query(bytes: &[u8]) -> Result<QueryChainRequest> {
    let Value::Object(body) = parse_strict(bytes)? else {
        return Err(Error::BadRequest(
            "Invalid request body: expected an object with `chain`, `method`, `params`".into(),
        ));
    };
    // Other members are ignored, as they always were: the proxy builds the node's request itself.
    for key in body.keys() {
        refuse_case_variant(key, QUERY_MEMBERS, "request body")?;
    }
    let mut req: QueryChainRequest = crate::extract::from_value(Value::Object(body))?;
    if req.params.is_null() {
        req.params = Value::Array(Vec::new());
    }
    if !matches!(req.params, Value::Array(_) | Value::Object(_)) {
        return Err(Error::BadRequest("Invalid request body: field `params`: expected an array or an object".into()));
    }
    Ok(req)
}

fn rpc_call(mut call: Map<String, Value>, index: Option<usize>) -> Result<Call> {
    let at = |what: String| match index {
        Some(i) => Error::BadRequest(format!("JSON-RPC batch element {i}: {what}")),
        None => Error::BadRequest(what),
    };
    for key in call.keys() {
        refuse_case_variant(key, RPC_MEMBERS, "JSON-RPC request").map_err(|e| at(e.to_string()))?;
        if !RPC_MEMBERS.contains(&key.as_str()) {
            return Err(at(format!(
                "unknown member `{}` in a JSON-RPC request (only `jsonrpc`, `id`, `method` and `params` are allowed)",
                shown(key)
            )));
        }
    }
    match call.remove("jsonrpc") {
        None => {}
        Some(Value::String(v)) if v == "2.0" => {}
        Some(_) => return Err(at("`jsonrpc` must be \"2.0\"".into())),
    }
    let id = call.remove("id");
    if let Some(id) = &id
        && !matches!(id, Value::String(_) | Value::Number(_) | Value::Null)
    {
        return Err(at("`id` must be a string, a number or null".into()));
    }
    let method = match call.remove("method") {
        Some(Value::String(m)) => m,
        _ => return Err(at("each JSON-RPC request needs a string `method`".into())),
    };
    let params = call.remove("params");
    if let Some(p) = &params
        && !matches!(p, Value::Array(_) | Value::Object(_))
    {
        return Err(at("`params` must be an array or an object".into()));
    }
    Ok(Call { jsonrpc: "2.0", id, method, params })
}

/// Refuses `key` when it is not one of `names` but matches one of them ignoring case (Unicode
/// simple case folding, as Go's `encoding/json` compares: `ſ` is an `s`, `K` a `k`).
fn refuse_case_variant(key: &str, names: &[&str], what: &str) -> Result<()> {
    if names.contains(&key) {
        return Ok(());
    }
    let folded = fold(key);
    match names.iter().find(|n| fold(n) == folded) {
        Some(name) => Err(Error::BadRequest(format!(
            "member `{}` of the {what} differs from `{name}` only by case; write `{name}`",
            shown(key)
        ))),
        None => Ok(()),
    }
}

fn fold(text: &str) -> String {
    text.chars().flat_map(char::to_uppercase).flat_map(char::to_lowercase).collect()
}

/// Agent text echoed in an error: short and inert.
fn shown(text: &str) -> String {
    quote(text, 64)
}

/// Parses `bytes` as one JSON value: a duplicate key in any object, or anything but whitespace
/// after the value, is a 400. Nesting deeper than serde_json's limit (128) is refused too.
pub fn parse_strict(bytes: &[u8]) -> Result<Value> {
    crate::extract::parse_json::<Strict>(bytes).map(|Strict(v)| v)
}

/// A `serde_json::Value` that refuses duplicate keys while it is built.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Value, E> {
        serde_json::Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key `{}`", shown(&key))));
            }
            let Strict(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        match RpcBody::parse(body.as_bytes()) {
            Err(e) => e.to_string(),
            Ok(b) => panic!("{body} was accepted as {b:?}"),
        }
    }

    #[test]
    fn the_node_gets_the_proxys_serialisation() {
        let b = RpcBody::parse(br#" {"method":"eth_chainId","id":7,"params":[],"jsonrpc":"2.0"} "#).unwrap();
        assert_eq!(&b.to_bytes()[..], br#"{"jsonrpc":"2.0","id":7,"method":"eth_chainId","params":[]}"#);
        let b = RpcBody::parse(br#"[{"method":"eth_chainId"},{"id":null,"method":"eth_blockNumber"}]"#).unwrap();
        assert_eq!(
            &b.to_bytes()[..],
            br#"[{"jsonrpc":"2.0","method":"eth_chainId"},{"jsonrpc":"2.0","id":null,"method":"eth_blockNumber"}]"#
        );
    }

    #[test]
    fn ambiguous_bodies_are_refused() {
        let m = err(r#"{"method":"anvil_setBalance","method":"eth_chainId","id":1}"#);
        assert!(m.contains("duplicate key `method`"), "{m}");
        let m = err(r#"{"Method":"anvil_setBalance","method":"eth_chainId","id":1}"#);
        assert!(m.contains("`Method`") && m.contains("only by case"), "{m}");
        let m = err(r#"{"methoD":"anvil_setBalance","id":1}"#);
        assert!(m.contains("only by case"), "{m}");
        // U+017F LATIN SMALL LETTER LONG S folds to `s` in Go.
        let m = err("{\"method\":\"eth_chainId\",\"paramſ\":[]}");
        assert!(m.contains("only by case"), "{m}");
        let m = err(r#"{"method":"eth_chainId","id":1}{"method":"anvil_mine"}"#);
        assert!(m.contains("trailing characters"), "{m}");
        let m = err(r#"{"method":"eth_chainId","params":[{"to":"0x1","to":"0x2"}]}"#);
        assert!(m.contains("duplicate key `to`"), "{m}");
        let m = err(r#"{"method":"eth_chainId","extra":1}"#);
        assert!(m.contains("unknown member `extra`"), "{m}");
        let m = err(r#"[{"method":"eth_chainId"},{"method":"eth_chainId","METHOD":"x"}]"#);
        assert!(m.contains("batch element 1") && m.contains("only by case"), "{m}");
        assert!(err(r#"{"method":"eth_chainId","jsonrpc":"1.0"}"#).contains("\"2.0\""));
        assert!(err(r#"{"method":"eth_chainId","id":{}}"#).contains("`id`"));
        assert!(err(r#"{"method":"eth_chainId","params":"x"}"#).contains("`params`"));
        assert!(err(r#"{"method":7}"#).contains("string `method`"));
        assert!(err("[]").contains("Empty JSON-RPC batch"));
        assert!(err("[1]").contains("not an object"));
        assert!(err("\"x\"").contains("object or an array"));
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(err(&deep).contains("recursion limit"), "{}", err(&deep));
    }

    #[test]
    fn a_batch_with_one_write_is_refused_whole() {
        let e = RpcBody::parse(br#"[{"method":"eth_chainId"},{"method":"anvil_setBalance"}]"#).unwrap_err();
        assert!(matches!(e, Error::MethodNotAllowed(m) if m == "anvil_setBalance"));
    }

    #[test]
    fn query_bodies_are_as_strict() {
        let q = parse_query(br#"{"chain":"eip155:1","method":"eth_chainId"}"#).unwrap();
        assert_eq!(q.params, Value::Array(vec![]));
        let msg = |b: &str| parse_query(b.as_bytes()).unwrap_err().to_string();
        assert!(msg(r#"{"chain":"eip155:1","method":"eth_chainId","method":"anvil_mine"}"#).contains("duplicate key"));
        assert!(msg(r#"{"chain":"eip155:1","Method":"anvil_mine","method":"eth_chainId"}"#).contains("only by case"));
        assert!(msg(r#"{"chain":"eip155:1","method":"eth_chainId"} {}"#).contains("trailing characters"));
        assert!(msg(r#"{"chain":"eip155:1","method":"eth_chainId","params":5}"#).contains("`params`"));
        assert!(msg(r#"{"chain": "eip155:31337"}"#).contains("missing field `method`"));
        let m = msg(r#"{"chain":"eth:1","method":"eth_chainId"}"#);
        assert!(m.contains("field `chain`") && m.contains("eip155"), "{m}");
    }
}
