//! The OS key store backend, through `keyring` (the Secret Service over D-Bus on Linux).
//!
//! Entries are `(service, name)` with service `assegai:<12 hex digits>`, a hash of the home
//! directory's absolute path: two homes (for example parallel tests) never see each other's
//! secrets, even though they share one Secret Service.

use std::os::unix::ffi::OsStrExt;

use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use super::{Backend, KeyError, KeyStore, Secret, check_name};
use crate::config::Home;

#[cfg(target_os = "macos")]
pub(super) const OS_STORE_NAME: &str = "OS key store (macOS Keychain)";
#[cfg(target_os = "windows")]
pub(super) const OS_STORE_NAME: &str = "OS key store (Windows Credential Manager)";
#[cfg(not(any(target_os = "macos", target_os = "windows")))]
pub(super) const OS_STORE_NAME: &str = "OS key store (Secret Service)";

/// The entry read (and, for `auto`, written and removed) to find out whether a store answers.
/// Its name does not pass [`check_name`], so it never collides with a secret.
const PROBE: &str = ".probe";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Read,
    Write,
}

/// Secrets in the OS key store.
#[derive(Debug, Clone)]
pub struct KeyringStore {
    service: String,
}

impl KeyringStore {
    /// The store for `home`, if an OS key store answers a read (of a probe entry);
    /// [`KeyError::KeyringUnavailable`] if none does. Used for `[keys] backend = "keyring"`.
    pub fn open(home: &Home) -> Result<Self, KeyError> {
        Self::open_probed(home, Probe::Read)
    }

    /// The store for `home`, if an OS key store answers and also accepts a write (a probe entry
    /// is stored and removed). Used for `auto`: a Secret Service can answer reads yet refuse
    /// to store (a headless session whose keyring is locked or was never created), and `auto`
    /// then falls back to the encrypted file instead of failing at the first `keys set`.
    pub fn open_writable(home: &Home) -> Result<Self, KeyError> {
        Self::open_probed(home, Probe::Write)
    }

    fn open_probed(home: &Home, probe: Probe) -> Result<Self, KeyError> {
        let store = KeyringStore { service: Self::service_for(home) };
        store.probe(probe).map_err(|reason| KeyError::KeyringUnavailable { reason })?;
        Ok(store)
    }

    /// The keyring service name for `home`: `assegai:` and the first 12 hex digits of the
    /// SHA-256 of its absolute path.
    pub fn service_for(home: &Home) -> String {
        let root = std::path::absolute(home.root()).unwrap_or_else(|_| home.root().to_owned());
        let digest = Sha256::digest(root.as_os_str().as_bytes());
        format!("assegai:{}", &hex::encode(digest)[..12])
    }

    /// The keyring service name entries are stored under.
    pub fn service(&self) -> &str {
        &self.service
    }

    fn probe(&self, probe: Probe) -> Result<(), String> {
        let entry = match keyring::Entry::new(&self.service, PROBE) {
            Ok(entry) => entry,
            Err(keyring::Error::NoDefaultStore) => {
                return Err(match keyring::Entry::store_status() {
                    Err(e) => describe(e),
                    Ok(()) => "no default store".to_owned(),
                });
            }
            Err(e) => return Err(describe(&e)),
        };
        match entry.get_password() {
            Ok(mut value) => value.zeroize(),
            Err(keyring::Error::NoEntry | keyring::Error::Ambiguous(_)) => {}
            Err(e) => return Err(describe(&e)),
        }
        if probe == Probe::Write {
            entry.set_password("probe").map_err(|e| format!("it answers but refuses to store: {}", describe(&e)))?;
            match entry.delete_credential() {
                Ok(()) | Err(keyring::Error::NoEntry) => {}
                Err(e) => return Err(format!("it answers but refuses to remove: {}", describe(&e))),
            }
        }
        Ok(())
    }

    fn entry(&self, action: &'static str, name: &str) -> Result<keyring::Entry, KeyError> {
        check_name(name)?;
        keyring::Entry::new(&self.service, name).map_err(|e| error(action, name, e))
    }
}

impl KeyStore for KeyringStore {
    fn backend(&self) -> Backend {
        Backend::Keyring
    }

    fn describe(&self) -> String {
        format!("{OS_STORE_NAME}, service \"{}\"", self.service)
    }

    fn get(&self, name: &str) -> Result<Option<Secret>, KeyError> {
        match self.entry("read", name)?.get_password() {
            Ok(value) => Ok(Some(Secret::from(value))),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(error("read", name, e)),
        }
    }

    fn set(&self, name: &str, secret: &str) -> Result<(), KeyError> {
        let entry = self.entry("store", name)?;
        if secret.is_empty() {
            return Err(KeyError::EmptySecret(name.to_owned()));
        }
        entry.set_password(secret).map_err(|e| error("store", name, e))
    }

    fn remove(&self, name: &str) -> Result<bool, KeyError> {
        match self.entry("remove", name)?.delete_credential() {
            Ok(()) => Ok(true),
            Err(keyring::Error::NoEntry) => Ok(false),
            // Several entries match (made by another program?): remove them all.
            Err(keyring::Error::Ambiguous(entries)) => {
                for entry in entries {
                    match entry.delete_credential() {
                        Ok(()) | Err(keyring::Error::NoEntry) => {}
                        Err(e) => return Err(error("remove", name, e)),
                    }
                }
                Ok(true)
            }
            Err(e) => Err(error("remove", name, e)),
        }
    }
}

