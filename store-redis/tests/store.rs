//! The Redis store's behaviour on a real `redis-server`, case by case: what MemoryStore's own
//! tests show, side by side with MemoryStore, plus what only a shared store has (prefixes,
//! settling from another process, the purge of long-expired holds, forgetting settled decisions).

mod common;

use common::{read, record, server, store, store_with, update};
use serde_json::json;
use verdict_runtime::state::{MemoryStore, Range, Settled, StateStore, StoreError};
use verdict_store_redis::{OpenError, Options, RedisStore};

const TTL: i64 = 600_000_000;

#[test]
fn holds_count_at_once_and_settle_idempotently_as_in_memory() -> Result<(), String> {
    let Some(server) = server()? else { return Ok(()) };
    let redis = store(&server, "settle:")?;
    let memory = MemoryStore::new();
    for s in [&redis as &dyn StateStore, &memory] {
        let all = Range::Total;
        let u = |a, h| update("spend", json!("u-1"), a, h);
        let r = |now| read(s, "spend", json!("u-1"), all, now);
        assert_eq!(record(s, "d1", 10, TTL, vec![u(json!(60), true)]), Ok(()));
        assert_eq!(record(s, "d2", 20, TTL, vec![u(json!(2.5), false)]), Ok(()));
        assert_eq!(record(s, "d3", 30, TTL, vec![u(json!(40), true)]), Ok(()));
        assert_eq!(r(40), Ok("102.5".into()));
        assert_eq!(s.commit("d1", 50), Ok(Settled::Committed));
        assert_eq!(s.commit("d1", 51), Ok(Settled::Committed));
        assert_eq!(s.release("d1", 52), Err(StoreError::Committed("d1".into())));
        assert_eq!(s.release("d3", 53), Ok(Settled::Released));
        assert_eq!(s.release("d3", 54), Ok(Settled::Released));
        assert_eq!(s.commit("d3", 55), Err(StoreError::Released("d3".into())));
        assert_eq!(s.commit("nope", 55), Err(StoreError::UnknownDecision("nope".into())));
        assert_eq!(s.release("nope", 55), Err(StoreError::UnknownDecision("nope".into())));
        assert_eq!(r(60), Ok("62.5".into()));
        // A hold expires `hold_ttl` after it was made: it stops counting and cannot be committed,
        // judged at each operation's `now` (an earlier `now` still sees it).
        assert_eq!(record(s, "d4", 100, TTL, vec![u(json!(1), true)]), Ok(()));
        assert_eq!(r(100 + TTL - 1), Ok("63.5".into()));
        assert_eq!(r(100 + TTL), Ok("62.5".into()));
        assert_eq!(s.commit("d4", 100 + TTL), Err(StoreError::Expired("d4".into())));
        assert_eq!(r(100 + TTL - 1), Ok("63.5".into()));
        assert_eq!(s.commit("d4", 100 + TTL - 1), Ok(Settled::Committed));
        assert_eq!(r(i64::MAX), Ok("63.5".into()));
    }
    Ok(())
}

#[test]
fn ranges_are_half_open_as_documented() -> Result<(), String> {
    let Some(server) = server()? else { return Ok(()) };
    let s = store(&server, "ranges:")?;
    let u = |a| vec![update("spend", json!("u-1"), a, false)];
    assert_eq!(record(&s, "a", 100, 0, u(json!(1))), Ok(()));
    assert_eq!(record(&s, "b", 200, 0, u(json!(10))), Ok(()));
    let r = |range| read(&s, "spend", json!("u-1"), range, 300);
    assert_eq!(r(Range::Period { from: 100, until: 200 }), Ok("1".into()));
    assert_eq!(r(Range::Sliding { after: 100, until: 200 }), Ok("10".into()));
    assert_eq!(r(Range::Sliding { after: 99, until: 199 }), Ok("1".into()));
    assert_eq!(r(Range::Total), Ok("11".into()));
    assert_eq!(read(&s, "spend", json!("u-2"), Range::Total, 300), Ok("0".into()));
    Ok(())
}

