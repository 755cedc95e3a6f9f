//! Connections: the accept loop and what bounds each connection, so that clients that never
//! send, never finish or never read cannot starve the service.
//!
//! - **Headers and idle time**: a request's headers must arrive within the header timeout, and a
//!   keep-alive connection idle that long is closed (hyper's header read timeout, which also runs
//!   before the first request).
//! - **Write time**: once a client stops reading, the response being written must be taken
//!   within the write timeout ([`WriteDeadline`]), or the connection is dropped.
//! - **How many**: at most `max` connections are served at once (by default a little below the
//!   open-file limit, so accepting never fails for lack of descriptors). A connection beyond the
//!   maximum goes to the *overflow lane*: up to `overflow` such connections, each for one request
//!   with a short header timeout, where `/healthz`, `/health` and `/metrics` are answered and
//!   everything else gets 503 with `Retry-After` (then the connection closes). When the lane is
//!   full, its oldest connection makes room for the new one, so a probe always gets a turn and the
//!   accept loop never stops draining the kernel's queue.
//!
//! Decisions run off the async workers (see `handlers::decide`), so the accept loop and the
//! health and metrics routes stay responsive whatever a bundle costs.

use crate::AppState;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Semaphore, oneshot};

/// Descriptors kept free for everything but client connections (the listener, the runtime's
/// own, the audit log, bundle files being read).
pub const FD_RESERVE: usize = 64;
/// The largest default connection limit, however high the open-file limit.
pub const MAX_DEFAULT_CONNECTIONS: usize = 16_384;
/// A connection's read buffer (headers, body chunks in flight) grows at most this far: with the
/// connection limit, it bounds the memory clients can make the service hold (hyper's default is
/// about 400 KiB).
pub const READ_BUFFER_LIMIT: usize = 64 * 1024;
/// The header timeout on the overflow lane (or the main header timeout if shorter).
pub const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// What bounds the connections of one server.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max: usize,
    pub overflow: usize,
    pub header_timeout: Duration,
    pub write_timeout: Duration,
}

/// The current (soft) limit on open files, if there is one.
fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// How many connections the open-file limit leaves room for: `(main, overflow)`. The process
/// keeps [`FD_RESERVE`] descriptors for itself (or half the limit, if it is that small); the
/// overflow lane takes at most a quarter of the rest, the main lane the remainder, at most
/// [`MAX_DEFAULT_CONNECTIONS`].
pub fn default_connection_limits(overflow: usize) -> (usize, usize) {
    let Some(limit) = open_file_limit() else { return (MAX_DEFAULT_CONNECTIONS, overflow) };
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let clients = if limit > 2 * FD_RESERVE { limit - FD_RESERVE } else { limit / 2 };
    let overflow = overflow.min(clients / 4);
    ((clients - overflow).clamp(1, MAX_DEFAULT_CONNECTIONS), overflow)
}

/// Raises the soft open-file limit to the hard one (at most 65,536), as Go's runtime does: the
/// soft default (often 1,024) was chosen for `select`, which the service does not use. Returns
/// the limit in force.
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let target = maximum.map_or(65_536, |m| m.min(65_536));
    match current {
        Some(soft) if soft < target => match setrlimit(Resource::Nofile, Rlimit { current: Some(target), maximum }) {
            Ok(()) => Some(target),
            Err(_) => Some(soft),
        },
        other => other,
    }
}

/// The error a write gets when its deadline passed (the connection is then dropped).
#[derive(Debug)]
pub struct WriteTimedOut;

impl std::fmt::Display for WriteTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the client did not take the response within the write timeout")
    }
}

impl std::error::Error for WriteTimedOut {}

/// A stream whose writes must complete in time: the deadline starts when the peer first stops
/// taking bytes (a write is pending) and ends when the writer's buffer is flushed (hyper flushes
/// after each response), so each response must be taken within `limit` of the first stall.
/// Reads pass through (hyper's header timeout and the handlers' body timeout bound them).
pub(crate) struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    pub fn new(inner: S, limit: Duration) -> WriteDeadline<S> {
        WriteDeadline { inner, limit, stalled: None }
    }

    /// The inner write is pending: starts the deadline if it is not running, and fails once it
    /// has passed.
    fn stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let limit = self.limit;
        let deadline = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, WriteTimedOut)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => this.stall(cx).map(Err),
            ready => ready,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.stall(cx).map(Err),
            ready => ready,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                this.stalled = None;
                Poll::Ready(Ok(()))
            }
            Poll::Pending => this.stall(cx).map(Err),
            failed => failed,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Pending => this.stall(cx).map(Err),
            ready => ready,
        }
    }
}

