//! `verdict serve` as a process: flags and environment, the listening line, SIGHUP reloads,
//! SIGTERM shutdown with the audit log flushed, the loud insecure mode; and what the process
//! must survive: SIGKILL under load (no answered decision missing from the audit log) and
//! clients that hold every descriptor it may open (health still answers).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_verdict");
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const ADMIN: &str = "admin-token-0123456789abcdef-0123456789";
const EVAL: &str = "evaluate-token-0123456789abcdef-0123456";

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("serve-cli-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running `verdict serve` and the lines of its standard error.
struct Serve {
    child: Child,
    addr: SocketAddr,
    /// Standard error up to the listening line.
    startup: String,
    stderr: mpsc::Receiver<String>,
}

fn spawn(args: &[&str], tokens: bool) -> Result<Serve, (i32, String)> {
    spawn_limited(args, tokens, None)
}

/// [`spawn`], with the open-file limit (soft and hard) set to `files` first when given.
fn spawn_limited(args: &[&str], tokens: bool, files: Option<u32>) -> Result<Serve, (i32, String)> {
    let mut cmd = match files {
        None => Command::new(BIN),
        Some(n) => {
            let mut sh = Command::new("sh");
            sh.arg("-c").arg(format!("ulimit -n {n} && exec \"$0\" \"$@\"")).arg(BIN);
            sh
        }
    };
    cmd.arg("serve")
        .args(args)
        .current_dir(WORKSPACE)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd.env_remove("POLICY_ENGINE_ADMIN_TOKEN").env_remove("POLICY_ENGINE_EVALUATE_TOKEN");
    if tokens {
        cmd.env("POLICY_ENGINE_ADMIN_TOKEN", ADMIN).env("POLICY_ENGINE_EVALUATE_TOKEN", EVAL);
    }
    let mut child = cmd.spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
        seen.push_str(&line);
        seen.push('\n');
        if let Some(addr) = line.strip_prefix("verdict serve: listening on http://") {
            return Ok(Serve { child, addr: addr.parse().unwrap(), startup: seen, stderr: rx });
        }
    }
    let status = child.wait().unwrap();
    Err((status.code().unwrap_or(-1), seen))
}

/// One HTTP/1.1 request with `Connection: close`; the status code and the JSON body.
fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Sends a signal with the shell's `kill` builtin (no procps needed on a fresh machine).
fn signal(child: &Child, sig: &str) {
    let ok = Command::new("sh").arg("-c").arg(format!("kill -{sig} {}", child.id())).status().unwrap().success();
    assert!(ok, "kill -{sig}");
}

fn ctx() -> String {
    std::fs::read_to_string(Path::new(WORKSPACE).join("examples/quickstart/ctx.json")).unwrap()
}

fn yaml(version: &str) -> String {
    std::fs::read_to_string(Path::new(WORKSPACE).join("examples/quickstart/bundle.yaml"))
        .unwrap()
        .replace("version: \"1.2.0\"", &format!("version: \"{version}\""))
}

