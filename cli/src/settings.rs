//! Arguments, environment and `config.toml` resolved into one settings value before any command
//! runs; commands never read the environment themselves.

use std::path::PathBuf;

use anyhow::{Context, bail};
use assegai_proxy::{
    admin::AdminClient,
    config::{Config, Home},
    keys::{self, KeyError, KeyStore},
    store::Store,
};
use zeroize::Zeroizing;

use crate::{
    cli::GlobalArgs,
    printer::{Printer, prompt_term, shell_quote},
};

/// What every command may need.
#[derive(Debug)]
pub struct Settings {
    /// The state directory.
    pub home: Home,
    /// `config.toml`, or the defaults.
    pub config: Config,
    /// `ASSEGAI_PASSPHRASE`, for the encrypted-file key store.
    passphrase: Option<Zeroizing<String>>,
}

impl Settings {
    /// Resolves `--home`, else `ASSEGAI_HOME`, and reads the config file.
    pub fn resolve(global: &GlobalArgs) -> anyhow::Result<Self> {
        let from_env = std::env::var_os(assegai_sdk::env::HOME).filter(|v| !v.is_empty()).map(PathBuf::from);
        let home = Home::resolve(global.home.clone().or(from_env))?;
        let config = Config::load(&home)?
            .with_database_url_from_env(std::env::var(assegai_sdk::env::DATABASE_URL).ok())
            .map_err(anyhow::Error::msg)?;
        let passphrase = std::env::var(assegai_sdk::env::PASSPHRASE).ok().filter(|p| !p.is_empty()).map(Zeroizing::new);
        Ok(Settings { home, config, passphrase })
    }

    /// Opens the database (the shared one of `database_url`, else the home's), creating the home
    /// directory if needed.
    pub fn store(&self) -> anyhow::Result<Store> {
        self.home.ensure()?;
        let what = if self.config.database_url.is_some() {
            "the shared database (database_url)"
        } else {
            "the Assegai database"
        };
        Store::open_for(&self.home, self.config.database_url.as_deref()).with_context(|| format!("opening {what}"))
    }

    /// Opens the database for a command that only reads what is there (`txs`, `logs`, `approve`,
    /// `usage`): a home that does not exist is a mistake to point out (a `--home` or
    /// `ASSEGAI_HOME` naming the wrong place), not an empty home to create and report as empty.
    pub fn existing_store(&self) -> anyhow::Result<Store> {
        if !self.home.root().exists() {
            bail!(
                "no Assegai home at {}: nothing has run with it, so there is nothing to show; check `--home` or \
                 `ASSEGAI_HOME` (`assegai run` and `assegai proxy` create the home they are given)",
                self.home.root().display()
            );
        }
        self.store()
    }

    /// `assegai ARGS` as a person types it in another terminal to reach this same home:
    /// `assegai --home DIR ARGS` unless the home is the default one.
    pub fn command(&self, args: &str) -> String {
        let default = Home::resolve(None).ok();
        if default.as_ref().is_some_and(|d| d.root() == self.home.root()) {
            return format!("assegai {args}");
        }
        // Absolute, so that it works from any directory.
        let root = std::path::absolute(self.home.root()).unwrap_or_else(|_| self.home.root().to_owned());
        format!("assegai --home {} {args}", shell_quote(&root.to_string_lossy()))
    }

    /// Opens the key store `config.toml` asks for. The file store's passphrase comes from
    /// `ASSEGAI_PASSPHRASE`, else a hidden prompt when a person is at the terminal.
    pub fn keystore(&self, printer: Printer) -> anyhow::Result<Box<dyn KeyStore>> {
        self.open_keystore(printer, true)?.context("no key store")
    }

    /// Like [`Settings::keystore`], but never asks for a passphrase to create a new key file:
    /// `None` when the only store there could be is a file nobody has created yet (the proxy and
    /// `assegai run` need keys only once someone stored some).
    pub fn existing_keystore(&self, printer: Printer) -> anyhow::Result<Option<Box<dyn KeyStore>>> {
        self.open_keystore(printer, false)
    }

    fn open_keystore(&self, printer: Printer, create: bool) -> anyhow::Result<Option<Box<dyn KeyStore>>> {
        self.home.ensure()?;
        let new_file = !self.home.keys_file().exists();
        let mut declined = false;
        let mut passphrase = || -> Result<Zeroizing<String>, KeyError> {
            if let Some(p) = &self.passphrase {
                return Ok(p.clone());
            }
            if new_file && !create {
                declined = true;
                return Err(KeyError::Passphrase("no key file yet".into()));
            }
            if !printer.interactive() {
                return Err(KeyError::Passphrase(
                    "set ASSEGAI_PASSPHRASE, or run this in a terminal to be asked".into(),
                ));
            }
            let mut prompt = dialoguer::Password::new().with_prompt("Passphrase for the encrypted key file (keys.enc)");
            if new_file {
                prompt = prompt.with_confirmation("Repeat the passphrase", "The passphrases differ; try again");
            }
            prompt
                .interact_on(&prompt_term())
                .map(Zeroizing::new)
                .map_err(|e| KeyError::Passphrase(format!("cannot read it from the terminal ({e})")))
        };
        match keys::open(&self.home, self.config.keys.backend, &mut passphrase) {
            Ok(store) => Ok(Some(store)),
            Err(_) if declined => Ok(None),
            Err(e) => Err(anyhow::Error::new(e).context("opening the key store")),
        }
    }

    /// Whether opening the key store may ask for a passphrase at the terminal: an encrypted key
    /// file exists and `ASSEGAI_PASSPHRASE` is not set.
    pub fn may_prompt_for_keys(&self) -> bool {
        self.passphrase.is_none() && self.home.keys_file().exists()
    }

    /// A client for the running proxy's admin socket.
    pub fn admin(&self) -> AdminClient {
        AdminClient::new(&self.home.admin_socket())
    }
}
