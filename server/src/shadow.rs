//! Shadow evaluation (TOOLCHAIN.md "Decisions with state, shared state, shadow evaluation"): a
//! candidate bundle evaluated on every request of a live bundle, off the response path, and a
//! report of where the two disagree beside the transitions `verdict diff` predicts.
//!
//! - The live decision is answered first; its request, its decision and the state reads it made
//!   go into a bounded queue ([`QUEUE`] jobs) that one thread drains. A full queue drops the job
//!   (counted as `dropped`): shadowing never makes a decision wait.
//! - The candidate never records state or holds and never calls an extern: it is evaluated
//!   read-only (`Engine::evaluate`, whose updates are computed and discarded) on a view that
//!   answers each state read with the value the live decision read ([`Replay`]). A read the live
//!   decision did not make (the candidate reads another window or series) is read from the store
//!   when the candidate runs, so it may include updates made since (the live decision's own among
//!   them); such evaluations are counted as `live_reads`. The service binds no externs, so both
//!   decisions see every extern call fail the same way.
//! - Decisions are compared by effect (`kind`), as `verdict diff` compares them. A mismatch is
//!   counted in `/metrics` and written to the audit log with both decisions.
//! - Promotion puts the candidate in the bundle store with one atomic swap, then stops shadowing.

use crate::AppState;
use crate::auth::Role;
use crate::decisions::Read;
use crate::error::ApiError;
use crate::store::{Loaded, Put};
use arc_swap::ArcSwap;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde_json::{Map, Number, Value, json};
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::request::Request as Context;
use verdict_runtime::state::{Micros, Range, Recording, Replayed, StateStore, StateView, StoreError};

/// Jobs waiting for the shadow thread; beyond it, jobs are dropped (and counted).
pub const QUEUE: usize = 4096;
/// Correlation ids kept per transition.
pub const EXAMPLES: usize = 10;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section is a few counter updates: a poisoned lock holds consistent data.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The shadows of the live bundles, by bundle id, and the queue to the shadow thread.
#[derive(Debug)]
pub struct Shadows {
    map: ArcSwap<HashMap<String, Arc<Shadow>>>,
    writer: Mutex<()>,
    queue: Sender<Job>,
}

/// Why the shadow thread cannot be started.
#[derive(Debug)]
pub struct ShadowThreadError {
    pub source: std::io::Error,
}

impl std::fmt::Display for ShadowThreadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot start the shadow evaluation thread: {}", self.source)
    }
}

impl std::error::Error for ShadowThreadError {}

impl Shadows {
    /// No shadows yet, and the thread that evaluates candidates (it stops when this is dropped).
    pub fn start() -> Result<Shadows, ShadowThreadError> {
        let (queue, jobs) = crossbeam_channel::bounded::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("verdict-shadow".into())
            .spawn(move || work(&jobs))
            .map_err(|source| ShadowThreadError { source })?;
        Ok(Shadows { map: ArcSwap::from_pointee(HashMap::new()), writer: Mutex::new(()), queue })
    }

    /// The shadow of a live bundle (one atomic load; no lookup when nothing is shadowed).
    pub fn get(&self, bundle_id: &str) -> Option<Arc<Shadow>> {
        let map = self.map.load();
        if map.is_empty() { None } else { map.get(bundle_id).cloned() }
    }

    fn set(&self, bundle_id: &str, shadow: Option<Arc<Shadow>>) -> Option<Arc<Shadow>> {
        let _w = lock(&self.writer);
        let mut next = (**self.map.load()).clone();
        let old = match shadow {
            Some(s) => next.insert(bundle_id.to_owned(), s),
            None => next.remove(bundle_id),
        };
        self.map.store(Arc::new(next));
        old
    }

    /// Removes the shadow of `bundle_id` if it is still `which`.
    fn remove_if(&self, bundle_id: &str, which: &Arc<Shadow>) -> bool {
        let _w = lock(&self.writer);
        let current = self.map.load_full();
        if !current.get(bundle_id).is_some_and(|s| Arc::ptr_eq(s, which)) {
            return false;
        }
        let mut next = (*current).clone();
        next.remove(bundle_id);
        self.map.store(Arc::new(next));
        true
    }

    /// Queues a candidate evaluation; never waits (a full queue drops it, counted).
    pub(crate) fn submit(&self, job: Job) {
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                lock(&job.shadow.counts).dropped += 1;
                job.st.metrics.shadow_dropped();
            }
        }
    }
}

