//! The audit log: one JSON line per evaluation, registration, condition assertion and reload
//! event, written *before* the answer that reports it leaves.
//!
//! Two ways to write, by durability:
//!
//! - **Direct** (the default): no other thread. A handler adds its line to the lines gathered
//!   for the next write, yields once (so the other tasks ready on its worker, answers to other
//!   connections, add theirs), and then, unless another handler has written them meanwhile,
//!   writes everything gathered with one `write` to the file (opened for appending), under a
//!   lock. It answers once the `write` of its line has returned. No hand-off, no wake-ups: one
//!   system call per group of lines. A process killed with SIGKILL has handed every answered
//!   line to the kernel (the page cache survives the process). Threads outside the async
//!   runtime (evaluation threads, reloads) write at once, with what is gathered.
//! - **Group commit** (`fsync` durability, `--audit-fsync`): handlers queue a line with a
//!   completion in a bounded channel (they wait for room, async, rather than drop a line). One
//!   writer thread blocks until a line arrives, takes everything queued behind it (a batch, up
//!   to [`MAX_BATCH`] bytes), writes the batch with one `write`, `fdatasync`s it, and only then
//!   completes every line of the batch, so many lines share one sync. While the writer syncs one
//!   batch, the next one gathers.
//!
//! Either way a handler answers only after its line is in the file; when a write fails, every
//! line of its batch completes with the error and the handlers answer 503
//! instead of their decisions (fail closed).
//!
//! Closing ([`AuditSink::close`]): every line written (or queued) before it is in the file when
//! `close` returns, which graceful shutdown relies on; lines after it fail as closed.
//!
//! With `--audit-url`, each batch written is then offered to the audit stream
//! ([`crate::stream`]), which POSTs it to a collector, best effort: never before the file has it,
//! never holding up the writer.
//!
//! Lines are built here too: [`line`] for events with a few fields, [`EvaluationLine`] for the
//! evaluation path (serialized straight from the result; it records the obligations, the
//! request pruned to the paths the bundle reads ([`crate::inputs`]) and a stateful decision's
//! state reads, so a line can be replayed), [`inputs_line`] for the paths a bundle version's
//! lines record. New fields go into those places.

use crate::decisions::Read;
use crate::stream::AuditStream;
use serde_json::{Map, Value};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use tokio::sync::{mpsc, oneshot};
use verdict_runtime::state::Range;

/// Where audit lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    Stdout,
    /// Appended to this file (created if missing).
    File(PathBuf),
}

impl AuditTarget {
    fn describe(&self) -> String {
        match self {
            AuditTarget::Stdout => "standard output".into(),
            AuditTarget::File(p) => format!("`{}`", p.display()),
        }
    }
}

/// How the audit log is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditOptions {
    pub target: AuditTarget,
    /// Lines queued for the writer before handlers wait for room (group commit, with `fsync`).
    pub capacity: usize,
    /// `fdatasync` each batch before its lines complete (durable across power loss).
    pub fsync: bool,
}

/// A batch is written once it holds this many bytes, even if more lines are queued.
pub const MAX_BATCH: usize = 1024 * 1024;

/// Why the audit log cannot be started or written.
#[derive(Debug)]
pub enum AuditError {
    /// The file cannot be opened for appending.
    Open(OpenError),
    /// `fsync` durability was asked for a target that cannot be synced (a pipe, a terminal).
    Sync(SyncError),
    /// The writer thread cannot be started.
    Thread(ThreadError),
    /// A batch could not be written (or synced): its lines are not in the log.
    Write(WriteError),
    /// The writer has stopped (the server is shutting down).
    Closed(ClosedError),
}

#[derive(Debug)]
pub struct OpenError {
    pub target: AuditTarget,
    pub source: std::io::Error,
}

#[derive(Debug)]
pub struct SyncError {
    pub target: AuditTarget,
    pub source: std::io::Error,
}

#[derive(Debug)]
pub struct ThreadError {
    pub source: std::io::Error,
}

