//! Decisions with state (LANGUAGE.md §5.2; TOOLCHAIN.md "Decisions with state, shared state"):
//! the service's state store ([`StateBackend`]: the in-memory store or a shared one such as
//! Redis, guarded by a circuit breaker), the reads a decision made ([`Capture`], which shadow
//! evaluation replays), and the `POST /decisions/{id}/commit` and `/release` routes.
//!
//! A shared store that fails makes stateful decisions fail closed (the engine decides the most
//! severe effect with reason `state error: store unavailable: …`), never hang: each store
//! operation is bounded by the store's own timeouts, and after a failure the breaker answers
//! every operation at once with the same error for [`RETRY_AFTER`], then lets one operation
//! through to probe the store; the first that succeeds closes the breaker, so the service
//! recovers by itself when the store comes back. Stateless decisions never touch the store.

use crate::AppState;
use crate::auth::Role;
use crate::error::ApiError;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Number, Value, json};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use verdict_runtime::state::{MemoryStore, Micros, Range, Recording, Settled, StateStore, StateView, StoreError};

/// How long after a failure the store is not asked again (operations fail at once meanwhile).
pub const RETRY_AFTER: Duration = Duration::from_millis(500);

/// The longest decision id the routes accept (ids the service makes are 34 characters).
const MAX_ID: usize = 128;

/// The service's state store, shared by every bundle and request (cheap to clone).
#[derive(Clone)]
pub struct StateBackend {
    inner: Arc<Inner>,
}

struct Inner {
    store: Box<dyn StateStore>,
    /// What the logs and `GET /version` call it (`memory`, or the URL without its password).
    name: String,
    /// In this process, without I/O (decisions on it may run inline when they are cheap).
    local: bool,
    breaker: Breaker,
    /// Operations the store could not do (unavailable, or contention past the retries).
    failures: AtomicU64,
}

impl std::fmt::Debug for StateBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateBackend").field("name", &self.inner.name).finish_non_exhaustive()
    }
}

impl Default for StateBackend {
    fn default() -> StateBackend {
        StateBackend::memory()
    }
}

impl StateBackend {
    /// A fresh in-memory store: state lives and dies with this process.
    pub fn memory() -> StateBackend {
        StateBackend::build(Box::new(MemoryStore::new()), "memory".into(), true)
    }

    /// A shared store (e.g. `verdict_store_redis::RedisStore`), named for logs (never with a
    /// password).
    pub fn shared(store: Box<dyn StateStore>, name: impl Into<String>) -> StateBackend {
        StateBackend::build(store, name.into(), false)
    }

