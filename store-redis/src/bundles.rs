//! Bundles shared through Redis (TOOLCHAIN.md, `verdict push` and `verdict serve --bundles-from`):
//! immutable revisions, one active pointer per bundle moved by compare-and-swap, a pub/sub
//! channel that announces every move, and one status key per replica.
//!
//! Key layout under the prefix (`verdict:` by default; `<tag>` is the bundle id's hash tag, as
//! for state series: 128 bits of its SHA-256 in hex, so a bundle's keys share a cluster slot):
//! - `<prefix>bundles` — a set of the bundle ids ever pushed (what a full check walks).
//! - `<prefix>b:{<tag>}:m` — a hash: `id` the bundle id, `rev` its active revision, `n` how many
//!   times the pointer moved.
//! - `<prefix>b:{<tag>}:r:<revision>` — a revision's bytes (an artifact, or a source text). A
//!   revision is named by the digest of its bytes (`sha256:<hex>`, what the service reports as
//!   `bundle_digest`), so it is immutable: a push of the same bytes names the same revision.
//! - `<prefix>replica:<replica id>` — a replica's status (JSON written by the replica, with an
//!   expiry so a replica that stopped disappears).
//! - channel `<prefix>bundles:changed` — one message per moved pointer:
//!   `{"bundle_id": …, "revision": …}`.
//!
//! A push (`push.lua`) writes the revision if it is new, then moves the pointer only if the
//! active revision is the one expected, and publishes, in one script. Messages are hints:
//! a watcher re-reads the pointer (messages sent while it was disconnected are lost, so it also
//! polls and checks everything after each reconnection, see [`BundleSource::watch`]).
//!
//! Everything here is synchronous (blocking sockets with timeouts), like the state store.

use crate::OpenError;
use crate::pool::{Idempotent, Pool};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use verdict_runtime::state::StoreError;

/// How a [`BundleSource`] names its keys and waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleOptions {
    /// Prepended to every key and to the channel (`verdict:` by default).
    pub prefix: String,
    pub connect_timeout: Duration,
    /// How long one command may take to be sent and answered.
    pub io_timeout: Duration,
    pub max_idle: usize,
    /// The largest revision pushed or read (16 MiB, the compiler's limit on source texts).
    pub max_bytes: usize,
}

impl Default for BundleOptions {
    fn default() -> BundleOptions {
        BundleOptions {
            prefix: "verdict:".into(),
            connect_timeout: Duration::from_millis(500),
            io_timeout: Duration::from_millis(1000),
            max_idle: 4,
            max_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Which revision a push expects to be active when it moves the pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Whatever is active: the push always moves the pointer (last writer wins).
    Any,
    /// No revision yet: the bundle's first push.
    Nothing,
    /// This revision.
    Revision(String),
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Any => f.write_str("any revision"),
            Expect::Nothing => f.write_str("no revision"),
            Expect::Revision(r) => write!(f, "`{r}`"),
        }
    }
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushStatus {
    /// The pointer moved to the revision (and the move was announced).
    Activated,
    /// The revision was already active: nothing changed.
    Unchanged,
}

impl PushStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PushStatus::Activated => "activated",
            PushStatus::Unchanged => "unchanged",
        }
    }
}

/// The outcome of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub bundle_id: String,
    pub revision: String,
    /// The revision active before the push.
    pub previous: Option<String>,
    pub status: PushStatus,
    /// How many subscribers (watching replicas) received the announcement: 0 unless activated.
    /// Replicas not subscribed at that moment catch up by their poll or by the full check they
    /// make when they subscribe again.
    pub notified: u64,
}

/// Why a bundle operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// Redis unreachable, slow or failing (the message names the server, never a password).
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Conflict(Conflict),
    #[error(transparent)]
    TooLarge(TooLarge),
}

/// A push whose expectation did not hold: another revision is active. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bundle `{bundle_id}`: the active revision is {}, not {expected}", active.as_deref().map_or_else(|| "none".to_owned(), |r| format!("`{r}`")))]
pub struct Conflict {
    pub bundle_id: String,
    pub expected: Expect,
    pub active: Option<String>,
}

/// A revision larger than [`BundleOptions::max_bytes`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bundle `{bundle_id}`: the revision has {bytes} bytes, more than the limit of {limit}")]
pub struct TooLarge {
    pub bundle_id: String,
    pub bytes: usize,
    pub limit: usize,
}

fn unavailable(e: StoreError) -> SourceError {
    match e {
        StoreError::Unavailable(m) => SourceError::Unavailable(m),
        other => SourceError::Unavailable(other.to_string()),
    }
}

/// What a watch reports (see [`BundleSource::watch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Subscribed, at the start and after every reconnection: check every bundle (what was
    /// announced while disconnected was lost).
    Subscribed,
    /// A push moved this bundle's pointer: check it.
    Changed(String),
    /// The poll interval passed (or a message could not be read): check every bundle.
    Poll,
    /// The subscription is lost or could not be made; the watch tries again after a pause.
    Lost(SourceError),
}

