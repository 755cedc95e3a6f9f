//! Decision Cards (DECISION_CARDS.md): an AI Procurement Decision Card v0.1 becomes a bundle.
//!
//! The steps, in the reference's order (`policy-as-code-engine`'s `from_decision_card.py` and
//! `card_attestation.py`): the strict JSON reading ([`parse_strict_json`]: no duplicate keys, no
//! non-finite numbers), the shape checks of every card, the extra checks of positive cards
//! (`approved`, `approved-with-conditions`) including the Ed25519 attestation by an
//! operator-pinned buyer key ([`Trust`], never taken from the card), then the mapping to a
//! reference-format bundle ([`bundle_json`]) which is compiled like any JSON bundle
//! ([`compile`]), so cards lower to the same IR as every other source form.
//!
//! Time is a parameter (`now` in [`CardOptions`]): the attestation may not be dated more than
//! five minutes after it, so tests pass a fixed instant and services the clock.
//!
//! Architecture invariant: nothing here trusts a key, URL or condition found in the card; the
//! buyer key comes from [`Trust`], condition signals from the caller at evaluation time.

use crate::diagnostic::{Code, Diagnostic};
use crate::source::SourceFile;
use crate::tree::{Node, NodeKind};
use crate::{SourceKind, ir};
use ed25519_dalek::{Signature, VerifyingKey};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;
use verdict_grammar::ast::Span;
use verdict_runtime::json::Strict;
use verdict_runtime::pyrepr::repr;

/// Statuses that deny everything.
pub const REJECT_STATUSES: [&str; 4] = ["rejected", "rejected-with-remediation", "withdrawn", "expired"];
/// Statuses that need an attestation and become scoped allows.
pub const POSITIVE_STATUSES: [&str; 2] = ["approved", "approved-with-conditions"];

const CARD_KEYS: [&str; 15] = [
    "decision_card_version",
    "decision_id",
    "issued_at",
    "buyer",
    "decision_maker",
    "decision",
    "subject",
    "criteria",
    "conditions",
    "rationale",
    "history",
    "appeals",
    "publication",
    "signatures",
    "withdrawal",
];
const DECISION_KEYS: [&str; 4] = ["status", "effective_from", "effective_until", "scope"];
const BUYER_KEYS: [&str; 7] = ["name", "type", "category", "jurisdiction", "url", "contact", "id"];
const SUBJECT_KEYS: [&str; 4] = ["vendor_name", "product_name", "vendor_id", "documents_reviewed"];
const CONDITION_KEYS: [&str; 5] = ["id", "description", "enforcement", "violation_response", "verification_uri"];
const APPROVAL_HISTORY_EVENTS: [&str; 6] =
    ["review_started", "documents_collected", "review_completed", "approved", "approved-with-conditions", "pending"];
const ATTESTATION_KEYS: [&str; 6] = ["algorithm", "hash_profile", "signed_hash", "signature", "key_url", "signed_at"];

/// The domain separation prefix of the signed message (hash-attestation v2).
pub const SIGNATURE_CONTEXT: &[u8] = b"hash-attestation/v2\x00";
/// How far in the future an attestation may be dated (clock skew).
pub const MAX_CLOCK_SKEW_MINUTES: i64 = 5;
/// Integers beyond this magnitude have no exact RFC 8785 (IEEE 754 double) form.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Which input an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Card,
    Attestation,
    /// The operator's pinned key or the caller's options.
    Trust,
}

/// Why a card was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardError {
    pub message: String,
    pub input: Input,
    /// The keys and list indices leading to the offending value (empty: the whole document).
    pub pointer: Vec<String>,
    /// Point at the last key of `pointer` rather than at its value (unknown keys).
    pub at_key: bool,
}

impl fmt::Display for CardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CardError {}

fn refuse(input: Input, pointer: &[&str], message: impl Into<String>) -> CardError {
    CardError {
        message: message.into(),
        input,
        pointer: pointer.iter().map(|s| (*s).to_owned()).collect(),
        at_key: false,
    }
}

fn card_err(pointer: &[&str], message: impl Into<String>) -> CardError {
    refuse(Input::Card, pointer, message)
}

