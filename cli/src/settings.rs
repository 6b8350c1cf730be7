//! Arguments, environment and `config.toml` resolved into one settings value before any command
//! runs; commands never read the environment themselves.

use anyhow::Context;
use assegai_proxy::{
    admin::AdminClient,
    config::{Config, Home},
    store::Store,
};

use crate::cli::GlobalArgs;

/// What every command may need.
#[derive(Debug)]
pub struct Settings {
    /// The state directory.
    pub home: Home,
    /// `config.toml`, or the defaults.
    pub config: Config,
}

impl Settings {
    /// Resolves `--home` / `ASSEGAI_HOME` and reads the config file.
    pub fn resolve(global: &GlobalArgs) -> anyhow::Result<Self> {
        let home = Home::resolve(global.home.clone())?;
        let config = Config::load(&home)?;
        Ok(Settings { home, config })
    }

    /// Opens the database, creating the home directory if needed.
    pub fn store(&self) -> anyhow::Result<Store> {
        self.home.ensure()?;
        Store::open(&self.home.database()).context("opening the Assegai database")
    }

    /// A client for the running proxy's admin socket.
    pub fn admin(&self) -> AdminClient {
        AdminClient::new(&self.home.admin_socket())
    }
}
