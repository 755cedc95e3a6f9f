//! One decision's state step: `transact` with two reads (the day's sum of one series, the last
//! hour of another, 100 entries each) and one hold, on Redis (a `redis-server` the bench starts
//! on loopback) and on the runtime's MemoryStore. Only `transact` is timed; each hold is released
//! after it, so the series keep their size. `cargo bench -p verdict-store-redis --bench transact`.

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Number, json};
use std::time::{Duration, Instant};
use verdict_runtime::state::{MemoryStore, Range, Recording, StateStore, Update};
use verdict_store_redis::testing::RedisServer;
use verdict_store_redis::{Options, RedisStore};

const DAY: i64 = 1_764_460_800_000_000;
const NOW: i64 = DAY + 43_200_000_000;
const HOUR: i64 = 3_600_000_000;

fn update(state: &str, amount: i64, hold: bool) -> Update {
    Update { state: state.into(), key: vec![json!("acme")], amount: Number::from(amount), hold }
}

/// 100 permanent entries in each series, spread over the last hour.
fn prepare(store: &dyn StateStore) {
    for i in 0..100 {
        let time = NOW - HOUR + i * (HOUR / 100);
        let _ = store.transact(&mut |_| Recording {
            decision_id: format!("seed-{i}"),
            time,
            hold_ttl: 0,
            updates: vec![update("spend", 3, false), update("denials", 1, false)],
        });
    }
}

/// `iters` decisions; the time of their `transact` calls only.
fn run(store: &dyn StateStore, iters: u64, next: &mut u64) -> Duration {
    let mut timed = Duration::ZERO;
    for _ in 0..iters {
        *next += 1;
        let id = format!("bench-{next}");
        let start = Instant::now();
        let r = store.transact(&mut |view| {
            let key = [json!("acme")];
            let day = view.read("spend", &key, Range::Period { from: DAY, until: DAY + 24 * HOUR }, NOW);
            let denials = view.read("denials", &key, Range::Sliding { after: NOW - HOUR, until: NOW }, NOW);
            let ok = day.ok().and_then(|d| d.as_i64()).is_some_and(|d| d + 10 <= 1_000_000)
                && denials.ok().and_then(|d| d.as_i64()).is_some_and(|d| d < 1_000);
            let updates = if ok { vec![update("spend", 10, true)] } else { vec![] };
            Recording { decision_id: id.clone(), time: NOW, hold_ttl: 600_000_000, updates }
        });
        timed += start.elapsed();
        if r.is_err() || store.release(&id, NOW).is_err() {
            eprintln!("the store failed: {r:?}");
        }
    }
    timed
}

fn transact(c: &mut Criterion) {
    let mut group = c.benchmark_group("transact_2_reads_1_hold");
    let memory = MemoryStore::new();
    prepare(&memory);
    let mut next = 0;
    group.bench_function("memory", |b| b.iter_custom(|iters| run(&memory, iters, &mut next)));
    let server = match RedisServer::start() {
        Ok(Some(server)) => server,
        Ok(None) => return,
        Err(e) => {
            eprintln!("no redis-server: {e}");
            return;
        }
    };
    let redis = match RedisStore::open(&server.url(), Options { prefix: "bench:".into(), ..Options::default() }) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("{e}");
            return;
        }
    };
    prepare(&redis);
    group.bench_function("redis", |b| b.iter_custom(|iters| run(&redis, iters, &mut next)));
    group.finish();
}

criterion_group!(benches, transact);
criterion_main!(benches);
