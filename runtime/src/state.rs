//! State series over time (LANGUAGE.md §5.2): what a decision reads ([`StateView`]), what it
//! records ([`Recording`]), and the store interface ([`StateStore`]) that the in-memory store here
//! and a shared store (Redis, in its own crate) implement without touching the engine. Two views
//! need no store: [`Empty`] (every series empty) and [`Replayed`] (the [`Read`]s a decision made,
//! to decide it again).
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
use std::hash::{BuildHasher, Hasher};
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

/// Every series empty: each read is 0 (the world the analysis judges witnesses in).
#[derive(Debug, Clone, Copy, Default)]
pub struct Empty;

impl StateView for Empty {
    fn read(&self, _: &str, _: &[Value], _: Range, _: Micros) -> Result<Number, StoreError> {
        Ok(Number::from(0))
    }
}

/// One read a decision made, with the value it read (what an audit line's `state_reads`
/// records, and what a replay answers with).
#[derive(Debug, Clone, PartialEq)]
pub struct Read {
    pub state: String,
    pub key: Vec<Value>,
    pub range: Range,
    pub value: Number,
}

/// A view that answers with recorded reads, to decide again on what a decision read: a read of
/// the same series and range gets the value recorded; any other fails (`Unavailable`), and
/// [`Replayed::missed`] says so afterwards.
#[derive(Debug)]
pub struct Replayed<'a> {
    reads: &'a [Read],
    missed: std::cell::Cell<bool>,
}

impl<'a> Replayed<'a> {
    pub fn new(reads: &'a [Read]) -> Replayed<'a> {
        Replayed { reads, missed: std::cell::Cell::new(false) }
    }

    /// The value recorded for this read, if it was made.
    pub fn find(&self, state: &str, key: &[Value], range: Range) -> Option<&'a Number> {
        self.reads.iter().find(|r| r.range == range && r.state == state && r.key == key).map(|r| &r.value)
    }

    /// Whether a read was asked that is not recorded.
    pub fn missed(&self) -> bool {
        self.missed.get()
    }
}

impl StateView for Replayed<'_> {
    fn read(&self, state: &str, key: &[Value], range: Range, _: Micros) -> Result<Number, StoreError> {
        match self.find(state, key, range) {
            Some(v) => Ok(v.clone()),
            None => {
                self.missed.set(true);
                Err(StoreError::Unavailable("the read is not recorded".into()))
            }
        }
    }
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
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recording {
    pub decision_id: String,
    pub time: Micros,
    /// How long the holds count without a commit.
    pub hold_ttl: Micros,
    pub updates: Vec<Update>,
}

impl Recording {
    /// Sets the id, the time and the hold lifetime, keeping the id's buffer (the updates are
    /// left as they are: set them with [`Recording::put_update`], then truncate `updates`).
    pub fn reset(&mut self, decision_id: &str, time: Micros, hold_ttl: Micros) {
        self.decision_id.clear();
        self.decision_id.push_str(decision_id);
        self.time = time;
        self.hold_ttl = hold_ttl;
    }

    /// Sets update `i` (at most the number of updates: the next one), reusing the buffers of the
    /// update that was there.
    pub fn put_update<'k>(
        &mut self,
        i: usize,
        state: &str,
        key: impl IntoIterator<Item = &'k Value>,
        amount: Number,
        hold: bool,
    ) {
        let Some(u) = self.updates.get_mut(i) else {
            let key = key.into_iter().cloned().collect();
            self.updates.push(Update { state: state.to_owned(), key, amount, hold });
            return;
        };
        copy_str(&mut u.state, state);
        let mut n = 0;
        for v in key {
            match u.key.get_mut(n) {
                Some(slot) => copy_value(slot, v),
                None => u.key.push(v.clone()),
            }
            n += 1;
        }
        u.key.truncate(n);
        u.amount = amount;
        u.hold = hold;
    }
}

/// `*slot = v.clone()`, reusing the slot's string buffer when both are strings.
#[inline]
pub(crate) fn copy_value(slot: &mut Value, v: &Value) {
    match (slot, v) {
        (Value::String(to), Value::String(from)) => copy_str(to, from),
        (slot, v) => *slot = v.clone(),
    }
}

/// `*to = from.to_owned()` in `to`'s buffer (untouched when it holds the text already: a
/// decision usually updates the series and key the last recording updated).
#[inline]
fn copy_str(to: &mut String, from: &str) {
    if !same_text(to, from) {
        to.clear();
        to.push_str(from);
    }
}

