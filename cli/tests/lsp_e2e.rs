//! End-to-end tests of `verdict lsp`: the real binary, spoken to over stdio with `Content-Length`
//! framed JSON-RPC, as an editor would. Every read is bounded in time, and the child is killed
//! when a test ends, so a broken server fails the test instead of hanging the suite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A running `verdict lsp` and the messages it sent that no one has read yet.
struct Lsp {
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<Value>,
    unread: Vec<Value>,
    next_id: i64,
    stderr: Arc<Mutex<String>>,
}

impl Lsp {
    fn start() -> Lsp {
        let mut child = Command::new(env!("CARGO_BIN_EXE_verdict"))
            .arg("lsp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("verdict lsp starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut length = None;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        length = v.parse::<usize>().ok();
                    }
                }
                let mut body = vec![0; length.expect("a Content-Length header")];
                if r.read_exact(&mut body).is_err() {
                    return;
                }
                if tx.send(serde_json::from_slice::<Value>(&body).expect("the server sends JSON")).is_err() {
                    return;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            sink.lock().unwrap().push_str(&s);
        });
        let stdin = child.stdin.take();
        Lsp { child, stdin, rx, unread: Vec::new(), next_id: 1, stderr }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    fn send(&mut self, msg: &Value) {
        let body = msg.to_string();
        self.send_raw(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// The next message matching `pred`, waiting at most [`TIMEOUT`].
    fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.unread.iter().position(&pred) {
            return self.unread.remove(i);
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(v) if pred(&v) => return v,
                Ok(v) => self.unread.push(v),
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "timed out waiting for {what}; unread: {:#?}; stderr: {}",
                        self.unread,
                        self.stderr.lock().unwrap()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("the server closed its output waiting for {what}; stderr: {}", self.stderr.lock().unwrap())
                }
            }
        }
    }

    /// Sends a request and returns its whole response.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        self.wait_for(&format!("the response to {method} #{id}"), |m| m["id"] == json!(id) && m.get("method").is_none())
    }

    /// A request's result (failing on an error response).
    fn request(&mut self, method: &str, params: Value) -> Value {
        let r = self.call(method, params);
        assert!(r.get("error").is_none(), "{method} failed: {r}");
        r["result"].clone()
    }

    /// The next diagnostics published for `uri` (of `version`, when given).
    fn diagnostics(&mut self, uri: &str, version: Option<i64>) -> Vec<Value> {
        let n = self.wait_for(&format!("diagnostics of {uri}"), |m| {
            m["method"] == "textDocument/publishDiagnostics"
                && m["params"]["uri"] == uri
                && version.is_none_or(|v| m["params"]["version"] == json!(v))
        });
        n["params"]["diagnostics"].as_array().cloned().unwrap_or_default()
    }

    fn initialize(&mut self) -> Value {
        let caps = self.request("initialize", json!({"processId": null, "rootUri": null, "capabilities": {}}));
        self.notify("initialized", json!({}));
        caps
    }

    fn open(&mut self, uri: &str, language: &str, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": language, "version": 1, "text": text}}),
        );
    }

    /// `shutdown`, `exit`, and the exit code (within the timeout).
    fn shut_down(mut self) -> i32 {
        assert_eq!(self.request("shutdown", Value::Null), Value::Null);
        self.notify("exit", Value::Null);
        self.wait_exit()
    }

    fn wait_exit(&mut self) -> i32 {
        self.stdin = None;
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "the server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Lsp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The document of the end-to-end test: an unknown effect, an ill-typed atom after an emoji (so
/// UTF-16 columns differ from bytes and chars), a syntax error, and a rule shadowed by the one
/// before it (found by the rule analysis of its policy while the rest of the file is broken).
const DEMO: &str = r#"bundle demo {
  schema { subject.role: string, subject.name: string }
}

let is_admin = subject.role == "admin"

policy p {
  rule a alow {
    when is_admin
  }
  rule b allow {
    when subject.name == "😀" and subject.role > 3
  }
}

policy broken {
  rule c allow {
    when subject.role ==
  }
}

