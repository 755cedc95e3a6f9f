//! The service against clients and bundles that try to starve it, on real sockets on 127.0.0.1:
//! connections that never send, never read or simply stay open beyond the limit; bundles that are
//! slow to evaluate; an audit log that cannot be written. And the start errors, as types.
//!
//! No test asserts a speed: waits are hang guards (generous timeouts), and "promptly" is shown by
//! order (health answers while slow evaluations are still running).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use verdict_server::audit::{AuditError, AuditTarget};
use verdict_server::auth::Auth;
use verdict_server::{Config, Server, StartError, start};

const ADMIN: &str = "admin-token-0123456789abcdef-0123456789";
const EVAL: &str = "evaluate-token-0123456789abcdef-0123456";
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
/// How long any single wait may take before the test is declared hung.
const GUARD: Duration = Duration::from_secs(60);

static SCRATCH: AtomicUsize = AtomicUsize::new(0);

fn scratch(name: &str) -> PathBuf {
    let n = SCRATCH.fetch_add(1, Ordering::Relaxed);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("hostile-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config(dir: &Path) -> Config {
    let mut config = Config::new("127.0.0.1:0".parse().unwrap());
    config.auth = Auth::from_tokens(Some(ADMIN.into()), Some(EVAL.into()));
    config.audit = AuditTarget::File(dir.join("audit.jsonl"));
    config.bundles = vec![Path::new(WORKSPACE).join("examples/quickstart/bundle.verdict")];
    config
}

fn admin_ctx() -> String {
    json!({"subject": {"id": "u-17", "role": "admin"}, "action": "update", "resource": {"type": "gradebook", "id": "gb-3", "tags": []}})
        .to_string()
}

/// One request on a fresh connection (`Connection: close`); the whole response as text, or
/// what arrived before the guard.
async fn request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &str) -> String {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(head.as_bytes()).await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&out).into_owned())
    };
    match tokio::time::timeout(GUARD, exchange).await {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => format!("connection error: {e}"),
        Err(_) => panic!("{method} {path}: no answer within {GUARD:?} (hang guard)"),
    }
}

fn status(resp: &str) -> u16 {
    resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
}

fn body(resp: &str) -> Value {
    resp.split("\r\n\r\n").nth(1).and_then(|b| serde_json::from_str(b).ok()).unwrap_or(Value::Null)
}

