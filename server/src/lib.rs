//! The Verdict PDP service (`verdict serve`): the reference's HTTP surface over compiled bundles.
//!
//! Entry points: [`run`] (what the CLI calls: a runtime, signals, graceful shutdown) and
//! [`start`] (an in-process server on a bound address, for tests and embedding). The pieces:
//! [`handlers`] (routes), [`auth`] (two bearer tokens), [`store`] (atomically swapped bundle
//! snapshots and condition assertions), [`engine`] (the backend seam), [`reload`] (bundle files
//! and the watched directory), [`audit`] (JSON lines written before the answers that report
//! them), [`inputs`] (what an evaluation's audit line records of its request),
//! [`stream`] (the audit lines also POSTed to a collector, best effort), [`conn`] (the accept
//! loop and the connection limits), [`metrics`], [`decisions`] (the state store, commit and
//! release) and [`shadow`] (shadow evaluation of a candidate).
//! [`source`] follows bundles pushed to Redis (`--bundles-from`).
//!
//! Architecture invariant: this crate depends on `compiler`, `runtime` and `store-redis`; nothing
//! depends on it but `cli`, which only turns flags into a [`Config`]. Flags are not parsed here.

pub mod audit;
pub mod auth;
pub mod conn;
pub mod decisions;
pub mod engine;
pub mod error;
mod handlers;
pub mod inputs;
pub mod keys;
pub mod metrics;
pub mod pool;
pub mod reload;
pub mod shadow;
pub mod source;
pub mod store;
pub mod stream;

use audit::{AuditError, AuditOptions, AuditSink, AuditTarget};
use auth::{Auth, AuthProblem};
use keys::BuyerKeys;
use metrics::Metrics;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::Store;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;
use verdict_runtime::signature::TrustedKeys;

/// Request bodies are capped at 128 KiB.
pub const BODY_LIMIT: usize = 128 * 1024;
/// A request body must arrive within 10 seconds.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// In-flight requests get this long to finish on shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// A request's headers must arrive within this time; an idle keep-alive connection is closed
/// after it too (hyper starts the timer when it waits for the next request).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that stops reading must take the response within this time, or is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections accepted beyond the limit for health and metrics (see [`conn`]).
pub const OVERFLOW_CONNECTIONS: usize = 32;
/// On shutdown, the audit stream gets this long to send what is queued.
pub const STREAM_CLOSE: Duration = Duration::from_secs(5);
/// Threads that run stateful decisions on a shared store: each waits for the store's round
/// trips, so there are more of them than cores.
pub const STATE_THREADS: usize = 16;

/// Everything the service is configured with.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    /// Bundle files loaded at start (a failure stops the start) and reloaded on change.
    pub bundles: Vec<PathBuf>,
    /// A directory whose bundle files are loaded, reloaded and unloaded as they change.
    pub watch: Option<PathBuf>,
    /// How often files are checked for changes (SIGHUP forces a reload at any time).
    pub poll_interval: Duration,
    /// Bundles pushed to Redis, loaded at start and followed (see [`source`]).
    pub bundles_from: Option<source::RedisBundles>,
    pub audit: AuditTarget,
    /// Lines queued for the audit writer before handlers wait (with `audit_fsync`; without it
    /// the handlers write their lines themselves).
    pub audit_capacity: usize,
    /// Sync the audit log to disk (`fdatasync`) before the answers of each batch leave.
    pub audit_fsync: bool,
    pub auth: Auth,
    pub buyer_keys: BuyerKeys,
    pub body_limit: usize,
    pub read_timeout: Duration,
    /// Time allowed for a request's headers, and for an idle keep-alive connection.
    pub header_timeout: Duration,
    /// Time a client that stops reading has to take a response.
    pub write_timeout: Duration,
    /// Connections served at once; `None`: what the open-file limit leaves room for
    /// ([`conn::default_connection_limits`], which may also shrink the overflow lane).
    pub max_connections: Option<usize>,
    /// Connections accepted beyond the maximum to answer health and metrics (503 otherwise).
    pub overflow_connections: usize,
    /// Threads that evaluate decisions (beside the async runtime); `None`: one per core.
    pub eval_threads: Option<usize>,
    pub max_bundles: usize,
    /// Public keys of artifact signers. When any is given, only artifacts signed by one of them
    /// load (from the command line, the watched directory and the API); source bundles are
    /// refused. Empty: artifacts load on their checksum, signed or not.
    pub trusted_keys: TrustedKeys,
    /// Where stateful bundles keep their state series and holds (in memory by default).
    pub state: decisions::StateBackend,
    /// Also POST the audit lines to an HTTP collector, best effort ([`stream`]).
    pub audit_stream: Option<stream::StreamOptions>,
    /// The bundle `POST /evaluate` decides a bare context or flat facts on (with the evaluate
    /// token), as PolicyGate's callers send them.
    pub default_bundle: Option<String>,
}

