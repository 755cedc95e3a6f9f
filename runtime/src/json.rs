//! Strict JSON reading, shared by every reader of untrusted JSON (request contexts, whether read
//! whole or by projection, and the compiler's Decision Card reader): a duplicate object key at
//! any depth is an error, so one text has one meaning whichever reader sees it. (serde_json
//! alone keeps the last of duplicate keys; a reader that skipped or kept the first would decide
//! differently on the same bytes.) Nesting is limited by serde_json (128 levels) and numbers
//! out of `f64` range are refused by it.

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// A JSON value read strictly: a duplicate key or a non-finite number is an error.
#[derive(Debug, Clone, PartialEq)]
pub struct Strict(pub Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

/// Parses JSON bytes strictly (the whole text must be one value).
pub fn from_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let Strict(v) = Strict::deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// Parses JSON text strictly (the whole text must be one value).
pub fn from_str(text: &str) -> Result<Value, serde_json::Error> {
    from_slice(text.as_bytes())
}

/// The error for a key seen twice in one object.
pub fn duplicate<E: de::Error>(key: &str) -> E {
    E::custom(format_args!("duplicate key `{key}`"))
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(duplicate(&key));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// Skips a value without building it, checking it as strictly as [`Strict`] reads it (duplicate
/// keys refused at any depth).
#[derive(Debug, Clone, Copy)]
pub struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Skip, D::Error> {
        d.deserialize_any(Skip).map(|()| Skip)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        if v.is_finite() { Ok(()) } else { Err(E::custom("non-finite number")) }
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = Keys::default();
        while let Some(key) = map.next_key::<String>()? {
            keys.insert::<A::Error>(key)?;
            map.next_value::<Skip>()?;
        }
        Ok(())
    }
}

/// The keys of one object seen so far, to refuse a duplicate (linear scan while small, hashed
/// beyond, so an object of many keys costs linear time).
#[derive(Debug, Default)]
pub struct Keys {
    small: Vec<String>,
    large: std::collections::HashSet<String>,
}

impl Keys {
    const SMALL: usize = 16;

    /// Records a key; a key seen before is an error.
    pub fn insert<E: de::Error>(&mut self, key: String) -> Result<(), E> {
        let seen = if self.large.is_empty() { self.small.contains(&key) } else { self.large.contains(&key) };
        if seen {
            return Err(duplicate(&key));
        }
        if self.large.is_empty() && self.small.len() < Self::SMALL {
            self.small.push(key);
        } else {
            self.large.extend(self.small.drain(..));
            self.large.insert(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_refused_at_any_depth() {
        for text in [r#"{"a": 1, "a": 2}"#, r#"{"a": {"b": [{"c": 1, "c": 1}]}}"#, r#"[{"x": null, "x": null}]"#] {
            let e = from_str(text).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.starts_with("duplicate key"), "{text}: {e}");
            let mut de = serde_json::Deserializer::from_str(text);
            assert!(Skip.deserialize(&mut de).is_err(), "{text}");
        }
        let many: Vec<String> = (0..100).map(|i| format!("\"k{i}\": {i}")).collect();
        let ok = format!("{{{}}}", many.join(", "));
        assert!(from_str(&ok).is_ok());
        let bad = format!("{{{}, \"k57\": 0}}", many.join(", "));
        assert!(from_str(&bad).is_err());
        assert!(from_str("[1e400]").is_err());
    }
}
