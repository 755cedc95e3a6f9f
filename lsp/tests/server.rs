//! The server loop in-process, over channels: edits cancel work on snapshots, cancelled
//! diagnostics are computed again, cancelled requests are run again, and every request gets
//! exactly one answer however edits and requests interleave.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use crossbeam_channel::{Receiver, Sender, unbounded};
use lsp_server::{Message, Notification, Request, RequestId};
use salsa::Setter;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use verdict_lsp::db::{Database, Lang, SourceInput, file_diagnostics};
use verdict_lsp::transport::{Incoming, Outgoing};
use verdict_lsp::workload::{many_rules, with_rule_effect};

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

    fn next(&self) -> Value {
        match self.rx.recv_timeout(Duration::from_secs(60)).expect("a message within 60 s") {
            Outgoing::Message(m) => serde_json::to_value(m).unwrap(),
            Outgoing::Raw(v) => v,
        }
    }

    fn finish(self) -> u8 {
        self.request(999, "shutdown", Value::Null);
        self.notify("exit", Value::Null);
        self.server.join().unwrap()
    }
}

fn change(uri: &str, version: i32, text: &str) -> Value {
    json!({"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": text}]})
}

#[test]
fn every_document_ends_with_the_diagnostics_of_its_last_version() {
    let c = Client::start();
    let big = many_rules(200, 10);
    let (a, b) = ("file:///a.verdict", "file:///b.verdict");
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": a, "languageId": "verdict", "version": 1, "text": big}}),
    );
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": b, "languageId": "verdict", "version": 1, "text": "policy p {"}}),
    );
    // Edits to both, back to back: each may cancel the other's diagnostics run.
    for v in 2..8 {
        let (text, _) = with_rule_effect(&big, v as usize, 1, if v == 7 { "alow" } else { "review" }).unwrap();
        c.notify("textDocument/didChange", change(a, v, &text));
        c.notify("textDocument/didChange", change(b, v, &format!("policy p{v} {{")));
    }
    let mut last: HashMap<String, (i64, usize)> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while last.get(a).is_none_or(|x| x.0 != 7) || last.get(b).is_none_or(|x| x.0 != 7) {
        assert!(Instant::now() < deadline, "{last:?}");
        let m = c.next();
        if m["method"] == "textDocument/publishDiagnostics" {
            let p = &m["params"];
            let version = p["version"].as_i64().unwrap();
            let prev = last
                .insert(p["uri"].as_str().unwrap().to_owned(), (version, p["diagnostics"].as_array().unwrap().len()));
            assert!(prev.is_none_or(|x| x.0 <= version), "published out of order: {prev:?} then {version}");
        }
    }
    assert_eq!(last[a].1, 1, "the unknown effect of version 7");
    assert!(last[b].1 >= 1, "the unclosed policy");
    assert_eq!(c.finish(), 0);
}

#[test]
fn every_request_is_answered_once_while_edits_cancel_them() {
    let c = Client::start();
    let big = many_rules(100, 10);
    let uri = "file:///big.verdict";
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": uri, "languageId": "verdict", "version": 1, "text": big}}),
    );
    let mut expected = Vec::new();
    for i in 1..40 {
        let method =
            ["textDocument/hover", "textDocument/documentSymbol", "textDocument/completion", "textDocument/formatting"]
                [i % 4];
        let params = json!({"textDocument": {"uri": uri}, "position": {"line": 12, "character": 12}, "options": {"tabSize": 2, "insertSpaces": true}});
        c.request(i as i32, method, params);
        expected.push(i as i64);
        if i % 3 == 0 {
            let (text, _) = with_rule_effect(&big, i, 2, "review").unwrap();
            c.notify("textDocument/didChange", change(uri, i as i32 + 1, &text));
        }
    }
    let mut answered: HashMap<i64, Value> = HashMap::new();
    while answered.len() < expected.len() {
        let m = c.next();
        if let Some(id) = m["id"].as_i64().filter(|id| *id > 0) {
            let ok = m.get("result").is_some() || m["error"]["code"] == -32801;
            assert!(ok, "a result or ContentModified: {m}");
            assert!(answered.insert(id, m).is_none(), "answered twice: {id}");
        }
    }
    // Requests cancelled by an edit run again on the new text: those sent before the last edit
    // were cancelled at most once, so they have results.
    for id in 37..40 {
        assert!(answered[&id].get("result").is_some(), "{}", answered[&id]);
    }
    assert_eq!(c.finish(), 0);
}

#[test]
fn a_write_cancels_queries_on_snapshots() {
    let mut db = Database::default();
    let file = SourceInput::new(&db, "big.verdict".into(), many_rules(50, 10), Lang::Verdict);
    let snapshot = db.clone();
    let worker = std::thread::spawn(move || {
        // Asks again and again (memoized) until the pending write cancels it.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if salsa::Cancelled::catch(|| file_diagnostics(&snapshot, file).len()).is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    });
    std::thread::sleep(Duration::from_millis(20));
    // Blocks until the snapshot is dropped, which the cancellation makes happen.
    file.set_text(&mut db).to("policy p {".into());
    assert!(worker.join().unwrap(), "the snapshot's query was cancelled");
    assert!(!file_diagnostics(&db, file).is_empty());
}
