//! Property tests for every parser an agent can feed (SPEC §8: the agent is hostile): the
//! transaction request fields and the ERC-20 decoder, the JSON-RPC parser with the method policy,
//! the manifest, the SSE usage tap, units, and the text neutraliser. Each property runs 10 000
//! cases; none may panic, and what is accepted must mean exactly what was sent.

use alloy_primitives::{Address, U256};
use assegai_proxy::{
    ai::usage::{StreamTap, Usage},
    chain::{
        jsonrpc::{self, RpcBody},
        policy,
    },
    manifest::{Manifest, Provider},
    sanitize::{is_refused, neutralize, quote, to_json_string, to_json_string_pretty},
    tx::{
        decode::{self, TokenCall},
        policy::{parse_address, parse_hex},
    },
    units::{format_units, parse_base_units, parse_units},
};
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use serde_json::{Map, Value};

const CASES: u32 = 10_000;

fn config() -> ProptestConfig {
    ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() }
}

/// Code points an agent would use to hide or fake text, mixed in often.
const TRICKY: &[char] = &[
    '\u{0}',
    '\u{7}',
    '\u{8}',
    '\t',
    '\n',
    '\r',
    '\u{1b}',
    '\u{7f}',
    '\u{85}',
    '\u{9b}',
    '\u{ad}',
    '\u{34f}',
    '\u{61c}',
    '\u{115f}',
    '\u{180e}',
    '\u{200b}',
    '\u{200d}',
    '\u{200e}',
    '\u{202a}',
    '\u{202e}',
    '\u{2028}',
    '\u{2029}',
    '\u{2060}',
    '\u{2066}',
    '\u{3164}',
    '\u{fe0f}',
    '\u{feff}',
    '\u{ffa0}',
    '\u{fff9}',
    '\u{e0001}',
    '\u{e0041}',
    '\u{e007f}',
    '\u{e0100}',
    '\\',
    '"',
    'é',
    '✓',
    '😀',
];

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![3 => any::<char>(), 2 => prop::sample::select(TRICKY), 3 => prop::char::range(' ', '~')],
        0..48,
    )
    .prop_map(|cs| cs.into_iter().collect())
}

