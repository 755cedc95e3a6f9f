//! Faults: Redis killed, restarted, or stopped (accepting connections and answering nothing).
//! Every operation then answers `Unavailable` with a message naming the server, within the
//! connect and command timeouts (the limits below are hang guards, far above them), never a
//! panic; once Redis is back the same store works again without being rebuilt.

mod common;

use common::{read, record, server, store_with, update};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use verdict_runtime::state::{Range, Recording, Settled, StateStore, StoreError};
use verdict_store_redis::Options;

const TTL: i64 = 600_000_000;
/// Far above any timeout the stores below use: a call that takes longer is a hang.
const HANG: Duration = Duration::from_secs(10);

fn options(prefix: &str) -> Options {
    Options {
        prefix: prefix.into(),
        connect_timeout: Duration::from_millis(300),
        io_timeout: Duration::from_millis(300),
        ..Options::default()
    }
}

/// Runs `f`, failing when it takes longer than the hang guard.
fn timed<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    if took > HANG { Err(format!("{what} took {took:?}")) } else { Ok(out) }
}

fn unavailable<T: std::fmt::Debug>(what: &str, r: Result<T, StoreError>, port: u16) -> Result<(), String> {
    match r {
        Err(StoreError::Unavailable(m)) if m.contains(&format!("127.0.0.1:{port}")) => Ok(()),
        other => Err(format!("{what}: expected unavailable naming the server, got {other:?}")),
    }
}

#[test]
fn a_killed_redis_is_unavailable_and_a_restarted_one_serves_again() -> Result<(), String> {
    let Some(mut server) = server()? else { return Ok(()) };
    let port = server.port();
    let s = store_with(&server, options("kill:"))?;
    let hold = |id: &str| record(&s, id, 1_000, TTL, vec![update("spend", json!("u-1"), json!(10), true)]);
    assert_eq!(hold("d1"), Ok(()));
    server.kill();
    unavailable("transact", timed("transact", || hold("d2"))?, port)?;
    unavailable("read", timed("read", || read(&s, "spend", json!("u-1"), Range::Total, 2_000))?, port)?;
    unavailable("commit", timed("commit", || s.commit("d1", 2_000))?, port)?;
    unavailable("release", timed("release", || s.release("d1", 2_000))?, port)?;
    unavailable("ping", timed("ping", || s.ping())?, port)?;
    let m = s.ping().err().map(|e| e.to_string()).unwrap_or_default();
    assert!(m.starts_with("store unavailable: cannot connect to redis at 127.0.0.1:"), "{m}");

    // Back (empty: nothing was persisted): the same store works.
    server.restart()?;
    assert_eq!(hold("d3"), Ok(()));
    assert_eq!(s.commit("d3", 2_000), Ok(Settled::Committed));
    assert_eq!(read(&s, "spend", json!("u-1"), Range::Total, 2_000), Ok("10".into()));

    // Restarted between two calls: the idle connections are stale; the next calls still succeed
    // (an idempotent command is retried once on a new connection; a script waits for a PING).
    server.restart()?;
    assert_eq!(read(&s, "spend", json!("u-1"), Range::Total, 2_000), Ok("0".into()));
    server.restart()?;
    assert_eq!(hold("d4"), Ok(()));
    server.restart()?;
    assert_eq!(s.commit("d4", 2_000), Err(StoreError::UnknownDecision("d4".into())));
    Ok(())
}

#[test]
fn a_redis_that_stops_answering_times_out_and_recovers() -> Result<(), String> {
    let Some(server) = server()? else { return Ok(()) };
    let port = server.port();
    let s = store_with(&server, options("stop:"))?;
    assert_eq!(read(&s, "spend", json!("u-1"), Range::Total, 0), Ok("0".into()));
    server.signal("STOP")?;
    let r = timed("read", || read(&s, "spend", json!("u-1"), Range::Total, 0));
    let r2 = timed("transact", || record(&s, "d1", 0, TTL, vec![update("spend", json!("u-1"), json!(1), true)]));
    server.signal("CONT")?;
    unavailable("read", r?, port)?;
    unavailable("transact", r2?, port)?;
    // A decision that read, then failed, waited for one timeout: its later reads fail at once.
    let mut reads = Vec::new();
    server.signal("STOP")?;
    let r3 = timed("transact with reads", || {
        s.transact(&mut |v| {
            reads = (0..3).map(|_| v.read("spend", &[json!("u-1")], Range::Total, 0)).collect();
            Recording { decision_id: "d2".into(), time: 0, hold_ttl: TTL, updates: vec![] }
        })
    });
    server.signal("CONT")?;
    unavailable("transact with reads", r3?, port)?;
    assert!(
        reads.iter().all(|r| matches!(r, Err(StoreError::Unavailable(m)) if m.contains("within 300 ms"))),
        "{reads:?}"
    );
    assert_eq!(record(&s, "d3", 0, TTL, vec![update("spend", json!("u-1"), json!(1), true)]), Ok(()));
    assert_eq!(read(&s, "spend", json!("u-1"), Range::Total, 0), Ok("1".into()));
    Ok(())
}

#[test]
fn redis_killed_during_load_fails_calls_closed_and_recovers_by_itself() -> Result<(), String> {
    let Some(mut server) = server()? else { return Ok(()) };
    const THREADS: usize = 4;
    let ok = [const { AtomicUsize::new(0) }; THREADS];
    let failed = [const { AtomicUsize::new(0) }; THREADS];
    let stop = AtomicBool::new(false);
    let stores: Vec<_> = (0..THREADS).map(|_| store_with(&server, options("load:"))).collect::<Result<_, _>>()?;
    let wait_all = |counts: &[AtomicUsize; THREADS], at_least: usize| -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while counts.iter().any(|c| c.load(Ordering::Relaxed) < at_least) {
            if Instant::now() > deadline {
                return Err(format!("the threads did not get there: {counts:?}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    };
    std::thread::scope(|scope| -> Result<(), String> {
        let mut handles = Vec::new();
        for (t, store) in stores.iter().enumerate() {
            let (ok, failed, stop) = (&ok, &failed, &stop);
            handles.push(scope.spawn(move || -> Result<(), String> {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let id = format!("t{t}-{i}");
                    let start = Instant::now();
                    let r = record(store, &id, 1_000, TTL, vec![update("spend", json!(t), json!(1), true)])
                        .and_then(|()| store.commit(&id, 1_001).map(|_| ()));
                    let took = start.elapsed();
                    if took > HANG {
                        return Err(format!("a call took {took:?}"));
                    }
                    let slot = |c: &[AtomicUsize; THREADS]| c.get(t).map(|c| c.fetch_add(1, Ordering::Relaxed));
                    match r {
                        Ok(()) => slot(ok),
                        Err(StoreError::Unavailable(_)) => slot(failed),
                        // A commit whose decision was lost with the server's memory.
                        Err(StoreError::UnknownDecision(_)) => None,
                        Err(e) => return Err(format!("unexpected {e}")),
                    };
                }
                Ok(())
            }));
        }
        let outcome = (|| {
            wait_all(&ok, 20)?;
            server.kill();
            wait_all(&failed, 3)?;
            server.restart()?;
            let before: Vec<usize> = ok.iter().map(|c| c.load(Ordering::Relaxed)).collect();
            let deadline = Instant::now() + Duration::from_secs(60);
            while ok.iter().zip(&before).any(|(c, b)| c.load(Ordering::Relaxed) < b + 20) {
                if Instant::now() > deadline {
                    return Err(format!("the stores did not recover: {ok:?}"));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join().map_err(|_| "a thread panicked".to_string())??;
        }
        outcome
    })
}