/// Bundle revisions, active pointers and replica status in Redis (see the module's documentation).
#[derive(Debug)]
pub struct BundleSource {
    pool: Pool,
    options: BundleOptions,
    push: redis::Script,
}

/// The revision name of bytes: what the service reports as their digest.
pub fn revision_of(bytes: &[u8]) -> String {
    verdict_runtime::signature::digest(bytes)
}

impl BundleSource {
    /// A source on the Redis at `url` (as [`crate::RedisStore::open`]). Nothing is connected yet.
    pub fn open(url: &str, options: BundleOptions) -> Result<BundleSource, OpenError> {
        let pool = Pool::open(url, options.max_idle, options.connect_timeout, options.io_timeout)?;
        Ok(BundleSource { pool, options, push: redis::Script::new(include_str!("push.lua")) })
    }

    /// `host:port` of the server (never the password).
    pub fn addr(&self) -> &str {
        self.pool.addr()
    }

    pub fn options(&self) -> &BundleOptions {
        &self.options
    }

    fn ids_key(&self) -> String {
        format!("{}bundles", self.options.prefix)
    }

    fn base(&self, bundle_id: &str) -> String {
        format!("{}b:{{{}}}:", self.options.prefix, crate::keys::tag(bundle_id))
    }

    fn meta_key(&self, bundle_id: &str) -> String {
        format!("{}m", self.base(bundle_id))
    }

    fn revision_key(&self, bundle_id: &str, revision: &str) -> String {
        format!("{}r:{revision}", self.base(bundle_id))
    }

    /// The pub/sub channel that announces moved pointers.
    pub fn channel(&self) -> String {
        format!("{}bundles:changed", self.options.prefix)
    }

    /// The status key of a replica.
    pub fn status_key(&self, replica: &str) -> String {
        format!("{}replica:{replica}", self.options.prefix)
    }

    /// Writes `bytes` as a revision of `bundle_id` (named by their digest) and makes it the active
    /// one if `expect` holds, announcing the change. The bytes are not checked here: replicas
    /// refuse what does not compile or verify, and keep serving what they have.
    pub fn push(&self, bundle_id: &str, bytes: &[u8], expect: &Expect) -> Result<Pushed, SourceError> {
        if bytes.len() > self.options.max_bytes {
            return Err(SourceError::TooLarge(TooLarge {
                bundle_id: bundle_id.to_owned(),
                bytes: bytes.len(),
                limit: self.options.max_bytes,
            }));
        }
        let revision = revision_of(bytes);
        let message = serde_json::json!({"bundle_id": bundle_id, "revision": revision}).to_string();
        let mut lease = self.pool.lease();
        // Outside the script: the set of ids is in another cluster slot. Adding first means a
        // full check may find an id whose pointer is not set yet, which it skips.
        let ids = self.ids_key();
        lease
            .run(Idempotent::Yes, |c| redis::cmd("SADD").arg(&ids).arg(bundle_id).query::<i64>(c))
            .map_err(unavailable)?;
        let want = match expect {
            Expect::Any => "*",
            Expect::Nothing => "",
            Expect::Revision(r) => r.as_str(),
        };
        let mut inv = self.push.prepare_invoke();
        inv.key(self.meta_key(bundle_id)).key(self.revision_key(bundle_id, &revision));
        inv.arg(bundle_id).arg(&revision).arg(want).arg(bytes).arg(self.channel()).arg(message);
        let (status, before, notified): (String, String, u64) =
            lease.run(Idempotent::No, |c| inv.invoke(c)).map_err(unavailable)?;
        let previous = (!before.is_empty()).then_some(before);
        let status = match status.as_str() {
            "activated" => PushStatus::Activated,
            "unchanged" => PushStatus::Unchanged,
            "conflict" => {
                return Err(SourceError::Conflict(Conflict {
                    bundle_id: bundle_id.to_owned(),
                    expected: expect.clone(),
                    active: previous,
                }));
            }
            other => return Err(SourceError::Unavailable(format!("unexpected answer `{other}` from redis"))),
        };
        Ok(Pushed { bundle_id: bundle_id.to_owned(), revision, previous, status, notified })
    }

    /// The active revision of a bundle.
    pub fn active(&self, bundle_id: &str) -> Result<Option<String>, SourceError> {
        let key = self.meta_key(bundle_id);
        let mut lease = self.pool.lease();
        lease.run(Idempotent::Yes, |c| redis::cmd("HGET").arg(&key).arg("rev").query(c)).map_err(unavailable)
    }

