//! The Redis store against the runtime's `MemoryStore`, on random sequences of operations
//! (proptest): decisions that read random ranges of several series at random times and record
//! random updates and holds (integer and float amounts, big integers, 0.1, non-finite sums),
//! commits, releases and expiries, reused and unknown decision ids. Every read, every transact
//! result and every commit/release result must be identical, to the text of the numbers.
//!
//! Two runs: times anywhere (before and after each other, near the ends of `i64` and beyond
//! 2^53), with the default purge grace (a day, far longer than a case); and times that never go
//! back, with a purge grace of 0 (long-expired holds are purged at once, which a store may do
//! when time never goes back).

mod common;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Number, Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use verdict_runtime::state::{MemoryStore, Micros, Range, Recording, StateStore, Update};
use verdict_store_redis::testing::RedisServer;
use verdict_store_redis::{Options, RedisStore};

/// The series the operations use: two states, keys of every kind, one with braces.
fn series(i: usize) -> (&'static str, Vec<Value>) {
    match i % 6 {
        0 => ("spend", vec![json!("u-1")]),
        1 => ("spend", vec![json!("u-2")]),
        2 => ("spend", vec![json!(1), json!(true)]),
        3 => ("count", vec![]),
        4 => ("count", vec![json!("a}b{c")]),
        _ => ("spend", vec![json!(1.5)]),
    }
}

#[derive(Debug, Clone)]
enum RangeSpec {
    Period(i64, i64),
    Sliding(i64, i64),
    Total,
}

#[derive(Debug, Clone)]
enum Op {
    Transact {
        reads: Vec<(usize, RangeSpec, i64)>,
        id: usize,
        /// The decision's time (an offset, or a step of the clock when time never goes back).
        time: i64,
        ttl: i64,
        updates: Vec<(usize, Number, bool)>,
    },
    Commit {
        id: usize,
        now: i64,
    },
    Release {
        id: usize,
        now: i64,
    },
}

fn amount() -> impl Strategy<Value = Number> {
    let float = |f: f64| Number::from_f64(f).unwrap_or_else(|| Number::from(0));
    prop_oneof![
        4 => (-5i64..50).prop_map(Number::from),
        1 => Just(float(0.1)),
        1 => Just(float(0.2)),
        1 => Just(float(-0.0)),
        1 => (-1000.0f64..1000.0).prop_map(float),
        1 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(float),
        1 => Just(Number::from(i64::MAX)),
        1 => Just(Number::from(i64::MIN)),
        1 => Just(Number::from(9_007_199_254_740_993_i64)),
        1 => Just(Number::from(u64::MAX)),
        1 => Just(float(1e308)),
    ]
}

fn range() -> impl Strategy<Value = RangeSpec> {
    prop_oneof![
        (0i64..20_000, 0i64..20_000).prop_map(|(a, b)| RangeSpec::Period(a.min(b), a.max(b))),
        (0i64..20_000, 0i64..20_000).prop_map(|(a, b)| RangeSpec::Sliding(a.min(b), a.max(b))),
        Just(RangeSpec::Total),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let ttl = prop_oneof![Just(0i64), Just(1), 0i64..5_000, Just(100_000), Just(i64::MAX)];
    let transact = (
        prop::collection::vec((0usize..6, range(), 0i64..20_000), 0..4),
        0usize..9,
        0i64..20_000,
        ttl,
        prop::collection::vec((0usize..6, amount(), any::<bool>()), 0..4),
    )
        .prop_map(|(reads, id, time, ttl, updates)| Op::Transact { reads, id, time, ttl, updates });
    prop_oneof![
        6 => transact,
        2 => (0usize..11, 0i64..20_000).prop_map(|(id, now)| Op::Commit { id, now }),
        1 => (0usize..11, 0i64..20_000).prop_map(|(id, now)| Op::Release { id, now }),
    ]
}

/// Where times start: zero, today, around 2^53 µs, and near both ends of `i64`.
fn base() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0i64),
        Just(1_764_500_000_000_000),
        Just((1 << 53) - 10_000),
        Just(i64::MAX - 25_000),
        Just(i64::MIN),
        Just(-1_000_000),
    ]
}

