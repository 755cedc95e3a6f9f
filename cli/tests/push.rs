//! `verdict push` and `verdict serve --bundles-from` as processes on a real `redis-server` (a free
//! loopback port; missing, a failure under CI): sources, cards' flags and artifacts pushed,
//! unchanged pushes, compare-and-swap with `--expect` (exit 1 and nothing written when it does not
//! hold), bundles that do not compile refused before anything is written, signed pushes for
//! replicas with trusted keys, and the exit code and message of an unreachable Redis or a bad URL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use base64::Engine as _;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use verdict_store_redis::bundles::{BundleOptions, BundleSource};
use verdict_store_redis::testing::RedisServer;

const BIN: &str = env!("CARGO_BIN_EXE_verdict");
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const ADMIN: &str = "admin-token-0123456789abcdef-0123456789";
const EVAL: &str = "evaluate-token-0123456789abcdef-0123456";
const BUNDLE: &str = "examples/quickstart/bundle.yaml";
/// Hang guard for waiting on a replica.
const HANG: Duration = Duration::from_secs(20);

fn dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("push-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn verdict(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(WORKSPACE)
        .env("NO_COLOR", "1")
        .env_remove("VERDICT_TRUSTED_KEYS")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `verdict push URL SOURCE --prefix PREFIX --format json …`: the exit code and the JSON printed.
fn push(url: &str, prefix: &str, source: &str, extra: &[&str]) -> (i32, Value, String) {
    let mut args = vec!["push", url, source, "--prefix", prefix, "--format", "json"];
    args.extend_from_slice(extra);
    let out = verdict(&args);
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), json, stderr(&out))
}

/// The quickstart at another version, written to `dir`.
fn version(dir: &Path, v: &str) -> String {
    let text = std::fs::read_to_string(Path::new(WORKSPACE).join(BUNDLE))
        .unwrap()
        .replace("version: \"1.2.0\"", &format!("version: \"{v}\""));
    let path = dir.join(format!("bundle-{v}.yaml"));
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// A running `verdict serve`, killed when dropped.
struct Serve {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(args: &[&str]) -> Serve {
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(["--bind", "127.0.0.1:0", "--audit", "/dev/null", "--poll-ms", "200"])
        .args(args)
        .current_dir(WORKSPACE)
        .env("NO_COLOR", "1")
        .env_remove("VERDICT_TRUSTED_KEYS")
        .env("POLICY_ENGINE_ADMIN_TOKEN", ADMIN)
        .env("POLICY_ENGINE_EVALUATE_TOKEN", EVAL)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    while let Ok(line) = rx.recv_timeout(HANG) {
        if let Some(addr) = line.strip_prefix("verdict serve: listening on http://") {
            // Standard error is closed from here on (the reader stops at its next line): a replica
            // whose log cannot be written must go on following Redis.
            return Serve { child, addr: addr.parse().unwrap() };
        }
        seen.push_str(&line);
        seen.push('\n');
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("verdict serve did not start:\n{seen}");
}

/// One HTTP/1.1 request: the status, the `verdict-bundle-digest` header and the body.
fn http(addr: SocketAddr, method: &str, path: &str, token: &str, body: &str) -> (u16, Option<String>, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(HANG)).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let digest = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("verdict-bundle-digest").then(|| value.trim().to_owned())
    });
    (status, digest, serde_json::from_str(body).unwrap_or(Value::Null))
}

impl Serve {
    fn serving(&self, id: &str) -> Option<String> {
        http(self.addr, "GET", &format!("/bundles/{id}"), ADMIN, "").1
    }