#[test]
fn sums_are_exact_where_lua_numbers_would_not_be() -> Result<(), String> {
    let Some(server) = server()? else { return Ok(()) };
    let s = store(&server, "exact:")?;
    let memory = MemoryStore::new();
    let big = 9_007_199_254_740_993_i64; // 2^53 + 1: not a double
    let t = 4_611_686_018_427_387_905_i64; // a time far beyond 2^53 µs
    let mut results = Vec::new();
    for st in [&s as &dyn StateStore, &memory] {
        let k = json!("k");
        assert_eq!(record(st, "a", t, 0, vec![update("n", k.clone(), json!(big), false)]), Ok(()));
        assert_eq!(record(st, "b", t + 1, 0, vec![update("n", k.clone(), json!(1), false)]), Ok(()));
        assert_eq!(read(st, "n", k.clone(), Range::Total, 0), Ok("9007199254740994".into()));
        // The two times are the same double: only the exact test tells them apart.
        assert_eq!(read(st, "n", k.clone(), Range::Period { from: t, until: t + 1 }, 0), Ok(big.to_string()));
        assert_eq!(read(st, "n", k.clone(), Range::Sliding { after: t, until: t + 1 }, 0), Ok("1".into()));
        assert_eq!(record(st, "c", t + 2, 0, vec![update("f", k.clone(), json!(0.1), false)]), Ok(()));
        assert_eq!(record(st, "d", t + 3, 0, vec![update("f", k.clone(), json!(0.2), false)]), Ok(()));
        assert_eq!(read(st, "f", k.clone(), Range::Total, 0), Ok((0.1_f64 + 0.2).to_string()));
        assert_eq!(record(st, "e", t + 4, 0, vec![update("f", k.clone(), json!(i64::MAX), false)]), Ok(()));
        assert_eq!(record(st, "g", t + 5, 0, vec![update("n", k.clone(), json!(i64::MAX), false)]), Ok(()));
        assert_eq!(record(st, "h", t + 6, 0, vec![update("n", k.clone(), json!(-i64::MAX), false)]), Ok(()));
        results.push((read(st, "f", k.clone(), Range::Total, 0), read(st, "n", k.clone(), Range::Total, 0)));
    }
    assert_eq!(results.first(), results.last());
    // Past i64 the sum became the float of the exact sum once, and stays a float.
    assert_eq!(results.first().map(|r| r.1.clone()), Some(Ok("9007199254740992.0".into())));
    Ok(())
}

#[test]
fn holds_of_one_decision_span_series_and_settle_from_another_store() -> Result<(), String> {
    let Some(server) = server()? else { return Ok(()) };
    let a = store(&server, "span:")?;
    let b = store(&server, "span:")?;
    let updates = vec![
        update("spend", json!(["u-1", 7]), json!(10), true),
        update("spend", json!(["u-2", 7]), json!(5), true),
        update("count", json!([]), json!(1), false),
    ];
    assert_eq!(record(&a, "d1", 1_000, TTL, updates.clone()), Ok(()));
    assert_eq!(record(&a, "d2", 1_000, TTL, updates), Ok(()));
    assert_eq!(read(&b, "spend", json!(["u-1", 7]), Range::Total, 2_000), Ok("20".into()));
    assert_eq!(b.commit("d1", 2_000), Ok(Settled::Committed));
    assert_eq!(b.release("d2", 2_000), Ok(Settled::Released));
    assert_eq!(a.commit("d1", 3_000), Ok(Settled::Committed));
    assert_eq!(a.commit("d2", 3_000), Err(StoreError::Released("d2".into())));
    // The committed holds count after their expiry; the released ones never again.
    let late = 1_000 + TTL + 1;
    assert_eq!(read(&a, "spend", json!(["u-1", 7]), Range::Total, late), Ok("10".into()));
    assert_eq!(read(&a, "spend", json!(["u-2", 7]), Range::Total, late), Ok("5".into()));
    assert_eq!(read(&a, "count", json!([]), Range::Total, late), Ok("2".into()));
    // Another prefix is another store on the same server.
    let other = store(&server, "span-other:")?;
    assert_eq!(read(&other, "count", json!([]), Range::Total, late), Ok("0".into()));
    assert_eq!(other.commit("d1", 3_000), Err(StoreError::UnknownDecision("d1".into())));
    Ok(())
}

#[test]
fn keys_of_a_series_share_a_hash_slot_and_released_holds_leave_nothing() -> Result<(), String> {
    let Some(server) = server()? else { return Ok(()) };
    let s = store(&server, "layout:")?;
    assert_eq!(record(&s, "d1", 1, TTL, vec![update("spend", json!("u-1"), json!(3), true)]), Ok(()));
    let client = redis::Client::open(server.url()).map_err(|e| e.to_string())?;
    let mut c = client.get_connection().map_err(|e| e.to_string())?;
    let keys = |c: &mut redis::Connection| -> Result<Vec<String>, String> {
        let mut k: Vec<String> = redis::cmd("KEYS").arg("layout:*").query(c).map_err(|e| e.to_string())?;
        k.sort();
        Ok(k)
    };
    let k = keys(&mut c)?;
    assert_eq!(k.len(), 4, "{k:?}");
    assert_eq!(k.first().map(String::as_str), Some("layout:d:d1"));
    let series: Vec<&String> = k.iter().filter(|k| k.starts_with("layout:s:{")).collect();
    // A cluster hashes only the text between the first `{` and the next `}`: the same for all.
    let tags: Vec<Option<&str>> =
        series.iter().map(|k| k.split_once('{').and_then(|(_, rest)| rest.split_once('}')).map(|(t, _)| t)).collect();
    assert_eq!(series.len(), 3, "{k:?}");
    assert!(tags.iter().all(|t| t.is_some_and(|t| t.len() == 32) && Some(t) == tags.first()), "{tags:?}");
    let id: Option<String> = redis::cmd("HGET")
        .arg(series.iter().find(|k| k.ends_with(":m")).map(|k| k.as_str()))
        .arg("id")
        .query(&mut c)
        .map_err(|e| e.to_string())?;
    assert_eq!(id, Some("spend\u{1f}[\"u-1\"]".into()));
    assert_eq!(s.release("d1", 2), Ok(Settled::Released));
    // Released: the entry sets are empty (Redis drops empty keys); the meta and the record stay.
    let k = keys(&mut c)?;
    assert_eq!(k.len(), 2, "{k:?}");
    let ttl: i64 = redis::cmd("PTTL").arg("layout:d:d1").query(&mut c).map_err(|e| e.to_string())?;
    assert!(ttl > 0 && ttl <= 7 * 86_400_000, "{ttl}");
    Ok(())
}

