//! Signed artifacts: an Ed25519 signature envelope around `.vdc` bytes, key files, and loading
//! under a set of trusted public keys.
//!
//! A checksum only tells corruption from intact bytes: anyone who changes an artifact can
//! recompute it. A signature tells who wrote the bytes. The envelope wraps the artifact without
//! looking inside it, so the artifact's own format (and its version) is independent of signing.
//!
//! Layout of a signed artifact:
//! ```text
//! artifact     N bytes   an unsigned `.vdc` exactly as `artifact::write` produces it
//!                        (its last 32 bytes are its SHA-256 checksum)
//! key id       8 bytes   the first 8 bytes of SHA-256 of the signer's 32-byte public key
//! signature   64 bytes   Ed25519 (RFC 8032) over every byte before it: artifact ‖ key id
//! magic        8 bytes   SIGNATURE_MAGIC
//! ```
//! The magic comes last, so telling signed from unsigned bytes needs no knowledge of the artifact
//! format: an unsigned artifact ends with a SHA-256 digest, whose last 8 bytes equal the magic
//! with probability 2⁻⁶⁴ (and bytes made to end with it are read as signed, and refused).
//!
//! Trust (as OPA does for signed bundles): with no trusted keys, nothing can be verified, so an
//! envelope is removed unverified and the artifact loads on its checksum alone ([`Signer::Unverified`]).
//! With trusted keys, an artifact loads only if it carries a signature by one of them that
//! verifies (strictly: no small-order keys or points, canonical scalars) over the exact bytes;
//! the signature is checked before any byte of the artifact is decoded.
//!
//! Key formats (what OpenSSL writes, or raw keys in base64 as `POLICY_ENGINE_BUYER_KEYS_JSON`):
//! - signing key: a PKCS#8 PEM `PRIVATE KEY` block (`openssl genpkey -algorithm ed25519`), or the
//!   base64 of the 32-byte seed;
//! - public keys: SPKI PEM `PUBLIC KEY` blocks (`openssl pkey -pubout`), or the base64 of the
//!   32-byte key; a list separates keys by whitespace or commas.

use crate::artifact::{ArtifactError, MAGIC};
use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fmt;

/// The last 8 bytes of a signed artifact.
pub const SIGNATURE_MAGIC: [u8; 8] = *b"\x7fVDCSIG1";
/// The bytes a signature adds after the artifact: key id, signature, magic.
pub const TRAILER_LEN: usize = 8 + 64 + 8;

/// Who signed an artifact: the first 8 bytes of SHA-256 of the public key, shown in hexadecimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    /// The id of a public key.
    pub fn of(key: &VerifyingKey) -> KeyId {
        let digest = Sha256::digest(key.as_bytes());
        let mut id = [0u8; 8];
        for (slot, byte) in id.iter_mut().zip(digest.iter()) {
            *slot = *byte;
        }
        KeyId(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// `sha256:` and the hexadecimal SHA-256 of bytes: what the service reports as the digest of
/// the bytes it loaded (an artifact, signed or not, or a source text).
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// The public keys whose signatures an artifact loader accepts. Empty: signatures are not checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedKeys {
    keys: Vec<(KeyId, VerifyingKey)>,
}

impl TrustedKeys {
    /// No trusted keys: artifacts load on their checksum, signed or not.
    pub fn none() -> TrustedKeys {
        TrustedKeys::default()
    }

    /// The given keys (a key given twice counts once).
    pub fn new(keys: impl IntoIterator<Item = VerifyingKey>) -> TrustedKeys {
        let mut out = TrustedKeys::none();
        out.extend(keys);
        out
    }

    /// Adds keys (a key already present is not added again).
    pub fn extend(&mut self, keys: impl IntoIterator<Item = VerifyingKey>) {
        for key in keys {
            if !self.keys.iter().any(|(_, k)| *k == key) {
                self.keys.push((KeyId::of(&key), key));
            }
        }
    }

    /// Parses a list of public keys (see the module doc for the formats).
    pub fn parse(text: &str) -> Result<TrustedKeys, KeyError> {
        Ok(TrustedKeys::new(parse_public_keys(text)?))
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The ids of the keys, in the order they were given.
    pub fn ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.keys.iter().map(|(id, _)| *id)
    }
}

/// Whether an artifact was signed, and whether the signature was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    /// No signature (accepted only without trusted keys).
    Unsigned,
    /// Signed, but loaded without trusted keys: the signature was not checked.
    Unverified(KeyId),
    /// Signed by this trusted key, and the signature verifies.
    Verified(KeyId),
}

