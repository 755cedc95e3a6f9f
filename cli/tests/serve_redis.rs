//! State on a real Redis (`redis-server` from Debian's packages on a free loopback port; missing
//! one fails under CI): `verdict eval --events --store redis://…` gives byte for byte what the
//! memory store gives; two `verdict serve --store redis://…` replicas spend a shared budget
//! exactly once under 64 concurrent clients, committing and releasing on the other replica; and
//! Redis killed, hung and restarted under load (stateful decisions fail closed, stateless ones
//! keep serving, the service recovers by itself).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use serde_json::Value;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use verdict_store_redis::testing::RedisServer;

const BIN: &str = env!("CARGO_BIN_EXE_verdict");
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const ADMIN: &str = "admin-token-0123456789abcdef-0123456789";
const EVAL: &str = "evaluate-token-0123456789abcdef-0123456";
/// A hang guard for one request (never a measurement).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long recovery may take after Redis is back (a hang guard; it takes about 0.5 s).
const RECOVER_WITHIN: Duration = Duration::from_secs(30);

const CLIENTS: usize = 64;
const REQUESTS: usize = 300;

/// A daily budget of $1000 (the issue's "$1,000 daily budget"), $10 per request. The bundle's
/// timezone is chosen when the test starts so that it is about noon there: the run (well under
/// an hour) never straddles the day boundary its `spend.day` window has.
fn budget_bundle() -> String {
    let hour = i64::from(jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).hour());
    // `Etc/GMT-N` is UTC+N (POSIX's inverted sign); N in -11..=12 is always a valid zone.
    let offset = 12 - hour;
    let zone = match offset {
        0 => "Etc/GMT".to_owned(),
        n if n > 0 => format!("Etc/GMT-{n}"),
        n => format!("Etc/GMT+{}", -n),
    };
    BUDGET.replace("TIMEZONE", &zone)
}

const BUDGET: &str = r#"bundle "budget" {
  version "1.0.0"
  timezone "TIMEZONE"
  hold_ttl "10m"
  schema { amount: number, subject.id: string }
  required [amount, subject.id]
}

state spend {
  add amount
  key [subject.id]
  on [allow]
  apply commit
}

policy budget {
  default allow
  match first

  rule over_budget deny {
    when spend.day + amount > 1000
    reason f"Daily budget exhausted (${spend.day:.2f} / $1000.00)"
  }
}
"#;

/// A stateless bundle served beside it.
const OPEN: &str = r#"bundle "open" {
  version "1.0.0"
}

policy open {
  default allow
  match first

  rule deletes deny {
    when action == "delete"
    reason "deletes are denied"
  }
}
"#;

const SPEND: &str = r#"{"subject": {"id": "agent-1"}, "data": {"amount": 10}}"#;
const READ: &str = r#"{"action": "read"}"#;

/// A redis-server, or `None` when it is not installed and `CI` is not set (the test says so).
fn redis() -> Option<RedisServer> {
    RedisServer::start().unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("serve-redis-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("budget.verdict"), budget_bundle()).unwrap();
    std::fs::write(dir.join("open.verdict"), OPEN).unwrap();
    dir
}

// --- `verdict eval --events` ---------------------------------------------------------------------

fn eval(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).current_dir(WORKSPACE).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code().is_some_and(|c| c <= 1), "{args:?}: exit {:?}\n{stderr}", out.status.code());
    assert!(stderr.is_empty(), "{args:?}: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn events_on_redis_give_the_memory_store_results_byte_for_byte() {
    let Some(server) = redis() else { return };
    let mut db = 0;
    for example in ["spend", "abuse"] {
        let bundle = format!("examples/{example}/bundle.verdict");
        let events = format!("examples/{example}/events.jsonl");
        for backend in ["interp", "vm", "jit"] {
            let base = ["eval", &bundle, "--events", &events, "--trace", "--backend", backend];
            let memory = eval(&base);
            // A database of its own per run: the run's decision ids are `e<line>`.
            db += 1;
            let url = format!("redis://127.0.0.1:{}/{db}", server.port());
            let on_redis = eval(&[&base[..], &["--store", &url]].concat());
            assert_eq!(on_redis, memory, "{example} on {backend}");
            assert_eq!(
                memory.lines().count(),
                std::fs::read_to_string(Path::new(WORKSPACE).join(&events)).unwrap().lines().count()
            );
            assert!(memory.contains("\"holds\"") || example == "abuse", "{example}: the run makes holds");
        }
    }
    // A Redis that does not answer: every decision that reads state fails closed, saying why
    // (those denied by a rule before any read are decided as on the memory store).
    drop(server);
    let spend = ["eval", "examples/spend/bundle.verdict", "--events", "examples/spend/events.jsonl"];
    let memory = eval(&spend);
    let down = eval(&[&spend[..], &["--store", "redis://127.0.0.1:1/"]].concat());
    let mut failed_closed = 0;
    for (m, d) in memory.lines().zip(down.lines()) {
        let (m, d): (Value, Value) = (serde_json::from_str(m).unwrap(), serde_json::from_str(d).unwrap());
        let reason = d["decision"]["reason"].as_str().unwrap();
        if reason.starts_with("state error: store unavailable: ") {
            assert_eq!(d["decision"]["kind"], "deny", "{d}");
            failed_closed += 1;
        } else {
            assert_eq!(d, m, "a decision that reads no state");
            assert!(m.get("holds").is_none());
        }
    }
    assert!(failed_closed > 10, "{failed_closed}");
    let bad = Command::new(BIN)
        .args([
            "eval",
            "examples/spend/bundle.verdict",
            "--events",
            "examples/spend/events.jsonl",
            "--store",
            "mongodb://x",
        ])
        .current_dir(WORKSPACE)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected `memory` or a `redis://HOST:PORT[/DB]` URL"));
}