#[test]
fn long_expired_holds_are_purged_by_later_decisions() -> Result<(), String> {
    let Some(server) = server()? else { return Ok(()) };
    let s = store_with(&server, Options { prefix: "purge:".into(), purge_grace: Some(1_000), ..Options::default() })?;
    let u = |a, h| vec![update("spend", json!("u-1"), json!(a), h)];
    assert_eq!(record(&s, "d1", 0, 100, u(7, true)), Ok(()));
    assert_eq!(record(&s, "d2", 0, 5_000, u(8, true)), Ok(()));
    // d1 expired at 100; a decision at 1_100 purges it (100 <= 1_100 - 1_000), not d2.
    assert_eq!(record(&s, "d3", 1_100, 0, u(1, false)), Ok(()));
    assert_eq!(read(&s, "spend", json!("u-1"), Range::Total, 50), Ok("9".into()));
    assert_eq!(s.commit("d1", 1_200), Err(StoreError::Expired("d1".into())));
    assert_eq!(s.release("d1", 1_200), Ok(Settled::Released));
    assert_eq!(s.commit("d2", 1_200), Ok(Settled::Committed));
    assert_eq!(read(&s, "spend", json!("u-1"), Range::Total, 10_000), Ok("9".into()));
    Ok(())
}

#[test]
fn forgotten_decisions_are_unknown() -> Result<(), String> {
    let Some(server) = server()? else { return Ok(()) };
    let options = Options {
        prefix: "forget:".into(),
        forget_after: Some(std::time::Duration::from_millis(1)),
        ..Options::default()
    };
    let s = store_with(&server, options)?;
    // Holds of a minute: an unsettled record lives that long plus `forget_after` (with holds of
    // 0 it expired 1 ms after recording, before a release on a busy machine could settle it).
    assert_eq!(record(&s, "d1", 0, 60_000_000, vec![update("spend", json!("u-1"), json!(1), true)]), Ok(()));
    assert_eq!(s.release("d1", 0), Ok(Settled::Released));
    // Redis expires the settled record 1 ms later (its clock: only forgetting depends on it).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while s.release("d1", 0) == Ok(Settled::Released) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(s.release("d1", 0), Err(StoreError::UnknownDecision("d1".into())));
    Ok(())
}

#[test]
fn bad_urls_and_options_are_refused_without_echoing_secrets() {
    let e = RedisStore::open("http://:hunter2@example.invalid", Options::default()).map(|_| ());
    assert!(matches!(&e, Err(OpenError::Url(u)) if !u.to_string().contains("hunter2")), "{e:?}");
    let e =
        RedisStore::open("redis://127.0.0.1/", Options { io_timeout: std::time::Duration::ZERO, ..Options::default() });
    assert_eq!(
        e.map(|_| ()).map_err(|e| e.to_string()),
        Err("invalid store option `io_timeout`: must be positive".into())
    );
}

#[test]
fn the_store_links_the_runtime_and_no_other_verdict_crate() {
    let manifest = include_str!("../Cargo.toml");
    let deps = manifest.split("[dependencies]").nth(1).and_then(|s| s.split("\n[").next()).unwrap_or_default();
    let names: Vec<&str> = deps
        .lines()
        .filter_map(|l| l.split(['=', '.']).next())
        .map(str::trim)
        .filter(|n| !n.is_empty() && !n.starts_with('#'))
        .collect();
    assert!(names.contains(&"verdict-runtime"), "{names:?}");
    for n in &names {
        assert!(!n.starts_with("verdict-") || *n == "verdict-runtime", "the store must not depend on {n}");
        assert!(!["axum", "hyper", "tokio", "reqwest", "tower"].contains(n), "the store must not link HTTP: {n}");
    }
}
