//! The audit stream (`verdict serve --audit-url URL`, or the reference's `AUDIT_STREAM_URL`):
//! the audit lines also POSTed, in batches, to an HTTP collector — best effort. The audit file
//! stays the durable log; the stream never delays a decision.
//!
//! - The audit log ([`crate::audit`]) offers each batch it has written to the file
//!   ([`AuditStream::offer`], which never waits): only lines that are in the file are sent.
//! - The queue is bounded in lines ([`StreamOptions::queue`], lines being sent included): a
//!   batch that does not fit is dropped and counted (`reason="queue_full"`), so a slow or
//!   unreachable collector costs memory up to the bound and nothing else.
//! - One thread sends: it takes what is queued (up to [`MAX_POST`] bytes), POSTs it as
//!   `application/x-ndjson` (the lines as in the file, each ending in a newline) over one
//!   keep-alive HTTP/1.1 connection, within [`StreamOptions::timeout`] from connecting to the
//!   end of the answer. A failure (no connection, a timeout, a status other than 2xx) drops the
//!   batch, counted (`reason="send_failed"`); there is no retry (a retried batch the collector
//!   did receive would be stored twice). After a failure the thread waits before the next
//!   attempt (100 ms, doubling up to 5 s), so an unreachable collector is not hammered.
//! - Drops and failures are logged at most every [`LOG_EVERY`], with the counts since the last
//!   message; `/metrics` has the totals.
//! - [`AuditStream::close`] (graceful shutdown) sends what is queued, within a deadline.
//!
//! Only `http://` URLs: the stream carries no TLS stack; put a local forwarder (a sidecar
//! collector) in front of a remote HTTPS endpoint.

use axum::body::Bytes;
use axum::http::{Request, Uri, header};
use http_body_util::{BodyExt, Full};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// A POST carries at most this many bytes of lines (a larger file batch goes alone).
pub const MAX_POST: usize = 1024 * 1024;
/// Drops and failures are logged at most this often.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// The longest wait between attempts while the collector fails.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// At most this much of a collector's answer is read (the rest closes the connection).
const MAX_ANSWER: usize = 64 * 1024;

/// Where and how the audit stream sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamOptions {
    /// The collector's URL (`http://host[:port][/path]`).
    pub url: String,
    /// Lines queued or being sent, at most; a batch beyond it is dropped.
    pub queue: usize,
    /// Time for one POST, from connecting to the end of the answer.
    pub timeout: Duration,
}

impl StreamOptions {
    /// The defaults for a collector URL: 10,000 lines queued, 2.5 s per POST (the reference's
    /// `AUDIT_STREAM_TIMEOUT_S` default).
    pub fn new(url: impl Into<String>) -> StreamOptions {
        StreamOptions { url: url.into(), queue: 10_000, timeout: Duration::from_millis(2500) }
    }
}

/// Why the audit stream cannot start.
#[derive(Debug)]
pub enum StreamError {
    /// The URL is not an `http://` URL with a host.
    Url(UrlError),
    /// The sending thread cannot be started.
    Thread(std::io::Error),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError {
    pub url: String,
    pub problem: &'static str,
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamError::Url(e) => write!(f, "invalid audit stream URL `{}`: {}", e.url, e.problem),
            StreamError::Thread(e) => write!(f, "cannot start the audit stream thread: {e}"),
        }
    }
}

impl std::error::Error for StreamError {}

/// The collector's address, from its URL.
#[derive(Debug, Clone)]
struct Endpoint {
    host: String,
    port: u16,
    /// `Host` header value.
    authority: String,
    /// Path and query.
    target: String,
}

fn endpoint(url: &str) -> Result<Endpoint, StreamError> {
    let bad = |problem| StreamError::Url(UrlError { url: url.to_owned(), problem });
    let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(bad("only http:// is supported (no TLS): send to a local forwarder that speaks HTTPS"));
        }
        _ => return Err(bad("the URL must start with http://")),
    }
    let authority = uri.authority().ok_or_else(|| bad("the URL has no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("credentials in the URL are not supported"));
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
    if host.is_empty() {
        return Err(bad("the URL has no host"));
    }
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    Ok(Endpoint {
        host,
        port: authority.port_u16().unwrap_or(80),
        authority: authority.as_str().to_owned(),
        target: if target.is_empty() { "/".to_owned() } else { target.to_owned() },
    })
}

enum Msg {
    /// Lines as in the file (each ending in a newline), and how many.
    Batch(Bytes, usize),
    Close(oneshot::Sender<()>),
}

/// The counters of the stream, shared by the writer, the sending thread and `/metrics`.
#[derive(Debug, Default)]
struct Counters {
    /// Lines queued or being sent.
    queued: AtomicUsize,
    sent: AtomicU64,
    dropped_full: AtomicU64,
    dropped_failed: AtomicU64,
    posts_failed: AtomicU64,
    /// Drops not logged yet, and when the last message went out.
    unlogged: Mutex<(u64, u64, Option<Instant>)>,
}

/// The handle of the audit stream (cheap to clone).
#[derive(Clone)]
pub struct AuditStream {
    tx: mpsc::UnboundedSender<Msg>,
    counters: Arc<Counters>,
    capacity: usize,
    url: Arc<str>,
}

impl std::fmt::Debug for AuditStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditStream").field("url", &self.url).finish_non_exhaustive()
    }
}