// --- `verdict serve` replicas ------------------------------------------------------------------

/// A running `verdict serve`; SIGKILLed when dropped (tests stop it with SIGTERM first).
struct Serve {
    child: Child,
    addr: SocketAddr,
    audit: PathBuf,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path, name: &str, store: &str) -> Serve {
    let audit = dir.join(format!("{name}.audit.jsonl"));
    let mut child = Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1:0", "--store", store, "--audit"])
        .arg(&audit)
        .args(["budget.verdict", "open.verdict"])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("POLICY_ENGINE_ADMIN_TOKEN", ADMIN)
        .env("POLICY_ENGINE_EVALUATE_TOKEN", EVAL)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = Arc::new(Mutex::new(String::new()));
    let (pipe, log) = (child.stderr.take().unwrap(), stderr.clone());
    // Drains standard error for the life of the process (a full pipe would block it).
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("verdict serve: listening on http://") {
                let _ = tx.send(addr.to_owned());
            }
            let mut log = log.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("no listening line: {}", stderr.lock().unwrap()));
    Serve { child, addr: addr.parse().unwrap(), audit, stderr }
}

impl Serve {
    /// SIGTERM (the audit log is flushed), then the audit lines.
    fn stop(mut self) -> Vec<Value> {
        let ok =
            Command::new("sh").arg("-c").arg(format!("kill -TERM {}", self.child.id())).status().unwrap().success();
        assert!(ok);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status}: {}", self.stderr.lock().unwrap());
        let log = self.stderr.lock().unwrap().clone();
        assert!(!log.contains("panicked"), "{log}");
        let text = std::fs::read_to_string(&self.audit).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

/// A keep-alive HTTP/1.1 connection (one request at a time, as a client of a load balancer).
struct Conn {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Conn {
        Conn { addr, stream: None }
    }

    /// Sends one request; the status and the JSON body.
    fn call(&mut self, method: &str, path: &str, token: &str, body: &str) -> (u16, Value) {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr).unwrap();
            s.set_read_timeout(Some(REQUEST_TIMEOUT)).unwrap();
            s.set_nodelay(true).unwrap();
            self.stream = Some(BufReader::new(s));
        }
        let stream = self.stream.as_mut().unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.get_mut().write_all(req.as_bytes()).unwrap();
        let mut status_line = String::new();
        stream.read_line(&mut status_line).unwrap();
        let status: u16 =
            status_line.get(9..12).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("{status_line:?}"));
        let (mut len, mut close) = (0usize, false);
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => len = value.trim().parse().unwrap(),
                "connection" => close = value.trim().eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let mut body = vec![0; len];
        stream.read_exact(&mut body).unwrap();
        if close {
            self.stream = None;
        }
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }
}

/// What the clients of a spending run saw.
#[derive(Default)]
struct Tally {
    approved: AtomicU64,
    committed: AtomicU64,
    released: AtomicU64,
    denied: AtomicU64,
    contention: AtomicU64,
    /// Every decision id answered.
    ids: Mutex<Vec<String>>,
}