impl Signer {
    /// The key that verifiably signed the artifact.
    pub fn verified(&self) -> Option<KeyId> {
        match self {
            Signer::Verified(id) => Some(*id),
            Signer::Unsigned | Signer::Unverified(_) => None,
        }
    }
}

/// The trailer of a signed artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    pub key_id: KeyId,
    pub signature: [u8; 64],
}

/// Bytes split into the artifact and its signature trailer, if it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'b> {
    /// The artifact's bytes (the whole input when it is not signed).
    pub artifact: &'b [u8],
    /// The bytes the signature covers: the artifact and the key id.
    pub signed: &'b [u8],
    pub trailer: Option<Trailer>,
}

/// Splits bytes into an artifact and its signature trailer (recognised by [`SIGNATURE_MAGIC`]
/// at the very end). Nothing is verified here.
pub fn open(bytes: &[u8]) -> Envelope<'_> {
    let unsigned = Envelope { artifact: bytes, signed: bytes, trailer: None };
    let Some(start) = bytes.len().checked_sub(TRAILER_LEN) else { return unsigned };
    let (artifact, trailer) = bytes.split_at(start);
    let (key_id, rest) = trailer.split_at(8);
    let (signature, magic) = rest.split_at(64);
    if magic != SIGNATURE_MAGIC {
        return unsigned;
    }
    let (Ok(key_id), Ok(signature)) = (<[u8; 8]>::try_from(key_id), <[u8; 64]>::try_from(signature)) else {
        return unsigned;
    };
    let signed = bytes.get(..start + 8).unwrap_or(bytes);
    Envelope { artifact, signed, trailer: Some(Trailer { key_id: KeyId(key_id), signature }) }
}

/// Signs artifact bytes (as `artifact::write` produces them): the artifact followed by the
/// signature trailer.
pub fn sign(artifact: &[u8], key: &SigningKey) -> Result<Vec<u8>, SignError> {
    if !artifact.starts_with(&MAGIC) {
        return Err(SignError::NotAnArtifact(NotAnArtifactError));
    }
    if open(artifact).trailer.is_some() {
        return Err(SignError::AlreadySigned(AlreadySignedError));
    }
    let key_id = KeyId::of(&key.verifying_key());
    let mut out = Vec::with_capacity(artifact.len() + TRAILER_LEN);
    out.extend_from_slice(artifact);
    out.extend_from_slice(&key_id.0);
    let signature = key.sign(&out);
    out.extend_from_slice(&signature.to_bytes());
    out.extend_from_slice(&SIGNATURE_MAGIC);
    Ok(out)
}

/// Authenticates bytes under trusted keys (see the module doc) and returns the artifact's bytes,
/// not yet decoded, with who signed them.
pub fn check<'b>(bytes: &'b [u8], keys: &TrustedKeys) -> Result<(&'b [u8], Signer), TrustError> {
    let envelope = open(bytes);
    let Some(trailer) = envelope.trailer else {
        if keys.is_empty() {
            return Ok((envelope.artifact, Signer::Unsigned));
        }
        return Err(TrustError::Unsigned(UnsignedError));
    };
    if keys.is_empty() {
        return Ok((envelope.artifact, Signer::Unverified(trailer.key_id)));
    }
    let signature = ed25519_dalek::Signature::from_bytes(&trailer.signature);
    let mut known = false;
    for (id, key) in &keys.keys {
        if *id != trailer.key_id {
            continue;
        }
        known = true;
        if key.verify_strict(envelope.signed, &signature).is_ok() {
            return Ok((envelope.artifact, Signer::Verified(*id)));
        }
    }
    if known {
        Err(TrustError::BadSignature(BadSignatureError { key_id: trailer.key_id }))
    } else {
        Err(TrustError::UntrustedKey(UntrustedKeyError { key_id: trailer.key_id }))
    }
}