/// The operator's pinned buyer key: the URL an attestation must name and the Ed25519 key.
#[derive(Clone, PartialEq, Eq)]
pub struct Trust {
    pub key_url: String,
    /// Checked to be 32 bytes when an attestation is verified (the reference's rule).
    pub public_key: Vec<u8>,
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trust").field("key_url", &self.key_url).field("public_key_len", &self.public_key.len()).finish()
    }
}

impl Trust {
    /// A key written as 64 hexadecimal digits (`verdict card --trusted-public-key`).
    pub fn from_hex(key_url: &str, hex: &str) -> Result<Trust, String> {
        let hex = hex.trim();
        if hex.len() != 64 {
            return Err(format!(
                "a trusted public key is 64 hexadecimal digits (32 bytes), found {} characters",
                hex.len()
            ));
        }
        let mut key = Vec::with_capacity(32);
        let bytes = hex.as_bytes();
        for pair in bytes.chunks(2) {
            let digit = |b: u8| (b as char).to_digit(16);
            match pair {
                [h, l] => match (digit(*h), digit(*l)) {
                    (Some(h), Some(l)) => key.push(u8::try_from(h * 16 + l).unwrap_or(0)),
                    _ => return Err("a trusted public key is written in hexadecimal digits only".into()),
                },
                _ => return Err("a trusted public key has an even number of hexadecimal digits".into()),
            }
        }
        Ok(Trust { key_url: key_url.to_owned(), public_key: key })
    }

    /// A key written in standard base64 (`POLICY_ENGINE_BUYER_KEYS_JSON`).
    pub fn from_base64(key_url: &str, b64: &str) -> Result<Trust, String> {
        use base64::Engine as _;
        let key = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("a trusted public key must be standard base64: {e}"))?;
        if key.len() != 32 {
            return Err(format!("a trusted public key is 32 bytes, found {}", key.len()));
        }
        Ok(Trust { key_url: key_url.to_owned(), public_key: key })
    }
}

/// What a conversion needs besides the card.
#[derive(Debug, Clone, Copy)]
pub struct CardOptions<'a> {
    /// The attestation document (`{algorithm, hash_profile, signed_hash, signature, key_url, signed_at}`).
    pub attestation: Option<&'a Value>,
    /// The operator's pinned buyer key.
    pub trust: Option<&'a Trust>,
    /// The runtime scope the operator approves; positive cards require exactly `["use"]`.
    pub allowed_actions: Option<&'a [String]>,
    /// The current time, for the attestation's `signed_at` check.
    pub now: jiff::Timestamp,
}

/// A card's attestation after its shape check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    pub algorithm: String,
    pub hash_profile: String,
    pub signed_hash: String,
    pub signature: String,
    pub key_url: String,
    pub signed_at: String,
}

impl Attestation {
    /// Checks the shape (the reference's `CardAttestation` model): exactly the six string fields,
    /// `ed25519`, `jcs-rfc8785-v1`, and their length bounds.
    pub fn from_value(v: &Value) -> Result<Attestation, CardError> {
        let Value::Object(m) = v else {
            return Err(refuse(Input::Attestation, &[], "an attestation must be a JSON object"));
        };
        if let Some(k) = m.keys().find(|k| !ATTESTATION_KEYS.contains(&k.as_str())) {
            let mut e = refuse(Input::Attestation, &[k], format!("unknown attestation key `{k}`"));
            e.at_key = true;
            return Err(e);
        }
        let field = |name: &str, min: usize, max: usize| -> Result<String, CardError> {
            match m.get(name) {
                None => Err(refuse(Input::Attestation, &[], format!("the attestation is missing `{name}`"))),
                Some(Value::String(s)) => {
                    let n = s.chars().count();
                    if n < min || n > max {
                        let want = if min == max { format!("{min}") } else { format!("{min} to {max}") };
                        Err(refuse(
                            Input::Attestation,
                            &[name],
                            format!("attestation `{name}` must be {want} characters long, found {n}"),
                        ))
                    } else {
                        Ok(s.clone())
                    }
                }
                Some(_) => Err(refuse(Input::Attestation, &[name], format!("attestation `{name}` must be a string"))),
            }
        };
        let a = Attestation {
            algorithm: field("algorithm", 1, usize::MAX)?,
            hash_profile: field("hash_profile", 1, usize::MAX)?,
            signed_hash: field("signed_hash", 71, 71)?,
            signature: field("signature", 88, 88)?,
            key_url: field("key_url", 1, 512)?,
            signed_at: field("signed_at", 20, 40)?,
        };
        if a.algorithm != "ed25519" {
            return Err(refuse(
                Input::Attestation,
                &["algorithm"],
                format!("attestation `algorithm` must be `ed25519`, found `{}`", a.algorithm),
            ));
        }
        if a.hash_profile != "jcs-rfc8785-v1" {
            return Err(refuse(
                Input::Attestation,
                &["hash_profile"],
                format!("attestation `hash_profile` must be `jcs-rfc8785-v1`, found `{}`", a.hash_profile),
            ));
        }
        Ok(a)
    }

