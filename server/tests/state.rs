//! Decisions with state and shadow evaluation through the service (in-process servers on
//! 127.0.0.1, the in-memory store; the Redis store and replicas are tested as processes in
//! `cli/tests/serve_redis.rs`): decision ids and holds in answers and audit lines, commit and
//! release, shadow reports against the requests sent and `verdict diff`'s prediction, the
//! candidate never recording state, and promotion under load. Every audit line the tests write
//! keeps the audit contract (`contracts/audit-event.schema.json`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use verdict_server::audit::AuditTarget;
use verdict_server::auth::Auth;
use verdict_server::{Config, Server, start};

const ADMIN: &str = "admin-token-0123456789abcdef-0123456789";
const EVAL: &str = "evaluate-token-0123456789abcdef-0123456";
/// How long the shadow thread may take to catch up (a hang guard, not a measurement).
const DRAIN_WITHIN: Duration = Duration::from_secs(60);

/// A stateless gate: amounts over `limit` are denied.
fn gate(version: &str, limit: u32) -> String {
    format!(
        r#"bundle "gate" {{
  version "{version}"
  schema {{ amount: number }}
  required [amount]
}}

policy gate {{
  default allow
  match first

  rule too_much deny {{
    when amount > {limit}
    reason "over {limit}"
  }}
}}
"#
    )
}