    fn build(store: Box<dyn StateStore>, name: String, local: bool) -> StateBackend {
        StateBackend {
            inner: Arc::new(Inner { store, name, local, breaker: Breaker::default(), failures: AtomicU64::new(0) }),
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether the store is in this process (no I/O, never unavailable).
    pub fn is_local(&self) -> bool {
        self.inner.local
    }

    /// Runs a store operation through the breaker.
    fn guarded<T>(&self, op: impl FnOnce(&dyn StateStore) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let b = &self.inner.breaker;
        let admission = match b.admit() {
            Ok(a) => a,
            Err(e) => {
                self.inner.failures.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        let result = op(self.inner.store.as_ref());
        b.settle(admission, result.as_ref().err());
        if matches!(result, Err(StoreError::Unavailable(_) | StoreError::Contention)) {
            self.inner.failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Whether the breaker is open: the store failed and is not asked again yet.
    pub fn is_failing(&self) -> bool {
        self.inner.breaker.open_until.load(Ordering::Acquire) != 0
    }
}

impl StateStore for StateBackend {
    fn transact(&self, decide: &mut dyn FnMut(&dyn StateView) -> Recording) -> Result<(), StoreError> {
        self.guarded(|s| s.transact(decide))
    }

    fn commit(&self, decision_id: &str, now: Micros) -> Result<Settled, StoreError> {
        self.guarded(|s| s.commit(decision_id, now))
    }

    fn release(&self, decision_id: &str, now: Micros) -> Result<Settled, StoreError> {
        self.guarded(|s| s.release(decision_id, now))
    }
}

/// A circuit breaker: closed (operations go through), open after a failure of the store (they
/// fail at once with that failure's text until [`RETRY_AFTER`] has passed), then one operation
/// probes; its success closes the breaker, its failure opens it again.
#[derive(Default)]
struct Breaker {
    /// Nanoseconds since [`epoch`] until which operations fail at once; 0 when closed.
    open_until: AtomicU64,
    /// An operation is probing the store.
    probing: AtomicBool,
    /// The failure that opened the breaker.
    why: Mutex<String>,
}

/// How an operation was let through; a probe holds the breaker's probing flag until it is
/// settled or dropped.
#[derive(Debug)]
enum Admission<'b> {
    Normal,
    /// The flag is held, not read: dropping it ends the probe.
    Probe {
        _probing: Probing<'b>,
    },
}

/// The probing flag, set while one operation probes the store; cleared when dropped, so an
/// operation that panics or returns early never leaves the breaker without probes.
#[derive(Debug)]
struct Probing<'b>(&'b AtomicBool);

impl Drop for Probing<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn nanos_now() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX).max(1)
}

impl Breaker {
    fn admit(&self) -> Result<Admission<'_>, StoreError> {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Ok(Admission::Normal);
        }
        if nanos_now() >= until
            && self.probing.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok()
        {
            return Ok(Admission::Probe { _probing: Probing(&self.probing) });
        }
        let why = self.why.lock().map(|w| w.clone()).unwrap_or_default();
        Err(StoreError::Unavailable(format!("{why} (the store is tried again every {} ms)", RETRY_AFTER.as_millis())))
    }

    /// Records what the store answered; a probe's flag is cleared after the breaker's state is
    /// set (when `admission` is dropped at the end).
    fn settle(&self, admission: Admission<'_>, error: Option<&StoreError>) {
        match error {
            Some(StoreError::Unavailable(why)) => {
                if let Ok(mut w) = self.why.lock() {
                    why.clone_into(&mut w);
                }
                let until = nanos_now().saturating_add(u64::try_from(RETRY_AFTER.as_nanos()).unwrap_or(u64::MAX));
                if self.open_until.swap(until, Ordering::AcqRel) == 0 {
                    tracing::error!(error = %why, "the state store failed: stateful decisions fail closed until it answers again");
                }
            }
            // The store answered (an unknown decision, contention and the like are answers).
            _ => {
                if self.open_until.swap(0, Ordering::AcqRel) != 0 {
                    tracing::info!("the state store answers again");
                }
            }
        }
        drop(admission);
    }
}

/// One state read a decision made, with its value.
pub use verdict_runtime::state::Read;

/// A store that remembers the reads of the last run of each decision (what the decision was
/// decided on), for shadow evaluation to replay.
pub struct Capture<'a> {
    pub store: &'a dyn StateStore,
    pub reads: Mutex<Vec<Read>>,
}

impl<'a> Capture<'a> {
    pub fn new(store: &'a dyn StateStore) -> Capture<'a> {
        Capture { store, reads: Mutex::new(Vec::new()) }
    }

    pub fn into_reads(self) -> Vec<Read> {
        self.reads.into_inner().unwrap_or_default()
    }
}

struct CaptureView<'v> {
    view: &'v dyn StateView,
    reads: &'v Mutex<Vec<Read>>,
}

impl StateView for CaptureView<'_> {
    fn read(&self, state: &str, key: &[Value], range: Range, now: Micros) -> Result<Number, StoreError> {
        let value = self.view.read(state, key, range, now)?;
        if let Ok(mut reads) = self.reads.lock() {
            reads.push(Read { state: state.to_owned(), key: key.to_vec(), range, value: value.clone() });
        }
        Ok(value)
    }
}