    /// The signed metadata object, whose canonical form follows [`SIGNATURE_CONTEXT`].
    fn metadata(&self) -> Value {
        json!({
            "algorithm": self.algorithm,
            "hash_profile": self.hash_profile,
            "key_url": self.key_url,
            "signed_at": self.signed_at,
            "signed_hash": self.signed_hash,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Strict JSON and RFC 8785
// ---------------------------------------------------------------------------------------------

/// A JSON text that was refused: the message and the byte offset it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub message: String,
    pub offset: usize,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Reads JSON text strictly: syntax errors, duplicate object keys and non-finite numbers
/// (`1e400`) are refused, so a signed document has one meaning. Nesting is limited by
/// serde_json (128 levels), the size by [`crate::source::MAX_SOURCE_BYTES`] (checked before
/// parsing); a leading byte-order mark is skipped, as in every source text.
pub fn parse_strict_json(text: &str) -> Result<Value, JsonError> {
    if let Some(d) = crate::source::too_large(text.len()) {
        return Err(JsonError { message: d.message, offset: 0 });
    }
    let (body, bom) = crate::source::strip_bom(text);
    let mut de = serde_json::Deserializer::from_str(body);
    let result = Strict::deserialize(&mut de).and_then(|Strict(v)| de.end().map(|()| v));
    result.map_err(|e| {
        let offset = bom + crate::yaml::offset_of(body, e.line(), e.column());
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
        JsonError { message: format!("invalid JSON: {msg}"), offset }
    })
}

/// The RFC 8785 (JCS) canonical form of a JSON value: keys sorted by UTF-16 code units, numbers
/// in ECMAScript form. Integers beyond ±(2^53 − 1) are refused, as the reference's `rfc8785`
/// does: they have no exact IEEE 754 form, so two signers could disagree on them.
pub fn canonical_json(v: &Value) -> Result<Vec<u8>, String> {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Number(n) => {
                let out_of_range = match (n.as_i64(), n.as_u64()) {
                    (Some(i), _) => i.unsigned_abs() > MAX_SAFE_INTEGER,
                    (None, Some(u)) => u > MAX_SAFE_INTEGER,
                    (None, None) => false,
                };
                if out_of_range {
                    return Err(format!("the integer {n} is outside ±(2^53 − 1) and has no canonical JSON form"));
                }
            }
            Value::Array(items) => stack.extend(items),
            Value::Object(m) => stack.extend(m.values()),
            _ => {}
        }
    }
    serde_json_canonicalizer::to_vec(v).map_err(|e| format!("cannot canonicalize: {e}"))
}

/// `sha256:` and the lowercase hex SHA-256 of the card's canonical form: what `signed_hash` holds.
pub fn card_digest(card: &Value) -> Result<String, String> {
    let bytes = canonical_json(card)?;
    let digest = Sha256::digest(&bytes);
    let mut out = String::with_capacity(71);
    out.push_str("sha256:");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    Ok(out)
}

/// The bytes an attestation's signature covers: [`SIGNATURE_CONTEXT`] and the canonical form of
/// `{algorithm, hash_profile, key_url, signed_at, signed_hash}`.
pub fn attestation_message(a: &Attestation) -> Result<Vec<u8>, String> {
    let mut message = SIGNATURE_CONTEXT.to_vec();
    message.extend(canonical_json(&a.metadata())?);
    Ok(message)
}

/// Verifies that the pinned buyer key signed exactly this card; returns `signed_at`.
pub fn verify_attestation(
    card: &Value,
    a: &Attestation,
    trust: &Trust,
    now: jiff::Timestamp,
) -> Result<jiff::Timestamp, CardError> {
    let att = |pointer: &[&str], msg: String| refuse(Input::Attestation, pointer, msg);
    if a.key_url != trust.key_url {
        return Err(att(
            &["key_url"],
            format!(
                "the attestation's key URL `{}` is not the pinned buyer key URL `{}`: no matching trusted buyer key",
                a.key_url, trust.key_url
            ),
        ));
    }
    let Ok(key_bytes) = <[u8; 32]>::try_from(trust.public_key.as_slice()) else {
        return Err(refuse(
            Input::Trust,
            &[],
            format!("the pinned buyer key must be 32 bytes, found {}", trust.public_key.len()),
        ));
    };
    let signed_at = a.signed_at.parse::<jiff::Timestamp>().map_err(|_| {
        att(
            &["signed_at"],
            format!("attestation `signed_at` `{}` is not an RFC 3339 date-time with an offset", a.signed_at),
        )
    })?;
    let skew = jiff::SignedDuration::from_mins(MAX_CLOCK_SKEW_MINUTES);
    let latest = now.checked_add(skew).unwrap_or(now);
    if signed_at > latest {
        return Err(att(
            &["signed_at"],
            format!("the attestation is dated in the future: `signed_at` {signed_at} is after {now} (plus 5 minutes)"),
        ));
    }
    let digest = card_digest(card).map_err(|e| card_err(&[], format!("attestation verification failed: {e}")))?;
    if !bool::from(digest.as_bytes().ct_eq(a.signed_hash.as_bytes())) {
        return Err(att(
            &["signed_hash"],
            "attestation verification failed: the card does not match the attestation's `signed_hash` (it was changed after signing)".into(),
        ));
    }
    let message = attestation_message(a).map_err(|e| att(&[], format!("attestation verification failed: {e}")))?;
    let signature = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.decode(&a.signature).ok().and_then(|b| <[u8; 64]>::try_from(b).ok())
    };
    let Some(signature) = signature else {
        return Err(att(
            &["signature"],
            "attestation verification failed: `signature` is not 64 bytes of standard base64".into(),
        ));
    };
    let verified = VerifyingKey::from_bytes(&key_bytes)
        .and_then(|key| key.verify_strict(&message, &Signature::from_bytes(&signature)))
        .is_ok();
    if !verified {
        return Err(att(
            &["signature"],
            "attestation verification failed: the signature does not verify with the pinned buyer key".into(),
        ));
    }
    Ok(signed_at)
}

// ---------------------------------------------------------------------------------------------
// Shape checks and mapping
// ---------------------------------------------------------------------------------------------

/// Python's `str.strip()` emptiness: Unicode white space and the ASCII separators \x1c–\x1f.
fn blank(s: &str) -> bool {
    s.chars().all(|c| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

fn non_blank_str(v: Option<&Value>) -> Option<&str> {
    match v {
        Some(Value::String(s)) if !blank(s) => Some(s),
        _ => None,
    }
}

/// Python truthiness, for the reference's `x or default`.
fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::Bool(true)) => true,
    }
}

