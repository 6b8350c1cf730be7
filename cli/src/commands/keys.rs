//! `assegai keys set/list/remove/test`: the user's AI provider keys. A key is read from a hidden
//! prompt or standard input, never from the command line; it is never printed, only its masked
//! tail; a running proxy is told at once so no restart is needed.

use std::io::Read;

use anyhow::{Context, bail};
use assegai_proxy::{Error, ai::endpoints, config::Providers, keys, manifest::Provider, upstream::Upstream};
use comfy_table::{Table, presets::NOTHING};
use serde_json::json;
use zeroize::Zeroizing;

use crate::{
    cli::{KeysArgs, KeysCommand, KeysProviderArg, KeysSetArgs},
    printer::{Printer, prompt_term},
    settings::Settings,
};

pub async fn run(args: &KeysArgs, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    match &args.command {
        None => list(false, settings, printer),
        Some(KeysCommand::List(json)) => list(json.json, settings, printer),
        Some(KeysCommand::Set(set_args)) => set(set_args, settings, printer).await,
        Some(KeysCommand::Remove(p)) => remove(p, settings, printer).await,
        Some(KeysCommand::Test(p)) => test(p, settings, printer).await,
    }
}

fn list(json: bool, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    // A fresh home has no key file to unlock: nothing is stored, and there is nothing to ask.
    let Some(store) = settings.existing_keystore(printer)? else {
        if json {
            let out: Vec<_> = Provider::ALL
                .iter()
                .map(|p| json!({"provider": p.as_str(), "configured": false, "masked": null, "backend": null, "store": null}))
                .collect();
            return printer.json(&out);
        }
        printer.info(no_keys_yet(settings));
        return Ok(());
    };
    let mut rows = Vec::new();
    for p in Provider::ALL {
        let secret = store.get(p.as_str())?;
        rows.push((p, secret.map(|s| keys::mask(s.expose()))));
    }
    if json {
        let out: Vec<_> = rows
            .iter()
            .map(|(p, masked)| {
                json!({
                    "provider": p.as_str(), "configured": masked.is_some(), "masked": masked,
                    "backend": store.backend().as_str(), "store": store.describe(),
                })
            })
            .collect();
        return printer.json(&out);
    }
    if rows.iter().all(|(_, masked)| masked.is_none()) {
        printer.info(no_keys_yet(settings));
        printer.info(format!("Key store: {}", store.describe()));
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(NOTHING).set_header(["PROVIDER", "KEY", ""]);
    for (p, masked) in &rows {
        let (key, hint) = match masked {
            Some(m) => (m.clone(), String::new()),
            None => ("not configured".to_owned(), settings.command(&format!("keys set {p}"))),
        };
        table.add_row([p.display_name().to_owned(), key, hint]);
    }
    printer.data(table);
    printer.info(format!("Key store: {}", store.describe()));
    Ok(())
}

/// What `keys list` says when no key is stored.
fn no_keys_yet(settings: &Settings) -> String {
    format!("No keys yet. Add one with `{}`.", settings.command("keys set openai"))
}

async fn set(args: &KeysSetArgs, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    let provider = args.provider;
    let key = if args.stdin {
        let mut text = Zeroizing::new(String::new());
        std::io::stdin().read_to_string(&mut text).context("reading the key from standard input")?;
        Zeroizing::new(text.trim().to_owned())
    } else if printer.interactive() {
        Zeroizing::new(
            dialoguer::Password::new()
                .with_prompt(format!("{} API key (input hidden)", provider.display_name()))
                .interact_on(&prompt_term())
                .context("reading the key")?,
        )
    } else {
        bail!("no terminal to prompt for the key; pipe it in with `--stdin` (a key is never taken as an argument)");
    };
    if key.is_empty() {
        bail!("the key is empty; nothing was stored");
    }
    if key.chars().any(|c| c.is_control() || c == ' ') {
        bail!("the key contains spaces or control characters; check what was pasted (nothing was stored)");
    }
    let expected = match provider {
        Provider::Openai | Provider::Deepseek => "sk-",
        Provider::Anthropic => "sk-ant-",
    };
    if !key.starts_with(expected) {
        printer.warn(format!(
            "{} keys usually start with `{expected}`; storing it anyway ({})",
            provider.display_name(),
            keys::mask(&key)
        ));
    }
    let store = settings.keystore(printer)?;
    store.set(provider.as_str(), &key)?;
    notify(settings, printer).await;
    printer.success(format!(
        "Stored the {} key {} in the {}.",
        provider.display_name(),
        keys::mask(&key),
        store.describe()
    ));
    Ok(())
}

async fn remove(args: &KeysProviderArg, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    let store = settings.keystore(printer)?;
    if store.remove(args.provider.as_str())? {
        notify(settings, printer).await;
        printer.success(format!("Removed the {} key.", args.provider.display_name()));
    } else {
        printer.info(format!("No {} key was stored; nothing to remove.", args.provider.display_name()));
    }
    Ok(())
}

async fn test(args: &KeysProviderArg, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    let provider = args.provider;
    let store = settings.keystore(printer)?;
    let Some(key) = store.get(provider.as_str())? else {
        bail!("no {} key is stored; run `assegai keys set {}` first", provider.display_name(), provider.as_str());
    };
    let config = settings.config.providers.get(provider);
    let url = format!("{}{}", config.base_url.trim_end_matches('/'), endpoints::key_test_path(provider));
    let mut req = hyper::Request::get(&url)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .context("building the request")?;
    // The same headers and auth the gateway sends.
    *req.headers_mut() = endpoints::request_headers(provider, config, &hyper::HeaderMap::new());
    endpoints::set_auth(provider, key.expose(), req.headers_mut())?;
    let upstream = Upstream::new(&settings.config)?;
    let resp = match upstream.send(req).await {
        Ok(resp) => resp,
        Err(e @ (Error::Unreachable | Error::UpstreamTimeout)) => {
            let what = match e {
                Error::UpstreamTimeout => {
                    format!("{url} did not answer within {} s", settings.config.upstream_timeout_secs)
                }
                _ => format!("could not reach {url}"),
            };
            let name = provider.display_name();
            let (why, check) = if config.base_url == Providers::default().get(provider).base_url {
                (
                    format!(
                        "this machine may be offline, or a firewall or proxy may block the URL ({name}'s own; \
                         `base_url` under `[providers.{provider}]` in config.toml changes it)"
                    ),
                    "the connection",
                )
            } else {
                (
                    format!(
                        "this machine may be offline, or the URL may be wrong (it comes from `base_url` under \
                         `[providers.{provider}]` in config.toml)"
                    ),
                    "the connection and the URL",
                )
            };
            bail!(
                "{what}, so the {name} key was not checked: {why}; check {check}, then run `{}` again",
                settings.command(&format!("keys test {provider}"))
            );
        }
        Err(e) => return Err(e).with_context(|| format!("calling {url}")),
    };
    let status = resp.status();
    if status.is_success() {
        printer.success(format!(
            "{} accepted the key {} (HTTP {status}).",
            provider.display_name(),
            keys::mask(key.expose())
        ));
        Ok(())
    } else if status.as_u16() == 401 || status.as_u16() == 403 {
        bail!(
            "{} refused the key {} (HTTP {status}); store the right one with `assegai keys set {}`",
            provider.display_name(),
            keys::mask(key.expose()),
            provider.as_str()
        )
    } else {
        bail!("{} answered HTTP {status} to {url}; the key may still be fine, try again later", provider.display_name())
    }
}

/// Tells a running proxy that the key store changed (provider keys or the wallet).
pub async fn notify(settings: &Settings, printer: Printer) {
    match settings.admin().keys_changed().await {
        Ok(None | Some(true)) => {}
        Ok(Some(false)) => printer.warn(
            "the running proxy started before any key store could be opened, so it cannot read this; \
             restart it (`assegai proxy`) to use the change",
        ),
        Err(e) => printer.warn(format!("the running proxy could not be told ({e}); restart it to use the change")),
    }
}