/// Shared by every line of the failed batch.
#[derive(Debug, Clone)]
pub struct WriteError {
    pub source: Arc<std::io::Error>,
    /// Whether the write succeeded and the `fdatasync` failed.
    pub sync: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClosedError;

impl std::fmt::Display for AuditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditError::Open(e) => write!(f, "cannot open the audit log {}: {}", e.target.describe(), e.source),
            AuditError::Sync(e) => write!(
                f,
                "the audit log {} cannot be synced ({}): --audit-fsync needs a file (--audit FILE)",
                e.target.describe(),
                e.source
            ),
            AuditError::Thread(e) => write!(f, "cannot start the audit writer: {}", e.source),
            AuditError::Write(e) if e.sync => write!(f, "cannot sync the audit log: {}", e.source),
            AuditError::Write(e) => write!(f, "cannot write the audit log: {}", e.source),
            AuditError::Closed(_) => write!(f, "the audit log is closed"),
        }
    }
}

impl std::error::Error for AuditError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AuditError::Open(e) => Some(&e.source),
            AuditError::Sync(e) => Some(&e.source),
            AuditError::Thread(e) => Some(&e.source),
            AuditError::Write(e) => Some(&*e.source),
            AuditError::Closed(_) => None,
        }
    }
}

/// What runs once a line is written (or failed to be): typically it sends the answer that
/// reports the line to its handler. It runs on the writer thread: it must be quick.
pub type OnWritten = Box<dyn FnOnce(Result<(), AuditError>) + Send>;

enum Msg {
    Line(String, OnWritten),
    Close(oneshot::Sender<()>),
}

/// The sending side, shared by every handler.
#[derive(Clone)]
pub struct AuditSink {
    how: Arc<How>,
}

enum How {
    /// Each line appended by the thread that made it.
    Direct(Mutex<Direct>),
    /// Lines queued for the writer thread (group commit).
    Queued(mpsc::Sender<Msg>),
}

/// The file of the direct way, with what the lock protects.
struct Direct {
    out: std::fs::File,
    /// The file ends in a partial line (see [`commit`]).
    torn: bool,
    /// [`AuditSink::close`] has run: lines fail as closed.
    closed: bool,
    stream: Option<AuditStream>,
    /// Lines gathered for the next write (each ending in a newline), all of [`Direct::batch`].
    pending: Vec<u8>,
    batch: Arc<Batch>,
}

/// A group of lines written with one `write`: its result, once written.
#[derive(Default)]
struct Batch {
    result: OnceLock<Result<(), WriteError>>,
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditSink")
    }
}

/// A completion that hands the result to an awaiting task.
fn notify(tx: oneshot::Sender<Result<(), AuditError>>) -> OnWritten {
    Box::new(move |r| {
        let _ = tx.send(r);
    })
}

fn closed() -> AuditError {
    AuditError::Closed(ClosedError)
}