proptest! {
    #![proptest_config(config())]

    // ---- The neutraliser ------------------------------------------------------------------

    #[test]
    fn neutralised_text_holds_no_refused_code_point(s in text()) {
        let shown = neutralize(&s);
        prop_assert!(!shown.chars().any(is_refused), "{shown:?}");
        prop_assert!(!quote(&s, 10).chars().any(is_refused));
        // Nothing is lost silently: every refused code point became a visible escape.
        prop_assert!(shown.chars().count() >= s.chars().count());
    }

    #[test]
    fn printable_ascii_is_unchanged(s in "[ -~]{0,80}") {
        prop_assert_eq!(neutralize(&s), s);
    }

    #[test]
    fn json_output_is_the_same_data_and_inert(s in text(), k in text()) {
        let mut m = Map::new();
        m.insert(k, Value::String(s.clone()));
        let v = Value::Array(vec![Value::Object(m), Value::String(s)]);
        let compact = to_json_string(&v).unwrap();
        prop_assert!(!compact.chars().any(is_refused), "{compact:?}");
        prop_assert_eq!(&serde_json::from_str::<Value>(&compact).unwrap(), &v);
        // Indented output: the layout's own newlines, and nothing else refused.
        let pretty = to_json_string_pretty(&v).unwrap();
        prop_assert!(!pretty.chars().any(|c| c != '\n' && is_refused(c)), "{pretty:?}");
        prop_assert_eq!(&serde_json::from_str::<Value>(&pretty).unwrap(), &v);
    }

    // ---- JSON-RPC: the strict parser and the method policy --------------------------------

    #[test]
    fn rpc_parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = RpcBody::parse(&bytes);
        let _ = jsonrpc::parse_query(&bytes);
    }

    #[test]
    fn accepted_rpc_bodies_are_reads_and_round_trip(body in rpc_document()) {
        let text = body.to_string();
        if let Ok(parsed) = RpcBody::parse(text.as_bytes()) {
            for call in parsed.calls() {
                prop_assert!(policy::is_read_method(&call.method), "{} was accepted", call.method);
            }
            let sent = parsed.to_bytes();
            // What the node gets parses to the same calls, and holds only JSON-RPC members.
            prop_assert_eq!(RpcBody::parse(&sent).unwrap(), parsed.clone());
            let sent: Value = serde_json::from_slice(&sent).unwrap();
            let objects = match &sent { Value::Array(a) => a.clone(), one => vec![one.clone()] };
            for o in objects {
                for k in o.as_object().unwrap().keys() {
                    prop_assert!(["jsonrpc", "id", "method", "params"].contains(&k.as_str()), "{k}");
                }
            }
        }
    }

    #[test]
    fn duplicate_members_are_always_refused(body in rpc_call_object(), dup in 0usize..4) {
        let Value::Object(call) = body else { unreachable!() };
        let Some((key, value)) = call.iter().nth(dup % call.len().max(1)) else { return Ok(()) };
        let text = serde_json::to_string(&call).unwrap();
        let doubled = format!("{},\"{}\":{}}}", &text[..text.len() - 1], key, value);
        prop_assert!(RpcBody::parse(doubled.as_bytes()).is_err(), "{doubled}");
        let trailing = format!("{text} {{\"method\":\"anvil_mine\"}}");
        prop_assert!(RpcBody::parse(trailing.as_bytes()).is_err(), "{trailing}");
    }

    #[test]
    fn method_policy_never_allows_writes(suffix in "[A-Za-z0-9_]{0,12}") {
        for prefix in ["eth_send", "eth_sign", "personal_", "anvil_", "hardhat_", "evm_", "tenderly_", "admin_", "miner_"] {
            let m = format!("{prefix}{suffix}");
            prop_assert!(!policy::is_read_method(&m), "{m}");
        }
    }

    // ---- The manifest ---------------------------------------------------------------------

    #[test]
    fn manifest_parser_never_panics_on_text(s in text()) {
        let _ = Manifest::parse(&s, std::path::Path::new("assegai.json"));
    }

    #[test]
    fn manifest_parser_never_panics_on_json(m in manifest_document()) {
        let text = m.to_string();
        if let Ok(parsed) = Manifest::parse(&text, std::path::Path::new("assegai.json")) {
            // What was accepted reads back the same.
            let again = Manifest::parse(&serde_json::to_string(&parsed).unwrap(), std::path::Path::new("a.json"));
            prop_assert!(again.is_ok(), "{text} -> {:?}", again.err());
        }
    }

    // ---- Transaction request fields and the ERC-20 decoder -------------------------------

    #[test]
    fn address_parser_is_total_and_exact(s in address_text(), bytes in any::<[u8; 20]>()) {
        if let Ok(a) = parse_address(&s) {
            prop_assert_eq!(parse_address(&a.to_checksum(None)), Ok(a));
        }
        let a = Address::from(bytes);
        prop_assert_eq!(parse_address(&a.to_checksum(None)), Ok(a));
        prop_assert_eq!(parse_address(&format!("{a:#x}")), Ok(a));
    }

    #[test]
    fn hex_parser_is_total_and_exact(s in "(0x)?[0-9a-fA-FxX ]{0,20}", bytes in prop::collection::vec(any::<u8>(), 0..80)) {
        let _ = parse_hex(&s);
        prop_assert_eq!(parse_hex(&format!("0x{}", hex::encode(&bytes))).map(|b| b.to_vec()), Ok(bytes));
    }

    #[test]
    fn values_are_exact_decimal_wei(s in "[0-9.eE+\\- x]{0,90}", limbs in any::<[u64; 4]>()) {
        let _ = parse_base_units(&s);
        let v = U256::from_limbs(limbs);
        prop_assert_eq!(parse_base_units(&v.to_string()), Ok(v));
    }

    #[test]
    fn decoder_never_panics_and_reads_transfers(
        data in prop::collection::vec(any::<u8>(), 0..200),
        selector in prop::sample::select(vec![[0xa9u8, 0x05, 0x9c, 0xbb], [0x09, 0x5e, 0xa7, 0xb3], [0x39, 0x50, 0x93, 0x51], [0x23, 0xb8, 0x72, 0xdd], [0xa2, 0x2c, 0xb4, 0x65]]),
        to in any::<[u8; 20]>(),
        amount in any::<[u64; 4]>(),
    ) {
        let _ = decode::decode(&data);
        let mut call = selector.to_vec();
        call.extend_from_slice(&data);
        let _ = decode::decode(&call);
        let mut transfer = vec![0xa9, 0x05, 0x9c, 0xbb];
        transfer.extend_from_slice(&[0; 12]);
        transfer.extend_from_slice(&to);
        transfer.extend_from_slice(&U256::from_limbs(amount).to_be_bytes::<32>());
        prop_assert_eq!(
            decode::decode(&transfer),
            Ok(Some(TokenCall::Transfer { to: Address::from(to), amount: U256::from_limbs(amount) }))
        );
    }

    #[test]
    fn tx_requests_from_any_json_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = serde_json::from_slice::<assegai_sdk::wire::TxRequest>(&bytes);
    }

    // ---- Units ----------------------------------------------------------------------------

    #[test]
    fn units_round_trip(limbs in any::<[u64; 4]>(), decimals in 0u8..=30, s in "[0-9.]{0,40}") {
        let v = U256::from_limbs(limbs);
        prop_assert_eq!(parse_units(&format_units(v, decimals), decimals), Ok(v));
        if let Ok(parsed) = parse_units(&s, decimals) {
            // Reading back what is shown gives the same amount.
            prop_assert_eq!(parse_units(&format_units(parsed, decimals), decimals), Ok(parsed));
        }
    }

    // ---- The SSE usage tap ----------------------------------------------------------------

    #[test]
    fn any_split_of_a_stream_gives_the_same_bytes_and_usage(
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..24),
        which in 0usize..3,
    ) {
        let (provider, injected, stream) = STREAMS[which];
        let stream = stream.as_bytes();
        let (whole, whole_usage) = run_tap(provider, injected, stream, &[]);
        prop_assert!(whole_usage.is_some());
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        cuts.sort_unstable();
        let (split, split_usage) = run_tap(provider, injected, stream, &cuts);
        prop_assert_eq!(split, whole);
        prop_assert_eq!(split_usage, whole_usage);
    }
}

