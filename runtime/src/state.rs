//! State series over time (LANGUAGE.md §5.2): what a decision reads ([`StateView`]), what it
//! records ([`Recording`]), and the store interface ([`StateStore`]) that the in-memory store here
//! and a shared store (Redis, in its own crate) implement without touching the engine.
//!
//! A *series* is a state declaration's name plus the request's values at its key paths. An
//! *update* adds an amount at a time; it is permanent (`apply: decision`), or a *hold* (`apply:
//! commit`) that counts in reads at once and becomes permanent when its decision is committed,
//! or disappears when it is released or `hold_ttl` after it was made. A read sums the amounts of
//! a series' live updates in a time range, in the order they were recorded ([`crate::number::sum`],
//! so every store gives the same value for the same sequence).
//!
//! Times are kept to the microsecond ([`micros`]): exact for sliding windows to the second, and
//! small enough for a shared store whose scripting numbers are doubles.

use serde_json::{Number, Value};
use std::collections::HashMap;
use std::sync::Mutex;

/// Microseconds since the Unix epoch.
pub type Micros = i64;

/// A time as state keeps it (rounded down to the microsecond).
pub fn micros(t: jiff::Timestamp) -> Micros {
    t.as_microsecond()
}

/// Which updates a read sums, by their time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Range {
    /// `[from, until)`: a calendar period (hour, day, week, month, year).
    Period { from: Micros, until: Micros },
    /// `(after, until]`: a sliding window ending at the evaluation time (`last("90m")`).
    Sliding { after: Micros, until: Micros },
    /// Every update.
    Total,
}

impl Range {
    pub fn contains(&self, t: Micros) -> bool {
        match *self {
            Range::Period { from, until } => from <= t && t < until,
            Range::Sliding { after, until } => after < t && t <= until,
            Range::Total => true,
        }
    }
}

/// Why a store could not answer or do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or failed (the text says how).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// What a decision read kept changing under it (a shared store gave up retrying).
    #[error("store contention: the values read kept changing")]
    Contention,
    /// No decision with this id holds anything (never made, or expired and forgotten).
    #[error("unknown decision `{0}`")]
    UnknownDecision(String),
    /// The decision's holds expired before it was committed.
    #[error("decision `{0}` expired")]
    Expired(String),
    /// Committing a released decision.
    #[error("decision `{0}` was released")]
    Released(String),
    /// Releasing a committed decision.
    #[error("decision `{0}` was committed")]
    Committed(String),
}

/// What a decision reads.
pub trait StateView {
    /// The sum of the amounts of the live updates of series (`state`, `key`) whose time is in
    /// `range`, in record order (0 when there are none). `now` decides which holds have expired.
    fn read(&self, state: &str, key: &[Value], range: Range, now: Micros) -> Result<Number, StoreError>;
}

/// One update of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub state: String,
    /// The request's values at the series' key paths (strings, numbers or booleans).
    pub key: Vec<Value>,
    pub amount: Number,
    /// A hold (`apply: commit`) rather than a permanent update (`apply: decision`).
    pub hold: bool,
}

/// What a decision records: its updates at its time, under its id.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    pub decision_id: String,
    pub time: Micros,
    /// How long the holds count without a commit.
    pub hold_ttl: Micros,
    pub updates: Vec<Update>,
}

/// How a commit or release ended (each is idempotent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Committed,
    Released,
}

/// A store of state series shared by the decisions that read and update it.
pub trait StateStore: Send + Sync {
    /// Runs one decision's read-decide-record step atomically: `decide` reads through the view
    /// and returns what to record; no other decision's updates land between its reads and the
    /// recording. A store may run `decide` more than once (an optimistic store retries when what
    /// was read changed); only the last run's recording is kept.
    fn transact(&self, decide: &mut dyn FnMut(&dyn StateView) -> Recording) -> Result<(), StoreError>;

    /// Makes a decision's holds permanent. Idempotent; a released or expired decision is an
    /// error that changes nothing.
    fn commit(&self, decision_id: &str, now: Micros) -> Result<Settled, StoreError>;

    /// Drops a decision's holds. Idempotent; a committed decision is an error.
    fn release(&self, decision_id: &str, now: Micros) -> Result<Settled, StoreError>;
}

