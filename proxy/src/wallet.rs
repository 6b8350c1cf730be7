//! The user's wallet: which key signs approved transactions on each chain.
//!
//! An imported key (a private key, or one decrypted from an encrypted JSON keystore at import)
//! lives in the key store under [`KEY_NAME`], never in the database, and signs on every chain.
//! Without one, Anvil's well-known test account signs, and only on local chains: its key is
//! public, so it must never be offered for a real network (nor imported as the user's wallet).
//!
//! The running proxy reads the key store once and caches the signer until the CLI says the keys
//! changed (admin `POST /keys/changed`).

use std::{
    path::Path,
    sync::{Arc, RwLock},
};

use alloy::signers::local::{LocalSignerError, PrivateKeySigner};
use alloy_primitives::{Address, B256, address, b256};
use assegai_sdk::ChainId;
use zeroize::Zeroizing;

use crate::{
    Error, Result,
    keys::{KeyError, KeyStore},
};

/// The key store entry holding the imported private key (hex).
pub const KEY_NAME: &str = "wallet";

/// Address of Anvil's first test account (its private key is published in Anvil's docs).
pub const ANVIL_TEST_ACCOUNT: Address = address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266");

/// Anvil's first test account's key: public knowledge, printed by every Anvil at start-up.
const ANVIL_TEST_KEY: B256 = b256!("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80");

/// Which wallet signs on a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The key the user imported.
    Imported,
    /// Anvil's test account (local chains only).
    TestAccount,
}

impl Source {
    /// `"imported"` or `"test-account"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Imported => "imported",
            Source::TestAccount => "test-account",
        }
    }
}

fn test_account() -> PrivateKeySigner {
    PrivateKeySigner::from_bytes(&ANVIL_TEST_KEY).expect("Anvil's test key is a valid secp256k1 key")
}

/// Parses a hex private key (`0x` optional, surrounding whitespace ignored). Messages never echo
/// the input.
pub fn parse_private_key(text: &str) -> Result<PrivateKeySigner> {
    let text = text.trim();
    let hex = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")).unwrap_or(text);
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidWallet(format!(
            "a private key is 64 hex digits (optionally after 0x); got {} characters{}",
            hex.len(),
            if hex.bytes().all(|b| b.is_ascii_hexdigit()) { "" } else { " including non-hex ones" }
        )));
    }
    let bytes = Zeroizing::new(hex::decode(hex).map_err(|_| Error::InvalidWallet("not hex".into()))?);
    let signer = PrivateKeySigner::from_slice(&bytes)
        .map_err(|_| Error::InvalidWallet("that is not a valid secp256k1 private key (zero or too large)".into()))?;
    refuse_test_account(signer)
}

/// Decrypts an encrypted JSON keystore (the Web3 Secret Storage format that Foundry and geth
/// write).
pub fn decrypt_keystore(path: &Path, password: &str) -> Result<PrivateKeySigner> {
    check_keystore(path)?;
    let shown = path.display();
    let signer = PrivateKeySigner::decrypt_keystore(path, password).map_err(|e| match e {
        LocalSignerError::EthKeystoreError(eth_keystore::KeystoreError::MacMismatch) => {
            Error::InvalidWallet(format!("wrong password for {shown}; nothing was imported"))
        }
        other => Error::InvalidWallet(format!("cannot decrypt {shown}: {other}")),
    })?;
    refuse_test_account(signer)
}

/// Whether `path` looks like an encrypted JSON keystore, so nobody is asked for a password to a
/// file that cannot be one.
pub fn check_keystore(path: &Path) -> Result<()> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| Error::InvalidWallet(format!("cannot read {shown}: {e}")))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::InvalidWallet(format!("{shown} is not JSON ({e}); expected an encrypted JSON keystore")))?;
    if json.get("crypto").or_else(|| json.get("Crypto")).is_none() {
        return Err(Error::InvalidWallet(format!(
            "{shown} is JSON but not an encrypted keystore (no `crypto` section); export one with `cast wallet import` or geth"
        )));
    }
    Ok(())
}

fn refuse_test_account(signer: PrivateKeySigner) -> Result<PrivateKeySigner> {
    if signer.address() == ANVIL_TEST_ACCOUNT {
        return Err(Error::InvalidWallet(
            "that is Anvil's public test key, which anyone can use; it is never imported as your wallet. Run `assegai wallet use-test-account` to sign with it on local chains".into(),
        ));
    }
    Ok(signer)
}

/// Stores `signer`'s key as the wallet (blocking).
pub fn store(keys: &dyn KeyStore, signer: &PrivateKeySigner) -> std::result::Result<(), KeyError> {
    let text = Zeroizing::new(format!("0x{}", hex::encode(signer.to_bytes())));
    keys.set(KEY_NAME, &text)
}

/// The imported wallet, if any (blocking).
pub fn load(keys: &dyn KeyStore) -> Result<Option<PrivateKeySigner>> {
    let Some(secret) = keys.get(KEY_NAME).map_err(|e| Error::KeyStoreUnavailable(e.to_string()))? else {
        return Ok(None);
    };
    let bytes = secret.expose().strip_prefix("0x").and_then(|h| hex::decode(h).ok()).map(Zeroizing::new);
    bytes.and_then(|b| PrivateKeySigner::from_slice(&b).ok()).map(Some).ok_or_else(|| {
        Error::KeyStoreUnavailable(
            "the stored wallet key is damaged; import it again with `assegai wallet import`".into(),
        )
    })
}