impl StateStore for Capture<'_> {
    fn transact(&self, decide: &mut dyn FnMut(&dyn StateView) -> Recording) -> Result<(), StoreError> {
        self.store.transact(&mut |view| {
            // Only the last run counts: a store that runs `decide` again discards earlier runs.
            if let Ok(mut reads) = self.reads.lock() {
                reads.clear();
            }
            decide(&CaptureView { view, reads: &self.reads })
        })
    }

    fn commit(&self, decision_id: &str, now: Micros) -> Result<Settled, StoreError> {
        self.store.commit(decision_id, now)
    }

    fn release(&self, decision_id: &str, now: Micros) -> Result<Settled, StoreError> {
        self.store.release(decision_id, now)
    }
}

/// The store's lines of `/metrics`.
pub fn metrics_text(state: &StateBackend) -> String {
    let mut out = String::new();
    crate::metrics::metric(
        &mut out,
        "verdict_state_store_failures_total",
        "counter",
        "State store operations that failed (stateful decisions failed closed, commits and releases answered 503).",
        state.inner.failures.load(Ordering::Relaxed),
    );
    crate::metrics::metric(
        &mut out,
        "verdict_state_store_failing",
        "gauge",
        "Whether the state store failed and is not asked again yet (1) or answers (0).",
        u8::from(state.is_failing()),
    );
    out
}

// --- Routes -------------------------------------------------------------------------------------

type St = State<Arc<AppState>>;

pub(crate) async fn commit(State(st): St, Path(id): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    settle(&st, id, &headers, true).await
}

pub(crate) async fn release(State(st): St, Path(id): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    settle(&st, id, &headers, false).await
}