impl AuditSink {
    /// Opens the target and starts the writer thread. With `fsync`, the target must accept it.
    /// With a `stream`, every batch written is also offered to it ([`crate::stream`]).
    pub fn start(options: &AuditOptions, stream: Option<AuditStream>) -> Result<AuditSink, AuditError> {
        let out = match &options.target {
            AuditTarget::Stdout => {
                // A descriptor of our own, so each batch is one `write` (no line buffering).
                use std::os::fd::AsFd;
                std::io::stdout()
                    .as_fd()
                    .try_clone_to_owned()
                    .map(std::fs::File::from)
                    .map_err(|source| AuditError::Open(OpenError { target: options.target.clone(), source }))?
            }
            AuditTarget::File(p) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|source| AuditError::Open(OpenError { target: options.target.clone(), source }))?,
        };
        if options.fsync {
            out.sync_data().map_err(|source| AuditError::Sync(SyncError { target: options.target.clone(), source }))?;
        }
        // A process killed while writing a batch may have left a partial last line: end it.
        let torn = match &options.target {
            AuditTarget::File(p) => ends_mid_line(p),
            AuditTarget::Stdout => false,
        };
        if !options.fsync {
            let direct = Direct {
                out,
                torn,
                closed: false,
                stream,
                pending: Vec::with_capacity(PENDING_KEPT),
                batch: Arc::default(),
            };
            return Ok(AuditSink { how: Arc::new(How::Direct(Mutex::new(direct))) });
        }
        let (tx, rx) = mpsc::channel(options.capacity.max(1));
        std::thread::Builder::new()
            .name("verdict-audit".into())
            .spawn(move || writer(rx, out, true, torn, stream))
            .map_err(|source| AuditError::Thread(ThreadError { source }))?;
        Ok(AuditSink { how: Arc::new(How::Queued(tx)) })
    }

    /// Writes a line (one JSON object, no newline; or several, each but the last ending in a
    /// newline) and returns once it is in the file.
    pub async fn write(&self, line: String) -> Result<(), AuditError> {
        let tx = match &*self.how {
            How::Direct(d) => {
                let batch = gather(d, line)?;
                // The other tasks ready on this worker (answers to other connections) gather
                // their lines meanwhile: the first one back writes them all.
                tokio::task::yield_now().await;
                return settle(d, &batch);
            }
            How::Queued(tx) => tx,
        };
        let (done, rx) = oneshot::channel();
        tx.send(Msg::Line(line, notify(done))).await.map_err(|_| closed())?;
        rx.await.unwrap_or_else(|_| Err(closed()))
    }

    /// Writes one event; `fields` are written after `time` and `event`.
    pub async fn emit(&self, event: &str, fields: Map<String, Value>) -> Result<(), AuditError> {
        self.write(line(event, fields)).await
    }

    /// Queues a line from a blocking thread (not an async task); `done` runs once it is written
    /// or failed. Waits for room in the queue when it is full.
    pub fn submit_blocking(&self, line: String, done: OnWritten) {
        let tx = match &*self.how {
            How::Direct(d) => return done(append(d, line)),
            How::Queued(tx) => tx,
        };
        // Most of the time there is room: no need for `blocking_send`'s parking machinery.
        let msg = match tx.try_send(Msg::Line(line, done)) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m)) => m,
        };
        if let Err(mpsc::error::SendError(Msg::Line(_, done))) = tx.blocking_send(msg) {
            done(Err(closed()));
        }
    }

    /// [`AuditSink::emit`] from a thread outside the async runtime (reloads run on blocking
    /// threads): returns once the line is written.
    pub fn emit_blocking(&self, event: &str, fields: Map<String, Value>) -> Result<(), AuditError> {
        if let How::Direct(d) = &*self.how {
            return append(d, line(event, fields));
        }
        let (tx, rx) = oneshot::channel();
        self.submit_blocking(line(event, fields), notify(tx));
        rx.blocking_recv().unwrap_or_else(|_| Err(closed()))
    }

    /// [`AuditSink::emit_blocking`] of an event about a change already made (a reload, a bundle
    /// from Redis): a line that cannot be written is logged, since there is no answer to withhold.
    pub(crate) fn emit_or_log(&self, event: &str, fields: Map<String, Value>) {
        if let Err(e) = self.emit_blocking(event, fields) {
            tracing::error!(event, error = %e, "an event is not in the audit log");
        }
    }

    /// Writes everything queued so far, then stops the writer; later lines fail as closed.
    pub async fn close(&self) {
        match &*self.how {
            How::Direct(d) => {
                let mut d = lock(d);
                flush(&mut d);
                d.closed = true;
            }
            How::Queued(tx) => {
                let (ack, done) = oneshot::channel();
                if tx.send(Msg::Close(ack)).await.is_ok() {
                    let _ = done.await;
                }
            }
        }
    }
}

