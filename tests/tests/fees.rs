//! Fees are fixed when a request is made, shown, capped and counted (SPEC §3.4): against a real
//! Anvil, and — to play a node that lies about fees — through a rewriting tap in front of it.

use std::time::Duration;

use assegai_e2e::{Proxy, TestEnv, rpc_tap::RpcTap, wait_until};
use assegai_sdk::{ChainId, U256, wire::TxRequest};
use serde_json::{Value, json};

const RECIPIENT: &str = "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045";
const ANVIL_ACCOUNT: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
/// 0.0001 ETH.
const SMALL: &str = "100000000000000";
/// A contract every call to which reverts with `Error("nope")` (see its folder's README).
const REVERTER_BIN: &str = include_str!("../fixtures/reverter/Reverter.bin");

fn pending(env: &TestEnv) -> Vec<Value> {
    serde_json::from_str::<Value>(&env.run_ok(&["approve", "--list", "--json"])).unwrap().as_array().unwrap().clone()
}

fn wei(entry: &Value, field: &str) -> U256 {
    entry[field].as_str().unwrap_or_else(|| panic!("{field} in {entry}")).parse().unwrap()
}

fn hex_u256(v: &Value) -> U256 {
    U256::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

fn transfer(value: &str, gas_limit: Option<&str>) -> TxRequest {
    TxRequest {
        chain: ChainId::ANVIL,
        to: RECIPIENT.into(),
        value: value.into(),
        data: None,
        gas_limit: gas_limit.map(str::to_owned),
    }
}

/// An agent on the local chain whose RPC is `rpc`, with these limits.
fn agent(env: &TestEnv, proxy: &Proxy, name: &str, rpc: &str, limits: Value) -> assegai_sdk::Assegai {
    let manifest = json!({
        "name": name,
        "permissions": {"chains": ["eip155:31337"], "rpcs": {"eip155:31337": rpc}},
        "spending_limits": limits,
    });
    let (id, token) = env.add_agent(name, Some(&manifest));
    env.sdk(proxy, &id, &token)
}

/// Replaces every reward of `eth_feeHistory` replies with 10^14 wei (100 000 gwei) per gas: what a
/// node that wants to drain the wallet through fees would answer.
fn inflate_fees(request: &[u8], reply: &[u8]) -> Option<Vec<u8>> {
    if !String::from_utf8_lossy(request).contains("eth_feeHistory") {
        return None;
    }
    let mut v: Value = serde_json::from_slice(reply).ok()?;
    let rewards = v["result"]["reward"].as_array_mut()?;
    for block in rewards {
        for r in block.as_array_mut()? {
            *r = json!("0x5af3107a4000");
        }
    }
    serde_json::to_vec(&v).ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_inflates_fees_cannot_drain_the_wallet() {
    let env = TestEnv::with_anvil();
    let tap = RpcTap::start(&env.anvil().url);
    tap.set_rewrite(Box::new(inflate_fees));
    let balance = || async { hex_u256(&env.anvil().rpc("eth_getBalance", json!([ANVIL_ACCOUNT, "latest"])).await) };
    let before = balance().await;

    // The default cap (500 gwei per gas) refuses it before a person is asked.
    let proxy = env.start_proxy();
    let sdk = agent(&env, &proxy, "drained", &tap.url(), json!({"daily": "3"}));
    let err = sdk.request_transaction(&transfer(SMALL, None)).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("Transaction fee exceeds the configured cap") && text.contains("gwei"), "{text}");
    assert!(pending(&env).is_empty());
    drop(proxy);

    // With the caps raised, the fee is fixed, shown and counted: ≥ 2 ETH of fee for a 0.0001 ETH
    // transfer, and the daily limit refuses a second one.
    env.write_config("[chains.\"eip155:31337\"]\nmax_fee_per_gas_gwei = \"1000000\"\nmax_fee_eth = \"10\"\n");
    let proxy = env.start_proxy();
    let sdk = agent(&env, &proxy, "drained", &tap.url(), json!({"daily": "3"}));
    let first = {
        let sdk = sdk.clone();
        tokio::spawn(async move { sdk.request_transaction(&transfer(SMALL, None)).await })
    };
    let entry = wait_until(Duration::from_secs(15), "the request to be pending", || pending(&env).pop());
    let max_fee = wei(&entry, "max_fee_wei");
    assert!(max_fee >= U256::from(2_000_000_000_000_000_000_u128), "≥ 2 ETH of fee: {entry}");
    assert_eq!(max_fee, wei(&entry, "max_fee_per_gas") * U256::from(21_000), "{entry}");
    let card = env.run_ok(&["approve", "--list"]);
    assert!(card.contains(&entry["id"].as_str().unwrap()[..8]), "{card}");
    let limits: Value = serde_json::from_str(&env.run_ok(&["limits", "drained", "--json"])).unwrap();
    let daily = &limits["chains"][0]["windows"][0];
    assert_eq!(daily["pending_wei"].as_str().unwrap().parse::<U256>().unwrap(), max_fee + U256::from(10_u64.pow(14)));
    let second = sdk.request_transaction(&transfer(SMALL, None)).await.unwrap_err();
    assert!(second.to_string().contains("Total spending limit exceeded"), "{second}");

    env.run_ok(&["reject", entry["id"].as_str().unwrap()]);
    let answer = tokio::time::timeout(Duration::from_secs(10), first).await.unwrap().unwrap();
    assert!(matches!(answer, Err(assegai_sdk::Error::Rejected { .. })), "{answer:?}");
    assert_eq!(balance().await, before, "the wallet lost nothing");
    assert!(!tap.sent_text().contains("eth_sendRawTransaction"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transfer_shows_its_fee_pays_at_most_that_and_counts_what_it_paid() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let sdk = agent(&env, &proxy, "payer", &env.anvil().url, json!({"daily": "1"}));
    let call = {
        let sdk = sdk.clone();
        tokio::spawn(async move { sdk.request_transaction(&transfer(SMALL, None)).await })
    };
    let entry = wait_until(Duration::from_secs(15), "the request to be pending", || pending(&env).pop());
    assert_eq!(entry["gas_limit"], 21_000, "{entry}");
    assert_eq!(entry["fee_model"], "eip1559", "{entry}");
    let (per_gas, max_fee) = (wei(&entry, "max_fee_per_gas"), wei(&entry, "max_fee_wei"));
    assert_eq!(max_fee, per_gas * U256::from(21_000));
    assert!(wei(&entry, "max_priority_fee_per_gas") <= per_gas);
    let id = entry["id"].as_str().unwrap().to_owned();

    let hash = env.run_ok(&["approve", &id, "--yes"]).trim().to_owned();
    let sent = tokio::time::timeout(Duration::from_secs(30), call).await.unwrap().unwrap().unwrap();
    assert_eq!(sent.to_string(), hash);
    // Signed exactly as approved.
    let tx = env.anvil().rpc("eth_getTransactionByHash", json!([hash])).await;
    assert_eq!(hex_u256(&tx["gas"]), U256::from(21_000));
    assert_eq!(hex_u256(&tx["maxFeePerGas"]), per_gas, "{tx}");
    assert_eq!(hex_u256(&tx["maxPriorityFeePerGas"]), wei(&entry, "max_priority_fee_per_gas"), "{tx}");
    assert_eq!(hex_u256(&tx["chainId"]), U256::from(31337));

    let receipt = env.anvil().rpc("eth_getTransactionReceipt", json!([hash])).await;
    let paid = hex_u256(&receipt["gasUsed"]) * hex_u256(&receipt["effectiveGasPrice"]);
    assert!(paid <= max_fee);
    let row = wait_until(Duration::from_secs(20), "the receipt's fee to be recorded", || {
        let txs: Value = serde_json::from_str(&env.run_ok(&["txs", "--json"])).ok()?;
        txs.as_array()?.iter().find(|t| t["id"] == id.as_str() && t["status"] == "confirmed").cloned()
    });
    assert_eq!(wei(&row, "fee_wei"), paid, "{row}");
    let info = sdk.transaction(&id).await.unwrap();
    assert_eq!(info.fees.fee_wei.as_deref(), Some(paid.to_string().as_str()));
    assert_eq!(info.fees.gas_limit.as_deref(), Some("21000"));
    assert_eq!(info.fees.max_fee_wei.as_deref(), Some(max_fee.to_string().as_str()));
    // The limits count what it paid, not the worst case, once it is in.
    let limits: Value = serde_json::from_str(&env.run_ok(&["limits", "payer", "--json"])).unwrap();
    let daily = &limits["chains"][0]["windows"][0];
    assert_eq!(daily["spent_wei"].as_str().unwrap().parse::<U256>().unwrap(), U256::from(10_u64.pow(14)) + paid);
    assert_eq!(daily["pending_wei"], "0");
}

#[tokio::test(flavor = "multi_thread")]
async fn gas_limits_above_the_block_are_refused_and_the_largest_round_trips() {
    let env = TestEnv::with_anvil();
    // A 30 M gas transfer at Anvil's fees is worth more than the default 0.05 ETH cap.
    env.write_config("[chains.\"eip155:31337\"]\nmax_fee_eth = \"1\"\n");
    let proxy = env.start_proxy();
    let sdk = agent(&env, &proxy, "greedy", &env.anvil().url, json!({}));
    let block = env.anvil().rpc("eth_getBlockByNumber", json!(["latest", false])).await;
    let block_gas = hex_u256(&block["gasLimit"]).to::<u64>();

    for over in [(block_gas + 1).to_string(), "18446744073709551615".to_owned()] {
        let err = sdk.request_transaction(&transfer("1", Some(&over))).await.unwrap_err();
        assert!(
            matches!(&err, assegai_sdk::Error::BadRequest { message } if message.contains("above the latest block's gas limit")),
            "{over}: {err:?}"
        );
    }
    assert!(pending(&env).is_empty());

    let largest = block_gas.to_string();
    let call = {
        let sdk = sdk.clone();
        tokio::spawn(async move { sdk.request_transaction(&transfer("1", Some(&largest))).await })
    };
    let entry = wait_until(Duration::from_secs(15), "the request to be pending", || pending(&env).pop());
    assert_eq!(entry["gas_limit"].as_u64(), Some(block_gas), "exactly: {entry}");
    let txs: Value = serde_json::from_str(&env.run_ok(&["txs", "--json"])).unwrap();
    assert_eq!(txs[0]["gas_limit"].as_u64(), Some(block_gas));
    env.run_ok(&["reject", entry["id"].as_str().unwrap()]);
    let _ = tokio::time::timeout(Duration::from_secs(10), call).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_that_would_revert_is_refused_with_its_reason_and_a_transfer_shows_its_effect() {
    let env = TestEnv::with_anvil();
    let reverter = env.anvil().deploy(REVERTER_BIN).await;
    let proxy = env.start_proxy();
    let manifest = json!({"name": "caller", "permissions": {"chains": ["eip155:31337"], "contracts": [reverter]}});
    let (id, token) = env.add_agent("caller", Some(&manifest));
    let sdk = env.sdk(&proxy, &id, &token);
    // With no gas limit the estimate already fails; with one, the simulation catches it.
    for gas_limit in [None, Some("100000")] {
        let call = TxRequest {
            chain: ChainId::ANVIL,
            to: reverter.clone(),
            value: "0".into(),
            data: Some("0x12345678".into()),
            gas_limit: gas_limit.map(str::to_owned),
        };
        let err = sdk.request_transaction(&call).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("Transaction would revert") && text.contains("nope"), "{gas_limit:?}: {text}");
    }
    assert!(pending(&env).is_empty(), "nothing reached a person");

    let call = {
        let sdk = sdk.clone();
        tokio::spawn(async move { sdk.request_transaction(&transfer(SMALL, None)).await })
    };
    let entry = wait_until(Duration::from_secs(15), "the transfer to be pending", || pending(&env).pop());
    assert_eq!(entry["simulation"]["native_wei"], format!("-{SMALL}"), "{entry}");
    let info = sdk.transaction(entry["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(info.simulation.as_ref().map(|s| s["native_wei"].clone()), Some(json!(format!("-{SMALL}"))));
    env.run_ok(&["reject", entry["id"].as_str().unwrap()]);
    let _ = tokio::time::timeout(Duration::from_secs(10), call).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_user_s_rpc_signs_whatever_the_manifest_names() {
    let env = TestEnv::with_anvil();
    let (agents_node, users_node) = (RpcTap::start(&env.anvil().url), RpcTap::start(&env.anvil().url));
    env.write_config(&format!("[chains.\"eip155:31337\"]\nrpc = \"{}\"\n", users_node.url()));
    let proxy = env.start_proxy();
    let sdk = agent(&env, &proxy, "routed", &agents_node.url(), json!({}));
    // Reads go where the manifest says.
    sdk.block_number(ChainId::ANVIL).await.unwrap();
    assert!(agents_node.sent_text().contains("eth_blockNumber"));
    agents_node.clear();

    let call = {
        let sdk = sdk.clone();
        tokio::spawn(async move { sdk.request_transaction(&transfer(SMALL, None)).await })
    };
    let entry = wait_until(Duration::from_secs(15), "the request to be pending", || pending(&env).pop());
    let signs_at = users_node.url().trim_start_matches("http://").to_owned();
    assert_eq!(entry["detail"]["signing_rpc"], signs_at.as_str(), "{entry}");
    env.run_ok(&["approve", entry["id"].as_str().unwrap(), "--yes"]);
    tokio::time::timeout(Duration::from_secs(30), call).await.unwrap().unwrap().unwrap();
    let (theirs, ours) = (agents_node.sent_text(), users_node.sent_text());
    for method in ["eth_feeHistory", "eth_estimateGas", "eth_simulateV1", "eth_sendRawTransaction"] {
        assert!(ours.contains(method), "{method} went to the user's node: {ours}");
        assert!(!theirs.contains(method), "{method} reached the agent's node: {theirs}");
    }
}
