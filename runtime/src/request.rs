//! Request contexts (LANGUAGE.md §1): validation and merged-view path lookup.

use serde_json::{Map, Value};
use std::fmt;

/// A validated request context.
///
/// INVARIANT: `subject` and `resource` are objects when present, `action` a string.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    pub data: Map<String, Value>,
    pub subject: Option<Value>,
    pub action: Option<Value>,
    pub resource: Option<Value>,
}

/// Why a request context was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    pub message: String,
    /// 1-based line and column in the JSON text, when the error is a JSON syntax error.
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{} at line {l} column {c}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for RequestError {}

fn refuse(message: impl Into<String>) -> RequestError {
    RequestError { message: message.into(), line: None, column: None }
}

impl Request {
    /// Parses and validates a request context from JSON text, strictly ([`crate::json`]: a
    /// duplicate key anywhere is refused, as the projection parser refuses it).
    pub fn from_json(bytes: &[u8]) -> Result<Request, RequestError> {
        let value: Value = crate::json::from_slice(bytes).map_err(|e| RequestError {
            message: format!("invalid JSON: {}", strip_position(&e.to_string())),
            line: Some(e.line()),
            column: Some(e.column()),
        })?;
        Request::from_value(value)
    }

    /// Validates a request context: an object with at most `subject`, `action`, `resource`, `data`.
    pub fn from_value(value: Value) -> Result<Request, RequestError> {
        let Value::Object(map) = value else {
            return Err(refuse(format!(
                "a request context must be a JSON object, not {}",
                crate::value::type_name(&value)
            )));
        };
        let mut req = Request::default();
        for (key, v) in map {
            req.set_key(&key, v)?;
        }
        Ok(req)
    }

    /// Sets one top-level key of a context, validated as [`Request::from_value`] does; for
    /// readers of other request trees (the Python package sets the keys of a `dict` in order).
    pub fn set_key(&mut self, key: &str, v: Value) -> Result<(), RequestError> {
        match key {
            "data" => match v {
                Value::Object(m) => self.data = m,
                other => {
                    return Err(refuse(format!("`data` must be an object, not {}", crate::value::type_name(&other))));
                }
            },
            "subject" => self.subject = object_or_null("subject", v)?,
            "resource" => self.resource = object_or_null("resource", v)?,
            "action" => match v {
                Value::Null => self.action = None,
                Value::String(_) => self.action = Some(v),
                other => {
                    return Err(refuse(format!(
                        "`action` must be a string or null, not {}",
                        crate::value::type_name(&other)
                    )));
                }
            },
            other => {
                return Err(refuse(format!(
                    "unknown key `{other}` in request context; expected `subject`, `action`, `resource` or `data`"
                )));
            }
        }
        Ok(())
    }

    /// The value of a top-level key of the merged view: `subject`, `action` and `resource` when
    /// set, else the key of `data`.
    pub fn root(&self, key: &str) -> Option<&Value> {
        let own = match key {
            "subject" => self.subject.as_ref(),
            "action" => self.action.as_ref(),
            "resource" => self.resource.as_ref(),
            _ => None,
        };
        own.or_else(|| self.data.get(key))
    }

    /// Looks a path up in the merged view; `None` when it does not resolve (missing).
    pub fn lookup<S: AsRef<str>>(&self, segments: &[S]) -> Option<&Value> {
        let (first, rest) = segments.split_first()?;
        let mut cur = self.root(first.as_ref())?;
        for seg in rest {
            cur = step(cur, seg.as_ref())?;
        }
        Some(cur)
    }

    /// The request as JSON (for witnesses and echoes).
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        if let Some(s) = &self.subject {
            m.insert("subject".into(), s.clone());
        }
        if let Some(a) = &self.action {
            m.insert("action".into(), a.clone());
        }
        if let Some(r) = &self.resource {
            m.insert("resource".into(), r.clone());
        }
        m.insert("data".into(), Value::Object(self.data.clone()));
        Value::Object(m)
    }
}

/// One path step: a key on an object; on a list, an index written in ASCII digits only.
pub fn step<'v>(cur: &'v Value, seg: &str) -> Option<&'v Value> {
    match cur {
        Value::Object(m) => m.get(seg),
        Value::Array(items) => {
            if seg.is_empty() || !seg.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let i: usize = seg.parse().ok()?;
            items.get(i)
        }
        _ => None,
    }
}

fn object_or_null(key: &str, v: Value) -> Result<Option<Value>, RequestError> {
    match v {
        Value::Null => Ok(None),
        Value::Object(_) => Ok(Some(v)),
        other => Err(refuse(format!("`{key}` must be an object or null, not {}", crate::value::type_name(&other)))),
    }
}

fn strip_position(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg.get(..i).unwrap_or(msg).to_owned(),
        None => msg.to_owned(),
    }
}

/// Splits a reference-format `field` into segments: `.` separates, `\.` is a literal dot and
/// `\\` a literal backslash (a trailing lone `\` stays a backslash, as in the reference).
pub fn split_field(field: &str) -> Vec<String> {
    let mut segments = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in field.chars() {
        if escaped {
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '.' {
            segments.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    if escaped {
        current.push('\\');
    }
    segments.push(current);
    segments
}

/// The inverse of [`split_field`].
pub fn join_field<S: AsRef<str>>(segments: &[S]) -> String {
    let mut out = String::new();
    for (i, s) in segments.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        for c in s.as_ref().chars() {
            if c == '.' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merged_view() {
        let r = Request::from_value(
            json!({"data": {"region": "eu", "subject": {"x": 1}, "l": [1, 2]}, "subject": null, "action": "read"}),
        )
        .unwrap_or_default();
        assert_eq!(r.lookup(&["region"]), Some(&json!("eu")));
        assert_eq!(r.lookup(&["subject", "x"]), Some(&json!(1)));
        assert_eq!(r.lookup(&["action"]), Some(&json!("read")));
        assert_eq!(r.lookup(&["l", "1"]), Some(&json!(2)));
        assert_eq!(r.lookup(&["l", "-1"]), None);
        assert_eq!(r.lookup(&["l", "01"]), Some(&json!(2)));
    }

    #[test]
    fn fields() {
        assert_eq!(split_field("odd\\.key"), vec!["odd.key"]);
        assert_eq!(split_field("a.b\\\\c"), vec!["a", "b\\c"]);
        assert_eq!(join_field(&split_field("a\\.b.c")), "a\\.b.c");
    }

    #[test]
    fn refuses_bad_contexts() {
        assert!(Request::from_value(json!({"extra": 1})).is_err());
        assert!(Request::from_value(json!({"action": 3})).is_err());
        assert!(Request::from_value(json!({"data": null})).is_err());
        assert!(Request::from_json(b"{").is_err());
    }
}