/// The value of a metric line `name value` (or with labels in `name`).
fn metric(resp: &str, name: &str) -> Option<u64> {
    resp.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Polls until `check` holds (a hang guard, not a timing assertion).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let outcome = check().await;
        match outcome {
            Ok(()) => return,
            Err(last) if tokio::time::Instant::now() >= deadline => panic!("{what}: still not after {GUARD:?}: {last}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn audit_lines(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn stop(server: Server) {
    server.shutdown().await.unwrap();
}

// --- Connections -----------------------------------------------------------------------------------

/// Clients that hold every connection the service will serve (and more) cannot keep health and
/// metrics from answering; other requests beyond the limit are told to retry; once the clients
/// leave, the service serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_answer_at_the_connection_limit() {
    let dir = scratch("limit");
    let mut c = config(&dir);
    c.max_connections = Some(8);
    c.overflow_connections = 4;
    // Long enough that no timeout frees a place during the test.
    c.header_timeout = Duration::from_secs(300);
    let server = start(c).await.unwrap();
    let addr = server.addr();
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    let resp = request(addr, "GET", "/healthz", None, "").await;
    assert_eq!((status(&resp), body(&resp)), (200, json!({"status": "ok"})), "{resp}");
    let resp = request(addr, "GET", "/metrics", None, "").await;
    assert_eq!(status(&resp), 200, "{resp}");
    assert!(metric(&resp, "verdict_connections_open").unwrap() <= 8, "{resp}");
    assert!(metric(&resp, "verdict_connections_over_limit_total").unwrap() >= 32, "{resp}");
    let resp = request(addr, "POST", "/bundles/edu-gate/evaluate", Some(EVAL), &admin_ctx()).await;
    assert_eq!(status(&resp), 503, "{resp}");
    assert!(resp.to_ascii_lowercase().contains("retry-after: 1"), "{resp}");
    assert_eq!(body(&resp)["detail"], "the server is at its connection limit; retry later");
    // The clients leave: decisions are served again.
    drop(idle);
    eventually("an evaluation is served once the idle clients left", || async {
        let resp = request(addr, "POST", "/bundles/edu-gate/evaluate", Some(EVAL), &admin_ctx()).await;
        if status(&resp) == 200 { Ok(()) } else { Err(resp) }
    })
    .await;
    stop(server).await;
}

/// A connection that never sends a byte is closed after the header timeout, as one that stops in
/// the middle of its headers is (`http.rs`) and one idle between requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_send_are_closed() {
    let dir = scratch("silent");
    let mut c = config(&dir);
    c.header_timeout = Duration::from_millis(300);
    let server = start(c).await.unwrap();
    let mut s = TcpStream::connect(server.addr()).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(GUARD, s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the silent connection is still open after {GUARD:?}");
    stop(server).await;
}

/// A client that sends requests without reading the answers (a pipeline that never drains)
/// stalls the server's writes: it is dropped after the write timeout, and its place is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_do_not_read_are_dropped() {
    let dir = scratch("no-read");
    let mut c = config(&dir);
    c.max_connections = Some(4);
    c.write_timeout = Duration::from_millis(300);
    c.header_timeout = Duration::from_secs(300);
    let server = start(c).await.unwrap();
    let addr = server.addr();
    let mut readers = Vec::new();
    for _ in 0..4 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        // A small receive window, so the server's writes stall after a few answers.
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        let (read, mut write) = stream.into_split();
        readers.push(read);
        tokio::spawn(async move {
            let burst = "GET / HTTP/1.1\r\nHost: t\r\n\r\n".repeat(100);
            for _ in 0..2_000 {
                if write.write_all(burst.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
    }
    eventually("the four clients that do not read are dropped", || async {
        let resp = request(addr, "GET", "/metrics", None, "").await;
        match metric(&resp, "verdict_connection_write_timeouts_total") {
            Some(n) if n >= 4 => Ok(()),
            _ => Err(resp),
        }
    })
    .await;
    // Their places are free: a route the overflow lane does not serve answers.
    eventually("the main lane serves again", || async {
        let resp = request(addr, "GET", "/version", None, "").await;
        if status(&resp) == 200 { Ok(()) } else { Err(resp) }
    })
    .await;
    drop(readers);
    stop(server).await;
}

// --- Slow bundles ----------------------------------------------------------------------------------

/// A bundle whose every rule runs a regular expression over the request's text: each
/// evaluation scans the text once per rule, and a trace records the text once per rule.
fn slow_bundle(rules: usize) -> String {
    let mut text = String::from("bundle \"slow\" {\n  version \"1.0.0\"\n}\n\npolicy \"scan\" {\n  default allow\n");
    for i in 0..rules {
        let pattern = format!("(?:ab){{{}}}c|x{{{i}}}y", 2 + i % 40);
        text.push_str(&format!("\n  rule r{i} deny {{\n    when resource.text matches \"{pattern}\"\n  }}\n"));
    }
    text.push_str("}\n");
    text
}

/// Evaluations of a slow bundle run beside the async workers: while more of them than there are
/// workers and evaluation threads are in flight, health, metrics and the accept loop answer,
/// before any of the slow evaluations finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_evaluations_leave_health_answering() {
    let dir = scratch("slow");
    let bundle = dir.join("slow.verdict");
    std::fs::write(&bundle, slow_bundle(600)).unwrap();
    let mut c = config(&dir);
    c.bundles = vec![bundle];
    c.eval_threads = Some(2);
    let server = start(c).await.unwrap();
    let addr = server.addr();
    let ctx = json!({"action": "read", "resource": {"text": "ab".repeat(15_000)}}).to_string();
    let finished = std::sync::Arc::new(AtomicUsize::new(0));
    let mut slow = Vec::new();
    for _ in 0..4 {
        let (ctx, finished) = (ctx.clone(), finished.clone());
        slow.push(tokio::spawn(async move {
            let resp = request(addr, "POST", "/bundles/slow/evaluate?trace=true", Some(EVAL), &ctx).await;
            finished.fetch_add(1, Ordering::SeqCst);
            resp
        }));
    }
    // Let the slow requests reach the server and start evaluating (each takes over a second in a
    // debug build; on main the health requests then wait for them).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut answered = 0;
    for path in ["/healthz", "/metrics", "/healthz", "/version"] {
        let resp = request(addr, "GET", path, None, "").await;
        assert_eq!(status(&resp), 200, "{path}: {resp}");
        answered += 1;
    }
    let done = finished.load(Ordering::SeqCst);
    assert_eq!(done, 0, "{answered} health requests waited for {done} slow evaluations to finish");
    for s in slow {
        let resp = s.await.unwrap();
        assert_eq!(status(&resp), 200, "{}", &resp[..resp.len().min(300)]);
        assert_eq!(body(&resp)["decision"]["kind"], "allow");
    }
    stop(server).await;
}

// --- The audit log -----------------------------------------------------------------------------------

/// When the audit line cannot be written, the decision is not answered: 503, counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_audit_log_withholds_answers() {
    let dir = scratch("full");
    let mut c = config(&dir);
    c.audit = AuditTarget::File(PathBuf::from("/dev/full"));
    let server = start(c).await.unwrap();
    let addr = server.addr();
    let resp = request(addr, "POST", "/bundles/edu-gate/evaluate", Some(EVAL), &admin_ctx()).await;
    assert_eq!((status(&resp), body(&resp)), (503, json!({"detail": "the audit log cannot be written"})), "{resp}");
    let resp = request(addr, "GET", "/metrics", None, "").await;
    assert_eq!(metric(&resp, "verdict_audit_write_failures_total"), Some(1), "{resp}");
    // Health does not depend on the log.
    assert_eq!(status(&request(addr, "GET", "/healthz", None, "").await), 200);
    stop(server).await;
}

/// With `fsync`, lines are synced before the answers leave; a target that cannot be synced is
/// refused at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_fsync() {
    let dir = scratch("fsync");
    let mut c = config(&dir);
    c.audit_fsync = true;
    let server = start(c).await.unwrap();
    let resp = request(server.addr(), "POST", "/bundles/edu-gate/evaluate", Some(EVAL), &admin_ctx()).await;
    assert_eq!(status(&resp), 200, "{resp}");
    let id =
        resp.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("x-request-id: ").map(str::to_owned)).unwrap();
    // Written before the answer: no shutdown (flush) needed to find it.
    let lines = audit_lines(&dir);
    assert!(lines.iter().any(|l| l["event"] == "evaluation" && l["correlation_id"] == id.as_str()), "{lines:?}");
    stop(server).await;

    let mut c = config(&dir);
    c.audit = AuditTarget::File(PathBuf::from("/dev/full"));
    c.audit_fsync = true;
    let err = start(c).await.unwrap_err();
    assert!(matches!(err, StartError::Audit(AuditError::Sync(_))), "{err:?}");
    assert!(err.to_string().contains("--audit-fsync needs a file"), "{err}");
}