fn lock(d: &Mutex<Direct>) -> std::sync::MutexGuard<'_, Direct> {
    // Nothing panics while the lock is held; were it poisoned anyway, the file and `torn` are
    // still as the last write left them.
    d.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The direct way from a thread that cannot wait for others: appends `text` (and what is
/// gathered) now.
fn append(d: &Mutex<Direct>, text: String) -> Result<(), AuditError> {
    let batch = gather(d, text)?;
    settle(d, &batch)
}

/// Adds a line to the next write; returns its batch.
fn gather(d: &Mutex<Direct>, text: String) -> Result<Arc<Batch>, AuditError> {
    let mut d = lock(d);
    if d.closed {
        return Err(closed());
    }
    d.pending.extend_from_slice(text.as_bytes());
    d.pending.push(b'\n');
    Ok(d.batch.clone())
}

/// The result of a batch: writes it (with whatever joined it) if nobody has yet.
fn settle(d: &Mutex<Direct>, batch: &Arc<Batch>) -> Result<(), AuditError> {
    if let Some(r) = batch.result.get() {
        return r.clone().map_err(AuditError::Write);
    }
    let mut d = lock(d);
    // INVARIANT: a batch without a result is the one gathering (batches are written and
    // replaced under the lock).
    if batch.result.get().is_none() {
        flush(&mut d);
    }
    drop(d);
    match batch.result.get() {
        Some(r) => r.clone().map_err(AuditError::Write),
        None => Err(closed()),
    }
}

/// How much of the gathering buffer is kept between writes.
const PENDING_KEPT: usize = 64 * 1024;

/// Writes the lines gathered (one `write`), gives their batch its result, offers them to the
/// stream, and starts the next batch.
fn flush(d: &mut Direct) {
    if d.pending.is_empty() {
        return;
    }
    let Direct { out, torn, stream, pending, batch, .. } = d;
    let result = commit(out, pending, false, torn);
    match &result {
        Err(e) => {
            let lines = pending.iter().filter(|b| **b == b'\n').count();
            tracing::error!(error = %e.source, lines, "cannot write the audit log; the requests are answered 503");
        }
        Ok(()) => {
            if let Some(s) = stream {
                // Under the lock, so the collector gets the lines in the file's order.
                s.offer(pending, pending.iter().filter(|b| **b == b'\n').count());
            }
        }
    }
    let _ = batch.result.set(result);
    *batch = Arc::default();
    pending.clear();
    pending.shrink_to(PENDING_KEPT);
}

/// The fields of an audit line, from `(name, value)` pairs.
pub(crate) fn fields<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// What the audit log (and the answers) say about a bundle put in the store: the fields every
/// registration and load line has.
#[derive(Debug, Clone)]
pub(crate) struct BundleSummary {
    pub id: String,
    pub version: String,
    pub fingerprint: String,
    /// `sha256:` of the bytes it was loaded from.
    pub digest: String,
    /// The trusted key that signed it, if any.
    pub signed_by: Option<String>,
    pub policies: usize,
    /// Where it came from, as the lines say it.
    pub origin: String,
}

impl BundleSummary {
    pub(crate) fn of(l: &crate::store::Loaded) -> BundleSummary {
        BundleSummary {
            id: l.id().to_owned(),
            version: l.version().to_owned(),
            fingerprint: l.engine.fingerprint().to_owned(),
            digest: l.digest.clone(),
            signed_by: l.signer.map(|k| k.to_string()),
            policies: l.engine.policy_count(),
            origin: l.origin.describe(),
        }
    }

    /// `bundle_id`, `bundle_version`, `fingerprint`, `bundle_digest`, `signed_by`,
    /// `policy_count` and `origin`.
    pub(crate) fn fields(&self) -> Map<String, Value> {
        fields([
            ("bundle_id", Value::from(self.id.as_str())),
            ("bundle_version", Value::from(self.version.as_str())),
            ("fingerprint", Value::from(self.fingerprint.as_str())),
            ("bundle_digest", Value::from(self.digest.as_str())),
            ("signed_by", self.signed_by.as_deref().map_or(Value::Null, Value::from)),
            ("policy_count", Value::from(self.policies)),
            ("origin", Value::from(self.origin.as_str())),
        ])
    }
}

/// One JSON line: `time`, `event`, then the fields.
pub fn line(event: &str, fields: Map<String, Value>) -> String {
    let mut m = Map::with_capacity(fields.len() + 2);
    m.insert("time".into(), Value::String(jiff::Timestamp::now().to_string()));
    m.insert("event".into(), Value::String(event.to_owned()));
    m.extend(fields);
    Value::Object(m).to_string()
}

/// The audit line of one evaluation (serialized straight from the result, without an
/// intermediate `Value`). Fields are written in this order.
#[derive(serde::Serialize)]
pub struct EvaluationLine<'a> {
    /// Written as RFC 3339 text, straight from the timestamp.
    #[serde(serialize_with = "display")]
    pub time: jiff::Timestamp,
    pub event: &'static str,
    pub correlation_id: &'a str,
    /// Every decision's id (stateful ones commit and release their holds by it).
    pub decision_id: &'a str,
    pub caller: &'static str,
    pub bundle_id: &'a str,
    pub bundle_version: &'a str,
    pub fingerprint: &'a str,
    /// `sha256:` of the bytes the bundle was loaded from (the fingerprint is the bundle's claim).
    pub bundle_digest: &'a str,
    pub decision: &'a str,
    pub matched_policy_id: Option<&'a str>,
    pub matched_rule_id: Option<&'a str>,
    pub reason: &'a str,
    pub codes: &'a [String],
    /// The obligations of the decision (`{}` when none).
    pub obligations: &'a Map<String, Value>,
    /// The holds a stateful decision made (absent when none).
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub holds: &'a [verdict_runtime::decision::Hold],
    /// The request context pruned to the paths the bundle reads ([`crate::inputs`]).
    pub input: crate::inputs::Pruned<'a>,
    /// The state reads a stateful decision made, with their values (absent when none): with
    /// `input` and `time`, all a replay needs.
    #[serde(skip_serializing_if = "<[_]>::is_empty", serialize_with = "state_reads")]
    pub state_reads: &'a [Read],
}

