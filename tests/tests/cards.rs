//! Decision Cards: every case of the vendored `decision-cards.jsonl` (the reference's bundles and
//! decisions for real signed and tampered cards, and its refusals), then the checks the corpus
//! does not reach, on cards signed here with a test key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use verdict_compiler::card::{self, CardError, CardOptions, Input, Trust};
use verdict_compiler::interp::Interpreter;
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::request::Request;
use verdict_tests::compare;

/// The attestation check needs a clock; the corpus was signed on 2026-01-02, so any later
/// instant accepts it. A fixed one keeps the tests deterministic.
fn fixed_now() -> jiff::Timestamp {
    "2030-01-01T00:00:00Z".parse().unwrap()
}

fn use_only() -> Vec<String> {
    vec!["use".to_owned()]
}

fn convert(
    card: &Value,
    attestation: Option<&Value>,
    trust: &Trust,
    now: jiff::Timestamp,
) -> Result<card::CardBundle, CardError> {
    let actions = use_only();
    let opts = CardOptions { attestation, trust: Some(trust), allowed_actions: Some(&actions), now };
    card::compile(card, &opts)
}

/// What our refusal must mention for each of the reference's refusal messages: the same reason,
/// in our words.
fn expected_reason(name: &str, reference: &str) -> &'static str {
    match (name, reference) {
        ("tamper-sig:approved", _) => "signature does not verify",
        ("tamper-card:approved", _) => "does not match the attestation",
        (_, r) if r.contains("no matching trusted buyer key") => "no matching trusted buyer key",
        (_, r) if r.contains("subject.vendor_id") => "`subject.vendor_id`",
        (_, r) if r.contains("effective_until") => "`decision.effective_until`",
        (_, r) if r.contains("must use approved-with-conditions") => "`approved-with-conditions`",
        (_, r) if r.contains("version 0.1") => "version `0.1`",
        (_, r) if r.contains("unsupported Decision Card fields") => "`surprise`",
        (_, r) if r.contains("duplicate condition id") => "duplicate condition id `a`",
        (_, r) if r.contains("timezone-qualified issued_at") => "timezone-qualified `issued_at`",
        _ => panic!("no expected reason for {name}: {reference}"),
    }
}

/// Compares our bundle JSON with the reference's: every key, the effective window as instants.
fn compare_bundle(ours: &Value, reference: &Value) -> Result<(), String> {
    let (Some(a), Some(b)) = (ours.as_object(), reference.as_object()) else {
        return Err("bundles are objects".into());
    };
    let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
    if keys(a) != keys(b) {
        return Err(format!("bundle keys: got {:?} want {:?}", keys(a), keys(b)));
    }
    for (k, want) in b {
        let got = &a[k];
        let same = match k.as_str() {
            "effective_from" | "effective_until" => {
                let t = |v: &Value| v.as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok());
                t(got).is_some() && t(got) == t(want)
            }
            _ => got == want,
        };
        if !same {
            return Err(format!("bundle.{k}: got {got} want {want}"));
        }
    }
    Ok(())
}