/// What one operation answered, as text to compare.
fn apply(store: &dyn StateStore, op: &Op, clock: &mut Option<i64>, base: i64) -> String {
    // When time never goes back, every time of an operation is the clock, advanced by `time`.
    let monotonic = clock.is_some();
    let mut at = |offset: i64| match clock {
        Some(c) => {
            *c = c.saturating_add(offset % 2_000);
            *c
        }
        None => base.saturating_add(offset),
    };
    match op {
        Op::Transact { reads, id, time, ttl, updates } => {
            let time = at(*time);
            let nows: Vec<Micros> =
                reads.iter().map(|(_, _, now)| if monotonic { time } else { base.saturating_add(*now) }).collect();
            let updates: Vec<Update> = updates
                .iter()
                .map(|(s, amount, hold)| {
                    let (state, key) = series(*s);
                    Update { state: state.into(), key, amount: amount.clone(), hold: *hold }
                })
                .collect();
            let mut seen = Vec::new();
            let result = store.transact(&mut |view| {
                seen.clear();
                for ((s, range, _), now) in reads.iter().zip(&nows) {
                    let (state, key) = series(*s);
                    let range = match range {
                        RangeSpec::Period(a, b) => {
                            Range::Period { from: base.saturating_add(*a), until: base.saturating_add(*b) }
                        }
                        RangeSpec::Sliding(a, b) => {
                            Range::Sliding { after: base.saturating_add(*a), until: base.saturating_add(*b) }
                        }
                        RangeSpec::Total => Range::Total,
                    };
                    seen.push(view.read(state, &key, range, *now).map(|n| n.to_string()));
                }
                Recording { decision_id: format!("d{id}"), time, hold_ttl: *ttl, updates: updates.clone() }
            });
            format!("transact {result:?} reads {seen:?}")
        }
        Op::Commit { id, now } => format!("commit {:?}", store.commit(&format!("d{id}"), at(*now))),
        Op::Release { id, now } => format!("release {:?}", store.release(&format!("d{id}"), at(*now))),
    }
}

static CASE: AtomicUsize = AtomicUsize::new(0);

fn run(server: &RedisServer, monotonic: bool, purge_grace: Option<Micros>) -> Result<(), String> {
    let cases = std::env::var("VERDICT_STORE_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256);
    let mut runner = TestRunner::new(Config { cases, ..Config::default() });
    let url = server.url();
    let strategy = (base(), prop::collection::vec(op(), 1..40));
    let answers = std::sync::Mutex::new(std::collections::BTreeSet::<&str>::new());
    let result = runner.run(&strategy, |(base, ops)| {
        let case = CASE.fetch_add(1, Ordering::Relaxed);
        let options = Options { prefix: format!("diff-{case}:"), purge_grace, ..Options::default() };
        let redis = RedisStore::open(&url, options).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let memory = MemoryStore::new();
        let start = if monotonic { Some(base) } else { None };
        let (mut clock_r, mut clock_m) = (start, start);
        for (i, op) in ops.iter().enumerate() {
            let r = apply(&redis, op, &mut clock_r, base);
            let m = apply(&memory, op, &mut clock_m, base);
            if r.contains("Unavailable") && !r.contains("not a finite number") {
                return Err(TestCaseError::fail(format!("op {i} {op:?}: redis failed: {r}")));
            }
            prop_assert_eq!(&r, &m, "op {} {:?}", i, op);
            if let Ok(mut answers) = answers.lock() {
                answers.extend(ANSWERS.iter().filter(|a| r.contains(**a)));
            }
        }
        Ok(())
    });
    result.map_err(|e| e.to_string())?;
    // The operations reached every answer a store gives.
    let answers = answers.into_inner().unwrap_or_default();
    let missing: Vec<&&str> = ANSWERS.iter().filter(|a| !answers.contains(*a)).collect();
    if cases >= 256 && !missing.is_empty() {
        return Err(format!("no operation answered {missing:?}"));
    }
    Ok(())
}

const ANSWERS: [&str; 8] = [
    "commit Ok(Committed)",
    "release Ok(Released)",
    "Err(Expired",
    "Err(Released",
    "Err(Committed",
    "Err(UnknownDecision",
    "not a finite number",
    "e+",
];

#[test]
fn redis_answers_as_memory_at_any_times() -> Result<(), String> {
    let Some(server) = RedisServer::start()? else { return Ok(()) };
    run(&server, false, Options::default().purge_grace)
}

#[test]
fn redis_answers_as_memory_when_time_moves_on_and_expired_holds_are_purged() -> Result<(), String> {
    let Some(server) = RedisServer::start()? else { return Ok(()) };
    run(&server, true, Some(0))
}
