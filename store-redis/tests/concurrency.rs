//! Read-decide-hold is atomic per decision across stores: threads, each with its own store (its
//! own connections, as a replica has), spend $10 at a time from one $1,000 daily budget. The
//! budget check runs inside `decide` (read the day's sum, hold 10 when sum + 10 <= 1000), as the
//! engine's condition would. No decision ever reads more than the budget, and exactly 100
//! approvals land when all are committed; with some released, the total is exactly the committed
//! approvals. Contention (retries exhausted) fails closed and is counted, never approved.

mod common;

use common::{number, read, server, store};
use serde_json::json;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use verdict_runtime::state::{Range, Recording, Settled, StateStore, StoreError, Update};
use verdict_store_redis::testing::RedisServer;

const DAY: i64 = 1_764_460_800_000_000; // 2025-11-30T00:00:00Z in µs
const NOW: i64 = DAY + 43_200_000_000;
const THREADS: usize = 8;

#[derive(Debug, Default)]
struct Counts {
    approved: AtomicUsize,
    committed: AtomicUsize,
    released: AtomicUsize,
    denied: AtomicUsize,
    contention: AtomicUsize,
    max_read: AtomicI64,
}

/// One replica's loop: decide until the budget is seen spent (or a hang guard of iterations).
fn replica(
    server: &RedisServer,
    prefix: &str,
    thread: usize,
    release_every: Option<usize>,
    counts: &Counts,
) -> Result<(), String> {
    let store = store(server, prefix)?;
    let key = vec![json!("acme")];
    for i in 0..5_000 {
        let id = format!("t{thread}-{i}");
        let mut approve = false;
        let result = store.transact(&mut |view| {
            let day = view.read("spend", &key, Range::Period { from: DAY, until: DAY + 86_400_000_000 }, NOW);
            let sum = day.as_ref().ok().and_then(serde_json::Number::as_i64);
            if let Some(s) = sum {
                counts.max_read.fetch_max(s, Ordering::Relaxed);
            }
            approve = sum.is_some_and(|s| s + 10 <= 1000);
            let updates = if approve {
                vec![Update { state: "spend".into(), key: key.clone(), amount: number(json!(10)), hold: true }]
            } else {
                vec![]
            };
            Recording { decision_id: id.clone(), time: NOW, hold_ttl: 600_000_000, updates }
        });
        match result {
            Ok(()) if approve => {
                counts.approved.fetch_add(1, Ordering::Relaxed);
                if release_every.is_some_and(|n| i % n == 0) {
                    assert_eq!(store.release(&id, NOW + 1), Ok(Settled::Released));
                    counts.released.fetch_add(1, Ordering::Relaxed);
                } else {
                    assert_eq!(store.commit(&id, NOW + 1), Ok(Settled::Committed));
                    counts.committed.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(()) => {
                counts.denied.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            Err(StoreError::Contention) => {
                counts.contention.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => return Err(format!("thread {thread}: {e}")),
        }
    }
    Err(format!("thread {thread} never saw the budget spent"))
}

/// Runs the replicas; `None` when redis-server is missing outside CI.
fn spend(prefix: &str, release_every: Option<usize>) -> Result<Option<(Counts, String)>, String> {
    let Some(server) = server()? else { return Ok(None) };
    let counts = Counts::default();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (server, counts) = (&server, &counts);
                scope.spawn(move || replica(server, prefix, t, release_every, counts))
            })
            .collect();
        handles.into_iter().try_for_each(|h| h.join().map_err(|_| "a thread panicked".to_string())?)
    })?;
    let total =
        read(&store(&server, prefix)?, "spend", json!("acme"), Range::Total, NOW + 2).map_err(|e| e.to_string())?;
    eprintln!("{prefix} {counts:?} total {total}");
    Ok(Some((counts, total)))
}

#[test]
fn exactly_the_budget_is_approved_when_all_are_committed() -> Result<(), String> {
    let Some((counts, total)) = spend("budget:", None)? else { return Ok(()) };
    assert_eq!(counts.approved.load(Ordering::Relaxed), 100);
    assert_eq!(counts.committed.load(Ordering::Relaxed), 100);
    assert_eq!(counts.max_read.load(Ordering::Relaxed), 1000);
    assert_eq!(counts.denied.load(Ordering::Relaxed), THREADS);
    assert_eq!(total, "1000");
    Ok(())
}

#[test]
fn released_approvals_return_to_the_budget_and_never_overspend_it() -> Result<(), String> {
    let Some((counts, total)) = spend("budget-release:", Some(10))? else { return Ok(()) };
    let committed = counts.committed.load(Ordering::Relaxed);
    assert!(counts.released.load(Ordering::Relaxed) > 0);
    assert!(committed <= 100, "{counts:?}");
    assert!(counts.max_read.load(Ordering::Relaxed) <= 1000, "{counts:?}");
    assert_eq!(total, (committed * 10).to_string());
    Ok(())
}
