//! Operator-pinned buyer keys for Decision Card attestations.
//!
//! `POLICY_ENGINE_BUYER_KEYS_JSON` holds `{buyer_id: {key_url: base64 32-byte Ed25519 key}}`,
//! as the reference reads it. A card is verified with the key pinned for its `buyer.id` at the
//! attestation's `key_url`; a key found in the card or the attestation is never used. A missing
//! or invalid configuration, or no key for the pair, answers 503 (fail closed).

use std::collections::HashMap;
use verdict_compiler::card::{Trust, parse_strict_json};

pub const BUYER_KEYS_ENV: &str = "POLICY_ENGINE_BUYER_KEYS_JSON";

/// Why the buyer keys are unusable (positive cards are then answered 503).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysError {
    /// The variable is not set (or empty).
    NotSet,
    /// Not strict JSON.
    Json(KeysJson),
    /// The JSON is not `{buyer_id: {key_url: key}}`.
    Shape(KeysShape),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysJson {
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysShape {
    NotAnObject,
    BuyerNotAnObject { buyer: String },
    KeyNotAString { buyer: String, url: String },
}

impl std::fmt::Display for KeysError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeysError::NotSet => write!(f, "{BUYER_KEYS_ENV} is not set"),
            KeysError::Json(e) => write!(f, "{BUYER_KEYS_ENV}: {}", e.message),
            KeysError::Shape(KeysShape::NotAnObject) => write!(f, "{BUYER_KEYS_ENV} must be an object of buyer ids"),
            KeysError::Shape(KeysShape::BuyerNotAnObject { buyer }) => {
                write!(f, "{BUYER_KEYS_ENV}: buyer `{buyer}` must map key URLs to keys")
            }
            KeysError::Shape(KeysShape::KeyNotAString { buyer, url }) => {
                write!(f, "{BUYER_KEYS_ENV}: the key of `{buyer}` at `{url}` must be a base64 string")
            }
        }
    }
}

impl std::error::Error for KeysError {}

#[derive(Clone)]
pub struct BuyerKeys(Result<HashMap<String, HashMap<String, String>>, KeysError>);

impl std::fmt::Debug for BuyerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Ok(m) => write!(f, "BuyerKeys({} buyers)", m.len()),
            Err(e) => write!(f, "BuyerKeys(unavailable: {e})"),
        }
    }
}

impl BuyerKeys {
    /// No keys: every positive card is answered 503.
    pub fn none() -> BuyerKeys {
        BuyerKeys(Err(KeysError::NotSet))
    }

    /// Parses the configuration text strictly (no duplicate keys).
    pub fn from_json(text: &str) -> BuyerKeys {
        let parsed =
            parse_strict_json(text).map_err(|e| KeysError::Json(KeysJson { message: e.to_string() })).and_then(|v| {
                let serde_json::Value::Object(buyers) = v else {
                    return Err(KeysError::Shape(KeysShape::NotAnObject));
                };
                let mut out = HashMap::new();
                for (buyer, urls) in buyers {
                    let serde_json::Value::Object(urls) = urls else {
                        return Err(KeysError::Shape(KeysShape::BuyerNotAnObject { buyer }));
                    };
                    let mut keys = HashMap::new();
                    for (url, key) in urls {
                        let serde_json::Value::String(key) = key else {
                            return Err(KeysError::Shape(KeysShape::KeyNotAString { buyer, url }));
                        };
                        keys.insert(url, key);
                    }
                    out.insert(buyer, keys);
                }
                Ok(out)
            });
        BuyerKeys(parsed)
    }

    pub fn from_env() -> BuyerKeys {
        match std::env::var(BUYER_KEYS_ENV) {
            Ok(text) if !text.trim().is_empty() => BuyerKeys::from_json(&text),
            _ => BuyerKeys::none(),
        }
    }

    /// Why the configuration is unusable, if it is.
    pub fn problem(&self) -> Option<&KeysError> {
        self.0.as_ref().err()
    }

    /// The pinned key of a buyer at a URL, if configured and valid.
    pub fn trust(&self, buyer_id: &str, key_url: &str) -> Option<Trust> {
        let key = self.0.as_ref().ok()?.get(buyer_id)?.get(key_url)?;
        Trust::from_base64(key_url, key).ok()
    }
}