/// JSON-RPC documents: mostly calls with real and hostile member names and methods, sometimes
/// batches, sometimes anything.
fn rpc_document() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => rpc_call_object(),
        2 => prop::collection::vec(rpc_call_object(), 0..4).prop_map(Value::Array),
        1 => json_value(),
    ]
}

fn rpc_call_object() -> impl Strategy<Value = Value> {
    let method = prop_oneof![
        8 => prop::sample::select(vec![
            "eth_chainId",
            "eth_getBalance",
            "eth_call",
            "eth_getLogs",
            "debug_traceCall",
            "anvil_setBalance",
            "eth_sendRawTransaction",
            "evm_mine",
            "eth_get",
            "ETH_CHAINID",
            "",
        ])
        .prop_map(|m| Value::String(m.into())),
        1 => json_value(),
    ];
    let jsonrpc = prop::option::of(prop_oneof![4 => Just(Value::String("2.0".into())), 1 => json_value()]);
    let id = prop::option::of(prop_oneof![
        any::<u32>().prop_map(Value::from),
        "[a-z0-9]{0,8}".prop_map(Value::String),
        Just(Value::Null),
        json_value(),
    ]);
    let params = prop::option::of(prop_oneof![
        3 => prop::collection::vec(json_value(), 0..4).prop_map(Value::Array),
        1 => json_value(),
    ]);
    let hostile = prop::option::of((
        prop::sample::select(vec!["Method", "PARAMS", "iD", "JSONRPC", "extra", "paramſ", "metHod"]),
        json_value(),
    ));
    (jsonrpc, id, method, params, prop::bool::weighted(0.9), hostile).prop_map(
        |(jsonrpc, id, method, params, with_method, hostile)| {
            let mut m = Map::new();
            let members =
                [("jsonrpc", jsonrpc), ("id", id), ("method", with_method.then_some(method)), ("params", params)];
            for (k, v) in members {
                if let Some(v) = v {
                    m.insert(k.to_owned(), v);
                }
            }
            if let Some((k, v)) = hostile {
                m.insert(k.to_owned(), v);
            }
            Value::Object(m)
        },
    )
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-z]{1,6}", inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Manifests with plausible structure and hostile values.
fn manifest_document() -> impl Strategy<Value = Value> {
    let chain = prop_oneof![
        Just(Value::String("eip155:31337".into())),
        Just(Value::String("eip155:1".into())),
        "eip155:[0-9]{0,25}".prop_map(Value::String),
        text().prop_map(Value::String),
        json_value(),
    ];
    let amount = prop_oneof![
        "[0-9]{0,30}(\\.[0-9]{0,30})?".prop_map(Value::String),
        text().prop_map(Value::String),
        json_value(),
    ];
    let api = prop_oneof![Just(Value::String("openai".into())), Just(Value::String("x".into())), json_value()];
    let runtime = prop_oneof![
        Just(Value::String("rust".into())),
        Just(Value::String("command".into())),
        Just(Value::String("node".into())),
        text().prop_map(Value::String),
    ];
    (
        text(),
        runtime,
        prop::collection::vec(chain.clone(), 0..4),
        prop::collection::vec(api, 0..3),
        prop::option::of((chain, amount.clone())),
        prop::option::of(amount.clone()),
        prop::option::of(amount),
        prop::option::of(text()),
    )
        .prop_map(|(name, runtime, chains, apis, rpc, daily, per_tx, memory)| {
            let mut m =
                serde_json::json!({"name": name, "runtime": runtime, "permissions": {"chains": chains, "apis": apis}});
            if let Some((chain, url)) = rpc {
                let key = chain.as_str().unwrap_or("eip155:1").to_owned();
                m["permissions"]["rpcs"] = serde_json::json!({ key: url });
            }
            if let Some(d) = daily {
                m["spending_limits"] = serde_json::json!({"daily": d});
                m["ai_budget"] = serde_json::json!({"daily_usd": m["spending_limits"]["daily"].clone()});
            }
            if let Some(p) = per_tx {
                m["spending_limits"]["per_transaction"] = p;
            }
            if let Some(mem) = memory {
                m["resources"] = serde_json::json!({"memory": mem});
            }
            m
        })
}

