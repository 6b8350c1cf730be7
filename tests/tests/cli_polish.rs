//! The rough edges a new user meets first, with the real binary: output piped into a reader that
//! has gone ends quietly (completion scripts too), `--home` reads as the optional flag it is,
//! `assegai config` shows the settings in effect without an RPC URL's key, and `keys test` says
//! which URL it could not reach.

use std::process::{Command, Stdio};

use assegai_e2e::{TestEnv, assegai_bin, contains_bytes, fake_ai::set_key, workspace_root};
use serde_json::Value;

/// `assegai ARGS` with its stdout a pipe whose reader is already closed: no panic, exit code 0.
fn assert_quiet_into_closed_pipe(env: &TestEnv, args: &[&str]) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = env.cmd(args).stdout(writer).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    assert_eq!(out.status.code(), Some(0), "{args:?} ends as a Unix tool does when its reader goes: {stderr}");
}

#[test]
fn completions_and_help_into_a_closed_pipe_end_quietly() {
    let env = TestEnv::new();
    for args in [
        &["completions", "zsh"][..],
        &["completions", "bash"],
        &["completions", "fish"],
        &["--help"],
        &["config"],
        &["config", "--json"],
    ] {
        assert_quiet_into_closed_pipe(&env, args);
    }
    // As typed: `assegai completions zsh | head -1` prints the first line, and `assegai` exits 0.
    for (shell, first) in [("zsh", "#compdef assegai"), ("bash", "_assegai() {")] {
        let out = Command::new("bash")
            .args(["-c", &format!("\"$0\" completions {shell} | head -1; exit \"${{PIPESTATUS[0]}}\"")])
            .arg(assegai_bin())
            .env("ASSEGAI_HOME", env.home())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "completions {shell} | head -1: {stderr}");
        assert_eq!(stdout.trim_end(), first, "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // Into a reader that stays, the whole script arrives.
    let zsh = env.run_ok(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef assegai") && zsh.contains("_assegai \"$@\""), "{zsh}");
}

#[test]
fn home_reads_as_an_optional_flag() {
    let env = TestEnv::new();
    let unset = |args: &[&str]| {
        let mut cmd = env.cmd(args);
        cmd.env_remove("ASSEGAI_HOME");
        cmd.output().unwrap()
    };
    for (what, out) in [("ASSEGAI_HOME set", env.run(&["limits"])), ("ASSEGAI_HOME unset", unset(&["limits"]))] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert!(stderr.contains("Usage: assegai limits <AGENT>\n"), "{what}: the usage names no `--home`: {stderr}");
    }
    for (what, out) in
        [("ASSEGAI_HOME set", env.run(&["limits", "-h"])), ("ASSEGAI_HOME unset", unset(&["limits", "-h"]))]
    {
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("Usage: assegai limits [OPTIONS] <AGENT>"), "{what}: {help}");
        assert!(
            help.contains("--home <DIR>  Directory holding Assegai's state [default: ~/.local/share/assegai]"),
            "{help}"
        );
        assert!(!help.contains("[env:"), "{what}: the short help leaves the variable to --help: {help}");
    }
    for (what, out) in
        [("ASSEGAI_HOME set", env.run(&["limits", "--help"])), ("ASSEGAI_HOME unset", unset(&["limits", "--help"]))]
    {
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("[env: ASSEGAI_HOME] [default: ~/.local/share/assegai]"), "{what}: {help}");
        assert!(!help.contains("ASSEGAI_HOME="), "{what}: no value in the help: {help}");
    }
    // The variable still picks the home, and `--home` wins over it.
    let json = |out: std::process::Output| -> Value {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let from_env = json(env.run(&["config", "--json"]));
    assert_eq!(from_env["file"], env.home().join("config.toml").to_str().unwrap());
    let other = tempfile::tempdir().unwrap();
    let other_home = other.path().join("elsewhere");
    let flagged = json(env.run(&["--home", other_home.to_str().unwrap(), "config", "--json"]));
    assert_eq!(flagged["file"], other_home.join("config.toml").to_str().unwrap());
    assert!(!other_home.exists(), "showing the settings creates no home");
}

/// `settings` of `config --json` as (key → (value, source, shortened)).
fn setting<'a>(report: &'a Value, key: &str) -> &'a Value {
    report["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key)
        .unwrap_or_else(|| panic!("no `{key}` in {report:#}"))
}

