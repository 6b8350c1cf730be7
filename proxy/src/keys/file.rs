//! The encrypted-file backend: `keys.enc`. See [`FileStore`] for the format.

use std::{
    collections::BTreeMap,
    fs::{self, File, OpenOptions},
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard},
};

use chacha20poly1305::{
    Key, XChaCha20Poly1305, XNonce,
    aead::{AeadInPlace, KeyInit},
};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use super::{Backend, KeyError, KeyStore, Secret, check_name};

const MAGIC: &[u8; 8] = b"ASGKEYS\0";
const VERSION: u8 = 1;
const SALT_LEN: usize = 16;
const CHECK_LEN: usize = 16;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;
const PARAMS_AT: usize = MAGIC.len() + 1;
const SALT_AT: usize = PARAMS_AT + 12;
const CHECK_AT: usize = SALT_AT + SALT_LEN;
const NONCE_AT: usize = CHECK_AT + CHECK_LEN;
const LEN_AT: usize = NONCE_AT + NONCE_LEN;
/// Everything before the ciphertext.
pub(super) const HEADER_LEN: usize = LEN_AT + 4;
const CHECK_CONTEXT: &[u8] = b"assegai keys.enc key check v1";

/// Largest parameters accepted from a file header, so that a damaged header cannot make the
/// proxy allocate gigabytes or spin for hours.
const MAX_M_KIB: u32 = 1 << 20;
const MAX_T: u32 = 64;
const MAX_P: u32 = 16;

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes over the memory.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl KdfParams {
    /// The default: 64 MiB, 3 passes, 1 lane (a fraction of a second per unlock).
    pub const STRONG: KdfParams = KdfParams { m_kib: 64 * 1024, t: 3, p: 1 };

    /// Tiny parameters that make unit tests fast. Never for real files.
    #[cfg(test)]
    pub(crate) const INSECURE_TEST: KdfParams = KdfParams { m_kib: 64, t: 1, p: 1 };

    fn argon2(self) -> Result<argon2::Argon2<'static>, String> {
        let KdfParams { m_kib, t, p } = self;
        if !(1..=MAX_P).contains(&p) || !(1..=MAX_T).contains(&t) || m_kib < 8 * p || m_kib > MAX_M_KIB {
            return Err(format!(
                "unusable Argon2id parameters m={m_kib} KiB, t={t}, p={p} (allowed: 1 <= p <= {MAX_P}, 1 <= t <= {MAX_T}, 8*p <= m <= {MAX_M_KIB} KiB)"
            ));
        }
        let params = argon2::Params::new(m_kib, t, p, Some(KEY_LEN)).map_err(|e| e.to_string())?;
        Ok(argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params))
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams::STRONG
    }
}

/// The parameters [`super::open`] creates new files with.
#[cfg(not(test))]
pub(super) const NEW_FILE_PARAMS: KdfParams = KdfParams::STRONG;
#[cfg(test)]
pub(super) const NEW_FILE_PARAMS: KdfParams = KdfParams::INSECURE_TEST;

/// A derived key, with what it was derived from.
struct DerivedKey {
    params: KdfParams,
    salt: [u8; SALT_LEN],
    check: [u8; CHECK_LEN],
    /// Wipes its key when dropped.
    cipher: XChaCha20Poly1305,
}

impl DerivedKey {
    fn derive(path: &Path, passphrase: &str, params: KdfParams, salt: [u8; SALT_LEN]) -> Result<Self, KeyError> {
        let crypto = |message: String| KeyError::Crypto { path: path.to_owned(), message };
        let argon2 = params.argon2().map_err(crypto)?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        argon2
            .hash_password_into(passphrase.as_bytes(), &salt, &mut key[..])
            .map_err(|e| crypto(format!("cannot derive the key: {e}")))?;
        let digest = Sha256::new().chain_update(CHECK_CONTEXT).chain_update(&key[..]).finalize();
        let mut check = [0u8; CHECK_LEN];
        check.copy_from_slice(&digest[..CHECK_LEN]);
        let cipher = XChaCha20Poly1305::new(Key::from_slice(&key[..]));
        Ok(DerivedKey { params, salt, check, cipher })
    }
}

