//! Projection parsing: reading a request context from JSON bytes while keeping only the parts
//! the bundle's paths can reach. Everything else is skipped by the tokenizer without building
//! values, so a large context costs little more than a small one.
//!
//! The result is an ordinary [`Request`], pruned: every lookup of a path in the bundle gives
//! the same answer as on the full request (the merged view is respected: `data`'s keys are kept
//! for every root the bundle reads, in case `subject`, `action` or `resource` is null). The
//! request is validated exactly as [`Request::from_value`] does, and the text as strictly as
//! [`Request::from_json`] reads it ([`crate::json`]: duplicate keys are refused everywhere,
//! in skipped parts too), so both readers accept the same texts and decide them alike.

use crate::json::{Keys, Skip, Strict};
use crate::request::{Request, RequestError};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;

/// The paths a bundle reads, as a trie from the merged view's root.
#[derive(Debug, Default, Clone)]
pub struct PathTrie {
    /// The whole value here is needed (a path ends here).
    leaf: bool,
    children: HashMap<String, PathTrie>,
}

impl PathTrie {
    /// Builds the trie of `paths`, plus what the card scope reads (`action`, `resource.vendor_id`).
    pub fn new<'a>(paths: impl IntoIterator<Item = &'a [String]>) -> PathTrie {
        let mut root = PathTrie::default();
        for p in paths {
            root.insert(p.iter().map(String::as_str));
        }
        root.insert(["action"]);
        root.insert(["resource", "vendor_id"]);
        root
    }

    /// Whether a path of the bundle ends here (the whole value here is read).
    pub fn is_leaf(&self) -> bool {
        self.leaf
    }

    /// The next steps of the bundle's paths from here, for walkers of other request trees (the
    /// Python package walks a `dict` along them).
    pub fn children(&self) -> impl Iterator<Item = (&str, &PathTrie)> {
        self.children.iter().map(|(k, v)| (k.as_str(), v))
    }

    fn insert<'s>(&mut self, path: impl IntoIterator<Item = &'s str>) {
        let mut node = self;
        for seg in path {
            node = node.children.entry(seg.to_owned()).or_default();
        }
        node.leaf = true;
    }

    /// Parses and validates a request context, keeping only what the trie reaches.
    pub fn parse(&self, json: &[u8]) -> Result<Request, RequestError> {
        // Skipped strings are not decoded, so check the encoding of the whole text first: the
        // projection accepts exactly what the full parser accepts.
        let text = std::str::from_utf8(json).map_err(|e| RequestError {
            message: format!("invalid JSON: invalid UTF-8 at byte {}", e.valid_up_to()),
            line: None,
            column: None,
        })?;
        let mut de = serde_json::Deserializer::from_str(text);
        let req = TopSeed(self).deserialize(&mut de).map_err(|e| json_error(&e))?;
        de.end().map_err(|e| json_error(&e))?;
        req
    }
}

fn json_error(e: &serde_json::Error) -> RequestError {
    let msg = e.to_string();
    let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
    RequestError { message: format!("invalid JSON: {msg}"), line: Some(e.line()), column: Some(e.column()) }
}

fn refuse(message: String) -> RequestError {
    RequestError { message, line: None, column: None }
}

/// The top-level object: `Ok(Err(_))` carries a validation error (the JSON itself was fine).
struct TopSeed<'t>(&'t PathTrie);

impl<'de> DeserializeSeed<'de> for TopSeed<'_> {
    type Value = Result<Request, RequestError>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_> {
    type Value = Result<Request, RequestError>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a request context object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut req = Request::default();
        let mut problem: Option<RequestError> = None;
        let empty = PathTrie::default();
        let mut keys = Keys::default();
        while let Some(key) = map.next_key::<String>()? {
            keys.insert::<A::Error>(key.clone())?;
            match key.as_str() {
                "data" => {
                    // `data`'s keys are the merged view's roots.
                    match map.next_value_seed(NodeSeed(self.0))? {
                        Value::Object(m) => req.data = m,
                        other => {
                            problem = problem.or(Some(refuse(format!(
                                "`data` must be an object, not {}",
                                crate::value::type_name(&other)
                            ))))
                        }
                    }
                }
                "subject" | "resource" => {
                    let node = self.0.children.get(key.as_str()).unwrap_or(&empty);
                    match map.next_value_seed(NodeSeed(node))? {
                        Value::Null => {}
                        v @ Value::Object(_) => {
                            if key == "subject" {
                                req.subject = Some(v);
                            } else {
                                req.resource = Some(v);
                            }
                        }
                        other => {
                            problem = problem.or(Some(refuse(format!(
                                "`{key}` must be an object or null, not {}",
                                crate::value::type_name(&other)
                            ))));
                        }
                    }
                }
                "action" => match map.next_value::<Strict>()?.0 {
                    Value::Null => req.action = None,
                    v @ Value::String(_) => req.action = Some(v),
                    other => {
                        problem = problem.or(Some(refuse(format!(
                            "`action` must be a string or null, not {}",
                            crate::value::type_name(&other)
                        ))));
                    }
                },
                other => {
                    map.next_value_seed(Skip)?;
                    problem = problem.or(Some(refuse(format!(
                        "unknown key `{other}` in request context; expected `subject`, `action`, `resource` or `data`"
                    ))));
                }
            }
        }
        Ok(match problem {
            Some(p) => Err(p),
            None => Ok(req),
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(Err(refuse("a request context must be a JSON object, not list".into())))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Err(refuse("a request context must be a JSON object, not string".into())))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err(refuse("a request context must be a JSON object, not bool".into())))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err(refuse("a request context must be a JSON object, not number".into())))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err(refuse("a request context must be a JSON object, not number".into())))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err(refuse("a request context must be a JSON object, not number".into())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Err(refuse("a request context must be a JSON object, not null".into())))
    }
}

/// A value at a trie node: whole when the node is a leaf, else only the children the trie has
/// (other keys and elements are skipped). Scalars are kept as they are (their type matters to
/// validation and to lookups that stop there).
struct NodeSeed<'t>(&'t PathTrie);

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.0.leaf {
            return Strict::deserialize(d).map(|s| s.0);
        }
        d.deserialize_any(self)
    }
}

use serde::Deserialize;

impl<'de> Visitor<'de> for NodeSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        let mut skipped = Keys::default();
        while let Some(key) = map.next_key::<String>()? {
            match self.0.children.get(&key) {
                Some(child) => {
                    if out.contains_key(&key) {
                        return Err(crate::json::duplicate(&key));
                    }
                    let v = map.next_value_seed(NodeSeed(child))?;
                    out.insert(key, v);
                }
                None => {
                    skipped.insert::<A::Error>(key)?;
                    map.next_value_seed(Skip)?;
                }
            }
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        // Elements not reached by the trie become null placeholders so indices stay right.
        let mut out = Vec::new();
        let mut i = 0usize;
        loop {
            // A list step is any all-digit segment naming this index (`1`, `01`, …).
            let mut matching = self.0.children.iter().filter(|(k, _)| {
                !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) && k.parse::<usize>().ok() == Some(i)
            });
            let first = matching.next();
            let several = matching.next().is_some();
            let next = match first {
                Some(_) if several => seq.next_element::<Strict>()?.map(|s| s.0),
                Some((_, c)) => seq.next_element_seed(NodeSeed(c))?,
                None => seq.next_element_seed(Skip)?.map(|()| Value::Null),
            };
            match next {
                Some(v) => out.push(v),
                None => break,
            }
            i += 1;
        }
        Ok(Value::Array(out))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}