fn address_text() -> impl Strategy<Value = String> {
    prop_oneof!["0x[0-9a-fA-F]{40}", "(0x)?[0-9a-fA-Fg]{0,44}", text()]
}

/// Recorded streams: (provider, whether the proxy injected `include_usage`, the bytes).
const STREAMS: [(Provider, bool, &str); 3] = [
    (Provider::Openai, true, OPENAI_STREAM),
    (Provider::Openai, false, OPENAI_STREAM),
    (Provider::Anthropic, false, ANTHROPIC_STREAM),
];

const OPENAI_STREAM: &str = concat!(
    "data: {\"id\":\"chatcmpl-BxJ3\",\"object\":\"chat.completion.chunk\",\"created\":1753271000,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n",
    ": keep-alive\n\n",
    "data: {\"id\":\"chatcmpl-BxJ3\",\"object\":\"chat.completion.chunk\",\"created\":1753271000,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Héllo \\\"usage\\\" 🌍\"},\"finish_reason\":null}],\"usage\":null}\r\n\r\n",
    "data: {\"id\":\"chatcmpl-BxJ3\",\"object\":\"chat.completion.chunk\",\"created\":1753271000,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-BxJ3\",\"object\":\"chat.completion.chunk\",\"created\":1753271000,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":1234,\"completion_tokens\":7,\"total_tokens\":1241,\"prompt_tokens_details\":{\"cached_tokens\":1152}}}\n\n",
    "data: [DONE]\n\n",
);

const ANTHROPIC_STREAM: &str = concat!(
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"usage\":{\"input_tokens\":57,\"cache_creation_input_tokens\":1103,\"cache_read_input_tokens\":2049,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: ping\ndata: {\"type\":\"ping\"}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello 🌍\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":213}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

fn run_tap(provider: Provider, injected: bool, stream: &[u8], cuts: &[usize]) -> (Vec<u8>, Option<Usage>) {
    let mut tap = StreamTap::new(provider, injected, None);
    let mut out = Vec::new();
    let mut at = 0;
    for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
        out.extend_from_slice(&tap.push(&stream[at..cut]));
        at = cut;
    }
    let (rest, usage) = tap.finish();
    out.extend_from_slice(&rest);
    (out, usage)
}

/// The round-trip property above only says something about bodies that are accepted: make sure
/// the generator produces enough of them.
#[test]
fn generated_rpc_bodies_are_often_accepted() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases: 2_000, ..config() });
    let accepted = AtomicUsize::new(0);
    runner
        .run(&rpc_document(), |body| {
            accepted.fetch_add(usize::from(RpcBody::parse(body.to_string().as_bytes()).is_ok()), Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    let n = accepted.into_inner();
    assert!(n > 100, "only {n} of 2000 generated bodies were accepted");
}
