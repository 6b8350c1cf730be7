//! The AI gateway from the SDK's side (`openai`, `anthropic`, `ai_stream`), and the CLI commands
//! around it: `keys test`, `keys set` refusing keys it cannot read safely, `pricing update`.

use assegai_e2e::{
    TestEnv,
    fake_ai::{FakeAi, set_key, set_key_with, usage_json, wait_for_usage},
};
use futures_util::StreamExt;
use serde_json::{Value, json};

fn gateway_env(fake: &FakeAi) -> TestEnv {
    let env = TestEnv::with_anvil();
    env.write_config(&format!(
        "[keys]\nbackend = \"file\"\n[providers.openai]\nbase_url = \"{u}\"\n[providers.anthropic]\nbase_url = \"{u}\"\n[providers.deepseek]\nbase_url = \"{u}\"\n",
        u = fake.url()
    ));
    env
}

fn manifest() -> Value {
    json!({"name": "thinker", "permissions": {"chains": ["eip155:31337"], "apis": ["openai", "anthropic"]}})
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sdk_calls_and_streams_through_the_proxy() {
    let fake = FakeAi::start();
    let env = gateway_env(&fake);
    set_key(&env, "openai", "sk-test-sdk-openai-0123456789");
    set_key(&env, "anthropic", "sk-ant-test-sdk-0123456789");
    let proxy = env.start_proxy();
    let (id, token) = env.add_agent("thinker", Some(&manifest()));
    let sdk = env.sdk(&proxy, &id, &token);

    let reply = sdk
        .openai("v1/chat/completions", &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
        .await
        .unwrap();
    assert_eq!(reply["object"], "chat.completion", "{reply}");
    assert!(reply["choices"][0]["message"]["content"].as_str().unwrap().contains("fake"));

    let reply = sdk
        .anthropic(
            "/v1/messages",
            &json!({"model": "claude-sonnet-4-20250514", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await
        .unwrap();
    assert_eq!(reply["type"], "message", "{reply}");

    // Streaming: events arrive one by one, in order, without the usage chunk the proxy added.
    let mut events = sdk
        .ai_stream(
            "openai",
            "v1/chat/completions",
            &json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await
        .unwrap();
    let mut text = String::new();
    let mut saw_done = false;
    while let Some(event) = events.next().await {
        let event = event.unwrap();
        if event.data == "[DONE]" {
            saw_done = true;
            continue;
        }
        let chunk: Value = serde_json::from_str(&event.data).unwrap();
        assert!(chunk.get("usage").is_none(), "the client did not ask for usage: {chunk}");
        text.push_str(chunk["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
    }
    assert!(saw_done);
    assert_eq!(text, assegai_e2e::fake_ai::content());

    let mut events = sdk
        .ai_stream(
            "anthropic",
            "v1/messages",
            &json!({"model": "claude-sonnet-4-20250514", "max_tokens": 10, "stream": true, "messages": []}),
        )
        .await
        .unwrap();
    let mut names = Vec::new();
    while let Some(event) = events.next().await {
        names.push(event.unwrap().event.unwrap_or_default());
    }
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));

    // A provider the manifest does not list is a typed, matchable error.
    let err = sdk.deepseek("chat/completions", &json!({"model": "deepseek-chat", "messages": []})).await.unwrap_err();
    assert!(matches!(&err, assegai_sdk::Error::Forbidden { code, .. } if code == "API_NOT_ALLOWED"), "{err:?}");

    wait_for_usage(&env, "thinker", "openai", "gpt-4o", 2);
}

#[test]
fn keys_test_checks_a_key_and_says_what_to_do() {
    let fake = FakeAi::start();
    let env = gateway_env(&fake);
    set_key(&env, "openai", "sk-test-keys-test-0123456789");
    let out = env.run(&["keys", "test", "openai"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("accepted") && !stderr.contains("sk-test-keys-test-0123456789"), "{stderr}");
    let seen = fake.requests();
    let models = seen.iter().find(|r| r.path_and_query == "/v1/models").expect("GET /v1/models reached the fake");
    assert_eq!(models.header("authorization"), Some("Bearer sk-test-keys-test-0123456789"));

    let out = env.run(&["keys", "test", "anthropic"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("assegai keys set anthropic"), "{stderr}");
}

#[test]
fn keys_are_never_taken_from_arguments_or_guessed() {
    let env = TestEnv::new();
    env.write_config("[keys]\nbackend = \"file\"\n");
    // No terminal and no --stdin: refuse, and say how.
    let out = env.run(&["keys", "set", "openai"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--stdin"));
    // There is no argument to pass a key in.
    let out = env.run(&["keys", "set", "openai", "sk-in-argv-0123456789"]);
    assert!(!out.status.success());
    // An empty key stores nothing; an unexpected prefix is stored with a warning.
    let out = set_key_with(env.cmd(&["keys", "set", "openai", "--stdin"]), "");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("empty"));
    let out = set_key_with(env.cmd(&["keys", "set", "anthropic", "--stdin"]), "sk-proj-not-anthropic-0123456789");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warning") && stderr.contains("sk-ant-"), "{stderr}");
    assert!(!stderr.contains("sk-proj-not-anthropic-0123456789"), "{stderr}");
    let list: Value = serde_json::from_str(&env.run_ok(&["keys", "list", "--json"])).unwrap();
    let anthropic = list.as_array().unwrap().iter().find(|r| r["provider"] == "anthropic").unwrap();
    assert_eq!(anthropic["configured"], true);
    assert_eq!(anthropic["masked"], "•••6789");
    assert_eq!(anthropic["backend"], "file");
    let openai = list.as_array().unwrap().iter().find(|r| r["provider"] == "openai").unwrap();
    assert_eq!(openai["configured"], false);
}

#[test]
fn pricing_update_installs_a_checked_file_that_the_running_proxy_uses() {
    let fake = FakeAi::start();
    let env = gateway_env(&fake);
    set_key(&env, "openai", "sk-test-pricing-0123456789");
    let (id, token) = env.add_agent("thinker", Some(&manifest()));
    let proxy = env.start_proxy();

    // The built-in snapshot, per million tokens, exactly (gpt-4o: 2.5e-6 and 1e-5 USD a token).
    let listed: Value = serde_json::from_str(&env.run_ok(&["pricing", "list", "gpt-4o", "--json"])).unwrap();
    assert!(listed["source"].as_str().unwrap().contains("built into"), "{listed}");
    let gpt4o = listed["models"].as_array().unwrap().iter().find(|m| m["model"] == "gpt-4o").cloned().unwrap();
    assert_eq!(gpt4o["provider"], "openai");
    assert_eq!(gpt4o["usd_per_million_tokens"]["input"], "2.50", "{gpt4o}");
    assert_eq!(gpt4o["usd_per_million_tokens"]["output"], "10.00", "{gpt4o}");
    let anthropic: Value =
        serde_json::from_str(&env.run_ok(&["pricing", "list", "--provider", "anthropic", "--json"])).unwrap();
    let models = anthropic["models"].as_array().unwrap();
    assert!(!models.is_empty() && models.iter().all(|m| m["provider"] == "anthropic"), "{anthropic}");
    let table = env.run_ok(&["pricing", "list", "gpt-4o-mini"]);
    assert!(table.contains("gpt-4o-mini") && table.contains("0.15") && !table.contains("claude"), "{table}");

    // Not a price file: refused, nothing installed.
    let bad = env.home().join("bad.json");
    std::fs::write(&bad, "{\"sample_spec\": {}}").unwrap();
    let out = env.run(&["pricing", "update", "--file", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.json"));
    assert!(!env.home().join("model_prices.json").exists());

    // A missing file: said once, with the path (an error quoting its cause is not repeated).
    let missing = env.home().join("missing.json");
    let out = env.run(&["pricing", "update", "--file", missing.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("missing.json"), "{stderr}");
    assert_eq!(stderr.matches("No such file").count(), 1, "{stderr}");

    // A file that prices a made-up model at 1 nano-USD per input token and 2 per output token.
    let custom = env.home().join("prices.json");
    let prices = json!({
        "sample_spec": {"input_cost_per_token": 0},
        "house-model": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1e-9, "output_cost_per_token": 2e-9}
    });
    std::fs::write(&custom, prices.to_string()).unwrap();
    let out = env.run(&["pricing", "update", "--file", custom.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 model"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("from now on"), "the running proxy switched");
    let listed: Value = serde_json::from_str(&env.run_ok(&["pricing", "--json"])).unwrap();
    assert!(listed["source"].as_str().unwrap().ends_with("model_prices.json"), "{listed}");
    assert_eq!(listed["models"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["models"][0]["usd_per_million_tokens"]["input"], "0.001", "{listed}");

    // No restart: the proxy that was running all along prices with the new file.
    let sdk = env.sdk(&proxy, &id, &token);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(sdk.openai("v1/chat/completions", &json!({"model": "house-model", "messages": []}))).unwrap();
    let row = wait_for_usage(&env, "thinker", "openai", "house-model", 1);
    let expected_nano = row["input_tokens"].as_u64().unwrap()
        + row["cache_read_tokens"].as_u64().unwrap()
        + 2 * row["output_tokens"].as_u64().unwrap();
    let cost = row["cost_usd"].as_str().expect("priced by the installed file");
    assert_eq!(cost, assegai_e2e::fake_ai::usd(u128::from(expected_nano)), "{row}");
    // gpt-4o is not in the installed file, so it is now unpriced (never free).
    rt.block_on(sdk.openai("v1/chat/completions", &json!({"model": "gpt-4o", "messages": []}))).unwrap();
    let row = wait_for_usage(&env, "thinker", "openai", "gpt-4o", 1);
    assert_eq!(row["cost_usd"], Value::Null, "{row}");
    let total = usage_json(&env, &[]);
    assert_eq!(total["total"]["unpriced_calls"], 1);
}