fn display<S: serde::Serializer>(t: &jiff::Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(t)
}

fn state_reads<S: serde::Serializer>(reads: &&[Read], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(reads.iter().map(StateRead))
}

/// One state read of a decision, as its audit line records it: `{"state", "key", "range",
/// "value"}`, the range as `{"kind": "period", "from", "until"}`, `{"kind": "sliding", "after",
/// "until"}` (microseconds since the Unix epoch) or `{"kind": "total"}`.
#[derive(Debug, Clone, Copy)]
pub struct StateRead<'a>(pub &'a Read);

impl serde::Serialize for StateRead<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let r = &self.0;
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("state", &r.state)?;
        m.serialize_entry("key", &r.key)?;
        m.serialize_entry("range", &range_json(r.range))?;
        m.serialize_entry("value", &r.value)?;
        m.end()
    }
}

fn range_json(r: Range) -> Value {
    match r {
        Range::Period { from, until } => serde_json::json!({"kind": "period", "from": from, "until": until}),
        Range::Sliding { after, until } => serde_json::json!({"kind": "sliding", "after": after, "until": until}),
        Range::Total => serde_json::json!({"kind": "total"}),
    }
}

impl StateRead<'_> {
    /// Reads a state read back from its audit form (`None` when it is not one).
    pub fn from_json(v: &Value) -> Option<Read> {
        let m = v.as_object()?;
        let state = m.get("state")?.as_str()?.to_owned();
        let key = m.get("key")?.as_array()?.clone();
        let value = match m.get("value")? {
            Value::Number(n) => n.clone(),
            _ => return None,
        };
        let r = m.get("range")?.as_object()?;
        let at = |k: &str| r.get(k).and_then(Value::as_i64);
        let range = match r.get("kind")?.as_str()? {
            "period" => Range::Period { from: at("from")?, until: at("until")? },
            "sliding" => Range::Sliding { after: at("after")?, until: at("until")? },
            "total" => Range::Total,
            _ => return None,
        };
        Some(Read { state, key, range, value })
    }
}