fn unknown_keys(m: &Map<String, Value>, allowed: &[&str], prefix: &[&str], what: &str) -> Result<(), CardError> {
    let mut unknown: Vec<&String> = m.keys().filter(|k| !allowed.contains(&k.as_str())).collect();
    unknown.sort();
    let Some(first) = unknown.first() else {
        return Ok(());
    };
    let list = unknown.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
    let mut pointer = prefix.to_vec();
    pointer.push(first);
    let mut e =
        card_err(&pointer, format!("unsupported {what} key{} {list}", if unknown.len() == 1 { "" } else { "s" }));
    e.at_key = true;
    Err(e)
}

fn as_object<'v>(v: &'v Value, pointer: &[&str], what: &str) -> Result<&'v Map<String, Value>, CardError> {
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(card_err(pointer, format!("{what} must be an object"))),
    }
}

/// The shape checks every card passes (the reference's `_validate_minimal_shape`).
fn check_shape(card: &Value) -> Result<(), CardError> {
    let card = as_object(card, &[], "a Decision Card")?;
    for k in ["decision_id", "decision", "subject"] {
        if !card.contains_key(k) {
            return Err(card_err(&[], format!("the Decision Card is missing required key `{k}`")));
        }
    }
    if non_blank_str(card.get("decision_id")).is_none() {
        return Err(card_err(&["decision_id"], "`decision_id` must be a non-empty string"));
    }
    let decision = as_object(card.get("decision").unwrap_or(&Value::Null), &["decision"], "`decision`")?;
    match decision.get("status") {
        None => return Err(card_err(&["decision"], "`decision` is missing required key `status`")),
        Some(Value::String(_)) => {}
        Some(_) => return Err(card_err(&["decision", "status"], "`decision.status` must be a string")),
    }
    let subject = as_object(card.get("subject").unwrap_or(&Value::Null), &["subject"], "`subject`")?;
    match subject.get("vendor_name") {
        None => return Err(card_err(&["subject"], "`subject` is missing required key `vendor_name`")),
        v if non_blank_str(v).is_none() => {
            return Err(card_err(&["subject", "vendor_name"], "`subject.vendor_name` must be a non-empty string"));
        }
        _ => {}
    }
    if card.get("decision_card_version") != Some(&Value::String("0.1".into())) {
        let found = card.get("decision_card_version").map_or("nothing".to_owned(), |v| format!("`{v}`"));
        return Err(card_err(
            &["decision_card_version"],
            format!("only Decision Card version `0.1` is supported (`decision_card_version`), found {found}"),
        ));
    }
    unknown_keys(card, &CARD_KEYS, &[], "Decision Card")?;
    unknown_keys(decision, &DECISION_KEYS, &["decision"], "Decision Card `decision`")?;
    match card.get("buyer") {
        None | Some(Value::Null) => {}
        Some(Value::Object(b)) => unknown_keys(b, &BUYER_KEYS, &["buyer"], "Decision Card `buyer`")?,
        Some(_) => return Err(card_err(&["buyer"], "`buyer` must be an object")),
    }
    unknown_keys(subject, &SUBJECT_KEYS, &["subject"], "Decision Card `subject`")?;
    let conditions = match card.get("conditions") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(c)) => c,
        Some(_) => return Err(card_err(&["conditions"], "`conditions` must be a list")),
    };
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for (i, c) in conditions.iter().enumerate() {
        let index = i.to_string();
        let c = as_object(c, &["conditions", &index], "each condition")?;
        unknown_keys(c, &CONDITION_KEYS, &["conditions", &index], "Decision Card condition")?;
        let Some(id) = non_blank_str(c.get("id")) else {
            return Err(card_err(&["conditions", &index], "each condition must carry a non-empty string `id`"));
        };
        if !seen.insert(id) {
            return Err(card_err(&["conditions", &index, "id"], format!("duplicate condition id `{id}`")));
        }
    }
    Ok(())
}