    fn wait_serving(&self, id: &str, revision: &str) {
        let started = Instant::now();
        while self.serving(id).as_deref() != Some(revision) {
            assert!(started.elapsed() < HANG, "{revision} not served within {HANG:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn decide(&self, id: &str) -> Value {
        let ctx = std::fs::read_to_string(Path::new(WORKSPACE).join("examples/quickstart/ctx.json")).unwrap();
        let (status, _, v) = http(self.addr, "POST", &format!("/bundles/{id}/evaluate"), EVAL, &ctx);
        assert_eq!(status, 200, "{v}");
        v
    }
}

fn source(redis: &RedisServer, prefix: &str) -> BundleSource {
    BundleSource::open(&redis.url(), BundleOptions { prefix: prefix.into(), ..BundleOptions::default() }).unwrap()
}

#[test]
fn pushed_bundles_are_followed_by_a_replica_and_expect_is_a_compare_and_swap() {
    let Some(redis) = RedisServer::start().unwrap() else { return };
    let (url, d) = (redis.url(), dir("follow"));
    let (code, first, err) = push(&url, "p1:", BUNDLE, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        (&first["bundle_id"], &first["status"], &first["previous"]),
        (&"edu-gate".into(), &"activated".into(), &Value::Null)
    );
    let r1 = first["revision"].as_str().unwrap().to_owned();
    let (code, again, _) = push(&url, "p1:", BUNDLE, &[]);
    assert_eq!((code, again["status"].as_str(), again["revision"].as_str()), (0, Some("unchanged"), Some(r1.as_str())));

    let replica = serve(&["--bundles-from", &url, "--bundles-prefix", "p1:", "--replica-id", "cli-1"]);
    assert_eq!(replica.serving("edu-gate").as_deref(), Some(r1.as_str()));
    assert_eq!(replica.decide("edu-gate")["decision"]["kind"], "allow");

    // Compare-and-swap on the active revision.
    let v2 = version(&d, "2.0.0");
    let (code, second, err) = push(&url, "p1:", &v2, &["--expect", &r1]);
    assert_eq!(code, 0, "{err}");
    assert_eq!((second["previous"].as_str(), second["notified"].as_u64()), (Some(r1.as_str()), Some(1)));
    let r2 = second["revision"].as_str().unwrap().to_owned();
    replica.wait_serving("edu-gate", &r2);
    assert_eq!(replica.decide("edu-gate")["bundle_version"], "2.0.0");
    let v3 = version(&d, "3.0.0");
    let (code, out, err) = push(&url, "p1:", &v3, &["--expect", &r1]);
    assert_eq!((code, out), (1, Value::Null));
    assert!(
        err.contains(&format!("error: not pushed: bundle `edu-gate`: the active revision is `{r2}`, not `{r1}`")),
        "{err}"
    );
    let (code, _, err) = push(&url, "p1:", &v3, &["--expect", "none"]);
    assert_eq!(code, 1);
    assert!(err.contains("the active revision is `"), "{err}");
    assert_eq!(source(&redis, "p1:").active("edu-gate").unwrap().as_deref(), Some(r2.as_str()));

    // A bundle that does not compile is refused before anything is written.
    let broken = d.join("broken.yaml");
    std::fs::write(&broken, std::fs::read_to_string(&v3).unwrap().replace("default_effect: deny", "default_effect: ["))
        .unwrap();
    let (code, _, err) = push(&url, "p1:", s(&broken), &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("does not compile"), "{err}");
    assert_eq!(source(&redis, "p1:").active("edu-gate").unwrap().as_deref(), Some(r2.as_str()));

    // An artifact made by `verdict compile` is pushed as it is: its digest is the revision.
    let vdc = d.join("v3.vdc");
    assert_eq!(verdict(&["compile", &v3, "-o", s(&vdc)]).status.code(), Some(0));
    let (code, third, err) = push(&url, "p1:", s(&vdc), &[]);
    assert_eq!(code, 0, "{err}");
    let r3 = third["revision"].as_str().unwrap().to_owned();
    assert_eq!(r3, verdict_runtime::signature::digest(&std::fs::read(&vdc).unwrap()));
    replica.wait_serving("edu-gate", &r3);

    // The replica's status key (written just after the bundle is swapped in).
    let started = Instant::now();
    loop {
        let status: Value = serde_json::from_str(&source(&redis, "p1:").status("cli-1").unwrap().unwrap()).unwrap();
        let bundle = &status["bundles"]["edu-gate"];
        if bundle["active"] == r3.as_str() && bundle["serving"] == r3.as_str() {
            break;
        }
        assert!(started.elapsed() < HANG, "{status}");
        std::thread::sleep(Duration::from_millis(10));
    }

    // Human output.
    let out = verdict(&["push", &url, &v2, "--prefix", "p1:"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(&format!("bundle `edu-gate`: revision {r2} is active (was {r3}); 1 replica(s) notified")),
        "{text}"
    );
}

#[test]
fn signed_pushes_for_replicas_with_trusted_keys() {
    let Some(redis) = RedisServer::start().unwrap() else { return };
    let (url, d) = (redis.url(), dir("signed"));
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let (seed, public) = (d.join("signing.b64"), d.join("signing.pub"));
    std::fs::write(&seed, b64.encode([7u8; 32])).unwrap();
    std::fs::write(&public, b64.encode(key.verifying_key().to_bytes())).unwrap();

    let (code, first, err) = push(&url, "s:", BUNDLE, &["--sign", s(&seed), "--trusted-key", s(&public)]);
    assert_eq!(code, 0, "{err}");
    let r1 = first["revision"].as_str().unwrap().to_owned();
    let replica = serve(&["--bundles-from", &url, "--bundles-prefix", "s:", "--trusted-key", s(&public)]);
    assert_eq!(replica.serving("edu-gate").as_deref(), Some(r1.as_str()));

    // Checked against the trusted key before pushing: refused, nothing written.
    let v2 = version(&d, "2.0.0");
    let (code, _, err) = push(&url, "s:", &v2, &["--trusted-key", s(&public)]);
    assert_eq!(code, 1);
    assert!(err.contains("artifact is not signed"), "{err}");
    // Without the key to check against, it is pushed, and the replica refuses it.
    let (code, unsigned, err) = push(&url, "s:", &v2, &[]);
    assert_eq!(code, 0, "{err}");
    let refused = unsigned["revision"].as_str().unwrap().to_owned();
    let started = Instant::now();
    loop {
        let metrics = {
            let mut st = TcpStream::connect(replica.addr).unwrap();
            st.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
            let mut text = String::new();
            st.read_to_string(&mut text).unwrap();
            text
        };
        if metrics.contains("\nverdict_bundle_source_rejections_total 1\n") {
            break;
        }
        assert!(started.elapsed() < HANG, "the refusal of {refused} is not counted:\n{metrics}");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(replica.serving("edu-gate").as_deref(), Some(r1.as_str()));
    // A signed artifact made by `verdict compile --sign` may not be signed again.
    let vdc = d.join("v2.vdc");
    assert_eq!(verdict(&["compile", &v2, "-o", s(&vdc), "--sign", s(&seed)]).status.code(), Some(0));
    let (code, _, err) = push(&url, "s:", s(&vdc), &["--sign", s(&seed)]);
    assert_eq!(code, 2);
    assert!(err.contains("the artifact is already signed"), "{err}");
    let (code, signed, err) = push(&url, "s:", s(&vdc), &["--trusted-key", s(&public)]);
    assert_eq!(code, 0, "{err}");
    replica.wait_serving("edu-gate", signed["revision"].as_str().unwrap());
}

#[test]
fn an_unreachable_redis_or_a_bad_url_is_exit_code_2() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("redis://127.0.0.1:{port}/");
    let (code, _, err) = push(&url, "x:", BUNDLE, &[]);
    assert_eq!(code, 2);
    assert!(err.contains(&format!("error: not pushed: cannot connect to redis at 127.0.0.1:{port}")), "{err}");
    let (code, _, err) = push("http://example.com/", "x:", BUNDLE, &[]);
    assert_eq!(code, 2);
    assert!(err.starts_with("error: invalid redis url: "), "{err}");
    // A replica whose Redis is down starts (serving nothing yet) and says so in /metrics.
    let replica = serve(&["--bundles-from", &url]);
    let mut st = TcpStream::connect(replica.addr).unwrap();
    st.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut metrics = String::new();
    st.read_to_string(&mut metrics).unwrap();
    assert!(metrics.contains("\nverdict_bundle_source_connected 0\n"), "{metrics}");
    drop(replica);
    let out = verdict(&["serve", "--bind", "127.0.0.1:0", "--bundles-from", "nonsense"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("error: --bundles-from: invalid redis url: "), "{}", stderr(&out));
}
