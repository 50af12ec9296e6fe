//! Secret sources -> signer.
//!
//! A key is read once, at start-up, from where `[keys.<name>]` says it lives:
//!
//! - `source = "env"`: a 0x-prefixed 32-byte hex private key in an environment
//!   variable (never on the command line);
//! - `source = "keystore"`: a Web3 Secret Storage v3 JSON keystore, with its
//!   passphrase in an environment variable or in a file.
//!
//! Invariants:
//! - a secret is held in a `secrecy` type from the moment it is read, and is
//!   zeroed when dropped; it never reaches argv, logs, errors, `Debug` output or
//!   `Serialize` (nothing here implements `Serialize`);
//! - errors name the key, the variable or the path, and say what to do; they
//!   never quote what was read (a malformed key is not echoed back, not even a
//!   character of it);
//! - key and passphrase files readable by group or others are refused;
//! - nothing is created or defaulted: a missing key is an error naming it (in
//!   `run`, the executors needing it cannot act and `/readyz` is not ready),
//!   never a fall back to another one;
//! - a keystore's KDF parameters are checked before any derivation: above
//!   [`SCRYPT_LIMIT`] or [`PBKDF2_LIMIT`] it is refused, naming the file, so a
//!   keystore cannot hang the start; ethers v5's `"Crypto"` casing is accepted.
//!
//! ## Remote signers (extension point)
//!
//! Executors only use a [`Key`] through [`Key::address`], [`Key::wallet`] (to
//! sign transactions) and [`Key::sign_hash`] (to sign SafeTx hashes). A remote
//! signer (AWS or GCP KMS, a hardware wallet; alloy ships `alloy-signer-aws`,
//! `alloy-signer-gcp`, `alloy-signer-ledger`) slots in as:
//! 1. a new [`KeySource`] variant (e.g. `Kms { key_id }`) parsed in
//!    `config::exec::parse_key`;
//! 2. a new [`Signing`] variant holding that signer, and one arm in
//!    [`Key::wallet`] / [`Key::sign_hash`] delegating to it (every alloy
//!    signer implements `Signer` and `TxSigner<Signature>`).
//!
//! Nothing else changes: the key material never leaves the remote signer.

use std::fs;
use std::path::{Path, PathBuf};

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, Signature};
use alloy::signers::Signer;
use alloy::signers::local::PrivateKeySigner;
use secrecy::{ExposeSecret, SecretBox, SecretString};

use crate::config::{KeyDef, KeySource, PassphraseSource};

/// Why a key could not be loaded. Never carries secret material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "key `{key}`: environment variable {var} is not set; export the key there before starting (never pass it as an argument)"
    )]
    MissingEnv { key: String, var: String },
    #[error(
        "key `{key}`: environment variable {var} does not hold a 0x-prefixed 32-byte hex private key (its content is not shown)"
    )]
    MalformedKey { key: String, var: String },
    #[error("key `{key}`: the value in {var} is not a valid secp256k1 private key")]
    InvalidKey { key: String, var: String },
    #[error("key `{key}`: cannot read {}: {kind}; check the path and that guardian's user owns it", path.display())]
    Unreadable {
        key: String,
        path: PathBuf,
        kind: std::io::ErrorKind,
    },
    #[error(
        "key `{key}`: {} is readable by group or others (mode {mode:o}); run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    TooOpen {
        key: String,
        path: PathBuf,
        mode: u32,
    },
    #[error(
        "key `{key}`: cannot decrypt keystore {}: wrong passphrase or corrupted keystore",
        path.display()
    )]
    WrongPassphrase { key: String, path: PathBuf },
    #[error("key `{key}`: {} is not a Web3 Secret Storage v3 keystore ({reason})", path.display())]
    BadKeystore {
        key: String,
        path: PathBuf,
        reason: &'static str,
    },
    #[error(
        "key `{key}`: keystore {} asks for {what}, above the most guardian derives ({limit}); re-encrypt it with standard parameters (geth's or eth-account's defaults)",
        path.display()
    )]
    KdfTooCostly {
        key: String,
        path: PathBuf,
        what: String,
        limit: &'static str,
    },
    #[error("key `{key}`: environment variable {var} (the keystore passphrase) is not set")]
    MissingPassphrase { key: String, var: String },
    #[error("key `{key}`: the passphrase is empty; a keystore needs a passphrase")]
    EmptyPassphrase { key: String },
    #[error("key `{key}`: signing failed: {reason}")]
    Signing { key: String, reason: String },
}

