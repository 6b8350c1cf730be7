//! The user's secrets (AI provider keys; later the wallet): one interface over two backends, the
//! OS key store (`keyring`) and an encrypted file (`keys.enc`).

use serde::{Deserialize, Serialize};

/// Which backend `config.toml` asks for (`[keys] backend = "auto"`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// The OS key store when one answers, else the encrypted file.
    #[default]
    Auto,
    /// Only the OS key store.
    Keyring,
    /// Only the encrypted file.
    File,
}