/// Forgets the imported wallet (blocking). False if none was imported.
pub fn forget(keys: &dyn KeyStore) -> Result<bool> {
    keys.remove(KEY_NAME).map_err(|e| Error::KeyStoreUnavailable(e.to_string()))
}

/// The signer for `chain` given what is imported: the import everywhere, else the test account
/// on local chains only.
pub fn choose(imported: Option<&PrivateKeySigner>, chain: ChainId) -> Result<(PrivateKeySigner, Source)> {
    match imported {
        Some(s) => Ok((s.clone(), Source::Imported)),
        None if chain.is_local() => Ok((test_account(), Source::TestAccount)),
        None => Err(Error::WalletNotConfigured(chain)),
    }
}

/// The running proxy's view of the wallet: loaded from the key store on first use, then cached.
#[derive(Debug)]
pub struct Wallet {
    keys: std::result::Result<Arc<dyn KeyStore>, String>,
    cache: RwLock<Option<Option<Arc<PrivateKeySigner>>>>,
}

impl Wallet {
    /// A wallet read from `keys`, or, when the key store could not be opened, the reason.
    pub fn new(keys: std::result::Result<Arc<dyn KeyStore>, String>) -> Self {
        Wallet { keys, cache: RwLock::new(None) }
    }

    /// Forgets the cached signer (the CLI imported or removed one).
    pub fn invalidate(&self) {
        *self.cache.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    async fn imported(&self, chain: ChainId) -> Result<Option<Arc<PrivateKeySigner>>> {
        if let Some(cached) = self.cache.read().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(cached);
        }
        let keys = match &self.keys {
            Ok(keys) => keys.clone(),
            // Without a key store nothing can have been imported into it; the test account still
            // serves local chains, and real chains get the reason.
            Err(_) if chain.is_local() => return Ok(None),
            Err(why) => return Err(Error::KeyStoreUnavailable(why.clone())),
        };
        let loaded = tokio::task::spawn_blocking(move || load(keys.as_ref()))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??
            .map(Arc::new);
        *self.cache.write().unwrap_or_else(|p| p.into_inner()) = Some(loaded.clone());
        Ok(loaded)
    }

    /// The signer for `chain`.
    pub async fn signer_for(&self, chain: ChainId) -> Result<PrivateKeySigner> {
        let imported = self.imported(chain).await?;
        Ok(choose(imported.as_deref(), chain)?.0)
    }

    /// The address that signs for `chain`.
    pub async fn address_for(&self, chain: ChainId) -> Result<Address> {
        Ok(self.signer_for(chain).await?.address())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

    #[test]
    fn test_account_only_on_local_chains() {
        let (s, src) = choose(None, ChainId::ANVIL).unwrap();
        assert_eq!((s.address(), src), (ANVIL_TEST_ACCOUNT, Source::TestAccount));
        assert_eq!(choose(None, ChainId::eip155(1337)).unwrap().0.address(), ANVIL_TEST_ACCOUNT);
        assert!(matches!(choose(None, ChainId::eip155(1)), Err(Error::WalletNotConfigured(_))));
    }

    #[test]
    fn an_imported_key_signs_everywhere() {
        let key = parse_private_key(KEY).unwrap();
        for chain in [ChainId::ANVIL, ChainId::eip155(1)] {
            let (s, src) = choose(Some(&key), chain).unwrap();
            assert_eq!((s.address(), src), (key.address(), Source::Imported));
        }
    }

    #[test]
    fn private_keys_are_checked_without_echoing_them() {
        assert!(parse_private_key(&format!("  0x{KEY}\n")).is_ok());
        assert!(parse_private_key(&KEY.to_uppercase()).is_ok());
        let bad = [
            String::new(),
            "0x".into(),
            KEY[..63].to_owned(),
            format!("{KEY}00"),
            format!("zz{}", &KEY[2..]),
            "0".repeat(64),
            "f".repeat(64),
        ];
        for text in bad {
            let e = parse_private_key(&text).unwrap_err().to_string();
            assert!(text.len() < 8 || !e.contains(&text[2..]), "{e}");
        }
        let e = parse_private_key(&ANVIL_TEST_KEY.to_string()).unwrap_err().to_string();
        assert!(e.contains("use-test-account"), "{e}");
    }

    #[test]
    fn keystores_decrypt_with_the_right_password_only() {
        let dir = tempfile::tempdir().unwrap();
        let key = parse_private_key(KEY).unwrap();
        let mut rng = rand_08_compat();
        PrivateKeySigner::encrypt_keystore(dir.path(), &mut rng, key.to_bytes(), "hunter2", Some("k.json")).unwrap();
        let path = dir.path().join("k.json");
        assert_eq!(decrypt_keystore(&path, "hunter2").unwrap().address(), key.address());
        let e = decrypt_keystore(&path, "wrong").unwrap_err().to_string();
        assert!(e.contains("wrong password"), "{e}");
        std::fs::write(dir.path().join("x.json"), "{\"a\":1}").unwrap();
        let e = decrypt_keystore(&dir.path().join("x.json"), "hunter2").unwrap_err().to_string();
        assert!(e.contains("not an encrypted keystore"), "{e}");
        let e = decrypt_keystore(&dir.path().join("missing.json"), "hunter2").unwrap_err().to_string();
        assert!(e.contains("cannot read"), "{e}");
    }

    fn rand_08_compat() -> impl rand_08::RngCore + rand_08::CryptoRng {
        rand_08::rngs::OsRng
    }
}
