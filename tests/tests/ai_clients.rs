//! The official `openai` and `anthropic` Python libraries (PyPI) against the real proxy and the
//! fake upstream: what the libraries return through the proxy is what they return from the
//! upstream directly, the upstream saw the user's key and only the allowed headers of the agent's,
//! and the usage was recorded exactly.
//!
//! Needs `.tools/venv` with both libraries (see `scripts/test`).

use std::{path::PathBuf, process::Command};

use assegai_e2e::{
    TestEnv, contains_bytes,
    fake_ai::{self, FakeAi, usage::*},
    workspace_root,
};
use serde_json::{Value, json};

const OPENAI_KEY: &str = "sk-proj-E2ePythonOpenAiSecret5Gh7Jk9Lm2Np";
const ANTHROPIC_KEY: &str = "sk-ant-api03-E2ePythonAnthropicSecret8Qr6St4";

fn python() -> PathBuf {
    let py = workspace_root().join(".tools/venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: python3 -m venv .tools/venv && .tools/venv/bin/pip install openai anthropic",
        py.display()
    );
    py
}

/// Runs tests/python/clients.py against the given base URLs; returns its JSON summary.
fn run_clients(openai_base: &str, anthropic_base: &str, agent: (&str, &str), models: (&str, &str)) -> (Value, Vec<u8>) {
    let out = Command::new(python())
        .arg(workspace_root().join("tests/python/clients.py"))
        .env("ASSEGAI_OPENAI_BASE_URL", openai_base)
        .env("ASSEGAI_ANTHROPIC_BASE_URL", anthropic_base)
        .env("ASSEGAI_AGENT_ID", agent.0)
        .env("ASSEGAI_AGENT_TOKEN", agent.1)
        .env("OPENAI_MODEL", models.0)
        .env("ANTHROPIC_MODEL", models.1)
        // Loopback only: no proxy from the environment, no keys the libraries might pick up.
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("all_proxy")
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("ANTHROPIC_BASE_URL")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .expect("running tests/python/clients.py");
    assert!(
        out.status.success(),
        "clients.py failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("clients.py printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    let mut all = out.stdout;
    all.extend_from_slice(&out.stderr);
    (summary, all)
}

#[test]
fn the_official_python_clients_work_through_the_proxy() {
    let (openai_model, _) = fake_ai::pick_model(&["gpt-4o"], false);
    let (anthropic_model, anthropic_prices) =
        fake_ai::pick_model(&["claude-sonnet-4-5", "claude-sonnet-4-5-20250929", "claude-haiku-4-5"], true);
    let openai_prices = fake_ai::model_prices(&openai_model).unwrap();
    let models = (openai_model.as_str(), anthropic_model.as_str());

    let fake = FakeAi::start();
    let env = TestEnv::new();
    let url = fake.url();
    env.write_config(&format!(
        "[keys]\nbackend = \"file\"\n\n[providers.openai]\nbase_url = \"{url}\"\n\n\
         [providers.anthropic]\nbase_url = \"{url}\"\n"
    ));
    fake_ai::set_key(&env, "openai", OPENAI_KEY);
    fake_ai::set_key(&env, "anthropic", ANTHROPIC_KEY);
    let proxy = env.start_proxy();
    let manifest = json!({"name": "pythonista", "permissions": {"apis": ["openai", "anthropic"]}});
    let (id, token) = env.add_agent("pythonista", Some(&manifest));

    // The control: the libraries straight against the fake.
    let (direct, _) = run_clients(&format!("{url}/v1"), &url, ("unused", "unused"), models);
    let direct_requests = fake.requests();
    fake.clear();

    let (through, printed) = run_clients(
        &format!("{}/api/openai/v1", proxy.url),
        &format!("{}/api/anthropic", proxy.url),
        (&id, &token),
        models,
    );
    assert_eq!(through, direct, "the libraries see the same through the proxy as from the upstream");

    // What the libraries returned.
    let content = fake_ai::content();
    assert_eq!(through["openai_chat"]["content"], content.as_str());
    assert_eq!(through["openai_chat"]["usage"]["prompt_tokens"], OPENAI_PROMPT_TOKENS);
    assert_eq!(through["openai_chat"]["usage"]["prompt_tokens_details"]["cached_tokens"], OPENAI_CACHED_TOKENS);
    assert_eq!(through["openai_stream"]["content"], content.as_str());
    assert_eq!(through["openai_stream"]["usage_chunks"], 0, "the usage chunk the proxy asked for is hidden");
    assert_eq!(through["openai_stream_with_usage"]["content"], content.as_str());
    assert_eq!(through["openai_stream_with_usage"]["usage"]["completion_tokens"], OPENAI_COMPLETION_TOKENS);
    assert_eq!(through["openai_error"]["status"], 400);
    assert_eq!(through["openai_error"]["body"]["code"], "invalid_value");
    assert_eq!(through["anthropic_message"]["text"], content.as_str());
    assert_eq!(through["anthropic_message"]["usage"]["cache_read_input_tokens"], ANTHROPIC_CACHE_READ_TOKENS);
    assert_eq!(through["anthropic_stream"]["text"], content.as_str());
    assert_eq!(through["anthropic_stream"]["usage"]["output_tokens"], ANTHROPIC_OUTPUT_TOKENS);
    assert_eq!(through["anthropic_stream"]["usage"]["cache_creation_input_tokens"], ANTHROPIC_CACHE_WRITE_TOKENS);
    let events = through["anthropic_stream"]["events"].as_array().unwrap();
    assert!(events.first() == Some(&json!("message_start")) && events.last() == Some(&json!("message_stop")));
    assert_eq!(through["anthropic_error"]["status"], 400);

    // What the upstream saw: the user's keys, never the agent's dummy keys or headers.
    let ups = fake.requests();
    assert_eq!(ups.len(), direct_requests.len());
    for (up, direct) in ups.iter().zip(&direct_requests) {
        assert_eq!((&up.method, &up.path_and_query), (&direct.method, &direct.path_and_query));
        // The library's headers that are on the allow-list (SPEC §3.2) arrive as sent; the rest
        // (its `x-stainless-*` telemetry, say) do not arrive at all.
        let allowed = [
            "accept",
            "content-type",
            "content-encoding",
            "content-language",
            "user-agent",
            "openai-beta",
            "anthropic-version",
            "anthropic-beta",
        ];
        for (name, value) in &direct.headers {
            let theirs = ["authorization", "x-api-key", "accept-encoding", "host", "content-length"];
            if theirs.contains(&name.as_str()) {
                continue;
            }
            if allowed.contains(&name.as_str()) {
                assert_eq!(up.header_all(name), [value.as_str()], "header {name}");
            } else {
                assert!(up.header_all(name).is_empty(), "header {name} is not on the allow-list: {:?}", up.headers);
            }
        }
        if up.json()["stream_options"] == direct.json()["stream_options"] {
            assert_eq!(up.body, direct.body, "the body arrives as sent");
        }
        assert!(up.headers.iter().all(|(n, _)| !n.starts_with("x-assegai")), "{:?}", up.headers);
        assert_eq!(up.header_all("accept-encoding"), ["identity"], "{:?}", up.headers);
        if up.path_and_query.starts_with("/v1/messages") {
            assert_eq!(up.header_all("x-api-key"), [ANTHROPIC_KEY]);
            assert!(up.header_all("authorization").is_empty(), "{:?}", up.headers);
        } else {
            assert_eq!(up.path_and_query, "/v1/chat/completions");
            assert_eq!(up.header_all("authorization"), [format!("Bearer {OPENAI_KEY}")]);
            assert!(up.header_all("x-api-key").is_empty(), "{:?}", up.headers);
        }
        let stainless =
            |headers: &[(String, String)]| headers.iter().filter(|(n, _)| n.starts_with("x-stainless")).count();
        assert!(stainless(&direct.headers) > 0, "the libraries send their own headers: {:?}", direct.headers);
        assert_eq!(stainless(&up.headers), 0, "and the proxy drops them: {:?}", up.headers);
    }
    let streamed_without_usage = ups
        .iter()
        .filter(|u| u.json()["stream"] == true && u.path_and_query == "/v1/chat/completions")
        .collect::<Vec<_>>();
    assert_eq!(streamed_without_usage.len(), 2);
    assert!(streamed_without_usage.iter().all(|u| u.json()["stream_options"]["include_usage"] == true));

    // Usage: 3 OpenAI calls and 2 Anthropic calls, exact; the failed calls are not priced as 0.
    let row = fake_ai::wait_for_usage(&env, "pythonista", "openai", &openai_model, 3);
    assert_eq!(row["input_tokens"], 3 * (OPENAI_PROMPT_TOKENS - OPENAI_CACHED_TOKENS), "{row}");
    assert_eq!(row["output_tokens"], 3 * OPENAI_COMPLETION_TOKENS, "{row}");
    assert_eq!(row["cache_read_tokens"], 3 * OPENAI_CACHED_TOKENS, "{row}");
    assert_eq!(row["cost_usd"], fake_ai::usd(3 * fake_ai::openai_call_nano(&openai_prices)), "{row}");
    let row = fake_ai::wait_for_usage(&env, "pythonista", "anthropic", &anthropic_model, 2);
    assert_eq!(row["input_tokens"], 2 * ANTHROPIC_INPUT_TOKENS, "{row}");
    assert_eq!(row["output_tokens"], 2 * ANTHROPIC_OUTPUT_TOKENS, "{row}");
    assert_eq!(row["cache_read_tokens"], 2 * ANTHROPIC_CACHE_READ_TOKENS, "{row}");
    assert_eq!(row["cache_write_tokens"], 2 * ANTHROPIC_CACHE_WRITE_TOKENS, "{row}");
    assert_eq!(row["cost_usd"], fake_ai::usd(2 * fake_ai::anthropic_call_nano(&anthropic_prices)), "{row}");

    // The agent (and its libraries' output) never saw a key.
    let log = proxy.output();
    for key in [OPENAI_KEY, ANTHROPIC_KEY] {
        assert!(!contains_bytes(&printed, key.as_bytes()), "a key reached the agent");
        assert!(!contains_bytes(&log, key.as_bytes()), "a key reached the proxy's output");
    }
}
