//! The artifact loader: any bytes are a verified program or an error, never a panic. Mutated
//! bytes are read twice: as they are (the checksum refuses almost all of them), and with their
//! checksum recomputed, so that mutants reach the body decoder and `Program::verify`. A program
//! that loads must decide alike on the VM, on the JIT's native code (untraced), on the JIT from a
//! prepared request, and on the traced VM, for a few requests (`verdict_tests::hostile::check`).
//! The signature envelope is read under a trusted key too (it must refuse, never panic).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sha2::Digest;
use verdict_runtime::artifact;
use verdict_runtime::request::Request;
use verdict_runtime::signature::TrustedKeys;
use verdict_tests::hostile;

/// The artifact with its SHA-256 checksum (the last 32 bytes) recomputed over the rest.
fn reseal(data: &[u8]) -> Option<Vec<u8>> {
    let n = data.len().checked_sub(32)?;
    let mut out = data.to_vec();
    let digest = sha2::Sha256::digest(&data[..n]);
    out[n..].copy_from_slice(&digest);
    Some(out)
}

fn requests() -> Vec<Request> {
    [
        "{}",
        r#"{"subject": {"role": "admin", "id": "u-1"}, "action": "update", "resource": {"type": "gradebook", "tags": ["locked"]}}"#,
        r#"{"subject": {"role": "student"}, "action": "read", "resource": {"owner": "u-1", "tags": []}, "data": {"amount": 3}}"#,
    ]
    .iter()
    .filter_map(|t| Request::from_json(t.as_bytes()).ok())
    .collect()
}

fuzz_target!(|data: &[u8]| {
    let _ = artifact::read(data);
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
    let _ = artifact::read_trusted(data, &TrustedKeys::new([key]));
    let Some(resealed) = reseal(data) else { return };
    let Ok(program) = artifact::read(&resealed) else { return };
    if let Err(e) = hostile::check(&program, &requests()) {
        panic!("{e}");
    }
});