/// An artifact that passed [`crate::artifact::read_trusted`].
#[derive(Debug, Clone, PartialEq)]
pub struct Trusted {
    pub program: crate::program::Program,
    pub signer: Signer,
    /// [`digest`] of the bytes given (envelope included).
    pub digest: String,
}

// ---- key files -----------------------------------------------------------------------------

/// One key of a list: a PEM block or a base64 token.
enum Item<'t> {
    Pem(&'t str),
    Base64(&'t str),
}

/// Splits a key list into PEM blocks and base64 tokens.
fn items(text: &str) -> Result<Vec<Item<'_>>, KeyError> {
    let mut out = Vec::new();
    let mut rest = text.strip_prefix('\u{feff}').unwrap_or(text);
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        if rest.is_empty() {
            return Ok(out);
        }
        if rest.starts_with("-----BEGIN ") {
            let end =
                rest.find("-----END ").ok_or(KeyError::Pem(PemKeyError { reason: "no `-----END` line".into() }))?;
            let line_end = rest.get(end..).and_then(|s| s.find('\n')).map_or(rest.len(), |n| end + n);
            let (block, after) = rest.split_at(line_end);
            out.push(Item::Pem(block));
            rest = after;
        } else {
            let end = rest.find(|c: char| c.is_whitespace() || c == ',').unwrap_or(rest.len());
            let (token, after) = rest.split_at(end);
            out.push(Item::Base64(token));
            rest = after;
        }
    }
}

fn base64_32(token: &str, what: &'static str) -> Result<[u8; 32], KeyError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| KeyError::Encoding(EncodingError { what }))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| KeyError::Encoding(EncodingError { what }))
}

/// Parses public keys: SPKI PEM `PUBLIC KEY` blocks or base64 32-byte keys, separated by
/// whitespace or commas; at least one. Weak (small-order) keys are refused.
pub fn parse_public_keys(text: &str) -> Result<Vec<VerifyingKey>, KeyError> {
    let mut keys = Vec::new();
    for item in items(text)? {
        let key = match item {
            Item::Pem(block) => VerifyingKey::from_public_key_pem(block)
                .map_err(|e| KeyError::Pem(PemKeyError { reason: format!("not an Ed25519 `PUBLIC KEY`: {e}") }))?,
            Item::Base64(token) => {
                let raw = base64_32(token, "an Ed25519 public key")?;
                VerifyingKey::from_bytes(&raw).map_err(|_| KeyError::Weak(WeakKeyError))?
            }
        };
        if key.is_weak() {
            return Err(KeyError::Weak(WeakKeyError));
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(KeyError::NoKey(NoKeyError));
    }
    Ok(keys)
}

/// Parses a signing key: a PKCS#8 PEM `PRIVATE KEY` block or the base64 of a 32-byte seed.
/// Error messages never quote the key.
pub fn parse_signing_key(text: &str) -> Result<SigningKey, KeyError> {
    let items = items(text)?;
    let mut keys = Vec::new();
    for item in &items {
        keys.push(match item {
            Item::Pem(block) => SigningKey::from_pkcs8_pem(block).map_err(|_| {
                KeyError::Pem(PemKeyError {
                    reason: "not an unencrypted Ed25519 PKCS#8 `PRIVATE KEY` (make one with `openssl genpkey -algorithm ed25519`)"
                        .into(),
                })
            })?,
            Item::Base64(token) => SigningKey::from_bytes(&base64_32(token, "an Ed25519 seed")?),
        });
    }
    match keys.len() {
        0 => Err(KeyError::NoKey(NoKeyError)),
        1 => keys.pop().ok_or(KeyError::NoKey(NoKeyError)),
        n => Err(KeyError::SeveralKeys(SeveralKeysError { found: n })),
    }
}

// ---- errors --------------------------------------------------------------------------------

/// Why an artifact was refused under trusted keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// Trusted keys are configured and the artifact carries no signature.
    #[error(
        "artifact is not signed, and trusted keys are configured: only artifacts signed by a trusted key load (sign with `verdict compile --sign KEY`)"
    )]
    Unsigned(UnsignedError),
    /// The signature names a key that is not trusted.
    #[error("artifact is signed by key `{}`, which is not a trusted key", .0.key_id)]
    UntrustedKey(UntrustedKeyError),
    /// The signature names a trusted key but does not verify over the bytes.
    #[error("artifact signature by key `{}` does not verify: the artifact was changed after it was signed", .0.key_id)]
    BadSignature(BadSignatureError),
    /// The signature is fine (or not checked) and the artifact itself is refused.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsignedError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UntrustedKeyError {
    pub key_id: KeyId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSignatureError {
    pub key_id: KeyId,
}