/// Whether two texts are equal: those of up to 16 bytes (names, ids, most key values) compared
/// as two overlapping words each rather than through a call to `memcmp`.
#[inline]
fn same_text(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    // The first and the last `N` bytes (overlapping when shorter than `2 N`) as two integers.
    fn ends<const N: usize>(s: &[u8]) -> Option<([u8; N], [u8; N])> {
        Some((*s.first_chunk::<N>()?, *s.last_chunk::<N>()?))
    }
    match n {
        0..4 => a.iter().zip(b).all(|(x, y)| x == y),
        4..=8 => {
            ends::<4>(a).map(|(x, y)| (u32::from_ne_bytes(x), u32::from_ne_bytes(y)))
                == ends::<4>(b).map(|(x, y)| (u32::from_ne_bytes(x), u32::from_ne_bytes(y)))
        }
        9..=16 => {
            ends::<8>(a).map(|(x, y)| (u64::from_ne_bytes(x), u64::from_ne_bytes(y)))
                == ends::<8>(b).map(|(x, y)| (u64::from_ne_bytes(x), u64::from_ne_bytes(y)))
        }
        _ => a == b,
    }
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

    /// [`StateStore::transact`] with the recording written in place: `decide` sets every field
    /// of `rec` ([`Recording::reset`], [`Recording::put_update`], then `updates` truncated). A
    /// store may hand over the recording of an earlier transaction so that its buffers are
    /// reused (the in-memory store does); by default, a new recording each run.
    fn transact_into(&self, decide: &mut dyn FnMut(&dyn StateView, &mut Recording)) -> Result<(), StoreError> {
        self.transact(&mut |view| {
            let mut rec = Recording::default();
            decide(view, &mut rec);
            rec
        })
    }

    /// Makes a decision's holds permanent. Idempotent; a released or expired decision is an
    /// error that changes nothing.
    fn commit(&self, decision_id: &str, now: Micros) -> Result<Settled, StoreError>;

    /// Drops a decision's holds. Idempotent; a committed decision is an error.
    fn release(&self, decision_id: &str, now: Micros) -> Result<Settled, StoreError>;
}

/// A bundle's `hold_ttl` (seconds) in microseconds, saturating.
pub fn hold_ttl_micros(seconds: u64) -> Micros {
    i64::try_from(seconds.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
}

/// Runs one stateful decision in `store`, as every backend does (LANGUAGE.md §5.2): `decide`
/// evaluates through the store's view (the store may run it more than once), and the updates of
/// its result are recorded atomically under the decision's id (`env.decision_id`, or a new
/// one), holds counting for `hold_ttl_seconds`. A store that fails, or that does not run the
/// decision, refuses it: `refuse` builds the most severe decision with the reason (fail closed).
/// The result carries the decision id either way.
pub fn decide_in_store(
    store: &dyn StateStore,
    env: &crate::env::Env<'_>,
    hold_ttl_seconds: u64,
    decide: &mut dyn FnMut(&crate::env::Env<'_>) -> crate::decision::EvaluationResult,
    refuse: &dyn Fn(&str) -> crate::decision::EvaluationResult,
) -> crate::decision::EvaluationResult {
    let id = env.decision_id.map_or_else(new_decision_id, str::to_owned);
    let hold_ttl = hold_ttl_micros(hold_ttl_seconds);
    let mut result = None;
    let outcome = store.transact(&mut |view| {
        let env = crate::env::Env { state: Some(view), decision_id: Some(&id), ..*env };
        let r = decide(&env);
        let rec = Recording { decision_id: id.clone(), time: micros(env.now), hold_ttl, updates: r.updates.clone() };
        result = Some(r);
        rec
    });
    let mut r = match (outcome, result) {
        (Ok(()), Some(r)) => return r,
        (Err(e), _) => refuse(&format!("state error: {e}")),
        (Ok(()), None) => refuse("state error: the store did not run the decision"),
    };
    r.decision_id = Some(id);
    r
}

/// A new decision id: `d-` and 32 hex digits, unique across processes (random bits from the
/// standard library's per-process hash seed, a per-process counter and the clock).
pub fn new_decision_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let state = std::collections::hash_map::RandomState::new();
    // Asked each time, never kept: a forked child inherits the parent's hash seed and counter,
    // and its process id is what tells their ids apart (a `getpid` per id, not per word).
    let pid = std::process::id();
    let now = jiff::Timestamp::now().as_nanosecond();
    let mut words = [0u64; 2];
    for (i, w) in words.iter_mut().enumerate() {
        let mut h = state.build_hasher();
        h.write_u64(n);
        h.write_usize(i);
        h.write_i128(now);
        h.write_u32(pid);
        *w = h.finish();
    }
    format!("d-{:016x}{:016x}", words[0], words[1])
}

/// The text that names a series in a store: the state's name and its key values as JSON (the
/// compact text of the array of the key values).
pub fn series_id(state: &str, key: &[Value]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(state.len() + 16);
    s.push_str(state);
    s.push('\u{1f}');
    s.push('[');
    for (i, v) in key.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        // Writing to a `String` cannot fail.
        let _ = write!(s, "{v}");
    }
    s.push(']');
    s
}

