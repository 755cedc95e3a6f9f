//! `verdict serve`: turns flags and the environment into a server configuration and runs the
//! PDP service (`verdict-server`). Logs go to standard error; the audit log to standard output
//! unless `--audit FILE` is given, and to an HTTP collector too with `--audit-url` (or
//! `AUDIT_STREAM_URL`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use verdict_server::audit::AuditTarget;
use verdict_server::auth::Auth;

/// The flags of `verdict serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Bundle files to load at start (a bundle that fails to compile stops the start) and reload on change.
    pub bundles: Vec<PathBuf>,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8089")]
    pub bind: SocketAddr,
    /// A directory of bundle files (.verdict, .yaml, .yml, .json, and .vdc artifacts) loaded, reloaded and unloaded as they change.
    #[arg(long, value_name = "DIR")]
    pub watch: Option<PathBuf>,
    /// Append the audit log (one JSON line per event) to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub audit: Option<PathBuf>,
    /// Sync the audit log to disk (fdatasync) before the answers of each batch of lines leave (needs a file: --audit FILE, or standard output redirected to one).
    #[arg(long)]
    pub audit_fsync: bool,
    /// Connections served at once [default: a little below the open-file limit]. Beyond it, health and metrics are still answered; other requests get 503.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
    /// Threads that evaluate decisions beside the async workers (traced, slow or large ones; cheap ones run inline) [default: one per core].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub eval_threads: Option<u16>,
    /// How often bundle files (and Redis, with --bundles-from) are checked for changes, in milliseconds (SIGHUP reloads the files at once).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub poll_ms: u64,
    /// Load the bundles pushed to this Redis (`verdict push`) at their active revision and follow every change: redis://[:password@]host[:port][/db].
    #[arg(long, value_name = "URL")]
    pub bundles_from: Option<String>,
    /// The key prefix of --bundles-from (as given to `verdict push --prefix`).
    #[arg(long, value_name = "PREFIX", default_value = "verdict:", requires = "bundles_from")]
    pub bundles_prefix: String,
    /// This replica's name in its Redis status key (`<prefix>replica:<name>`) [default: host name:port].
    #[arg(long, value_name = "NAME", requires = "bundles_from")]
    pub replica_id: Option<String>,
    /// Switch authorization off. For local experiments only: refused unless bound to a loopback address.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Load only artifacts signed by this Ed25519 public key (a PEM `PUBLIC KEY` or base64 file;
    /// repeatable; also `VERDICT_TRUSTED_KEYS`): unsigned or badly signed artifacts and source
    /// bundles are refused from files, the watched directory and the API.
    #[arg(long = "trusted-key", value_name = "PUBKEY")]
    pub trusted_keys: Vec<PathBuf>,
    /// Where stateful bundles keep state series and holds: `memory` (this process; the default)
    /// or `redis://HOST:PORT[/DB]` (shared by every replica on that Redis: any replica commits or
    /// releases any replica's decision). Redis down: stateful decisions fail closed, stateless ones
    /// keep serving, and the service recovers by itself when Redis answers again.
    #[arg(long, value_name = "STORE", default_value = "memory")]
    pub store: String,
    /// Also POST the audit lines, in batches, to this HTTP collector (`http://HOST[:PORT]/PATH`;
    /// also `AUDIT_STREAM_URL`). Best effort: the audit file stays the durable log, and lines the
    /// bounded queue cannot take are dropped (counted in /metrics), never waited for.
    #[arg(long, value_name = "URL")]
    pub audit_url: Option<String>,
    /// Audit lines queued for the collector (--audit-url) at most, those being sent included.
    #[arg(long, value_name = "LINES", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub audit_url_queue: u32,
    /// Decide `POST /evaluate` bodies that are not `{bundle, context}` on this bundle, with the
    /// evaluate token: a request context, or flat facts (an object without `subject`, `action`,
    /// `resource` or `data`), read as `data`.
    #[arg(long, value_name = "ID")]
    pub default_bundle: Option<String>,
}

pub fn run(args: ServeArgs) -> u8 {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        // Otherwise a log line that cannot be written (standard error closed) is reported with
        // `eprintln!`, which panics: the thread that logged (the Redis follower, a handler) dies.
        .log_internal_errors(false)
        .try_init();
    let mut config = verdict_server::Config::new(args.bind).with_env();
    config.trusted_keys = match crate::keys::trusted_keys(&args.trusted_keys) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    config.state = match crate::store::parse(Some(&args.store)) {
        Ok(crate::store::Store::Memory) => verdict_server::decisions::StateBackend::memory(),
        Ok(crate::store::Store::Redis(store, name)) => {
            // Not a condition to start: the service fails closed until Redis answers.
            if let Err(e) = store.ping() {
                eprintln!(
                    "warning: the state store {name} does not answer ({e}): stateful decisions fail closed until it does"
                );
            }
            verdict_server::decisions::StateBackend::shared(store, name)
        }
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    config.bundles = args.bundles;
    config.watch = args.watch;
    config.poll_interval = Duration::from_millis(args.poll_ms.max(10));
    config.bundles_from = args.bundles_from.map(|url| {
        let mut from = verdict_server::source::RedisBundles::new(url);
        from.prefix = args.bundles_prefix;
        from.replica = args.replica_id;
        from.poll_interval = config.poll_interval;
        from
    });
    config.audit = args.audit.map_or(AuditTarget::Stdout, AuditTarget::File);
    config.audit_fsync = args.audit_fsync;
    config.max_connections = args.max_connections.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    config.eval_threads = args.eval_threads.map(usize::from);
    // The flag wins over the reference's variable; an empty variable is no URL.
    let audit_url = args.audit_url.or_else(|| std::env::var("AUDIT_STREAM_URL").ok().filter(|u| !u.trim().is_empty()));
    config.audit_stream = audit_url.map(|url| verdict_server::stream::StreamOptions {
        queue: usize::try_from(args.audit_url_queue).unwrap_or(usize::MAX),
        ..verdict_server::stream::StreamOptions::new(url)
    });
    config.default_bundle = args.default_bundle;
    if args.insecure_no_auth {
        config.auth = Auth::Disabled;
        eprintln!("WARNING: --insecure-no-auth: authorization is OFF. Anyone who can reach {} may register", args.bind);
        eprintln!("WARNING: bundles and evaluate requests. Never use this outside a local experiment.");
    }
    let result = verdict_server::run(config, |addr| eprintln!("verdict serve: listening on http://{addr}"));
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}
