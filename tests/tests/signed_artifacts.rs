//! Signed artifacts (`runtime::signature`, `artifact::read_trusted`): a signed artifact loads and
//! decides under its key; under trusted keys every single-byte change — in the body, the
//! checksum, the key id, the signature or the magic, with the artifact's checksum recomputed so
//! that only the signature can tell — is refused with the reason it names; a crafted artifact that
//! copies a real bundle's id and fingerprint with its default flipped to allow is refused whatever
//! signature it carries; without trusted keys, signed and unsigned artifacts load and the digest
//! of the bytes tells them apart.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, reason = "test code over fixed, known-good data")]

use ed25519_dalek::SigningKey;
use sha2::Digest;
use verdict_compiler::source::SourceFile;
use verdict_runtime::artifact;
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::program::Program;
use verdict_runtime::request::Request;
use verdict_runtime::signature::{self, KeyId, Signer, TRAILER_LEN, TrustError, TrustedKeys};
use verdict_runtime::vm::Engine;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn program_of(path: &str) -> Program {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join(path)).unwrap();
    let compiled = verdict_compiler::compile(&SourceFile::new(path, text));
    let bundle = compiled.bundle.unwrap_or_else(|| unreachable!("{path}: {:?}", compiled.diagnostics));
    verdict_compiler::codegen::program(&bundle)
}

fn examples() -> Vec<Program> {
    ["examples/quickstart/bundle.yaml", "examples/ownership/bundle.yaml", "examples/priority/bundle.verdict"]
        .iter()
        .map(|p| program_of(p))
        .collect()
}

/// A student updating an unlocked gradebook: the quickstart denies it (no admin).
fn student_update() -> Request {
    Request::from_json(
        br#"{"subject": {"id": "u-42", "role": "student"}, "action": "update", "resource": {"type": "gradebook", "id": "gb-3", "tags": []}, "data": {}}"#,
    )
    .unwrap()
}

fn decide(program: Program, req: &Request) -> String {
    let engine = Engine::new(program).unwrap();
    engine.evaluate(req, &Env::at(jiff::Timestamp::UNIX_EPOCH), Mode::PLAIN).decision.kind
}

/// Recomputes the checksum of the artifact inside signed bytes, so only the signature is wrong.
fn reseal_inner(mut signed: Vec<u8>) -> Vec<u8> {
    let end = signed.len() - TRAILER_LEN;
    let digest = sha2::Sha256::digest(&signed[..end - 32]);
    signed[end - 32..end].copy_from_slice(&digest);
    signed
}

