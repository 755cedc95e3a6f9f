//! Artifact signing keys for `compile --sign`, and the trusted public keys of `eval` and `serve`
//! (`--trusted-key FILE`, repeatable, and the `VERDICT_TRUSTED_KEYS` environment variable).
//!
//! Formats (see `verdict_runtime::signature`): a signing key is a PKCS#8 PEM `PRIVATE KEY`
//! (`openssl genpkey -algorithm ed25519 -out signing.pem`) or the base64 of a 32-byte seed; public
//! keys are SPKI PEM `PUBLIC KEY` blocks (`openssl pkey -in signing.pem -pubout -out signing.pub`)
//! or base64 32-byte keys, separated by whitespace or commas, in a file or in the variable.
//! A key that cannot be read stops the command (exit 2): trust is never silently dropped.

use std::path::{Path, PathBuf};
use verdict_runtime::signature::{self, TrustedKeys};

/// The environment variable with trusted public keys (inline, not file names).
pub const TRUSTED_KEYS_ENV: &str = "VERDICT_TRUSTED_KEYS";

/// Reads the signing key of `--sign`.
pub fn signing_key(path: &Path) -> Result<ed25519_dalek::SigningKey, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read the signing key {}: {e}", path.display()))?;
    signature::parse_signing_key(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The trusted keys of `--trusted-key FILE` flags and `VERDICT_TRUSTED_KEYS` together. A variable
/// that is set must hold at least one key.
pub fn trusted_keys(files: &[PathBuf]) -> Result<TrustedKeys, String> {
    let mut keys = TrustedKeys::none();
    for path in files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the trusted key {}: {e}", path.display()))?;
        keys.extend(signature::parse_public_keys(&text).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    if let Some(value) = std::env::var_os(TRUSTED_KEYS_ENV) {
        let text = value.into_string().map_err(|_| format!("`{TRUSTED_KEYS_ENV}` is not UTF-8"))?;
        keys.extend(signature::parse_public_keys(&text).map_err(|e| format!("`{TRUSTED_KEYS_ENV}`: {e}"))?);
    }
    Ok(keys)
}