/// The `evaluation_inputs` line of a bundle version: the request paths its decisions read (what
/// their audit lines record of each request), written before its first evaluation line in the
/// process. `verdict replay` checks by it that a candidate reads nothing the lines leave out.
pub fn inputs_line(loaded: &crate::store::Loaded) -> String {
    let fields = [
        ("bundle_id", Value::from(loaded.id())),
        ("bundle_version", Value::from(loaded.version())),
        ("fingerprint", Value::from(loaded.engine.fingerprint())),
        ("bundle_digest", Value::from(loaded.digest.as_str())),
        ("paths", Value::from(loaded.inputs.texts().to_vec())),
        ("stateful", Value::from(loaded.engine.is_stateful())),
    ];
    line(INPUTS_EVENT, fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// The event name of [`inputs_line`].
pub const INPUTS_EVENT: &str = "evaluation_inputs";

/// Whether a file is not empty and does not end with a newline.
fn ends_mid_line(path: &std::path::Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else { return false };
    let mut last = [0u8; 1];
    f.seek(SeekFrom::End(-1)).is_ok() && f.read_exact(&mut last).is_ok() && last != *b"\n"
}

/// The writer thread: one batch at a time, each written with one `write` (and one
/// `fdatasync` with `fsync`), then completed. `torn`: the file ends in a partial line (a failed
/// write leaves one too), so the next batch starts on a new line.
fn writer(
    mut rx: mpsc::Receiver<Msg>,
    mut out: std::fs::File,
    fsync: bool,
    mut torn: bool,
    stream: Option<AuditStream>,
) {
    let mut batch: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut waiting: Vec<OnWritten> = Vec::with_capacity(256);
    loop {
        let Some(first) = rx.blocking_recv() else { return };
        let mut close = None;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Line(text, done) => {
                    batch.extend_from_slice(text.as_bytes());
                    batch.push(b'\n');
                    waiting.push(done);
                }
                Msg::Close(ack) => {
                    close = Some(ack);
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            let result = commit(&mut out, &batch, fsync, &mut torn);
            if let Err(e) = &result {
                tracing::error!(error = %e.source, lines = waiting.len(), "cannot write the audit log; the batch's requests are answered 503");
            }
            let written = result.is_ok();
            for done in waiting.drain(..) {
                done(result.clone().map_err(AuditError::Write));
            }
            // After the answers are released; only lines the file holds go to the collector.
            if let (true, Some(s)) = (written, &stream) {
                s.offer(&batch, batch.iter().filter(|b| **b == b'\n').count());
            }
            batch.clear();
        }
        if let Some(ack) = close {
            let _ = ack.send(());
            return;
        }
    }
}

/// Writes one batch (and syncs it with `fsync`).
fn commit(out: &mut std::fs::File, batch: &[u8], fsync: bool, torn: &mut bool) -> Result<(), WriteError> {
    if *torn {
        out.write_all(b"\n").map_err(|e| WriteError { source: Arc::new(e), sync: false })?;
        *torn = false;
    }
    if let Err(e) = out.write_all(batch) {
        *torn = true;
        return Err(WriteError { source: Arc::new(e), sync: false });
    }
    if fsync {
        out.sync_data().map_err(|e| WriteError { source: Arc::new(e), sync: true })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_reads_round_trip_through_their_audit_form() {
        let ranges =
            [Range::Period { from: -5, until: 86_400_000_000 }, Range::Sliding { after: 1, until: 2 }, Range::Total];
        for range in ranges {
            let read = Read {
                state: "spend".into(),
                key: vec![Value::from("a"), Value::from(2)],
                range,
                value: serde_json::Number::from_f64(2.5).unwrap_or_else(|| 0.into()),
            };
            let json = serde_json::to_value(StateRead(&read)).unwrap_or_default();
            assert_eq!(StateRead::from_json(&json), Some(read), "{json}");
        }
        assert_eq!(
            StateRead::from_json(&serde_json::json!({"state": "s", "key": [], "range": {"kind": "?"}, "value": 1})),
            None
        );
    }

    /// The lines of many tasks on a multi-threaded runtime (and of a thread outside it) are all
    /// in the file, whole, once their writes return; after `close`, lines fail as closed.
    #[test]
    fn direct_writes_gather_whole_lines_and_stop_at_close() {
        let path = std::env::temp_dir().join(format!("verdict-audit-direct-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let options = AuditOptions { target: AuditTarget::File(path.clone()), capacity: 16, fsync: false };
        let sink = AuditSink::start(&options, None);
        assert!(sink.is_ok(), "cannot open {}", path.display());
        let Ok(sink) = sink else { return };
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build();
        assert!(rt.is_ok(), "cannot start a runtime");
        let Ok(rt) = rt else { return };
        rt.block_on(async {
            let tasks: Vec<_> = (0..64)
                .map(|t| {
                    let sink = sink.clone();
                    tokio::spawn(async move {
                        for i in 0..50 {
                            let line = serde_json::json!({"task": t, "i": i}).to_string();
                            assert!(sink.write(line).await.is_ok());
                        }
                    })
                })
                .collect();
            let blocking = sink.clone();
            let outside = std::thread::spawn(move || {
                for i in 0..50 {
                    assert!(blocking.emit_blocking("outside", fields([("i", Value::from(i))])).is_ok());
                }
            });
            for t in tasks {
                assert!(t.await.is_ok());
            }
            assert!(outside.join().is_ok());
            sink.close().await;
            assert!(matches!(sink.write("{}".into()).await, Err(AuditError::Closed(_))));
        });
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        let lines: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        assert_eq!((lines.len(), text.lines().count()), (64 * 50 + 50, 64 * 50 + 50));
        assert!(text.ends_with('\n'));
    }
}