/// The fixed-size part of the file.
struct Header {
    version: u8,
    params: KdfParams,
    salt: [u8; SALT_LEN],
    check: [u8; CHECK_LEN],
    nonce: [u8; NONCE_LEN],
    ciphertext_len: u32,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..MAGIC.len()].copy_from_slice(MAGIC);
        h[MAGIC.len()] = self.version;
        h[PARAMS_AT..PARAMS_AT + 4].copy_from_slice(&self.params.m_kib.to_le_bytes());
        h[PARAMS_AT + 4..PARAMS_AT + 8].copy_from_slice(&self.params.t.to_le_bytes());
        h[PARAMS_AT + 8..SALT_AT].copy_from_slice(&self.params.p.to_le_bytes());
        h[SALT_AT..CHECK_AT].copy_from_slice(&self.salt);
        h[CHECK_AT..NONCE_AT].copy_from_slice(&self.check);
        h[NONCE_AT..LEN_AT].copy_from_slice(&self.nonce);
        h[LEN_AT..].copy_from_slice(&self.ciphertext_len.to_le_bytes());
        h
    }

    /// Parses and checks the header of `bytes`, the whole file; the ciphertext must be complete.
    fn parse(path: &Path, bytes: &[u8]) -> Result<Header, KeyError> {
        let corrupt = |reason: String| KeyError::Corrupt { path: path.to_owned(), reason };
        if bytes.is_empty() {
            return Err(corrupt("the file is empty (0 bytes)".into()));
        }
        let n = MAGIC.len().min(bytes.len());
        if bytes[..n] != MAGIC[..n] {
            return Err(corrupt("it is not an Assegai key file (its first bytes are wrong)".into()));
        }
        if bytes.len() > MAGIC.len() {
            let version = bytes[MAGIC.len()];
            if version > VERSION {
                return Err(KeyError::UnsupportedVersion { path: path.to_owned(), version });
            }
            if version != VERSION {
                return Err(corrupt(format!("unknown format version {version}")));
            }
        }
        if bytes.len() < HEADER_LEN {
            return Err(corrupt(format!(
                "it is truncated: {} bytes, shorter than its {HEADER_LEN}-byte header",
                bytes.len()
            )));
        }
        let u32_at = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let params = KdfParams { m_kib: u32_at(PARAMS_AT), t: u32_at(PARAMS_AT + 4), p: u32_at(PARAMS_AT + 8) };
        params.argon2().map_err(corrupt)?;
        let mut header = Header {
            version: VERSION,
            params,
            salt: [0; SALT_LEN],
            check: [0; CHECK_LEN],
            nonce: [0; NONCE_LEN],
            ciphertext_len: u32_at(LEN_AT),
        };
        header.salt.copy_from_slice(&bytes[SALT_AT..CHECK_AT]);
        header.check.copy_from_slice(&bytes[CHECK_AT..NONCE_AT]);
        header.nonce.copy_from_slice(&bytes[NONCE_AT..LEN_AT]);
        let expected = header.ciphertext_len as usize;
        let found = bytes.len() - HEADER_LEN;
        if expected < TAG_LEN {
            return Err(corrupt(format!("its header gives an impossible ciphertext length ({expected} bytes)")));
        }
        if found < expected {
            return Err(corrupt(format!("it is truncated: the ciphertext has {found} of its {expected} bytes")));
        }
        if found > expected {
            return Err(corrupt(format!("it has {} unexpected bytes after the ciphertext", found - expected)));
        }
        Ok(header)
    }
}

/// The decrypted map; its values are wiped when it is dropped or when they are replaced.
#[derive(Default)]
struct SecretMap(BTreeMap<String, String>);

impl SecretMap {
    fn from_json(json: &[u8]) -> Result<Self, String> {
        // serde_json's messages can quote the offending value: report only where it is.
        serde_json::from_slice(json).map(SecretMap).map_err(|e| {
            format!("its decrypted contents are not a key map (JSON error at line {} column {})", e.line(), e.column())
        })
    }