impl AuditStream {
    /// Checks the URL and starts the sending thread (nothing is sent until lines come).
    pub fn start(options: &StreamOptions) -> Result<AuditStream, StreamError> {
        let endpoint = endpoint(&options.url)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let sender = Sender { endpoint, timeout: options.timeout, counters: counters.clone(), conn: None };
        std::thread::Builder::new()
            .name("verdict-audit-stream".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
                match runtime {
                    Ok(rt) => rt.block_on(sender.run(rx)),
                    Err(e) => tracing::error!(error = %e, "the audit stream cannot start its runtime; nothing is sent"),
                }
            })
            .map_err(StreamError::Thread)?;
        Ok(AuditStream { tx, counters, capacity: options.queue.max(1), url: options.url.as_str().into() })
    }

    /// Queues lines the audit file now holds (`lines` of them, each ending in a newline); never
    /// waits: beyond the queue's bound they are dropped, counted and logged.
    pub fn offer(&self, batch: &[u8], lines: usize) {
        let fits = self
            .counters
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| q.checked_add(lines).filter(|n| *n <= self.capacity))
            .is_ok();
        if !fits {
            self.counters.dropped_full.fetch_add(lines as u64, Ordering::Relaxed);
            self.counters.note_drop(lines as u64, 0);
            return;
        }
        if self.tx.send(Msg::Batch(Bytes::copy_from_slice(batch), lines)).is_err() {
            self.counters.queued.fetch_sub(lines, Ordering::AcqRel);
            self.counters.dropped_failed.fetch_add(lines as u64, Ordering::Relaxed);
        }
    }

    /// Sends what is queued, waiting at most `within`, then stops the sending thread.
    pub async fn close(&self, within: Duration) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Close(ack)).is_ok() && tokio::time::timeout(within, done).await.is_err() {
            let left = self.counters.queued.load(Ordering::Acquire);
            tracing::warn!(lines = left, "the audit stream did not send everything before shutdown");
        }
    }

    /// The stream's lines of `/metrics`.
    pub fn metrics_text(&self) -> String {
        use crate::metrics::{header, metric};
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        metric(
            &mut out,
            "verdict_audit_stream_lines_sent_total",
            "counter",
            "Audit lines the collector accepted (--audit-url).",
            load(&c.sent),
        );
        let dropped = "verdict_audit_stream_lines_dropped_total";
        header(
            &mut out,
            dropped,
            "counter",
            "Audit lines not sent to the collector (they are in the audit file): the queue was full, or the POST failed.",
        );
        out.push_str(&format!(
            "{dropped}{{reason=\"queue_full\"}} {}\n{dropped}{{reason=\"send_failed\"}} {}\n",
            load(&c.dropped_full),
            load(&c.dropped_failed)
        ));
        metric(
            &mut out,
            "verdict_audit_stream_post_failures_total",
            "counter",
            "POSTs to the collector that failed (no connection, timeout, or a status other than 2xx).",
            load(&c.posts_failed),
        );
        metric(
            &mut out,
            "verdict_audit_stream_queued_lines",
            "gauge",
            "Audit lines queued or being sent to the collector.",
            c.queued.load(Ordering::Relaxed),
        );
        out
    }
}

impl Counters {
    /// Counts dropped lines for the log, and logs them when the last message is old enough.
    fn note_drop(&self, full: u64, failed: u64) {
        let Ok(mut u) = self.unlogged.lock() else { return };
        u.0 += full;
        u.1 += failed;
        let due = u.2.is_none_or(|at| at.elapsed() >= LOG_EVERY);
        if due {
            tracing::warn!(
                queue_full = u.0,
                send_failed = u.1,
                "audit lines not sent to the collector (they are in the audit file); counted in /metrics"
            );
            *u = (0, 0, Some(Instant::now()));
        }
    }
}

type Connection = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// The sending thread's state.
struct Sender {
    endpoint: Endpoint,
    timeout: Duration,
    counters: Arc<Counters>,
    conn: Option<Connection>,
}

/// Why a POST failed.
#[derive(Debug)]
enum PostError {
    Connect(std::io::Error),
    Http(hyper::Error),
    Status(u16),
    Timeout,
    Request,
}

impl std::fmt::Display for PostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PostError::Connect(e) => write!(f, "cannot connect: {e}"),
            PostError::Http(e) => write!(f, "{e}"),
            PostError::Status(s) => write!(f, "the collector answered {s}"),
            PostError::Timeout => f.write_str("no answer in time"),
            PostError::Request => f.write_str("cannot build the request"),
        }
    }
}