#[test]
fn a_signed_artifact_loads_and_decides_under_its_key() {
    let k = key(1);
    let keys = TrustedKeys::new([key(9).verifying_key(), k.verifying_key()]);
    for p in examples() {
        let bytes = artifact::write(&p);
        let signed = signature::sign(&bytes, &k).unwrap();
        assert_eq!(&signed[..bytes.len()], &bytes[..], "the envelope leaves the artifact as it is");
        let trusted = artifact::read_trusted(&signed, &keys).unwrap();
        assert_eq!(trusted.program, p);
        assert_eq!(trusted.signer, Signer::Verified(KeyId::of(&k.verifying_key())));
        assert_eq!(trusted.digest, format!("sha256:{}", hex(&sha2::Sha256::digest(&signed))));
        let req = student_update();
        assert_eq!(decide(trusted.program, &req), decide(p.clone(), &req));
        // Without trusted keys, signed and unsigned artifacts load (the signature unchecked).
        let loose = artifact::read_trusted(&signed, &TrustedKeys::none()).unwrap();
        assert_eq!((loose.program, loose.signer), (p.clone(), Signer::Unverified(KeyId::of(&k.verifying_key()))));
        let plain = artifact::read_trusted(&bytes, &TrustedKeys::none()).unwrap();
        assert_eq!((plain.program, plain.signer), (p, Signer::Unsigned));
        assert_ne!(plain.digest, trusted.digest);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_byte_flip_of_a_signed_artifact_is_refused_under_trusted_keys() {
    let k = key(1);
    let keys = TrustedKeys::new([k.verifying_key()]);
    let mut checked = 0;
    for p in examples() {
        let signed = signature::sign(&artifact::write(&p), &k).unwrap();
        let n = signed.len();
        let (checksum, key_id, sig, magic) = (n - TRAILER_LEN - 32, n - TRAILER_LEN, n - 72, n - 8);
        for i in 0..n {
            let mut b = signed.clone();
            b[i] ^= 0x01;
            // Inside the artifact, the checksum is made right again: only the signature can tell.
            let b = if i < checksum { reseal_inner(b) } else { b };
            let got = artifact::read_trusted(&b, &keys);
            let expected = match i {
                _ if i < key_id => matches!(got, Err(TrustError::BadSignature(_))),
                _ if i < sig => matches!(got, Err(TrustError::UntrustedKey(_))),
                _ if i < magic => matches!(got, Err(TrustError::BadSignature(_))),
                _ => matches!(got, Err(TrustError::Unsigned(_))),
            };
            assert!(expected, "{}: flip at byte {i} of {n}: {got:?}", p.bundle_id);
            checked += 1;
        }
        // Truncations and extensions are refused too.
        for len in [0, 8, n - TRAILER_LEN, n - 1] {
            assert!(artifact::read_trusted(&signed[..len], &keys).is_err(), "truncated to {len}");
        }
        let mut longer = signed.clone();
        longer.push(0);
        assert!(matches!(artifact::read_trusted(&longer, &keys), Err(TrustError::Unsigned(_))));
    }
    assert!(checked > 3000, "{checked}");
}

#[test]
fn a_crafted_artifact_claiming_a_real_bundle_is_refused() {
    let real = program_of("examples/quickstart/bundle.yaml");
    let allow = real.effects.iter().position(|e| e == "allow").unwrap() as u32;
    let mut crafted = real.clone();
    for pol in &mut crafted.policies {
        pol.default = Some(allow);
    }
    // Same id, version and fingerprint: the artifact claims to be the real bundle.
    assert_eq!(
        (&crafted.bundle_id, &crafted.version, &crafted.fingerprint),
        (&real.bundle_id, &real.version, &real.fingerprint)
    );
    let req = student_update();
    assert_eq!(decide(real.clone(), &req), "deny");
    assert_eq!(decide(crafted.clone(), &req), "allow", "the crafted artifact would fail open");

    let publisher = key(1);
    let keys = TrustedKeys::new([publisher.verifying_key()]);
    let genuine = signature::sign(&artifact::write(&real), &publisher).unwrap();
    let crafted_bytes = artifact::write(&crafted);
    // Unsigned: refused.
    let err = artifact::read_trusted(&crafted_bytes, &keys).unwrap_err();
    assert!(matches!(err, TrustError::Unsigned(_)), "{err:?}");
    assert!(err.to_string().contains("not signed"), "{err}");
    // Signed by another key: refused, naming the key.
    let attacker = key(2);
    let err = artifact::read_trusted(&signature::sign(&crafted_bytes, &attacker).unwrap(), &keys).unwrap_err();
    assert_eq!(
        err,
        TrustError::UntrustedKey(signature::UntrustedKeyError { key_id: KeyId::of(&attacker.verifying_key()) })
    );
    assert!(err.to_string().contains(&KeyId::of(&attacker.verifying_key()).to_string()), "{err}");
    // The genuine artifact's trailer moved onto the crafted bytes: refused.
    let mut spliced = crafted_bytes.clone();
    spliced.extend_from_slice(&genuine[genuine.len() - TRAILER_LEN..]);
    let err = artifact::read_trusted(&spliced, &keys).unwrap_err();
    assert!(matches!(err, TrustError::BadSignature(_)), "{err:?}");
    assert!(err.to_string().contains("does not verify"), "{err}");
    // The genuine one loads.
    assert_eq!(artifact::read_trusted(&genuine, &keys).unwrap().program, real);
    // Without trusted keys the crafted artifact loads (a checksum is no authentication), but the
    // digest of its bytes is not the genuine artifact's: that is what the service reports.
    // A copied trailer names the publisher's key, but unverified it vouches for nothing.
    let loose = artifact::read_trusted(&spliced, &TrustedKeys::none()).unwrap();
    assert_eq!(loose.signer, Signer::Unverified(KeyId::of(&publisher.verifying_key())));
    assert_eq!(loose.signer.verified(), None);
    assert_ne!(loose.digest, signature::digest(&genuine));
    let loose = artifact::read_trusted(&crafted_bytes, &TrustedKeys::none()).unwrap();
    assert_ne!(loose.digest, signature::digest(&artifact::write(&real)));
}

#[test]
fn key_texts_in_every_form() {
    use base64::Engine as _;
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
    let k = key(5);
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let pem_pub = k.verifying_key().to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF).unwrap();
    let pem_priv = k.to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF).unwrap();
    for text in [pem_pub.clone(), b64(k.verifying_key().as_bytes()), format!("\u{feff}{pem_pub}\n")] {
        assert_eq!(signature::parse_public_keys(&text), Ok(vec![k.verifying_key()]), "{text}");
    }
    let ring =
        format!("{pem_pub}\n{},{}", b64(key(6).verifying_key().as_bytes()), b64(key(7).verifying_key().as_bytes()));
    assert_eq!(TrustedKeys::parse(&ring).map(|t| t.len()), Ok(3));
    for text in [pem_priv.to_string(), b64(&[5u8; 32])] {
        assert_eq!(signature::parse_signing_key(&text).map(|s| s.to_bytes()), Ok([5u8; 32]));
    }
    // A private key where a public key belongs (and the reverse) is refused without quoting it.
    let err = signature::parse_public_keys(&pem_priv).unwrap_err();
    assert!(!err.to_string().contains(&b64(&[5u8; 32])), "{err}");
    assert!(signature::parse_signing_key(&pem_pub).is_err());
    assert!(signature::parse_public_keys("-----BEGIN PUBLIC KEY-----\nAAAA").is_err());
    assert!(signature::parse_public_keys(&b64(&[1u8; 31])).is_err());
}
