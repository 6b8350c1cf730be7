//! `assegai wallet address|import|use-test-account`: the key that signs approved transactions.
//! A private key is read from a hidden prompt or standard input (never from the command line), or
//! decrypted from an encrypted JSON keystore; it goes into the key store and is never printed.

use std::io::Read;

use anyhow::{Context, bail};
use assegai_proxy::wallet::{self, ANVIL_TEST_ACCOUNT, Source};
use assegai_sdk::ChainId;
use serde_json::json;
use zeroize::Zeroizing;

use crate::{
    cli::{WalletAddressArgs, WalletArgs, WalletCommand, WalletImportArgs, YesFlag},
    commands::keys::notify,
    printer::Printer,
    settings::Settings,
};

/// Environment variable holding a keystore's password for scripts.
const KEYSTORE_PASSWORD: &str = "ASSEGAI_KEYSTORE_PASSWORD";

pub async fn run(args: &WalletArgs, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    match &args.command {
        None => {
            address(&WalletAddressArgs { chain: None, json: crate::cli::JsonFlag { json: false } }, settings, printer)
        }
        Some(WalletCommand::Address(a)) => address(a, settings, printer),
        Some(WalletCommand::Import(a)) => import(a, settings, printer).await,
        Some(WalletCommand::UseTestAccount(a)) => use_test_account(a, settings, printer).await,
    }
}

fn address(args: &WalletAddressArgs, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    // No key file yet means nothing was imported: the answer needs no passphrase.
    let store = settings.existing_keystore(printer)?;
    let imported = match &store {
        Some(store) => wallet::load(store.as_ref())?,
        None => None,
    };
    if let Some(chain) = args.chain {
        let (signer, source) = wallet::choose(imported.as_ref(), chain)?;
        if args.json.json {
            return printer.json(&json!({"chain": chain, "address": signer.address(), "source": source.as_str()}));
        }
        printer.data(signer.address());
        return Ok(());
    }
    let (addr, source) = match &imported {
        Some(s) => (s.address(), Source::Imported),
        None => (ANVIL_TEST_ACCOUNT, Source::TestAccount),
    };
    if args.json.json {
        return printer.json(&json!({
            "address": addr, "source": source.as_str(),
            "chains": if imported.is_some() { "all" } else { "local" },
            "store": store.as_ref().map(|s| s.describe()),
        }));
    }
    printer.data(addr);
    match source {
        Source::Imported => printer.info(format!(
            "Imported wallet; signs on every chain. Kept in the {}.",
            store.as_ref().map(|s| s.describe()).unwrap_or_default()
        )),
        Source::TestAccount => printer.info(
            "Anvil's test account; signs only on local chains (eip155:31337, eip155:1337). \
             Run `assegai wallet import` to sign elsewhere.",
        ),
    }
    Ok(())
}

async fn import(args: &WalletImportArgs, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    let signer = match &args.keystore {
        Some(path) => {
            wallet::check_keystore(path)?;
            let password = match std::env::var(KEYSTORE_PASSWORD) {
                Ok(p) => Zeroizing::new(p),
                Err(_) if printer.interactive() => Zeroizing::new(
                    dialoguer::Password::new()
                        .with_prompt(format!("Password for {}", path.display()))
                        .allow_empty_password(true)
                        .interact_on(&crate::printer::prompt_term())
                        .context("reading the password")?,
                ),
                Err(_) => bail!("no terminal to ask for the keystore's password; set {KEYSTORE_PASSWORD}"),
            };
            let path = path.clone();
            // scrypt is deliberately slow: keep it off the async threads.
            tokio::task::spawn_blocking(move || wallet::decrypt_keystore(&path, &password)).await??
        }
        None => {
            let key = if args.stdin {
                let mut text = Zeroizing::new(String::new());
                std::io::stdin().read_to_string(&mut text).context("reading the key from standard input")?;
                text
            } else if printer.interactive() {
                Zeroizing::new(
                    dialoguer::Password::new()
                        .with_prompt("Private key, hex (input hidden)")
                        .interact_on(&crate::printer::prompt_term())
                        .context("reading the key")?,
                )
            } else {
                bail!(
                    "no terminal to prompt for the key; pipe it in with `--stdin`, or use `--keystore FILE` (a key is never taken as an argument)"
                );
            };
            wallet::parse_private_key(&key)?
        }
    };
    let store = settings.keystore(printer)?;
    if let Some(old) = wallet::load(store.as_ref())?
        && old.address() != signer.address()
        && !confirm(
            args.yes,
            printer,
            &format!("Replace the imported wallet {} with {}?", old.address(), signer.address()),
        )?
    {
        bail!("kept the imported wallet {}; pass `--yes` to replace it", old.address());
    }
    wallet::store(store.as_ref(), &signer)?;
    notify(settings, printer).await;
    printer.success(format!("Imported wallet {} into the {}.", signer.address(), store.describe()));
    printer.info("It signs approved transactions on every chain; fund it before agents ask to spend.");
    Ok(())
}

async fn use_test_account(args: &YesFlag, settings: &Settings, printer: Printer) -> anyhow::Result<()> {
    // Without a key file there is no imported wallet to forget (and no passphrase to ask for).
    if let Some(store) = settings.existing_keystore(printer)?
        && let Some(old) = wallet::load(store.as_ref())?
    {
        let question = format!(
            "Forget the imported wallet {}? Its key is deleted from the {}; keep a backup to import it again.",
            old.address(),
            store.describe()
        );
        if !confirm(args.yes, printer, &question)? {
            bail!("kept the imported wallet {}; pass `--yes` to forget it", old.address());
        }
        wallet::forget(store.as_ref())?;
        notify(settings, printer).await;
    }
    printer.success(format!(
        "Signing with Anvil's test account {ANVIL_TEST_ACCOUNT}, on local chains only ({} and {}).",
        ChainId::ANVIL,
        ChainId::eip155(1337)
    ));
    Ok(())
}

/// Yes when `--yes` was given or the person says so; no without a terminal (fail closed).
fn confirm(yes: bool, printer: Printer, question: &str) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !printer.interactive() {
        return Ok(false);
    }
    dialoguer::Confirm::new()
        .with_prompt(question)
        .default(false)
        .interact_on(&crate::printer::prompt_term())
        .context("reading your answer")
}