    /// The JSON, in a buffer sized up front (so that no partial copy is left behind by a
    /// reallocation) with room for the tag.
    fn to_json(&self) -> Zeroizing<Vec<u8>> {
        // Worst case, every byte is escaped as `\u00XX`.
        let capacity = 2 + self.0.iter().map(|(k, v)| 6 * (k.len() + v.len()) + 6).sum::<usize>() + TAG_LEN;
        let mut json = Zeroizing::new(Vec::with_capacity(capacity));
        serde_json::to_writer(&mut *json, &self.0).expect("a map of strings serializes");
        json
    }

    fn get(&self, name: &str) -> Option<Secret> {
        self.0.get(name).map(|v| Secret::from(v.clone()))
    }

    fn insert(&mut self, name: &str, secret: &str) {
        if let Some(mut old) = self.0.insert(name.to_owned(), secret.to_owned()) {
            old.zeroize();
        }
    }

    fn remove(&mut self, name: &str) -> bool {
        match self.0.remove(name) {
            Some(mut old) => {
                old.zeroize();
                true
            }
            None => false,
        }
    }
}

impl Drop for SecretMap {
    fn drop(&mut self) {
        for v in self.0.values_mut() {
            v.zeroize();
        }
    }
}

/// Secrets in `keys.enc`, encrypted with a passphrase.
///
/// The whole map `{name: secret}` is serialized as JSON and encrypted with XChaCha20-Poly1305
/// under a key derived from the passphrase with Argon2id. Layout (integers little-endian):
///
/// | offset | size | field                                                              |
/// |-------:|-----:|--------------------------------------------------------------------|
/// |      0 |    8 | magic `ASGKEYS\0`                                                  |
/// |      8 |    1 | format version, `1`                                                |
/// |      9 |    4 | Argon2id memory cost in KiB (`m`)                                  |
/// |     13 |    4 | Argon2id passes (`t`)                                              |
/// |     17 |    4 | Argon2id lanes (`p`)                                               |
/// |     21 |   16 | salt (random, made when the file is created)                       |
/// |     37 |   16 | key check: `SHA-256("assegai keys.enc key check v1" ‖ key)[..16]`  |
/// |     53 |   24 | nonce (random, fresh on every write)                               |
/// |     77 |    4 | ciphertext length                                                  |
/// |     81 |    … | ciphertext: the JSON map, then the 16-byte Poly1305 tag            |
///
/// The 81-byte header is the AEAD's associated data, so no header byte can change unnoticed.
/// The key check tells a wrong passphrase from a damaged file (it gives an attacker nothing the
/// tag does not: both let one test a guessed passphrase). Format version 1 means Argon2 version
/// 0x13 and a 32-byte key. The parameters in the header are the ones used to read and rewrite
/// that file; [`KdfParams`] given to a store apply only when it creates the file.
///
/// Writes go to `keys.enc.tmp-<random>` (mode 0600) in the same directory, are fsynced and
/// renamed over `keys.enc`, then the directory is fsynced: readers see the old file or the new
/// one, never a mix. Each change reads the file again under an exclusive `flock` on
/// `keys.enc.lock`, so concurrent `set`/`remove` calls from any number of processes using this
/// code serialize instead of losing each other's changes; a writer that ignores the lock (a
/// person copying a file over it) simply wins, as the last rename always does.
///
/// The key is derived once, when the store is opened (and again only if another process
/// replaces the file with one made with another salt). The file is read again on every call, so
/// changes made by other processes are seen.
pub struct FileStore {
    path: PathBuf,
    lock_path: PathBuf,
    passphrase: Zeroizing<String>,
    /// Derived from the file's header; `None` until there is a file. Deriving costs 64 MiB and
    /// over 100 ms, so a store that never finds or writes a file never pays it.
    key: Mutex<Option<DerivedKey>>,
    /// The parameters a file this store creates gets.
    new_params: KdfParams,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl FileStore {
    /// Opens `path` with `passphrase`, creating it on the first `set` with [`KdfParams::STRONG`].
    pub fn open(path: impl Into<PathBuf>, passphrase: Zeroizing<String>) -> Result<Self, KeyError> {
        Self::open_with_params(path, passphrase, KdfParams::STRONG)
    }

    /// Opens `path` with `passphrase`. An existing file is read and checked now (a wrong
    /// passphrase or damage is reported here) and keeps the parameters in its header; `params`
    /// apply if this store creates the file.
    pub fn open_with_params(
        path: impl Into<PathBuf>,
        passphrase: Zeroizing<String>,
        params: KdfParams,
    ) -> Result<Self, KeyError> {
        let path = path.into();
        if passphrase.is_empty() {
            return Err(KeyError::EmptyPassphrase);
        }
        let mut lock_name = path.file_name().unwrap_or_default().to_owned();
        lock_name.push(".lock");
        let lock_path = path.with_file_name(lock_name);
        let bytes = read(&path)?;
        let key = match &bytes {
            Some(bytes) => {
                let header = Header::parse(&path, bytes)?;
                let key = DerivedKey::derive(&path, &passphrase, header.params, header.salt)?;
                decrypt(&path, &key, &header, bytes)?;
                warn_if_readable_by_others(&path);
                Some(key)
            }
            None => None,
        };
        Ok(FileStore { path, lock_path, passphrase, key: Mutex::new(key), new_params: params })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn key(&self) -> MutexGuard<'_, Option<DerivedKey>> {
        self.key.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current contents, `None` if there is no file.
    fn load(&self, key: &mut Option<DerivedKey>) -> Result<Option<SecretMap>, KeyError> {
        let Some(bytes) = read(&self.path)? else { return Ok(None) };
        let header = Header::parse(&self.path, &bytes)?;
        let current = match key.take() {
            Some(k) if k.params == header.params && k.salt == header.salt => k,
            // No file when this store was opened, or another process created it anew since.
            _ => DerivedKey::derive(&self.path, &self.passphrase, header.params, header.salt)?,
        };
        let key = key.insert(current);
        decrypt(&self.path, key, &header, &bytes).map(Some)
    }

    /// Reads, changes and rewrites the map under the cross-process lock.
    fn modify<T>(&self, change: impl FnOnce(&mut SecretMap) -> (T, bool)) -> Result<T, KeyError> {
        let mut key = self.key();
        let dir = parent(&self.path);
        ensure_dir(dir)?;
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&self.lock_path)
            .map_err(|e| KeyError::io(&self.lock_path, e))?;
        lock.lock().map_err(|e| KeyError::io(&self.lock_path, e))?;
        let mut map = self.load(&mut key)?.unwrap_or_default();
        let (result, changed) = change(&mut map);
        if changed {
            let key = match key.take() {
                Some(k) => key.insert(k),
                None => key.insert(DerivedKey::derive(&self.path, &self.passphrase, self.new_params, random())?),
            };
            self.save(key, &map)?;
        }
        drop(lock);
        Ok(result)
    }

    fn save(&self, key: &DerivedKey, map: &SecretMap) -> Result<(), KeyError> {
        let mut data = map.to_json();
        let ciphertext_len = u32::try_from(data.len() + TAG_LEN).map_err(|_| KeyError::Crypto {
            path: self.path.clone(),
            message: "too many secrets to store in one file".into(),
        })?;
        let header = Header {
            version: VERSION,
            params: key.params,
            salt: key.salt,
            check: key.check,
            nonce: random(),
            ciphertext_len,
        };
        let header = header.encode();
        let nonce = XNonce::from_slice(&header[NONCE_AT..LEN_AT]);
        key.cipher
            .encrypt_in_place(nonce, &header, &mut *data)
            .map_err(|_| KeyError::Crypto { path: self.path.clone(), message: "encryption failed".into() })?;
        let mut file = Vec::with_capacity(HEADER_LEN + data.len());
        file.extend_from_slice(&header);
        file.extend_from_slice(&data);
        write_atomically(&self.path, &file)
    }
}

impl KeyStore for FileStore {
    fn backend(&self) -> Backend {
        Backend::File
    }