#[test]
fn config_shows_the_settings_in_effect_and_no_key() {
    let fresh = TestEnv::new();
    let out = fresh.run(&["config"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stderr.contains("No ") && stderr.contains("config.toml yet, so every setting is its default"), "{stderr}");
    let listen = stdout.lines().find(|l| l.trim_start().starts_with("listen ")).expect("a `listen` row");
    assert_eq!(listen.split_whitespace().collect::<Vec<_>>(), ["listen", "\"127.0.0.1:8765\"", "default"]);
    let report: Value = serde_json::from_str(&fresh.run_ok(&["config", "--json"])).unwrap();
    assert_eq!(report["file_exists"], false);
    assert!(report["settings"].as_array().unwrap().iter().all(|s| s["source"] == "default"), "{report:#}");

    let env = TestEnv::new();
    env.write_config(
        "approval_timeout_secs = 60\n\
         [rate_limits]\nrpc = { requests = 3, per_secs = 1 }\n\
         [keys]\nbackend = \"file\"\n\
         [chains.\"eip155:1\"]\nrpc = \"https://eth.example/v3/sekrit-api-key?token=sekrit-query\"\nmax_fee_eth = \"0.01\"\n\
         [providers.openai]\norganization = \"org-visible\"\n",
    );
    let human = env.run(&["config"]);
    let json = env.run(&["config", "--json"]);
    for out in [&human, &json] {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        for secret in [&b"sekrit"[..], b"v3/", b"token="] {
            assert!(
                !contains_bytes(&out.stdout, secret) && !contains_bytes(&out.stderr, secret),
                "a key in the URL shows"
            );
        }
    }
    let text = String::from_utf8_lossy(&human.stdout);
    let row = |key: &str| -> Vec<String> {
        let line = text.lines().find(|l| l.split_whitespace().next() == Some(key));
        line.unwrap_or_else(|| panic!("no `{key}` row in\n{text}")).split_whitespace().map(str::to_owned).collect()
    };
    assert_eq!(row("approval_timeout_secs"), ["approval_timeout_secs", "60", "config.toml"]);
    assert_eq!(row("upstream_timeout_secs"), ["upstream_timeout_secs", "30", "default"]);
    assert_eq!(
        row("chains.\"eip155:1\".rpc").join(" "),
        "chains.\"eip155:1\".rpc \"https://eth.example\" (path hidden) config.toml"
    );
    assert_eq!(
        row("chains.\"eip155:1\".max_fee_per_gas_gwei"),
        ["chains.\"eip155:1\".max_fee_per_gas_gwei", "\"500\"", "default"]
    );
    assert_eq!(row("providers.openai.project").join(" "), "providers.openai.project (not set) default");

    let report: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["file_exists"], true);
    let rpc = setting(&report, "chains.\"eip155:1\".rpc");
    assert_eq!(
        (&rpc["value"], &rpc["source"], &rpc["shortened"]),
        (&"https://eth.example".into(), &"config.toml".into(), &true.into())
    );
    let check = |key: &str, value: Value, source: &str| {
        let s = setting(&report, key);
        assert_eq!((&s["value"], s["source"].as_str()), (&value, Some(source)), "{key}");
    };
    check("approval_timeout_secs", 60.into(), "config.toml");
    check("listen", "127.0.0.1:8765".into(), "default");
    check("local_rpc_url", "http://localhost:8545".into(), "default");
    check("rate_limits.rpc.requests", 3.into(), "config.toml");
    check("rate_limits.openai.requests", 100.into(), "default");
    check("chains.\"eip155:1\".max_fee_eth", "0.01".into(), "config.toml");
    check("chains.\"*\".max_fee_eth", "0.05".into(), "default");
    check("keys.backend", "file".into(), "config.toml");
    check("providers.openai.organization", "org-visible".into(), "config.toml");
    check("providers.openai.base_url", "https://api.openai.com".into(), "default");
    check("providers.deepseek.extra_endpoints", serde_json::json!([]), "default");
    check("ai.default_max_output_tokens", 8192.into(), "default");
}

/// Every key `assegai config` shows is in README's `config.toml` table (placeholders for chains,
/// providers and rate-limit names), so a new setting cannot go undocumented.
#[test]
fn readme_documents_every_config_key() {
    let env = TestEnv::new();
    env.write_config("[chains.\"eip155:10\"]\nrpc = \"https://op.example\"\n");
    let report: Value = serde_json::from_str(&env.run_ok(&["config", "--json"])).unwrap();
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let section = readme.split("### `config.toml`").nth(1).expect("README has a `config.toml` section");
    let section = section.split("\n## ").next().unwrap();
    for s in report["settings"].as_array().unwrap() {
        let key = s["key"].as_str().unwrap();
        let mut parts: Vec<String> = key.split('.').map(str::to_owned).collect();
        match parts[0].as_str() {
            "chains" => parts[1] = "\"eip155:N\"".into(),
            "rate_limits" => parts.truncate(2),
            "providers" if matches!(parts[2].as_str(), "base_url" | "extra_endpoints") => parts[1] = "NAME".into(),
            _ => {}
        }
        let documented = format!("| `{}` |", parts.join("."));
        assert!(section.contains(&documented), "README's config.toml table has no row {documented} (for `{key}`)");
    }
}

#[test]
fn keys_test_says_which_url_it_could_not_reach() {
    let env = TestEnv::new();
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    env.write_config(&format!("[keys]\nbackend = \"file\"\n[providers.openai]\nbase_url = \"{base}\"\n"));
    set_key(&env, "openai", "sk-test-offline-0123456789");
    let out = env.run(&["keys", "test", "openai"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("could not reach {base}/v1/models")), "which URL: {stderr}");
    assert!(stderr.contains("this machine may be offline, or the URL may be wrong"), "why: {stderr}");
    assert!(
        stderr.contains("`base_url` under `[providers.openai]` in config.toml"),
        "where the URL comes from: {stderr}"
    );
    assert!(stderr.contains("keys test openai` again"), "the next step: {stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("0123456789"), "{stderr}");
}