/// A new decision id: `d-` and 32 hex digits, unique across processes (random bits from the
/// standard library's per-process hash seed, a per-process counter and the clock).
pub fn new_decision_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let state = std::collections::hash_map::RandomState::new();
    let mut words = [0u64; 2];
    for (i, w) in words.iter_mut().enumerate() {
        let mut h = state.build_hasher();
        h.write_u64(n);
        h.write_usize(i);
        h.write_i128(jiff::Timestamp::now().as_nanosecond());
        h.write_u32(std::process::id());
        *w = h.finish();
    }
    format!("d-{:016x}{:016x}", words[0], words[1])
}

/// The text that names a series in a store: the state's name and its key values as JSON.
pub fn series_id(state: &str, key: &[Value]) -> String {
    let mut s = String::with_capacity(state.len() + 16);
    s.push_str(state);
    s.push('\u{1f}');
    s.push_str(&Value::Array(key.to_vec()).to_string());
    s
}

/// One recorded update.
#[derive(Debug, Clone)]
struct Entry {
    time: Micros,
    amount: Number,
    /// The decision whose hold this is (`None`: permanent).
    hold: Option<u64>,
}

#[derive(Debug, Clone)]
enum Status {
    /// Holds that count until `expires` (exclusive) unless committed or released.
    Held {
        expires: Micros,
    },
    Committed,
    Released,
}

#[derive(Debug, Default)]
struct Inner {
    /// Entries of each series, in record order.
    series: HashMap<String, Vec<Entry>>,
    /// Decisions that made holds: their number by id (entries refer to the number).
    ids: HashMap<String, u64>,
    /// The status of each decision that made holds, by number.
    status: HashMap<u64, Status>,
    /// The series each decision's holds are in.
    held_in: HashMap<u64, Vec<String>>,
    next: u64,
}

impl Inner {
    fn live(&self, e: &Entry, now: Micros) -> bool {
        match e.hold {
            None => true,
            Some(d) => match self.status.get(&d) {
                Some(Status::Committed) => true,
                Some(Status::Held { expires }) => now < *expires,
                Some(Status::Released) | None => false,
            },
        }
    }
}

/// The in-memory store: one process's state, behind one lock (so a decision's read-decide-record
/// step is atomic by construction).
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, StoreError> {
        self.inner.lock().map_err(|_| StoreError::Unavailable("the in-memory store is poisoned".into()))
    }

    fn settle(&self, decision_id: &str, now: Micros, commit: bool) -> Result<Settled, StoreError> {
        let mut inner = self.lock()?;
        let Some(number) = inner.ids.get(decision_id).copied() else {
            return Err(StoreError::UnknownDecision(decision_id.to_owned()));
        };
        let Some(status) = inner.status.get(&number).cloned() else {
            return Err(StoreError::UnknownDecision(decision_id.to_owned()));
        };
        let (next, settled) = match (status, commit) {
            (Status::Committed, true) => return Ok(Settled::Committed),
            (Status::Released, false) => return Ok(Settled::Released),
            (Status::Released, true) => return Err(StoreError::Released(decision_id.to_owned())),
            (Status::Committed, false) => return Err(StoreError::Committed(decision_id.to_owned())),
            (Status::Held { expires }, true) if now >= expires => {
                return Err(StoreError::Expired(decision_id.to_owned()));
            }
            (Status::Held { .. }, true) => (Status::Committed, Settled::Committed),
            (Status::Held { .. }, false) => (Status::Released, Settled::Released),
        };
        inner.status.insert(number, next);
        if settled == Settled::Released {
            // Released holds never count again: drop their entries.
            let series = inner.held_in.remove(&number).unwrap_or_default();
            for s in series {
                if let Some(entries) = inner.series.get_mut(&s) {
                    entries.retain(|e| e.hold != Some(number));
                }
            }
        }
        Ok(settled)
    }
}

struct View<'a>(&'a Inner);

impl StateView for View<'_> {
    fn read(&self, state: &str, key: &[Value], range: Range, now: Micros) -> Result<Number, StoreError> {
        let Some(entries) = self.0.series.get(&series_id(state, key)) else { return Ok(Number::from(0)) };
        let amounts = entries.iter().filter(|e| range.contains(e.time) && self.0.live(e, now)).map(|e| &e.amount);
        crate::number::sum(amounts).ok_or_else(|| StoreError::Unavailable("the sum is not a finite number".into()))
    }
}