#[test]
fn serves_reloads_on_sighup_and_flushes_the_audit_log_on_sigterm() {
    let dir = scratch("lifecycle");
    let bundle = dir.join("bundle.yaml");
    std::fs::write(&bundle, yaml("1.0.0")).unwrap();
    let audit = dir.join("audit.jsonl");
    let mut serve = spawn(
        &["--bind", "127.0.0.1:0", "--audit", audit.to_str().unwrap(), "--poll-ms", "600000", bundle.to_str().unwrap()],
        true,
    )
    .unwrap();
    let path = "/bundles/edu-gate/evaluate";
    let (status, v) = http(serve.addr, "POST", path, Some(EVAL), &ctx());
    assert_eq!((status, v["bundle_version"].clone()), (200, Value::from("1.0.0")), "{v}");
    assert_eq!(http(serve.addr, "GET", "/bundles", None, "").0, 401);
    // SIGHUP reloads at once (polling is off for ten minutes here); a broken file is refused.
    std::fs::write(&bundle, yaml("2.0.0")).unwrap();
    signal(&serve.child, "HUP");
    let mut version = Value::Null;
    for _ in 0..100 {
        version = http(serve.addr, "POST", path, Some(EVAL), &ctx()).1["bundle_version"].clone();
        if version == "2.0.0" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(version, "2.0.0");
    std::fs::write(&bundle, "bundle_id: edu-gate\npolicies: []\n").unwrap();
    signal(&serve.child, "HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(http(serve.addr, "POST", path, Some(EVAL), &ctx()).1["bundle_version"], "2.0.0");
    // SIGTERM: graceful shutdown, exit 0, every audit line written.
    signal(&serve.child, "TERM");
    let status = serve.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let log: Vec<String> = serve.stderr.try_iter().collect();
    assert!(log.iter().any(|l| l.contains("does not compile")), "{log:#?}");
    let lines: Vec<Value> =
        std::fs::read_to_string(&audit).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    let evaluations = events.iter().filter(|e| **e == "evaluation").count();
    assert!(evaluations >= 3, "{events:?}");
    assert!(
        events.contains(&"bundle_loaded") && events.contains(&"bundle_reloaded") && events.contains(&"bundle_rejected")
    );
}

#[test]
fn startup_errors_exit_2() {
    let err = spawn(&["--bind", "127.0.0.1:0", "no/such/bundle.yaml"], true).err().unwrap();
    assert_eq!(err.0, 2, "{}", err.1);
    assert!(err.1.contains("no/such/bundle.yaml"), "{}", err.1);
    let err = spawn(&["--bind", "0.0.0.0:0", "--insecure-no-auth"], false).err().unwrap();
    assert_eq!(err.0, 2, "{}", err.1);
    assert!(err.1.contains("loopback"), "{}", err.1);
}

#[test]
fn insecure_mode_is_loud_and_open() {
    let dir = scratch("insecure");
    let audit = dir.join("audit.jsonl");
    let mut serve = spawn(
        &[
            "--bind",
            "127.0.0.1:0",
            "--insecure-no-auth",
            "--audit",
            audit.to_str().unwrap(),
            "examples/quickstart/bundle.yaml",
        ],
        false,
    )
    .unwrap();
    let (status, v) = http(serve.addr, "POST", "/bundles/edu-gate/evaluate", None, &ctx());
    assert_eq!((status, v["decision"]["kind"].clone()), (200, Value::from("allow")));
    signal(&serve.child, "TERM");
    assert_eq!(serve.child.wait().unwrap().code(), Some(0));
    let _ = serve.stderr.try_iter().count();
    assert!(serve.startup.contains("WARNING: --insecure-no-auth: authorization is OFF"), "{}", serve.startup);
    assert!(serve.startup.contains("AUTHORIZATION IS OFF"), "{}", serve.startup);
}

#[test]
fn without_tokens_protected_routes_answer_503() {
    let mut serve = spawn(&["--bind", "127.0.0.1:0", "--audit", "/dev/null"], false).unwrap();
    assert_eq!(http(serve.addr, "GET", "/bundles", Some(ADMIN), "").0, 503);
    assert_eq!(http(serve.addr, "GET", "/healthz", None, "").0, 200);
    signal(&serve.child, "TERM");
    assert_eq!(serve.child.wait().unwrap().code(), Some(0));
}

/// A bundle (reference JSON) whose `match priority` policy has two rules of one priority and
/// different effects that hold together: ambiguous (V005), an error wherever it is compiled.
fn ambiguous(id: &str) -> String {
    format!(
        r#"{{"bundle_id": "{id}", "version": "9.9.9", "policies": [{{"id": "p", "match": "priority", "rules": [
            {{"id": "a", "effect": "allow", "priority": 1, "when": "subject.role == 'admin'"}},
            {{"id": "d", "effect": "deny", "priority": 1, "when": "action == 'update'"}}]}}]}}"#
    )
}