policy shadow {
  rule s1 allow {
    when subject.role == "admin"
  }
  rule s2 deny {
    when subject.role == "admin" and subject.name == "x"
  }
}
"#;

const URI: &str = "file:///tmp/verdict-e2e/demo.verdict";

fn pos(line: u32, character: u32) -> Value {
    json!({"line": line, "character": character})
}

fn at(line: u32, character: u32) -> Value {
    json!({"textDocument": {"uri": URI}, "position": pos(line, character)})
}

/// `(code, [start line, start char, end line, end char])` of each diagnostic.
fn summary(diags: &[Value]) -> Vec<(String, [u64; 4])> {
    let mut out: Vec<(String, [u64; 4])> = diags
        .iter()
        .map(|d| {
            let r = &d["range"];
            let n = |v: &Value| v.as_u64().unwrap();
            (
                d["code"].as_str().unwrap().to_owned(),
                [n(&r["start"]["line"]), n(&r["start"]["character"]), n(&r["end"]["line"]), n(&r["end"]["character"])],
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn an_editor_session() {
    let mut lsp = Lsp::start();
    let caps = lsp.initialize();
    assert_eq!(caps["capabilities"]["textDocumentSync"]["change"], 2, "incremental sync: {caps}");
    assert_eq!(caps["capabilities"]["positionEncoding"], "utf-16");

    // Open: a syntax error, an unknown effect and an ill-typed atom, at UTF-16 ranges, and the
    // shadowed rule `s2` with the rule that covers it as related information.
    lsp.open(URI, "verdict", DEMO);
    let diags = lsp.diagnostics(URI, Some(1));
    assert_eq!(
        summary(&diags),
        [
            ("V001".to_owned(), [25, 2, 26, 56]),
            ("V006".to_owned(), [11, 34, 11, 50]),
            ("V100".to_owned(), [18, 2, 18, 3]),
            ("V105".to_owned(), [7, 9, 7, 13]),
        ],
        "{diags:#?}"
    );
    let v001 = diags.iter().find(|d| d["code"] == "V001").unwrap();
    assert_eq!(v001["severity"], 2);
    assert!(v001["message"].as_str().unwrap().starts_with("rule `s2` is unreachable"), "{v001}");
    let covered_by = &v001["relatedInformation"][0];
    assert_eq!(covered_by["location"]["range"]["start"], pos(22, 2), "{v001}");
    assert!(covered_by["message"].as_str().unwrap().contains("rule `s1`"), "{v001}");
    let v105 = diags.iter().find(|d| d["code"] == "V105").unwrap();
    assert_eq!(v105["severity"], 1);
    assert_eq!(v105["source"], "verdict");
    assert!(v105["message"].as_str().unwrap().starts_with("unknown effect `alow`\nhelp: "), "{v105}");

    // Incremental edits in one notification: fix the effect, then complete the condition.
    lsp.notify(
        "textDocument/didChange",
        json!({
            "textDocument": {"uri": URI, "version": 2},
            "contentChanges": [
                {"range": {"start": pos(7, 9), "end": pos(7, 13)}, "text": "allow"},
                {"range": {"start": pos(17, 24), "end": pos(17, 24)}, "text": " \"x\""},
            ]
        }),
    );
    let diags = lsp.diagnostics(URI, Some(2));
    assert_eq!(
        summary(&diags),
        [("V001".to_owned(), [25, 2, 26, 56]), ("V006".to_owned(), [11, 34, 11, 50])],
        "{diags:#?}"
    );

    // A duplicate policy: the finding carries the first definition as related information.
    let end = DEMO.lines().count() as u32;
    lsp.notify(
        "textDocument/didChange",
        json!({
            "textDocument": {"uri": URI, "version": 3},
            "contentChanges": [{"range": {"start": pos(end, 0), "end": pos(end, 0)}, "text": "policy p {\n  rule z allow {\n    when true\n  }\n}\n"}]
        }),
    );
    let diags = lsp.diagnostics(URI, Some(3));
    let dup = diags.iter().find(|d| d["code"] == "V104").unwrap_or_else(|| panic!("{diags:#?}"));
    let related = &dup["relatedInformation"][0];
    assert_eq!(related["message"], "first defined here");
    assert_eq!(related["location"]["uri"], URI);
    assert_eq!(related["location"]["range"]["start"], pos(6, 7));

    // Hover: a `let` use, a rule, a path with its schema type.
    let hover = lsp.request("textDocument/hover", at(8, 10));
    assert!(
        hover["contents"]["value"].as_str().unwrap().contains("let is_admin = subject.role == \"admin\""),
        "{hover}"
    );
    assert_eq!(hover["range"]["start"], pos(8, 9));
    let hover = lsp.request("textDocument/hover", at(7, 8));
    assert!(hover["contents"]["value"].as_str().unwrap().contains("**rule** `a` → effect `allow`"), "{hover}");
    let hover = lsp.request("textDocument/hover", at(25, 7));
    let text = hover["contents"]["value"].as_str().unwrap();
    assert!(text.contains("it never decides") && text.contains("V001 rule `s2` is unreachable"), "{hover}");
    let hover = lsp.request("textDocument/hover", at(11, 37));
    let text = hover["contents"]["value"].as_str().unwrap();
    assert!(text.contains("`subject.role`") && text.contains("type: `string`"), "{hover}");

    // Definition of the `let` from its use; references of it.
    let def = lsp.request("textDocument/definition", at(8, 10));
    assert_eq!(def[0]["uri"], URI);
    assert_eq!(def[0]["range"], json!({"start": pos(4, 4), "end": pos(4, 12)}));
    let mut params = at(4, 6);
    params["context"] = json!({"includeDeclaration": true});
    let refs = lsp.request("textDocument/references", params);
    assert_eq!(refs.as_array().unwrap().len(), 2, "{refs}");

    // Symbols: bundle → policies → rules.
    let symbols = lsp.request("textDocument/documentSymbol", json!({"textDocument": {"uri": URI}}));
    assert_eq!(symbols[0]["name"], "demo");
    let children: Vec<&str> =
        symbols[0]["children"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(children, ["is_admin", "p", "broken", "shadow", "p"]);
    let rules: Vec<&str> =
        symbols[0]["children"][1]["children"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(rules, ["a", "b"]);

    // Completion inside a condition, after `subject.`.
    let completion = lsp.request("textDocument/completion", at(8, 9));
    let labels: Vec<&str> = completion.as_array().unwrap().iter().map(|c| c["label"].as_str().unwrap()).collect();
    for expected in ["is_admin", "when", "allow", "subject.role"] {
        assert!(labels.contains(&expected), "{expected} in {labels:?}");
    }
    lsp.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": URI, "version": 4}, "contentChanges": [{"range": {"start": pos(8, 9), "end": pos(8, 17)}, "text": "subject."}]}),
    );
    let _ = lsp.diagnostics(URI, Some(4));
    let completion = lsp.request("textDocument/completion", at(8, 17));
    let labels: Vec<&str> = completion.as_array().unwrap().iter().map(|c| c["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["role", "name"]);

    // Formatting: one edit to the canonical text (the same as `verdict fmt`).
    lsp.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": URI, "version": 5}, "contentChanges": [{"text": "bundle   demo {}\npolicy p { rule r allow { when   true } }\n"}]}),
    );
    let _ = lsp.diagnostics(URI, Some(5));
    let edits = lsp.request(
        "textDocument/formatting",
        json!({"textDocument": {"uri": URI}, "options": {"tabSize": 2, "insertSpaces": true}}),
    );
    let expected =
        verdict_compiler::format::format_verdict("bundle   demo {}\npolicy p { rule r allow { when   true } }\n")
            .unwrap();
    assert_eq!(edits[0]["newText"], expected.as_str());
    assert_eq!(edits[0]["range"], json!({"start": pos(0, 0), "end": pos(2, 0)}));

    assert_eq!(lsp.shut_down(), 0);
}

#[test]
fn yaml_bundles_get_diagnostics_too() {
    let mut lsp = Lsp::start();
    lsp.initialize();
    let uri = "file:///tmp/verdict-e2e/bundle.yaml";
    lsp.open(uri, "yaml", "bundle_id: b\npolicies:\n  - id: p\n    rules:\n      - id: r\n        effect: alow\n        when: \"subject.role == 'admin'\"\n");
    let diags = lsp.diagnostics(uri, Some(1));
    assert_eq!(summary(&diags), [("V105".to_owned(), [5, 16, 5, 20])], "{diags:#?}");
    assert_eq!(lsp.shut_down(), 0);
}

#[test]
fn nothing_crashes_the_server() {
    let mut lsp = Lsp::start();

    // Before `initialize`: requests are refused, the server stays up.
    let r = lsp.call("textDocument/hover", at(0, 0));
    assert_eq!(r["error"]["code"], -32002, "{r}");
    lsp.initialize();
    lsp.open(URI, "verdict", DEMO);
    let _ = lsp.diagnostics(URI, Some(1));

    // Malformed frames: not JSON, a bad header, JSON that is not a message.
    lsp.send_raw(b"Content-Length: 9\r\n\r\n{not json");
    let r = lsp.wait_for("a parse error", |m| m["error"]["code"] == -32700);
    assert_eq!(r["id"], Value::Null);
    lsp.send_raw(b"Content-Length: many\r\n\r\n");
    let _ = lsp.wait_for("a header error", |m| m["error"]["code"] == -32700);
    lsp.send(&json!({"jsonrpc": "2.0", "id": 77}));
    let r = lsp.wait_for("an invalid request", |m| m["error"]["code"] == -32600);
    assert_eq!(r["id"], 77);
    lsp.send(&json!([1, 2, 3]));
    let _ = lsp.wait_for("an invalid request", |m| m["error"]["code"] == -32600 && m["id"].is_null());

    // Unknown methods; bad parameters; an unknown notification.
    let r = lsp.call("textDocument/rename", at(0, 0));
    assert_eq!(r["error"]["code"], -32601, "{r}");
    let r = lsp.call("verdict/noSuchThing", Value::Null);
    assert_eq!(r["error"]["code"], -32601, "{r}");
    let r = lsp.call("textDocument/hover", json!({"textDocument": 5}));
    assert_eq!(r["error"]["code"], -32602, "{r}");
    lsp.notify("verdict/unknownNotification", json!({"x": 1}));
    lsp.notify("textDocument/didChange", json!({"nonsense": true}));

    // Positions out of range, and inside a surrogate pair: clamped, empty results.
    for p in [pos(10_000, 0), pos(0, 10_000), pos(u32::MAX, u32::MAX), pos(11, 27)] {
        let mut params = at(0, 0);
        params["position"] = p.clone();
        for method in ["textDocument/hover", "textDocument/definition", "textDocument/completion"] {
            let r = lsp.call(method, params.clone());
            assert!(r.get("error").is_none(), "{method} at {p}: {r}");
        }
        params["context"] = json!({"includeDeclaration": true});
        assert!(lsp.call("textDocument/references", params).get("error").is_none());
    }
    // A change with a range past the end, and one whose start is after its end.
    lsp.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": URI, "version": 2}, "contentChanges": [
            {"range": {"start": pos(500, 0), "end": pos(900, 3)}, "text": "\n// appended\n"},
            {"range": {"start": pos(0, 9), "end": pos(0, 7)}, "text": ""},
        ]}),
    );
    let _ = lsp.diagnostics(URI, Some(2));

    // Files that are not bundles, and files never opened: empty results.
    let txt = "file:///tmp/verdict-e2e/notes.txt";
    lsp.open(txt, "plaintext", "policy p {");
    assert!(lsp.diagnostics(txt, Some(1)).is_empty());
    let json_ctx = "file:///tmp/verdict-e2e/ctx.json";
    lsp.open(json_ctx, "json", "{\"subject\": {\"role\": \"admin\"}");
    assert!(lsp.diagnostics(json_ctx, Some(1)).is_empty());
    for uri in [txt, json_ctx, "file:///tmp/verdict-e2e/never-opened.verdict"] {
        let doc = json!({"textDocument": {"uri": uri}, "position": pos(0, 3)});
        assert_eq!(lsp.request("textDocument/hover", doc.clone()), Value::Null);
        assert!(matches!(lsp.request("textDocument/completion", doc).as_array().map(Vec::len), None | Some(0)));
        let only_doc = json!({"textDocument": {"uri": uri}, "options": {"tabSize": 2, "insertSpaces": true}});
        assert_eq!(lsp.request("textDocument/formatting", only_doc), Value::Null);
        let symbols = lsp.request("textDocument/documentSymbol", json!({"textDocument": {"uri": uri}}));
        assert!(symbols.is_null() || symbols == json!([]), "{symbols}");
    }
    lsp.notify("textDocument/didClose", json!({"textDocument": {"uri": txt}}));
    assert!(lsp.diagnostics(txt, None).is_empty());

    // Still serving.
    let hover = lsp.request("textDocument/hover", at(8, 10));
    assert!(hover["contents"]["value"].as_str().unwrap().contains("is_admin"), "{hover}");
    let r = lsp.call("initialize", json!({"capabilities": {}}));
    assert_eq!(r["error"]["code"], -32600);

    // After `shutdown`, requests are refused; `exit` ends with 0.
    assert_eq!(lsp.request("shutdown", Value::Null), Value::Null);
    let r = lsp.call("textDocument/hover", at(8, 10));
    assert_eq!(r["error"]["code"], -32600, "{r}");
    lsp.notify("exit", Value::Null);
    assert_eq!(lsp.wait_exit(), 0);
    let stderr = lsp.stderr.lock().unwrap().clone();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn exit_without_shutdown_is_code_1() {
    let mut lsp = Lsp::start();
    lsp.initialize();
    lsp.notify("exit", Value::Null);
    assert_eq!(lsp.wait_exit(), 1);
}

#[test]
fn end_of_input_ends_the_server() {
    let mut lsp = Lsp::start();
    lsp.initialize();
    assert_eq!(lsp.wait_exit(), 1);
}

/// A burst of 200 edits to a large document (1.2 MB; `VERDICT_E2E_POLICIES=9000` makes it 11 MB),
/// then a hover: answered on the latest text within the guard. Before, each edit waited for the diagnostics run of the previous one
/// (a hover after 200 edits to a 10 MB document came 114 s late); now diagnostics wait until the
/// edits stop, and an edit cancels the work on the old text at its next checkpoint.
#[test]
fn a_burst_of_edits_to_a_large_document_is_answered_on_the_latest_text() {
    let mut lsp = Lsp::start();
    lsp.initialize();
    let uri = "file:///tmp/verdict-e2e/large.verdict";
    let policies = std::env::var("VERDICT_E2E_POLICIES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000);
    let base = verdict_lsp::workload::many_rules(policies, 10).replacen("policy \"p0\"", "policy \"v00000\"", 1);
    let line = base.lines().position(|l| l.starts_with("policy \"v00000\"")).unwrap();
    let started = Instant::now();
    lsp.open(uri, "verdict", &base);
    for v in 1..=200 {
        let change = json!({
            "range": {"start": pos(line as u32, 8), "end": pos(line as u32, 14)},
            "text": format!("v{v:05}"),
        });
        lsp.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri, "version": v + 1}, "contentChanges": [change]}),
        );
    }
    let hover =
        lsp.request("textDocument/hover", json!({"textDocument": {"uri": uri}, "position": pos(line as u32, 10)}));
    let text = hover["contents"]["value"].as_str().unwrap_or_default().to_owned();
    assert!(text.contains("**policy** `v00200`"), "the hover is not on the latest text: {hover}");
    eprintln!("{} bytes, 200 edits and a hover: {:?}", base.len(), started.elapsed());
    let diags = lsp.diagnostics(uri, Some(201));
    assert!(diags.is_empty(), "{diags:#?}");
    eprintln!("and its diagnostics: {:?}", started.elapsed());
    assert_eq!(lsp.shut_down(), 0);
}