/// Checks an optional effective time of `decision` and returns its text.
fn effective(decision: &Map<String, Value>, key: &str) -> Result<Option<(String, jiff::Timestamp)>, CardError> {
    match decision.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => match s.parse::<jiff::Timestamp>() {
            Ok(t) => Ok(Some((s.clone(), t))),
            Err(_) => Err(card_err(
                &["decision", key],
                format!("`decision.{key}` `{s}` is not an RFC 3339 date-time with an offset"),
            )),
        },
        Some(_) => Err(card_err(&["decision", key], format!("`decision.{key}` must be a date-time string"))),
    }
}

/// The runtime scope of a positive card, after every check the reference makes.
struct Scope {
    vendor_id: String,
    allowed_actions: Vec<String>,
    condition_ids: Vec<String>,
}

/// The checks of positive cards, in the reference's order, ending with the attestation.
fn check_positive(
    card_value: &Value,
    card: &Map<String, Value>,
    decision: &Map<String, Value>,
    conditions: &[&Map<String, Value>],
    opts: &CardOptions<'_>,
) -> Result<Scope, CardError> {
    let issued_at = match card.get("issued_at") {
        Some(Value::String(s)) => s,
        _ => return Err(card_err(&[], "approved Decision Cards require `issued_at`")),
    };
    let Ok(issued) = issued_at.parse::<jiff::Timestamp>() else {
        return Err(card_err(
            &["issued_at"],
            format!("approved Decision Cards require a timezone-qualified `issued_at`, found `{issued_at}`"),
        ));
    };
    if non_blank_str(card.get("rationale")).is_none() {
        return Err(card_err(&[], "approved Decision Cards require a non-empty `rationale`"));
    }
    if !matches!(card.get("withdrawal"), None | Some(Value::Null)) {
        return Err(card_err(&["withdrawal"], "an approved Decision Card cannot contain `withdrawal` data"));
    }
    let history_ok = match card.get("history") {
        h if !truthy(h) => true,
        Some(Value::Array(events)) => events
            .iter()
            .all(|e| matches!(e.get("event"), Some(Value::String(s)) if APPROVAL_HISTORY_EVENTS.contains(&s.as_str()))),
        _ => false,
    };
    if !history_ok {
        return Err(card_err(
            &["history"],
            format!(
                "approved Decision Card `history` has a conflicting terminal event (allowed events: {})",
                APPROVAL_HISTORY_EVENTS.join(", ")
            ),
        ));
    }
    let buyer = match card.get("buyer") {
        Some(Value::Object(b)) => b,
        _ => return Err(card_err(&[], "approved Decision Cards require `buyer.id` for authority binding")),
    };
    for (key, why) in [("id", " for authority binding"), ("name", ""), ("type", "")] {
        if non_blank_str(buyer.get(key)).is_none() {
            return Err(card_err(
                &["buyer"],
                format!("approved Decision Cards require a non-empty `buyer.{key}`{why}"),
            ));
        }
    }
    let (Some(att_value), Some(trust)) = (opts.attestation, opts.trust) else {
        return Err(refuse(
            Input::Trust,
            &[],
            "approved Decision Cards require an attestation and a trusted buyer key (URL and public key)",
        ));
    };
    let att = Attestation::from_value(att_value)?;
    let signed_at = verify_attestation(card_value, &att, trust, opts.now)?;
    if signed_at < issued {
        return Err(refuse(
            Input::Attestation,
            &["signed_at"],
            format!("the Decision Card cannot be attested (`signed_at` {signed_at}) before it was issued ({issued})"),
        ));
    }
    let subject = card.get("subject");
    let Some(vendor_id) = non_blank_str(subject.and_then(|s| s.get("vendor_id"))) else {
        return Err(card_err(&["subject"], "approved Decision Cards require `subject.vendor_id` for resource binding"));
    };
    if matches!(decision.get("effective_until"), None | Some(Value::Null)) {
        return Err(card_err(&["decision"], "approved Decision Cards require `decision.effective_until`"));
    }
    let allowed: Vec<String> = opts.allowed_actions.map(<[String]>::to_vec).unwrap_or_default();
    if allowed != ["use"] {
        return Err(refuse(
            Input::Trust,
            &[],
            format!("Decision Card conversion only permits allowed actions [\"use\"], given {allowed:?}"),
        ));
    }
    let condition_ids =
        conditions.iter().filter_map(|c| c.get("id").and_then(Value::as_str).map(str::to_owned)).collect();
    Ok(Scope { vendor_id: vendor_id.to_owned(), allowed_actions: allowed, condition_ids })
}