/// Where the process environment is read from (tests use a map; edition 2024
/// makes `set_var` unsafe, and this crate forbids unsafe code).
pub trait Env {
    /// The variable's value, as a secret from the moment it is read.
    fn secret(&self, var: &str) -> Option<SecretString>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn secret(&self, var: &str) -> Option<SecretString> {
        // A non-UTF-8 value is treated as unset: it cannot be a hex key or a passphrase we accept.
        std::env::var_os(var)
            .and_then(|v| v.into_string().ok())
            .map(SecretString::from)
    }
}

/// How a key signs. One variant per signer kind; see the module docs for remote signers.
#[derive(Debug, Clone)]
pub enum Signing {
    /// The private key is in this process's memory (from an env var or a keystore).
    Local(PrivateKeySigner),
}

/// A loaded signing key. Its `Debug` shows the name and address only.
#[derive(Clone)]
pub struct Key {
    name: String,
    address: Address,
    signing: Signing,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("name", &self.name)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// A key from an in-memory signer (tests, and keys built by a remote-signer source).
    pub fn local(name: impl Into<String>, signer: PrivateKeySigner) -> Self {
        Self {
            name: name.into(),
            address: signer.address(),
            signing: Signing::Local(signer),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn address(&self) -> Address {
        self.address
    }

    /// A wallet that signs transactions with this key.
    pub fn wallet(&self) -> EthereumWallet {
        match &self.signing {
            Signing::Local(s) => EthereumWallet::new(s.clone()),
        }
    }

    /// Signs a 32-byte hash (a SafeTx's EIP-712 hash) with no prefix.
    pub async fn sign_hash(&self, hash: &B256) -> Result<Signature, KeyError> {
        match &self.signing {
            Signing::Local(s) => s.sign_hash(hash).await.map_err(|e| KeyError::Signing {
                key: self.name.clone(),
                reason: e.to_string(),
            }),
        }
    }
}

/// Loads the key `def` describes, from the process environment and files.
pub fn load(def: &KeyDef) -> Result<Key, KeyError> {
    load_with(def, &ProcessEnv)
}

/// Loads the key `def` describes, reading variables from `env`.
pub fn load_with(def: &KeyDef, env: &dyn Env) -> Result<Key, KeyError> {
    let result = match &def.source {
        KeySource::Env { var } => from_env(&def.name, var, env),
        KeySource::Keystore { path, passphrase } => from_keystore(&def.name, path, passphrase, env),
    };
    match &result {
        Ok(key) => tracing::info!(
            target: "guardian::keys",
            key = %def.name,
            address = %key.address,
            source = source_kind(&def.source),
            "key loaded"
        ),
        Err(e) => {
            tracing::error!(target: "guardian::keys", key = %def.name, error = %e, "key not loaded")
        }
    }
    result
}

fn source_kind(s: &KeySource) -> &'static str {
    match s {
        KeySource::Env { .. } => "env",
        KeySource::Keystore { .. } => "keystore",
    }
}

fn from_env(name: &str, var: &str, env: &dyn Env) -> Result<Key, KeyError> {
    let value = env.secret(var).ok_or_else(|| KeyError::MissingEnv {
        key: name.into(),
        var: var.into(),
    })?;
    let malformed = || KeyError::MalformedKey {
        key: name.into(),
        var: var.into(),
    };
    let text = value.expose_secret().trim();
    let hex = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .ok_or_else(malformed)?;
    if hex.len() != 64 {
        return Err(malformed());
    }
    let mut decoded = false;
    let bytes: SecretBox<[u8; 32]> = SecretBox::init_with_mut(|buf: &mut [u8; 32]| {
        // The hex error (which would name the offending character) is dropped here.
        decoded = alloy::hex::decode_to_slice(hex, buf).is_ok();
    });
    if !decoded {
        return Err(malformed());
    }
    let signer =
        PrivateKeySigner::from_slice(bytes.expose_secret()).map_err(|_| KeyError::InvalidKey {
            key: name.into(),
            var: var.into(),
        })?;
    Ok(Key::local(name, signer))
}

/// Refuses a secret file that group or others can read (or write).
pub fn check_private_file(name: &str, path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::metadata(path).map_err(|e| KeyError::Unreadable {
        key: name.into(),
        path: path.to_path_buf(),
        kind: e.kind(),
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen {
            key: name.into(),
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

fn passphrase(name: &str, src: &PassphraseSource, env: &dyn Env) -> Result<SecretString, KeyError> {
    let pass = match src {
        PassphraseSource::Env(var) => {
            env.secret(var).ok_or_else(|| KeyError::MissingPassphrase {
                key: name.into(),
                var: var.clone(),
            })?
        }
        PassphraseSource::File(path) => {
            check_private_file(name, path)?;
            let unreadable = |e: std::io::Error| KeyError::Unreadable {
                key: name.into(),
                path: path.clone(),
                kind: e.kind(),
            };
            let raw = SecretBox::new(Box::new(fs::read(path).map_err(unreadable)?));
            let text =
                std::str::from_utf8(raw.expose_secret()).map_err(|_| KeyError::Unreadable {
                    key: name.into(),
                    path: path.clone(),
                    kind: std::io::ErrorKind::InvalidData,
                })?;
            SecretString::from(text.trim_end_matches(['\n', '\r']).to_string())
        }
    };
    if pass.expose_secret().is_empty() {
        return Err(KeyError::EmptyPassphrase { key: name.into() });
    }
    Ok(pass)
}

fn from_keystore(
    name: &str,
    path: &Path,
    src: &PassphraseSource,
    env: &dyn Env,
) -> Result<Key, KeyError> {
    check_private_file(name, path)?;
    let normalized = check_keystore(name, path)?;
    let pass = passphrase(name, src, env)?;
    let decrypted = match &normalized {
        // ethers v5 writes `"Crypto"`: decrypted from a private copy with the standard casing.
        Some(json) => decrypt_copy(name, path, json, pass.expose_secret().as_bytes()),
        None => PrivateKeySigner::decrypt_keystore(path, pass.expose_secret().as_bytes())
            .map_err(|e| keystore_error(name, path, e)),
    };
    Ok(Key::local(name, decrypted?))
}

/// The most scrypt work guardian derives: `n` at most 2^18 (geth's standard),
/// `r` at most 8, `p` at most 8, and `n * r * p` at most 2^24 (under 16 s and
/// 256 MiB on a small machine).
pub const SCRYPT_LIMIT: &str = "scrypt n <= 2^18, r <= 8, p <= 8, n*r*p <= 2^24";
/// The most PBKDF2 work guardian derives: at most 10,000,000 iterations
/// (eth-account's default is 1,000,000).
pub const PBKDF2_LIMIT: &str = "pbkdf2 c <= 10000000";

/// Reads the keystore's KDF parameters and refuses, before any derivation,
/// those above [`SCRYPT_LIMIT`] / [`PBKDF2_LIMIT`] or not a keystore at all.
/// `Some(json)` when the file needs its casing normalised (ethers v5's `"Crypto"`).
fn check_keystore(name: &str, path: &Path) -> Result<Option<String>, KeyError> {
    let bad = |reason| KeyError::BadKeystore {
        key: name.into(),
        path: path.to_path_buf(),
        reason,
    };
    let text = fs::read_to_string(path).map_err(|e| KeyError::Unreadable {
        key: name.into(),
        path: path.to_path_buf(),
        kind: e.kind(),
    })?;
    let mut json: serde_json::Value =
        serde_json::from_str(&text).map_err(|_| bad("malformed JSON"))?;
    let obj = json.as_object_mut().ok_or(bad("not a JSON object"))?;
    let renamed = !obj.contains_key("crypto") && obj.contains_key("Crypto");
    if renamed && let Some(c) = obj.remove("Crypto") {
        obj.insert("crypto".into(), c);
    }
    let crypto = obj.get("crypto").ok_or(bad("no `crypto` section"))?;
    let kdf = crypto
        .get("kdf")
        .and_then(|k| k.as_str())
        .ok_or(bad("no `kdf`"))?;
    let params = crypto.get("kdfparams").ok_or(bad("no `kdfparams`"))?;
    let num = |k: &str| params.get(k).and_then(serde_json::Value::as_u64);
    let too = |what: String, limit| KeyError::KdfTooCostly {
        key: name.into(),
        path: path.to_path_buf(),
        what,
        limit,
    };
    match kdf {
        "scrypt" => {
            let (n, r, p) = (
                num("n").ok_or(bad("scrypt without `n`"))?,
                num("r").ok_or(bad("scrypt without `r`"))?,
                num("p").ok_or(bad("scrypt without `p`"))?,
            );
            let work = n.saturating_mul(r).saturating_mul(p);
            if n > 1 << 18 || r > 8 || p > 8 || work > 1 << 24 {
                return Err(too(
                    format!("scrypt n = {n}, r = {r}, p = {p}"),
                    SCRYPT_LIMIT,
                ));
            }
        }
        "pbkdf2" => {
            let c = num("c").ok_or(bad("pbkdf2 without `c`"))?;
            if c > 10_000_000 {
                return Err(too(format!("pbkdf2 c = {c}"), PBKDF2_LIMIT));
            }
        }
        _ => return Err(bad("unsupported KDF (scrypt or pbkdf2 only)")),
    }
    if num("dklen").is_some_and(|d| d != 32) {
        return Err(bad("unsupported KDF parameters (dklen must be 32)"));
    }
    Ok(renamed.then(|| json.to_string()))
}

/// Decrypts `json` (the keystore with its casing normalised) through a copy
/// only the owner can read, removed right after. The copy holds nothing the
/// original does not: the key inside is still encrypted.
fn decrypt_copy(
    name: &str,
    path: &Path,
    json: &str,
    pass: &[u8],
) -> Result<PrivateKeySigner, KeyError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let unreadable = |kind| KeyError::Unreadable {
        key: name.into(),
        path: path.to_path_buf(),
        kind,
    };
    let copy = std::env::temp_dir().join(format!(
        "guardian-keystore-{}-{}.json",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&copy)
        .map_err(|e| unreadable(e.kind()))?;
    let written = f.write_all(json.as_bytes());
    drop(f);
    let out = written.map_err(|e| unreadable(e.kind())).and_then(|()| {
        PrivateKeySigner::decrypt_keystore(&copy, pass).map_err(|e| keystore_error(name, path, e))
    });
    let _ = fs::remove_file(&copy);
    out
}

fn keystore_error(name: &str, path: &Path, e: alloy::signers::local::LocalSignerError) -> KeyError {
    use alloy::signers::local::LocalSignerError as E;
    use eth_keystore::KeystoreError as K;
    let bad = |reason| KeyError::BadKeystore {
        key: name.into(),
        path: path.to_path_buf(),
        reason,
    };
    match e {
        E::EthKeystoreError(K::MacMismatch) => KeyError::WrongPassphrase {
            key: name.into(),
            path: path.to_path_buf(),
        },
        E::EthKeystoreError(K::StdIo(_)) | E::IoError(_) => KeyError::Unreadable {
            key: name.into(),
            path: path.to_path_buf(),
            kind: std::io::ErrorKind::Other,
        },
        E::EthKeystoreError(K::SerdeJson(_)) => bad("malformed JSON"),
        E::EthKeystoreError(_) => bad("unsupported cipher or KDF parameters"),
        _ => bad("the decrypted key is not a valid secp256k1 key"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Default)]
    struct MapEnv(HashMap<String, String>);
    impl Env for MapEnv {
        fn secret(&self, var: &str) -> Option<SecretString> {
            self.0.get(var).cloned().map(SecretString::from)
        }
    }

    /// A tracing writer that keeps everything written, to search it afterwards.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn def(name: &str, source: KeySource) -> KeyDef {
        KeyDef {
            name: name.into(),
            source,
        }
    }

    /// A new keystore in `dir` encrypted with `passphrase`, readable by its owner only.
    fn keystore(dir: &Path, passphrase: &str) -> (PrivateKeySigner, PathBuf) {
        let mut rng = rand08::thread_rng();
        let (signer, file) =
            PrivateKeySigner::new_keystore(dir, &mut rng, passphrase, None).unwrap();
        let path = dir.join(file);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        (signer, path)
    }

    fn write_mode(path: &Path, content: &[u8], mode: u32) {
        fs::write(path, content).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

    #[test]
    fn an_env_key_loads_and_debug_shows_only_name_and_address() {
        let env = MapEnv(HashMap::from([("BOT".to_string(), KEY.to_string())]));
        let key = load_with(&def("bot", KeySource::Env { var: "BOT".into() }), &env).unwrap();
        assert_eq!(
            key.address(),
            "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
                .parse::<Address>()
                .unwrap()
        );
        let debug = format!("{key:?}");
        assert!(
            debug.contains("bot") && !debug.contains(&KEY[2..]),
            "{debug}"
        );
    }

    #[test]
    fn a_keystore_loads_with_a_passphrase_from_env_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let (signer, path) = keystore(dir.path(), "pass-word");
        let pass_file = dir.path().join("pass");
        write_mode(&pass_file, b"pass-word\n", 0o400);
        let env = MapEnv(HashMap::from([(
            "PASS".to_string(),
            "pass-word".to_string(),
        )]));
        for passphrase in [
            PassphraseSource::Env("PASS".into()),
            PassphraseSource::File(pass_file.clone()),
        ] {
            let key = load_with(
                &def(
                    "ks",
                    KeySource::Keystore {
                        path: path.clone(),
                        passphrase,
                    },
                ),
                &env,
            )
            .unwrap();
            assert_eq!(key.address(), signer.address());
        }
    }

    /// Canary secrets forced through every error path never show up in an
    /// error's text, its `Debug` output, or the logs.
    #[test]
    fn canary_secrets_never_leak_through_errors_or_logs() {
        const CANARY: &str = "CANARY7f3e";
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_max_level(tracing::Level::TRACE)
            .finish();
        let dir = tempfile::tempdir().unwrap();

        // A real keystore whose passphrase we will get wrong.
        let (_, keystore) = keystore(dir.path(), "right-pass");
        // The same keystore, world-readable.
        let open_keystore = dir.path().join("open.json");
        write_mode(&open_keystore, &fs::read(&keystore).unwrap(), 0o644);
        // A passphrase file holding the canary, world-readable.
        let open_pass = dir.path().join("open-pass");
        write_mode(&open_pass, format!("{CANARY}-pass").as_bytes(), 0o644);
        // A passphrase file holding the canary (wrong passphrase), private.
        let wrong_pass = dir.path().join("wrong-pass");
        write_mode(&wrong_pass, format!("{CANARY}-pass").as_bytes(), 0o600);
        // A "keystore" that is the canary itself, not JSON.
        let garbage = dir.path().join("garbage.json");
        write_mode(&garbage, format!("{{\"{CANARY}\": 1").as_bytes(), 0o600);
        // A file nobody may read.
        let unreadable = dir.path().join("unreadable.json");
        write_mode(&unreadable, CANARY.as_bytes(), 0o000);

        let env = MapEnv(HashMap::from([
            // Not hex, but the right length: the hex error would name a character.
            (
                "BAD_HEX".to_string(),
                format!("0x{CANARY}{}", "0".repeat(64 - CANARY.len())),
            ),
            (
                "NO_PREFIX".to_string(),
                format!("{CANARY}{}", "0".repeat(64 - CANARY.len())),
            ),
            ("SHORT".to_string(), format!("0x{CANARY}")),
            ("ZERO".to_string(), format!("0x{}", "0".repeat(64))),
            ("WRONG_PASS".to_string(), format!("{CANARY}-pass")),
            ("EMPTY".to_string(), String::new()),
        ]));
        let ks = |path: &Path, passphrase: PassphraseSource| KeySource::Keystore {
            path: path.to_path_buf(),
            passphrase,
        };
        let cases = [
            KeySource::Env {
                var: "BAD_HEX".into(),
            },
            KeySource::Env {
                var: "NO_PREFIX".into(),
            },
            KeySource::Env {
                var: "SHORT".into(),
            },
            KeySource::Env { var: "ZERO".into() },
            KeySource::Env {
                var: "MISSING".into(),
            },
            ks(&keystore, PassphraseSource::Env("WRONG_PASS".into())),
            ks(&keystore, PassphraseSource::Env("MISSING".into())),
            ks(&keystore, PassphraseSource::Env("EMPTY".into())),
            ks(&keystore, PassphraseSource::File(wrong_pass.clone())),
            ks(&keystore, PassphraseSource::File(open_pass.clone())),
            ks(&keystore, PassphraseSource::File(dir.path().join("absent"))),
            ks(&open_keystore, PassphraseSource::Env("WRONG_PASS".into())),
            ks(&garbage, PassphraseSource::Env("WRONG_PASS".into())),
            ks(&unreadable, PassphraseSource::Env("WRONG_PASS".into())),
            ks(
                &dir.path().join("absent.json"),
                PassphraseSource::Env("WRONG_PASS".into()),
            ),
        ];
        let mut kinds = Vec::new();
        tracing::subscriber::with_default(subscriber, || {
            for source in cases {
                let err = load_with(&def("canary-key", source), &env).unwrap_err();
                let shown = format!("{err} | {err:?}");
                assert!(!shown.contains(CANARY), "canary leaked: {shown}");
                assert!(
                    shown.contains("canary-key"),
                    "error does not name the key: {shown}"
                );
                kinds.push(std::mem::discriminant(&err));
            }
        });
        let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(logs.matches("key not loaded").count(), 15, "{logs}");
        assert!(!logs.contains(CANARY), "canary leaked into logs:\n{logs}");
        kinds.dedup();
        // Every error kind but the signing one was exercised.
        assert!(kinds.len() >= 8, "{kinds:?}");
    }
}