/// A candidate bundle shadowing a live one, and what it has shown so far.
#[derive(Debug)]
pub struct Shadow {
    pub candidate: Arc<Loaded>,
    pub since: jiff::Timestamp,
    counts: Mutex<Counts>,
    /// The last prediction, with the fingerprint of the live bundle it was computed against.
    prediction: Mutex<Option<(String, Value)>>,
}

#[derive(Debug, Default)]
struct Counts {
    evaluated: u64,
    agreed: u64,
    /// `"allow -> deny"` → how many, and the first correlation ids.
    transitions: BTreeMap<String, (u64, Vec<String>)>,
    dropped: u64,
    /// The store could not answer a read the live decision had not made: not compared.
    skipped: u64,
    live_reads: u64,
}

impl Shadow {
    fn new(candidate: Loaded) -> Shadow {
        Shadow {
            candidate: Arc::new(candidate),
            since: jiff::Timestamp::now(),
            counts: Mutex::new(Counts::default()),
            prediction: Mutex::new(None),
        }
    }

    /// The report of `GET /bundles/{id}/shadow` (`prediction`: `verdict diff`'s transitions
    /// from the live bundle to the candidate).
    fn report(&self, bundle_id: &str, live: Option<&Loaded>, prediction: &Value) -> Value {
        let c = lock(&self.counts);
        let transitions: Map<String, Value> = c
            .transitions
            .iter()
            .map(|(k, (n, ids))| (k.clone(), json!({"count": n, "correlation_ids": ids})))
            .collect();
        let side =
            |l: &Loaded| json!({"version": l.version(), "fingerprint": l.engine.fingerprint(), "digest": l.digest});
        json!({
            "bundle_id": bundle_id,
            "since": self.since.to_string(),
            "live": live.map(side),
            "candidate": side(&self.candidate),
            "evaluated": c.evaluated,
            "agreed": c.agreed,
            "transitions": transitions,
            "predicted": prediction.get("transitions").cloned().unwrap_or(Value::Null),
            "prediction": prediction,
            "dropped": c.dropped,
            "skipped": c.skipped,
            "live_reads": c.live_reads,
        })
    }
}

/// What the live decision was, for the comparison and the mismatch's audit line.
#[derive(Debug)]
pub(crate) struct Live {
    pub kind: String,
    pub policy: Option<String>,
    pub rule: Option<String>,
    pub reason: String,
    pub version: String,
    pub fingerprint: String,
}

/// One candidate evaluation to run.
pub(crate) struct Job {
    pub st: Arc<AppState>,
    pub shadow: Arc<Shadow>,
    pub req: Context,
    pub now: jiff::Timestamp,
    pub correlation: String,
    pub decision_id: String,
    pub live: Live,
    /// The state reads the live decision made.
    pub reads: Vec<Read>,
}

fn work(jobs: &Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run())).is_err() {
            tracing::error!("a shadow evaluation panicked");
        }
    }
}

/// A state view that answers with the live decision's reads ([`Replayed`]); other reads go to
/// the store (one read-only transaction each), or fail when the store cannot answer.
struct Replay<'a> {
    recorded: Replayed<'a>,
    store: &'a dyn StateStore,
    live_reads: Cell<u32>,
    failed: Cell<bool>,
}

impl StateView for Replay<'_> {
    fn read(&self, state: &str, key: &[Value], range: Range, now: Micros) -> Result<Number, StoreError> {
        if let Some(v) = self.recorded.find(state, key, range) {
            return Ok(v.clone());
        }
        self.live_reads.set(self.live_reads.get() + 1);
        let mut value = None;
        let done = self.store.transact(&mut |view| {
            value = Some(view.read(state, key, range, now));
            Recording { decision_id: String::new(), time: now, hold_ttl: 0, updates: Vec::new() }
        });
        let result = match (done, value) {
            (Ok(()), Some(v)) => v,
            (Err(e), _) => Err(e),
            (Ok(()), None) => Err(StoreError::Unavailable("the store did not read".into())),
        };
        if result.is_err() {
            self.failed.set(true);
        }
        result
    }
}