fn scope_matcher(scope: &Scope) -> Value {
    json!({
        "kind": "all_of",
        "matchers": [
            {"kind": "eq", "field": "resource.vendor_id", "value": scope.vendor_id},
            {"kind": "in", "field": "action", "value": scope.allowed_actions},
        ],
    })
}

fn deny_all_policy(decision_id: &str, status: &str, vendor: &str) -> Value {
    json!({
        "id": format!("{decision_id}__{status}"),
        "card_derived": false,
        "description": format!("Vendor {} is {status}; all requests denied.", repr(vendor)),
        "default_effect": "deny",
        "rules": [{
            "id": format!("{status}-deny"),
            "effect": "deny",
            "when": {"kind": "always"},
            "description": format!(
                "Decision Card {} status={} for vendor {}.",
                repr(decision_id),
                repr(status),
                repr(vendor)
            ),
            "tags": [status],
        }],
    })
}

fn approved_policy(decision_id: &str, vendor: &str, scope: &Scope) -> Value {
    json!({
        "id": format!("{decision_id}__approved"),
        "card_derived": true,
        "description": format!("Vendor {} is approved within the operator's runtime scope.", repr(vendor)),
        "default_effect": "deny",
        "rules": [{
            "id": "approved-allow",
            "effect": "allow",
            "when": scope_matcher(scope),
            "description": format!("Decision Card {} approved vendor {}.", repr(decision_id), repr(vendor)),
            "tags": ["approved"],
        }],
    })
}

