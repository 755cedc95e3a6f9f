//! Decision logs end to end: an audit log written by a real `verdict serve` process under load,
//! replayed with `verdict replay` on candidates that change one rule (stateless and stateful),
//! which must report exactly the transitions the test's own requests produce, every audit line
//! within its contract; the replay's warnings and refusals; and `serve`'s `--default-bundle` and
//! `AUDIT_STREAM_URL` wiring, with a raw TCP collector.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_verdict");
const ADMIN: &str = "admin-token-0123456789abcdef-0123456789";
const EVAL: &str = "evaluate-token-0123456789abcdef-0123456";

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("decision-logs-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A stateless gate: amounts over `limit` are denied.
fn gate(version: &str, limit: u32) -> String {
    format!(
        "bundle \"gate\" {{\n  version \"{version}\"\n  schema {{ amount: number }}\n  required [amount]\n}}\n\n\
         policy gate {{\n  default allow\n  match first\n\n  rule too_much deny {{\n    when amount > {limit}\n    reason \"over {limit}\"\n  }}\n}}\n"
    )
}

/// A stateful budget: approvals hold their amount; a total over `limit` is denied.
fn budget(limit: u32, window: &str) -> String {
    format!(
        "bundle \"budget\" {{\n  version \"1\"\n  hold_ttl \"10m\"\n  schema {{ amount: number, subject.id: string }}\n  required [amount, subject.id]\n}}\n\n\
         state spend {{\n  add amount\n  key [subject.id]\n  on [allow]\n  apply commit\n}}\n\n\
         policy budget {{\n  default allow\n  match first\n\n  rule over_budget deny {{\n    when spend.{window} + amount > {limit}\n  }}\n}}\n"
    )
}

/// A running `verdict serve`.
struct Serve {
    child: Child,
    addr: SocketAddr,
}

fn serve(args: &[&str], env: &[(&str, &str)]) -> Serve {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .args(["--bind", "127.0.0.1:0"])
        .args(args)
        .env("NO_COLOR", "1")
        .env("POLICY_ENGINE_ADMIN_TOKEN", ADMIN)
        .env("POLICY_ENGINE_EVALUATE_TOKEN", EVAL)
        .env_remove("AUDIT_STREAM_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
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
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
        if let Some(addr) = line.strip_prefix("verdict serve: listening on http://") {
            // Keep draining standard error so the server never blocks on it.
            std::thread::spawn(move || while rx.recv().is_ok() {});
            return Serve { child, addr: addr.parse().unwrap() };
        }
        seen.push_str(&line);
        seen.push('\n');
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    panic!("verdict serve did not start ({status}): {seen}");
}

impl Serve {
    /// SIGTERM: a graceful shutdown that flushes the audit log (and the stream).
    fn stop(mut self) {
        let ok = Command::new("sh").arg("-c").arg(format!("kill -TERM {}", self.child.id())).status().unwrap();
        assert!(ok.success());
        assert_eq!(self.child.wait().unwrap().code(), Some(0));
    }
}

/// One HTTP/1.1 request (`Connection: close`): the status and the JSON body.
fn http(addr: SocketAddr, path: &str, token: &str, request_id: &str, body: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nX-Request-Id: {request_id}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Asserts that every line of an audit log satisfies `contracts/audit-event.schema.json`.
fn lines_keep_the_contract(audit: &Path) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts/audit-event.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let v = jsonschema::draft202012::new(&schema).unwrap();
    for (i, line) in std::fs::read_to_string(audit).unwrap().lines().enumerate() {
        let line: Value = serde_json::from_str(line).unwrap();
        let errors: Vec<String> = v.iter_errors(&line).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "audit line {}: {errors:#?}\n{line:#}", i + 1);
    }
}

fn verdict(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env("NO_COLOR", "1").output().unwrap()
}

fn replay(audit: &Path, candidate: &Path, more: &[&str]) -> (i32, Value) {
    let mut args = vec!["replay", audit.to_str().unwrap(), candidate.to_str().unwrap(), "--format", "json"];
    args.extend_from_slice(more);
    let out = verdict(&args);
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap(), report)
}