// --- Start errors are types ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_errors_are_types() {
    let dir = scratch("errors");
    let mut c = config(&dir);
    c.audit = AuditTarget::File(dir.join("no/such/dir/audit.jsonl"));
    let err = start(c).await.unwrap_err();
    assert!(matches!(&err, StartError::Audit(AuditError::Open(_))), "{err:?}");
    assert!(err.to_string().starts_with("cannot open the audit log `"), "{err}");

    let server = start(config(&dir)).await.unwrap();
    let mut c = config(&dir);
    c.bind = server.addr();
    let err = start(c).await.unwrap_err();
    assert!(matches!(&err, StartError::Bind(b) if b.bind == server.addr()), "{err:?}");
    stop(server).await;

    let mut c = config(&dir);
    let bad = dir.join("bad.verdict");
    std::fs::write(&bad, "bundle \"x\" {\n  version 3\n}\n").unwrap();
    c.bundles = vec![bad.clone()];
    let err = start(c).await.unwrap_err();
    let StartError::Bundles(failed) = &err else { panic!("{err:?}") };
    assert_eq!(failed.failures.len(), 1);
    assert_eq!(failed.failures[0].0, bad);
    assert!(matches!(&failed.failures[0].1, verdict_server::reload::LoadError::Compile(c) if !c.errors.is_empty()));
}