impl Job {
    fn run(self) {
        let replay = Replay {
            recorded: Replayed::new(&self.reads),
            store: &self.st.state,
            live_reads: Cell::new(0),
            failed: Cell::new(false),
        };
        let env = Env { now: self.now, decision_id: Some(&self.decision_id), state: Some(&replay), externs: None };
        let cand = &self.shadow.candidate;
        let result = cand.engine.evaluate(&self.req, &env, Mode::PLAIN);
        let d = &result.decision;
        let agreed = d.kind == self.live.kind;
        {
            let mut c = lock(&self.shadow.counts);
            if replay.failed.get() {
                c.skipped += 1;
                return;
            }
            c.evaluated += 1;
            if replay.live_reads.get() > 0 {
                c.live_reads += 1;
            }
            if agreed {
                c.agreed += 1;
            } else {
                let (n, ids) = c.transitions.entry(format!("{} -> {}", self.live.kind, d.kind)).or_default();
                *n += 1;
                if ids.len() < EXAMPLES {
                    ids.push(self.correlation.clone());
                }
            }
        }
        self.st.metrics.shadow_evaluated(agreed);
        if agreed {
            return;
        }
        let live = &self.live;
        let fields = crate::audit::fields(vec![
            ("correlation_id", json!(self.correlation)),
            ("decision_id", json!(self.decision_id)),
            ("bundle_id", json!(result.bundle_id)),
            (
                "live",
                json!({"bundle_version": live.version, "fingerprint": live.fingerprint, "decision": live.kind,
                       "matched_policy_id": live.policy, "matched_rule_id": live.rule, "reason": live.reason}),
            ),
            (
                "candidate",
                json!({"bundle_version": result.bundle_version, "fingerprint": result.fingerprint, "decision": d.kind,
                       "matched_policy_id": d.matched_policy_id, "matched_rule_id": d.matched_rule_id, "reason": d.reason}),
            ),
        ]);
        self.st.audit.submit_blocking(
            crate::audit::line("shadow_mismatch", fields),
            Box::new(|written| {
                if let Err(e) = written {
                    tracing::warn!(error = %e, "a shadow mismatch is not in the audit log");
                }
            }),
        );
    }
}

/// `verdict diff`'s transitions from the live bundle to the candidate, as the report shows them.
fn predict(live: &Loaded, candidate: &Loaded) -> Value {
    let (Some(old), Some(new)) = (live.engine.source(), candidate.engine.source()) else {
        return json!({"error": "a bundle loaded as a compiled artifact has no source to compare"});
    };
    let report = verdict_compiler::analysis::diff(old, new, &verdict_compiler::analysis::Options::default());
    let who = |d: &verdict_compiler::analysis::diff::Decider| json!({"policy": d.policy, "rule": d.rule});
    let transitions: Vec<Value> = report
        .transitions
        .iter()
        .map(|t| json!({"from": t.from, "to": t.to, "witness": t.witness, "old": who(&t.old), "new": who(&t.new)}))
        .collect();
    let unverified: Vec<Value> = report.unverified.iter().map(|(a, b)| json!({"from": a, "to": b})).collect();
    json!({
        "live_fingerprint": live.engine.fingerprint(),
        "equivalent": report.equivalent(),
        "transitions": transitions,
        "unverified": unverified,
        "undecided": report.undecided,
        // A rule that may fault (an extern, a state read) where it is reached: the prediction
        // covers only decisions without faults, as `verdict diff` says.
        "faults": report.faults,
    })
}

// --- Routes -------------------------------------------------------------------------------------

type St = State<Arc<AppState>>;

fn no_shadow() -> ApiError {
    ApiError::new(404, "no shadow for this bundle")
}