/// The amount of request `i` of client `c`: 0 to 149.
fn amount(c: usize, i: usize) -> u64 {
    ((c * 61 + i * 37) % 150) as u64
}

#[test]
fn replay_reports_exactly_the_transitions_of_the_logged_traffic() {
    let dir = scratch("stateless");
    let (live, candidate, same) = (dir.join("gate.verdict"), dir.join("candidate.verdict"), dir.join("same.verdict"));
    std::fs::write(&live, gate("1", 100)).unwrap();
    std::fs::write(&candidate, gate("2", 50)).unwrap();
    std::fs::write(&same, gate("1", 100)).unwrap();
    let audit = dir.join("audit.jsonl");
    let s = serve(&["--audit", audit.to_str().unwrap(), live.to_str().unwrap()], &[]);
    // Load: 8 clients at once, each request with its own correlation id.
    let (clients, per_client) = (16, 125);
    let addr = s.addr;
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            std::thread::spawn(move || {
                for i in 0..per_client {
                    let body =
                        json!({"subject": {"id": format!("c{c}")}, "data": {"amount": amount(c, i), "note": "unread"}});
                    let (status, v) =
                        http(addr, "/bundles/gate/evaluate", EVAL, &format!("r-{c}-{i}"), &body.to_string());
                    assert_eq!(status, 200, "{v}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    s.stop();
    lines_keep_the_contract(&audit);
    // What the candidate changes, from the requests themselves: amounts in (50, 100].
    let expected: HashSet<String> = (0..clients)
        .flat_map(|c| {
            (0..per_client).filter(move |i| (51..=100).contains(&amount(c, *i))).map(move |i| format!("r-{c}-{i}"))
        })
        .collect();
    let total = clients * per_client;
    let (code, report) = replay(&audit, &candidate, &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!((report["evaluations"].as_u64(), report["replayed"].as_u64()), (Some(total as u64), Some(total as u64)));
    assert_eq!(report["changed"], json!(expected.len()), "{report}");
    assert_eq!(report["unchanged"], json!(total - expected.len()));
    let transitions = report["transitions"].as_object().unwrap();
    assert_eq!(transitions.keys().collect::<Vec<_>>(), ["allow -> deny"], "{report}");
    let t = &transitions["allow -> deny"];
    assert_eq!(t["count"], json!(expected.len()));
    let ids = t["correlation_ids"].as_array().unwrap();
    assert_eq!(ids.len(), 10.min(expected.len()));
    assert!(ids.iter().all(|id| expected.contains(id.as_str().unwrap())), "{ids:?}");
    assert_eq!(report["not_replayed"]["count"], 0);
    assert_eq!((report["unchecked"].as_u64(), &report["unrecorded_paths"]["paths"]), (Some(0), &json!([])));
    assert_eq!(report["candidate"]["bundle_version"], "2");

    // The same bundle replays to no change; so does the candidate as a compiled artifact.
    let (code, report) = replay(&audit, &same, &[]);
    assert_eq!((code, &report["changed"], &report["transitions"]), (0, &json!(0), &json!({})), "{report}");
    let artifact = dir.join("candidate.vdc");
    let out = verdict(&["compile", candidate.to_str().unwrap(), "-o", artifact.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (code, from_artifact) = replay(&audit, &artifact, &[]);
    assert_eq!((code, &from_artifact["transitions"]), (1, &transitions.clone().into()));

    // The human form says the same.
    let out = verdict(&["replay", audit.to_str().unwrap(), candidate.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text.starts_with(&format!("replayed {total} of {total} evaluations of bundle `gate`")), "{text}");
    assert!(text.contains(&format!("allow -> deny: {} (e.g. r-", expected.len())), "{text}");

    // A candidate that reads a path the live bundle never read is replayed with it missing, and
    // says so.
    let reads_more = dir.join("reads-more.verdict");
    let text = gate("3", 100)
        .replace("when amount > 100", "when amount > 100 or note == \"unread\"")
        .replace("schema { amount: number }", "schema { amount: number, note: string }");
    std::fs::write(&reads_more, text).unwrap();
    let (code, report) = replay(&audit, &reads_more, &[]);
    assert_eq!((code, &report["unrecorded_paths"]), (0, &json!({"paths": ["note"], "lines": total})), "{report}");
    let out = verdict(&["replay", audit.to_str().unwrap(), reads_more.to_str().unwrap()]);
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("warning: the candidate reads paths the logged decisions did not record (`note`)")
    );
}

#[test]
fn replay_answers_a_stateful_candidate_with_the_state_the_live_decisions_read() {
    let dir = scratch("stateful");
    let (live, candidate, other_window) =
        (dir.join("budget.verdict"), dir.join("candidate.verdict"), dir.join("window.verdict"));
    std::fs::write(&live, budget(100, "total")).unwrap();
    std::fs::write(&candidate, budget(60, "total")).unwrap();
    std::fs::write(&other_window, budget(100, "last(\"1h\")")).unwrap();
    let audit = dir.join("audit.jsonl");
    let s = serve(&["--audit", audit.to_str().unwrap(), live.to_str().unwrap()], &[]);
    // One subject, in order: the live decisions read 0, 20, 50, 90, 90 (holds count at once).
    let mut kinds = Vec::new();
    for (i, amount) in [20, 30, 40, 25, 10].into_iter().enumerate() {
        let body = json!({"subject": {"id": "agent"}, "data": {"amount": amount}}).to_string();
        let (status, v) = http(s.addr, "/bundles/budget/evaluate", EVAL, &format!("s-{i}"), &body);
        assert_eq!(status, 200, "{v}");
        kinds.push(v["decision"]["kind"].as_str().unwrap().to_owned());
    }
    assert_eq!(kinds, ["allow", "allow", "allow", "deny", "allow"]);
    s.stop();
    lines_keep_the_contract(&audit);
    // With a limit of 60 on the same reads: 50 + 40 and 90 + 10 are denied too.
    let (code, report) = replay(&audit, &candidate, &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["transitions"], json!({"allow -> deny": {"count": 2, "correlation_ids": ["s-2", "s-4"]}}));
    // A candidate that reads another window: the lines cannot answer it.
    let (code, report) = replay(&audit, &other_window, &[]);
    assert_eq!(code, 2, "{report}");
    let out = verdict(&["replay", audit.to_str().unwrap(), other_window.to_str().unwrap()]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("none of the 5 evaluations of bundle `budget`")
            && err.contains("5: the candidate reads state the line does not record"),
        "{err}"
    );
}

#[test]
fn replay_refuses_what_it_cannot_replay() {
    let dir = scratch("refusals");
    let candidate = dir.join("gate.verdict");
    std::fs::write(&candidate, gate("1", 100)).unwrap();
    let audit = dir.join("audit.jsonl");
    // A log without inputs (written before lines recorded them), another bundle, a torn line.
    let old = json!({"time": "2026-01-01T00:00:00Z", "event": "evaluation", "correlation_id": "old", "bundle_id": "gate", "decision": "allow"});
    let other = json!({"time": "2026-01-01T00:00:00Z", "event": "evaluation", "correlation_id": "x", "bundle_id": "other", "decision": "allow", "input": {}});
    std::fs::write(&audit, format!("{old}\n{other}\n{{\"time\": \"2026-")).unwrap();
    let out = verdict(&["replay", audit.to_str().unwrap(), candidate.to_str().unwrap()]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("none of the 1 evaluations of bundle `gate`") && err.contains("no input recorded"), "{err}");
    let out = verdict(&["replay", audit.to_str().unwrap(), candidate.to_str().unwrap(), "--bundle", "nope"]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("no evaluation of bundle `nope`") && err.contains("bundles evaluated there: `gate`, `other`"),
        "{err}"
    );
    // Lines from a version whose inputs event is missing replay, unchecked; malformed lines are
    // counted.
    let line = json!({"time": "2026-01-01T00:00:00Z", "event": "evaluation", "correlation_id": "c1", "bundle_id": "gate",
                      "bundle_digest": "sha256:00", "decision": "allow", "input": {"data": {"amount": 500}}});
    std::fs::write(&audit, format!("{line}\nnot json\n")).unwrap();
    let (code, report) = replay(&audit, &candidate, &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["unchecked"], 1);
    assert_eq!(report["malformed_lines"], json!({"count": 1, "first": [2]}));
    assert_eq!(report["transitions"], json!({"allow -> deny": {"count": 1, "correlation_ids": ["c1"]}}));
    // Unreadable inputs.
    assert_eq!(replay(&dir.join("missing.jsonl"), &candidate, &[]).0, 2);
    std::fs::write(dir.join("broken.verdict"), "bundle {").unwrap();
    assert_eq!(replay(&audit, &dir.join("broken.verdict"), &[]).0, 2);
}

/// A collector on a raw TCP socket: answers every POST 204 on a keep-alive connection and hands
/// over each body.
fn collector() -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/audit", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut writer = conn.try_clone().unwrap();
                let mut reader = BufReader::new(conn);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    assert!(line.starts_with("POST /audit HTTP/1.1"), "{line}");
                    let mut length = 0;
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h).unwrap();
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = h.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    writer.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
                    if tx.send(String::from_utf8(body).unwrap()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, rx)
}

#[test]
fn serve_takes_the_default_bundle_flag_and_the_reference_stream_variable() {
    let dir = scratch("flags");
    let bundle = dir.join("gate.verdict");
    std::fs::write(&bundle, gate("1", 100)).unwrap();
    let (url, bodies) = collector();
    let s = serve(
        &["--audit", dir.join("audit.jsonl").to_str().unwrap(), "--default-bundle", "gate", bundle.to_str().unwrap()],
        &[("AUDIT_STREAM_URL", &url)],
    );
    let (status, v) = http(s.addr, "/evaluate", EVAL, "facts-1", r#"{"amount": 120, "tenant": "t1"}"#);
    assert_eq!((status, &v["decision"]["kind"]), (200, &json!("deny")), "{v}");
    s.stop();
    // After the graceful stop, the collector has every line of the file.
    let file = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    let mut streamed = String::new();
    while streamed.len() < file.len() {
        streamed.push_str(&bodies.recv_timeout(Duration::from_secs(30)).unwrap());
    }
    assert_eq!(streamed, file);
    lines_keep_the_contract(&dir.join("audit.jsonl"));
    let lines: Vec<Value> = file.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let events: BTreeMap<&str, usize> = lines.iter().fold(BTreeMap::new(), |mut m, l| {
        *m.entry(l["event"].as_str().unwrap()).or_default() += 1;
        m
    });
    assert_eq!(events, BTreeMap::from([("bundle_loaded", 1), ("evaluation", 1), ("evaluation_inputs", 1)]));
    let eval = lines.iter().find(|l| l["event"] == "evaluation").unwrap();
    assert_eq!((&eval["correlation_id"], &eval["input"]), (&json!("facts-1"), &json!({"data": {"amount": 120}})));
    // A bad URL stops the start.
    let out = Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1:0", "--audit-url", "https://collector/x"])
        .env("POLICY_ENGINE_ADMIN_TOKEN", ADMIN)
        .env("POLICY_ENGINE_EVALUATE_TOKEN", EVAL)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid audit stream URL `https://collector/x`"));
}