impl Config {
    /// The defaults, with authorization unconfigured (fail closed) and no buyer keys.
    pub fn new(bind: SocketAddr) -> Config {
        Config {
            bind,
            bundles: Vec::new(),
            watch: None,
            poll_interval: Duration::from_secs(1),
            bundles_from: None,
            audit: AuditTarget::Stdout,
            audit_capacity: 65_536,
            audit_fsync: false,
            auth: Auth::Misconfigured(AuthProblem::Unconfigured),
            buyer_keys: BuyerKeys::none(),
            body_limit: BODY_LIMIT,
            read_timeout: READ_TIMEOUT,
            header_timeout: HEADER_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
            max_connections: None,
            overflow_connections: OVERFLOW_CONNECTIONS,
            eval_threads: None,
            max_bundles: 256,
            trusted_keys: TrustedKeys::none(),
            state: decisions::StateBackend::memory(),
            audit_stream: None,
            default_bundle: None,
        }
    }

    /// Reads the tokens and buyer keys from the environment (the reference's variables).
    pub fn with_env(mut self) -> Config {
        self.auth = Auth::from_env();
        self.buyer_keys = BuyerKeys::from_env();
        self
    }
}

/// Why the server did not start.
#[derive(Debug)]
pub enum StartError {
    /// `--insecure-no-auth` with a non-loopback address.
    InsecureBind(InsecureBind),
    /// The audit log cannot be opened (or synced, with `fsync`).
    Audit(AuditError),
    /// The audit stream's URL is invalid, or its thread cannot start.
    Stream(stream::StreamError),
    /// A bundle given on the command line does not load.
    Bundles(BundlesFailed),
    /// The address cannot be bound.
    Bind(BindFailed),
    /// The evaluation threads cannot be started.
    Threads(pool::PoolError),
    /// The bundle source (`--bundles-from`) cannot be used, or its thread started.
    Source(source::SourceFailed),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsecureBind {
    pub bind: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundlesFailed {
    pub failures: Vec<(PathBuf, reload::LoadError)>,
}

#[derive(Debug)]
pub struct BindFailed {
    pub bind: SocketAddr,
    pub source: std::io::Error,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::InsecureBind(e) => write!(
                f,
                "authorization is off (--insecure-no-auth): that is for local use only, bind a loopback address, not `{}`",
                e.bind
            ),
            StartError::Audit(e) => write!(f, "{e}"),
            StartError::Stream(e) => write!(f, "{e}"),
            StartError::Bundles(e) => {
                f.write_str("bundles given on the command line must load: ")?;
                for (i, (_, why)) in e.failures.iter().enumerate() {
                    write!(f, "{}{why}", if i == 0 { "" } else { "; " })?;
                }
                Ok(())
            }
            StartError::Bind(e) => write!(f, "cannot bind `{}`: {}", e.bind, e.source),
            StartError::Threads(e) => write!(f, "{e}"),
            StartError::Source(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// What went wrong while stopping (the audit log is flushed in every case).
#[derive(Debug)]
pub enum ShutdownError {
    /// Requests were still in flight after [`SHUTDOWN_GRACE`]; they were cut.
    GraceExceeded(GraceExceeded),
    /// The serving task failed.
    Task(TaskFailed),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraceExceeded {
    pub grace: Duration,
}

#[derive(Debug)]
pub struct TaskFailed {
    pub message: String,
}

impl std::fmt::Display for ShutdownError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShutdownError::GraceExceeded(e) => {
                write!(f, "requests still in flight after the shutdown grace period ({} s) were cut", e.grace.as_secs())
            }
            ShutdownError::Task(e) => write!(f, "the server task failed: {}", e.message),
        }
    }
}

impl std::error::Error for ShutdownError {}

/// Why [`run`] failed.
#[derive(Debug)]
pub enum RunError {
    /// The async runtime or the signal handlers cannot be set up.
    Setup(SetupFailed),
    Start(StartError),
    Shutdown(ShutdownError),
}

#[derive(Debug)]
pub struct SetupFailed {
    /// What was being set up (`the runtime`, `the SIGTERM handler`).
    pub what: &'static str,
    pub source: std::io::Error,
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Setup(e) => write!(f, "cannot set up {}: {}", e.what, e.source),
            RunError::Start(e) => write!(f, "{e}"),
            RunError::Shutdown(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RunError {}

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct AppState {
    pub store: Store,
    pub auth: Auth,
    pub keys: BuyerKeys,
    pub audit: AuditSink,
    pub metrics: Metrics,
    pub body_limit: usize,
    pub read_timeout: Duration,
    pub files: Mutex<reload::Files>,
    /// The evaluation threads.
    pub pool: pool::Pool,
    /// Bundle compilations running at once (on blocking threads).
    pub compile_slots: Arc<Semaphore>,
    pub trusted_keys: TrustedKeys,
    pub state: decisions::StateBackend,
    /// The threads that run stateful decisions on a shared store (they wait for its I/O).
    pub state_pool: pool::Pool,
    pub shadows: shadow::Shadows,
    /// The collector the audit lines also go to, if any.
    pub stream: Option<stream::AuditStream>,
    /// The bundle of `POST /evaluate` bodies that are not `{bundle, context}`.
    pub default_bundle: Option<String>,
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    serving: JoinHandle<std::io::Result<()>>,
    poller: Option<JoinHandle<()>>,
    follower: Option<source::Follower>,
}

async fn reload_now(state: &Arc<AppState>, force: bool) -> reload::ReloadReport {
    let st = state.clone();
    tokio::task::spawn_blocking(move || reload::reload(&st, force)).await.unwrap_or_default()
}

/// Loads the bundles, binds the address and serves until [`Server::shutdown`].
pub async fn start(config: Config) -> Result<Server, StartError> {
    if matches!(config.auth, Auth::Disabled) && !config.bind.ip().is_loopback() {
        return Err(StartError::InsecureBind(InsecureBind { bind: config.bind }));
    }
    match &config.auth {
        Auth::Disabled => tracing::warn!(
            "AUTHORIZATION IS OFF (--insecure-no-auth): anyone who can reach {} may register bundles and evaluate",
            config.bind
        ),
        Auth::Misconfigured(why) => {
            tracing::error!("{why}: every protected route answers 503 until the tokens are configured");
        }
        Auth::Tokens { .. } => tracing::info!("bearer-token authorization on"),
    }
    if !config.trusted_keys.is_empty() {
        let ids: Vec<String> = config.trusted_keys.ids().map(|k| k.to_string()).collect();
        tracing::info!(keys = %ids.join(","), "only artifacts signed by a trusted key load");
    }
    if let Some(why) = config.buyer_keys.problem() {
        tracing::warn!("{why}: positive Decision Cards will be answered 503");
    }
    let bundle_source = config.bundles_from.as_ref().map(source::open).transpose().map_err(StartError::Source)?;
    let stream =
        config.audit_stream.as_ref().map(stream::AuditStream::start).transpose().map_err(StartError::Stream)?;
    if let Some(s) = &config.audit_stream {
        tracing::info!(url = s.url, queue = s.queue, "audit lines are also sent to a collector (best effort)");
    }
    let audit = AuditSink::start(
        &AuditOptions { target: config.audit.clone(), capacity: config.audit_capacity, fsync: config.audit_fsync },
        stream.clone(),
    )
    .map_err(StartError::Audit)?;
    let threads = config
        .eval_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get))
        .max(1);
    let state = Arc::new(AppState {
        store: Store::new(config.max_bundles),
        auth: config.auth.clone(),
        keys: config.buyer_keys.clone(),
        audit,
        metrics: Metrics::default(),
        body_limit: config.body_limit,
        read_timeout: config.read_timeout,
        files: Mutex::new(reload::Files::new(config.bundles.clone(), config.watch.clone())),
        pool: pool::Pool::start(threads).map_err(StartError::Threads)?,
        compile_slots: Arc::new(Semaphore::new(threads)),
        trusted_keys: config.trusted_keys.clone(),
        state: config.state.clone(),
        state_pool: pool::Pool::start(if config.state.is_local() { 1 } else { STATE_THREADS })
            .map_err(StartError::Threads)?,
        shadows: shadow::Shadows::start().map_err(|e| StartError::Threads(pool::PoolError { source: e.source }))?,
        stream,
        default_bundle: config.default_bundle.clone(),
    });
    let report = reload_now(&state, true).await;
    let failures: Vec<(PathBuf, reload::LoadError)> =
        report.failed.into_iter().filter(|(p, _)| config.bundles.contains(p)).collect();
    if !failures.is_empty() {
        state.audit.close().await;
        return Err(StartError::Bundles(BundlesFailed { failures }));
    }
    let listener = match tokio::net::TcpListener::bind(config.bind).await {
        Ok(l) => l,
        Err(source) => {
            state.audit.close().await;
            return Err(StartError::Bind(BindFailed { bind: config.bind, source }));
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(source) => {
            state.audit.close().await;
            return Err(StartError::Bind(BindFailed { bind: config.bind, source }));
        }
    };
    let follower = match (bundle_source, &config.bundles_from) {
        (Some(bundles), Some(from)) => {
            let replica = from.replica.clone().unwrap_or_else(|| source::default_replica(addr.port()));
            match source::follow(bundles, from, replica, state.clone()).await {
                Ok(f) => Some(f),
                Err(e) => {
                    state.audit.close().await;
                    return Err(StartError::Source(source::SourceFailed { message: e.to_string() }));
                }
            }
        }
        _ => None,
    };
    let (max, overflow) = match config.max_connections {
        Some(max) => (max.max(1), config.overflow_connections),
        None => conn::default_connection_limits(config.overflow_connections),
    };
    let limits =
        conn::Limits { max, overflow, header_timeout: config.header_timeout, write_timeout: config.write_timeout };
    tracing::info!(%addr, bundles = state.store.len(), max_connections = limits.max, eval_threads = threads, audit_fsync = config.audit_fsync, state_store = state.state.name(), "listening");
    let poller = (config.watch.is_some() || !config.bundles.is_empty()).then(|| {
        let st = state.clone();
        let every = config.poll_interval;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                reload_now(&st, false).await;
            }
        })
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let app = handlers::router(state.clone());
    let overflow_app = handlers::overflow_router(state.clone());
    let serving = tokio::spawn(conn::accept_loop(listener, app, overflow_app, stopped, limits, state.clone()));
    Ok(Server { addr, state, stop: Some(stop), serving, poller, follower })
}

impl Server {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Reloads every bundle file now, as SIGHUP does.
    pub async fn reload(&self) -> reload::ReloadReport {
        reload_now(&self.state, true).await
    }

    /// Stops accepting, lets requests in flight finish (up to [`SHUTDOWN_GRACE`]), then writes
    /// and flushes the audit log.
    pub async fn shutdown(mut self) -> Result<(), ShutdownError> {
        if let Some(p) = self.poller.take() {
            p.abort();
        }
        if let Some(f) = self.follower.take() {
            f.stop().await;
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let served = match tokio::time::timeout(SHUTDOWN_GRACE, &mut self.serving).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(ShutdownError::Task(TaskFailed { message: e.to_string() })),
            Ok(Err(e)) => Err(ShutdownError::Task(TaskFailed { message: e.to_string() })),
            Err(_) => {
                self.serving.abort();
                Err(ShutdownError::GraceExceeded(GraceExceeded { grace: SHUTDOWN_GRACE }))
            }
        };
        self.state.audit.close().await;
        if let Some(s) = &self.state.stream {
            s.close(STREAM_CLOSE).await;
        }
        tracing::info!("stopped; audit log flushed");
        served
    }
}

/// Runs the service until SIGTERM or SIGINT (graceful shutdown, audit flushed); SIGHUP reloads
/// the bundle files.
pub fn run(config: Config, on_listening: impl FnOnce(SocketAddr)) -> Result<(), RunError> {
    fn setup(what: &'static str) -> impl FnOnce(std::io::Error) -> RunError {
        move |source| RunError::Setup(SetupFailed { what, source })
    }
    let limit = conn::raise_open_file_limit();
    tracing::debug!(?limit, "open-file limit");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("verdict-serve")
        .build()
        .map_err(setup("the runtime"))?;
    runtime.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(setup("the SIGTERM handler"))?;
        let mut int = signal(SignalKind::interrupt()).map_err(setup("the SIGINT handler"))?;
        let mut hup = signal(SignalKind::hangup()).map_err(setup("the SIGHUP handler"))?;
        let server = start(config).await.map_err(RunError::Start)?;
        on_listening(server.addr());
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
                _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
                _ = hup.recv() => {
                    let r = server.reload().await;
                    tracing::info!(loaded = r.loaded.len(), failed = r.failed.len(), removed = r.removed.len(), "SIGHUP: reloaded");
                }
            }
        }
        server.shutdown().await.map_err(RunError::Shutdown)
    })
}