/// Why key text was refused. Messages never quote key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No key in the text.
    #[error("no key found (expected a PEM block or a base64 32-byte key)")]
    NoKey(NoKeyError),
    /// A signing key file holds more than one key.
    #[error("expected one signing key, found {}", .0.found)]
    SeveralKeys(SeveralKeysError),
    /// A PEM block that is not an Ed25519 key of the expected kind.
    #[error("PEM key refused: {}", .0.reason)]
    Pem(PemKeyError),
    /// A token that is not the base64 of 32 bytes.
    #[error("expected {} as a PEM block or the base64 of 32 bytes", .0.what)]
    Encoding(EncodingError),
    /// A public key of small order (it would accept forged signatures).
    #[error("public key refused: not a valid Ed25519 key of full order")]
    Weak(WeakKeyError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoKeyError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeveralKeysError {
    pub found: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemKeyError {
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodingError {
    pub what: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeakKeyError;

/// Why bytes could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("only artifacts can be signed (bad magic number)")]
    NotAnArtifact(NotAnArtifactError),
    #[error("the artifact is already signed")]
    AlreadySigned(AlreadySignedError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAnArtifactError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlreadySignedError;

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn fake_artifact() -> Vec<u8> {
        let mut a = MAGIC.to_vec();
        a.extend_from_slice(&[1, 2, 3, 4]);
        a
    }

    #[test]
    fn sign_open_check() {
        let k = key(7);
        let signed = sign(&fake_artifact(), &k).unwrap_or_default();
        assert_eq!(signed.len(), fake_artifact().len() + TRAILER_LEN);
        let env = open(&signed);
        assert_eq!(env.artifact, fake_artifact().as_slice());
        assert_eq!(env.trailer.map(|t| t.key_id), Some(KeyId::of(&k.verifying_key())));
        let keys = TrustedKeys::new([k.verifying_key()]);
        assert_eq!(check(&signed, &keys).map(|(_, s)| s), Ok(Signer::Verified(KeyId::of(&k.verifying_key()))));
        let other = TrustedKeys::new([key(8).verifying_key()]);
        assert!(matches!(check(&signed, &other), Err(TrustError::UntrustedKey(_))));
        assert!(matches!(check(&fake_artifact(), &keys), Err(TrustError::Unsigned(_))));
        assert_eq!(check(&signed, &TrustedKeys::none()).map(|(a, _)| a.len()), Ok(fake_artifact().len()));
        assert!(matches!(sign(&signed, &k), Err(SignError::AlreadySigned(_))));
        assert!(matches!(sign(b"not an artifact", &k), Err(SignError::NotAnArtifact(_))));
    }

    #[test]
    fn key_lists() {
        let b64 = |k: &SigningKey| base64::engine::general_purpose::STANDARD.encode(k.verifying_key().as_bytes());
        let text = format!("{}, {}\n", b64(&key(1)), b64(&key(2)));
        assert_eq!(parse_public_keys(&text).map(|k| k.len()), Ok(2));
        assert!(matches!(parse_public_keys(" \n"), Err(KeyError::NoKey(_))));
        assert!(matches!(parse_public_keys("AAAA"), Err(KeyError::Encoding(_))));
        let seed = base64::engine::general_purpose::STANDARD.encode([3u8; 32]);
        assert_eq!(parse_signing_key(&seed).map(|k| k.to_bytes()), Ok([3u8; 32]));
        assert!(matches!(parse_signing_key(&format!("{seed} {seed}")), Err(KeyError::SeveralKeys(_))));
        // The identity point is of small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = base64::engine::general_purpose::STANDARD.encode(identity);
        assert!(matches!(parse_public_keys(&weak), Err(KeyError::Weak(_))));
    }
}
