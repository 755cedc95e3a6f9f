//! The audit log: one JSON line per evaluation, registration, condition assertion and reload
//! event, written by one writer thread.
//!
//! Request handlers hand finished lines to a bounded channel; when it is full they wait (async,
//! without blocking a runtime thread) rather than drop a line, so the log is complete. The
//! writer batches whatever is queued and flushes once per batch; under load it polls the queue
//! every millisecond instead of being woken per line. Closing
//! ([`AuditSink::close`]) is a message in the same queue: every line sent before it is written
//! and flushed before `close` returns, which graceful shutdown relies on.

use serde_json::{Map, Value};
use std::io::Write;
use std::path::PathBuf;
use tokio::sync::{mpsc, oneshot};

/// Where audit lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    Stdout,
    /// Appended to this file (created if missing).
    File(PathBuf),
}

enum Msg {
    Line(String),
    Close(oneshot::Sender<()>),
}

/// The sending side, shared by every handler.
#[derive(Debug, Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Line(l) => write!(f, "Line({l})"),
            Msg::Close(_) => f.write_str("Close"),
        }
    }
}

impl AuditSink {
    /// Opens the target and starts the writer thread.
    pub fn start(target: &AuditTarget, capacity: usize) -> Result<AuditSink, String> {
        let out: Box<dyn Write + Send> = match target {
            AuditTarget::Stdout => Box::new(std::io::stdout()),
            AuditTarget::File(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| format!("cannot open the audit log {}: {e}", p.display()))?,
            ),
        };
        let (tx, rx) = mpsc::channel(capacity.max(1));
        std::thread::Builder::new()
            .name("verdict-audit".into())
            .spawn(move || writer(rx, out))
            .map_err(|e| format!("cannot start the audit writer: {e}"))?;
        Ok(AuditSink { tx })
    }

    /// Queues one event; `fields` are written after `time` and `event`.
    pub async fn emit(&self, event: &str, fields: Map<String, Value>) {
        if self.tx.send(Msg::Line(line(event, fields))).await.is_err() {
            tracing::error!(event, "audit log is closed; event not written");
        }
    }

    /// Queues a line already serialized (one JSON object starting with `time` and `event`, no
    /// newline): the evaluation path builds its line without an intermediate `Value`.
    pub async fn emit_line(&self, line: String) {
        if self.tx.send(Msg::Line(line)).await.is_err() {
            tracing::error!("audit log is closed; event not written");
        }
    }

    /// [`AuditSink::emit`] from a thread outside the async runtime (reloads run on blocking
    /// threads).
    pub fn emit_blocking(&self, event: &str, fields: Map<String, Value>) {
        if self.tx.blocking_send(Msg::Line(line(event, fields))).is_err() {
            tracing::error!(event, "audit log is closed; event not written");
        }
    }

    /// Writes and flushes everything queued so far, then stops the writer.
    pub async fn close(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Close(ack)).await.is_ok() {
            let _ = done.await;
        }
    }
}

/// One JSON line: `time`, `event`, then the fields.
fn line(event: &str, fields: Map<String, Value>) -> String {
    let mut m = Map::with_capacity(fields.len() + 2);
    m.insert("time".into(), Value::String(jiff::Timestamp::now().to_string()));
    m.insert("event".into(), Value::String(event.to_owned()));
    m.extend(fields);
    Value::Object(m).to_string()
}

/// The writer drains the queue every millisecond while lines keep coming, so busy handlers
/// never pay for waking it; after [`IDLE_ROUNDS`] empty rounds it blocks until the next line.
const IDLE_ROUNDS: u32 = 50;

fn writer(mut rx: mpsc::Receiver<Msg>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let mut failed = false;
    let mut idle = 0u32;
    loop {
        let mut wrote = false;
        loop {
            let msg = match rx.try_recv() {
                Ok(m) => m,
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    let _ = out.flush();
                    return;
                }
            };
            match msg {
                Msg::Line(l) => {
                    if let Err(e) = out.write_all(l.as_bytes()).and_then(|()| out.write_all(b"\n")) {
                        if !failed {
                            tracing::error!(error = %e, "cannot write the audit log");
                        }
                        failed = true;
                    }
                    wrote = true;
                }
                Msg::Close(ack) => {
                    let _ = out.flush();
                    let _ = ack.send(());
                    return;
                }
            }
        }
        if wrote {
            if let Err(e) = out.flush() {
                tracing::error!(error = %e, "cannot flush the audit log");
            }
            idle = 0;
        } else {
            idle += 1;
        }
        if idle < IDLE_ROUNDS {
            std::thread::sleep(std::time::Duration::from_millis(1));
            continue;
        }
        // Quiet: block until the next message, then go back to draining.
        match rx.blocking_recv() {
            Some(Msg::Line(l)) => {
                let _ = out.write_all(l.as_bytes()).and_then(|()| out.write_all(b"\n"));
                let _ = out.flush();
                idle = 0;
            }
            Some(Msg::Close(ack)) => {
                let _ = out.flush();
                let _ = ack.send(());
                return;
            }
            None => return,
        }
    }
}