/// A stateful budget: approvals hold their amount; a total over `limit` is denied.
fn budget(version: &str, limit: u32) -> String {
    format!(
        r#"bundle "budget" {{
  version "{version}"
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

struct Harness {
    server: Server,
    base: String,
    client: Client,
    audit: PathBuf,
}

async fn harness(name: &str) -> Harness {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("state-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let audit = dir.join("audit.jsonl");
    let mut config = Config::new("127.0.0.1:0".parse().unwrap());
    config.auth = Auth::from_tokens(Some(ADMIN.into()), Some(EVAL.into()));
    config.audit = AuditTarget::File(audit.clone());
    let server = start(config).await.unwrap();
    let base = format!("http://{}", server.addr());
    Harness { server, base, client: Client::new(), audit }
}

impl Harness {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, String)>,
    ) -> (StatusCode, Value) {
        send(&self.client, &self.base, method, path, token, body, None).await
    }

    async fn put_bundle(&self, path: &str, dsl: String) -> (StatusCode, Value) {
        self.send(reqwest::Method::PUT, path, Some(ADMIN), Some(("text/x-verdict", dsl))).await
    }

    async fn evaluate(&self, bundle: &str, ctx: &Value, request_id: Option<&str>) -> (StatusCode, Value) {
        let path = format!("/bundles/{bundle}/evaluate");
        let body = Some(("application/json", ctx.to_string()));
        send(&self.client, &self.base, reqwest::Method::POST, &path, Some(EVAL), body, request_id).await
    }

    async fn settle(&self, id: &str, how: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, &format!("/decisions/{id}/{how}"), token, None).await
    }

    /// The shadow report once the shadow thread has looked at `n` decisions.
    async fn drained_report(&self, bundle: &str, n: u64) -> Value {
        let started = Instant::now();
        loop {
            let (s, v) = self.send(reqwest::Method::GET, &format!("/bundles/{bundle}/shadow"), Some(ADMIN), None).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            let seen = ["evaluated", "skipped", "dropped"].iter().map(|k| v[k].as_u64().unwrap()).sum::<u64>();
            if seen >= n {
                return v;
            }
            assert!(started.elapsed() < DRAIN_WITHIN, "the shadow thread did not catch up: {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn metric(&self, name: &str) -> u64 {
        let text = self.client.get(format!("{}/metrics", self.base)).send().await.unwrap().text().await.unwrap();
        let line = text.lines().find(|l| l.split_whitespace().next() == Some(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Stops the server (flushing the audit log) and returns the audit lines, each checked
    /// against the audit contract.
    async fn finish(self) -> Vec<Value> {
        self.server.shutdown().await.unwrap();
        let text = std::fs::read_to_string(&self.audit).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        lines_keep_the_contract(&lines);
        lines
    }
}

/// Asserts that every audit line satisfies `contracts/audit-event.schema.json`.
fn lines_keep_the_contract(lines: &[Value]) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts/audit-event.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let v = jsonschema::draft202012::new(&schema).unwrap();
    for (i, line) in lines.iter().enumerate() {
        let errors: Vec<String> = v.iter_errors(line).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "audit line {}: {errors:#?}\n{line:#}", i + 1);
    }
}

async fn send(
    client: &Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, String)>,
    request_id: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = client.request(method, format!("{base}{path}")).timeout(Duration::from_secs(30));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(id) = request_id {
        req = req.header("x-request-id", id);
    }
    if let Some((ctype, b)) = body {
        req = req.header("content-type", ctype).body(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn spend(amount: u32) -> Value {
    json!({"subject": {"id": "agent-1"}, "data": {"amount": amount}})
}

#[tokio::test]
async fn every_decision_has_an_id_and_stateful_ones_commit_and_release() {
    let h = harness("ids").await;
    assert_eq!(h.put_bundle("/bundles/gate", gate("1.0.0", 100)).await.0, StatusCode::CREATED);
    assert_eq!(h.put_bundle("/bundles/budget", budget("1.0.0", 30)).await.0, StatusCode::CREATED);

    // Stateless: an id, no holds.
    let (s, v) = h.evaluate("gate", &json!({"data": {"amount": 5}}), None).await;
    assert_eq!(s, StatusCode::OK);
    let stateless_id = v["decision_id"].as_str().unwrap().to_owned();
    assert!(stateless_id.starts_with("d-") && v.get("holds").is_none(), "{v}");

    // Stateful: each approval holds its amount at once.
    let (_, a) = h.evaluate("budget", &spend(10), None).await;
    assert_eq!(a["holds"], json!([{"state": "spend", "key": ["agent-1"], "amount": 10}]));
    let (_, b) = h.evaluate("budget", &spend(10), None).await;
    let (_, c) = h.evaluate("budget", &spend(10), None).await;
    let (_, full) = h.evaluate("budget", &spend(10), None).await;
    assert_eq!(full["decision"]["reason"], "Budget exhausted ($30.00 / $30.00)", "{full}");
    assert!(full.get("holds").is_none());
    let [a, b, c] = [&a, &b, &c].map(|v| v["decision_id"].as_str().unwrap().to_owned());

    // Commit and release: idempotent, and each refuses the other.
    for _ in 0..2 {
        assert_eq!(
            h.settle(&a, "commit", Some(EVAL)).await,
            (StatusCode::OK, json!({"decision_id": a, "status": "committed"}))
        );
        assert_eq!(
            h.settle(&b, "release", Some(ADMIN)).await,
            (StatusCode::OK, json!({"decision_id": b, "status": "released"}))
        );
    }
    let (s, v) = h.settle(&a, "release", Some(EVAL)).await;
    assert_eq!((s, v["detail"].clone()), (StatusCode::CONFLICT, json!("decision was committed")), "{v}");
    let (s, v) = h.settle(&b, "commit", Some(EVAL)).await;
    assert_eq!((s, v["detail"].clone()), (StatusCode::CONFLICT, json!("decision was released")), "{v}");
    // A decision without holds, an unknown one, and ids that are not ids.
    for id in [stateless_id.as_str(), "d-00000000000000000000000000000000", "x%20y", &"d".repeat(200)] {
        let (s, v) = h.settle(id, "commit", Some(EVAL)).await;
        assert_eq!((s, v["detail"].clone()), (StatusCode::NOT_FOUND, json!("unknown decision")), "{id}: {v}");
    }
    // Authorization as for evaluations.
    assert_eq!(h.settle(&c, "commit", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(h.settle(&c, "commit", Some("wrong-token-0123456789abcdef-0123456789")).await.0, StatusCode::FORBIDDEN);

    // The released 10 is spent again; the committed and held ones still count.
    let (_, again) = h.evaluate("budget", &spend(10), None).await;
    assert_eq!(again["decision"]["kind"], "allow", "{again}");
    let (_, full) = h.evaluate("budget", &spend(10), None).await;
    assert_eq!(full["decision"]["reason"], "Budget exhausted ($30.00 / $30.00)", "{full}");

    let audit = h.finish().await;
    let evaluations: Vec<&Value> = audit.iter().filter(|l| l["event"] == "evaluation").collect();
    assert_eq!(evaluations.len(), 7);
    assert!(evaluations.iter().all(|l| l["decision_id"].as_str().is_some_and(|id| id.starts_with("d-"))));
    let with_holds: Vec<&str> =
        evaluations.iter().filter(|l| l.get("holds").is_some()).map(|l| l["decision_id"].as_str().unwrap()).collect();
    assert_eq!(&with_holds[..3], [a.as_str(), b.as_str(), c.as_str()]);
    let settled: Vec<(&str, &str)> = audit
        .iter()
        .filter(|l| l["event"].as_str().is_some_and(|e| e.starts_with("decision_")))
        .map(|l| (l["decision_id"].as_str().unwrap(), l["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        settled,
        [(a.as_str(), "committed"), (b.as_str(), "released"), (a.as_str(), "committed"), (b.as_str(), "released")]
    );
}

/// A candidate that lowers one threshold: the report counts exactly the requests whose effect
/// changes, with their correlation ids, beside the one transition `verdict diff` predicts.
#[tokio::test]
async fn shadow_reports_the_observed_and_the_predicted_transitions() {
    let h = harness("shadow").await;
    assert_eq!(h.put_bundle("/bundles/gate", gate("1.0.0", 100)).await.0, StatusCode::CREATED);
    let (s, v) = h.put_bundle("/bundles/gate/shadow", gate("2.0.0", 50)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["status"], "shadowing");

    // Amounts 0, 5, …, 200: those in (50, 100] go from allow to deny.
    let amounts: Vec<u32> = (0..=40).map(|i| i * 5).collect();
    let mut expected_ids = Vec::new();
    for &amount in &amounts {
        let id = format!("req-{amount}");
        let (s, v) = h.evaluate("gate", &json!({"data": {"amount": amount}}), Some(&id)).await;
        assert_eq!(s, StatusCode::OK);
        // The answer is always the live bundle's.
        assert_eq!(v["bundle_version"], "1.0.0");
        assert_eq!(v["decision"]["kind"], if amount > 100 { "deny" } else { "allow" });
        if amount > 50 && amount <= 100 {
            expected_ids.push(id);
        }
    }
    let n = amounts.len() as u64;
    let report = h.drained_report("gate", n).await;
    assert_eq!(report["evaluated"], n, "{report}");
    assert_eq!(report["agreed"], n - 10);
    assert_eq!((report["dropped"].clone(), report["skipped"].clone()), (json!(0), json!(0)));
    assert_eq!(report["transitions"], json!({"allow -> deny": {"count": 10, "correlation_ids": expected_ids}}));
    assert_eq!(report["live"]["version"], "1.0.0");
    assert_eq!(report["candidate"]["version"], "2.0.0");
    // `verdict diff`'s prediction: the same single transition, with a witness in (50, 100].
    let predicted = report["predicted"].as_array().unwrap();
    assert_eq!(predicted.len(), 1, "{report}");
    let t = &predicted[0];
    assert_eq!((t["from"].as_str(), t["to"].as_str()), (Some("allow"), Some("deny")));
    assert_eq!(t["new"], json!({"policy": "gate", "rule": "too_much"}));
    let witness = t["witness"]["data"]["amount"].as_f64().unwrap();
    assert!(witness > 50.0 && witness <= 100.0, "{t}");
    assert_eq!(report["prediction"]["equivalent"], false);

    assert_eq!(h.metric("verdict_shadow_evaluations_total").await, n);
    assert_eq!(h.metric("verdict_shadow_mismatches_total").await, 10);

    // Stop: the last report, then nothing to report.
    let (s, v) = h.send(reqwest::Method::DELETE, "/bundles/gate/shadow", Some(ADMIN), None).await;
    assert_eq!((s, v["status"].clone(), v["evaluated"].clone()), (StatusCode::OK, json!("stopped"), json!(n)));
    let (s, _) = h.send(reqwest::Method::GET, "/bundles/gate/shadow", Some(ADMIN), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = h.send(reqwest::Method::POST, "/bundles/gate/shadow/promote", Some(ADMIN), None).await;
    assert_eq!((s, v["detail"].clone()), (StatusCode::NOT_FOUND, json!("no shadow for this bundle")));
    // Admin only; the candidate must be for this bundle, which must exist.
    let (s, _) =
        h.send(reqwest::Method::PUT, "/bundles/gate/shadow", Some(EVAL), Some(("text/x-verdict", gate("3", 1)))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = h.put_bundle("/bundles/other/shadow", gate("3", 1)).await;
    assert_eq!((s, v["detail"].clone()), (StatusCode::NOT_FOUND, json!("unknown bundle")));
    assert_eq!(h.put_bundle("/bundles/budget", budget("1", 1)).await.0, StatusCode::CREATED);
    let (s, v) = h.put_bundle("/bundles/budget/shadow", gate("3", 1)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // Each mismatch is in the audit log with both decisions.
    let audit = h.finish().await;
    let mismatches: Vec<&Value> = audit.iter().filter(|l| l["event"] == "shadow_mismatch").collect();
    assert_eq!(mismatches.len(), 10);
    let m = mismatches[0];
    assert_eq!(m["correlation_id"], "req-55");
    assert_eq!((m["live"]["decision"].as_str(), m["candidate"]["decision"].as_str()), (Some("allow"), Some("deny")));
    assert_eq!(m["candidate"]["reason"], "over 50");
    let live_line = audit.iter().find(|l| l["event"] == "evaluation" && l["correlation_id"] == "req-55").unwrap();
    assert_eq!(m["decision_id"], live_line["decision_id"]);
}

/// A stateful candidate decides on the values the live decision read and records nothing: with
/// a budget half the live one, it denies from the 51st $10 on, and the live budget still fills
/// to exactly its limit.
#[tokio::test]
async fn a_stateful_candidate_replays_the_live_reads_and_records_nothing() {
    let h = harness("shadow-state").await;
    assert_eq!(h.put_bundle("/bundles/budget", budget("1.0.0", 1000)).await.0, StatusCode::CREATED);
    assert_eq!(h.put_bundle("/bundles/budget/shadow", budget("2.0.0", 500)).await.0, StatusCode::CREATED);
    let mut ids = Vec::new();
    for i in 0..100 {
        let (_, v) = h.evaluate("budget", &spend(10), Some(&format!("s-{i}"))).await;
        assert_eq!(v["decision"]["kind"], "allow", "{i}: {v}");
        ids.push(v["decision_id"].as_str().unwrap().to_owned());
    }
    // Half committed, half left held: both count for the live decisions.
    for id in ids.iter().step_by(2) {
        assert_eq!(h.settle(id, "commit", Some(EVAL)).await.0, StatusCode::OK);
    }
    let (_, full) = h.evaluate("budget", &spend(10), Some("s-100")).await;
    assert_eq!(full["decision"]["reason"], "Budget exhausted ($1000.00 / $1000.00)", "{full}");
    let report = h.drained_report("budget", 101).await;
    assert_eq!((report["evaluated"].clone(), report["agreed"].clone()), (json!(101), json!(51)), "{report}");
    let allow_deny = &report["transitions"]["allow -> deny"];
    assert_eq!(allow_deny["count"], 50);
    assert_eq!(allow_deny["correlation_ids"][0], "s-50");
    assert_eq!(report["live_reads"], 0);
    // The candidate's holds would have had no id to commit: none were made.
    h.finish().await;
}

/// Promotion under load: every answer is 200 and wholly the old or wholly the new version, and
/// every request sent after the promotion answered is decided by the new one.
#[tokio::test]
async fn promote_swaps_atomically_under_load() {
    let h = Arc::new(harness("promote").await);
    assert_eq!(h.put_bundle("/bundles/gate", gate("1.0.0", 100)).await.0, StatusCode::CREATED);
    let promoted_at: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (old, new) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut clients = Vec::new();
    for c in 0..8 {
        let (h, stop, promoted_at, old, new) = (h.clone(), stop.clone(), promoted_at.clone(), old.clone(), new.clone());
        clients.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let (s, v) = h.evaluate("gate", &json!({"data": {"amount": 75}}), Some(&format!("c{c}-{i}"))).await;
                assert_eq!(s, StatusCode::OK, "{v}");
                match (v["bundle_version"].as_str(), v["decision"]["kind"].as_str(), v["decision"]["reason"].as_str()) {
                    (Some("1.0.0"), Some("allow"), _) => {
                        let p = *promoted_at.lock().unwrap();
                        assert!(p.is_none_or(|p| sent < p), "an old answer to a request sent after the promotion: {v}");
                        old.fetch_add(1, Ordering::Relaxed);
                    }
                    (Some("2.0.0"), Some("deny"), Some("over 50")) => {
                        new.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => panic!("a mixed answer: {v}"),
                }
                i += 1;
            }
        }));
    }
    let at_least = |counter: Arc<AtomicU64>, n: u64| async move {
        let started = Instant::now();
        while counter.load(Ordering::Relaxed) < n {
            assert!(started.elapsed() < DRAIN_WITHIN, "the clients make no progress");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    at_least(old.clone(), 200).await;
    let (s, v) = h.put_bundle("/bundles/gate/shadow", gate("2.0.0", 50)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let shadowed_from = old.load(Ordering::Relaxed);
    at_least(old.clone(), shadowed_from + 200).await;
    let (s, v) = h.send(reqwest::Method::POST, "/bundles/gate/shadow/promote", Some(ADMIN), None).await;
    *promoted_at.lock().unwrap() = Some(Instant::now());
    assert_eq!(
        (s, v["status"].clone(), v["version"].clone()),
        (StatusCode::OK, json!("promoted"), json!("2.0.0")),
        "{v}"
    );
    // The promotion answers the final report: what was observed beside what was predicted.
    let report = &v["report"];
    assert_eq!(report["predicted"][0]["to"], "deny", "{v}");
    assert_eq!(report["agreed"], 0);
    let observed = report["transitions"]["allow -> deny"]["count"].as_u64().unwrap();
    assert_eq!(observed, report["evaluated"].as_u64().unwrap());
    at_least(new.clone(), 200).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (s, _) = h.send(reqwest::Method::GET, "/bundles/gate/shadow", Some(ADMIN), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "promotion stops shadowing");
    let h = Arc::into_inner(h).unwrap();
    let audit = h.finish().await;
    // The registration line of a promotion is the one every registration writes (the contract
    // was checked by `finish`), marked as a promotion.
    let promoted = audit.iter().find(|l| l["event"] == "bundle_replaced").unwrap();
    assert_eq!(
        (promoted["bundle_version"].as_str(), promoted["promoted_from_shadow"].as_bool()),
        (Some("2.0.0"), Some(true))
    );
    assert_eq!((&promoted["policy_count"], &promoted["signed_by"]), (&json!(1), &Value::Null), "{promoted}");
    let answered = audit.iter().filter(|l| l["event"] == "evaluation").count() as u64;
    assert_eq!(answered, old.load(Ordering::Relaxed) + new.load(Ordering::Relaxed));
}