#[test]
fn ambiguous_bundles_are_refused_wherever_they_load() {
    let dir = scratch("ambiguous");
    let file = dir.join("amb.json");
    std::fs::write(&file, ambiguous("amb")).unwrap();
    // On the command line, the service does not start.
    let err = spawn(&["--bind", "127.0.0.1:0", file.to_str().unwrap()], true).err().unwrap();
    assert_eq!(err.0, 2, "{}", err.1);
    assert!(err.1.contains("V005"), "{}", err.1);
    // A watched directory with a good bundle; then every way of bringing the ambiguous one in.
    let watch = dir.join("watch");
    std::fs::create_dir_all(&watch).unwrap();
    std::fs::write(watch.join("edu.yaml"), yaml("1.0.0")).unwrap();
    let mut serve = spawn(
        &["--bind", "127.0.0.1:0", "--audit", "/dev/null", "--poll-ms", "50", "--watch", watch.to_str().unwrap()],
        true,
    )
    .unwrap();
    let (status, v) = http(serve.addr, "POST", "/bundles", Some(ADMIN), &ambiguous("amb"));
    assert_eq!(status, 422, "{v}");
    assert!(v.to_string().contains("V005"), "{v}");
    let (status, v) = http(serve.addr, "PUT", "/bundles/edu-gate", Some(ADMIN), &ambiguous("edu-gate"));
    assert_eq!(status, 422, "{v}");
    std::fs::write(watch.join("amb.json"), ambiguous("amb-watched")).unwrap();
    // The watched file itself is replaced (atomically) by an ambiguous version (JSON is YAML).
    std::fs::write(dir.join("edu.yaml.tmp"), ambiguous("edu-gate")).unwrap();
    std::fs::rename(dir.join("edu.yaml.tmp"), watch.join("edu.yaml")).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (_, list) = http(serve.addr, "GET", "/bundles", Some(ADMIN), "");
    assert!(!list.to_string().contains("amb"), "{list}");
    let (status, v) = http(serve.addr, "POST", "/bundles/edu-gate/evaluate", Some(EVAL), &ctx());
    assert_eq!((status, v["bundle_version"].clone()), (200, Value::from("1.0.0")), "the old version serves on: {v}");
    signal(&serve.child, "TERM");
    assert_eq!(serve.child.wait().unwrap().code(), Some(0));
}

#[test]
fn audit_fsync_needs_a_file() {
    // Standard output is /dev/null here: it cannot be synced.
    let err = spawn(&["--bind", "127.0.0.1:0", "--audit-fsync"], true).err().unwrap();
    assert_eq!(err.0, 2, "{}", err.1);
    assert!(err.1.contains("--audit-fsync needs a file"), "{}", err.1);
    let dir = scratch("fsync");
    let audit = dir.join("audit.jsonl");
    let mut serve = spawn(
        &[
            "--bind",
            "127.0.0.1:0",
            "--audit",
            audit.to_str().unwrap(),
            "--audit-fsync",
            "examples/quickstart/bundle.yaml",
        ],
        true,
    )
    .unwrap();
    let (status, _) = http(serve.addr, "POST", "/bundles/edu-gate/evaluate", Some(EVAL), &ctx());
    assert_eq!(status, 200);
    // Written (and synced) before the answer: there before any shutdown.
    let log = std::fs::read_to_string(&audit).unwrap();
    assert!(log.contains("\"event\":\"evaluation\""), "{log}");
    signal(&serve.child, "TERM");
    assert_eq!(serve.child.wait().unwrap().code(), Some(0));
}

/// Reads one HTTP/1.1 response from a keep-alive connection: the status and the `X-Request-Id`.
fn read_response(r: &mut BufReader<TcpStream>) -> std::io::Result<(u16, Option<String>)> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status = line.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (mut length, mut id) = (0usize, None);
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (name, value) = l.split_once(':').unwrap_or((l, ""));
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap_or(0),
            "x-request-id" => id = Some(value.trim().to_owned()),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body)?;
    Ok((status, id))
}