impl StateStore for MemoryStore {
    fn transact(&self, decide: &mut dyn FnMut(&dyn StateView) -> Recording) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        let rec = decide(&View(&inner));
        let holds = rec.updates.iter().any(|u| u.hold);
        let number = inner.next;
        if holds {
            inner.next += 1;
            let expires = rec.time.saturating_add(rec.hold_ttl);
            inner.ids.insert(rec.decision_id.clone(), number);
            inner.status.insert(number, Status::Held { expires });
        }
        for u in rec.updates {
            let id = series_id(&u.state, &u.key);
            let entry = Entry { time: rec.time, amount: u.amount, hold: u.hold.then_some(number) };
            if u.hold {
                inner.held_in.entry(number).or_default().push(id.clone());
            }
            inner.series.entry(id).or_default().push(entry);
        }
        Ok(())
    }

    fn commit(&self, decision_id: &str, now: Micros) -> Result<Settled, StoreError> {
        self.settle(decision_id, now, true)
    }

    fn release(&self, decision_id: &str, now: Micros) -> Result<Settled, StoreError> {
        self.settle(decision_id, now, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn update(amount: Value, hold: bool) -> Update {
        let Value::Number(amount) = amount else {
            return Update { state: String::new(), key: vec![], amount: Number::from(0), hold };
        };
        Update { state: "spend".into(), key: vec![json!("u-1")], amount, hold }
    }

    fn record(store: &MemoryStore, id: &str, time: Micros, updates: Vec<Update>) {
        let r = store.transact(&mut |_| Recording {
            decision_id: id.into(),
            time,
            hold_ttl: 600_000_000,
            updates: updates.clone(),
        });
        assert_eq!(r, Ok(()));
    }

    fn read(store: &MemoryStore, range: Range, now: Micros) -> Value {
        let mut out = Value::Null;
        let _ = store.transact(&mut |v| {
            out = v.read("spend", &[json!("u-1")], range, now).map_or(Value::Null, Value::Number);
            Recording { decision_id: "r".into(), time: now, hold_ttl: 0, updates: vec![] }
        });
        out
    }

    #[test]
    fn holds_count_at_once_and_settle_idempotently() {
        let s = MemoryStore::new();
        let all = Range::Total;
        record(&s, "d1", 10, vec![update(json!(60), true)]);
        record(&s, "d2", 20, vec![update(json!(2.5), false)]);
        record(&s, "d3", 30, vec![update(json!(40), true)]);
        assert_eq!(read(&s, all, 40), json!(102.5));
        assert_eq!(s.commit("d1", 50), Ok(Settled::Committed));
        assert_eq!(s.commit("d1", 51), Ok(Settled::Committed));
        assert_eq!(s.release("d1", 52), Err(StoreError::Committed("d1".into())));
        assert_eq!(s.release("d3", 53), Ok(Settled::Released));
        assert_eq!(s.release("d3", 54), Ok(Settled::Released));
        assert_eq!(s.commit("d3", 55), Err(StoreError::Released("d3".into())));
        assert_eq!(s.commit("nope", 55), Err(StoreError::UnknownDecision("nope".into())));
        assert_eq!(read(&s, all, 60), json!(62.5));
        // A hold expires `hold_ttl` after it was made: it stops counting and cannot be committed.
        record(&s, "d4", 100, vec![update(json!(1), true)]);
        assert_eq!(read(&s, all, 100 + 600_000_000 - 1), json!(63.5));
        assert_eq!(read(&s, all, 100 + 600_000_000), json!(62.5));
        assert_eq!(s.commit("d4", 100 + 600_000_000), Err(StoreError::Expired("d4".into())));
    }

    #[test]
    fn ranges_are_half_open_as_documented() {
        let s = MemoryStore::new();
        record(&s, "a", 100, vec![update(json!(1), false)]);
        record(&s, "b", 200, vec![update(json!(10), false)]);
        assert_eq!(read(&s, Range::Period { from: 100, until: 200 }, 300), json!(1));
        assert_eq!(read(&s, Range::Sliding { after: 100, until: 200 }, 300), json!(10));
        assert_eq!(read(&s, Range::Sliding { after: 99, until: 199 }, 300), json!(1));
        assert_eq!(read(&s, Range::Total, 300), json!(11));
    }
}
