//! `verdict card` and `verdict eval` on Decision Cards, end to end on the real binary: the
//! corpus's signed, tampered and refused cards, output forms, and exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_verdict");
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const KEY_URL: &str = "https://buyer.example/keys/ed25519.pub";
const KEY_HEX: &str = "f21f7a5debf49ad2ea78559f542e23a0cd6b2cbe824f387ab64ed1d70b61516c";

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(WORKSPACE)
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn scratch_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("card-cli");
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn scratch(name: &str, text: &str) -> PathBuf {
    let path = scratch_dir().join(name);
    fs::write(&path, text).unwrap();
    path
}

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Line `n` (0-based) of the corpus: the card and its attestation written to scratch files.
fn corpus(n: usize) -> (PathBuf, Option<PathBuf>, Value) {
    let text = fs::read_to_string(Path::new(WORKSPACE).join("tests/conformance/decision-cards.jsonl")).unwrap();
    let case: Value = serde_json::from_str(text.lines().nth(n).unwrap()).unwrap();
    let card = scratch(&format!("card-{n}.json"), &serde_json::to_string_pretty(&case["card"]).unwrap());
    let att = case["attestation"]
        .is_object()
        .then(|| scratch(&format!("att-{n}.json"), &serde_json::to_string_pretty(&case["attestation"]).unwrap()));
    (card, att, case)
}

fn with_trust<'a>(args: &mut Vec<&'a str>, att: &'a Path) {
    args.extend(["--attestation", arg(att), "--trusted-key-url", KEY_URL, "--trusted-public-key", KEY_HEX]);
}