/// A key value as the series it selects sees it: two key values select the same series exactly
/// when their JSON texts (in [`series_id`]) are equal. Numbers print as their exact integer or
/// as the shortest text that reads back as the same `f64`, so the text is equal exactly when
/// this is.
#[derive(PartialEq, Eq)]
enum KeyPart<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i128),
    /// The bits of a float (`0.0` and `-0.0` print differently, so they differ here too).
    Float(u64),
    /// Anything else (no key value of an engine's decision): its JSON text.
    Other(String),
}

impl KeyPart<'_> {
    fn of(v: &Value) -> KeyPart<'_> {
        match v {
            Value::String(s) => KeyPart::Str(s),
            Value::Bool(b) => KeyPart::Bool(*b),
            Value::Number(n) if n.is_f64() => KeyPart::Float(n.as_f64().unwrap_or(f64::NAN).to_bits()),
            Value::Number(n) => match n.as_u64().map(i128::from).or_else(|| n.as_i64().map(i128::from)) {
                Some(i) => KeyPart::Int(i),
                None => KeyPart::Other(n.to_string()),
            },
            other => KeyPart::Other(other.to_string()),
        }
    }

    fn hash(&self, h: &mut impl Hasher) {
        match self {
            KeyPart::Str(s) => {
                h.write_u8(0);
                h.write_usize(s.len());
                h.write(s.as_bytes());
            }
            KeyPart::Bool(b) => h.write_u8(if *b { 2 } else { 1 }),
            KeyPart::Int(i) => {
                h.write_u8(3);
                h.write_u128(*i as u128);
            }
            KeyPart::Float(bits) => {
                h.write_u8(4);
                h.write_u64(*bits);
            }
            KeyPart::Other(text) => {
                h.write_u8(5);
                h.write_usize(text.len());
                h.write(text.as_bytes());
            }
        }
    }
}

/// The random seed of the in-memory stores' hashes. Series keys and decision ids come from
/// requests, so their hashes must not be predictable (hash flooding): foldhash, keyed with bits
/// from the standard library's `RandomState` (which the operating system seeds).
fn seed() -> &'static foldhash::SharedSeed {
    static SEED: std::sync::OnceLock<foldhash::SharedSeed> = std::sync::OnceLock::new();
    SEED.get_or_init(|| foldhash::SharedSeed::from_u64(random_u64()))
}

fn random_u64() -> u64 {
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}

type Hashing = foldhash::quality::SeedableRandomState;

/// One recorded update.
#[derive(Debug, Clone)]
struct Entry {
    time: Micros,
    amount: Number,
    /// The number of the recording that made it.
    seq: u64,
    /// A hold not yet committed: it counts while the read's time is before `expires`.
    held: bool,
    expires: Micros,
}

impl Entry {
    #[inline]
    fn live(&self, now: Micros) -> bool {
        !self.held || now < self.expires
    }
}

/// Whether two key values (not both strings) select the same series.
#[inline(never)]
fn same_key_part(a: &Value, b: &Value) -> bool {
    KeyPart::of(a) == KeyPart::of(b)
}

/// One series: its name, its key values and its entries.
#[derive(Debug)]
struct Series {
    hash: u64,
    state: Box<str>,
    key: Box<[Value]>,
    // INVARIANT: `entries` are in record order, so their `seq` never decreases (settling finds a
    // recording's entries by binary search); `by_time` says their times never decrease either.
    entries: Vec<Entry>,
    by_time: bool,
    /// Sums already added up, the latest first (see [`Partial`]).
    partials: std::cell::Cell<[Option<Partial>; 2]>,
}

/// The sum of `entries[start..end]`, all of them permanent: a read of a range whose entries
/// start at `start` and go on past `end` adds its other entries to it, as if it had added these
/// up itself (the same steps in the same order). Kept while no entry before `end` is removed
/// (removing one moves the indices); appending and committing change no permanent entry.
#[derive(Debug, Clone, Copy)]
struct Partial {
    start: usize,
    end: usize,
    sum: crate::number::Sum,
}