/// One load client: evaluations on one keep-alive connection, each with its own `X-Request-Id`,
/// until the server goes away; the ids of the 2xx answers it read.
fn load_client(addr: SocketAddr, name: String, answered: &std::sync::atomic::AtomicUsize) -> Vec<String> {
    let mut ids = Vec::new();
    let Ok(stream) = TcpStream::connect(addr) else { return ids };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let body = ctx();
    for i in 0.. {
        let id = format!("{name}-{i}");
        let req = format!(
            "POST /bundles/edu-gate/evaluate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {EVAL}\r\nContent-Type: application/json\r\nX-Request-Id: {id}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(req.as_bytes()).is_err() {
            break;
        }
        match read_response(&mut reader) {
            Ok((status, echoed)) if (200..300).contains(&status) => {
                assert_eq!(echoed.as_deref(), Some(id.as_str()));
                ids.push(id);
                answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok((status, _)) => panic!("status {status} under load"),
            Err(_) => break,
        }
    }
    ids
}

/// SIGKILL in the middle of load loses no answered decision: every 2xx a client read has its
/// audit line (matched by correlation id), in three runs.
#[test]
fn sigkill_under_load_loses_no_answered_decision() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    for run in 0..3 {
        let dir = scratch(&format!("sigkill-{run}"));
        let audit = dir.join("audit.jsonl");
        let mut serve = spawn(
            &["--bind", "127.0.0.1:0", "--audit", audit.to_str().unwrap(), "examples/quickstart/bundle.yaml"],
            true,
        )
        .unwrap();
        let answered = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = (0..16)
            .map(|c| {
                let (addr, answered) = (serve.addr, answered.clone());
                std::thread::spawn(move || load_client(addr, format!("run{run}-c{c}"), &answered))
            })
            .collect();
        // Kill once the load is well under way (a hang guard, not a timing assertion).
        let started = std::time::Instant::now();
        while answered.load(Ordering::Relaxed) < 3_000 {
            assert!(started.elapsed() < Duration::from_secs(120), "the load never got going");
            std::thread::sleep(Duration::from_millis(5));
        }
        signal(&serve.child, "KILL");
        serve.child.wait().unwrap();
        let ids: Vec<String> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
        let _ = serve.stderr.try_iter().count();
        let log = std::fs::read_to_string(&audit).unwrap();
        // A batch being written when the process died may end in a partial line: it was never
        // acknowledged, so no answer depends on it.
        let logged: std::collections::HashSet<String> = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["event"] == "evaluation")
            .filter_map(|l| l["correlation_id"].as_str().map(str::to_owned))
            .collect();
        let missing: Vec<&String> = ids.iter().filter(|id| !logged.contains(*id)).collect();
        assert!(ids.len() >= 3_000, "run {run}: only {} answers", ids.len());
        assert!(
            missing.is_empty(),
            "run {run}: {} of {} answered decisions are not in the audit log: {:?}",
            missing.len(),
            ids.len(),
            &missing[..missing.len().min(5)]
        );
    }
}

/// Clients that never read their answers hold every descriptor the process may open (the
/// server runs with a limit of 128): health still answers, on the overflow lane.
#[test]
fn clients_holding_every_descriptor_do_not_starve_health() {
    let mut serve = spawn_limited(
        &["--bind", "127.0.0.1:0", "--audit", "/dev/null", "examples/quickstart/bundle.yaml"],
        true,
        Some(128),
    )
    .unwrap();
    let burst = "GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2_000);
    let mut hogs = Vec::new();
    for _ in 0..160 {
        let mut s = TcpStream::connect(serve.addr).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        // Queued in the kernel's buffers; the answers are never read.
        let _ = s.write_all(burst.as_bytes());
        hogs.push(s);
    }
    let (status, v) = http(serve.addr, "GET", "/healthz", None, "");
    assert_eq!((status, v), (200, serde_json::json!({"status": "ok"})));
    let (status, _) = http(serve.addr, "GET", "/metrics", None, "");
    assert_eq!(status, 200);
    drop(hogs);
    signal(&serve.child, "TERM");
    assert_eq!(serve.child.wait().unwrap().code(), Some(0));
    let _ = serve.stderr.try_iter().count();
}
