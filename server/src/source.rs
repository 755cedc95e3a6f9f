//! Bundles from Redis (`verdict serve --bundles-from redis://…`, TOOLCHAIN.md): every bundle
//! pushed to the shared store is loaded at its active revision and followed as its pointer moves.
//!
//! The client is `verdict_store_redis::bundles` (shared with `verdict push` and the Python
//! package); this module is the replica's side. One thread per server watches: the change
//! channel for speed, a poll every `poll_interval` and a full check after each (re)subscription,
//! since messages sent while a replica was disconnected are lost. A check reads the active
//! revisions, and loads each that differs from what this replica serves: its bytes must have the
//! digest that names the revision, load as `reload::compile_file` loads a file (the same trusted
//! keys: only signed artifacts when keys are configured), and hold the bundle id they were pushed
//! under. What fails is refused: logged, written to the audit log as `bundle_rejected`, counted in
//! `/metrics` and shown in this replica's status key; the previous version keeps serving, and the
//! revision is not tried again (revisions never change) unless the failure was the store's (a
//! bundle id taken by a file, say): then the compiled revision is kept and offered to the store
//! again at each check, never read or compiled again. Redis unreachable: the loaded bundles keep
//! serving.
//!
//! The replica's status key (`<prefix>replica:<replica>`, JSON, rewritten after every check and
//! kept for three poll intervals plus ten seconds) says, per bundle, the revision active in Redis,
//! the one served and the last refusal.
//!
//! Everything here is blocking (Redis round trips, compilation): it runs on its own thread, and
//! the first check before the server accepts connections, on a blocking thread.

use crate::AppState;
use crate::audit::BundleSummary;
use crate::store::{Loaded, Origin, Outcome, Put};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use verdict_store_redis::bundles::{BundleOptions, BundleSource, Notice, SourceError, revision_of};

/// Where a server's bundles come from besides files and the API.
#[derive(Clone)]
pub struct RedisBundles {
    /// `redis://[:password@]host[:port][/db]` (never logged: it may hold a password).
    pub url: String,
    /// The key prefix the bundles were pushed under (`verdict:` by default).
    pub prefix: String,
    /// This replica's name in its status key; `None`: `<hostname>:<port>`.
    pub replica: Option<String>,
    /// How often every bundle is checked, besides the change messages.
    pub poll_interval: Duration,
}

impl RedisBundles {
    pub fn new(url: impl Into<String>) -> RedisBundles {
        RedisBundles {
            url: url.into(),
            prefix: BundleOptions::default().prefix,
            replica: None,
            poll_interval: Duration::from_secs(1),
        }
    }
}

impl std::fmt::Debug for RedisBundles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBundles")
            .field("prefix", &self.prefix)
            .field("replica", &self.replica)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

/// The URL of `--bundles-from` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFailed {
    pub message: String,
}

impl std::fmt::Display for SourceFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "--bundles-from: {}", self.message)
    }
}

/// Opens the source (nothing is connected yet).
pub(crate) fn open(config: &RedisBundles) -> Result<BundleSource, SourceFailed> {
    let options = BundleOptions { prefix: config.prefix.clone(), ..BundleOptions::default() };
    BundleSource::open(&config.url, options).map_err(|e| SourceFailed { message: e.to_string() })
}

/// The replica's default name: the host name and the port it listens on.
pub(crate) fn default_replica(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{port}")
}

/// The watching thread of a running server.
#[derive(Debug)]
pub(crate) struct Follower {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Loads the active revisions once (before the server accepts connections), then follows them on
/// a thread of its own.
pub(crate) async fn follow(
    source: BundleSource,
    config: &RedisBundles,
    replica: String,
    st: Arc<AppState>,
) -> std::io::Result<Follower> {
    let source = Arc::new(source);
    let every = config.poll_interval.max(Duration::from_millis(10));
    let mut sync = Sync {
        source: source.clone(),
        replica,
        st,
        bundles: BTreeMap::new(),
        connected: true,
        status_ttl: every.saturating_mul(3).saturating_add(Duration::from_secs(10)),
    };
    let mut sync = tokio::task::spawn_blocking(move || {
        sync.full_check();
        sync
    })
    .await
    .map_err(std::io::Error::other)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new().name("verdict-bundles".into()).spawn(move || {
        source.watch(every, &flag, |notice| {
            // A panic while handling one notice (a bug) must not stop the following ones.
            let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sync.on(notice)));
            if handled.is_err() {
                sync.st.metrics.source_connected(false);
                sync.connected = false;
            }
        });
    })?;
    Ok(Follower { stop, thread: Some(thread) })
}