/// A path segment with `\` and `.` escaped (LANGUAGE.md §1).
fn escape_segment(s: &str) -> String {
    s.replace('\\', "\\\\").replace('.', "\\.")
}

fn condition_policy(
    decision_id: &str,
    index: usize,
    c: &Map<String, Value>,
    scope: &Scope,
) -> Result<Value, CardError> {
    let cid = c.get("id").and_then(Value::as_str).unwrap_or_default();
    let description = match c.get("description") {
        d if !truthy(d) => format!("Condition {}", repr(cid)),
        Some(Value::String(s)) => s.clone(),
        _ => {
            let index = index.to_string();
            return Err(card_err(
                &["conditions", &index, "description"],
                "a condition's `description` must be a string",
            ));
        }
    };
    Ok(json!({
        "id": format!("{decision_id}__condition__{cid}"),
        "card_derived": true,
        "description": description,
        "default_effect": "deny",
        "rules": [{
            "id": format!("{cid}-satisfied"),
            "effect": "allow",
            "when": {
                "kind": "all_of",
                "matchers": [
                    scope_matcher(scope),
                    {"kind": "eq", "field": format!("conditions_satisfied.{}", escape_segment(cid)), "value": true},
                ],
            },
            "description": description,
            "tags": ["condition", cid],
        }],
    }))
}

/// Checks a card and maps it to a reference-format bundle (JSON), exactly as the reference does.
pub fn bundle_json(card: &Value, opts: &CardOptions<'_>) -> Result<Value, CardError> {
    check_shape(card)?;
    let Value::Object(m) = card else {
        return Err(card_err(&[], "a Decision Card must be an object"));
    };
    let null = Value::Null;
    let decision_id = m.get("decision_id").and_then(Value::as_str).unwrap_or_default();
    let decision = match m.get("decision") {
        Some(Value::Object(d)) => d,
        _ => return Err(card_err(&["decision"], "`decision` must be an object")),
    };
    let status = decision.get("status").and_then(Value::as_str).unwrap_or_default();
    let vendor = m.get("subject").and_then(|s| s.get("vendor_name")).and_then(Value::as_str).unwrap_or_default();
    let conditions: Vec<&Map<String, Value>> = match m.get("conditions").unwrap_or(&null) {
        Value::Array(c) => c.iter().filter_map(Value::as_object).collect(),
        _ => Vec::new(),
    };
    let from = effective(decision, "effective_from")?;
    let until = effective(decision, "effective_until")?;
    if let (Some((_, f)), Some((_, u))) = (&from, &until)
        && u <= f
    {
        return Err(card_err(
            &["decision", "effective_until"],
            "`decision.effective_until` must be after `effective_from`",
        ));
    }

    let scope = if POSITIVE_STATUSES.contains(&status) {
        Some(check_positive(card, m, decision, &conditions, opts)?)
    } else {
        None
    };

    let mut policies = Vec::new();
    let mut card_scope = None;
    match (status, &scope) {
        ("approved", Some(scope)) => {
            if !conditions.is_empty() {
                return Err(card_err(
                    &["decision", "status"],
                    "an `approved` card with conditions must use status `approved-with-conditions`",
                ));
            }
            policies.push(approved_policy(decision_id, vendor, scope));
            card_scope = Some(scope);
        }
        ("approved-with-conditions", Some(scope)) if !conditions.is_empty() => {
            for (i, c) in conditions.iter().enumerate() {
                policies.push(condition_policy(decision_id, i, c, scope)?);
            }
            card_scope = Some(scope);
        }
        // Rejections, a conditional approval without conditions, `pending` and any unknown
        // status: deny everything (fail safe).
        _ => policies.push(deny_all_policy(decision_id, status, vendor)),
    }

    let mut bundle = Map::new();
    bundle.insert("bundle_id".into(), json!(format!("decision-card-{decision_id}")));
    bundle.insert("version".into(), json!("0.1.0"));
    bundle.insert("description".into(), json!(format!("Generated from Decision Card {}.", repr(decision_id))));
    bundle.insert("source".into(), json!(format!("decision-card:{decision_id}")));
    if let Some((text, _)) = from {
        bundle.insert("effective_from".into(), json!(text));
    }
    if let Some((text, _)) = until {
        bundle.insert("effective_until".into(), json!(text));
    }
    if let Some(s) = card_scope {
        bundle.insert(
            "card_scope".into(),
            json!({"vendor_id": s.vendor_id, "allowed_actions": s.allowed_actions, "condition_ids": s.condition_ids}),
        );
    }
    bundle.insert("policies".into(), Value::Array(policies));
    Ok(Value::Object(bundle))
}