    /// Every bundle pushed, sorted by id, with its active revision (two round trips).
    pub fn actives(&self) -> Result<Vec<(String, Option<String>)>, SourceError> {
        let mut lease = self.pool.lease();
        let ids_key = self.ids_key();
        let mut ids: Vec<String> =
            lease.run(Idempotent::Yes, |c| redis::cmd("SMEMBERS").arg(&ids_key).query(c)).map_err(unavailable)?;
        ids.sort_unstable();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.meta_key(id)).collect();
        let revisions: Vec<Option<String>> = lease
            .run(Idempotent::Yes, |c| {
                let mut pipe = redis::pipe();
                for k in &keys {
                    pipe.cmd("HGET").arg(k).arg("rev");
                }
                pipe.query(c)
            })
            .map_err(unavailable)?;
        Ok(ids.into_iter().zip(revisions).collect())
    }

    /// A revision's bytes (`None`: there is no such revision).
    pub fn revision(&self, bundle_id: &str, revision: &str) -> Result<Option<Vec<u8>>, SourceError> {
        let key = self.revision_key(bundle_id, revision);
        let limit = self.options.max_bytes;
        let mut lease = self.pool.lease();
        // The length first, and never more than the limit: a huge value is refused unread.
        let (exists, len, bytes): (bool, usize, Vec<u8>) = lease
            .run(Idempotent::Yes, |c| {
                redis::pipe()
                    .cmd("EXISTS")
                    .arg(&key)
                    .cmd("STRLEN")
                    .arg(&key)
                    .cmd("GETRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(limit.saturating_sub(1))
                    .query(c)
            })
            .map_err(unavailable)?;
        if !exists {
            return Ok(None);
        }
        if len > limit {
            return Err(SourceError::TooLarge(TooLarge { bundle_id: bundle_id.to_owned(), bytes: len, limit }));
        }
        Ok(Some(bytes))
    }

    /// Writes a replica's status text, kept for `ttl`.
    pub fn set_status(&self, replica: &str, text: &str, ttl: Duration) -> Result<(), SourceError> {
        let key = self.status_key(replica);
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut lease = self.pool.lease();
        lease
            .run(Idempotent::Yes, |c| redis::cmd("SET").arg(&key).arg(text).arg("PX").arg(ms).query::<()>(c))
            .map_err(unavailable)
    }

    /// A replica's status text, if it wrote one that has not expired.
    pub fn status(&self, replica: &str) -> Result<Option<String>, SourceError> {
        let key = self.status_key(replica);
        let mut lease = self.pool.lease();
        lease.run(Idempotent::Yes, |c| redis::cmd("GET").arg(&key).query(c)).map_err(unavailable)
    }

    /// Watches for changes until `stop` is set, reporting to `on` (which runs on this thread):
    /// [`Notice::Subscribed`] after each (re)subscription, [`Notice::Changed`] for each message,
    /// [`Notice::Poll`] every `every`, [`Notice::Lost`] when the subscription fails (then it
    /// reconnects after a pause of 50 ms doubling up to 1 s). At each poll the subscription
    /// connection must answer a `PING` within the command timeout, so a server that stopped
    /// answering is noticed. `stop` is looked at least every 250 ms.
    pub fn watch(&self, every: Duration, stop: &AtomicBool, mut on: impl FnMut(Notice)) {
        let tick = every.clamp(Duration::from_millis(1), Duration::from_millis(250));
        let first_pause = Duration::from_millis(50);
        let mut pause = first_pause;
        while !stop.load(Ordering::Relaxed) {
            match self.listen(every, tick, stop, &mut on) {
                Ok(()) => return,
                Err(e) => {
                    on(Notice::Lost(e));
                    pause_unless_stopped(pause, stop);
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// One subscription: `Ok` when stopped, the error that ended it otherwise.
    fn listen(
        &self,
        every: Duration,
        tick: Duration,
        stop: &AtomicBool,
        on: &mut impl FnMut(Notice),
    ) -> Result<(), SourceError> {
        let failed = |e: &redis::RedisError| unavailable(self.pool.failure(e));
        let mut conn = self.pool.connect().map_err(unavailable)?;
        let channel = self.channel();
        let mut ps = conn.as_pubsub();
        ps.subscribe(&channel).map_err(|e| failed(&e))?;
        ps.set_read_timeout(Some(tick)).map_err(|e| failed(&e))?;
        on(Notice::Subscribed);
        let mut polled = Instant::now();
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            match ps.get_message() {
                Ok(msg) => {
                    let bundle_id = serde_json::from_slice::<serde_json::Value>(msg.get_payload_bytes())
                        .ok()
                        .and_then(|v| v.get("bundle_id").and_then(|id| id.as_str()).map(str::to_owned));
                    on(bundle_id.map_or(Notice::Poll, Notice::Changed));
                }
                Err(e) if e.is_timeout() => {}
                Err(e) => return Err(failed(&e)),
            }
            if polled.elapsed() >= every {
                ps.set_read_timeout(Some(self.options.io_timeout)).map_err(|e| failed(&e))?;
                ps.ping::<redis::Value>().map_err(|e| failed(&e))?;
                ps.set_read_timeout(Some(tick)).map_err(|e| failed(&e))?;
                polled = Instant::now();
                on(Notice::Poll);
            }
        }
    }
}

/// Sleeps for `pause`, in steps, returning early once `stop` is set.
fn pause_unless_stopped(pause: Duration, stop: &AtomicBool) {
    let until = Instant::now() + pause;
    while !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}
