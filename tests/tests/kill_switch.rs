//! The kill switch: `assegai agents pause` refuses every request of a paused agent at once and
//! rejects its pending transactions; `resume` lets it back in.

use std::time::Duration;

use assegai_e2e::{TestEnv, wait_until};
use serde_json::{Value, json};

fn pending(env: &TestEnv) -> Vec<Value> {
    serde_json::from_str::<Value>(&env.run_ok(&["approve", "--list", "--json"])).unwrap().as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn pausing_rejects_pending_requests_and_blocks_new_calls() {
    let env = TestEnv::with_anvil();
    let proxy = env.start_proxy();
    let manifest = json!({"name": "runaway", "permissions": {"chains": ["eip155:31337"]}});
    let (id, token) = env.add_agent("runaway", Some(&manifest));
    let (other_id, other_token) = env.add_agent("steady", Some(&manifest));
    let http = reqwest::Client::new();
    let send = |id: String, token: String| {
        let http = http.clone();
        let url = format!("{}/agent/request-transaction", proxy.url);
        async move {
            let resp = http
                .post(url)
                .header("X-Assegai-Agent-ID", id)
                .header("X-Assegai-Agent-Token", token)
                .json(&json!({"chain": "eip155:31337", "to": "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045", "value": "1000"}))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let waiting = tokio::spawn(send(id.clone(), token.clone()));
    let bystander = tokio::spawn(send(other_id.clone(), other_token.clone()));
    wait_until(Duration::from_secs(10), "both requests pending", || (pending(&env).len() == 2).then_some(()));

    // Pending value, with its worst-case fee, shows against the limits.
    let mine = pending(&env).into_iter().find(|e| e["agent"] == "runaway").unwrap();
    let max_fee: u128 = mine["max_fee_wei"].as_str().unwrap().parse().unwrap();
    let counted = (1000 + max_fee).to_string();
    let limits: Value = serde_json::from_str(&env.run_ok(&["limits", "runaway", "--json"])).unwrap();
    let daily = &limits["chains"][0]["windows"][0];
    assert_eq!(
        (daily["window"].as_str(), daily["pending_wei"].as_str(), daily["spent_wei"].as_str()),
        (Some("daily"), Some(counted.as_str()), Some("0"))
    );
    assert!(env.run_ok(&["limits", "runaway"]).contains("pending"));

    env.run_ok(&["agents", "pause", "runaway"]);
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), waiting).await.unwrap().unwrap();
    assert_eq!((status, body), (403, json!({"error": "Transaction rejected by user", "code": "REJECTED"})));

    // Every request of the paused agent is refused, chain reads included.
    let sdk = env.sdk(&proxy, &id, &token);
    let err = sdk.block_number(assegai_sdk::ChainId::ANVIL).await.unwrap_err();
    assert!(matches!(&err, assegai_sdk::Error::Forbidden { reason, .. } if reason == "Agent paused"), "{err:?}");
    let (status, body) = send(id.clone(), token.clone()).await;
    assert_eq!((status, body["error"].clone()), (403, json!("Agent paused")));

    // The other agent is untouched: its request is still pending.
    let still = pending(&env);
    assert_eq!(still.len(), 1);
    assert_eq!(still[0]["agent"], "steady");
    let txs: Value = serde_json::from_str(&env.run_ok(&["txs", "--json", "--agent", "runaway"])).unwrap();
    assert_eq!(txs[0]["status"], "rejected");

    // `--all` is the big red button; `resume` undoes it.
    env.run_ok(&["agents", "pause", "--all"]);
    let (status, _) = tokio::time::timeout(Duration::from_secs(10), bystander).await.unwrap().unwrap();
    assert_eq!(status, 403);
    let list: Value = serde_json::from_str(&env.run_ok(&["agents", "list", "--json"])).unwrap();
    assert!(list.as_array().unwrap().iter().all(|a| a["paused"] == true), "{list}");
    env.run_ok(&["agents", "resume", "--all"]);
    sdk.block_number(assegai_sdk::ChainId::ANVIL).await.unwrap();

    // Pausing needs a target.
    assert!(!env.run(&["agents", "pause"]).status.success());
}
