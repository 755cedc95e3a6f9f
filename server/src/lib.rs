//! The Verdict PDP service (`verdict serve`): the reference's HTTP surface over compiled bundles.
//!
//! Entry points: [`run`] (what the CLI calls: a runtime, signals, graceful shutdown) and
//! [`start`] (an in-process server on a bound address, for tests and embedding). The pieces:
//! [`handlers`] (routes), [`auth`] (two bearer tokens), [`store`] (atomically swapped bundle
//! snapshots and condition assertions), [`engine`] (the backend seam), [`reload`] (bundle files
//! and the watched directory), [`audit`] (JSON lines through a bounded queue), [`metrics`].
//!
//! Architecture invariant: this crate depends on `compiler` and `runtime`; nothing depends on it
//! but `cli`, which only turns flags into a [`Config`]. Flags are not parsed here.

pub mod audit;
pub mod auth;
pub mod engine;
pub mod error;
mod handlers;
pub mod keys;
pub mod metrics;
pub mod reload;
pub mod store;

use audit::{AuditSink, AuditTarget};
use auth::Auth;
use keys::BuyerKeys;
use metrics::Metrics;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::Store;
use tokio::sync::oneshot;
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
    pub audit: AuditTarget,
    /// Lines queued for the audit writer before handlers wait.
    pub audit_capacity: usize,
    pub auth: Auth,
    pub buyer_keys: BuyerKeys,
    pub body_limit: usize,
    pub read_timeout: Duration,
    /// Time allowed for a request's headers, and for an idle keep-alive connection.
    pub header_timeout: Duration,
    pub max_bundles: usize,
    /// Public keys of artifact signers. When any is given, only artifacts signed by one of them
    /// load (from the command line, the watched directory and the API); source bundles are
    /// refused. Empty: artifacts load on their checksum, signed or not.
    pub trusted_keys: TrustedKeys,
}

impl Config {
    /// The defaults, with authorization unconfigured (fail closed) and no buyer keys.
    pub fn new(bind: SocketAddr) -> Config {
        Config {
            bind,
            bundles: Vec::new(),
            watch: None,
            poll_interval: Duration::from_secs(1),
            audit: AuditTarget::Stdout,
            audit_capacity: 65_536,
            auth: Auth::Misconfigured("no tokens configured".into()),
            buyer_keys: BuyerKeys::none(),
            body_limit: BODY_LIMIT,
            read_timeout: READ_TIMEOUT,
            header_timeout: HEADER_TIMEOUT,
            max_bundles: 256,
            trusted_keys: TrustedKeys::none(),
        }
    }

    /// Reads the tokens and buyer keys from the environment (the reference's variables).
    pub fn with_env(mut self) -> Config {
        self.auth = Auth::from_env();
        self.buyer_keys = BuyerKeys::from_env();
        self
    }
}

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
    pub trusted_keys: TrustedKeys,
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    serving: JoinHandle<std::io::Result<()>>,
    poller: Option<JoinHandle<()>>,
}

async fn reload_now(state: &Arc<AppState>, force: bool) -> reload::ReloadReport {
    let st = state.clone();
    tokio::task::spawn_blocking(move || reload::reload(&st, force)).await.unwrap_or_default()
}

/// Loads the bundles, binds the address and serves until [`Server::shutdown`].
pub async fn start(config: Config) -> Result<Server, String> {
    if matches!(config.auth, Auth::Disabled) && !config.bind.ip().is_loopback() {
        return Err(format!(
            "authorization is off (--insecure-no-auth): that is for local use only, bind a loopback address, not {}",
            config.bind
        ));
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
    let audit = AuditSink::start(&config.audit, config.audit_capacity)?;
    let state = Arc::new(AppState {
        store: Store::new(config.max_bundles),
        auth: config.auth.clone(),
        keys: config.buyer_keys.clone(),
        audit,
        metrics: Metrics::default(),
        body_limit: config.body_limit,
        read_timeout: config.read_timeout,
        files: Mutex::new(reload::Files::new(config.bundles.clone(), config.watch.clone())),
        trusted_keys: config.trusted_keys.clone(),
    });
    let report = reload_now(&state, true).await;
    let explicit_failures: Vec<String> =
        report.failed.iter().filter(|(p, _)| config.bundles.contains(p)).map(|(_, why)| why.clone()).collect();
    if !explicit_failures.is_empty() {
        state.audit.close().await;
        return Err(format!("bundles given on the command line must load: {}", explicit_failures.join("; ")));
    }
    let listener = match tokio::net::TcpListener::bind(config.bind).await {
        Ok(l) => l,
        Err(e) => {
            state.audit.close().await;
            return Err(format!("cannot bind {}: {e}", config.bind));
        }
    };
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, bundles = state.store.len(), "listening");
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
    let serving = tokio::spawn(accept_loop(listener, app, stopped, config.header_timeout));
    Ok(Server { addr, state, stop: Some(stop), serving, poller })
}

/// Accepts connections and serves HTTP/1.1 on each (TCP_NODELAY, a header read timeout), until
/// `stop`; then waits for the connections to finish their requests (graceful shutdown).
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    mut stop: oneshot::Receiver<()>,
    header_timeout: Duration,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let service = hyper_util::service::TowerToHyperService::new(app.clone());
                    let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
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
    pub async fn shutdown(mut self) -> Result<(), String> {
        if let Some(p) = self.poller.take() {
            p.abort();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let served = match tokio::time::timeout(SHUTDOWN_GRACE, &mut self.serving).await {
            Ok(Ok(r)) => r.map_err(|e| e.to_string()),
            Ok(Err(e)) => Err(format!("the server task failed: {e}")),
            Err(_) => {
                self.serving.abort();
                Err("requests still in flight after the shutdown grace period were cut".into())
            }
        };
        self.state.audit.close().await;
        tracing::info!("stopped; audit log flushed");
        served
    }
}

/// Runs the service until SIGTERM or SIGINT (graceful shutdown, audit flushed); SIGHUP reloads
/// the bundle files.
pub fn run(config: Config, on_listening: impl FnOnce(SocketAddr)) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("verdict-serve")
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
        let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
        let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
        let server = start(config).await?;
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
        server.shutdown().await
    })
}