impl Series {
    #[inline(always)]
    fn is(&self, state: &str, key: &[Value]) -> bool {
        same_text(&self.state, state)
            && self.key.len() == key.len()
            && self.key.iter().zip(key).all(|(a, b)| match (a, b) {
                (Value::String(a), Value::String(b)) => same_text(a, b),
                _ => same_key_part(a, b),
            })
    }

    /// The sum of the amounts of the live entries in `range`, in record order. When the entries
    /// are in time order (then record order and time order agree), only those in the range are
    /// looked at, and the leading permanent ones are added up once for all the reads from the
    /// same first entry (see [`Partial`]).
    fn sum(&self, range: Range, now: Micros) -> Option<Number> {
        let all = self.entries.as_slice();
        if !self.by_time {
            return crate::number::sum(all.iter().filter(|e| range.contains(e.time) && e.live(now)).map(|e| &e.amount));
        }
        // The first entry not before the range and the first after it (binary searches, skipped
        // when every entry is on one side: a window that ends now usually holds the latest).
        let first_not = |before: &dyn Fn(Micros) -> bool| match (all.first(), all.last()) {
            (Some(first), _) if !before(first.time) => 0,
            (_, Some(last)) if before(last.time) => all.len(),
            _ => all.partition_point(|e| before(e.time)),
        };
        let (start, end) = match range {
            Range::Total => (0, all.len()),
            Range::Period { from, until } => (first_not(&|t| t < from), first_not(&|t| t < until)),
            Range::Sliding { after, until } => (first_not(&|t| t <= after), first_not(&|t| t <= until)),
        };
        // Every entry in `start..end` is in the range.
        let partials = self.partials.get();
        let known = partials.iter().flatten().find(|p| p.start == start && p.end <= end);
        let (mut sum, from) = known.map_or((crate::number::Sum::default(), start), |p| (p.sum, p.end));
        // Keeps a longer run of permanent entries from `start` than the one known.
        let keep = |r: Partial| {
            if r.end > known.map_or(r.start, |k| k.end) {
                let older = partials.into_iter().flatten().find(|p| p.start != start);
                self.partials.set([Some(r), older]);
            }
        };
        // The permanent entries that follow on from `from`, and their sum.
        let mut run = Some(Partial { start, end: from, sum });
        for e in all.get(from..end).unwrap_or(&[]) {
            if e.held {
                if let Some(r) = run.take() {
                    keep(r);
                }
                if !e.live(now) {
                    continue;
                }
            }
            sum.add(&e.amount);
            if let Some(r) = run.as_mut() {
                r.end += 1;
                r.sum = sum;
            }
        }
        if let Some(r) = run {
            keep(r);
        }
        sum.value()
    }

    fn push(&mut self, entry: Entry) {
        if self.entries.last().is_some_and(|last| last.time > entry.time) {
            self.by_time = false;
        }
        self.entries.push(entry);
    }

    /// Where the entries of recording `seq` are.
    fn of_recording(&self, seq: u64) -> std::ops::Range<usize> {
        self.entries.partition_point(|e| e.seq < seq)..self.entries.partition_point(|e| e.seq <= seq)
    }
}

#[derive(Debug, Clone, Copy)]
enum Status {
    /// Holds that count until `expires` (exclusive) unless committed or released.
    Held {
        expires: Micros,
    },
    Committed,
    Released,
}

/// A decision that made holds.
#[derive(Debug)]
struct Holder {
    /// The number of its recording.
    seq: u64,
    status: Status,
    /// The series its holds are in (indices of `Inner::series`), until it is settled: the first
    /// one inline (most decisions hold in one series), then the others.
    first: Option<usize>,
    more: Vec<usize>,
}

#[derive(Debug)]
struct Inner {
    hashing: Hashing,
    /// Every series, never removed (indices stay valid).
    series: Vec<Series>,
    /// Indices of `series` by the hash of their name and key values.
    index: hashbrown::HashTable<usize>,
    /// Decisions that made holds, by id.
    holders: HashMap<String, Holder, Hashing>,
    /// The number of the next recording that writes.
    next: u64,
    /// The series the last transaction read last (the next one likely reads it first).
    last: Option<usize>,
}

impl Default for Inner {
    fn default() -> Inner {
        let hashing = Hashing::with_seed(random_u64(), seed());
        Inner {
            holders: HashMap::with_hasher(hashing.clone()),
            hashing,
            series: Vec::new(),
            index: hashbrown::HashTable::new(),
            next: 0,
            last: None,
        }
    }
}

