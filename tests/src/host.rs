//! Drawn hosts: extern functions and state views whose answers are a pure function of a salt and
//! the question, so one "world" answers the same question the same way in every backend and in
//! every variant of a bundle, while different salts explore different worlds — results of every
//! type, errors, unavailable stores.
//!
//! `verdict_runtime::state::Empty` (every series empty, with no extern bound) is the world the
//! analysis' oracle judges witnesses in, so tests confirm witnesses in the same world.

use serde_json::{Number, Value, json};
use std::hash::{Hash, Hasher};
use verdict_runtime::externs::{ExternError, Externs};
use verdict_runtime::state::{Micros, Range, StateView, StoreError};

/// A world drawn from `salt`: externs return booleans, numbers, strings, lists or errors, and
/// state reads return sums or fail, each chosen by hashing the salt with the question.
#[derive(Debug, Clone, Copy)]
pub struct Drawn {
    pub salt: u64,
}

impl Drawn {
    fn draw(&self, what: &impl Hash) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.salt.hash(&mut h);
        what.hash(&mut h);
        h.finish()
    }
}

/// Extern answers: mostly of the types bundles declare, some of the wrong type, some errors.
fn extern_answer(n: u64) -> Result<Value, ExternError> {
    match n % 10 {
        0 | 1 => Ok(json!(true)),
        2 | 3 => Ok(json!(false)),
        4 => Ok(json!(0.9)),
        5 => Ok(json!(2)),
        6 => Ok(json!(0)),
        7 => Ok(json!("text")),
        8 => Ok(json!([1, 2])),
        _ => Err(ExternError::Failed("drawn failure".into())),
    }
}

impl Externs for Drawn {
    fn call(&self, name: &str, args: &[Value]) -> Result<Value, ExternError> {
        let text = serde_json::to_string(args).unwrap_or_default();
        extern_answer(self.draw(&(name, text)))
    }
}

impl StateView for Drawn {
    fn read(&self, state: &str, key: &[Value], range: Range, _: Micros) -> Result<Number, StoreError> {
        let text = serde_json::to_string(key).unwrap_or_default();
        let which = match range {
            Range::Period { from, until } => (0u8, from, until),
            Range::Sliding { after, until } => (1, after, until),
            Range::Total => (2, 0, 0),
        };
        match self.draw(&(state, text, which)) % 8 {
            0 => Ok(Number::from(0)),
            1 => Ok(Number::from(1)),
            2 => Ok(Number::from(5)),
            3 => Ok(Number::from(60)),
            4 => Number::from_f64(199.5).ok_or(StoreError::Contention),
            5 => Ok(Number::from(250)),
            6 => Number::from_f64(0.1).ok_or(StoreError::Contention),
            _ => Err(StoreError::Unavailable("drawn outage".into())),
        }
    }
}