/// Commits or releases a decision's holds in the store (any replica's decision, with a shared
/// store), writes the audit line, then answers.
async fn settle(st: &Arc<AppState>, id: String, headers: &HeaderMap, commit: bool) -> Result<Response, ApiError> {
    let caller = st.auth.check(headers, Role::Evaluator)?;
    let correlation = crate::handlers::correlation_id(headers);
    if id.is_empty() || id.len() > MAX_ID || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::new(404, "unknown decision"));
    }
    let backend = st.state.clone();
    let now = verdict_runtime::state::micros(jiff::Timestamp::now());
    let job_id = id.clone();
    let settled =
        tokio::task::spawn_blocking(
            move || {
                if commit { backend.commit(&job_id, now) } else { backend.release(&job_id, now) }
            },
        )
        .await
        .map_err(|_| ApiError::new(500, "the store operation failed"))?;
    let status = match settled {
        Ok(Settled::Committed) => "committed",
        Ok(Settled::Released) => "released",
        Err(e) => {
            let (code, detail) = match &e {
                StoreError::UnknownDecision(_) => (404, "unknown decision"),
                StoreError::Expired(_) => (404, "decision expired"),
                StoreError::Released(_) => (409, "decision was released"),
                StoreError::Committed(_) => (409, "decision was committed"),
                StoreError::Unavailable(_) | StoreError::Contention => (503, "the state store is unavailable"),
            };
            if code == 503 {
                tracing::warn!(decision_id = id, error = %e, "cannot settle a decision");
            }
            return Err(ApiError::new(code, detail)
                .with("reason", json!(e.to_string()))
                .with("decision_id", json!(id)));
        }
    };
    let event = if commit { "decision_committed" } else { "decision_released" };
    let fields = crate::audit::fields(vec![
        ("correlation_id", json!(correlation)),
        ("decision_id", json!(id)),
        ("status", json!(status)),
        ("caller", json!(caller.as_str())),
    ]);
    st.audit.emit(event, fields).await.map_err(|e| crate::handlers::audit_failed(st, &e))?;
    Ok(Json(json!({"decision_id": id, "status": status})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store that fails (or answers) as told, counting the calls that reach it.
    struct Flaky {
        down: AtomicBool,
        calls: AtomicU64,
    }

    impl StateStore for Flaky {
        fn transact(&self, _: &mut dyn FnMut(&dyn StateView) -> Recording) -> Result<(), StoreError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) { Err(StoreError::Unavailable("down".into())) } else { Ok(()) }
        }
        fn commit(&self, id: &str, _: Micros) -> Result<Settled, StoreError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::UnknownDecision(id.into()))
        }
        fn release(&self, id: &str, now: Micros) -> Result<Settled, StoreError> {
            self.commit(id, now)
        }
    }

    #[test]
    fn the_breaker_fails_fast_while_open_then_probes_and_recovers() {
        let flaky = Arc::new(Flaky { down: AtomicBool::new(true), calls: AtomicU64::new(0) });
        struct Shared(Arc<Flaky>);
        impl StateStore for Shared {
            fn transact(&self, d: &mut dyn FnMut(&dyn StateView) -> Recording) -> Result<(), StoreError> {
                self.0.transact(d)
            }
            fn commit(&self, id: &str, now: Micros) -> Result<Settled, StoreError> {
                self.0.commit(id, now)
            }
            fn release(&self, id: &str, now: Micros) -> Result<Settled, StoreError> {
                self.0.release(id, now)
            }
        }
        let b = StateBackend::shared(Box::new(Shared(flaky.clone())), "flaky");
        let mut noop = |_: &dyn StateView| Recording { decision_id: "x".into(), time: 0, hold_ttl: 0, updates: vec![] };
        assert_eq!(b.transact(&mut noop), Err(StoreError::Unavailable("down".into())));
        // Open: nothing reaches the store, and the error says what failed.
        for _ in 0..10 {
            let got = b.transact(&mut noop);
            let fast = matches!(&got, Err(StoreError::Unavailable(why)) if why.starts_with("down (the store is tried again every"));
            assert!(fast, "{got:?}");
        }
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 1);
        flaky.down.store(false, Ordering::SeqCst);
        std::thread::sleep(RETRY_AFTER + Duration::from_millis(20));
        // One probe goes through and closes the breaker; an answer (unknown decision) counts.
        assert_eq!(b.commit("d", 0), Err(StoreError::UnknownDecision("d".into())));
        assert_eq!(b.transact(&mut noop), Ok(()));
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
    }

    /// A store whose `transact` panics while `panics` is set (a bug in a store), else answers.
    struct Panicky {
        panics: Arc<AtomicBool>,
        calls: Arc<AtomicU64>,
    }

    impl StateStore for Panicky {
        #[allow(clippy::panic)]
        fn transact(&self, _: &mut dyn FnMut(&dyn StateView) -> Recording) -> Result<(), StoreError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.panics.load(Ordering::SeqCst) {
                panic!("the store panicked");
            }
            Ok(())
        }
        fn commit(&self, id: &str, _: Micros) -> Result<Settled, StoreError> {
            Err(StoreError::UnknownDecision(id.into()))
        }
        fn release(&self, id: &str, _: Micros) -> Result<Settled, StoreError> {
            Err(StoreError::UnknownDecision(id.into()))
        }
    }

    #[test]
    fn a_probe_that_panics_does_not_stop_the_breaker_from_probing_again() {
        let (panics, calls) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicU64::new(0)));
        let b = StateBackend::shared(Box::new(Panicky { panics: panics.clone(), calls: calls.clone() }), "panicky");
        let breaker = &b.inner.breaker;
        // Open since long ago: the next operation is a probe.
        breaker.settle(Admission::Normal, Some(&StoreError::Unavailable("down".into())));
        breaker.open_until.store(1, Ordering::Release);
        let mut noop = |_: &dyn StateView| Recording { decision_id: "x".into(), time: 0, hold_ttl: 0, updates: vec![] };
        let probed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.transact(&mut noop)));
        assert!(probed.is_err(), "the probe panicked");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(!breaker.probing.load(Ordering::Acquire), "the panicking probe cleared the flag");
        // The next operation probes again, and its answer closes the breaker.
        panics.store(false, Ordering::SeqCst);
        assert_eq!(b.transact(&mut noop), Ok(()));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(!b.is_failing());
    }
}