impl Inner {
    fn hash(&self, state: &str, key: &[Value]) -> u64 {
        let mut h = self.hashing.build_hasher();
        h.write_usize(state.len());
        h.write(state.as_bytes());
        h.write_usize(key.len());
        for v in key {
            KeyPart::of(v).hash(&mut h);
        }
        h.finish()
    }

    fn find(&self, state: &str, key: &[Value]) -> Option<(usize, &Series)> {
        let hash = self.hash(state, key);
        let series = &self.series;
        let i = *self.index.find(hash, |&i| series.get(i).is_some_and(|s| s.hash == hash && s.is(state, key)))?;
        Some((i, series.get(i)?))
    }

    /// The index of series (`state`, `key`), made when it is new; `hint` is an index that may
    /// be the series.
    fn series_index(&mut self, state: &str, key: &[Value], hint: Option<usize>) -> usize {
        if let Some(i) = hint
            && self.series.get(i).is_some_and(|s| s.is(state, key))
        {
            return i;
        }
        let hash = self.hash(state, key);
        let series = &self.series;
        if let Some(i) = self.index.find(hash, |&i| series.get(i).is_some_and(|s| s.hash == hash && s.is(state, key))) {
            return *i;
        }
        let i = self.series.len();
        self.series.push(Series {
            hash,
            state: state.into(),
            key: key.into(),
            entries: Vec::new(),
            by_time: true,
            partials: std::cell::Cell::new([None; 2]),
        });
        let series = &self.series;
        self.index.insert_unique(hash, i, |&i| series.get(i).map_or(0, |s| s.hash));
        i
    }
}

/// The in-memory store: one process's state, behind one lock (so a decision's read-decide-record
/// step is atomic by construction). Reads find their series without building its id, look only at
/// the entries in their window when the series was recorded in time order, and see committed
/// holds as the permanent entries they became.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Locked>,
}

/// What the store's lock guards: the tables, and the recording [`StateStore::transact_into`]
/// hands over next (its buffers reused; beside the tables, so that a decision writes it while
/// it reads them).
#[derive(Debug, Default)]
struct Locked {
    inner: Inner,
    spare: Recording,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Locked>, StoreError> {
        self.inner.lock().map_err(|_| StoreError::Unavailable("the in-memory store is poisoned".into()))
    }

    fn settle(&self, decision_id: &str, now: Micros, commit: bool) -> Result<Settled, StoreError> {
        let mut guard = self.lock()?;
        let inner = &mut guard.inner;
        let Some(holder) = inner.holders.get_mut(decision_id) else {
            return Err(StoreError::UnknownDecision(decision_id.to_owned()));
        };
        let (next, settled) = match (holder.status, commit) {
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
        holder.status = next;
        let seq = holder.seq;
        let more = std::mem::take(&mut holder.more);
        for i in holder.first.take().into_iter().chain(more) {
            let Some(series) = inner.series.get_mut(i) else { continue };
            let at = series.of_recording(seq);
            match settled {
                // Committed holds become permanent entries: reads no longer ask about them.
                Settled::Committed => {
                    for e in series.entries.get_mut(at).unwrap_or(&mut []) {
                        e.held = false;
                    }
                }
                // Released holds never count again: their entries go, and with them the sums
                // kept of entries after them (whose indices move).
                Settled::Released => {
                    let kept = series.partials.get().map(|p| p.filter(|p| p.end <= at.start));
                    series.partials.set(kept);
                    let (mut k, mut end) = (at.start, at.end);
                    while k < end {
                        if series.entries.get(k).is_some_and(|e| e.held) {
                            series.entries.remove(k);
                            end -= 1;
                        } else {
                            k += 1;
                        }
                    }
                }
            }
        }
        Ok(settled)
    }
}

/// What a decision reads through: the store, and the last series it read (a decision's reads
/// are mostly of one series, and it often records into it), starting from the series the last
/// transaction read last (series are never removed, so the index stays valid).
struct View<'a> {
    inner: &'a Inner,
    last: std::cell::Cell<Option<usize>>,
}

impl View<'_> {
    fn new(inner: &Inner) -> View<'_> {
        View { inner, last: std::cell::Cell::new(inner.last) }
    }

    fn find(&self, state: &str, key: &[Value]) -> Option<&Series> {
        if let Some(s) = self.last.get().and_then(|i| self.inner.series.get(i))
            && s.is(state, key)
        {
            return Some(s);
        }
        let (i, s) = self.inner.find(state, key)?;
        self.last.set(Some(i));
        Some(s)
    }
}

impl StateView for View<'_> {
    fn read(&self, state: &str, key: &[Value], range: Range, now: Micros) -> Result<Number, StoreError> {
        let Some(series) = self.find(state, key) else { return Ok(Number::from(0)) };
        series.sum(range, now).ok_or_else(|| StoreError::Unavailable("the sum is not a finite number".into()))
    }
}