/// A keyring error as text, without the secret bytes some variants carry.
fn describe(e: &keyring::Error) -> String {
    match e {
        keyring::Error::BadEncoding(_) => "the stored value is not UTF-8 text".to_owned(),
        keyring::Error::BadDataFormat(..) => "the stored value is malformed".to_owned(),
        keyring::Error::Ambiguous(entries) => format!("{} entries match", entries.len()),
        keyring::Error::NoStorageAccess(err) => format!("access refused (is the key store locked?): {err}"),
        keyring::Error::NoDefaultStore => "no OS key store answers".to_owned(),
        other => other.to_string(),
    }
}

fn error(action: &'static str, name: &str, e: keyring::Error) -> KeyError {
    let mut message = describe(&e);
    match e {
        keyring::Error::BadEncoding(mut bytes) | keyring::Error::BadDataFormat(mut bytes, _) => {
            bytes.zeroize();
            message.push_str(&format!("; store it again with `assegai keys set {name}`"));
        }
        keyring::Error::Ambiguous(_) => {
            message.push_str(&format!("; run `assegai keys remove {name}`, then set it again"));
        }
        keyring::Error::NoStorageAccess(_) => {
            message.push_str("; unlock the key store, or use `[keys] backend = \"file\"` in config.toml");
        }
        _ => {}
    }
    KeyError::Keyring { action, name: name.to_owned(), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_differ_per_home_and_are_stable() {
        let a = KeyringStore::service_for(&Home::at("/home/u/.local/share/assegai"));
        let b = KeyringStore::service_for(&Home::at("/tmp/other-home"));
        assert!(a.starts_with("assegai:") && a.len() == "assegai:".len() + 12, "{a}");
        assert_ne!(a, b);
        assert_eq!(a, KeyringStore::service_for(&Home::at("/home/u/.local/share/assegai")));
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(KeyringStore::service_for(&Home::at("rel")), KeyringStore::service_for(&Home::at(cwd.join("rel"))));
    }

    #[test]
    fn errors_never_carry_stored_bytes() {
        let e = error("read", "openai", keyring::Error::BadEncoding(b"sk-\xffsecret".to_vec()));
        let (shown, debug) = (e.to_string(), format!("{e:?}"));
        assert!(!shown.contains("secret") && !debug.contains("115, 101, 99"), "{shown} / {debug}");
        assert!(shown.contains("assegai keys set openai"), "{shown}");
    }

    /// The store for a fresh home. These tests are `#[ignore]`d, so a plain `cargo test` lists them
    /// as ignored instead of passing them unchecked; `scripts/test` runs them with `--ignored`
    /// inside a Secret Service, where one that does not answer is a failure.
    fn secret_service(test: &str, home: &Home) -> KeyringStore {
        match KeyringStore::open_writable(home) {
            Ok(store) => store,
            Err(KeyError::KeyringUnavailable { reason }) => panic!(
                "{test} needs a Secret Service, and none answers ({reason}); run it inside one: \
                 `../shared/tools/with-secret-service cargo test -p assegai-proxy --lib keys::os -- --ignored` \
                 from the checkout, as scripts/test does"
            ),
            Err(e) => panic!("{test}: {e}"),
        }
    }

    #[test]
    #[ignore = "needs a Secret Service"]
    fn keyring_real_secret_service_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let store = secret_service("keyring_real_secret_service_round_trip", &home);
        assert_eq!(store.backend(), Backend::Keyring);
        assert!(store.describe().contains(store.service()), "{}", store.describe());
        assert!(store.get("openai").unwrap().is_none());
        assert!(!store.remove("openai").unwrap());
        store.set("openai", "sk-proj-real-secret-service-x7kQ").unwrap();
        assert_eq!(store.get("openai").unwrap().unwrap().expose(), "sk-proj-real-secret-service-x7kQ");
        store.set("openai", "sk-proj-replaced-0123").unwrap();
        assert_eq!(store.get("openai").unwrap().unwrap().expose(), "sk-proj-replaced-0123");
        store.set("anthropic", "sk-ant-real-0123456789").unwrap();
        // A second instance for the same home sees the same entries.
        let again = KeyringStore::open(&home).unwrap();
        assert_eq!(again.get("anthropic").unwrap().unwrap().expose(), "sk-ant-real-0123456789");
        assert!(store.remove("openai").unwrap());
        assert!(!store.remove("openai").unwrap());
        assert!(store.get("openai").unwrap().is_none());
        assert!(matches!(store.set("openai", ""), Err(KeyError::EmptySecret(_))));
        assert!(matches!(store.get("Not Valid"), Err(KeyError::InvalidName)));
        assert!(store.remove("anthropic").unwrap());
    }

    #[test]
    #[ignore = "needs a Secret Service"]
    fn keyring_real_secret_service_homes_are_separate() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = secret_service("keyring_real_secret_service_homes_are_separate", &Home::at(a.path()));
        let b = KeyringStore::open(&Home::at(b.path())).unwrap();
        assert_ne!(a.service(), b.service());
        a.set("deepseek", "sk-deepseek-home-a-0123").unwrap();
        assert!(b.get("deepseek").unwrap().is_none());
        assert!(!b.remove("deepseek").unwrap());
        assert_eq!(a.get("deepseek").unwrap().unwrap().expose(), "sk-deepseek-home-a-0123");
        assert!(a.remove("deepseek").unwrap());
    }
}
