//! The server in-process on hostile documents (issue 10, item 8): literals nested tens of
//! thousands deep get a V107 diagnostic and every request an answer; a document over the size
//! limit gets one V112 diagnostic and no other work; a burst of edits to a large document is
//! followed by a hover on its latest text within a generous hang guard (before, each edit waited
//! for the diagnostics run of the previous one).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use crossbeam_channel::{Receiver, Sender, unbounded};
use lsp_server::{Message, Notification, Request, RequestId};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use verdict_compiler::source::MAX_SOURCE_BYTES;
use verdict_lsp::transport::{Incoming, Outgoing};
use verdict_lsp::workload::many_rules;

/// How long any one answer may take: a hang guard, far above what the work needs.
const GUARD: Duration = Duration::from_secs(60);

struct Client {
    tx: Sender<Incoming>,
    rx: Receiver<Outgoing>,
    server: std::thread::JoinHandle<u8>,
    unread: Vec<Value>,
}

impl Client {
    fn start() -> Client {
        let (tx, in_rx) = unbounded();
        let (out_tx, rx) = unbounded();
        let server = std::thread::spawn(move || verdict_lsp::server::serve(in_rx, out_tx));
        let mut c = Client { tx, rx, server, unread: Vec::new() };
        c.request(0, "initialize", json!({"capabilities": {}}));
        c.wait_for("the initialize response", GUARD, |m| m["id"] == 0);
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

    /// The next message matching `pred`, within `guard`.
    fn wait_for(&mut self, what: &str, guard: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.unread.iter().position(&pred) {
            return self.unread.remove(i);
        }
        let deadline = Instant::now() + guard;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = match self.rx.recv_timeout(left) {
                Ok(Outgoing::Message(m)) => serde_json::to_value(m).unwrap(),
                Ok(Outgoing::Raw(v)) => v,
                Err(_) => panic!("no {what} within {guard:?}"),
            };
            if pred(&m) {
                return m;
            }
            self.unread.push(m);
        }
    }

    /// The diagnostics of the latest publication for `uri` at `version`.
    fn diagnostics(&mut self, uri: &str, version: i64) -> Vec<Value> {
        let n = self.wait_for(&format!("diagnostics of {uri} v{version}"), GUARD, |m| {
            m["method"] == "textDocument/publishDiagnostics"
                && m["params"]["uri"] == uri
                && m["params"]["version"] == version
        });
        n["params"]["diagnostics"].as_array().cloned().unwrap()
    }

    fn open(&self, uri: &str, language: &str, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": language, "version": 1, "text": text}}),
        );
    }

    fn finish(self) {
        self.request(999, "shutdown", Value::Null);
        self.notify("exit", Value::Null);
        assert_eq!(self.server.join().unwrap(), 0);
    }
}

/// Every request the server answers about a document, at a position.
fn every_request(uri: &str, line: u32, character: u32) -> Vec<(&'static str, Value)> {
    let position = json!({"line": line, "character": character});
    let at = json!({"textDocument": {"uri": uri}, "position": position});
    vec![
        ("textDocument/hover", at.clone()),
        ("textDocument/definition", at.clone()),
        (
            "textDocument/references",
            json!({"textDocument": {"uri": uri}, "position": position, "context": {"includeDeclaration": true}}),
        ),
        ("textDocument/completion", at),
        ("textDocument/documentSymbol", json!({"textDocument": {"uri": uri}})),
        (
            "textDocument/formatting",
            json!({"textDocument": {"uri": uri}, "options": {"tabSize": 2, "insertSpaces": true}}),
        ),
    ]
}

