//! Host functions bound to a bundle's `extern` declarations (LANGUAGE.md §5.3).
//!
//! The engine calls [`Externs::call`] with arguments already checked against the declared
//! parameter types, memoises the call per decision (a call with the same arguments runs at most
//! once), checks the result against the declared return type, and turns every failure — an
//! unbound name, an error, a result of the wrong type — into a fault that decides the most
//! severe effect. A host only says what its function returned.

use serde_json::Value;
use std::collections::HashMap;

/// Why a host function gave no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExternError {
    /// No function is bound to the name.
    #[error("not bound")]
    Unbound,
    /// The function failed; the text says how (e.g. `ValueError: bad input`).
    #[error("{0}")]
    Failed(String),
}

/// The host functions an embedding program binds: Rust closures, Python callables, mocks.
pub trait Externs: Send + Sync {
    /// Calls the function bound to `name`.
    fn call(&self, name: &str, args: &[Value]) -> Result<Value, ExternError>;
}

type HostFn = Box<dyn Fn(&[Value]) -> Result<Value, String> + Send + Sync>;

/// Rust closures by name.
#[derive(Default)]
pub struct ExternTable {
    fns: HashMap<String, HostFn>,
}

impl std::fmt::Debug for ExternTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.fns.keys().collect();
        names.sort();
        f.debug_struct("ExternTable").field("bound", &names).finish()
    }
}

impl ExternTable {
    pub fn new() -> ExternTable {
        ExternTable::default()
    }

    /// Binds `name` to a closure; its `Err` text becomes the fault's message.
    #[must_use]
    pub fn bind(
        mut self,
        name: impl Into<String>,
        f: impl Fn(&[Value]) -> Result<Value, String> + Send + Sync + 'static,
    ) -> ExternTable {
        self.fns.insert(name.into(), Box::new(f));
        self
    }

    /// Mocks from JSON (`verdict eval --externs FILE.json`, test cases): `{"name": RESULT}` binds
    /// a function that always returns RESULT, `{"name": {"error": "msg"}}` one that always fails
    /// with `msg`.
    pub fn mocks(spec: &Value) -> Result<ExternTable, String> {
        let Value::Object(entries) = spec else {
            return Err("extern mocks must be a JSON object of name → result".into());
        };
        let mut table = ExternTable::new();
        for (name, v) in entries {
            let failure = match v {
                Value::Object(m) if m.len() == 1 => m.get("error").and_then(Value::as_str).map(str::to_owned),
                _ => None,
            };
            table = match failure {
                Some(msg) => table.bind(name.clone(), move |_| Err(msg.clone())),
                None => {
                    let result = v.clone();
                    table.bind(name.clone(), move |_| Ok(result.clone()))
                }
            };
        }
        Ok(table)
    }
}

impl Externs for ExternTable {
    fn call(&self, name: &str, args: &[Value]) -> Result<Value, ExternError> {
        match self.fns.get(name) {
            Some(f) => f(args).map_err(ExternError::Failed),
            None => Err(ExternError::Unbound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mocks_bind_results_and_errors() {
        let t = ExternTable::mocks(&json!({"risk": 0.9, "no_pii": {"error": "timeout"}, "obj": {"a": 1}}))
            .unwrap_or_default();
        assert_eq!(t.call("risk", &[]), Ok(json!(0.9)));
        assert_eq!(t.call("no_pii", &[json!("x")]), Err(ExternError::Failed("timeout".into())));
        assert_eq!(t.call("obj", &[]), Ok(json!({"a": 1})));
        assert_eq!(t.call("other", &[]), Err(ExternError::Unbound));
        assert!(ExternTable::mocks(&json!([1])).is_err());
    }
}
