//! The Ed25519 key that signs the journal's checkpoints and the lake's digests
//! (ARCHITECTURE.md, "Tamper evidence"), and the public half auditors verify with.
//!
//! The private key is a PKCS#8 PEM file (`-----BEGIN PRIVATE KEY-----`), the format of
//! `openssl genpkey -algorithm ed25519`, so a key made elsewhere can be given by path.
//! Without one, `signing-key.pem` is created in the data directory on first use, mode
//! 0600. The key is a secret: its text is registered for redaction the moment it is read.
//! The public key prints as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo, what `openssl pkey
//! -pubout` writes) and is named by its fingerprint, `sha256:` and the hex SHA-256 of
//! its 32 raw bytes.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha256};

/// The file the key is created as in the data directory.
pub const DEFAULT_FILE: &str = "signing-key.pem";

/// Environment variable naming the key file (overrides `[integrity] signing_key`).
pub const ENV: &str = "TINES_AUDIT_SIGNING_KEY";

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the 32 key bytes follow.
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "signing key {path}: not an Ed25519 private key in PKCS#8 PEM ({why}); make one with `openssl genpkey -algorithm ed25519`"
    )]
    Invalid { path: PathBuf, why: String },
    #[error(
        "signing key {path} does not exist (a key given by path is never created; leave it unset to have one made in the data directory)"
    )]
    Missing { path: PathBuf },
    #[error("public key {what}: not an Ed25519 public key in PEM ({why}); `tines-audit keys public` prints one")]
    InvalidPublic { what: String, why: String },
}

/// Where the signing key is: given by path (must exist), or in the data directory
/// (created on first use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLocation {
    Given(PathBuf),
    DataDir(PathBuf),
}

impl KeyLocation {
    /// `TINES_AUDIT_SIGNING_KEY`, else the configured path, else the data directory.
    pub fn resolve(configured: Option<&Path>, data_dir: &Path) -> KeyLocation {
        match std::env::var_os(ENV).filter(|v| !v.is_empty()) {
            Some(p) => KeyLocation::Given(p.into()),
            None => match configured {
                Some(p) => KeyLocation::Given(p.to_path_buf()),
                None => KeyLocation::DataDir(data_dir.to_path_buf()),
            },
        }
    }

    pub fn path(&self) -> PathBuf {
        match self {
            KeyLocation::Given(p) => p.clone(),
            KeyLocation::DataDir(d) => d.join(DEFAULT_FILE),
        }
    }

    /// The key, created first if it lives in the data directory and is not there yet;
    /// `created` says whether it was.
    pub fn load_or_create(&self) -> Result<(SigningKey, bool), KeyError> {
        let path = self.path();
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok((SigningKey::from_pem(&text, &path)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match self {
                KeyLocation::Given(_) => Err(KeyError::Missing { path }),
                KeyLocation::DataDir(_) => create(&path),
            },
            Err(source) => Err(KeyError::Io { path, source }),
        }
    }

    /// The key if it exists, without creating one.
    pub fn load(&self) -> Result<Option<SigningKey>, KeyError> {
        let path = self.path();
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(SigningKey::from_pem(&text, &path)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(KeyError::Io { path, source }),
        }
    }
}

/// Writes a new key create-only with mode 0600 (another process creating it at the same
/// moment wins, and its key is read).
fn create(path: &Path) -> Result<(SigningKey, bool), KeyError> {
    let io = |source| KeyError::Io { path: path.to_path_buf(), source };
    let rng = ring::rand::SystemRandom::new();
    let doc = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| KeyError::Invalid { path: path.to_path_buf(), why: "no randomness".into() })?;
    let pem = pem("PRIVATE KEY", doc.as_ref());
    crate::secret::register(&pem);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(mut f) => {
            f.write_all(pem.as_bytes()).and_then(|()| f.sync_all()).map_err(io)?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
            }
            Ok((SigningKey::from_pem(&pem, path)?, true))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path).map_err(io)?;
            Ok((SigningKey::from_pem(&text, path)?, false))
        }
        Err(e) => Err(io(e)),
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The base64 body of the first PEM block labelled `label`.
fn pem_body(text: &str, label: &str) -> Result<String, String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin).ok_or_else(|| format!("no `{begin}` line"))? + begin.len();
    let stop = text[start..].find(&end).ok_or_else(|| format!("no `{end}` line"))? + start;
    Ok(text[start..stop].split_whitespace().collect())
}

/// The DER inside the first PEM block labelled `label`.
fn unpem(text: &str, label: &str) -> Result<Vec<u8>, String> {
    STANDARD.decode(pem_body(text, label)?).map_err(|e| format!("bad base64: {e}"))
}

/// The private key, able to sign.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.public.fingerprint())
    }
}