impl Inner {
    /// Records `rec` (whose decide step read last from series `hint`, if any): its entries, and
    /// the decision that holds them, if it made holds (returned: the caller registers it).
    fn record(&mut self, rec: &Recording, hint: Option<usize>) -> Option<Holder> {
        if rec.updates.is_empty() {
            return None;
        }
        let seq = self.next;
        self.next += 1;
        let expires = rec.time.saturating_add(rec.hold_ttl);
        let mut holder: Option<Holder> = None;
        for u in &rec.updates {
            let i = self.series_index(&u.state, &u.key, hint);
            if let Some(series) = self.series.get_mut(i) {
                series.push(Entry { time: rec.time, amount: u.amount.clone(), seq, held: u.hold, expires });
            }
            if u.hold {
                match &mut holder {
                    None => {
                        holder =
                            Some(Holder { seq, status: Status::Held { expires }, first: Some(i), more: Vec::new() })
                    }
                    Some(h) => h.more.push(i),
                }
            }
        }
        holder
    }
}

impl StateStore for MemoryStore {
    fn transact(&self, decide: &mut dyn FnMut(&dyn StateView) -> Recording) -> Result<(), StoreError> {
        let mut guard = self.lock()?;
        let inner = &mut guard.inner;
        let view = View::new(inner);
        let rec = decide(&view);
        let hint = view.last.get();
        inner.last = hint;
        if let Some(h) = inner.record(&rec, hint) {
            // A decision id made again replaces the earlier decision's registration (its holds
            // still count until they expire).
            inner.holders.insert(rec.decision_id, h);
        }
        Ok(())
    }