    fn describe(&self) -> String {
        format!("encrypted file ({})", self.path.display())
    }

    fn get(&self, name: &str) -> Result<Option<Secret>, KeyError> {
        check_name(name)?;
        let mut key = self.key();
        Ok(self.load(&mut key)?.and_then(|map| map.get(name)))
    }

    fn set(&self, name: &str, secret: &str) -> Result<(), KeyError> {
        check_name(name)?;
        if secret.is_empty() {
            return Err(KeyError::EmptySecret(name.to_owned()));
        }
        self.modify(|map| {
            map.insert(name, secret);
            ((), true)
        })
    }

    fn remove(&self, name: &str) -> Result<bool, KeyError> {
        check_name(name)?;
        self.modify(|map| {
            let removed = map.remove(name);
            (removed, removed)
        })
    }
}

fn decrypt(path: &Path, key: &DerivedKey, header: &Header, bytes: &[u8]) -> Result<SecretMap, KeyError> {
    if !bool::from(header.check.ct_eq(&key.check)) {
        return Err(KeyError::WrongPassphrase { path: path.to_owned() });
    }
    let mut data = Zeroizing::new(bytes[HEADER_LEN..].to_vec());
    key.cipher.decrypt_in_place(XNonce::from_slice(&header.nonce), &bytes[..HEADER_LEN], &mut *data).map_err(|_| {
        KeyError::Corrupt {
            path: path.to_owned(),
            reason: "its contents fail authentication (they were modified or damaged)".into(),
        }
    })?;
    SecretMap::from_json(&data).map_err(|reason| KeyError::Corrupt { path: path.to_owned(), reason })
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// The whole file, `None` if there is none.
fn read(path: &Path) -> Result<Option<Vec<u8>>, KeyError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(KeyError::io(path, e)),
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates `dir` (mode 0700) if it is missing.
fn ensure_dir(dir: &Path) -> Result<(), KeyError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| KeyError::io(dir, e))
}