impl Follower {
    /// Stops the thread (it looks at the flag at least every 250 ms, between checks).
    pub(crate) async fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let joined = tokio::task::spawn_blocking(move || t.join());
            if tokio::time::timeout(Duration::from_secs(5), joined).await.is_err() {
                tracing::warn!("the bundle source thread did not stop within 5 s; leaving it");
            }
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What this replica knows of one bundle in Redis.
#[derive(Debug, Default)]
struct Track {
    /// The revision active in Redis when last read (`None`: no pointer, e.g. after Redis lost
    /// its data; whatever is loaded keeps serving).
    wanted: Option<String>,
    /// The last revision refused.
    refused: Option<Refused>,
    /// The revision the store refused, compiled (its digest is the revision): each check offers
    /// it to the store again (the id may have been freed) without reading or compiling it again.
    parked: Option<Arc<Loaded>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Refused {
    revision: String,
    error: String,
    /// Refused by the store, not for its bytes: tried again at every check.
    retry: bool,
}

/// Why a revision was not activated.
enum Failure {
    /// Redis did not answer: tried again at the next check, not a refusal.
    Redis(SourceError),
    /// The revision cannot serve (`retry`: for a reason other than its bytes).
    Refused { error: String, retry: bool },
}

/// The follower's state, owned by its thread.
struct Sync {
    source: Arc<BundleSource>,
    replica: String,
    st: Arc<AppState>,
    bundles: BTreeMap<String, Track>,
    /// Whether the last contact with Redis succeeded.
    connected: bool,
    status_ttl: Duration,
}

impl Sync {
    fn on(&mut self, notice: Notice) {
        match notice {
            Notice::Subscribed => {
                if !self.connected {
                    tracing::info!(redis = self.source.addr(), "bundle source: connected again; checking every bundle");
                }
                self.set_connected(true);
                self.full_check();
            }
            Notice::Poll => self.full_check(),
            Notice::Changed(id) => {
                match self.source.active(&id) {
                    Ok(wanted) => self.apply(&id, wanted),
                    Err(e) => self.lost(&e),
                }
                self.write_status();
            }
            Notice::Lost(e) => self.lost(&e),
        }
    }

    fn set_connected(&mut self, up: bool) {
        self.connected = up;
        self.st.metrics.source_connected(up);
    }

    /// Redis failed: said once per outage; the loaded bundles keep serving.
    fn lost(&mut self, e: &SourceError) {
        if self.connected {
            tracing::error!(error = %e, "bundle source unavailable; the loaded bundles keep serving");
        }
        self.set_connected(false);
    }

    /// Reads every active revision and applies each.
    fn full_check(&mut self) {
        let actives = match self.source.actives() {
            Ok(a) => a,
            Err(e) => {
                self.lost(&e);
                return;
            }
        };
        self.set_connected(true);
        for track in self.bundles.values_mut() {
            track.wanted = None;
        }
        for (id, wanted) in actives {
            self.apply(&id, wanted);
        }
        self.write_status();
    }

    /// Makes `wanted` the served revision of `id` if it is not already, or says why not.
    fn apply(&mut self, id: &str, wanted: Option<String>) {
        let serving = self.serving(id);
        let track = self.bundles.entry(id.to_owned()).or_default();
        track.wanted.clone_from(&wanted);
        let Some(revision) = wanted else { return };
        // A bundle compiled earlier is only good for the revision it was compiled from.
        let parked = track.parked.take().filter(|l| l.digest == revision);
        if serving.as_ref() == Some(&revision) {
            // Served (again, after a refused push was rolled back): no refusal stands.
            track.refused = None;
            return;
        }
        if track.refused.as_ref().is_some_and(|r| r.revision == revision && !r.retry) {
            return;
        }
        let loaded = match parked {
            Some(l) => l,
            None => match self.load(id, &revision) {
                Ok(l) => Arc::new(l),
                Err(Failure::Redis(e)) => return self.lost(&e),
                Err(Failure::Refused { error, retry }) => return self.refuse(id, Refused { revision, error, retry }),
            },
        };
        let mut summary = BundleSummary::of(&loaded);
        summary.origin = self.origin();
        match self.st.store.put_shared(loaded.clone(), Put::File) {
            Ok(outcome) => {
                if let Some(t) = self.bundles.get_mut(id) {
                    t.refused = None;
                }
                self.st.metrics.source_activated();
                let event = if outcome == Outcome::Created { "bundle_loaded" } else { "bundle_reloaded" };
                let (version, fingerprint) = (&summary.version, &summary.fingerprint);
                tracing::info!(bundle_id = id, revision, version, fingerprint, "{event} from redis");
                self.st.audit.emit_or_log(event, summary.fields());
            }
            Err(e) => {
                if let Some(t) = self.bundles.get_mut(id) {
                    t.parked = Some(loaded);
                }
                self.refuse(id, Refused { revision, error: e.to_string(), retry: true });
            }
        }
    }

