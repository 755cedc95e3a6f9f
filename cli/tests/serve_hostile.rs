//! `verdict serve` on hostile and mistaken input (issue 10): a bundle nested 30,000 deep, POSTed
//! or dropped in the watched directory, is refused while the service goes on; a bare Decision
//! Card POSTed where `{card, attestation, allowed_actions}` is expected is told so.
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
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("serve-hostile-{name}"));
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
    http_as(addr, method, path, token, "application/json", body)
}

/// [`http`] with another content type.
fn http_as(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &str,
) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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

/// `obligations` nested 30,000 deep: about 120 KB, under the body cap.
fn deep_obligations() -> String {
    const N: usize = 30_000;
    format!(
        "bundle deep {{}}\npolicy p {{\n  rule r allow {{\n    when true\n    obligations {}1{}\n  }}\n}}\n",
        "{a:".repeat(N),
        "}".repeat(N)
    )
}

/// A bundle nested 30,000 deep killed the service when POSTed, and every restart when dropped in
/// the watched directory. Now it is refused and the service goes on.
#[test]
fn a_deeply_nested_bundle_is_refused_and_the_service_goes_on() {
    let dir = scratch("deep");
    let watch = dir.join("watch");
    std::fs::create_dir_all(&watch).unwrap();
    std::fs::write(watch.join("deep.verdict"), deep_obligations()).unwrap();
    let mut serve = spawn(
        &[
            "--bind",
            "127.0.0.1:0",
            "--audit",
            "/dev/null",
            "--poll-ms",
            "100",
            "--watch",
            watch.to_str().unwrap(),
            "examples/quickstart/bundle.yaml",
        ],
        true,
    )
    .unwrap();
    let body = deep_obligations();
    assert!(body.len() < 128 * 1024);
    let (status, v) = http_as(serve.addr, "POST", "/bundles", Some(ADMIN), "text/x-verdict", &body);
    assert!((400..500).contains(&status), "{status} {v}");
    assert!(v.to_string().contains("128 levels"), "{v}");
    let (status, v) = http(serve.addr, "POST", "/bundles/edu-gate/evaluate", Some(EVAL), &ctx());
    assert_eq!((status, v["decision"]["kind"].clone()), (200, Value::from("allow")), "{v}");
    assert_eq!(http(serve.addr, "GET", "/healthz", None, "").0, 200);
    signal(&serve.child, "TERM");
    assert_eq!(serve.child.wait().unwrap().code(), Some(0));
    // The watched file was refused, and said so.
    let log: String = serve.stderr.try_iter().collect::<Vec<_>>().join("\n");
    assert!(serve.startup.contains("deep.verdict") || log.contains("deep.verdict"), "{}\n{log}", serve.startup);
}

/// A bare card POSTed to `/bundles/from-decision-card` is told what the body is.
#[test]
fn a_bare_card_is_told_the_shape_of_the_body() {
    let mut serve = spawn(&["--bind", "127.0.0.1:0", "--audit", "/dev/null"], true).unwrap();
    let card = r#"{"decision_card_version": "0.1", "decision_id": "d-1", "decision": {"status": "approved"}}"#;
    let (status, v) = http(serve.addr, "POST", "/bundles/from-decision-card", Some(ADMIN), card);
    let text = v.to_string();
    assert_eq!(status, 422, "{v}");
    assert!(text.contains("{card, attestation, allowed_actions}") && text.contains("under `card`"), "{v}");
    signal(&serve.child, "TERM");
    assert_eq!(serve.child.wait().unwrap().code(), Some(0));
}
