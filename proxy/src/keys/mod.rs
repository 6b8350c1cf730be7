//! The user's secrets (AI provider keys; later the wallet): one interface over two backends, the
//! OS key store (`keyring`) and an encrypted file (`keys.enc`).
//!
//! [`open`] picks the backend from `[keys] backend` in `config.toml`:
//!
//! * `auto` (the default): an existing `keys.enc` is used if there is one (the user's keys are
//!   there); otherwise the OS key store if one answers and accepts a write (a probe entry is
//!   stored and removed); otherwise a new `keys.enc`.
//! * `keyring`: only the OS key store; an error if none answers.
//! * `file`: only `keys.enc` ([`FileStore`], XChaCha20-Poly1305 with an Argon2id key).
//!
//! Secrets travel as [`Secret`], which is wiped from memory when dropped and never printed.
//! Error messages never contain a secret or a passphrase. All calls block (D-Bus, Argon2, file
//! I/O): async callers run them on a blocking thread.

mod file;
mod os;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub use file::{FileStore, KdfParams};
pub use os::KeyringStore;

use crate::config::Home;

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

/// The backend a [`KeyStore`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The OS key store (Secret Service on Linux, Keychain on macOS, Credential Manager on Windows).
    Keyring,
    /// The encrypted file `keys.enc`.
    File,
}

impl Backend {
    /// `"keyring"` or `"file"`, as written in `config.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Keyring => "keyring",
            Backend::File => "file",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Keyring => os::OS_STORE_NAME,
            Backend::File => "encrypted file (keys.enc)",
        })
    }
}

/// A secret value. It is wiped from memory when dropped and its `Debug` shows `Secret(•••)`;
/// [`expose`](Self::expose) is the only way to the value.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<Zeroizing<String>>) -> Self {
        Secret(value.into())
    }

    /// The value itself. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The value masked for display (see [`mask`]).
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(Zeroizing::new(value))
    }
}

impl From<Zeroizing<String>> for Secret {
    fn from(value: Zeroizing<String>) -> Self {
        Secret(value)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(•••)")
    }
}

/// Where secrets live. Implementations are cheap to share between threads; every call may block.
pub trait KeyStore: Send + Sync + std::fmt::Debug {
    /// Which backend this is.
    fn backend(&self) -> Backend;

    /// A description for people: the backend and where it keeps things (the file's path).
    fn describe(&self) -> String;

    /// The secret stored under `name`, if any.
    fn get(&self, name: &str) -> Result<Option<Secret>, KeyError>;

    /// Stores `secret` under `name`, replacing what was there.
    fn set(&self, name: &str, secret: &str) -> Result<(), KeyError>;

    /// Removes the secret stored under `name`; whether there was one.
    fn remove(&self, name: &str) -> Result<bool, KeyError>;
}

/// Opens the key store `choice` names for `home`.
///
/// `passphrase` is called (once) only when the encrypted file is used; the caller gets it from
/// `ASSEGAI_PASSPHRASE` or a hidden prompt. An existing `keys.enc` is opened and checked right
/// away, so a wrong passphrase or a damaged file is reported here.
pub fn open(
    home: &Home,
    choice: BackendChoice,
    passphrase: &mut dyn FnMut() -> Result<Zeroizing<String>, KeyError>,
) -> Result<Box<dyn KeyStore>, KeyError> {
    match choice {
        BackendChoice::Keyring => Ok(Box::new(KeyringStore::open(home)?)),
        BackendChoice::File => open_file(home, passphrase),
        BackendChoice::Auto => {
            let file = home.keys_file();
            if file_exists(&file) {
                tracing::debug!(file = %file.display(), "using the existing encrypted key file");
                return open_file(home, passphrase);
            }
            match KeyringStore::open_writable(home) {
                Ok(store) => Ok(Box::new(store)),
                Err(KeyError::KeyringUnavailable { reason }) => {
                    tracing::info!(%reason, "no OS key store answers; using an encrypted key file");
                    open_file(home, passphrase)
                }
                Err(e) => Err(e),
            }
        }
    }
}

fn open_file(
    home: &Home,
    passphrase: &mut dyn FnMut() -> Result<Zeroizing<String>, KeyError>,
) -> Result<Box<dyn KeyStore>, KeyError> {
    let passphrase = passphrase()?;
    Ok(Box::new(FileStore::open_with_params(home.keys_file(), passphrase, file::NEW_FILE_PARAMS)?))
}