    /// Hands `decide` the recording of the last transaction made this way (kept under the lock),
    /// so a decision's recording allocates only what is new: a new series, a new decision id.
    fn transact_into(&self, decide: &mut dyn FnMut(&dyn StateView, &mut Recording)) -> Result<(), StoreError> {
        let mut guard = self.lock()?;
        let Locked { inner, spare: rec } = &mut *guard;
        let view = View::new(inner);
        decide(&view, rec);
        let hint = view.last.get();
        inner.last = hint;
        if let Some(h) = inner.record(rec, hint) {
            match inner.holders.get_mut(rec.decision_id.as_str()) {
                Some(registered) => *registered = h,
                None => {
                    inner.holders.insert(rec.decision_id.clone(), h);
                }
            }
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

    #[test]
    fn replayed_answers_the_reads_recorded_and_notes_any_other() {
        let reads = [Read { state: "spend".into(), key: vec![json!("u-1")], range: Range::Total, value: 7.into() }];
        let view = Replayed::new(&reads);
        assert_eq!(view.read("spend", &[json!("u-1")], Range::Total, 0), Ok(7.into()));
        assert!(!view.missed());
        let other = Range::Sliding { after: 0, until: 1 };
        assert!(matches!(view.read("spend", &[json!("u-1")], other, 0), Err(StoreError::Unavailable(_))));
        assert!(view.missed());
        assert_eq!(Empty.read("spend", &[], Range::Total, 0), Ok(0.into()));
    }

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

    #[test]
    fn series_ids_are_the_json_text_of_the_key() {
        for key in [vec![], vec![json!("u-1")], vec![json!("a\"b"), json!(1), json!(-2), json!(2.5), json!(true)]] {
            let expected = format!("spend\u{1f}{}", Value::Array(key.clone()));
            assert_eq!(series_id("spend", &key), expected);
        }
    }

    #[test]
    fn key_values_select_the_series_their_json_text_names() {
        let s = MemoryStore::new();
        let at = |key: Value, amount: i64, id: &str| {
            let u = Update { state: "spend".into(), key: vec![key], amount: Number::from(amount), hold: false };
            record(&s, id, 10, vec![u]);
        };
        // `1`, `1.0`, `"1"` and `true` are four series; `0.0` and `-0.0` two.
        at(json!(1), 1, "a");
        at(json!(1.0), 10, "b");
        at(json!("1"), 100, "c");
        at(json!(true), 1000, "d");
        at(json!(0.0), 10_000, "e");
        at(json!(-0.0), 100_000, "f");
        at(json!(1u64), 2, "g");
        let sum = |key: Value| {
            let mut out = Value::Null;
            let _ = s.transact(&mut |v| {
                out = v.read("spend", std::slice::from_ref(&key), Range::Total, 20).map_or(Value::Null, Value::Number);
                Recording { decision_id: "r".into(), time: 20, hold_ttl: 0, updates: vec![] }
            });
            out
        };
        assert_eq!(sum(json!(1)), json!(3));
        assert_eq!(sum(json!(1.0)), json!(10));
        assert_eq!(sum(json!("1")), json!(100));
        assert_eq!(sum(json!(true)), json!(1000));
        assert_eq!(sum(json!(0.0)), json!(10_000));
        assert_eq!(sum(json!(-0.0)), json!(100_000));
        assert_eq!(sum(json!(2)), json!(0));
    }

    #[test]
    fn committed_holds_outlive_their_expiry_and_out_of_order_times_still_sum_in_record_order() {
        let s = MemoryStore::new();
        record(&s, "late", 300, vec![update(json!(0.1), false)]);
        record(&s, "early", 100, vec![update(json!(10), true)]);
        record(&s, "mid", 200, vec![update(json!(0.2), false)]);
        assert_eq!(s.commit("early", 101), Ok(Settled::Committed));
        let after_expiry = 100 + 600_000_000 + 1;
        assert_eq!(read(&s, Range::Total, after_expiry), json!((0.1 + 10.0) + 0.2));
        assert_eq!(read(&s, Range::Period { from: 100, until: 300 }, after_expiry), json!(10.2));
        assert_eq!(read(&s, Range::Sliding { after: 100, until: 300 }, after_expiry), json!(0.1 + 0.2));
    }

    #[test]
    fn texts_are_equal_as_strings_are() {
        let texts = ["", "a", "ab", "abc", "abcd", "abce", "spend", "spene", "agent-1", "agent-2", "bgent-1"];
        let long =
            ["d-0123456789abcdef", "d-0123456789abcdeg", "e-0123456789abcdef", "0123456789abcdef", "0123456789abcdeF"];
        let all: Vec<&str> = texts.iter().chain(&long).copied().collect();
        for a in &all {
            for b in &all {
                assert_eq!(same_text(a, b), a == b, "{a:?} {b:?}");
            }
        }
        // Every length to 24, differing at every position.
        for n in 0..24 {
            let a = "x".repeat(n);
            for i in 0..n {
                let mut b = a.clone().into_bytes();
                if let Some(c) = b.get_mut(i) {
                    *c = b'y';
                }
                let b = String::from_utf8(b).unwrap_or_default();
                assert!(!same_text(&a, &b), "{n} {i}");
            }
            assert!(same_text(&a, &a.clone()));
        }
    }

    #[test]
    fn recordings_written_in_place_equal_new_ones() {
        let mut r = Recording::default();
        let keys = [vec![json!("a"), json!(1)], vec![json!(2.5)], vec![json!(true), json!("bb"), json!("c")], vec![]];
        for (round, key) in keys.iter().enumerate() {
            let id = format!("d{round}");
            r.reset(&id, 7, 9);
            let n = 2 - round % 2;
            for i in 0..n {
                r.put_update(i, &format!("s{i}"), key, Number::from(round), i == 0);
            }
            r.updates.truncate(n);
            let updates = (0..n)
                .map(|i| Update { state: format!("s{i}"), key: key.clone(), amount: Number::from(round), hold: i == 0 })
                .collect();
            assert_eq!(r, Recording { decision_id: id, time: 7, hold_ttl: 9, updates });
        }
    }

    /// The store before its tables were made fast: series by their id text, every entry's
    /// decision status looked up on every read. The store must answer as it did.
    #[derive(Default)]
    struct Model {
        series: HashMap<String, Vec<(Micros, Number, Option<u64>)>>,
        ids: HashMap<String, u64>,
        status: HashMap<u64, Status>,
        next: u64,
    }

    impl Model {
        fn record(&mut self, rec: &Recording) {
            let number = self.next;
            if rec.updates.iter().any(|u| u.hold) {
                self.next += 1;
                self.ids.insert(rec.decision_id.clone(), number);
                self.status.insert(number, Status::Held { expires: rec.time.saturating_add(rec.hold_ttl) });
            }
            for u in &rec.updates {
                let entry = (rec.time, u.amount.clone(), u.hold.then_some(number));
                self.series.entry(series_id(&u.state, &u.key)).or_default().push(entry);
            }
        }

        fn read(&self, state: &str, key: &[Value], range: Range, now: Micros) -> Option<Number> {
            let live = |d: &Option<u64>| match d {
                None => true,
                Some(d) => match self.status.get(d) {
                    Some(Status::Committed) => true,
                    Some(Status::Held { expires }) => now < *expires,
                    Some(Status::Released) | None => false,
                },
            };
            let entries = self.series.get(&series_id(state, key)).map_or(&[][..], Vec::as_slice);
            crate::number::sum(entries.iter().filter(|(t, _, d)| range.contains(*t) && live(d)).map(|(_, a, _)| a))
        }

        fn settle(&mut self, id: &str, now: Micros, commit: bool) -> Result<Settled, StoreError> {
            let Some(number) = self.ids.get(id).copied() else { return Err(StoreError::UnknownDecision(id.into())) };
            let Some(status) = self.status.get(&number).copied() else {
                return Err(StoreError::UnknownDecision(id.into()));
            };
            let (next, settled) = match (status, commit) {
                (Status::Committed, true) => return Ok(Settled::Committed),
                (Status::Released, false) => return Ok(Settled::Released),
                (Status::Released, true) => return Err(StoreError::Released(id.into())),
                (Status::Committed, false) => return Err(StoreError::Committed(id.into())),
                (Status::Held { expires }, true) if now >= expires => return Err(StoreError::Expired(id.into())),
                (Status::Held { .. }, true) => (Status::Committed, Settled::Committed),
                (Status::Held { .. }, false) => (Status::Released, Settled::Released),
            };
            self.status.insert(number, next);
            Ok(settled)
        }
    }

    /// A random run of records (in and out of time order, holds or not, reused decision ids,
    /// keys that differ only in their JSON type), commits, releases and reads: the store and the
    /// model give the same answers.
    #[test]
    fn the_store_answers_as_the_model_on_random_runs() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let keys = [json!("u-1"), json!("u-2"), json!(1), json!(1.0), json!(true)];
        let amounts = [json!(1), json!(2.5), json!(0.1), json!(-3), json!(1e300)];
        for run in 0..40 {
            let (store, mut model) = (MemoryStore::new(), Model::default());
            let mut clock: Micros = 1_000;
            for step in 0..300 {
                // Mostly forward in time; in some runs, times jump back now and then.
                clock += i64::try_from(next(50)).unwrap_or(0);
                if run % 2 == 1 && next(10) == 0 {
                    clock -= 200;
                }
                let id = format!("d{}", next(40));
                let now = clock + i64::try_from(next(100)).unwrap_or(0);
                match next(6) {
                    0 | 1 => {
                        let n = next(3);
                        let updates = (0..n)
                            .map(|i| {
                                let state = if i == 0 { "spend" } else { "other" };
                                let key = vec![keys.get(next(5) as usize).cloned().unwrap_or_default()];
                                let Some(Value::Number(amount)) = amounts.get(next(5) as usize).cloned() else {
                                    return Update { state: state.into(), key, amount: Number::from(0), hold: false };
                                };
                                Update { state: state.into(), key, amount, hold: next(2) == 0 }
                            })
                            .collect();
                        let rec = Recording { decision_id: id, time: clock, hold_ttl: 120, updates };
                        model.record(&rec);
                        // Written in place half of the time, over the buffers of an earlier one.
                        let done = if next(2) == 0 {
                            store.transact(&mut |_| rec.clone())
                        } else {
                            store.transact_into(&mut |_, r| {
                                r.reset(&rec.decision_id, rec.time, rec.hold_ttl);
                                for (i, u) in rec.updates.iter().enumerate() {
                                    r.put_update(i, &u.state, &u.key, u.amount.clone(), u.hold);
                                }
                                r.updates.truncate(rec.updates.len());
                                assert_eq!(*r, rec);
                            })
                        };
                        assert_eq!(done, Ok(()));
                    }
                    2 => assert_eq!(store.commit(&id, now), model.settle(&id, now, true), "run {run} step {step}"),
                    3 => assert_eq!(store.release(&id, now), model.settle(&id, now, false), "run {run} step {step}"),
                    _ => {
                        let key = [keys.get(next(5) as usize).cloned().unwrap_or_default()];
                        let a = clock - i64::try_from(next(400)).unwrap_or(0);
                        let b = if next(2) == 0 { clock + 10 } else { a + i64::try_from(next(300)).unwrap_or(0) };
                        let range = match next(3) {
                            0 => Range::Total,
                            1 => Range::Period { from: a, until: b },
                            _ => Range::Sliding { after: a, until: b },
                        };
                        let mut got = None;
                        let _ = store.transact(&mut |v| {
                            got = Some(v.read("spend", &key, range, now).ok());
                            Recording { decision_id: String::new(), time: now, hold_ttl: 0, updates: vec![] }
                        });
                        assert_eq!(got, Some(model.read("spend", &key, range, now)), "run {run} step {step} {range:?}");
                    }
                }
            }
        }
    }
}