#[test]
fn rejected_card_needs_no_trust_and_prints_yaml() {
    let (card, _, case) = corpus(0);
    let out = run(&["card", arg(&card)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let yaml = String::from_utf8(out.stdout).unwrap();
    assert!(yaml.starts_with("bundle_id: decision-card-dc-563\n"), "{yaml}");
    // The YAML is a bundle `verdict check` accepts.
    let path = scratch("rejected.yaml", &yaml);
    let check = run(&["check", arg(&path)]);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    assert_eq!(case["bundle"]["bundle_id"], "decision-card-dc-563");
}

#[test]
fn signed_card_converts_to_every_form() {
    let (card, att, case) = corpus(7);
    let att = att.unwrap();
    for ext in ["json", "yaml", "yml", "verdict"] {
        let out_path = scratch_dir().join(format!("conditional.{ext}"));
        let _ = fs::remove_file(&out_path);
        let mut args = vec!["card", arg(&card)];
        with_trust(&mut args, &att);
        args.extend(["-o", arg(&out_path)]);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(0), "{ext}: {}", stderr(&out));
        let check = run(&["check", arg(&out_path)]);
        assert_eq!(check.status.code(), Some(0), "{ext}: {}", stderr(&check));
        if ext == "json" {
            let v: Value = serde_json::from_str(&fs::read_to_string(&out_path).unwrap()).unwrap();
            assert_eq!(v["bundle_id"], case["bundle"]["bundle_id"]);
            assert_eq!(v["card_scope"], case["bundle"]["card_scope"]);
            assert_eq!(v["policies"].as_array().unwrap().len(), 3);
        }
    }
}

#[test]
fn refusals_exit_1_and_say_why() {
    // (corpus line, what stderr must mention, where)
    for (n, want, file) in [
        (9, "signature does not verify", "att-9.json:7:16"),
        (10, "does not match the attestation", "att-10.json:6:18"),
        (11, "no matching trusted buyer key", "att-11.json:4:14"),
        (12, "`subject.vendor_id`", "card-12.json"),
        (15, "version `0.1`", "card-15.json:2:28"),
        (16, "`surprise`", "card-16.json"),
        (17, "duplicate condition id `a`", "card-17.json"),
        (18, "timezone-qualified `issued_at`", "card-18.json:4:16"),
    ] {
        let (card, att, _) = corpus(n);
        let mut args = vec!["card", arg(&card)];
        if let Some(a) = &att {
            with_trust(&mut args, a);
        }
        let out = run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "line {n}: {err}");
        assert!(err.contains(want) && err.contains(file), "line {n}: expected `{want}` at {file}:\n{err}");
        assert!(out.stdout.is_empty());
    }
    // An approved card without the trust flags.
    let (card, _, _) = corpus(6);
    let out = run(&["card", arg(&card)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--trusted-public-key"), "{}", stderr(&out));
    // A wrong pinned key.
    let (card, att, _) = corpus(6);
    let other = "0".repeat(63) + "1";
    let att = att.unwrap();
    let out = run(&[
        "card",
        arg(&card),
        "--attestation",
        arg(&att),
        "--trusted-key-url",
        KEY_URL,
        "--trusted-public-key",
        &other,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // Duplicate keys make a card ambiguous.
    let dup =
        scratch("dup.json", "{\"decision_card_version\": \"0.1\", \"decision_id\": \"a\", \"decision_id\": \"b\"}");
    let out = run(&["card", arg(&dup)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("duplicate key `decision_id`"), "{}", stderr(&out));
}

#[test]
fn unreadable_input_exits_2() {
    let (card, att, _) = corpus(6);
    let att = att.unwrap();
    let not_json = scratch("not-json.json", "{\"decision_id\": ");
    let cases: Vec<Vec<&str>> = vec![
        vec!["card", "no/such/card.json"],
        vec!["card", arg(&not_json)],
        vec![
            "card",
            arg(&card),
            "--attestation",
            "no/such/att.json",
            "--trusted-key-url",
            KEY_URL,
            "--trusted-public-key",
            KEY_HEX,
        ],
        vec![
            "card",
            arg(&card),
            "--attestation",
            arg(&att),
            "--trusted-key-url",
            KEY_URL,
            "--trusted-public-key",
            "abc",
        ],
        vec!["card", arg(&card), "--trusted-key-url", KEY_URL],
        vec!["card", arg(&card), "-o", "out.txt"],
    ];
    for args in cases {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn a_card_compiles_to_an_artifact() {
    let (card, att, _) = corpus(6);
    let att = att.unwrap();
    let allow =
        scratch("vdc-use.json", r#"{"subject": {"id": "u-1"}, "action": "use", "resource": {"vendor_id": "v-1"}}"#);
    let deny =
        scratch("vdc-train.json", r#"{"subject": {"id": "u-1"}, "action": "train", "resource": {"vendor_id": "v-1"}}"#);
    // `verdict card -o X.vdc` and `verdict compile CARD` write the same artifact.
    let by_card = scratch_dir().join("card.vdc");
    let by_compile = scratch_dir().join("compiled-card.vdc");
    let mut args = vec!["card", arg(&card), "-o", arg(&by_card)];
    with_trust(&mut args, &att);
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut args = vec!["compile", arg(&card), "-o", arg(&by_compile)];
    with_trust(&mut args, &att);
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(fs::read(&by_card).unwrap(), fs::read(&by_compile).unwrap());
    // The artifact decides as the card does, on every backend.
    for backend in ["jit", "vm"] {
        for (ctx, code, kind) in [(&allow, 0, "allow"), (&deny, 1, "deny")] {
            let out = run(&["eval", arg(&by_card), arg(ctx), "--backend", backend]);
            assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["decision"]["kind"], kind, "{v:#}");
            assert_eq!(v["bundle_id"], "decision-card-dc-562");
        }
    }
    // Without the trust flags the approved card is refused, and nothing is written.
    let refused = scratch_dir().join("refused-card.vdc");
    let _ = fs::remove_file(&refused);
    let out = run(&["compile", arg(&card), "-o", arg(&refused)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("trusted buyer key"), "{}", stderr(&out));
    assert!(!refused.exists());
}

#[test]
fn eval_accepts_a_card_with_the_trust_flags() {
    let (card, att, _) = corpus(6);
    let att = att.unwrap();
    let allow = scratch("use.json", r#"{"subject": {"id": "u-1"}, "action": "use", "resource": {"vendor_id": "v-1"}}"#);
    let deny =
        scratch("train.json", r#"{"subject": {"id": "u-1"}, "action": "train", "resource": {"vendor_id": "v-1"}}"#);
    for (ctx, code, kind) in [(&allow, 0, "allow"), (&deny, 1, "deny")] {
        let mut args = vec!["eval", arg(&card), arg(ctx)];
        with_trust(&mut args, &att);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["decision"]["kind"], kind, "{v:#}");
        assert_eq!(v["bundle_id"], "decision-card-dc-562");
    }
    // Without the flags an approved card is refused: bad input for `eval`.
    let out = run(&["eval", arg(&card), arg(&allow)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("trusted buyer key"), "{}", stderr(&out));
    // A rejected card is recognised as a card by its content and denies.
    let (rejected, _, _) = corpus(0);
    let out = run(&["eval", arg(&rejected), arg(&allow)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"]["matched_rule_id"], "rejected-deny");
    // `--now` is the clock of the attestation check too: before the card was signed, it is
    // dated in the future.
    let mut args = vec!["eval", arg(&card), arg(&allow), "--now", "2025-06-01T00:00:00Z"];
    with_trust(&mut args, &att);
    let out = run(&args);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("dated in the future"), "{}", stderr(&out));
    // Bundles still evaluate as before.
    let out = run(&["eval", "examples/quickstart/bundle.yaml", "examples/quickstart/ctx.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
