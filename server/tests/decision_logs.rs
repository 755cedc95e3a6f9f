//! Decision logs you can use (issue 14): audit lines that record the obligations and the inputs a
//! decision read (and replay to the same decision). In-process servers on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use reqwest::{Client, StatusCode};
use serde_json::{Number, Value, json};
use std::path::PathBuf;
use std::time::Duration;
use verdict_compiler::source::SourceFile;
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::request::Request;
use verdict_runtime::state::{Micros, Range, StateView, StoreError};
use verdict_server::audit::{AuditTarget, StateRead};
use verdict_server::auth::Auth;
use verdict_server::decisions::Read;
use verdict_server::{Config, Server, start};

const ADMIN: &str = "admin-token-0123456789abcdef-0123456789";
const EVAL: &str = "evaluate-token-0123456789abcdef-0123456";
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

/// A state view that answers with the reads an audit line recorded, and fails on any other.
struct Recorded(Vec<Read>);

impl StateView for Recorded {
    fn read(&self, state: &str, key: &[Value], range: Range, _: Micros) -> Result<Number, StoreError> {
        let hit = self.0.iter().find(|r| r.state == state && r.key == key && r.range == range);
        hit.map(|r| r.value.clone()).ok_or_else(|| StoreError::Unavailable("not recorded".into()))
    }
}

/// Evaluates `dsl` on what an evaluation line recorded: its input, its time, its state reads.
fn replay(dsl: &str, line: &Value) -> Value {
    let file = SourceFile::new("bundle.verdict", dsl.to_owned());
    let bundle = verdict_compiler::compile_for_use(&file).bundle.unwrap();
    let engine = verdict_runtime::vm::Engine::new(verdict_compiler::codegen::program(&bundle)).unwrap();
    let req = Request::from_value(line["input"].clone()).unwrap();
    let now: jiff::Timestamp = line["time"].as_str().unwrap().parse().unwrap();
    let reads = line.get("state_reads").and_then(Value::as_array).cloned().unwrap_or_default();
    let view = Recorded(reads.iter().map(|r| StateRead::from_json(r).unwrap()).collect());
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