#[test]
fn every_conformance_card() {
    let text = include_str!("../conformance/decision-cards.jsonl");
    let mut failures = Vec::new();
    let (mut accepted, mut refused, mut decisions) = (0, 0, 0);
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let line_no = i + 1;
        let case: Value = serde_json::from_str(line).unwrap();
        let name = case["name"].as_str().unwrap();
        let trust = Trust::from_hex(
            case["trust"]["trusted_key_url"].as_str().unwrap(),
            case["trust"]["trusted_public_key_hex"].as_str().unwrap(),
        )
        .unwrap();
        let attestation = case.get("attestation").filter(|a| !a.is_null());
        let result = convert(&case["card"], attestation, &trust, fixed_now());
        match (&case["error"], result) {
            (Value::String(reference), Ok(_)) => {
                failures.push(format!("line {line_no} {name}: accepted, the reference refused: {reference}"))
            }
            (Value::String(reference), Err(e)) => {
                refused += 1;
                let want = expected_reason(name, reference);
                if !e.message.contains(want) {
                    failures.push(format!("line {line_no} {name}: refused with `{}`, expected it to mention `{want}` (reference: {reference})", e.message));
                }
            }
            (_, Err(e)) => failures.push(format!("line {line_no} {name}: refused: {}", e.message)),
            (_, Ok(out)) => {
                accepted += 1;
                if let Err(e) = compare_bundle(&out.json, &case["bundle"]) {
                    failures.push(format!("line {line_no} {name}: {e}"));
                }
                let interp = Interpreter::new(&out.bundle).unwrap();
                for (j, c) in case["cases"].as_array().unwrap().iter().enumerate() {
                    decisions += 1;
                    let req = Request::from_value(c["context"].clone()).unwrap();
                    // Effective windows are relative to the day the corpus was made: real clock.
                    let actual = interp.evaluate(&req, &Env::at(jiff::Timestamp::now()), Mode::PLAIN).to_json();
                    if let Err(e) = compare(&actual, &c["expect"]) {
                        failures.push(format!("line {line_no} {name} case {j}: {e}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert_eq!((accepted, refused), (9, 10), "every line was read");
    assert_eq!(decisions, 54);
}

// --- Cards signed here ---------------------------------------------------------------------------

const KEY_URL: &str = "https://buyer.example/keys/test.pub";

fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

fn test_trust() -> Trust {
    Trust { key_url: KEY_URL.to_owned(), public_key: signing_key().verifying_key().to_bytes().to_vec() }
}

/// Signs a card as a buyer would (hash-attestation v2 over RFC 8785).
fn sign(card: &Value, signed_at: &str) -> Value {
    let mut a = card::Attestation {
        algorithm: "ed25519".into(),
        hash_profile: "jcs-rfc8785-v1".into(),
        signed_hash: card::card_digest(card).unwrap(),
        signature: String::new(),
        key_url: KEY_URL.into(),
        signed_at: signed_at.into(),
    };
    let message = card::attestation_message(&a).unwrap();
    let signature = signing_key().sign(&message).to_bytes();
    a.signature = base64_encode(&signature);
    json!({
        "algorithm": a.algorithm, "hash_profile": a.hash_profile, "signed_hash": a.signed_hash,
        "signature": a.signature, "key_url": a.key_url, "signed_at": a.signed_at,
    })
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn approved_card() -> Value {
    json!({
        "decision_card_version": "0.1",
        "decision_id": "dc-t1",
        "issued_at": "2026-01-01T00:00:00Z",
        "buyer": {"id": "buyer-1", "name": "Example District", "type": "school-district"},
        "decision": {"status": "approved", "effective_from": "2026-01-01T00:00:00Z", "effective_until": "2099-01-01T00:00:00Z"},
        "subject": {"vendor_name": "Acme AI", "product_name": "Tutor", "vendor_id": "v-1"},
        "rationale": "Reviewed DPA and bias audit.",
        "history": [{"event": "review_started"}, {"event": "approved"}]
    })
}

fn conditional_card(conditions: Value) -> Value {
    let mut c = approved_card();
    c["decision"]["status"] = json!("approved-with-conditions");
    c["conditions"] = conditions;
    c
}

/// Converts a card signed at 2026-01-02 with the test key.
fn signed(card: &Value) -> Result<card::CardBundle, CardError> {
    let att = sign(card, "2026-01-02T00:00:00Z");
    convert(card, Some(&att), &test_trust(), fixed_now())
}

fn refused(r: Result<card::CardBundle, CardError>, want: &str) -> CardError {
    match r {
        Ok(b) => panic!("expected a refusal mentioning `{want}`, got a bundle:\n{:#}", b.json),
        Err(e) => {
            assert!(e.message.contains(want), "refusal `{}` should mention `{want}`", e.message);
            e
        }
    }
}

#[test]
fn a_card_signed_here_verifies_and_scopes_to_use() {
    let out = signed(&approved_card()).unwrap();
    assert_eq!(out.json["card_scope"], json!({"vendor_id": "v-1", "allowed_actions": ["use"], "condition_ids": []}));
    let interp = Interpreter::new(&out.bundle).unwrap();
    let eval = |ctx: Value| {
        interp.evaluate(&Request::from_value(ctx).unwrap(), &Env::at(fixed_now()), Mode::PLAIN).decision.kind
    };
    assert_eq!(eval(json!({"action": "use", "resource": {"vendor_id": "v-1"}})), "allow");
    assert_eq!(eval(json!({"action": "train", "resource": {"vendor_id": "v-1"}})), "deny");
    assert_eq!(eval(json!({"action": "use", "resource": {"vendor_id": "v-2"}})), "deny");
}

#[test]
fn attestation_time_checks() {
    let card = approved_card();
    // Dated more than five minutes after `now`.
    let att = sign(&card, "2026-01-02T00:00:00Z");
    let early: jiff::Timestamp = "2026-01-01T23:54:00Z".parse().unwrap();
    refused(convert(&card, Some(&att), &test_trust(), early), "dated in the future");
    // Within the five minutes of clock skew: accepted.
    let skew: jiff::Timestamp = "2026-01-01T23:56:00Z".parse().unwrap();
    assert!(convert(&card, Some(&att), &test_trust(), skew).is_ok());
    // Attested before the card was issued.
    let att = sign(&card, "2025-12-31T00:00:00Z");
    refused(convert(&card, Some(&att), &test_trust(), fixed_now()), "before it was issued");
    // A naive `signed_at`.
    let att = sign(&card, "2026-01-02T00:00:00.000");
    refused(convert(&card, Some(&att), &test_trust(), fixed_now()), "`signed_at`");
}

#[test]
fn trust_comes_from_the_operator() {
    let card = approved_card();
    let att = sign(&card, "2026-01-02T00:00:00Z");
    let actions = use_only();
    // No attestation or no pinned key.
    for (a, t) in [(None, Some(test_trust())), (Some(&att), None)] {
        let opts = CardOptions { attestation: a, trust: t.as_ref(), allowed_actions: Some(&actions), now: fixed_now() };
        let e = refused(card::compile(&card, &opts), "trusted buyer key");
        assert_eq!(e.input, Input::Trust);
    }
    // Another key at the same URL.
    let other = Trust {
        key_url: KEY_URL.into(),
        public_key: SigningKey::from_bytes(&[8u8; 32]).verifying_key().to_bytes().to_vec(),
    };
    refused(convert(&card, Some(&att), &other, fixed_now()), "signature does not verify");
    // A key of the wrong length.
    let short = Trust { key_url: KEY_URL.into(), public_key: vec![1; 31] };
    refused(convert(&card, Some(&att), &short, fixed_now()), "32 bytes");
    // Runtime scope other than exactly ["use"].
    for actions in [vec![], vec!["use".to_owned(), "train".to_owned()], vec!["train".to_owned()]] {
        let trust = test_trust();
        let opts = CardOptions {
            attestation: Some(&att),
            trust: Some(&trust),
            allowed_actions: Some(&actions),
            now: fixed_now(),
        };
        refused(card::compile(&card, &opts), "only permits allowed actions");
    }
    // The key bytes parse from hex and base64, and refuse anything else.
    let hex: String = signing_key().verifying_key().to_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(Trust::from_hex(KEY_URL, &hex).unwrap(), test_trust());
    assert_eq!(
        Trust::from_base64(KEY_URL, &base64_encode(&signing_key().verifying_key().to_bytes())).unwrap(),
        test_trust()
    );
    assert!(Trust::from_hex(KEY_URL, &hex[1..]).is_err());
    assert!(Trust::from_hex(KEY_URL, &hex.replace('a', "g")).is_err() || !hex.contains('a'));
    assert!(Trust::from_base64(KEY_URL, "AAAA").is_err());
}

#[test]
fn tampering_with_the_attestation_is_refused() {
    let card = approved_card();
    let att = sign(&card, "2026-01-02T00:00:00Z");
    let with = |k: &str, v: Value| {
        let mut a = att.clone();
        a[k] = v;
        a
    };
    let cases = [
        (with("key_url", json!("https://evil.example/k.pub")), "no matching trusted buyer key"),
        (with("signed_at", json!("2026-01-02T00:00:01Z")), "signature does not verify"),
        (with("algorithm", json!("rsa")), "`ed25519`"),
        (with("hash_profile", json!("jcs")), "`jcs-rfc8785-v1`"),
        (with("signed_hash", json!("sha256:00")), "71 characters"),
        (with("signature", json!("!".repeat(88))), "standard base64"),
        (with("extra", json!(1)), "unknown attestation key `extra`"),
        (with("key_url", json!(5)), "must be a string"),
    ];
    for (a, want) in cases {
        refused(convert(&card, Some(&a), &test_trust(), fixed_now()), want);
    }
    let mut missing = att.clone();
    missing.as_object_mut().unwrap().remove("signature");
    refused(convert(&card, Some(&missing), &test_trust(), fixed_now()), "missing `signature`");
}

#[test]
fn positive_card_requirements() {
    let change = |f: &dyn Fn(&mut Value)| {
        let mut c = approved_card();
        f(&mut c);
        c
    };
    let cases: Vec<(Value, &str)> = vec![
        (change(&|c| c["issued_at"] = json!("2026-01-01")), "timezone-qualified `issued_at`"),
        (change(&|c| c["issued_at"] = json!(5)), "require `issued_at`"),
        (change(&|c| c["rationale"] = json!("  \t")), "`rationale`"),
        (change(&|c| c["withdrawal"] = json!({"at": "x"})), "`withdrawal`"),
        (change(&|c| c["history"] = json!([{"event": "rejected"}])), "conflicting terminal event"),
        (change(&|c| c["history"] = json!({"event": "approved"})), "conflicting terminal event"),
        (change(&|c| c["buyer"]["id"] = json!(" ")), "`buyer.id`"),
        (
            change(&|c| {
                c["buyer"].as_object_mut().unwrap().remove("name");
            }),
            "`buyer.name`",
        ),
        (
            change(&|c| {
                c["buyer"].as_object_mut().unwrap().remove("type");
            }),
            "`buyer.type`",
        ),
        (
            change(&|c| {
                c.as_object_mut().unwrap().remove("buyer");
            }),
            "`buyer.id`",
        ),
        (
            change(&|c| {
                c["subject"].as_object_mut().unwrap().remove("vendor_id");
            }),
            "`subject.vendor_id`",
        ),
        (change(&|c| c["decision"]["effective_until"] = Value::Null), "`decision.effective_until`"),
        (change(&|c| c["conditions"] = json!([{"id": "a"}])), "`approved-with-conditions`"),
    ];
    for (card, want) in cases {
        refused(signed(&card), want);
    }
    // An empty history, or none, is fine.
    assert!(signed(&change(&|c| c["history"] = json!([]))).is_ok());
    assert!(
        signed(&change(&|c| {
            c.as_object_mut().unwrap().remove("history");
        }))
        .is_ok()
    );
}

#[test]
fn shape_checks_of_every_card() {
    let rejected = || {
        let mut c = approved_card();
        c["decision"]["status"] = json!("rejected");
        c
    };
    let change = |f: &dyn Fn(&mut Value)| {
        let mut c = rejected();
        f(&mut c);
        c
    };
    let cases: Vec<(Value, &str)> = vec![
        (json!([]), "must be an object"),
        (
            change(&|c| {
                c.as_object_mut().unwrap().remove("decision_id");
            }),
            "missing required key `decision_id`",
        ),
        (
            change(&|c| {
                c.as_object_mut().unwrap().remove("subject");
            }),
            "missing required key `subject`",
        ),
        (change(&|c| c["decision_id"] = json!("")), "`decision_id` must be a non-empty string"),
        (change(&|c| c["decision"] = json!("approved")), "`decision` must be an object"),
        (
            change(&|c| {
                c["decision"].as_object_mut().unwrap().remove("status");
            }),
            "`status`",
        ),
        (change(&|c| c["decision"]["status"] = json!(1)), "`decision.status` must be a string"),
        (change(&|c| c["subject"]["vendor_name"] = json!(" ")), "`subject.vendor_name`"),
        (change(&|c| c["decision_card_version"] = json!("0.2")), "version `0.1`"),
        (change(&|c| c["decision_card_version"] = json!(0.1)), "version `0.1`"),
        (change(&|c| c["decision"]["why"] = json!(1)), "`why`"),
        (change(&|c| c["buyer"]["tax_id"] = json!(1)), "`tax_id`"),
        (change(&|c| c["buyer"] = json!("x")), "`buyer` must be an object"),
        (change(&|c| c["subject"]["price"] = json!(1)), "`price`"),
        (change(&|c| c["conditions"] = json!({"id": "a"})), "`conditions` must be a list"),
        (change(&|c| c["conditions"] = json!(["a"])), "each condition must be an object"),
        (change(&|c| c["conditions"] = json!([{"id": "a", "owner": "x"}])), "`owner`"),
        (change(&|c| c["conditions"] = json!([{"id": ""}])), "non-empty string `id`"),
        (change(&|c| c["conditions"] = json!([{"description": "x"}])), "non-empty string `id`"),
        (change(&|c| c["conditions"] = json!([{"id": "a"}, {"id": "a"}])), "duplicate condition id `a`"),
        (change(&|c| c["decision"]["effective_from"] = json!("2026-01-01T00:00:00")), "`decision.effective_from`"),
        (change(&|c| c["decision"]["effective_until"] = json!("2025-01-01T00:00:00Z")), "must be after"),
    ];
    for (card, want) in cases {
        let trust = test_trust();
        refused(convert(&card, None, &trust, fixed_now()), want);
    }
}

#[test]
fn negative_and_unknown_statuses_deny_everything_without_a_signature() {
    for status in ["rejected", "rejected-with-remediation", "withdrawn", "expired", "pending", "on-hold"] {
        let mut c = approved_card();
        c["decision"]["status"] = json!(status);
        // No attestation, no trust: refusals need no proof.
        let opts = CardOptions { attestation: None, trust: None, allowed_actions: None, now: fixed_now() };
        let out = card::compile(&c, &opts).unwrap();
        assert!(out.json.get("card_scope").is_none());
        assert_eq!(out.json["policies"][0]["id"], format!("dc-t1__{status}"));
        let interp = Interpreter::new(&out.bundle).unwrap();
        let req = Request::from_value(json!({"action": "use", "resource": {"vendor_id": "v-1"}})).unwrap();
        assert_eq!(interp.evaluate(&req, &Env::at(fixed_now()), Mode::PLAIN).decision.kind, "deny", "{status}");
    }
}

#[test]
fn conditions_map_to_one_policy_each() {
    let card = conditional_card(json!([
        {"id": "dpa", "description": "DPA signed"},
        {"id": "back\\slash.dot", "description": ""},
        {"id": "c3"}
    ]));
    let out = signed(&card).unwrap();
    let p = &out.json["policies"];
    assert_eq!(p.as_array().unwrap().len(), 3);
    assert_eq!(p[0]["description"], "DPA signed");
    assert_eq!(p[1]["description"], "Condition 'back\\\\slash.dot'");
    assert_eq!(p[1]["rules"][0]["when"]["matchers"][1]["field"], "conditions_satisfied.back\\\\slash\\.dot");
    assert_eq!(p[2]["rules"][0]["description"], "Condition 'c3'");
    assert_eq!(out.json["card_scope"]["condition_ids"], json!(["dpa", "back\\slash.dot", "c3"]));
    let interp = Interpreter::new(&out.bundle).unwrap();
    let eval = |sat: Value| {
        let ctx = json!({"action": "use", "resource": {"vendor_id": "v-1"}, "data": {"conditions_satisfied": sat}});
        interp.evaluate(&Request::from_value(ctx).unwrap(), &Env::at(fixed_now()), Mode::PLAIN).decision
    };
    assert_eq!(eval(json!({"dpa": true, "back\\slash.dot": true, "c3": true})).kind, "allow");
    let d = eval(json!({"dpa": true, "back\\slash.dot": true}));
    assert_eq!((d.kind.as_str(), d.matched_policy_id.as_deref()), ("deny", Some("dc-t1__condition__c3")));
    // A non-string description is refused, as the reference's model does.
    refused(signed(&conditional_card(json!([{"id": "a", "description": 3}]))), "`description` must be a string");
    // No conditions at all: deny everything, without a scope.
    for empty in [json!([]), Value::Null] {
        let out = signed(&conditional_card(empty)).unwrap();
        assert_eq!(out.json["policies"][0]["id"], "dc-t1__approved-with-conditions");
        assert!(out.json.get("card_scope").is_none());
    }
}

#[test]
fn strict_json_refuses_ambiguity() {
    assert!(card::parse_strict_json(r#"{"a": {"b": 1, "c": [1, 2.5, null, true, "x"]}}"#).is_ok());
    for (text, want) in [
        (r#"{"a": 1, "a": 2}"#, "duplicate key `a`"),
        (r#"{"a": {"b": 1, "b": 1}}"#, "duplicate key `b`"),
        (r#"[{"x": 1}, {"y": 1, "y": 2}]"#, "duplicate key `y`"),
        (r#"{"a": 1e400}"#, "invalid JSON"),
        (r#"{"a": NaN}"#, "invalid JSON"),
        (r#"{"a": Infinity}"#, "invalid JSON"),
        (r#"{"a": 1} x"#, "invalid JSON"),
    ] {
        let e = card::parse_strict_json(text).unwrap_err();
        assert!(e.message.contains(want), "{text}: {}", e.message);
    }
    let text = "{\n  \"a\": 1,\n  \"a\": 2\n}";
    let text_at = |o: usize| &text[o..];
    let e = card::parse_strict_json(text).unwrap_err();
    // serde_json reports the end of the repeated key.
    assert!(text_at(e.offset).starts_with("\": 2"), "{}", e.offset);
}

#[test]
fn canonical_json_is_rfc_8785() {
    // RFC 8785 appendix B number samples (ECMAScript formatting).
    for (input, want) in [
        ("0", "0"),
        ("-0.0", "0"),
        ("1", "1"),
        ("4.50", "4.5"),
        ("2e-3", "0.002"),
        ("0.000001", "0.000001"),
        ("1e-7", "1e-7"),
        ("1e21", "1e+21"),
        ("1e20", "100000000000000000000"),
        ("333333333.33333329", "333333333.3333333"),
        ("1E30", "1e+30"),
        ("0.000000000000000000000000001", "1e-27"),
        ("9007199254740991", "9007199254740991"),
        ("-9007199254740991", "-9007199254740991"),
        ("1.7976931348623157e308", "1.7976931348623157e+308"),
        ("5e-324", "5e-324"),
    ] {
        let v: Value = serde_json::from_str(input).unwrap();
        assert_eq!(String::from_utf8(card::canonical_json(&v).unwrap()).unwrap(), want, "{input}");
    }
    // Keys sorted by UTF-16 code units (RFC 8785 §3.2.3), strings escaped minimally.
    let v = card::parse_strict_json(
        r#"{"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew", "1": "One", "\ud83d\ude00": "Emoji", "\u0080": "Control", "\u00f6": "o", "a": "\u001f/\u2028"}"#,
    )
    .unwrap();
    let text = String::from_utf8(card::canonical_json(&v).unwrap()).unwrap();
    assert_eq!(
        text,
        "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"a\":\"\\u001f/\u{2028}\",\"\u{80}\":\"Control\",\"ö\":\"o\",\"€\":\"Euro Sign\",\"😀\":\"Emoji\",\"\u{fb33}\":\"Hebrew\"}"
    );
    // The RFC's example object.
    let v: Value = serde_json::from_str(
        r#"{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001], "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/", "literals": [null, true, false]}"#,
    )
    .unwrap();
    let text = String::from_utf8(card::canonical_json(&v).unwrap()).unwrap();
    assert_eq!(
        text,
        r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
    );
    // Integers without an exact double form are refused rather than rounded.
    for big in ["9007199254740992", "-9007199254740992", "18446744073709551615"] {
        let v: Value = serde_json::from_str(&format!("{{\"n\": [{big}]}}")).unwrap();
        assert!(card::canonical_json(&v).unwrap_err().contains("2^53"), "{big}");
    }
}

#[test]
fn refusals_point_into_the_card() {
    let text = "{\n  \"decision_card_version\": \"0.1\",\n  \"decision_id\": \"d\",\n  \"decision\": {\"status\": \"rejected\", \"why\": 1},\n  \"subject\": {\"vendor_name\": \"V\"}\n}";
    let card = card::parse_strict_json(text).unwrap();
    let opts = CardOptions { attestation: None, trust: None, allowed_actions: None, now: fixed_now() };
    let e = card::compile(&card, &opts).unwrap_err();
    let d = card::diagnostic(&e, text);
    assert_eq!(d.code.as_str(), "V111");
    assert_eq!(&text[d.span.start as usize..d.span.end as usize], "\"why\"");
}

/// Every value of every corpus card (and of its attestation) replaced by each JSON type: the
/// conversion refuses or maps, and never panics.
#[test]
fn no_panic_on_retyped_values() {
    fn pointers(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(prefix.clone());
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    prefix.push(k.clone());
                    pointers(c, prefix, out);
                    prefix.pop();
                }
            }
            Value::Array(a) => {
                for (i, c) in a.iter().enumerate() {
                    prefix.push(i.to_string());
                    pointers(c, prefix, out);
                    prefix.pop();
                }
            }
            _ => {}
        }
    }
    fn set(v: &mut Value, pointer: &[String], new: Value) {
        let Some((first, rest)) = pointer.split_first() else {
            *v = new;
            return;
        };
        let next = match v {
            Value::Object(m) => m.get_mut(first),
            Value::Array(a) => first.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        };
        if let Some(n) = next {
            set(n, rest, new);
        }
    }
    let replacements = [Value::Null, json!(0), json!(""), json!(" "), json!([]), json!({}), json!(true), json!("x")];
    let text = include_str!("../conformance/decision-cards.jsonl");
    let trust = test_trust();
    let (mut runs, mut mapped) = (0, 0);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let case: Value = serde_json::from_str(line).unwrap();
        let signed_att = sign(&case["card"], "2026-01-02T00:00:00Z");
        for which in ["card", "attestation"] {
            let mut ps = Vec::new();
            pointers(if which == "card" { &case["card"] } else { &signed_att }, &mut Vec::new(), &mut ps);
            for p in ps {
                for r in &replacements {
                    let (mut card, mut att) = (case["card"].clone(), signed_att.clone());
                    if which == "card" {
                        set(&mut card, &p, r.clone());
                        // Re-signed, so the checks after the attestation run too.
                        att = sign(&card, "2026-01-02T00:00:00Z");
                    } else {
                        set(&mut att, &p, r.clone());
                    }
                    mapped += usize::from(convert(&card, Some(&att), &trust, fixed_now()).is_ok());
                    runs += 1;
                }
            }
        }
    }
    assert!(runs > 2000 && mapped > 100, "{runs} runs, {mapped} mapped");
}