/// Whether a connection ended because its write deadline passed.
fn write_timed_out(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.downcast_ref::<io::Error>().and_then(|io| io.get_ref()).is_some_and(|inner| inner.is::<WriteTimedOut>()) {
            return true;
        }
        source = s.source();
    }
    false
}

/// The overflow lane's connections, oldest first, each with the sender that evicts it.
#[derive(Default)]
struct Lane {
    next: u64,
    open: VecDeque<(u64, oneshot::Sender<()>)>,
}

/// Accepts connections and serves HTTP/1.1 on each (TCP_NODELAY, the limits above) until
/// `stop`; then waits for the connections to finish their requests (graceful shutdown).
pub(crate) async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    overflow_app: axum::Router,
    mut stop: oneshot::Receiver<()>,
    limits: Limits,
    state: Arc<AppState>,
) -> io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).max_buf_size(READ_BUFFER_LIMIT);
    let mut lane_http = hyper::server::conn::http1::Builder::new();
    lane_http
        .timer(TokioTimer::new())
        .max_buf_size(READ_BUFFER_LIMIT)
        .header_read_timeout(limits.header_timeout.min(OVERFLOW_HEADER_TIMEOUT))
        .keep_alive(false);
    let slots = Arc::new(Semaphore::new(limits.max));
    let lane = Arc::new(Mutex::new(Lane::default()));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let io = TokioIo::new(WriteDeadline::new(stream, limits.write_timeout));
                    let st = state.clone();
                    if let Ok(permit) = slots.clone().try_acquire_owned() {
                        let service = hyper_util::service::TowerToHyperService::new(app.clone());
                        let conn = graceful.watch(http.serve_connection(io, service));
                        tokio::spawn(async move {
                            let _open = st.metrics.connection_opened();
                            if let Err(e) = conn.await {
                                ended_with(&st, &e);
                            }
                            drop(permit);
                        });
                    } else {
                        st.metrics.connection_over_limit();
                        let Some((id, evicted)) = admit(&lane, limits.overflow) else { continue };
                        let service = hyper_util::service::TowerToHyperService::new(overflow_app.clone());
                        let conn = graceful.watch(lane_http.serve_connection(io, service));
                        let lane = lane.clone();
                        tokio::spawn(async move {
                            tokio::select! {
                                ended = conn => if let Err(e) = ended { ended_with(&st, &e) },
                                _ = evicted => {}
                            }
                            leave(&lane, id);
                        });
                    }
                }
                Err(e) => {
                    // Out of descriptors despite the limits (another part of the process, or a
                    // limit set below the reserve): back off instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = &mut stop => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

fn ended_with(st: &AppState, e: &hyper::Error) {
    if write_timed_out(e) {
        st.metrics.write_timed_out();
        tracing::debug!("connection dropped: the client did not read its response in time");
    } else {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

fn lock(lane: &Mutex<Lane>) -> std::sync::MutexGuard<'_, Lane> {
    // Each critical section is one push or removal: a poisoned lock is still consistent.
    lane.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Takes a place on the overflow lane (evicting the oldest connection when it is full); `None`
/// when the lane has no places at all.
fn admit(lane: &Mutex<Lane>, places: usize) -> Option<(u64, oneshot::Receiver<()>)> {
    if places == 0 {
        return None;
    }
    let mut lane = lock(lane);
    while lane.open.len() >= places {
        if let Some((_, evict)) = lane.open.pop_front() {
            let _ = evict.send(());
        }
    }
    let id = lane.next;
    lane.next += 1;
    let (tx, rx) = oneshot::channel();
    lane.open.push_back((id, tx));
    Some((id, rx))
}

fn leave(lane: &Mutex<Lane>, id: u64) {
    lock(lane).open.retain(|(i, _)| *i != id);
}
