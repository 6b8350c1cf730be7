//! `assegai doctor`: checks what Assegai depends on — the key store, the proxy, the local chain,
//! the wallet, AI keys — and says for each what to do when it is not right.

use std::time::Duration;

use assegai_proxy::{
    chain::{parse_rpc_url, shown_url},
    keys::KeyError,
    manifest::Provider,
    upstream::Upstream,
    wallet,
};
use console::style;
use serde::Serialize;
use serde_json::json;

use crate::{cli::JsonFlag, printer::Printer, runner::find_program, settings::Settings};

#[derive(Debug, Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
struct Check {
    check: &'static str,
    level: Level,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

fn check(check: &'static str, level: Level, detail: impl Into<String>, fix: Option<String>) -> Check {
    Check { check, level, detail: detail.into(), fix }
}

pub async fn run(args: &JsonFlag, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    let mut checks = vec![check("home", Level::Ok, settings.home.root().display().to_string(), None)];

    let keys = settings.existing_keystore(printer);
    match &keys {
        Ok(Some(store)) => checks.push(check("key store", Level::Ok, store.describe(), None)),
        Ok(None) => checks.push(check(
            "key store",
            Level::Warn,
            format!("encrypted file ({}), not created yet", settings.home.keys_file().display()),
            Some("`assegai keys set PROVIDER` or `assegai wallet import` creates it and asks for a passphrase".into()),
        )),
        Err(e) => checks.push(check("key store", Level::Fail, format!("{e:#}"), key_store_fix(e))),
    }

    match settings.admin().status().await {
        Some(s) => {
            checks.push(check("proxy", Level::Ok, format!("running (pid {}) on http://{}", s.pid, s.listen), None))
        }
        None => checks.push(check(
            "proxy",
            Level::Warn,
            "not running",
            Some("start it with `assegai proxy` (or let `assegai run` start one)".into()),
        )),
    }

    checks.push(local_chain(settings).await);
    checks.push(fee_caps(settings));
    checks.push(signing_rpcs(settings));
    checks.push(database(settings));
    checks.push(rate_limits(settings).await);
    checks.push(match crate::sandbox::probe() {
        support @ crate::sandbox::Support::Available { scoped: true } => {
            check("sandbox", Level::Ok, support.describe(), None)
        }
        support @ crate::sandbox::Support::Available { scoped: false } => check(
            "sandbox",
            Level::Warn,
            support.describe(),
            Some("a Linux 6.12 or newer kernel also stops agents signalling the proxy".into()),
        ),
        support => check(
            "sandbox",
            Level::Fail,
            support.describe(),
            Some("`assegai run` refuses to start agents here: use `assegai run --docker`, or a kernel with Landlock (Linux 5.13+, `lsm=…,landlock`)".into()),
        ),
    });

    // No key file yet: nothing can have been imported.
    let imported = match &keys {
        Ok(Some(store)) => Some(wallet::load(store.as_ref())),
        Ok(None) => Some(Ok(None)),
        Err(_) => None,
    };
    if let Some(imported) = imported {
        match imported {
            Ok(Some(w)) => {
                checks.push(check("wallet", Level::Ok, format!("imported {} (every chain)", w.address()), None))
            }
            Ok(None) => checks.push(check(
                "wallet",
                Level::Warn,
                format!("Anvil's test account {} (local chains only)", wallet::ANVIL_TEST_ACCOUNT),
                Some("run `assegai wallet import` to sign on other chains".into()),
            )),
            Err(e) => {
                checks.push(check("wallet", Level::Fail, e.to_string(), Some("run `assegai wallet import`".into())))
            }
        }
    }
    if let Ok(Some(store)) = &keys {
        let configured: Vec<_> = Provider::ALL
            .iter()
            .filter(|p| store.get(p.as_str()).ok().flatten().is_some())
            .map(|p| p.as_str())
            .collect();
        if configured.is_empty() {
            checks.push(check(
                "AI keys",
                Level::Warn,
                "none",
                Some("run `assegai keys set openai` (or anthropic, deepseek) if agents call AI APIs".into()),
            ));
        } else {
            checks.push(check("AI keys", Level::Ok, configured.join(", "), None));
        }
    }

    if args.json {
        printer.json(&json!({"checks": checks}))?;
    } else {
        for c in &checks {
            let mark = match c.level {
                Level::Ok => style("✓").green().bold(),
                Level::Warn => style("!").yellow().bold(),
                Level::Fail => style("✗").red().bold(),
            };
            printer.data(format!("{mark} {:<10} {}", c.check, c.detail));
            if let Some(fix) = &c.fix {
                printer.data(format!("  {:<10} {} {fix}", "", style("→").cyan()));
            }
        }
    }
    if checks.iter().any(|c| c.level == Level::Fail) {
        anyhow::bail!("some checks failed; see the fixes above");
    }
    Ok(())
}

/// The fee caps a request must stay under before a person sees it: the defaults, and each chain
/// config.toml sets its own for.
fn fee_caps(settings: &Settings) -> Check {
    use assegai_proxy::{config, units::format_units};
    let mut parts = vec![format!(
        "default {} gwei per gas and {} per request",
        config::DEFAULT_MAX_FEE_PER_GAS_GWEI,
        config::DEFAULT_MAX_FEE_ETH
    )];
    for (chain, c) in &settings.config.chains {
        if c.max_fee_per_gas_gwei.is_some() || c.max_fee_eth.is_some() {
            let caps = settings.config.fee_caps(*chain);
            parts.push(format!(
                "{chain}: {} gwei per gas, {} per request",
                format_units(caps.max_fee_per_gas, 9),
                format_units(caps.max_fee, 18)
            ));
        }
    }
    check("fee caps", Level::Ok, parts.join("; "), None)
}

/// Which node fixes fees and nonces and broadcasts for each chain. Only the host is shown: a
/// provider's RPC URL often carries its API key in the path or query.
fn signing_rpcs(settings: &Settings) -> Check {
    let mut parts: Vec<String> = settings
        .config
        .chains
        .iter()
        .filter_map(|(chain, c)| {
            let url = shown_url(c.rpc.as_deref()?)?;
            Some(format!("{chain} through {url} (config.toml)"))
        })
        .collect();
    let fix = parts.is_empty().then(|| {
        "set `rpc` under `[chains.\"eip155:N\"]` in config.toml, so you choose the node that fixes a request's \
         fees, not the agent's manifest"
            .to_owned()
    });
    parts.push("other chains through the agent manifest's RPC (local chains: `local_rpc_url`)".into());
    check("signing RPCs", Level::Ok, parts.join("; "), fix)
}

/// Where requests, approvals and usage are kept, and, when that is a shared PostgreSQL, that it
/// answers, takes a password, and has limits shared beside it.
fn database(settings: &Settings) -> Check {
    let Some(url) = settings.config.database_url.as_deref() else {
        return check(
            "database",
            Level::Ok,
            format!(
                "{} (this host's own; set `database_url` to share one with a team)",
                settings.home.database().display()
            ),
            None,
        );
    };
    let shown = shown_url(url).unwrap_or_else(|| "(database_url)".into());
    if let Err(e) = settings.store() {
        return check(
            "database",
            Level::Fail,
            format!("shared PostgreSQL at {shown}: {e:#}"),
            Some("start PostgreSQL there and check `database_url` (or ASSEGAI_DATABASE_URL)".into()),
        );
    }
    // Anything that reaches the database with its login could approve requests itself; the
    // password stays in config.toml (or the CLI's environment), which agents never see.
    let has_password = url::Url::parse(url).ok().is_some_and(|u| u.password().is_some_and(|p| !p.is_empty()));
    if !has_password {
        return check(
            "database",
            Level::Warn,
            format!(
                "shared PostgreSQL at {shown}, reached without a password: if the server lets such logins in, any \
                 local process, an agent among them, could decide its own requests"
            ),
            Some("give the login a password and put it in the URL: `postgres://user:PASSWORD@host:port/db`".into()),
        );
    }
    if settings.config.redis_url.is_none() {
        return check(
            "database",
            Level::Warn,
            format!(
                "shared PostgreSQL at {shown}, but each proxy keeps its own rate limits: N proxies let N times \
                 the rate through"
            ),
            Some("set `redis_url` in config.toml so the proxies share one limit".into()),
        );
    }
    check("database", Level::Ok, format!("shared PostgreSQL at {shown}"), None)
}

/// Where the per-agent rate limits are kept, and, when that is a Redis, that it answers (without
/// one, calls are refused).
async fn rate_limits(settings: &Settings) -> Check {
    use assegai_proxy::ratelimit::RateLimiter;
    let Some(url) = settings.config.redis_url.as_deref() else {
        return check(
            "rate limits",
            Level::Ok,
            "kept by each proxy on its own (set `redis_url` in config.toml to share them between proxies)",
            None,
        );
    };
    let shown = shown_url(url).unwrap_or_else(|| "(redis_url)".into());
    let reachable = match RateLimiter::shared(&settings.config.rate_limits, url) {
        Ok(limiter) => limiter.reachable().await,
        Err(e) => Err(e),
    };
    // An agent can open sockets: a Redis that takes anyone lets it reset its own limits. The
    // password stays in config.toml, which agents cannot read.
    let has_password = url::Url::parse(url).ok().is_some_and(|u| u.password().is_some_and(|p| !p.is_empty()));
    match reachable {
        Ok(()) if !has_password => check(
            "rate limits",
            Level::Warn,
            format!(
                "shared through Redis at {shown}, which takes clients without a password: any local process, an \
                 agent among them, could reset its own limits there"
            ),
            Some(
                "require a password in Redis (`requirepass`) and give it in config.toml: \
                 `redis_url = \"redis://:PASSWORD@host:port\"`"
                    .into(),
            ),
        ),
        Ok(()) => check("rate limits", Level::Ok, format!("shared through Redis at {shown}"), None),
        Err(_) => check(
            "rate limits",
            Level::Fail,
            format!("shared through Redis at {shown}, which does not answer: agents' AI and chain calls are refused"),
            Some("start Redis there, or remove `redis_url` from config.toml to keep limits per proxy".into()),
        ),
    }
}

/// The next step for a key store that would not open, when its message does not already say one.
fn key_store_fix(e: &anyhow::Error) -> Option<String> {
    match e.downcast_ref::<KeyError>()? {
        KeyError::Keyring { .. } => Some("unlock the OS key store (log in to its keyring) and run this again".into()),
        KeyError::Io { .. } => Some("check that Assegai's home directory is yours and readable".into()),
        _ => None,
    }
}

async fn local_chain(settings: &Settings) -> Check {
    let configured = &settings.config.local_rpc_url;
    // What the report says; the request goes to `configured`, which may carry a key.
    let url = shown_url(configured).unwrap_or_else(|| "`local_rpc_url`".to_owned());
    let anvil_fix = || {
        let how = if find_program("anvil").is_some() {
            "start it with `anvil` in another terminal"
        } else {
            "install Foundry's Anvil (https://getfoundry.sh) and run `anvil`"
        };
        Some(format!("{how}, or set `local_rpc_url` in config.toml"))
    };
    let (Ok(upstream), Ok(parsed)) = (Upstream::new(&settings.config), parse_rpc_url(configured)) else {
        return check("local RPC", Level::Fail, format!("{url} is not a usable URL"), anvil_fix());
    };
    let Ok(uri) = parsed.as_str().parse() else {
        return check("local RPC", Level::Fail, format!("{url} is not a usable URL"), anvil_fix());
    };
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#;
    match tokio::time::timeout(Duration::from_secs(3), upstream.post_json(uri, bytes::Bytes::from_static(body))).await {
        Ok(Ok((status, reply))) if status.is_success() => {
            let id = serde_json::from_slice::<serde_json::Value>(&reply).ok().and_then(|v| {
                v["result"].as_str().and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
            });
            match id {
                Some(id) => check("local RPC", Level::Ok, format!("{url} (chain id {id})"), None),
                None => {
                    check("local RPC", Level::Warn, format!("{url} answered, but not with a chain id"), anvil_fix())
                }
            }
        }
        Ok(Ok((status, _))) => check("local RPC", Level::Warn, format!("{url} answered HTTP {status}"), anvil_fix()),
        Ok(Err(e)) => check("local RPC", Level::Warn, format!("{url} does not answer ({e})"), anvil_fix()),
        Err(_) => check("local RPC", Level::Warn, format!("{url} did not answer within 3 s"), anvil_fix()),
    }
}
