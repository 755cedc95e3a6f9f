//! Helpers shared by the store's integration tests: a server per test, stores on it, and the
//! small steps every test takes (record, read, hold).
#![allow(dead_code)]

use serde_json::{Number, Value};
use verdict_runtime::state::{Micros, Range, Recording, StateStore, StoreError, Update};
use verdict_store_redis::testing::RedisServer;
use verdict_store_redis::{Options, RedisStore};

/// A started server, or `None` (reported) when redis-server is missing outside CI.
pub fn server() -> Result<Option<RedisServer>, String> {
    RedisServer::start()
}

pub fn store(server: &RedisServer, prefix: &str) -> Result<RedisStore, String> {
    store_with(server, Options { prefix: prefix.into(), ..Options::default() })
}

pub fn store_with(server: &RedisServer, options: Options) -> Result<RedisStore, String> {
    RedisStore::open(&server.url(), options).map_err(|e| e.to_string())
}

pub fn number(v: Value) -> Number {
    match v {
        Value::Number(n) => n,
        _ => Number::from(0),
    }
}

pub fn update(state: &str, key: Value, amount: Value, hold: bool) -> Update {
    let key = match key {
        Value::Array(k) => k,
        other => vec![other],
    };
    Update { state: state.into(), key, amount: number(amount), hold }
}

/// Records `updates` at `time` under `id` (holds last `ttl`), reading nothing.
pub fn record(
    store: &dyn StateStore,
    id: &str,
    time: Micros,
    ttl: Micros,
    updates: Vec<Update>,
) -> Result<(), StoreError> {
    store.transact(&mut |_| Recording { decision_id: id.into(), time, hold_ttl: ttl, updates: updates.clone() })
}

/// One read of series (`state`, `key`) in a transaction that records nothing, as JSON text.
pub fn read(store: &dyn StateStore, state: &str, key: Value, range: Range, now: Micros) -> Result<String, StoreError> {
    let key = match key {
        Value::Array(k) => k,
        other => vec![other],
    };
    let mut out = Err(StoreError::Contention);
    store.transact(&mut |v| {
        out = v.read(state, &key, range, now).map(|n| n.to_string());
        Recording { decision_id: "read".into(), time: now, hold_ttl: 0, updates: vec![] }
    })?;
    out
}