/// Whether something is at `path` (an unreadable entry counts: the file store then reports why).
fn file_exists(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

/// `secret` masked for display: `•••` and its last four characters (`•••x7kQ`). Secrets shorter
/// than 12 characters show only `•••`, so that no more than a third of one is ever shown.
pub fn mask(secret: &str) -> String {
    const SHOWN: usize = 4;
    const MIN_LEN: usize = 12;
    let len = secret.chars().count();
    if len < MIN_LEN {
        return "•••".to_owned();
    }
    let tail: String = secret.chars().skip(len - SHOWN).collect();
    format!("•••{tail}")
}

/// Checks a secret's name: 1 to 64 characters from `a-z`, `0-9`, `-`, `_`, `.` and `:`.
pub fn check_name(name: &str) -> Result<(), KeyError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.:".contains(&b));
    if ok { Ok(()) } else { Err(KeyError::InvalidName) }
}

/// What can go wrong with the key store. Messages say what is wrong and what to do, and never
/// contain a secret or a passphrase.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A secret's name is not 1 to 64 characters from `a-z`, `0-9`, `-`, `_`, `.` and `:`.
    #[error("invalid key name: use 1 to 64 characters from a-z, 0-9, `-`, `_`, `.` and `:`")]
    InvalidName,
    /// An empty secret was to be stored.
    #[error("refusing to store an empty secret for `{0}`; to delete it, remove it instead")]
    EmptySecret(String),
    /// `[keys] backend = "keyring"` (or a probe under `auto`) found no OS key store.
    #[error(
        "no usable OS key store ({reason}); unlock or start one (on Linux: a Secret Service such as GNOME Keyring or KWallet), or keep keys in an encrypted file instead with `[keys] backend = \"file\"` in config.toml"
    )]
    KeyringUnavailable {
        /// What the OS key store said.
        reason: String,
    },
    /// The OS key store answered but failed.
    #[error("the OS key store could not {action} `{name}`: {message}")]
    Keyring {
        /// `read`, `store` or `remove`.
        action: &'static str,
        /// The secret's name.
        name: String,
        /// What went wrong (never the secret).
        message: String,
    },
    /// No passphrase is at hand: `ASSEGAI_PASSPHRASE` is not set and nobody is at a terminal.
    #[error(
        "the encrypted key file needs a passphrase: set ASSEGAI_PASSPHRASE, or run the command in a terminal to be asked for it"
    )]
    NoPassphrase,
    /// The caller could not get a passphrase for the encrypted file, for another reason.
    #[error("no passphrase for the encrypted key file: {0}")]
    Passphrase(String),
    /// The passphrase for the encrypted file is empty.
    #[error("the passphrase for the encrypted key file is empty; choose a non-empty one")]
    EmptyPassphrase,
    /// The passphrase does not open the file.
    #[error(
        "wrong passphrase for {} (or the file was modified); nothing was changed. Try again, or set ASSEGAI_PASSPHRASE to the passphrase the file was created with",
        path.display()
    )]
    WrongPassphrase {
        /// The encrypted file.
        path: PathBuf,
    },
    /// The file is damaged: truncated, not a key file, or its contents fail authentication.
    #[error(
        "{} is damaged: {reason}. It was left as it is; restore it from a backup, or move it away and set your keys again",
        path.display()
    )]
    Corrupt {
        /// The encrypted file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The file was written in a newer format.
    #[error("{} uses key file format {version}, which this version of Assegai cannot read; upgrade Assegai", path.display())]
    UnsupportedVersion {
        /// The encrypted file.
        path: PathBuf,
        /// The format version found.
        version: u8,
    },
    /// Key derivation or encryption failed.
    #[error("{}: {message}", path.display())]
    Crypto {
        /// The encrypted file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl KeyError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        KeyError::Io { path: path.to_owned(), source }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn mask_shows_only_a_tail_of_long_secrets() {
        assert_eq!(mask("sk-proj-abcdefghx7kQ"), "•••x7kQ");
        assert_eq!(mask("123456789012"), "•••9012");
        assert_eq!(mask("12345678901"), "•••");
        assert_eq!(mask("abc"), "•••");
        assert_eq!(mask(""), "•••");
        // Characters, not bytes.
        assert_eq!(mask("ééééééééxyzé"), "•••xyzé");
    }

    #[test]
    fn secret_debug_hides_the_value() {
        let s = Secret::from("sk-very-secret-value".to_owned());
        assert_eq!(format!("{s:?}"), "Secret(•••)");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(Secret(•••))");
        assert_eq!(s.expose(), "sk-very-secret-value");
        assert_eq!(s.masked(), "•••alue");
    }

    #[test]
    fn backend_names() {
        assert_eq!(Backend::Keyring.as_str(), "keyring");
        assert_eq!(Backend::File.as_str(), "file");
        assert!(Backend::Keyring.to_string().starts_with("OS key store"));
        assert!(Backend::File.to_string().contains("keys.enc"));
    }

    #[test]
    fn names_are_checked() {
        for ok in ["openai", "anthropic", "deepseek", "wallet", "wallet:eip155:1", "a", "x_y-z.1"] {
            check_name(ok).unwrap();
        }
        for bad in ["", "OpenAI", "has space", "a/b", "sk-ant-\u{e9}", &"x".repeat(65)] {
            assert!(matches!(check_name(bad), Err(KeyError::InvalidName)), "{bad:?}");
        }
        let m = KeyError::InvalidName.to_string();
        assert!(m.contains("a-z"), "{m}");
    }

    fn pass(p: &str) -> impl FnMut() -> Result<Zeroizing<String>, KeyError> + '_ {
        move || Ok(Zeroizing::new(p.to_owned()))
    }

    #[test]
    fn open_file_backend_asks_for_the_passphrase_once() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let calls = Cell::new(0);
        let mut ask = || {
            calls.set(calls.get() + 1);
            Ok(Zeroizing::new("pass".to_owned()))
        };
        let store = open(&home, BackendChoice::File, &mut ask).unwrap();
        assert_eq!(calls.get(), 1);
        assert_eq!(store.backend(), Backend::File);
        assert!(store.describe().contains(&home.keys_file().display().to_string()), "{}", store.describe());
        store.set("openai", "sk-first-secret-value").unwrap();
        let again = open(&home, BackendChoice::File, &mut pass("pass")).unwrap();
        assert_eq!(again.get("openai").unwrap().unwrap().expose(), "sk-first-secret-value");
    }

    #[test]
    fn open_reports_passphrase_problems() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let mut refuse = || Err(KeyError::Passphrase("ASSEGAI_PASSPHRASE is not set and there is no terminal".into()));
        let e = open(&home, BackendChoice::File, &mut refuse).unwrap_err();
        assert!(e.to_string().contains("ASSEGAI_PASSPHRASE"), "{e}");
        let e = open(&home, BackendChoice::File, &mut || Err(KeyError::NoPassphrase)).unwrap_err();
        assert!(e.to_string().contains("ASSEGAI_PASSPHRASE"), "{e}");
        let e = open(&home, BackendChoice::File, &mut pass("")).unwrap_err();
        assert!(matches!(e, KeyError::EmptyPassphrase), "{e}");
        assert!(!home.keys_file().exists());
    }

    #[test]
    fn auto_prefers_an_existing_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        open(&home, BackendChoice::File, &mut pass("pw")).unwrap().set("deepseek", "sk-deepseek-123456").unwrap();
        let calls = Cell::new(0);
        let mut ask = || {
            calls.set(calls.get() + 1);
            Ok(Zeroizing::new("pw".to_owned()))
        };
        let store = open(&home, BackendChoice::Auto, &mut ask).unwrap();
        assert_eq!((store.backend(), calls.get()), (Backend::File, 1));
        assert_eq!(store.get("deepseek").unwrap().unwrap().expose(), "sk-deepseek-123456");
    }

    /// Runs for real only where a Secret Service answers (`with-secret-service cargo test ...`);
    /// elsewhere it checks the fallback and the error for `backend = "keyring"`.
    #[test]
    #[allow(clippy::print_stderr)]
    fn auto_and_keyring_choice_follow_secret_service_availability() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let calls = Cell::new(0);
        let mut ask = || {
            calls.set(calls.get() + 1);
            Ok(Zeroizing::new("pw".to_owned()))
        };
        let auto = open(&home, BackendChoice::Auto, &mut ask).unwrap();
        let keyring = open(&home, BackendChoice::Keyring, &mut ask);
        if auto.backend() == Backend::Keyring {
            eprintln!("auto_and_keyring_choice: a real OS key store answers; checked the keyring branch");
            assert_eq!(calls.get(), 0, "the passphrase is not asked for when the OS key store is used");
            assert!(auto.describe().starts_with("OS key store"), "{}", auto.describe());
            assert_eq!(keyring.unwrap().backend(), Backend::Keyring);
        } else {
            assert_eq!(calls.get(), 1);
            match keyring {
                Err(e) => {
                    eprintln!("auto_and_keyring_choice: no OS key store answers; checked the file fallback");
                    assert!(matches!(e, KeyError::KeyringUnavailable { .. }), "{e}");
                    let m = e.to_string();
                    assert!(m.contains("backend = \"file\""), "{m}");
                }
                // A Secret Service that answers reads but refuses writes: `auto` avoids it,
                // an explicit `keyring` gets it (and its errors at `set`).
                Ok(store) => {
                    eprintln!("auto_and_keyring_choice: the OS key store refuses writes; checked the file fallback");
                    assert_eq!(store.backend(), Backend::Keyring);
                }
            }
        }
    }
}
