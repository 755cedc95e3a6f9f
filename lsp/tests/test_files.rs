//! Policy test files in the language server (issue 14, item 5): a `*.test.yaml` document gets
//! the diagnostics `verdict test` would refuse it with — its structure, expectations naming
//! policies, rules and effects the bundle does not have, contexts that are not request contexts
//! or that the bundle's schema refuses — against the bundle it names, read from disk or taken
//! from the editor when that bundle is open (edits to it re-check the open test files).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use crossbeam_channel::{Receiver, Sender, unbounded};
use lsp_server::{Message, Notification, Request, RequestId};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use verdict_lsp::transport::{Incoming, Outgoing};

struct Client {
    tx: Sender<Incoming>,
    rx: Receiver<Outgoing>,
    server: std::thread::JoinHandle<u8>,
}

impl Client {
    fn start() -> Client {
        let (tx, in_rx) = unbounded();
        let (out_tx, rx) = unbounded();
        let server = std::thread::spawn(move || verdict_lsp::server::serve(in_rx, out_tx));
        let c = Client { tx, rx, server };
        c.request(0, "initialize", json!({"capabilities": {}}));
        c.notify("initialized", json!({}));
        c
    }

    fn request(&self, id: i32, method: &str, params: Value) {
        let r = Request { id: RequestId::from(id), method: method.into(), params };
        self.tx.send(Incoming::Message(Message::Request(r))).unwrap();
    }

    fn notify(&self, method: &str, params: Value) {
        let n = Notification { method: method.into(), params };
        self.tx.send(Incoming::Message(Message::Notification(n))).unwrap();
    }

