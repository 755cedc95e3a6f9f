//! Decision logs you can use (issue 14): audit lines that record the obligations and the inputs a
//! decision read (and replay to the same decision), the audit stream to a real HTTP collector
//! (up, down, slow: decisions never wait, drops are counted), and `POST /evaluate` on a default
//! bundle with a bare context or flat facts. In-process servers on 127.0.0.1; the collector is an
//! axum server in the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use axum::body::Bytes;
use axum::http::HeaderMap;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use verdict_compiler::source::SourceFile;
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::request::Request;
use verdict_runtime::state::{Read, Replayed};
use verdict_server::audit::{AuditTarget, StateRead};
use verdict_server::auth::Auth;
use verdict_server::stream::StreamOptions;
use verdict_server::{Config, Server, start};

const ADMIN: &str = "admin-token-0123456789abcdef-0123456789";
const EVAL: &str = "evaluate-token-0123456789abcdef-0123456";
/// A hang guard for things that happen in the background (never a measurement).
const WITHIN: Duration = Duration::from_secs(60);
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// A stateful budget: approvals hold their amount; a total over `limit` is denied.
fn budget(limit: u32) -> String {
    format!(
        r#"bundle "budget" {{
  version "1.0.0"
  hold_ttl "10m"
  schema {{ amount: number, subject.id: string }}
  required [amount, subject.id]
}}

state spend {{
  add amount
  key [subject.id]
  on [allow]
  apply commit
}}

policy budget {{
  default allow
  match first

  rule over_budget deny {{
    when spend.total + amount > {limit}
    reason f"Budget exhausted (${{spend.total:.2f}} / ${limit}.00)"
  }}
}}
"#
    )
}

fn example(path: &str) -> String {
    std::fs::read_to_string(PathBuf::from(WORKSPACE).join(path)).unwrap()
}

struct Harness {
    server: Server,
    base: String,
    client: Client,
    audit: PathBuf,
}