/// 64 clients send 300 requests of $10 each through two replicas (client `i` evaluates on
/// replica `i % 2` and settles on the other one); every `release_every`-th approval is released
/// instead of committed.
fn spend_through_two_replicas(name: &str, release_every: Option<u64>) {
    let Some(server) = redis() else { return };
    let dir = scratch(name);
    let replicas = [serve(&dir, "a", &server.url()), serve(&dir, "b", &server.url())];
    let addrs = [replicas[0].addr, replicas[1].addr];
    let tally = Arc::new(Tally::default());
    let threads: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let tally = tally.clone();
            std::thread::spawn(move || {
                let mut decide = Conn::new(addrs[i % 2]);
                let mut settle = Conn::new(addrs[(i + 1) % 2]);
                let mut ids = Vec::with_capacity(REQUESTS);
                for _ in 0..REQUESTS {
                    let (status, v) = decide.call("POST", "/bundles/budget/evaluate", EVAL, SPEND);
                    assert_eq!(status, 200, "{v}");
                    let id = v["decision_id"].as_str().unwrap().to_owned();
                    let reason = v["decision"]["reason"].as_str().unwrap();
                    match v["decision"]["kind"].as_str().unwrap() {
                        "allow" => {
                            assert_eq!(v["holds"][0]["amount"], 10, "{v}");
                            let n = tally.approved.fetch_add(1, Ordering::SeqCst) + 1;
                            let release = release_every.is_some_and(|k| n % k == 0);
                            let how = if release { "release" } else { "commit" };
                            let (status, s) = settle.call("POST", &format!("/decisions/{id}/{how}"), EVAL, "");
                            assert_eq!(status, 200, "{s}");
                            let counter = if release { &tally.released } else { &tally.committed };
                            counter.fetch_add(1, Ordering::SeqCst);
                        }
                        "deny" if reason.starts_with("Daily budget exhausted (") => {
                            tally.denied.fetch_add(1, Ordering::SeqCst);
                        }
                        // Fail closed when the optimistic retries ran out: a deny, never an overspend.
                        "deny" if reason == "state error: store contention: the values read kept changing" => {
                            tally.contention.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => panic!("unexpected decision: {v}"),
                    }
                    ids.push(id);
                }
                tally.ids.lock().unwrap().extend(ids);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let approved = tally.approved.load(Ordering::SeqCst);
    let committed = tally.committed.load(Ordering::SeqCst);
    let released = tally.released.load(Ordering::SeqCst);
    let (denied, contention) = (tally.denied.load(Ordering::SeqCst), tally.contention.load(Ordering::SeqCst));
    let total = (CLIENTS * REQUESTS) as u64;
    assert_eq!(approved + denied + contention, total);
    assert_eq!(approved, committed + released);
    match release_every {
        None => assert_eq!((approved, released), (100, 0)),
        // Released money is spent again; what stays spent is what was committed.
        Some(_) => assert!(approved > 100 && released > 0 && committed <= 100, "{approved} {committed} {released}"),
    }
    // The total in Redis, as each replica reads it: exactly what was committed.
    let spent = format!("Daily budget exhausted (${}.00 / $1000.00)", committed * 10);
    let mut finals = Vec::new();
    for addr in addrs {
        let (status, v) = Conn::new(addr).call(
            "POST",
            "/bundles/budget/evaluate",
            EVAL,
            r#"{"subject": {"id": "agent-1"}, "data": {"amount": 1000}}"#,
        );
        assert_eq!((status, v["decision"]["reason"].as_str()), (200, Some(spent.as_str())), "{v}");
        finals.push(v["decision_id"].as_str().unwrap().to_owned());
    }
    // The audit lines of both replicas account for every request and every settlement.
    let [a, b] = replicas;
    let lines: Vec<Value> = a.stop().into_iter().chain(b.stop()).collect();
    let evaluations: Vec<&Value> = lines.iter().filter(|l| l["event"] == "evaluation").collect();
    let mut answered: Vec<String> = tally.ids.lock().unwrap().clone();
    answered.extend(finals);
    let audited: HashSet<&str> = evaluations.iter().map(|l| l["decision_id"].as_str().unwrap()).collect();
    assert_eq!(evaluations.len(), answered.len());
    assert_eq!(
        audited,
        answered.iter().map(String::as_str).collect::<HashSet<_>>(),
        "decision ids are unique and all audited"
    );
    assert_eq!(evaluations.iter().filter(|l| l["decision"] == "allow").count() as u64, approved);
    assert!(evaluations.iter().filter(|l| l["decision"] == "allow").all(|l| l["holds"][0]["amount"] == 10));
    let settled = |event: &str| lines.iter().filter(|l| l["event"] == event).count() as u64;
    assert_eq!((settled("decision_committed"), settled("decision_released")), (committed, released));
    eprintln!(
        "{name}: approved {approved}, committed {committed}, released {released}, denied {denied}, contention {contention}"
    );
}

#[test]
fn two_replicas_spend_a_shared_budget_exactly_once() {
    spend_through_two_replicas("commit", None);
}

#[test]
fn released_money_is_spent_again_and_never_overspent() {
    spend_through_two_replicas("release", Some(10));
}

// --- Redis faults ------------------------------------------------------------------------------

/// Load on a stateful and a stateless bundle while Redis is killed, then restarted: stateful
/// decisions fail closed with the store's fault as reason (never hang, never 5xx), stateless ones
/// keep being allowed, commits answer 503, and the service recovers by itself. Then a Redis that
/// hangs (SIGSTOP): decisions fail closed within the store's timeout.
#[test]
fn redis_killed_hung_and_restarted_under_load() {
    let Some(mut server) = redis() else { return };
    let dir = scratch("faults");
    let replica = serve(&dir, "a", &server.url());
    let addr = replica.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let failed_closed = Arc::new(AtomicU64::new(0));
    let stateless_ok = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let (stop, failed_closed, stateless_ok) = (stop.clone(), failed_closed.clone(), stateless_ok.clone());
            std::thread::spawn(move || {
                let mut conn = Conn::new(addr);
                while !stop.load(Ordering::Relaxed) {
                    let stateful = i % 2 == 0;
                    let (path, body) =
                        if stateful { ("/bundles/budget/evaluate", SPEND) } else { ("/bundles/open/evaluate", READ) };
                    let started = Instant::now();
                    let (status, v) = conn.call("POST", path, EVAL, body);
                    assert!(started.elapsed() < REQUEST_TIMEOUT);
                    assert_eq!(status, 200, "{v}");
                    let (kind, reason) =
                        (v["decision"]["kind"].as_str().unwrap(), v["decision"]["reason"].as_str().unwrap());
                    if stateful {
                        if kind == "deny" {
                            assert!(
                                reason.starts_with("state error: store unavailable: ")
                                    || reason.starts_with("Daily budget exhausted"),
                                "{v}"
                            );
                            if reason.starts_with("state error") {
                                failed_closed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    } else {
                        assert_eq!(kind, "allow", "stateless decisions never depend on the store: {v}");
                        stateless_ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let mut conn = Conn::new(addr);
    let wait_for = |what: &str, f: &mut dyn FnMut() -> bool| {
        let started = Instant::now();
        while !f() {
            assert!(started.elapsed() < RECOVER_WITHIN, "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let decide = |conn: &mut Conn| {
        conn.call("POST", "/bundles/budget/evaluate", EVAL, r#"{"subject": {"id": "agent-2"}, "data": {"amount": 1}}"#)
            .1
    };
    let held = decide(&mut conn);
    assert_eq!(held["decision"]["kind"], "allow", "{held}");

    // Killed: fail closed, stateless ones keep going.
    server.kill();
    let stateless_before = stateless_ok.load(Ordering::Relaxed);
    wait_for("stateful decisions fail closed", &mut || failed_closed.load(Ordering::Relaxed) >= 50);
    wait_for("stateless decisions keep serving", &mut || {
        stateless_ok.load(Ordering::Relaxed) >= stateless_before + 200
    });
    let v = decide(&mut conn);
    assert_eq!(v["decision"]["kind"], "deny");
    assert!(v["decision"]["reason"].as_str().unwrap().starts_with("state error: store unavailable: "), "{v}");
    let id = held["decision_id"].as_str().unwrap();
    let (status, v) = conn.call("POST", &format!("/decisions/{id}/commit"), EVAL, "");
    assert_eq!((status, v["detail"].as_str()), (503, Some("the state store is unavailable")), "{v}");
    let text = metrics_text(addr);
    assert!(text.contains("verdict_state_store_failing 1"), "{text}");

    // Restarted (empty): the service recovers by itself.
    server.restart().unwrap();
    wait_for("recovery without a restart", &mut || decide(&mut conn)["decision"]["kind"] == "allow");
    assert!(metrics_text(addr).contains("verdict_state_store_failing 0"));

    // Hung: each decision waits for the store's timeout at most, then fails closed.
    server.signal("STOP").unwrap();
    let started = Instant::now();
    let v = decide(&mut conn);
    assert!(started.elapsed() < REQUEST_TIMEOUT);
    assert!(v["decision"]["reason"].as_str().unwrap().starts_with("state error: store unavailable: "), "{v}");
    server.signal("CONT").unwrap();
    wait_for("recovery after a hang", &mut || decide(&mut conn)["decision"]["kind"] == "allow");

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let lines = replica.stop();
    let errors = lines
        .iter()
        .filter(|l| l["event"] == "evaluation" && l["reason"].as_str().is_some_and(|r| r.starts_with("state error")))
        .count();
    assert!(errors >= 50, "fail-closed decisions are audited with their reason");
}

fn metrics_text(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(REQUEST_TIMEOUT)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