    fn open(&self, uri: &str, lang: &str, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": lang, "version": 1, "text": text}}),
        );
    }

    fn change(&self, uri: &str, version: i32, text: &str) {
        self.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": text}]}),
        );
    }

    /// The diagnostics published for `uri` that satisfy `done` (waiting, with a hang guard).
    fn diagnostics_until(&self, uri: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = match self.rx.recv_timeout(left).expect("diagnostics within 60 s") {
                Outgoing::Message(m) => serde_json::to_value(m).unwrap(),
                Outgoing::Raw(v) => v,
            };
            if m["method"] == "textDocument/publishDiagnostics" && m["params"]["uri"] == uri {
                let d = m["params"]["diagnostics"].as_array().unwrap().clone();
                if done(&d) {
                    return d;
                }
            }
        }
    }

    fn finish(self) -> u8 {
        self.request(999, "shutdown", Value::Null);
        self.notify("exit", Value::Null);
        self.server.join().unwrap()
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("lsp-tests {name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A `file:` URI with the space percent-encoded, as editors send it.
fn uri(path: &std::path::Path) -> String {
    format!("file://{}", path.display().to_string().replace(' ', "%20"))
}

const BUNDLE: &str = r#"bundle_id: edu
schema: {subject.level: number, subject.role: string}
policies:
  - id: writes
    default_effect: deny
    rules:
      - {id: admin-writes, effect: allow, when: "subject.role == 'admin'"}
"#;

const TEST: &str = r#"# yaml-language-server: $schema=contracts/test.schema.json
bundle: bundle.yaml
cases:
  - name: admins
    context: {subject: {role: admin}}
    expect: {kind: allow, policy: writes, rule: admin-write}
  - name: levels
    context: {subject: {level: high}}
    expect: {kind: permit}
  - name: verbs
    context: {verb: read}
"#;

fn messages(d: &[Value]) -> Vec<String> {
    d.iter().map(|x| x["message"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn test_files_are_checked_against_the_bundle_they_name() {
    let dir = scratch("check");
    std::fs::write(dir.join("bundle.yaml"), BUNDLE).unwrap();
    let c = Client::start();
    let test_uri = uri(&dir.join("a.test.yaml"));
    c.open(&test_uri, "yaml", TEST);
    let d = c.diagnostics_until(&test_uri, |d| !d.is_empty());
    let m = messages(&d);
    assert_eq!(d.len(), 4, "{m:#?}");
    let find = |needle: &str| {
        d.iter().find(|x| x["message"].as_str().unwrap().contains(needle)).unwrap_or_else(|| panic!("{needle}: {m:#?}"))
    };
    let rule = find("policy `writes` has no rule `admin-write`");
    assert_eq!(rule["severity"], 1);
    assert_eq!(rule["range"]["start"]["line"], 5, "on the expectation's line");
    assert!(rule["message"].as_str().unwrap().contains("admin-writes"), "the help lists the rules");
    assert_eq!(find("`permit` is not an effect")["range"]["start"]["line"], 8);
    let schema = find("`subject.level` is string here, but the bundle's schema declares number");
    assert_eq!(schema["severity"], 2, "a warning: a case may test the schema gate");
    assert_eq!(find("not a request context")["range"]["start"]["line"], 10);

    // The bundle opened and edited in the editor is what the test file is checked against.
    let bundle_uri = uri(&dir.join("bundle.yaml"));
    c.open(&bundle_uri, "yaml", BUNDLE);
    c.change(&bundle_uri, 2, &BUNDLE.replace("admin-writes", "admin-write"));
    let d = c.diagnostics_until(&test_uri, |d| d.len() == 3);
    assert!(!messages(&d).iter().any(|m| m.contains("has no rule")), "{d:#?}");

    // Fixing the test file clears its errors; the schema warning stays.
    let fixed = TEST.replace("kind: permit", "kind: deny").replace("{verb: read}", "{action: read}");
    c.change(&test_uri, 2, &fixed);
    let d = c.diagnostics_until(&test_uri, |d| d.len() == 1);
    assert_eq!(d[0]["severity"], 2, "{d:#?}");
    assert_eq!(c.finish(), 0);
}

#[test]
fn a_missing_or_broken_bundle_and_a_broken_test_file_are_reported() {
    let dir = scratch("missing");
    let c = Client::start();
    let test_uri = uri(&dir.join("b.test.yaml"));
    c.open(&test_uri, "yaml", "bundle: nowhere.yaml\ncases: []\n");
    let d = c.diagnostics_until(&test_uri, |d| !d.is_empty());
    assert!(messages(&d)[0].contains("cannot read the bundle `nowhere.yaml`"), "{d:#?}");
    assert_eq!(
        (d[0]["range"]["start"]["line"].as_u64(), d[0]["range"]["start"]["character"].as_u64()),
        (Some(0), Some(8))
    );

    // A bundle that does not compile: a warning, the cases are not checked.
    std::fs::write(dir.join("broken.yaml"), "bundle_id: x\npolicies: []\n").unwrap();
    c.change(&test_uri, 2, "bundle: broken.yaml\ncases: []\n");
    let d = c.diagnostics_until(&test_uri, |d| messages(d).iter().any(|m| m.contains("does not compile")));
    assert_eq!(d[0]["severity"], 2);

    // Structure: unknown keys, a missing context.
    std::fs::write(dir.join("bundle.yaml"), BUNDLE).unwrap();
    c.change(&test_uri, 3, "bundle: bundle.yaml\ncolour: red\ncases:\n  - name: x\n");
    let d = c.diagnostics_until(&test_uri, |d| d.len() == 2);
    let m = messages(&d);
    assert!(m.iter().any(|x| x.contains("unknown key `colour`")), "{m:#?}");
    assert!(m.iter().any(|x| x.contains("case `x` needs a `context`")), "{m:#?}");

    // Not a test file: a YAML request context gets nothing, as before.
    let other = uri(&dir.join("ctx.yaml"));
    c.open(&other, "yaml", "subject: {role: admin}\n");
    let d = c.diagnostics_until(&other, |_| true);
    assert!(d.is_empty());
    assert_eq!(c.finish(), 0);
}

/// A test file may name anything as its bundle: a FIFO (opening it would block until a writer
/// comes) or a device is not read, and the server answers with a diagnostic instead of hanging
/// (the 60 s wait of `diagnostics_until` is only a hang guard).
#[cfg(unix)]
#[test]
fn a_bundle_that_is_not_a_regular_file_is_not_read() {
    let dir = scratch("fifo");
    let fifo = dir.join("pipe.yaml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(made.success(), "mkfifo {}", fifo.display());
    let c = Client::start();
    for (n, bundle) in ["pipe.yaml", "/dev/stdin", "/dev/zero"].into_iter().enumerate() {
        let test_uri = uri(&dir.join(format!("t{n}.test.yaml")));
        c.open(&test_uri, "yaml", &format!("bundle: {bundle}\ncases: []\n"));
        let d = c.diagnostics_until(&test_uri, |d| !d.is_empty());
        assert_eq!(messages(&d), [format!("cannot read the bundle `{bundle}` (relative to this file)")], "{d:#?}");
    }
    assert_eq!(c.finish(), 0);
}