/// `obligations` (and a schema type, terms in `state` blocks and reason templates) nested
/// 30,000–50,000 deep in every form: diagnostics with V107, an answer to every request, and the
/// server goes on.
#[test]
fn deeply_nested_documents_get_diagnostics_and_answers() {
    const OBJECTS: usize = 30_000;
    const LISTS: usize = 50_000;
    let rule = |setting: &str| {
        format!("bundle b {{}}\npolicy p {{\n  rule r allow {{\n    when true\n    {setting}\n  }}\n}}\n")
    };
    let objects = format!("{}1{}", "{a:".repeat(OBJECTS), "}".repeat(OBJECTS));
    let lists = format!("{{a: {}{}}}", "[".repeat(LISTS), "]".repeat(LISTS));
    let quoted = format!("{}1{}", "{\"a\":".repeat(OBJECTS), "}".repeat(OBJECTS));
    let docs = [
        ("file:///objects.verdict", "verdict", rule(&format!("obligations {objects}")), "V107"),
        ("file:///lists.verdict", "verdict", rule(&format!("obligations {lists}")), "V107"),
        (
            "file:///cond.verdict",
            "verdict",
            format!(
                "bundle b {{}}\npolicy p {{\n  rule r allow {{\n    when resource.x == {}{}\n  }}\n}}\n",
                "[".repeat(LISTS),
                "]".repeat(LISTS)
            ),
            "V107",
        ),
        (
            "file:///type.verdict",
            "verdict",
            format!(
                "bundle b {{\n  effects [{}deny{}, allow]\n  schema {{ x: {}string{} }}\n}}\npolicy p {{ rule r allow {{ when true }} }}\n",
                "list<".repeat(LISTS),
                ">".repeat(LISTS),
                "list<".repeat(LISTS),
                ">".repeat(LISTS)
            ),
            "V107",
        ),
        (
            "file:///terms.verdict",
            "verdict",
            format!(
                "bundle b {{}}\nstate s {{ add {}1{} }}\npolicy p {{\n  rule r allow {{\n    when s.day + 1 > 2\n    reason f\"{{{}s.day{}:.2f}}\"\n  }}\n}}\n",
                "(".repeat(LISTS),
                ")".repeat(LISTS),
                "(".repeat(LISTS),
                ")".repeat(LISTS)
            ),
            "V107",
        ),
        (
            "file:///terms.yaml",
            "yaml",
            format!(
                "bundle_id: b\nstate: {{s: {{add: amount}}}}\npolicies: [{{id: p, rules: [{{id: r, effect: allow, when: 's.day > 1', reason_template: '{{{}s.day{}}}'}}]}}]\n",
                "-".repeat(LISTS),
                " + 1".repeat(LISTS)
            ),
            "V107",
        ),
        (
            "file:///objects.yaml",
            "yaml",
            format!(
                "bundle_id: b\npolicies: [{{id: p, rules: [{{id: r, effect: allow, when: {{kind: always}}, obligations: {quoted}}}]}}]\n"
            ),
            "V107",
        ),
        (
            "file:///objects.json",
            "json",
            format!(
                "{{\"bundle_id\": \"b\", \"policies\": [{{\"id\": \"p\", \"rules\": [{{\"id\": \"r\", \"effect\": \"allow\", \"when\": {{\"kind\": \"always\"}}, \"obligations\": {quoted}}}]}}]}}\n"
            ),
            "V107",
        ),
    ];
    let mut c = Client::start();
    let mut id = 1;
    for (uri, language, text, code) in &docs {
        c.open(uri, language, text);
        let diags = c.diagnostics(uri, 1);
        assert!(diags.iter().any(|d| d["code"] == *code), "{uri}: {diags:?}");
        // The last position is on the term inside the template of `terms.verdict`.
        for (line, character) in [(1, 8), (4, 6), (0, 0), (4, 14 + LISTS as u32 + 2)] {
            for (method, params) in every_request(uri, line, character) {
                c.request(id, method, params);
                let r = c.wait_for(&format!("{method} on {uri}"), GUARD, |m| m["id"] == id);
                assert!(r.get("error").is_none(), "{method} on {uri}: {r}");
                id += 1;
            }
        }
    }
    // The server still serves an ordinary document.
    c.open("file:///ok.verdict", "verdict", "bundle b {}\npolicy p {\n  rule r allow { when x == 1 }\n}\n");
    assert_eq!(c.diagnostics("file:///ok.verdict", 1), Vec::<Value>::new());
    c.finish();
}

/// A document over the size limit gets one V112 diagnostic at once; nothing else runs on it, and
/// every request is answered (with nothing).
#[test]
fn an_oversized_document_gets_one_diagnostic() {
    let mut c = Client::start();
    let uri = "file:///huge.verdict";
    // Deep enough that parsing it would say so: it must say "too large" instead.
    c.open(uri, "verdict", &"(".repeat(MAX_SOURCE_BYTES + 1));
    let diags = c.diagnostics(uri, 1);
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(diags[0]["code"], "V112", "{diags:?}");
    for (i, (method, params)) in every_request(uri, 0, 10).into_iter().enumerate() {
        let id = i32::try_from(i).unwrap() + 1;
        c.request(id, method, params);
        let r = c.wait_for(method, GUARD, |m| m["id"] == id);
        assert!(r.get("error").is_none(), "{method}: {r}");
    }
    c.finish();
}

/// 200 quick edits to a large document, then a hover: answered on the latest text within the
/// guard. Before, every edit waited for the diagnostics run started by the previous one (a hover
/// after 200 edits to a 10 MB document came 114 s late).
#[test]
fn a_hover_after_a_burst_of_edits_sees_the_latest_text() {
    let mut c = Client::start();
    let uri = "file:///big.verdict";
    // The first policy's name is `p0`: edits rename it to `v00001`, `v00002`, … in place.
    let base = many_rules(400, 10).replacen("policy \"p0\"", "policy \"v00000\"", 1);
    let line = base.lines().position(|l| l.starts_with("policy \"v00000\"")).unwrap();
    c.open(uri, "verdict", &base);
    let started = Instant::now();
    for v in 1..=200 {
        let change = json!({
            "range": {"start": {"line": line, "character": 8}, "end": {"line": line, "character": 14}},
            "text": format!("v{v:05}"),
        });
        c.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri, "version": v + 1}, "contentChanges": [change]}),
        );
    }
    c.request(
        1,
        "textDocument/hover",
        json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": 10}}),
    );
    let r = c.wait_for("the hover after 200 edits", Duration::from_secs(30), |m| m["id"] == 1);
    let text = r["result"]["contents"]["value"].as_str().unwrap_or_default().to_owned();
    assert!(text.contains("**policy** `v00200`"), "the hover is not on the latest text: {r}");
    // The diagnostics of the latest version arrive too, and none of an older one after them.
    let diags = c.diagnostics(uri, 201);
    assert!(diags.is_empty(), "{diags:?}");
    eprintln!("200 edits and a hover: {:?}", started.elapsed());
    c.finish();
}