impl SigningKey {
    pub fn from_pem(text: &str, path: &Path) -> Result<SigningKey, KeyError> {
        crate::secret::register(text);
        let invalid = |why: String| KeyError::Invalid { path: path.to_path_buf(), why };
        let body = pem_body(text, "PRIVATE KEY").map_err(invalid)?;
        crate::secret::register(&body);
        text.lines().filter(|l| !l.starts_with("-----")).for_each(crate::secret::register);
        let der = STANDARD.decode(&body).map_err(|e| invalid(format!("bad base64: {e}")))?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|e| invalid(e.to_string()))?;
        let public = PublicKey(pair.public_key().as_ref().try_into().expect("an Ed25519 public key is 32 bytes"));
        Ok(SigningKey { pair, public })
    }

    /// A new key that lives only in memory (tests).
    pub fn ephemeral() -> SigningKey {
        let doc = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).expect("randomness");
        SigningKey::from_pem(&pem("PRIVATE KEY", doc.as_ref()), Path::new("(memory)")).expect("a key just made")
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The 64-byte Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

/// A public key: what auditors are given.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

impl PublicKey {
    /// `sha256:` and the hex SHA-256 of the raw key.
    pub fn fingerprint(&self) -> String {
        format!("sha256:{}", hex(&Sha256::digest(self.0)))
    }

    /// PEM `PUBLIC KEY` (SubjectPublicKeyInfo), as `openssl pkey -pubout` writes it.
    pub fn to_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.0);
        pem("PUBLIC KEY", &der)
    }

    /// Reads a PEM `PUBLIC KEY`; `what` names its source in errors.
    pub fn from_pem(text: &str, what: &str) -> Result<PublicKey, KeyError> {
        let invalid = |why: String| KeyError::InvalidPublic { what: what.to_string(), why };
        let der = unpem(text, "PUBLIC KEY").map_err(invalid)?;
        match der.strip_prefix(&SPKI_PREFIX[..]) {
            Some(raw) if raw.len() == 32 => Ok(PublicKey(raw.try_into().expect("32 bytes"))),
            _ => Err(invalid("not an Ed25519 SubjectPublicKeyInfo".into())),
        }
    }

    /// Whether `signature` is this key's over `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, self.0).verify(message, signature).is_ok()
    }
}

/// The keys a verification trusts, by fingerprint (computed once: it is looked up for
/// every checkpoint and digest).
#[derive(Debug, Default, Clone)]
pub struct Keyring(Vec<(String, PublicKey)>);

impl Keyring {
    pub fn new(keys: Vec<PublicKey>) -> Keyring {
        let mut ring: Vec<(String, PublicKey)> = Vec::with_capacity(keys.len());
        for k in keys {
            if !ring.iter().any(|(_, have)| *have == k) {
                ring.push((k.fingerprint(), k));
            }
        }
        Keyring(ring)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn fingerprints(&self) -> Vec<String> {
        self.0.iter().map(|(f, _)| f.clone()).collect()
    }

    /// The trusted key with this fingerprint.
    pub fn get(&self, fingerprint: &str) -> Option<&PublicKey> {
        self.0.iter().find(|(f, _)| f == fingerprint).map(|(_, k)| k)
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The bytes of lowercase or uppercase hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_with_mode_0600_and_read_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let loc = KeyLocation::DataDir(dir.path().join("data"));
        assert!(loc.load().unwrap().is_none());
        let (key, created) = loc.load_or_create().unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(loc.path()).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let (again, created) = loc.load_or_create().unwrap();
        assert!(!created);
        assert_eq!(key.public(), again.public());
        let sig = key.sign(b"checkpoint");
        assert!(again.public().verifies(b"checkpoint", &sig));
        assert!(!again.public().verifies(b"checkpoinT", &sig));
        // The private key never shows in a message.
        let text = std::fs::read_to_string(loc.path()).unwrap();
        let redacted = crate::secret::redact(&format!("key: {text}")).into_owned();
        assert_eq!(redacted.trim_end(), format!("key: {}", crate::secret::REDACTED));
        let body = text.lines().nth(1).unwrap();
        assert!(!crate::secret::redact(&format!("[{body}]")).contains(body));
    }

    #[test]
    fn a_key_given_by_path_is_never_created_and_a_bad_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = KeyLocation::Given(dir.path().join("nope.pem"));
        let e = missing.load_or_create().unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        assert!(!dir.path().join("nope.pem").exists());
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
        let e = KeyLocation::Given(bad).load_or_create().unwrap_err().to_string();
        assert!(e.contains("not an Ed25519 private key"), "{e}");
    }

    #[test]
    fn an_openssl_key_and_its_public_pem_round_trip() {
        // `openssl genpkey -algorithm ed25519` (PKCS#8 v1) and `openssl pkey -pubout` of it.
        let private = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEILRmjU1FvD3MhtHDcfHLij1T1Cl7kk6+gvtODUM1Vjqb\n-----END PRIVATE KEY-----\n";
        let public = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA6IQqke5imjt8RpWwJbuIHAOjYRiD25gCASCJJcKaOGY=\n-----END PUBLIC KEY-----\n";
        let key = SigningKey::from_pem(private, Path::new("k.pem")).unwrap();
        assert_eq!(key.public().to_pem(), public);
        let p = PublicKey::from_pem(public, "test").unwrap();
        assert_eq!(&p, key.public());
        assert!(p.fingerprint().starts_with("sha256:") && p.fingerprint().len() == 71);
        assert!(PublicKey::from_pem(private, "test").is_err());
        assert_eq!(unhex(&hex(&[0, 1, 0xab, 0xff])), Some(vec![0, 1, 0xab, 0xff]));
        assert_eq!(unhex("abc"), None);
    }
}
