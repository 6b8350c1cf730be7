//! The good path through the real binary: an agent registered with the CLI reads the chain
//! through the proxy with the SDK, and its log line shows up in `assegai logs`.

use std::time::Duration;

use assegai_e2e::{TestEnv, wait_until};
use assegai_sdk::{Address, ChainId, LogLevel, U256};
use serde_json::{Value, json};

const ANVIL_ACCOUNT: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_reads_the_chain_and_logs() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let (id, token) = env.add_agent("reader", None);
    let sdk = env.sdk(&proxy, &id, &token);

    assert_eq!(sdk.health().await.unwrap().status, "ok");

    let me = sdk.wallet_address(ChainId::ANVIL).await.unwrap();
    assert_eq!(me, ANVIL_ACCOUNT.parse::<Address>().unwrap());
    // The wire form is checksummed, as the original product returned it.
    let raw: Value = reqwest::Client::new()
        .get(format!("{}/agent/wallet-address/eip155:31337", proxy.url))
        .header("X-Assegai-Agent-ID", &id)
        .header("X-Assegai-Agent-Token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(raw, json!({"address": ANVIL_ACCOUNT}));

    let balance = sdk.balance(ChainId::ANVIL, me).await.unwrap();
    let direct = env.anvil().rpc("eth_getBalance", json!([ANVIL_ACCOUNT, "latest"])).await;
    assert_eq!(balance, direct.as_str().unwrap().parse::<U256>().unwrap());
    assert!(balance > U256::ZERO);

    // Mine two blocks directly, then read the height through the proxy.
    env.anvil().rpc("anvil_mine", json!(["0x2"])).await;
    assert_eq!(sdk.block_number(ChainId::ANVIL).await.unwrap(), 2);
    let hex: String = sdk.query_chain(ChainId::ANVIL, "eth_blockNumber", ()).await.unwrap();
    assert_eq!(hex, "0x2");
    // Objects come back whole (the proxy passes the node's `result` through unparsed).
    let block: Value = sdk.query_chain(ChainId::ANVIL, "eth_getBlockByNumber", ("latest", false)).await.unwrap();
    let direct_block = env.anvil().rpc("eth_getBlockByNumber", json!(["latest", false])).await;
    assert_eq!(block, direct_block);
    assert_eq!(block["number"], "0x2");

    let batch = sdk
        .rpc(
            ChainId::ANVIL,
            &json!([
                {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
                {"jsonrpc": "2.0", "id": 2, "method": "eth_blockNumber", "params": []},
            ]),
        )
        .await
        .unwrap();
    let replies = batch.as_array().expect("a batch reply");
    assert_eq!(replies.len(), 2);
    let by_id = |i: u64| replies.iter().find(|r| r["id"] == i).unwrap()["result"].clone();
    assert_eq!(by_id(1), json!("0x7a69"));
    assert_eq!(by_id(2), json!("0x2"));

    sdk.log(LogLevel::Success, "balance checked", Some(json!({"wei": balance.to_string()}))).await.unwrap();

    let line: Value = wait_until(Duration::from_secs(10), "the log line in `assegai logs --json`", || {
        let out = env.run_ok(&["logs", "reader", "--json"]);
        out.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).find(|l| l["message"] == "balance checked")
    });
    assert_eq!(line["level"], "success");
    assert_eq!(line["agent_id"], id.as_str());
    assert_eq!(line["agent_name"], "reader");
    assert_eq!(line["data"]["wei"], balance.to_string());

    // The proxy console showed it too, with the agent's name.
    let console = wait_until(Duration::from_secs(10), "the log line on the proxy console", || {
        let out = String::from_utf8_lossy(&proxy.output()).into_owned();
        out.contains("balance checked").then_some(out)
    });
    assert!(console.contains("[reader]"), "{console}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rpc_errors_and_unknown_wallets_are_reported() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    // Mainnet is in the manifest (wallet addresses are only answered for the manifest's chains),
    // but no wallet is configured for it.
    let manifest = json!({"name": "errs", "permissions": {"chains": ["eip155:31337", "eip155:1"]}});
    let (id, token) = env.add_agent("errs", Some(&manifest));
    let sdk = env.sdk(&proxy, &id, &token);

    let err =
        sdk.query_chain::<Value>(ChainId::ANVIL, "eth_getBalance", ("0xnot-an-address", "latest")).await.unwrap_err();
    assert!(matches!(&err, assegai_sdk::Error::Rpc { message } if message.starts_with("RPC Error: ")), "{err:?}");

    let err = sdk.wallet_address(ChainId::eip155(1)).await.unwrap_err();
    assert!(
        matches!(&err, assegai_sdk::Error::NotFound { message } if message.contains("assegai wallet import")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_node_is_a_502() {
    let env = TestEnv::new();
    // Nothing listens on port 9 of loopback.
    env.write_config("local_rpc_url = \"http://127.0.0.1:9\"\n");
    let proxy = env.start_proxy();
    let (id, token) = env.add_agent("lonely", None);
    let sdk = env.sdk(&proxy, &id, &token);
    let err = sdk.block_number(ChainId::ANVIL).await.unwrap_err();
    assert!(
        matches!(&err, assegai_sdk::Error::Server { status: 502, message, .. } if message == "Network request failed"),
        "{err:?}"
    );
}
