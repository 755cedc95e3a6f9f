//! Signed artifacts end to end with the real binary and keys made by the documented OpenSSL
//! commands: `verdict compile --sign`, `verdict eval --trusted-key` (and `VERDICT_TRUSTED_KEYS`),
//! refusals with exit code 2 and the reason, and `verdict serve --trusted-key` refusing to start
//! on an unsigned bundle. Needs `openssl` (installed by `.ci/run`; a failure when `CI` is set).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_verdict");
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const BUNDLE: &str = "examples/quickstart/bundle.yaml";
const CTX: &str = "examples/quickstart/ctx.json";

fn dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("signed-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(cmd: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.arg(cmd).args(args).current_dir(WORKSPACE).env("NO_COLOR", "1").env_remove("VERDICT_TRUSTED_KEYS");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs the key commands the README documents; `None` where OpenSSL is missing (outside CI).
fn openssl_keys(d: &Path, name: &str) -> Option<(PathBuf, PathBuf)> {
    let private = d.join(format!("{name}.pem"));
    let public = d.join(format!("{name}.pub"));
    let generated = Command::new("openssl").args(["genpkey", "-algorithm", "ed25519", "-out", s(&private)]).output();
    let Ok(generated) = generated else {
        assert!(std::env::var_os("CI").is_none(), "openssl is required in CI (.ci/run installs it)");
        eprintln!("notice: skipping the signed-artifact CLI test: `openssl` is not installed");
        return None;
    };
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    let out =
        Command::new("openssl").args(["pkey", "-in", s(&private), "-pubout", "-out", s(&public)]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Some((private, public))
}

#[test]
fn compile_sign_and_eval_with_a_trusted_key() {
    let d = dir("eval");
    let Some((private, public)) = openssl_keys(&d, "publisher") else { return };
    let Some((other_private, other_public)) = openssl_keys(&d, "other") else { return };
    let signed = d.join("gate.vdc");
    let out = run("compile", &[BUNDLE, "-o", s(&signed), "--sign", s(&private)], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let unsigned = d.join("unsigned.vdc");
    assert_eq!(run("compile", &[BUNDLE, "-o", s(&unsigned)], &[]).status.code(), Some(0));
    let foreign = d.join("foreign.vdc");
    assert_eq!(run("compile", &[BUNDLE, "-o", s(&foreign), "--sign", s(&other_private)], &[]).status.code(), Some(0));

    // Signed by the trusted key: decides (allow, exit 0) on both backends.
    for backend in ["jit", "vm"] {
        let out = run("eval", &[s(&signed), CTX, "--trusted-key", s(&public), "--backend", backend], &[]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["decision"]["kind"], "allow");
    }
    // Several keys (a file with two, or two flags) and the environment variable work too.
    let ring = d.join("ring.pub");
    let ring_text = std::fs::read_to_string(&other_public).unwrap() + &std::fs::read_to_string(&public).unwrap();
    std::fs::write(&ring, ring_text).unwrap();
    let pem = std::fs::read_to_string(&public).unwrap();
    for (args, env) in [
        (vec![s(&signed), CTX, "--trusted-key", s(&ring)], vec![]),
        (vec![s(&signed), CTX, "--trusted-key", s(&other_public), "--trusted-key", s(&public)], vec![]),
        (vec![s(&signed), CTX], vec![("VERDICT_TRUSTED_KEYS", pem.as_str())]),
    ] {
        let out = run("eval", &args, &env);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    }
    // Without keys, signed and unsigned artifacts evaluate (signatures are not checked then).
    for f in [&signed, &unsigned, &foreign] {
        assert_eq!(run("eval", &[s(f), CTX], &[]).status.code(), Some(0), "{}", f.display());
    }
    // With a key: unsigned, foreign, tampered and source bundles are refused (exit 2, a reason).
    let mut tampered = std::fs::read(&signed).unwrap();
    let mid = tampered.len() / 3;
    tampered[mid] ^= 0x01;
    let tampered_path = d.join("tampered.vdc");
    std::fs::write(&tampered_path, tampered).unwrap();
    for (file, why) in [
        (s(&unsigned), "not signed"),
        (s(&foreign), "not a trusted key"),
        (s(&tampered_path), "does not verify"),
        (BUNDLE, "not a signed artifact"),
    ] {
        let out = run("eval", &[file, CTX, "--trusted-key", s(&public)], &[]);
        assert_eq!(out.status.code(), Some(2), "{file}: {}", stderr(&out));
        assert!(stderr(&out).contains(why), "{file}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{file}: no decision is printed");
    }
    // Bad key material stops the command: never silently no keys.
    let out = run("eval", &[s(&signed), CTX], &[("VERDICT_TRUSTED_KEYS", "")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("VERDICT_TRUSTED_KEYS"), "{}", stderr(&out));
    let out = run("eval", &[s(&signed), CTX, "--trusted-key", s(&private)], &[]);
    assert_eq!(out.status.code(), Some(2), "a private key is not a public key: {}", stderr(&out));
    assert!(!stderr(&out).contains("PRIVATE"), "{}", stderr(&out));
    let out = run("compile", &[BUNDLE, "-o", s(&d.join("x.vdc")), "--sign", s(&public)], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!d.join("x.vdc").exists());
    let out = run("compile", &[BUNDLE, "--emit", "asm", "--sign", s(&private)], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn serve_with_a_trusted_key_refuses_to_start_on_an_unsigned_bundle() {
    let d = dir("serve");
    let Some((_, public)) = openssl_keys(&d, "publisher") else { return };
    let unsigned = d.join("unsigned.vdc");
    assert_eq!(run("compile", &[BUNDLE, "-o", s(&unsigned)], &[]).status.code(), Some(0));
    let out =
        run("serve", &[s(&unsigned), "--bind", "127.0.0.1:0", "--insecure-no-auth", "--trusted-key", s(&public)], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not signed"), "{}", stderr(&out));
}