/// A card compiled: the reference-format bundle it maps to and its IR.
#[derive(Debug, Clone)]
pub struct CardBundle {
    pub json: Value,
    pub bundle: ir::Bundle,
}

/// Checks, verifies and maps a card, then compiles the bundle like any JSON bundle.
pub fn compile(card: &Value, opts: &CardOptions<'_>) -> Result<CardBundle, CardError> {
    let json = bundle_json(card, opts)?;
    let text = serde_json::to_string_pretty(&json).unwrap_or_default();
    let file = SourceFile::new("decision-card-bundle.json", text);
    let compiled = crate::compile_for_use_as(&file, SourceKind::Json);
    match compiled.bundle {
        Some(bundle) if !compiled.has_errors() => Ok(CardBundle { json, bundle }),
        _ => {
            let first = compiled
                .diagnostics
                .iter()
                .find(|d| d.severity == crate::diagnostic::Severity::Error)
                .map_or_else(|| "unknown error".to_owned(), |d| d.message.clone());
            Err(card_err(&[], format!("the card maps to a bundle that does not compile: {first}")))
        }
    }
}

/// Whether a JSON document looks like a Decision Card rather than a bundle.
pub fn looks_like_card(v: &Value) -> bool {
    v.get("bundle_id").is_none()
        && (v.get("decision_card_version").is_some() || (v.get("decision_id").is_some() && v.get("decision").is_some()))
}

/// The span of the value (or, with `at_key`, the key) a pointer names in a JSON text; the whole
/// document when the text does not load or the pointer does not resolve.
pub fn locate(text: &str, pointer: &[String], at_key: bool) -> Span {
    let whole = Span { start: 0, end: u32::try_from(text.len()).unwrap_or(u32::MAX) };
    let Ok(root) = crate::yaml::load_json(text) else {
        return whole;
    };
    let mut node: &Node = &root;
    let mut key_span = None;
    for seg in pointer {
        let next = match &node.kind {
            NodeKind::Map(entries) => entries.iter().find(|(k, _)| k.text == *seg).map(|(k, v)| (Some(k.span), v)),
            NodeKind::Seq(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)).map(|v| (None, v)),
            _ => None,
        };
        let Some((k, v)) = next else {
            return node.span;
        };
        key_span = k;
        node = v;
    }
    match (at_key, key_span) {
        (true, Some(k)) => k,
        _ => node.span,
    }
}

/// A refusal as a diagnostic (V110) on the card's or the attestation's text.
pub fn diagnostic(err: &CardError, text: &str) -> Diagnostic {
    Diagnostic::error(Code::CardRefused, locate(text, &err.pointer, err.at_key), err.message.clone())
}