fn warn_if_readable_by_others(path: &Path) {
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            file = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the key file is accessible to other users; it is rewritten with mode 0600 on the next change"
        );
    }
}

/// Replaces `path` with `contents`: a 0600 temporary file in the same directory, fsync, rename,
/// fsync of the directory.
fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), KeyError> {
    let dir = parent(path);
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(format!(".tmp-{}", hex::encode(random::<8>())));
    let tmp = dir.join(tmp_name);
    let mut file =
        OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(|e| KeyError::io(&tmp, e))?;
    let written = (|| {
        // The umask can only remove bits; make the mode exact.
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(contents)?;
        file.sync_all()
    })();
    drop(file);
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(KeyError::io(path, e));
    }
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| KeyError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASS: &str = "correct horse battery staple";

    fn store(path: &Path, passphrase: &str) -> Result<FileStore, KeyError> {
        FileStore::open_with_params(path, Zeroizing::new(passphrase.to_owned()), KdfParams::INSECURE_TEST)
    }

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.enc");
        (dir, path)
    }

    fn get(s: &FileStore, name: &str) -> Option<String> {
        s.get(name).unwrap().map(|v| v.expose().to_owned())
    }

    #[test]
    fn round_trip() {
        let (_dir, path) = setup();
        let s = store(&path, PASS).unwrap();
        assert!(!path.exists(), "opening does not create the file");
        assert_eq!(get(&s, "openai"), None);
        assert!(!s.remove("openai").unwrap());
        assert!(!path.exists(), "removing nothing writes nothing");
        s.set("openai", "sk-openai-aaaaaaaaaaaa").unwrap();
        s.set("anthropic", "sk-ant-bbbbbbbbbbbb").unwrap();
        assert_eq!(get(&s, "openai").as_deref(), Some("sk-openai-aaaaaaaaaaaa"));
        s.set("openai", "sk-openai-replaced").unwrap();
        assert_eq!(get(&s, "openai").as_deref(), Some("sk-openai-replaced"));
        assert!(s.remove("openai").unwrap());
        assert!(!s.remove("openai").unwrap());
        assert_eq!(get(&s, "openai"), None);
        assert_eq!(get(&s, "anthropic").as_deref(), Some("sk-ant-bbbbbbbbbbbb"));
        assert!(matches!(s.set("openai", ""), Err(KeyError::EmptySecret(_))));
        assert!(matches!(s.set("Bad Name", "x"), Err(KeyError::InvalidName)));
        assert!(matches!(s.get(""), Err(KeyError::InvalidName)));
        assert_eq!(s.backend(), Backend::File);
        assert_eq!(s.describe(), format!("encrypted file ({})", path.display()));
    }

    #[test]
    fn a_second_instance_reads_and_sees_changes() {
        let (_dir, path) = setup();
        let a = store(&path, PASS).unwrap();
        a.set("deepseek", "sk-deepseek-123456789").unwrap();
        let b = store(&path, PASS).unwrap();
        assert_eq!(get(&b, "deepseek").as_deref(), Some("sk-deepseek-123456789"));
        b.set("wallet", "0xabcdef0123456789").unwrap();
        assert_eq!(get(&a, "wallet").as_deref(), Some("0xabcdef0123456789"));
        assert!(a.remove("deepseek").unwrap());
        assert_eq!(get(&b, "deepseek"), None);
    }

    #[test]
    fn a_store_made_before_the_file_existed_follows_the_new_salt() {
        let (_dir, path) = setup();
        let early = store(&path, PASS).unwrap();
        let wrong = store(&path, "another passphrase").unwrap();
        let creator = store(&path, PASS).unwrap();
        creator.set("openai", "sk-openai-0123456789").unwrap();
        // `early` derived its key with a salt that was never written: it derives again.
        assert_eq!(get(&early, "openai").as_deref(), Some("sk-openai-0123456789"));
        early.set("anthropic", "sk-ant-0123456789").unwrap();
        let before = fs::read(&path).unwrap();
        assert!(matches!(wrong.get("openai"), Err(KeyError::WrongPassphrase { .. })));
        assert!(matches!(wrong.set("openai", "sk-evil-0123456789"), Err(KeyError::WrongPassphrase { .. })));
        assert_eq!(fs::read(&path).unwrap(), before);
    }

    #[test]
    fn wrong_passphrase_is_reported_and_nothing_changes() {
        let (_dir, path) = setup();
        store(&path, PASS).unwrap().set("openai", "sk-openai-0123456789").unwrap();
        let before = fs::read(&path).unwrap();
        let e = store(&path, "Correct horse battery staple").unwrap_err();
        assert!(matches!(e, KeyError::WrongPassphrase { .. }), "{e:?}");
        let m = e.to_string();
        assert!(m.starts_with(&format!("wrong passphrase for {} (or the file was modified)", path.display())), "{m}");
        assert!(!m.contains("orse") && !format!("{e:?}").contains("orse"), "{m}");
        assert_eq!(fs::read(&path).unwrap(), before);
        assert_eq!(get(&store(&path, PASS).unwrap(), "openai").as_deref(), Some("sk-openai-0123456789"));
    }

    fn sample_file() -> (tempfile::TempDir, PathBuf, Vec<u8>) {
        let (dir, path) = setup();
        let s = store(&path, PASS).unwrap();
        s.set("openai", "sk-openai-0123456789").unwrap();
        s.set("anthropic", "sk-ant-0123456789").unwrap();
        let bytes = fs::read(&path).unwrap();
        (dir, path, bytes)
    }

    #[test]
    fn truncated_files_are_reported_never_emptied() {
        let (_dir, path, good) = sample_file();
        assert!(good.len() > HEADER_LEN + TAG_LEN);
        // A store opened while the file was fine must not overwrite it once damaged.
        let opened = store(&path, PASS).unwrap();
        for len in [0, 3, 8, 9, 40, HEADER_LEN - 1, HEADER_LEN, HEADER_LEN + 5, good.len() - TAG_LEN, good.len() - 1] {
            fs::write(&path, &good[..len]).unwrap();
            let e = store(&path, PASS).unwrap_err();
            let m = e.to_string();
            assert!(matches!(e, KeyError::Corrupt { .. }), "length {len}: {m}");
            assert!(m.contains(&path.display().to_string()) && m.contains("damaged"), "length {len}: {m}");
            if len > 0 && len < HEADER_LEN {
                assert!(m.contains("truncated"), "length {len}: {m}");
            }
            assert!(opened.get("openai").is_err(), "length {len}");
            assert!(opened.set("openai", "sk-new-0123456789").is_err(), "length {len}");
            assert!(opened.remove("openai").is_err(), "length {len}");
            assert_eq!(fs::read(&path).unwrap(), &good[..len], "length {len}: the file was rewritten");
        }
        let m = {
            fs::write(&path, b"").unwrap();
            store(&path, PASS).unwrap_err().to_string()
        };
        assert!(m.contains("empty"), "{m}");
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let (_dir, path, good) = sample_file();
        let mut bytes = good.clone();
        bytes.push(0);
        fs::write(&path, &bytes).unwrap();
        let m = store(&path, PASS).unwrap_err().to_string();
        assert!(m.contains("unexpected bytes"), "{m}");
        for i in 0..good.len() {
            let mut bytes = good.clone();
            bytes[i] ^= 0x01;
            fs::write(&path, &bytes).unwrap();
            match store(&path, PASS) {
                Err(KeyError::Corrupt { .. } | KeyError::WrongPassphrase { .. }) => {}
                Err(e) => panic!("byte {i}: unexpected error {e:?}"),
                Ok(_) => panic!("byte {i}: a modified file was accepted"),
            }
        }
    }

    #[test]
    fn other_files_and_versions_are_refused() {
        let (_dir, path, good) = sample_file();
        fs::write(&path, b"{\"openai\": \"sk-plain\"}").unwrap();
        let m = store(&path, PASS).unwrap_err().to_string();
        assert!(m.contains("not an Assegai key file"), "{m}");
        let mut newer = good.clone();
        newer[MAGIC.len()] = 2;
        fs::write(&path, &newer).unwrap();
        let e = store(&path, PASS).unwrap_err();
        assert!(matches!(e, KeyError::UnsupportedVersion { version: 2, .. }), "{e}");
        assert!(e.to_string().contains("upgrade Assegai"), "{e}");
        // A damaged header must not make us allocate or compute without bound.
        let mut huge = good.clone();
        huge[PARAMS_AT..PARAMS_AT + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        fs::write(&path, &huge).unwrap();
        let m = store(&path, PASS).unwrap_err().to_string();
        assert!(m.contains("Argon2id parameters"), "{m}");
    }

    #[test]
    fn no_key_is_derived_until_there_is_a_file() {
        let (_dir, path) = setup();
        let reader = store(&path, PASS).unwrap();
        assert!(reader.key().is_none(), "nothing to decrypt, nothing derived");
        assert_eq!(reader.get("openai").unwrap().map(|s| s.expose().to_owned()), None);
        assert!(reader.key().is_none());
        // Another process creates the file: the reader derives the key from its header then.
        store(&path, PASS).unwrap().set("openai", "sk-later-0123456789").unwrap();
        assert_eq!(
            reader.get("openai").unwrap().map(|s| s.expose().to_owned()).as_deref(),
            Some("sk-later-0123456789")
        );
        assert!(reader.key().is_some());
    }

    #[test]
    fn bad_json_inside_is_reported_without_its_contents() {
        let (_dir, path) = setup();
        let s = store(&path, PASS).unwrap();
        s.set("first", "secret").unwrap(); // the file, and so the key, exist from here
        // Encrypt something that is not a map of strings, with the store's own key.
        let guard = s.key();
        let key = guard.as_ref().expect("derived when the file was written");
        let mut data = Zeroizing::new(br#"{"openai": ["sk-leaky-0123456789"]}"#.to_vec());
        let header = Header {
            version: VERSION,
            params: key.params,
            salt: key.salt,
            check: key.check,
            nonce: random(),
            ciphertext_len: (data.len() + TAG_LEN) as u32,
        }
        .encode();
        key.cipher.encrypt_in_place(XNonce::from_slice(&header[NONCE_AT..LEN_AT]), &header, &mut *data).unwrap();
        drop(guard);
        fs::write(&path, [&header[..], &data[..]].concat()).unwrap();
        let e = s.get("openai").unwrap_err();
        let m = e.to_string();
        assert!(matches!(e, KeyError::Corrupt { .. }) && m.contains("not a key map"), "{m}");
        assert!(!m.contains("leaky") && !format!("{e:?}").contains("leaky"), "{m}");
    }

    #[test]
    fn the_file_is_private_and_holds_no_plaintext() {
        let (dir, path) = setup();
        let secret = "sk-proj-PLAINTEXT-MUST-NOT-APPEAR-x7kQ";
        let s = store(&path, PASS).unwrap();
        s.set("openai", secret).unwrap();
        s.set("anthropic", "sk-ant-second-secret").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let bytes = fs::read(&path).unwrap();
        for needle in [secret.as_bytes(), b"PLAINTEXT", b"openai", b"anthropic", PASS.as_bytes()] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{:?} found in keys.enc",
                String::from_utf8_lossy(needle)
            );
        }
        let mut names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["keys.enc", "keys.enc.lock"], "no temporary files are left behind");
        let lock_mode = fs::metadata(dir.path().join("keys.enc.lock")).unwrap().permissions().mode() & 0o777;
        assert_eq!(lock_mode, 0o600);
        assert!(!format!("{s:?}").contains("horse"), "{s:?}");
    }

    #[test]
    fn every_write_uses_a_fresh_nonce() {
        let (_dir, path) = setup();
        let s = store(&path, PASS).unwrap();
        s.set("openai", "sk-openai-0123456789").unwrap();
        let first = fs::read(&path).unwrap();
        s.set("openai", "sk-openai-0123456789").unwrap();
        let second = fs::read(&path).unwrap();
        assert_eq!(first[..NONCE_AT], second[..NONCE_AT], "same salt, parameters and key check");
        assert_ne!(first[NONCE_AT..LEN_AT], second[NONCE_AT..LEN_AT]);
        assert_ne!(first[HEADER_LEN..], second[HEADER_LEN..]);
    }

    #[test]
    fn a_missing_directory_is_created_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("home").join("keys.enc");
        store(&path, PASS).unwrap().set("openai", "sk-openai-0123456789").unwrap();
        let mode = fs::metadata(dir.path().join("home")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn concurrent_writers_do_not_lose_changes() {
        let (_dir, path) = setup();
        std::thread::scope(|scope| {
            for t in 0..4 {
                let path = &path;
                scope.spawn(move || {
                    let s = store(path, PASS).unwrap();
                    for i in 0..5 {
                        s.set(&format!("k{t}-{i}"), &format!("secret-{t}-{i}")).unwrap();
                    }
                });
            }
        });
        let s = store(&path, PASS).unwrap();
        for t in 0..4 {
            for i in 0..5 {
                assert_eq!(get(&s, &format!("k{t}-{i}")), Some(format!("secret-{t}-{i}")));
            }
        }
    }

    #[test]
    fn empty_passphrase_is_refused() {
        let (_dir, path) = setup();
        assert!(matches!(store(&path, ""), Err(KeyError::EmptyPassphrase)));
    }

    #[test]
    fn new_files_use_the_strong_default_parameters() {
        assert_eq!(KdfParams::default(), KdfParams { m_kib: 65536, t: 3, p: 1 });
        let (_dir, path) = setup();
        let s = FileStore::open(&path, Zeroizing::new(PASS.to_owned())).unwrap();
        s.set("openai", "sk-openai-0123456789").unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(&bytes[..PARAMS_AT], b"ASGKEYS\0\x01");
        assert_eq!(bytes[PARAMS_AT..SALT_AT], [0, 0, 1, 0, 3, 0, 0, 0, 1, 0, 0, 0]);
        // A store asking for other parameters reads and rewrites the file with the file's own.
        let other = store(&path, PASS).unwrap();
        other.set("anthropic", "sk-ant-0123456789").unwrap();
        assert_eq!(fs::read(&path).unwrap()[..NONCE_AT], bytes[..NONCE_AT]);
    }
}