    /// The revision of `id` this replica serves from Redis, if any.
    fn serving(&self, id: &str) -> Option<String> {
        self.st.store.get(id).filter(|l| l.origin == Origin::Redis).map(|l| l.digest.clone())
    }

    /// Reads a revision and makes it ready to serve.
    fn load(&self, id: &str, revision: &str) -> Result<Loaded, Failure> {
        let refused = |error: String| Failure::Refused { error, retry: false };
        let bytes = match self.source.revision(id, revision) {
            Ok(Some(b)) => b,
            Ok(None) => {
                // Not what a push does (it writes the revision first); written by hand, maybe later.
                return Err(Failure::Refused {
                    error: format!("revision `{revision}` is missing from redis"),
                    retry: true,
                });
            }
            Err(e @ SourceError::TooLarge(_)) => return Err(refused(e.to_string())),
            Err(e) => return Err(Failure::Redis(e)),
        };
        let digest = revision_of(&bytes);
        if digest != revision {
            return Err(refused(format!("the bytes of revision `{revision}` have the digest `{digest}`")));
        }
        // The name that errors show: the bundle and the start of its revision.
        let name = format!("redis:{id}@{}", revision.get(..19).unwrap_or(revision));
        self.st.metrics.source_compiled();
        let mut loaded = crate::reload::compile_file(Path::new(&name), bytes, &self.st.trusted_keys)
            .map_err(|e| refused(e.to_string()))?;
        if loaded.id() != id {
            return Err(refused(format!("`{name}`: holds bundle `{}`, not `{id}`", loaded.id())));
        }
        loaded.origin = Origin::Redis;
        Ok(loaded)
    }

    /// Records a refusal; a new one (another revision or reason) is logged, audited and counted.
    fn refuse(&mut self, id: &str, refused: Refused) {
        let origin = self.origin();
        let Some(track) = self.bundles.get_mut(id) else { return };
        if track.refused.as_ref() == Some(&refused) {
            return;
        }
        self.st.metrics.source_rejected();
        tracing::error!(
            bundle_id = id,
            revision = refused.revision,
            errors = refused.error,
            "bundle revision from redis refused; the loaded version (if any) stays"
        );
        let fields = [
            ("bundle_id", json!(id)),
            ("revision", json!(refused.revision)),
            ("errors", json!(refused.error)),
            ("origin", json!(origin)),
        ];
        track.refused = Some(refused);
        self.st.audit.emit_or_log("bundle_rejected", crate::audit::fields(fields));
    }

    fn origin(&self) -> String {
        format!("redis:{}", self.source.addr())
    }

    /// This replica's status, as its status key holds it.
    fn status(&self) -> Value {
        let bundles: Map<String, Value> = self
            .bundles
            .iter()
            .map(|(id, t)| {
                let refused = t.refused.as_ref().map(|r| json!({"revision": r.revision, "error": r.error}));
                (id.clone(), json!({"active": t.wanted, "serving": self.serving(id), "refused": refused}))
            })
            .collect();
        json!({
            "replica": self.replica,
            "time": jiff::Timestamp::now().to_string(),
            "connected": self.connected,
            "bundles": bundles,
        })
    }

    fn write_status(&mut self) {
        let text = self.status().to_string();
        if let Err(e) = self.source.set_status(&self.replica, &text, self.status_ttl) {
            self.lost(&e);
        }
    }
}
