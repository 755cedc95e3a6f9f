//! The audit log: one JSON line per evaluation, registration, condition assertion and reload
//! event, written by one writer thread.
//!
//! Request handlers hand finished lines to a bounded channel; when it is full they wait (async,
//! without blocking a runtime thread) rather than drop a line, so the log is complete. The
//! writer batches whatever is queued and flushes when the queue is momentarily empty. Closing
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

fn writer(mut rx: mpsc::Receiver<Msg>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let mut failed = false;
    let mut write = |out: &mut std::io::BufWriter<Box<dyn Write + Send>>, line: &str| {
        if let Err(e) = out.write_all(line.as_bytes()).and_then(|()| out.write_all(b"\n")) {
            if !failed {
                tracing::error!(error = %e, "cannot write the audit log");
            }
            failed = true;
        }
    };
    while let Some(msg) = rx.blocking_recv() {
        let mut next = Some(msg);
        // Write everything queued, then flush once.
        while let Some(m) = next.take() {
            match m {
                Msg::Line(l) => write(&mut out, &l),
                Msg::Close(ack) => {
                    let _ = out.flush();
                    let _ = ack.send(());
                    return;
                }
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = out.flush() {
            tracing::error!(error = %e, "cannot flush the audit log");
        }
    }
    let _ = out.flush();
}
