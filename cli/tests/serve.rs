//! `verdict serve` as a process: flags and environment, the listening line, SIGHUP reloads,
//! SIGTERM shutdown with the audit log flushed, and the loud insecure mode.
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
    let mut cmd = Command::new(BIN);
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
