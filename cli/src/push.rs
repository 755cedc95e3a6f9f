//! `verdict push`: publishes a bundle to Redis as a new revision and makes it the active one, for
//! every `verdict serve --bundles-from` replica to load (TOOLCHAIN.md; the key layout and the
//! compare-and-swap are in `verdict_store_redis::bundles`).
//!
//! What is pushed is an artifact: a source (or a Decision Card with the trust flags) is compiled
//! first, and signed with `--sign`; an artifact is pushed as it is (signed with `--sign` if it
//! is not yet). Before anything is written, the bytes are read back as a replica would read them,
//! under the trusted keys given (`--trusted-key`, `VERDICT_TRUSTED_KEYS`), so a push that
//! replicas with those keys would refuse is refused here.
//!
//! Exit codes: 0 pushed, or already the active revision; 1 not pushed: the bundle does not compile
//! or load, or `--expect` does not hold (another revision is active); 2 unreadable input, a bad
//! flag or key, Redis unreachable.

use crate::{Format, card, keys, load, render};
use serde_json::json;
use std::path::{Path, PathBuf};
use verdict_runtime::{artifact, signature};
use verdict_store_redis::bundles::{BundleOptions, BundleSource, Expect, PushStatus, SourceError};

/// The flags of `verdict push`.
#[derive(clap::Args)]
pub struct PushArgs {
    /// The Redis to push to: `redis://[:password@]host[:port][/db]` (`rediss://` for TLS is not built in).
    pub url: String,
    /// A bundle source (.verdict, .yaml/.yml, .json), a Decision Card (with the trust flags), or a
    /// compiled artifact (recognised by its header).
    pub source: PathBuf,
    #[command(flatten)]
    pub trust: card::TrustArgs,
    /// Sign the artifact with this Ed25519 key (PKCS#8 PEM or a base64 32-byte seed), for
    /// replicas started with `--trusted-key`.
    #[arg(long, value_name = "KEYFILE")]
    pub sign: Option<PathBuf>,
    /// Check the artifact as replicas with this trusted public key would, before pushing
    /// (repeatable; also `VERDICT_TRUSTED_KEYS`).
    #[arg(long = "trusted-key", value_name = "PUBKEY")]
    pub trusted_keys: Vec<PathBuf>,
    /// Compare-and-swap: push only if this revision is the active one (`none`: only if the bundle
    /// has no revision yet). Without it, the push replaces whatever is active.
    #[arg(long, value_name = "REVISION|none")]
    pub expect: Option<String>,
    /// The prefix of every key (replicas must use the same `--bundles-prefix`).
    #[arg(long, value_name = "PREFIX", default_value = "verdict:")]
    pub prefix: String,
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
}

pub fn run(args: &PushArgs) -> u8 {
    let key = match args.sign.as_deref().map(keys::signing_key).transpose() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let trusted = match keys::trusted_keys(&args.trusted_keys) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let source = match BundleSource::open(
        &args.url,
        BundleOptions { prefix: args.prefix.clone(), ..BundleOptions::default() },
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let bytes = match artifact_of(&args.source, &args.trust, key.as_ref()) {
        Ok(b) => b,
        Err(code) => return code,
    };
    // Read back as a replica reads it: the same bytes, under the keys given.
    let bundle_id = match artifact::read_trusted(&bytes, &trusted) {
        Ok(t) => t.program.bundle_id,
        Err(e) => {
            eprintln!("error: {}: {e}", args.source.display());
            return 1;
        }
    };
    let expect = match args.expect.as_deref() {
        None => Expect::Any,
        Some("none") => Expect::Nothing,
        Some(r) => Expect::Revision(r.to_owned()),
    };
    let pushed = match source.push(&bundle_id, &bytes, &expect) {
        Ok(p) => p,
        Err(e @ SourceError::Conflict(_)) => {
            eprintln!("error: not pushed: {e}");
            return 1;
        }
        Err(e) => {
            eprintln!("error: not pushed: {e}");
            return 2;
        }
    };
    let text = match args.format {
        Format::Json => json!({
            "bundle_id": pushed.bundle_id,
            "revision": pushed.revision,
            "previous": pushed.previous,
            "status": pushed.status.as_str(),
            "notified": pushed.notified,
        })
        .to_string(),
        Format::Human => match pushed.status {
            PushStatus::Unchanged => {
                format!("bundle `{}`: revision {} is already active", pushed.bundle_id, pushed.revision)
            }
            PushStatus::Activated => format!(
                "bundle `{}`: revision {} is active (was {}); {} replica(s) notified at once, the others check within their poll interval",
                pushed.bundle_id,
                pushed.revision,
                pushed.previous.as_deref().unwrap_or("none"),
                pushed.notified
            ),
        },
    };
    match render::stdout_line(&text) {
        Ok(()) => 0,
        Err(code) => code,
    }
}

/// The artifact bytes to push: a source or card compiled (and signed), or an artifact as it is
/// (signed if a key is given). The error is the exit code (reported on standard error).
fn artifact_of(path: &Path, trust: &card::TrustArgs, key: Option<&ed25519_dalek::SigningKey>) -> Result<Vec<u8>, u8> {
    let limit = BundleOptions::default().max_bytes;
    let raw = match render::read_limited(path, limit) {
        Ok(b) => b,
        Err(render::ReadError::Io(e)) => {
            eprintln!("error: cannot read {}: {e}", path.display());
            return Err(2);
        }
        Err(render::ReadError::TooLarge(n)) => {
            eprintln!("error: {}: {n} bytes, more than a revision may hold ({limit})", path.display());
            return Err(2);
        }
    };
    let unsigned = match load::Input::of_bytes(path, raw)? {
        load::Input::Artifact(raw) => {
            if key.is_some() && signature::open(&raw).trailer.is_some() {
                eprintln!("error: {}: the artifact is already signed", path.display());
                return Err(2);
            }
            raw
        }
        load::Input::Source(file) => {
            let bundle = card::bundle_of(&file, trust, jiff::Timestamp::now())?;
            artifact::write(&verdict_compiler::codegen::program(&bundle))
        }
    };
    match key {
        None => Ok(unsigned),
        Some(k) => signature::sign(&unsigned, k).map_err(|e| {
            eprintln!("error: cannot sign the artifact: {e}");
            2
        }),
    }
}