impl Sender {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let mut backoff = Duration::ZERO;
        let mut failing = false;
        let mut closing = None;
        let mut pending: Option<(Bytes, usize)> = None;
        loop {
            let (first, first_lines) = match pending.take() {
                Some(b) => b,
                None => match rx.recv().await {
                    None => return,
                    Some(Msg::Close(ack)) => {
                        let _ = ack.send(());
                        return;
                    }
                    Some(Msg::Batch(b, n)) => (b, n),
                },
            };
            // Everything queued behind the first batch, up to the size of one POST.
            let mut body = first.to_vec();
            let mut lines = first_lines;
            while body.len() < MAX_POST {
                match rx.try_recv() {
                    Ok(Msg::Batch(b, n)) if body.len() + b.len() <= MAX_POST => {
                        body.extend_from_slice(&b);
                        lines += n;
                    }
                    Ok(Msg::Batch(b, n)) => {
                        pending = Some((b, n));
                        break;
                    }
                    Ok(Msg::Close(ack)) => {
                        closing = Some(ack);
                        break;
                    }
                    Err(_) => break,
                }
            }
            let result = tokio::time::timeout(self.timeout, self.post(body)).await.unwrap_or(Err(PostError::Timeout));
            self.counters.queued.fetch_sub(lines, Ordering::AcqRel);
            match result {
                Ok(()) => {
                    self.counters.sent.fetch_add(lines as u64, Ordering::Relaxed);
                    if failing {
                        tracing::info!("the audit collector accepts lines again");
                        failing = false;
                    }
                    backoff = Duration::ZERO;
                }
                Err(e) => {
                    self.conn = None;
                    self.counters.dropped_failed.fetch_add(lines as u64, Ordering::Relaxed);
                    self.counters.posts_failed.fetch_add(1, Ordering::Relaxed);
                    if !failing {
                        tracing::warn!(error = %e, "cannot send audit lines to the collector");
                        failing = true;
                    }
                    self.counters.note_drop(0, lines as u64);
                    backoff = (backoff * 2).clamp(Duration::from_millis(100), MAX_BACKOFF);
                }
            }
            if let Some(ack) = closing.take() {
                self.drain(rx).await;
                let _ = ack.send(());
                return;
            }
            if !backoff.is_zero() {
                tokio::time::sleep(backoff).await;
            }
        }
    }

    /// On close: sends everything still queued (one attempt each, no backoff).
    async fn drain(&mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        while let Ok(msg) = rx.try_recv() {
            let Msg::Batch(b, lines) = msg else { continue };
            let result =
                tokio::time::timeout(self.timeout, self.post(b.to_vec())).await.unwrap_or(Err(PostError::Timeout));
            self.counters.queued.fetch_sub(lines, Ordering::AcqRel);
            if result.is_ok() {
                self.counters.sent.fetch_add(lines as u64, Ordering::Relaxed);
            } else {
                self.conn = None;
                self.counters.dropped_failed.fetch_add(lines as u64, Ordering::Relaxed);
                self.counters.posts_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A connection ready for a request: the kept one, or a new one.
    async fn connection(&mut self) -> Result<&mut Connection, PostError> {
        let reusable = match &mut self.conn {
            Some(c) => c.ready().await.is_ok(),
            None => false,
        };
        if !reusable {
            self.conn = None;
            let stream = tokio::net::TcpStream::connect((self.endpoint.host.as_str(), self.endpoint.port))
                .await
                .map_err(PostError::Connect)?;
            let _ = stream.set_nodelay(true);
            let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(PostError::Http)?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.conn = Some(send);
        }
        self.conn.as_mut().ok_or(PostError::Request)
    }

    async fn post(&mut self, body: Vec<u8>) -> Result<(), PostError> {
        let req = Request::post(self.endpoint.target.as_str())
            .header(header::HOST, self.endpoint.authority.as_str())
            .header(header::CONTENT_TYPE, "application/x-ndjson")
            .header(header::USER_AGENT, concat!("verdict/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| PostError::Request)?;
        let conn = self.connection().await?;
        let resp = conn.send_request(req).await.map_err(PostError::Http)?;
        let status = resp.status();
        // Read (and drop) the answer so the connection can be reused; a long one closes it.
        let mut body = resp.into_body();
        let mut read = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(PostError::Http)?;
            read += frame.data_ref().map_or(0, Bytes::len);
            if read > MAX_ANSWER {
                self.conn = None;
                break;
            }
        }
        if status.is_success() { Ok(()) } else { Err(PostError::Status(status.as_u16())) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let e = endpoint("http://127.0.0.1:9000/ingest?x=1");
        assert!(
            matches!(&e, Ok(Endpoint { host, port: 9000, authority, target })
                if host == "127.0.0.1" && authority == "127.0.0.1:9000" && target == "/ingest?x=1"),
            "{e:?}"
        );
        let e = endpoint("http://collector");
        assert!(matches!(&e, Ok(Endpoint { port: 80, target, .. }) if target == "/"), "{e:?}");
        for bad in ["https://c/x", "c:9000", "ftp://c", "http://u:p@c/", "not a url"] {
            assert!(endpoint(bad).is_err(), "{bad}");
        }
    }
}
