//! A small pool of synchronous Redis connections with connect and command timeouts.
//!
//! The store interface is synchronous (the engine reads state during evaluation, on a blocking
//! thread), so the store uses the client's blocking connections: no async runtime is linked or
//! entered. A [`Lease`] holds one connection for one store operation and gives it back when it
//! drops, if it is still sound; at most `max_idle` connections are kept.
//!
//! A connection that failed is never reused, and a failure that looks like a lost server empties
//! the pool (its other connections are most likely dead too), so the first operation after Redis
//! comes back connects afresh: the store recovers by itself. A connection taken from the pool
//! that has not yet answered in this lease may be stale: an idempotent command that fails on it is
//! retried once on a new connection, and before a command that must not run twice (a script that
//! writes) it first answers a `PING`.

use crate::{OpenError, OptionError, UrlError};
use redis::{Client, Connection, ConnectionLike, ErrorKind, RedisError, RedisResult};
use std::sync::Mutex;
use std::time::Duration;
use verdict_runtime::state::StoreError;

pub(crate) struct Pool {
    client: Client,
    /// `host:port` (or the socket path), for messages; never the password.
    addr: String,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
    connect_timeout: Duration,
    io_timeout: Duration,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("addr", &self.addr).field("max_idle", &self.max_idle).finish_non_exhaustive()
    }
}

/// Whether a command may be sent again when its connection turns out to be dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotent {
    Yes,
    No,
}

impl Pool {
    /// A pool on the Redis at `url` (the one place the store and the bundle source open one):
    /// both timeouts must be positive. Nothing is connected yet.
    pub fn open(
        url: &str,
        max_idle: usize,
        connect_timeout: Duration,
        io_timeout: Duration,
    ) -> Result<Pool, OpenError> {
        let positive = |d: Duration, name| {
            if d.is_zero() { Err(OpenError::Option(OptionError { name, reason: "must be positive" })) } else { Ok(()) }
        };
        positive(connect_timeout, "connect_timeout")?;
        positive(io_timeout, "io_timeout")?;
        let client = Client::open(url).map_err(|e| OpenError::Url(UrlError { reason: e.to_string() }))?;
        let addr = client.get_connection_info().addr().to_string();
        Ok(Pool { client, addr, idle: Mutex::new(Vec::new()), max_idle, connect_timeout, io_timeout })
    }

    /// `host:port` (or the socket path); never the password.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// A new connection, outside the pool, with the pool's timeouts (the bundle source's
    /// subscription).
    pub fn connect(&self) -> Result<Connection, StoreError> {
        let c = self.client.get_connection_with_timeout(self.connect_timeout).map_err(|e| self.connect_error(&e))?;
        c.set_read_timeout(Some(self.io_timeout)).map_err(|e| self.failure(&e))?;
        c.set_write_timeout(Some(self.io_timeout)).map_err(|e| self.failure(&e))?;
        Ok(c)
    }

    pub fn lease(&self) -> Lease<'_> {
        Lease { pool: self, conn: None, proven: false }
    }

    /// A connection: an idle one (`true`: not proven alive yet) or a new one.
    fn checkout(&self) -> Result<(Connection, bool), StoreError> {
        if let Some(c) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok((c, true));
        }
        Ok((self.connect()?, false))
    }

    fn checkin(&self, c: Connection) {
        if !c.is_open() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.max_idle
        {
            idle.push(c);
        }
    }

    fn clear(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    fn connect_error(&self, e: &RedisError) -> StoreError {
        if e.is_timeout() {
            return StoreError::Unavailable(format!(
                "redis at {} did not accept a connection within {} ms",
                self.addr,
                self.connect_timeout.as_millis()
            ));
        }
        StoreError::Unavailable(format!("cannot connect to redis at {}: {}", self.addr, lower(e)))
    }

    /// A failed command, as the store and the bundle source report it.
    pub fn failure(&self, e: &RedisError) -> StoreError {
        if e.is_timeout() {
            return StoreError::Unavailable(format!(
                "redis at {} did not answer within {} ms",
                self.addr,
                self.io_timeout.as_millis()
            ));
        }
        StoreError::Unavailable(format!("redis at {} failed: {}", self.addr, lower(e)))
    }
}

/// An error's text as one lowercase-initial line.
fn lower(e: &RedisError) -> String {
    let text = e.to_string().replace('\n', " ");
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

/// An error the server answered (a script error, a refused command): the connection is sound.
fn answered(e: &RedisError) -> bool {
    matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension)
}

/// One connection for one store operation.
pub(crate) struct Lease<'a> {
    pool: &'a Pool,
    conn: Option<Connection>,
    /// The connection is new, or has answered since it was taken from the pool.
    proven: bool,
}

impl Lease<'_> {
    /// Runs `f` on the lease's connection (see the module's documentation for retries).
    pub fn run<T>(
        &mut self,
        idempotent: Idempotent,
        f: impl Fn(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, StoreError> {
        let mut last = None;
        for _ in 0..2 {
            let c = match self.conn.as_mut() {
                Some(c) => c,
                None => {
                    let (c, reused) = self.pool.checkout()?;
                    self.proven = !reused;
                    self.conn.insert(c)
                }
            };
            let result = if idempotent == Idempotent::No && !self.proven {
                redis::cmd("PING").query::<String>(c).and_then(|_| {
                    self.proven = true;
                    f(c)
                })
            } else {
                f(c)
            };
            let e = match result {
                Ok(v) => {
                    self.proven = true;
                    return Ok(v);
                }
                Err(e) => e,
            };
            if answered(&e) && c.is_open() {
                return Err(self.pool.failure(&e));
            }
            // INVARIANT: a connection that failed is never used again.
            let stale = !self.proven && !e.is_timeout();
            self.conn = None;
            self.pool.clear();
            if !stale {
                return Err(self.pool.failure(&e));
            }
            last = Some(e);
        }
        Err(match last {
            Some(e) => self.pool.failure(&e),
            None => StoreError::Unavailable(format!("redis at {} failed", self.pool.addr)),
        })
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            self.pool.checkin(c);
        }
    }
}