async fn harness(name: &str, tune: impl FnOnce(&mut Config)) -> Harness {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("logs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let audit = dir.join("audit.jsonl");
    let mut config = Config::new("127.0.0.1:0".parse().unwrap());
    config.auth = Auth::from_tokens(Some(ADMIN.into()), Some(EVAL.into()));
    config.audit = AuditTarget::File(audit.clone());
    tune(&mut config);
    let server = start(config).await.unwrap();
    let base = format!("http://{}", server.addr());
    Harness { server, base, client: Client::new(), audit }
}

impl Harness {
    async fn post(&self, path: &str, token: Option<&str>, body: &str, request_id: Option<&str>) -> (StatusCode, Value) {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(30))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(id) = request_id {
            req = req.header("x-request-id", id);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn put_bundle(&self, id: &str, dsl: &str) {
        let resp = self
            .client
            .put(format!("{}/bundles/{id}", self.base))
            .bearer_auth(ADMIN)
            .header("content-type", "text/x-verdict")
            .body(dsl.to_owned())
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    }

    async fn metrics(&self) -> String {
        self.client.get(format!("{}/metrics", self.base)).send().await.unwrap().text().await.unwrap()
    }

    async fn metric(&self, series: &str) -> u64 {
        let text = self.metrics().await;
        let line = text.lines().find(|l| l.rsplit_once(' ').is_some_and(|(name, _)| name == series));
        line.and_then(|l| l.rsplit_once(' ')).unwrap_or_else(|| panic!("no `{series}` in {text}")).1.parse().unwrap()
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.audit).unwrap().lines().map(str::to_owned).collect()
    }

    /// Stops the server (flushing the audit log and the stream) and returns the audit lines.
    async fn finish(self) -> Vec<String> {
        let audit = self.audit.clone();
        self.server.shutdown().await.unwrap();
        std::fs::read_to_string(&audit).unwrap().lines().map(str::to_owned).collect()
    }
}

fn parse(lines: &[String]) -> Vec<Value> {
    lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Evaluates `dsl` on what an evaluation line recorded: its input, its time, its state reads.
fn replay(dsl: &str, line: &Value) -> Value {
    let file = SourceFile::new("bundle.verdict", dsl.to_owned());
    let bundle = verdict_compiler::compile_for_use(&file).bundle.unwrap();
    let engine = verdict_runtime::vm::Engine::new(verdict_compiler::codegen::program(&bundle)).unwrap();
    let req = Request::from_value(line["input"].clone()).unwrap();
    let now: jiff::Timestamp = line["time"].as_str().unwrap().parse().unwrap();
    let reads = line.get("state_reads").and_then(Value::as_array).cloned().unwrap_or_default();
    let reads: Vec<Read> = reads.iter().map(|r| StateRead::from_json(r).unwrap()).collect();
    let view = Replayed::new(&reads);
    let env = Env { now, decision_id: line["decision_id"].as_str(), state: Some(&view), externs: None };
    serde_json::to_value(engine.evaluate(&req, &env, Mode::PLAIN).decision).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lines_record_obligations_and_only_the_inputs_read_and_replay_to_the_same_decision() {
    let h = harness("inputs", |_| {}).await;
    let dsl = example("examples/ai-inference/bundle.verdict");
    h.put_bundle("ai-inference-gate", &dsl).await;
    let mut answers = Vec::new();
    for (i, case) in example("examples/ai-inference/cases.jsonl").lines().enumerate() {
        let mut ctx: Value = serde_json::from_str::<Value>(case).unwrap()["context"].clone();
        // Fields the bundle never reads must not reach the log.
        ctx["subject"]["email"] = json!("secret@example.com");
        ctx["data"]["prompt"] = json!("a secret prompt");
        let id = format!("case-{i}");
        let (s, v) = h.post("/bundles/ai-inference-gate/evaluate", Some(EVAL), &ctx.to_string(), Some(&id)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        answers.push((id, v));
    }
    let text = std::fs::read_to_string(&h.audit).unwrap();
    assert!(!text.contains("secret"), "unread fields are logged: {text}");
    let lines = parse(&h.finish().await);
    // The paths this version's lines record, once, before its first evaluation.
    let inputs: Vec<&Value> = lines.iter().filter(|l| l["event"] == "evaluation_inputs").collect();
    assert_eq!(inputs.len(), 1, "{lines:#?}");
    let first_eval = lines.iter().position(|l| l["event"] == "evaluation").unwrap();
    assert!(lines.iter().position(|l| l["event"] == "evaluation_inputs").unwrap() < first_eval);
    assert_eq!(
        inputs[0]["paths"],
        json!([
            "action",
            "resource.contains_pii",
            "resource.data_classes",
            "resource.model",
            "risk_score",
            "subject.role"
        ])
    );
    assert_eq!(inputs[0]["bundle_id"], "ai-inference-gate");
    assert_eq!(inputs[0]["stateful"], false);
    for (id, answer) in &answers {
        let line = lines.iter().find(|l| l["event"] == "evaluation" && l["correlation_id"] == id.as_str()).unwrap();
        assert_eq!(line["decision_id"], answer["decision_id"]);
        assert_eq!(line["obligations"], answer["decision"]["obligations"], "{line}");
        assert!(line.get("state_reads").is_none());
        // Only what the bundle reads, and enough to decide again exactly.
        assert!(line["input"]["subject"].get("id").is_none(), "{line}");
        assert_eq!(replay(&dsl, line), answer["decision"], "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateful_lines_record_the_state_reads_a_replay_needs() {
    let h = harness("state", |_| {}).await;
    let dsl = budget(30);
    h.put_bundle("budget", &dsl).await;
    let mut answers = Vec::new();
    for (i, (who, amount)) in [("a", 10), ("a", 15), ("b", 10), ("a", 10), ("a", 4)].into_iter().enumerate() {
        let ctx = json!({"subject": {"id": who, "name": "n"}, "data": {"amount": amount}});
        let id = format!("spend-{i}");
        let (s, v) = h.post("/bundles/budget/evaluate", Some(EVAL), &ctx.to_string(), Some(&id)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        answers.push((id, v));
    }
    let kinds: Vec<&str> = answers.iter().map(|(_, v)| v["decision"]["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["allow", "allow", "allow", "deny", "allow"]);
    let lines = parse(&h.finish().await);
    let inputs = lines.iter().find(|l| l["event"] == "evaluation_inputs").unwrap();
    assert_eq!((&inputs["paths"], &inputs["stateful"]), (&json!(["amount", "subject.id"]), &json!(true)));
    for (i, (id, answer)) in answers.iter().enumerate() {
        let line = lines.iter().find(|l| l["event"] == "evaluation" && l["correlation_id"] == id.as_str()).unwrap();
        let reads = line["state_reads"].as_array().unwrap();
        assert_eq!(reads.len(), 1, "{line}");
        assert_eq!(reads[0]["state"], "spend");
        assert_eq!(reads[0]["range"], json!({"kind": "total"}));
        let spent = [0, 10, 0, 25, 25][i];
        assert_eq!(reads[0]["value"], json!(spent), "{line}");
        let (who, amount) = (["a", "a", "b", "a", "a"][i], [10, 15, 10, 10, 4][i]);
        assert_eq!(line["input"], json!({"subject": {"id": who}, "data": {"amount": amount}}));
        assert_eq!(replay(&dsl, line), answer["decision"], "{line}");
    }
}

// --- The audit stream ---------------------------------------------------------------------------

/// How the test's collector answers.
#[derive(Clone, Copy)]
enum Answer {
    Ok,
    /// Never within the stream's timeout.
    Slow,
}

/// A collector of POSTed audit batches (an axum server on 127.0.0.1).
struct Collector {
    url: String,
    batches: Arc<Mutex<Vec<(String, String)>>>,
}

async fn collector(answer: Answer) -> Collector {
    let batches: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let seen = batches.clone();
    let app = axum::Router::new().route(
        "/ingest",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let seen = seen.clone();
            async move {
                if let Answer::Slow = answer {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                let ctype = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                seen.lock().unwrap().push((ctype, String::from_utf8(body.to_vec()).unwrap()));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ingest", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Collector { url, batches }
}

/// A URL where nothing listens (a port bound, then released).
fn nobody() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/ingest", l.local_addr().unwrap());
    drop(l);
    url
}

fn streaming(url: &str, queue: usize, timeout: Duration) -> impl FnOnce(&mut Config) {
    let options = StreamOptions { url: url.to_owned(), queue, timeout };
    move |c: &mut Config| c.audit_stream = Some(options)
}

/// `n` evaluations, `clients` at a time; each must be answered 200.
async fn load(h: &Harness, bundle: &str, n: usize, clients: usize) {
    let h_base = h.base.clone();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, base, bundle) = (h.client.clone(), h_base.clone(), bundle.to_owned());
        tasks.push(tokio::spawn(async move {
            for i in (c..n).step_by(clients) {
                let ctx = json!({"subject": {"role": "service"}, "action": "infer", "resource": {"model": "gpt-4o"}, "data": {"risk_score": (i % 10) as f64 / 10.0}});
                let resp = client
                    .post(format!("{base}/bundles/{bundle}/evaluate"))
                    .timeout(Duration::from_secs(30))
                    .bearer_auth(EVAL)
                    .header("x-request-id", format!("load-{i}"))
                    .json(&ctx)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(WITHIN, t).await.expect("decisions hung").unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_posts_every_line_of_the_file_to_the_collector() {
    let c = collector(Answer::Ok).await;
    let h = harness("stream-up", streaming(&c.url, 10_000, Duration::from_secs(10))).await;
    h.put_bundle("ai-inference-gate", &example("examples/ai-inference/bundle.verdict")).await;
    load(&h, "ai-inference-gate", 300, 8).await;
    // While serving: the collector catches up.
    let started = Instant::now();
    while h.metric("verdict_audit_stream_lines_sent_total").await < h.lines().len() as u64 {
        assert!(started.elapsed() < WITHIN, "{}", h.metrics().await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.metric("verdict_audit_stream_lines_dropped_total{reason=\"queue_full\"}").await, 0);
    assert_eq!(h.metric("verdict_audit_stream_lines_dropped_total{reason=\"send_failed\"}").await, 0);
    h.put_bundle("budget", &budget(30)).await;
    // After a graceful shutdown, the collector has exactly the file's lines, in order.
    let file = h.finish().await;
    let batches = c.batches.lock().unwrap().clone();
    assert!(batches.iter().all(|(ctype, body)| ctype == "application/x-ndjson" && body.ends_with('\n')));
    let streamed: Vec<String> = batches.iter().flat_map(|(_, b)| b.lines().map(str::to_owned)).collect();
    assert_eq!(streamed, file);
    assert_eq!(parse(&streamed).iter().filter(|l| l["event"] == "evaluation").count(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_no_decision_and_every_line_is_counted() {
    let h = harness("stream-down", streaming(&nobody(), 10_000, Duration::from_secs(2))).await;
    h.put_bundle("ai-inference-gate", &example("examples/ai-inference/bundle.verdict")).await;
    load(&h, "ai-inference-gate", 200, 8).await;
    let started = Instant::now();
    loop {
        let queued = h.metric("verdict_audit_stream_queued_lines").await;
        let dropped = h.metric("verdict_audit_stream_lines_dropped_total{reason=\"queue_full\"}").await
            + h.metric("verdict_audit_stream_lines_dropped_total{reason=\"send_failed\"}").await;
        if queued == 0 && dropped == h.lines().len() as u64 {
            break;
        }
        assert!(started.elapsed() < WITHIN, "{}", h.metrics().await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.metric("verdict_audit_stream_lines_sent_total").await, 0);
    assert!(h.metric("verdict_audit_stream_post_failures_total").await > 0);
    // The file is the durable log: every decision is there.
    let lines = parse(&h.finish().await);
    assert_eq!(lines.iter().filter(|l| l["event"] == "evaluation").count(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_collector_fills_the_bounded_queue_and_decisions_go_on() {
    // The collector never answers (within the test): the first POST holds its lines, the queue
    // takes at most 20, every other line is dropped at once.
    let c = collector(Answer::Slow).await;
    let h = harness("stream-slow", streaming(&c.url, 20, WITHIN)).await;
    h.put_bundle("ai-inference-gate", &example("examples/ai-inference/bundle.verdict")).await;
    load(&h, "ai-inference-gate", 400, 8).await;
    let started = Instant::now();
    loop {
        let queued = h.metric("verdict_audit_stream_queued_lines").await;
        let full = h.metric("verdict_audit_stream_lines_dropped_total{reason=\"queue_full\"}").await;
        assert!(queued <= 20, "{}", h.metrics().await);
        if queued + full == h.lines().len() as u64 {
            assert!(full >= h.lines().len() as u64 - 20);
            break;
        }
        assert!(started.elapsed() < WITHIN, "{}", h.metrics().await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.metric("verdict_audit_stream_lines_sent_total").await, 0);
    // Shutdown waits for the stream a bounded time only.
    let lines = parse(&h.finish().await);
    assert_eq!(lines.iter().filter(|l| l["event"] == "evaluation").count(), 400);
    assert!(c.batches.lock().unwrap().is_empty(), "the slow collector never answered in time");
}

#[tokio::test]
async fn an_invalid_stream_url_stops_the_start() {
    for url in ["https://collector.example/ingest", "collector:9000", "http://user:pw@collector/"] {
        let mut config = Config::new("127.0.0.1:0".parse().unwrap());
        config.audit_stream = Some(StreamOptions::new(url));
        let e = start(config).await.err().unwrap().to_string();
        assert!(e.starts_with(&format!("invalid audit stream URL `{url}`")), "{e}");
    }
}

// --- The default bundle ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_bundle_takes_bare_contexts_and_flat_facts_with_the_evaluate_token() {
    let h = harness("default", |c| c.default_bundle = Some("ai-inference-gate".into())).await;
    // Not loaded yet: 404, after authorization.
    assert_eq!(h.post("/evaluate", None, "{}", None).await.0, StatusCode::UNAUTHORIZED);
    let (s, v) = h.post("/evaluate", Some(EVAL), r#"{"risk_score": 0.9}"#, None).await;
    assert_eq!((s, &v["detail"]), (StatusCode::NOT_FOUND, &json!("unknown bundle")));
    h.put_bundle("ai-inference-gate", &example("examples/ai-inference/bundle.verdict")).await;

    // Flat facts are `data`: here only `risk_score` of the paths the bundle reads.
    let (s, v) = h.post("/evaluate", Some(EVAL), r#"{"risk_score": 0.9, "tenant": "t1"}"#, Some("facts-1")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["bundle_id"], "ai-inference-gate");
    assert_eq!(v["decision"]["matched_rule_id"], "unapproved-model", "{v}");
    // Flat facts reach every root of the merged view through `data`.
    let facts = r#"{"action": "infer", "resource": {"model": "gpt-4o"}, "risk_score": 0.95}"#;
    let (s, v) = h.post("/evaluate", Some(EVAL), facts, None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "a body with `action` is a context: {v}");
    let facts = r#"{"model_risk": 1, "risk_score": 0.95}"#;
    assert_eq!(h.post("/evaluate", Some(EVAL), facts, None).await.0, StatusCode::OK);
    // A bare request context.
    let ctx = json!({"subject": {"role": "service"}, "action": "infer", "resource": {"model": "gpt-4o"}, "data": {"risk_score": 0.95}});
    let (s, v) = h.post("/evaluate", Some(EVAL), &ctx.to_string(), Some("ctx-1")).await;
    assert_eq!((s, &v["decision"]["kind"]), (StatusCode::OK, &json!("degrade")), "{v}");
    // Not an object, or a context with a bad shape: 422.
    for body in ["[1, 2]", "\"x\"", r#"{"subject": "me"}"#] {
        let (s, v) = h.post("/evaluate", Some(EVAL), body, None).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
    }
    // `{bundle, context}` stays the one-shot form, for admins only.
    let oneshot =
        json!({"bundle": example("examples/quickstart/bundle.yaml"), "context": json!({"subject": {"role": "admin"}})});
    assert_eq!(h.post("/evaluate", Some(EVAL), &oneshot.to_string(), None).await.0, StatusCode::FORBIDDEN);
    let (s, v) = h.post("/evaluate", Some(ADMIN), &oneshot.to_string(), None).await;
    assert_eq!((s, &v["bundle_id"]), (StatusCode::OK, &json!("edu-gate")), "{v}");
    assert_eq!(h.post("/evaluate", Some("x".repeat(40).as_str()), "{}", None).await.0, StatusCode::FORBIDDEN);

    let lines = parse(&h.finish().await);
    let line = lines.iter().find(|l| l["correlation_id"] == "facts-1").unwrap();
    assert_eq!((&line["caller"], &line["input"]), (&json!("evaluator"), &json!({"data": {"risk_score": 0.9}})));
    let line = lines.iter().find(|l| l["correlation_id"] == "ctx-1").unwrap();
    assert_eq!(
        line["input"],
        json!({"subject": {"role": "service"}, "action": "infer", "resource": {"model": "gpt-4o"}, "data": {"risk_score": 0.95}})
    );
}

#[tokio::test]
async fn without_a_default_bundle_post_evaluate_stays_admin_only() {
    let h = harness("no-default", |_| {}).await;
    assert_eq!(h.post("/evaluate", Some(EVAL), r#"{"risk_score": 0.9}"#, None).await.0, StatusCode::FORBIDDEN);
    let (s, v) = h.post("/evaluate", Some(ADMIN), r#"{"risk_score": 0.9}"#, None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    h.finish().await;
}