/// `PUT /bundles/{id}/shadow`: a candidate for the live bundle `{id}` (same id), shadowed from
/// now on; a previous candidate and its report are replaced.
pub(crate) async fn put(
    State(st): St,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = st.auth.check(&headers, Role::Admin)?;
    if st.store.get(&id).is_none() {
        return Err(ApiError::new(404, "unknown bundle"));
    }
    let candidate = crate::handlers::bundle_body(&st, &headers, body).await?;
    if candidate.id() != id {
        return Err(ApiError::new(
            400,
            format!("the candidate's bundle_id `{}` is not the path's `{id}`", candidate.id()),
        ));
    }
    let (version, fingerprint, digest) =
        (candidate.version().to_owned(), candidate.engine.fingerprint().to_owned(), candidate.digest.clone());
    let replaced = st.shadows.set(&id, Some(Arc::new(Shadow::new(candidate)))).is_some();
    tracing::info!(bundle_id = id, candidate_version = version, "shadow evaluation started");
    let fields = crate::audit::fields(vec![
        ("bundle_id", json!(id)),
        ("candidate_version", json!(version)),
        ("candidate_fingerprint", json!(fingerprint)),
        ("candidate_digest", json!(digest)),
        ("replaced", json!(replaced)),
        ("caller", json!(caller.as_str())),
    ]);
    st.audit.emit("shadow_started", fields).await.map_err(|e| crate::handlers::audit_failed(&st, &e))?;
    let body = json!({"bundle_id": id, "status": "shadowing", "candidate_version": version, "candidate_fingerprint": fingerprint});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The report of a shadow with `verdict diff`'s prediction (computed on a blocking thread the
/// first time, and again when the live bundle has changed).
async fn full_report(st: &AppState, id: &str, shadow: &Arc<Shadow>) -> Result<Value, ApiError> {
    let live = st.store.get(id);
    let cached = {
        let p = lock(&shadow.prediction);
        match (&*p, &live) {
            (Some((fp, v)), Some(l)) if fp == l.engine.fingerprint() => Some(v.clone()),
            _ => None,
        }
    };
    let prediction = match (cached, &live) {
        (Some(v), _) => v,
        (None, None) => json!({"error": "the live bundle is not loaded"}),
        (None, Some(l)) => {
            let (l, s) = (l.clone(), shadow.clone());
            let fingerprint = l.engine.fingerprint().to_owned();
            let v = crate::handlers::compile_job(st, move || Ok(predict(&l, &s.candidate))).await?;
            *lock(&shadow.prediction) = Some((fingerprint, v.clone()));
            v
        }
    };
    Ok(shadow.report(id, live.as_deref(), &prediction))
}

/// `GET /bundles/{id}/shadow`: the report, with `verdict diff`'s prediction.
pub(crate) async fn get(State(st): St, Path(id): Path<String>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    st.auth.check(&headers, Role::Admin)?;
    let shadow = st.shadows.get(&id).ok_or_else(no_shadow)?;
    Ok(Json(full_report(&st, &id, &shadow).await?))
}

/// `DELETE /bundles/{id}/shadow`: stops shadowing; answers the last report (without prediction).
pub(crate) async fn delete(State(st): St, Path(id): Path<String>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let caller = st.auth.check(&headers, Role::Admin)?;
    let shadow = st.shadows.set(&id, None).ok_or_else(no_shadow)?;
    tracing::info!(bundle_id = id, "shadow evaluation stopped");
    let fields = crate::audit::fields(vec![("bundle_id", json!(id)), ("caller", json!(caller.as_str()))]);
    st.audit.emit("shadow_stopped", fields).await.map_err(|e| crate::handlers::audit_failed(&st, &e))?;
    let mut report = shadow.report(&id, st.store.get(&id).as_deref(), &Value::Null);
    if let Value::Object(m) = &mut report {
        m.insert("status".into(), json!("stopped"));
    }
    Ok(Json(report))
}

/// `POST /bundles/{id}/shadow/promote`: the candidate becomes the live bundle in one atomic swap
/// (requests in flight finish on the version they started with), and shadowing stops. The answer
/// carries the final report: the transitions observed beside those `verdict diff` predicted.
pub(crate) async fn promote(State(st): St, Path(id): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    let caller = st.auth.check(&headers, Role::Admin)?;
    let shadow = st.shadows.get(&id).ok_or_else(no_shadow)?;
    // What was observed and predicted against the version being replaced.
    let report = full_report(&st, &id, &shadow).await?;
    let cand = shadow.candidate.clone();
    let outcome = st.store.put_shared(cand.clone(), Put::Upsert).map_err(crate::handlers::put_error)?;
    st.shadows.remove_if(&id, &shadow);
    tracing::info!(bundle_id = id, version = cand.version(), "shadow candidate promoted");
    let summary = crate::audit::BundleSummary::of(&cand);
    crate::handlers::audit_registration(&st, &summary, caller, outcome, vec![("promoted_from_shadow", json!(true))])
        .await?;
    let body = json!({"bundle_id": id, "status": "promoted", "version": cand.version(),
                      "fingerprint": cand.engine.fingerprint(), "report": report});
    Ok(Json(body).into_response())
}
