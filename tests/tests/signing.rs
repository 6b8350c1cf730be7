//! The whole path on a real Anvil: an agent asks for a transfer, a person approves it with
//! `assegai approve ID --yes` from another process, the user's wallet signs, the chain mines it.

use std::time::Duration;

use assegai_e2e::{TestEnv, wait_until};
use assegai_sdk::{ChainId, U256, wire::TxRequest};
use serde_json::{Value, json};

const RECIPIENT: &str = "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045";

fn pending(env: &TestEnv) -> Vec<Value> {
    serde_json::from_str::<Value>(&env.run_ok(&["approve", "--list", "--json"])).unwrap().as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approved_transfer_is_signed_broadcast_and_confirmed() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let manifest =
        json!({"name": "payer", "permissions": {"chains": ["eip155:31337"]}, "spending_limits": {"daily": "1"}});
    let (id, token) = env.add_agent("payer", Some(&manifest));
    let sdk = env.sdk(&proxy, &id, &token);
    let before = env.anvil().rpc("eth_getBalance", json!([RECIPIENT, "latest"])).await;
    let before = U256::from_str_radix(before.as_str().unwrap().trim_start_matches("0x"), 16).unwrap();

    let amount = "100000000000000"; // 0.0001 ETH
    let request =
        TxRequest { chain: ChainId::ANVIL, to: RECIPIENT.into(), value: amount.into(), data: None, gas_limit: None };
    let agent_call = {
        let sdk = sdk.clone();
        let request = request.clone();
        tokio::spawn(async move { sdk.request_transaction(&request).await })
    };
    let waiting = wait_until(Duration::from_secs(10), "the request to be pending", || pending(&env).pop());
    assert_eq!(waiting["action"], format!("Send 0.0001 ETH to {RECIPIENT}"));

    // Without a terminal and without --yes, approval is refused (fail closed).
    let tx_id = waiting["id"].as_str().unwrap();
    let out = env.run(&["approve", tx_id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));

    let out = env.run_ok(&["approve", tx_id, "--yes"]);
    let hash = tokio::time::timeout(Duration::from_secs(30), agent_call).await.unwrap().unwrap().expect("a hash");
    assert_eq!(out.trim(), hash.to_string(), "approve prints the hash");

    let receipt = wait_until(Duration::from_secs(20), "the receipt", || {
        let rt = tokio::runtime::Handle::current();
        let r = tokio::task::block_in_place(|| {
            rt.block_on(env.anvil().rpc("eth_getTransactionReceipt", json!([hash.to_string()])))
        });
        (!r.is_null()).then_some(r)
    });
    assert_eq!(receipt["status"], "0x1");
    assert_eq!(receipt["from"].as_str().unwrap().to_lowercase(), "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266");
    let after = env.anvil().rpc("eth_getBalance", json!([RECIPIENT, "latest"])).await;
    let after = U256::from_str_radix(after.as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(after - before, U256::from_str_radix(amount, 10).unwrap(), "the recipient got exactly the amount");

    let row = wait_until(Duration::from_secs(20), "`txs` to show it confirmed", || {
        let txs: Value = serde_json::from_str(&env.run_ok(&["txs", "--json"])).unwrap();
        txs.as_array().unwrap().iter().find(|t| t["status"] == "confirmed").cloned()
    });
    assert_eq!(row["tx_hash"], hash.to_string());
    // People get the hash shortened, as wallets show it.
    let h = hash.to_string();
    let table = env.run_ok(&["txs"]);
    assert!(table.contains(&format!("{}…{}", &h[..8], &h[h.len() - 6..])) && table.contains("confirmed"), "{table}");
    let info = sdk.transaction(tx_id).await.unwrap();
    assert_eq!(info.status, assegai_sdk::wire::TxStatus::Confirmed);
    assert_eq!(info.tx_hash, Some(hash));

    // Two approvals in a row get distinct nonces and both land.
    let mut calls = Vec::new();
    for _ in 0..2 {
        let sdk = sdk.clone();
        let request = request.clone();
        calls.push(tokio::spawn(async move { sdk.request_transaction(&request).await }));
    }
    let two = wait_until(Duration::from_secs(10), "two pending", || {
        let p = pending(&env);
        (p.len() == 2).then_some(p)
    });
    for p in &two {
        env.run_ok(&["approve", p["id"].as_str().unwrap(), "--yes"]);
    }
    for c in calls {
        tokio::time::timeout(Duration::from_secs(30), c).await.unwrap().unwrap().expect("a hash");
    }
    wait_until(Duration::from_secs(20), "all three confirmed", || {
        let txs: Value = serde_json::from_str(&env.run_ok(&["txs", "--json", "--status", "confirmed"])).unwrap();
        (txs.as_array().unwrap().len() == 3).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn the_test_account_never_signs_for_a_real_chain() {
    // A node that really is chain 1 (Anvil with `--chain-id 1`): the published test key must never
    // sign for it. Approving fails with a clear reason, and nothing is broadcast.
    let env = TestEnv::with_anvil();
    let mainnet = assegai_e2e::Anvil::start_with(&["--chain-id", "1"]);
    let proxy = env.start_proxy();
    let manifest = json!({"name": "bold", "permissions": {"chains": ["eip155:1"], "rpcs": {"eip155:1": mainnet.url}}});
    let (id, token) = env.add_agent("bold", Some(&manifest));
    let sdk = env.sdk(&proxy, &id, &token);
    let block = mainnet.rpc("eth_blockNumber", json!([])).await;
    let request =
        TxRequest { chain: ChainId::eip155(1), to: RECIPIENT.into(), value: "1".into(), data: None, gas_limit: None };
    let call = tokio::spawn(async move { sdk.request_transaction(&request).await });
    let waiting = wait_until(Duration::from_secs(10), "pending", || pending(&env).pop());
    let out = env.run(&["approve", waiting["id"].as_str().unwrap(), "--yes"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("failed") && stderr.contains("No wallet configured for eip155:1"), "{stderr}");
    let err = tokio::time::timeout(Duration::from_secs(10), call).await.unwrap().unwrap().unwrap_err();
    assert!(
        matches!(&err, assegai_sdk::Error::Server { status: 500, message, .. } if message.contains("No wallet configured for eip155:1")),
        "{err:?}"
    );
    assert_eq!(mainnet.rpc("eth_blockNumber", json!([])).await, block, "nothing was mined");
    let txs: Value = serde_json::from_str(&env.run_ok(&["txs", "--json"])).unwrap();
    assert_eq!(txs[0]["status"], "failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_is_another_chain_is_refused_before_anything_is_asked() {
    // The manifest calls the local Anvil (chain id 31337) mainnet. The proxy asks the node what it
    // is before anything else: refused with the node's answer, nothing queued, nothing sent.
    let env = TestEnv::with_anvil();
    let tap = assegai_e2e::rpc_tap::RpcTap::start(&env.anvil().url);
    let proxy = env.start_proxy();
    let manifest = json!({"name": "liar", "permissions": {"chains": ["eip155:1"], "rpcs": {"eip155:1": tap.url()}}});
    let (id, token) = env.add_agent("liar", Some(&manifest));
    let sdk = env.sdk(&proxy, &id, &token);
    let request =
        TxRequest { chain: ChainId::eip155(1), to: RECIPIENT.into(), value: "1".into(), data: None, gas_limit: None };
    let err = sdk.request_transaction(&request).await.unwrap_err();
    assert!(
        matches!(&err, assegai_sdk::Error::Server { status: 502, message, .. }
            if message.contains("RPC endpoint reports chain id 31337, not eip155:1")),
        "{err:?}"
    );
    assert!(pending(&env).is_empty(), "nothing waits for a person");
    let sent = tap.sent_text();
    assert!(sent.contains("eth_chainId"), "the node was asked what it is: {sent}");
    assert!(!sent.contains("eth_sendRawTransaction") && !sent.contains("eth_feeHistory"), "{sent}");
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_of_a_node_that_is_another_chain_are_never_forwarded() {
    // The same lie on the read routes: the agent's reads go nowhere, whichever route it uses.
    let env = TestEnv::with_anvil();
    let tap = assegai_e2e::rpc_tap::RpcTap::start(&env.anvil().url);
    let proxy = env.start_proxy();
    let manifest = json!({"name": "liar", "permissions": {"chains": ["eip155:1"], "rpcs": {"eip155:1": tap.url()}}});
    let (id, token) = env.add_agent("liar", Some(&manifest));
    let sdk = env.sdk(&proxy, &id, &token);
    let victim = RECIPIENT.parse().unwrap();
    let mismatch = |err: &assegai_sdk::Error| {
        matches!(err, assegai_sdk::Error::Server { status: 502, message, .. }
            if message.contains("RPC endpoint reports chain id 31337, not eip155:1"))
    };
    for _ in 0..2 {
        let err = sdk.balance(ChainId::eip155(1), victim).await.unwrap_err();
        assert!(mismatch(&err), "{err:?}");
        let err = sdk
            .rpc(
                ChainId::eip155(1),
                &json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getBalance", "params": [RECIPIENT, "latest"]}),
            )
            .await
            .unwrap_err();
        assert!(mismatch(&err), "{err:?}");
    }
    let sent = tap.sent_text();
    assert!(sent.contains("eth_chainId"), "the node was asked what it is: {sent}");
    // A mismatch is never cached as good: asked again on every read, answered the same.
    assert_eq!(tap.sent().len(), 4, "{sent}");
    assert!(!sent.contains("eth_getBalance"), "{sent}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_turns_into_another_chain_after_approval_is_refused() {
    // The node was chain 31337 when the request was made and the card shown; by the time the
    // person approves it, it claims another chain. Nothing is handed to it.
    let env = TestEnv::with_anvil();
    let tap = assegai_e2e::rpc_tap::RpcTap::start(&env.anvil().url);
    let proxy = env.start_proxy();
    let manifest =
        json!({"name": "turncoat", "permissions": {"chains": ["eip155:31337"], "rpcs": {"eip155:31337": tap.url()}}});
    let (id, token) = env.add_agent("turncoat", Some(&manifest));
    let sdk = env.sdk(&proxy, &id, &token);
    let request =
        TxRequest { chain: ChainId::ANVIL, to: RECIPIENT.into(), value: "1".into(), data: None, gas_limit: None };
    let call = tokio::spawn(async move { sdk.request_transaction(&request).await });
    let waiting = wait_until(Duration::from_secs(10), "pending", || pending(&env).pop());
    tap.set_rewrite(Box::new(|request, _| {
        let request: Value = serde_json::from_slice(request).ok()?;
        (request["method"] == "eth_chainId")
            .then(|| json!({"jsonrpc": "2.0", "id": request["id"], "result": "0x1"}).to_string().into_bytes())
    }));
    let out = env.run(&["approve", waiting["id"].as_str().unwrap(), "--yes"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("RPC endpoint reports chain id 1, not eip155:31337"), "{stderr}");
    let err = tokio::time::timeout(Duration::from_secs(10), call).await.unwrap().unwrap().unwrap_err();
    assert!(format!("{err:?}").contains("reports chain id 1"), "{err:?}");
    let sent = tap.sent_text();
    assert!(!sent.contains("eth_sendRawTransaction") && !sent.contains("eth_sendTransaction"), "{sent}");
    let txs: Value = serde_json::from_str(&env.run_ok(&["txs", "--json"])).unwrap();
    assert_eq!(txs[0]["status"], "failed");
}
