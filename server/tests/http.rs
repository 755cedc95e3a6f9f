//! The PDP service over real HTTP: servers listening on 127.0.0.1 (a random port each), driven
//! with reqwest (and raw TCP where a client would be too polite: slow and chunked bodies).
//! Every endpoint, the quickstart through `POST /evaluate`, Decision Card registration and
//! condition assertions, authorization, limits, reloads and the audit log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use verdict_server::audit::AuditTarget;
use verdict_server::auth::Auth;
use verdict_server::keys::BuyerKeys;
use verdict_server::{Config, Server, start};

const ADMIN: &str = "admin-token-0123456789abcdef-0123456789";
const EVAL: &str = "evaluate-token-0123456789abcdef-0123456";
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const KEY_URL: &str = "https://buyer.example/keys/ed25519.pub";
const KEY_HEX: &str = "f21f7a5debf49ad2ea78559f542e23a0cd6b2cbe824f387ab64ed1d70b61516c";

static SCRATCH: AtomicUsize = AtomicUsize::new(0);

/// A fresh scratch directory under the target directory.
fn scratch(name: &str) -> PathBuf {
    let n = SCRATCH.fetch_add(1, Ordering::Relaxed);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("http-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn buyer_keys() -> BuyerKeys {
    use base64::Engine as _;
    let key: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&KEY_HEX[2 * i..2 * i + 2], 16).unwrap()).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(key);
    BuyerKeys::from_json(&json!({"buyer-1": {KEY_URL: b64}}).to_string())
}

struct Harness {
    server: Server,
    base: String,
    client: Client,
    audit: PathBuf,
}

async fn start_with(name: &str, f: impl FnOnce(&mut Config)) -> Harness {
    let dir = scratch(name);
    let audit = dir.join("audit.jsonl");
    let mut config = Config::new("127.0.0.1:0".parse().unwrap());
    config.auth = Auth::from_tokens(Some(ADMIN.into()), Some(EVAL.into()));
    config.buyer_keys = buyer_keys();
    config.audit = AuditTarget::File(audit.clone());
    f(&mut config);
    let server = start(config).await.unwrap();
    let base = format!("http://{}", server.addr());
    Harness { server, base, client: Client::new(), audit }
}

async fn harness(name: &str) -> Harness {
    start_with(name, |_| {}).await
}

impl Harness {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
        ctype: &str,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        self.call_bytes(method, path, token, body.map(String::into_bytes), ctype).await
    }

    async fn call_bytes(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
        ctype: &str,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", ctype).body(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, v)
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let (s, _, v) = self.call(Method::GET, path, token, None, "").await;
        (s, v)
    }

    async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
        let (s, _, v) = self.call(Method::POST, path, token, Some(body.to_string()), "application/json").await;
        (s, v)
    }

    async fn put(&self, path: &str, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
        let (s, _, v) = self.call(Method::PUT, path, token, Some(body.to_string()), "application/json").await;
        (s, v)
    }

    /// Stops the server (flushing the audit log) and returns the audit lines.
    async fn finish(self) -> Vec<Value> {
        self.server.shutdown().await.unwrap();
        audit_lines(&self.audit)
    }
}

fn audit_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The reference quickstart, converted from YAML to reference JSON by the compiler.
fn quickstart_json() -> Value {
    let text = std::fs::read_to_string(Path::new(WORKSPACE).join("examples/quickstart/bundle.yaml")).unwrap();
    let file = verdict_compiler::source::SourceFile::new("bundle.yaml", text);
    let bundle = verdict_compiler::compile(&file).bundle.unwrap();
    verdict_compiler::emit::to_json(&bundle)
}

fn quickstart_cases() -> Vec<Value> {
    let text = std::fs::read_to_string(Path::new(WORKSPACE).join("examples/quickstart/cases.jsonl")).unwrap();
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn admin_ctx() -> Value {
    json!({"subject": {"id": "u-17", "role": "admin"}, "action": "update", "resource": {"type": "gradebook", "id": "gb-3", "tags": ["term-2"]}, "data": {}})
}

/// Compares decision fields with an expectation, as the conformance tests do.
fn same_decision(actual: &Value, expect: &Value) -> Result<(), String> {
    for f in ["kind", "matched_policy_id", "matched_rule_id", "reason"] {
        if actual["decision"][f] != expect["decision"][f] {
            return Err(format!("decision.{f}: got {} want {}", actual["decision"][f], expect["decision"][f]));
        }
        // Some expectations give only the bundle decision.
        if let Some(e) = expect["policy_decisions"].as_array() {
            let a = actual["policy_decisions"].as_array().unwrap();
            if a.len() != e.len() || a.iter().zip(e).any(|(x, y)| x[f] != y[f]) {
                return Err(format!("policy_decisions.{f}: got {a:?} want {e:?}"));
            }
        }
    }
    Ok(())
}

/// Line `n` (0-based) of the vendored Decision Card corpus.
fn corpus(n: usize) -> Value {
    let text = std::fs::read_to_string(Path::new(WORKSPACE).join("tests/conformance/decision-cards.jsonl")).unwrap();
    serde_json::from_str(text.lines().nth(n).unwrap()).unwrap()
}

/// Sends raw bytes and returns the status line and the rest of the response.
async fn raw(addr: std::net::SocketAddr, parts: &[(&[u8], Duration)]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    for (bytes, pause) in parts {
        if s.write_all(bytes).await.is_err() {
            break;
        }
        tokio::time::sleep(*pause).await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

// --- Meta ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_endpoints_need_no_token() {
    let h = harness("meta").await;
    let (s, v) = h.get("/", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["name"], "verdict");
    assert!(v["endpoints"].as_object().unwrap().len() >= 10, "{v}");
    for path in ["/healthz", "/health"] {
        let (s, _, v) = h.call(Method::GET, path, None, None, "").await;
        assert_eq!((s, v), (StatusCode::OK, json!({"status": "ok"})));
    }
    let (s, v) = h.get("/version", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["backend"], "jit");
    assert_eq!(v["auth"], "bearer-tokens");
    // Unknown routes and methods answer JSON like the reference.
    let (s, v) = h.get("/nope", None).await;
    assert_eq!((s, v), (StatusCode::NOT_FOUND, json!({"detail": "Not Found"})));
    let (s, _, v) = h.call(Method::DELETE, "/healthz", None, None, "").await;
    assert_eq!((s, v), (StatusCode::METHOD_NOT_ALLOWED, json!({"detail": "Method Not Allowed"})));
    // Health is not policy material: it may be cached.
    let (_, headers, _) = h.call(Method::GET, "/healthz", None, None, "").await;
    assert!(headers.get("cache-control").is_none());
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_decisions_by_effect() {
    let h = harness("metrics").await;
    assert_eq!(h.post("/bundles", Some(ADMIN), &quickstart_json()).await.0, 201);
    let deny = json!({"subject": {"role": "student"}, "action": "update", "resource": {"tags": []}});
    for ctx in [admin_ctx(), admin_ctx(), deny] {
        assert_eq!(h.post("/bundles/edu-gate/evaluate", Some(EVAL), &ctx).await.0, 200);
    }
    let (s, headers, text) = h.call(Method::GET, "/metrics", None, None, "").await;
    assert_eq!(s, 200);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = text.as_str().unwrap().to_owned();
    for line in [
        "verdict_decisions_total{effect=\"allow\"} 2",
        "verdict_decisions_total{effect=\"deny\"} 1",
        "verdict_evaluation_duration_seconds_bucket{le=\"+Inf\"} 3",
        "verdict_evaluation_duration_seconds_count 3",
        "verdict_bundles 1",
        "# TYPE verdict_evaluation_duration_seconds histogram",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
    }
    h.finish().await;
}

// --- Authorization ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tokens_401_403() {
    let h = harness("auth").await;
    assert_eq!(h.post("/bundles", Some(ADMIN), &quickstart_json()).await.0, 201);
    // No token, or not a bearer token: 401 with the challenge.
    for auth in [None, Some("Basic abc"), Some("Bearer"), Some("Bearer "), Some("bearer")] {
        let mut req = h.client.get(format!("{}/bundles", h.base));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{auth:?}");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        assert_eq!(resp.json::<Value>().await.unwrap(), json!({"detail": "bearer token required"}));
    }
    // The scheme is case-insensitive.
    let resp = h
        .client
        .get(format!("{}/bundles", h.base))
        .header("authorization", format!("bEaReR {ADMIN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A wrong token, or the evaluate token on an admin route: 403.
    let forbidden = json!({"detail": "token is not authorized for this operation"});
    let wrong = "x".repeat(40);
    let long = "y".repeat(300);
    for (method, path, token) in [
        (Method::GET, "/bundles", wrong.as_str()),
        (Method::GET, "/bundles", EVAL),
        (Method::GET, "/bundles/edu-gate", EVAL),
        (Method::POST, "/bundles", EVAL),
        (Method::POST, "/evaluate", EVAL),
        (Method::POST, "/bundles/from-decision-card", EVAL),
        (Method::PUT, "/bundles/edu-gate/conditions/c", EVAL),
        (Method::POST, "/bundles/edu-gate/evaluate", wrong.as_str()),
        (Method::POST, "/bundles/edu-gate/evaluate", long.as_str()),
    ] {
        let (s, _, v) = h.call(method.clone(), path, Some(token), Some("{}".into()), "application/json").await;
        assert_eq!((s, &v), (StatusCode::FORBIDDEN, &forbidden), "{method} {path}");
    }
    // The evaluate token evaluates; the admin token does everything.
    for token in [EVAL, ADMIN] {
        let (s, v) = h.post("/bundles/edu-gate/evaluate", Some(token), &admin_ctx()).await;
        assert_eq!((s, v["decision"]["kind"].clone()), (StatusCode::OK, json!("allow")));
    }
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfigured_tokens_fail_closed_503() {
    let short = "s".repeat(31);
    let long = "l".repeat(257);
    let same = "z".repeat(40);
    let cases: Vec<(Option<String>, Option<String>)> = vec![
        (None, None),
        (Some(ADMIN.into()), None),
        (Some(short.clone()), Some(EVAL.into())),
        (Some(ADMIN.into()), Some(long)),
        (Some(same.clone()), Some(same.clone())),
        (Some(format!("{}é", &ADMIN[1..])), Some(EVAL.into())),
    ];
    for (admin, eval) in cases {
        let h = start_with("unconfigured", |c| c.auth = Auth::from_tokens(admin.clone(), eval.clone())).await;
        for (method, path) in
            [(Method::GET, "/bundles"), (Method::POST, "/bundles/x/evaluate"), (Method::POST, "/evaluate")]
        {
            let (s, _, v) = h.call(method, path, Some(&same), Some("{}".into()), "application/json").await;
            assert_eq!(s, 503, "{admin:?} {eval:?} {path}");
            assert_eq!(v, json!({"detail": "policy engine API credentials are not configured"}));
        }
        let (s, _) = h.get("/healthz", None).await;
        assert_eq!(s, 200);
        let (_, v) = h.get("/version", None).await;
        assert_eq!(v["auth"], "misconfigured");
        h.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_no_auth_is_loopback_only() {
    let h = start_with("noauth", |c| c.auth = Auth::Disabled).await;
    assert_eq!(h.post("/bundles", None, &quickstart_json()).await.0, 201);
    let (s, v) = h.post("/bundles/edu-gate/evaluate", None, &admin_ctx()).await;
    assert_eq!((s, v["decision"]["kind"].clone()), (StatusCode::OK, json!("allow")));
    assert_eq!(h.get("/version", None).await.1["auth"], "disabled");
    let lines = h.finish().await;
    assert!(lines.iter().any(|l| l["event"] == "evaluation" && l["caller"] == "unauthenticated"));
    let mut config = Config::new("0.0.0.0:0".parse().unwrap());
    config.auth = Auth::Disabled;
    config.audit = AuditTarget::File(scratch("noauth-public").join("audit.jsonl"));
    let err = start(config).await.unwrap_err();
    assert!(matches!(err, verdict_server::StartError::InsecureBind(_)), "{err:?}");
    assert!(err.to_string().contains("loopback"), "{err}");
}

// --- Bundles ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_registration_lifecycle() {
    let h = harness("bundles").await;
    let qs = quickstart_json();
    let (s, v) = h.post("/bundles", Some(ADMIN), &qs).await;
    assert_eq!(s, 201);
    assert_eq!((v["bundle_id"].clone(), v["status"].clone()), (json!("edu-gate"), json!("registered")));
    assert!(v["fingerprint"].as_str().unwrap().starts_with("sha256:"));
    // The same id again: 409.
    let (s, v) = h.post("/bundles", Some(ADMIN), &qs).await;
    assert_eq!((s, v), (StatusCode::CONFLICT, json!({"detail": "bundle ID is already registered"})));
    assert_eq!(h.get("/bundles", Some(ADMIN)).await, (StatusCode::OK, json!({"bundle_ids": ["edu-gate"]})));
    let (s, v) = h.get("/bundles/edu-gate", Some(ADMIN)).await;
    assert_eq!(s, 200);
    assert_eq!(v, qs);
    // Unknown bundles: 404.
    let unknown = json!({"detail": "unknown bundle"});
    assert_eq!(h.get("/bundles/nope", Some(ADMIN)).await, (StatusCode::NOT_FOUND, unknown.clone()));
    assert_eq!(h.post("/bundles/nope/evaluate", Some(EVAL), &admin_ctx()).await, (StatusCode::NOT_FOUND, unknown));
    // PUT replaces (200) or creates (201); the id must match the path.
    let mut v2 = qs.clone();
    v2["version"] = json!("2.0.0");
    let (s, v) = h.put("/bundles/edu-gate", Some(ADMIN), &v2).await;
    assert_eq!((s, v["status"].clone()), (StatusCode::OK, json!("replaced")));
    let (_, d) = h.post("/bundles/edu-gate/evaluate", Some(EVAL), &admin_ctx()).await;
    assert_eq!(d["bundle_version"], "2.0.0");
    let (s, v) = h.put("/bundles/other", Some(ADMIN), &v2).await;
    assert_eq!(s, 400, "{v}");
    let mut other = qs.clone();
    other["bundle_id"] = json!("other");
    assert_eq!(h.put("/bundles/other", Some(ADMIN), &other).await.0, 201);
    // YAML and .verdict sources, by content type.
    let yaml = std::fs::read_to_string(Path::new(WORKSPACE).join("examples/quickstart/bundle.yaml"))
        .unwrap()
        .replace("bundle_id: edu-gate", "bundle_id: from-yaml");
    let (s, _, v) = h.call(Method::POST, "/bundles", Some(ADMIN), Some(yaml), "application/yaml").await;
    assert_eq!((s, v["bundle_id"].clone()), (StatusCode::CREATED, json!("from-yaml")));
    let dsl = std::fs::read_to_string(Path::new(WORKSPACE).join("examples/quickstart/bundle.verdict"))
        .unwrap()
        .replacen("bundle \"edu-gate\"", "bundle \"from-dsl\"", 1);
    let (s, _, v) = h.call(Method::POST, "/bundles", Some(ADMIN), Some(dsl), "text/x-verdict").await;
    assert_eq!((s, v["bundle_id"].clone()), (StatusCode::CREATED, json!("from-dsl")), "{v}");
    // A bundle that does not compile: 422 with the diagnostics; nothing registered.
    let mut bad = qs.clone();
    bad["bundle_id"] = json!("bad");
    bad["policies"][0]["surprise"] = json!(1);
    let (s, v) = h.post("/bundles", Some(ADMIN), &bad).await;
    assert_eq!((s, v["detail"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!("invalid request")));
    assert_eq!(v["errors"][0]["code"], "V101", "{v}");
    // A bad replacement never replaces a good bundle.
    let mut bad_v3 = v2.clone();
    bad_v3["version"] = json!("3.0.0");
    bad_v3["policies"][0]["rules"][0]["effect"] = json!("maybe");
    assert_eq!(h.put("/bundles/edu-gate", Some(ADMIN), &bad_v3).await.0, 422);
    let (_, d) = h.post("/bundles/edu-gate/evaluate", Some(EVAL), &admin_ctx()).await;
    assert_eq!(d["bundle_version"], "2.0.0");
    // Malformed or ambiguous JSON: 400; no body: 422; an unknown content type: 415.
    for (body, ctype, status) in [
        ("{\"bundle_id\": ", "application/json", 400),
        ("{\"bundle_id\": \"a\", \"bundle_id\": \"b\", \"policies\": []}", "application/json", 400),
        ("", "application/json", 422),
        ("\u{89}PNG", "image/png", 415),
    ] {
        let (s, _, v) = h.call(Method::POST, "/bundles", Some(ADMIN), Some(body.into()), ctype).await;
        assert_eq!(s.as_u16(), status, "{body:?}: {v}");
    }
    let (s, v) = h.get("/bundles", Some(ADMIN)).await;
    assert_eq!((s, v["bundle_ids"].as_array().unwrap().len()), (StatusCode::OK, 4));
    // Cache-Control: no-store on every /bundles* and /evaluate answer, errors included.
    for (method, path, token) in [
        (Method::GET, "/bundles", Some(ADMIN)),
        (Method::GET, "/bundles/edu-gate", Some(ADMIN)),
        (Method::GET, "/bundles/nope", Some(ADMIN)),
        (Method::GET, "/bundles", None),
        (Method::POST, "/bundles/edu-gate/evaluate", Some(EVAL)),
        (Method::POST, "/evaluate", Some(ADMIN)),
    ] {
        let (_, headers, _) = h.call(method, path, token, Some(admin_ctx().to_string()), "application/json").await;
        assert_eq!(headers["cache-control"], "no-store", "{path}");
    }
    let lines = h.finish().await;
    let registered: Vec<&str> =
        lines.iter().filter(|l| l["event"] == "bundle_registered").map(|l| l["bundle_id"].as_str().unwrap()).collect();
    assert_eq!(registered, ["edu-gate", "other", "from-yaml", "from-dsl"]);
    assert_eq!(lines.iter().filter(|l| l["event"] == "bundle_replaced").count(), 1);
}

// --- Evaluation ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_through_one_shot_evaluate() {
    let h = harness("oneshot").await;
    let qs = quickstart_json();
    let cases = quickstart_cases();
    assert!(cases.len() >= 7);
    for case in &cases {
        let (s, v) = h.post("/evaluate", Some(ADMIN), &json!({"bundle": qs, "context": case["context"]})).await;
        assert_eq!(s, 200, "{v}");
        same_decision(&v, &case["expect"]).unwrap_or_else(|e| panic!("{e}: {}", case["context"]));
        assert_eq!(v["bundle_id"], "edu-gate");
    }
    // The bundle may also be given as YAML text.
    let yaml = std::fs::read_to_string(Path::new(WORKSPACE).join("examples/quickstart/bundle.yaml")).unwrap();
    let (s, v) = h.post("/evaluate", Some(ADMIN), &json!({"bundle": yaml, "context": admin_ctx()})).await;
    assert_eq!((s, v["decision"]["matched_rule_id"].clone()), (StatusCode::OK, json!("admin-writes")));
    // Schema-invalid bodies: 422.
    for body in [
        json!({"bundle": qs}),
        json!({"context": admin_ctx()}),
        json!({"bundle": qs, "context": {"user": "x"}}),
        json!({"bundle": qs, "context": {"action": 3}}),
        json!({"bundle": 5, "context": admin_ctx()}),
        json!([1]),
    ] {
        let (s, v) = h.post("/evaluate", Some(ADMIN), &body).await;
        assert_eq!((s, v["detail"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!("invalid request")), "{body}");
    }
    // Not registered by a one-shot evaluation.
    assert_eq!(h.get("/bundles", Some(ADMIN)).await.1, json!({"bundle_ids": []}));
    // A trace on request.
    let (s, v) = h.post("/evaluate?trace=true", Some(ADMIN), &json!({"bundle": qs, "context": admin_ctx()})).await;
    assert_eq!(s, 200);
    assert!(v["trace"].as_array().is_some_and(|t| !t.is_empty()), "{v}");
    let lines = h.finish().await;
    assert_eq!(lines.iter().filter(|l| l["event"] == "evaluation").count(), cases.len() + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lines_and_correlation_ids() {
    let h = harness("audit").await;
    assert_eq!(h.post("/bundles", Some(ADMIN), &quickstart_json()).await.0, 201);
    let resp = h
        .client
        .post(format!("{}/bundles/edu-gate/evaluate", h.base))
        .bearer_auth(EVAL)
        .header("x-request-id", "req-42")
        .body(admin_ctx().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "req-42");
    let resp = h
        .client
        .post(format!("{}/bundles/edu-gate/evaluate", h.base))
        .bearer_auth(EVAL)
        .body(admin_ctx().to_string())
        .send()
        .await
        .unwrap();
    let generated = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    let fingerprint = resp.json::<Value>().await.unwrap()["fingerprint"].clone();
    let lines = h.finish().await;
    let evals: Vec<&Value> = lines.iter().filter(|l| l["event"] == "evaluation").collect();
    assert_eq!(evals.len(), 2);
    let e = evals[0];
    assert_eq!(e["correlation_id"], "req-42");
    assert_eq!(evals[1]["correlation_id"], generated.as_str());
    for (k, want) in [
        ("bundle_id", json!("edu-gate")),
        ("bundle_version", json!("1.2.0")),
        ("fingerprint", fingerprint),
        ("decision", json!("allow")),
        ("matched_policy_id", json!("writes-require-admin")),
        ("matched_rule_id", json!("admin-writes")),
        ("reason", json!("matched rule 'admin-writes'")),
        ("codes", json!([])),
        ("caller", json!("evaluator")),
    ] {
        assert_eq!(e[k], want, "{k}: {e}");
    }
    assert!(e["time"].as_str().unwrap().parse::<jiff::Timestamp>().is_ok(), "{e}");
}

// --- Limits ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_413() {
    let h = harness("oversized").await;
    assert_eq!(h.post("/bundles", Some(ADMIN), &quickstart_json()).await.0, 201);
    let big = json!({"subject": {"blob": "x".repeat(129 * 1024)}, "action": "read"});
    for path in ["/bundles", "/bundles/edu-gate/evaluate", "/evaluate", "/bundles/from-decision-card"] {
        let (s, v) = h.post(path, Some(ADMIN), &big).await;
        assert_eq!(
            (s, v),
            (StatusCode::PAYLOAD_TOO_LARGE, json!({"detail": "request body exceeds 128 KiB"})),
            "{path}"
        );
    }
    // Just under the limit is read (and evaluated).
    let fits = json!({"subject": {"role": "admin", "blob": "x".repeat(120 * 1024)}, "action": "update"});
    assert_eq!(h.post("/bundles/edu-gate/evaluate", Some(EVAL), &fits).await.0, 200);
    // Chunked, without a Content-Length: counted as it arrives.
    let chunk = |n: usize| format!("{n:x}\r\n{}\r\n", "x".repeat(n));
    let head = format!(
        "POST /bundles/edu-gate/evaluate HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {EVAL}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let body = format!("{head}{}{}0\r\n\r\n", chunk(100 * 1024), chunk(30 * 1024));
    let resp = raw(h.server.addr(), &[(body.as_bytes(), Duration::ZERO)]).await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{}", &resp[..resp.len().min(200)]);
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_408() {
    let h = start_with("slow", |c| c.read_timeout = Duration::from_millis(500)).await;
    let head = format!(
        "POST /bundles HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"bundle_id\""
    );
    let resp = raw(h.server.addr(), &[(head.as_bytes(), Duration::from_millis(1500))]).await;
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert!(resp.contains("request body read timed out"), "{resp}");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_idle_connections_are_closed() {
    let h = start_with("slow-headers", |c| c.header_timeout = Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let resp = raw(h.server.addr(), &[(b"GET /healthz HTTP/1.1\r\nHost: t\r\n", Duration::ZERO)]).await;
    assert!(started.elapsed() < Duration::from_secs(5), "closed after {:?}: {resp}", started.elapsed());
    assert!(!resp.contains("200 OK"), "{resp}");
    // Served, then idle on keep-alive: closed too.
    let started = std::time::Instant::now();
    let resp = raw(h.server.addr(), &[(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", Duration::ZERO)]).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(started.elapsed() < Duration::from_secs(5), "closed after {:?}", started.elapsed());
    h.finish().await;
}

// --- Decision Cards --------------------------------------------------------------------------------

fn card_body(n: usize) -> Value {
    let c = corpus(n);
    json!({"card": c["card"], "attestation": c["attestation"], "allowed_actions": ["use"]})
}

fn in_a_day() -> String {
    jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_hours(24)).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decision_card_registration_and_conditions() {
    let h = harness("cards").await;
    // The corpus's signed approved-with-conditions card (conditions dpa-signed,
    // bias-audit-fresh, odd.id).
    let reference = corpus(7);
    let (s, bundle) = h.post("/bundles/from-decision-card", Some(ADMIN), &card_body(7)).await;
    assert_eq!(s, 201, "{bundle}");
    assert_eq!(bundle, reference["bundle"], "the reference's bundle");
    let id = "decision-card-dc-620";
    assert_eq!(h.get(&format!("/bundles/{id}"), Some(ADMIN)).await.1, reference["bundle"]);
    let (s, v) = h.post("/bundles/from-decision-card", Some(ADMIN), &card_body(7)).await;
    assert_eq!((s, v["detail"].clone()), (StatusCode::CONFLICT, json!("bundle ID is already registered")));

    let eval_path = format!("/bundles/{id}/evaluate");
    let use_ctx = json!({"subject": {"id": "u-1"}, "action": "use", "resource": {"vendor_id": "v-1"}});
    // Callers may not assert conditions.
    let mut forged = use_ctx.clone();
    forged["data"] = json!({"conditions_satisfied": {"dpa-signed": true, "bias-audit-fresh": true, "odd.id": true}});
    let (s, v) = h.post(&eval_path, Some(EVAL), &forged).await;
    assert_eq!(s, 400);
    assert_eq!(v, json!({"detail": "Decision Card conditions must come from admin assertions, not evaluation input"}));
    // Nothing asserted yet: every condition policy denies.
    let (s, v) = h.post(&eval_path, Some(EVAL), &use_ctx).await;
    assert_eq!((s, v["decision"]["kind"].clone()), (StatusCode::OK, json!("deny")), "{v}");
    assert_eq!(v["decision"]["matched_policy_id"], "dc-620__condition__dpa-signed");
    // Admins assert them, each for at most seven days.
    for cid in ["dpa-signed", "bias-audit-fresh", "odd.id"] {
        let (s, v) = h
            .put(
                &format!("/bundles/{id}/conditions/{cid}"),
                Some(ADMIN),
                &json!({"satisfied": true, "valid_until": in_a_day()}),
            )
            .await;
        assert_eq!((s, v), (StatusCode::OK, json!({"bundle_id": id, "condition_id": cid, "status": "asserted"})));
    }
    let (s, v) = h.post(&eval_path, Some(EVAL), &use_ctx).await;
    assert_eq!((s, v["decision"]["kind"].clone()), (StatusCode::OK, json!("allow")), "{v}");
    // Out of the card's runtime scope, still denied.
    let train = json!({"action": "train", "resource": {"vendor_id": "v-1"}});
    assert_eq!(
        h.post(&eval_path, Some(EVAL), &train).await.1["decision"]["reason"],
        "request is outside Decision Card runtime scope"
    );
    // One condition withdrawn: denied again.
    let cpath = format!("/bundles/{id}/conditions/odd.id");
    assert_eq!(h.put(&cpath, Some(ADMIN), &json!({"satisfied": false, "valid_until": in_a_day()})).await.0, 200);
    let (_, v) = h.post(&eval_path, Some(EVAL), &use_ctx).await;
    assert_eq!(
        (v["decision"]["kind"].clone(), v["decision"]["matched_policy_id"].clone()),
        (json!("deny"), json!("dc-620__condition__odd.id"))
    );
    // Assertion bounds and shapes.
    let week_and_a_day =
        jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_hours(8 * 24)).unwrap().to_string();
    let expired = "2020-01-01T00:00:00Z";
    let within = json!({"detail": "condition assertion must expire within seven days"});
    for until in [week_and_a_day.as_str(), expired] {
        assert_eq!(
            h.put(&cpath, Some(ADMIN), &json!({"satisfied": true, "valid_until": until})).await,
            (StatusCode::BAD_REQUEST, within.clone())
        );
    }
    for body in [
        json!({"satisfied": "yes", "valid_until": in_a_day()}),
        json!({"satisfied": 1, "valid_until": in_a_day()}),
        json!({"satisfied": true, "valid_until": "2026-12-01T00:00:00"}),
        json!({"satisfied": true}),
        json!({"satisfied": true, "valid_until": in_a_day(), "by": "me"}),
    ] {
        let (s, v) = h.put(&cpath, Some(ADMIN), &body).await;
        assert_eq!((s, v["detail"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!("invalid request")), "{body}");
    }
    let ok = json!({"satisfied": true, "valid_until": in_a_day()});
    assert_eq!(
        h.put(&format!("/bundles/{id}/conditions/nope"), Some(ADMIN), &ok).await,
        (StatusCode::NOT_FOUND, json!({"detail": "unknown card condition"}))
    );
    assert_eq!(
        h.put("/bundles/nope/conditions/odd.id", Some(ADMIN), &ok).await,
        (StatusCode::NOT_FOUND, json!({"detail": "unknown bundle"}))
    );
    // A bundle without a card scope has no conditions to assert.
    assert_eq!(h.post("/bundles", Some(ADMIN), &quickstart_json()).await.0, 201);
    assert_eq!(
        h.put("/bundles/edu-gate/conditions/odd.id", Some(ADMIN), &ok).await.1,
        json!({"detail": "unknown card condition"})
    );

    // A rejected card needs no attestation and denies.
    let rejected = corpus(0);
    let (s, v) = h.post("/bundles/from-decision-card", Some(ADMIN), &json!({"card": rejected["card"]})).await;
    assert_eq!((s, v["bundle_id"].clone()), (StatusCode::CREATED, json!("decision-card-dc-563")));
    assert_eq!(
        h.post("/bundles/decision-card-dc-563/evaluate", Some(EVAL), &use_ctx).await.1["decision"]["kind"],
        "deny"
    );

    let lines = h.finish().await;
    let asserted = lines.iter().filter(|l| l["event"] == "condition_asserted").count();
    assert_eq!(asserted, 4);
    let card_reg = lines.iter().find(|l| l["event"] == "bundle_registered" && l["bundle_id"] == id).unwrap();
    assert_eq!(card_reg["origin"], "decision-card");
    assert_eq!(card_reg["buyer_id"], "buyer-1");
    assert_eq!(card_reg["card_hash"], reference["attestation"]["signed_hash"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decision_card_refusals() {
    let h = harness("card-refusals").await;
    let invalid = json!("invalid Decision Card or attestation");
    // Tampered signature and tampered card: 400 (the reference's generic detail, with our reason).
    for n in [9, 10, 12, 13, 14, 17, 18] {
        let (s, v) = h.post("/bundles/from-decision-card", Some(ADMIN), &card_body(n)).await;
        assert_eq!((s, v["detail"].clone()), (StatusCode::BAD_REQUEST, invalid.clone()), "line {n}: {v}");
    }
    for n in [15, 16] {
        let c = corpus(n);
        let (s, v) = h.post("/bundles/from-decision-card", Some(ADMIN), &json!({"card": c["card"]})).await;
        assert_eq!((s, v["detail"].clone()), (StatusCode::BAD_REQUEST, invalid.clone()), "line {n}: {v}");
    }
    // No key pinned for the attestation's key URL: 503 (operator configuration).
    let (s, v) = h.post("/bundles/from-decision-card", Some(ADMIN), &card_body(11)).await;
    assert_eq!((s, v), (StatusCode::SERVICE_UNAVAILABLE, json!({"detail": "trusted buyer key is not configured"})));
    // Positive cards need the attestation and allowed_actions ["use"].
    let mut no_att = card_body(6);
    no_att["attestation"] = Value::Null;
    let mut no_actions = card_body(6);
    no_actions.as_object_mut().unwrap().remove("allowed_actions");
    let mut more_actions = card_body(6);
    more_actions["allowed_actions"] = json!(["use", "train"]);
    for body in [no_att, no_actions, more_actions] {
        assert_eq!(h.post("/bundles/from-decision-card", Some(ADMIN), &body).await.1["detail"], invalid);
    }
    // Schema: 422.
    let mut bad_att = card_body(6);
    bad_att["attestation"]["algorithm"] = json!("rsa");
    for body in [
        json!({"attestation": null}),
        json!({"card": "x"}),
        json!({"card": {}, "extra": 1}),
        json!({"card": {}, "allowed_actions": "use"}),
        bad_att,
    ] {
        let (s, v) = h.post("/bundles/from-decision-card", Some(ADMIN), &body).await;
        assert_eq!((s, v["detail"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!("invalid request")), "{body}");
    }
    // Ambiguous JSON: duplicate keys, integers without a canonical form: 400.
    let c = card_body(6).to_string();
    for body in [
        c.replacen("{\"card\":{", "{\"card\":{\"rationale\":\"x\",", 1),
        c.replacen("\"decision_card_version\"", "\"decision_card_version\":\"0.1\",\"decision_card_version\"", 1),
        c.replacen("{", "{\"n\": 9007199254740993, ", 1),
    ] {
        let (s, _, v) =
            h.call(Method::POST, "/bundles/from-decision-card", Some(ADMIN), Some(body), "application/json").await;
        assert_eq!((s, v["detail"].clone()), (StatusCode::BAD_REQUEST, json!("invalid or ambiguous JSON body")), "{v}");
    }
    // Nothing was registered.
    assert_eq!(h.get("/bundles", Some(ADMIN)).await.1, json!({"bundle_ids": []}));
    h.finish().await;
    // Without any buyer keys configured: 503.
    let h = start_with("card-no-keys", |c| c.buyer_keys = BuyerKeys::none()).await;
    let (s, v) = h.post("/bundles/from-decision-card", Some(ADMIN), &card_body(6)).await;
    assert_eq!((s, v), (StatusCode::SERVICE_UNAVAILABLE, json!({"detail": "trusted buyer key is not configured"})));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_scoped_bundles_refuse_caller_conditions() {
    // A plain bundle with a card scope (not from a card) is protected the same way.
    let h = harness("scoped").await;
    let mut b = quickstart_json();
    b["card_scope"] = json!({"vendor_id": "v-1", "allowed_actions": ["use"], "condition_ids": ["c"]});
    assert_eq!(h.post("/bundles", Some(ADMIN), &b).await.0, 201);
    let ctx = json!({"action": "use", "resource": {"vendor_id": "v-1"}, "data": {"conditions_satisfied": {}}});
    assert_eq!(h.post("/bundles/edu-gate/evaluate", Some(EVAL), &ctx).await.0, 400);
    assert_eq!(h.post("/evaluate", Some(ADMIN), &json!({"bundle": b, "context": ctx})).await.0, 400);
    h.finish().await;
}

/// A bundle (reference JSON) compiled ahead of time, as `verdict compile` writes it.
fn artifact_of(bundle: &Value) -> Vec<u8> {
    let file = verdict_compiler::source::SourceFile::new("b.json", bundle.to_string());
    let compiled = verdict_compiler::compile_as(&file, verdict_compiler::SourceKind::Json);
    let program = verdict_compiler::codegen::program(&compiled.bundle.unwrap());
    verdict_runtime::artifact::write(&program)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_artifacts_register_and_decide() {
    let h = harness("artifacts").await;
    let mut qs = quickstart_json();
    qs["bundle_id"] = json!("from-vdc");
    let bytes = artifact_of(&qs);
    let vdc = "application/vnd.verdict.artifact";
    let (s, _, v) = h.call_bytes(Method::POST, "/bundles", Some(ADMIN), Some(bytes.clone()), vdc).await;
    assert_eq!(
        (s, v["bundle_id"].clone(), v["status"].clone()),
        (StatusCode::CREATED, json!("from-vdc"), json!("registered")),
        "{v}"
    );
    let fingerprint = v["fingerprint"].clone();
    // The same bytes again (as a generic binary body): the id exists.
    let (s, _, _) =
        h.call_bytes(Method::POST, "/bundles", Some(ADMIN), Some(bytes.clone()), "application/octet-stream").await;
    assert_eq!(s, StatusCode::CONFLICT);
    // It decides every quickstart case as the source does.
    assert_eq!(h.post("/bundles", Some(ADMIN), &quickstart_json()).await.0, 201);
    for case in quickstart_cases() {
        let (_, from_vdc) = h.post("/bundles/from-vdc/evaluate", Some(EVAL), &case["context"]).await;
        let (_, from_source) = h.post("/bundles/edu-gate/evaluate", Some(EVAL), &case["context"]).await;
        assert_eq!(from_vdc["decision"], from_source["decision"], "{case}");
        assert_eq!(from_vdc["fingerprint"], fingerprint);
    }
    // An artifact has no source: `GET` describes what it carries.
    let (s, v) = h.get("/bundles/from-vdc", Some(ADMIN)).await;
    assert_eq!((s, v["source"].clone(), v["fingerprint"].clone()), (StatusCode::OK, json!("artifact"), fingerprint));
    assert_eq!(v["policies"].as_array().unwrap().len(), qs["policies"].as_array().unwrap().len(), "{v}");
    // Tampered, truncated or foreign bytes are refused (422 with the reason); nothing registered.
    let mut other = quickstart_json();
    other["bundle_id"] = json!("tampered");
    let mut tampered = artifact_of(&other);
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0x40;
    let truncated = artifact_of(&other)[..100].to_vec();
    for (body, why) in [(tampered, "checksum"), (truncated, "truncated"), (b"not an artifact".to_vec(), "artifact")] {
        let (s, _, v) = h.call_bytes(Method::POST, "/bundles", Some(ADMIN), Some(body), vdc).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert!(v["reason"].as_str().unwrap().contains(why), "{why}: {v}");
    }
    assert_eq!(h.get("/bundles", Some(ADMIN)).await.1["bundle_ids"].as_array().unwrap().len(), 2);
    // A card-scoped bundle keeps its condition ids through the artifact: callers may not supply
    // them, admins may assert them.
    let mut scoped = quickstart_json();
    scoped["bundle_id"] = json!("scoped-vdc");
    scoped["card_scope"] = json!({"vendor_id": "v-1", "allowed_actions": ["use"], "condition_ids": ["c"]});
    let (s, _, v) = h.call_bytes(Method::POST, "/bundles", Some(ADMIN), Some(artifact_of(&scoped)), vdc).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let ctx = json!({"action": "use", "resource": {"vendor_id": "v-1"}, "data": {"conditions_satisfied": {}}});
    assert_eq!(h.post("/bundles/scoped-vdc/evaluate", Some(EVAL), &ctx).await.0, 400);
    let assert_c = json!({"satisfied": true, "valid_until": in_a_day()});
    assert_eq!(h.put("/bundles/scoped-vdc/conditions/c", Some(ADMIN), &assert_c).await.0, 200);
    assert_eq!(h.put("/bundles/scoped-vdc/conditions/nope", Some(ADMIN), &assert_c).await.0, 404);
    let lines = h.finish().await;
    assert_eq!(lines.iter().filter(|l| l["event"] == "bundle_registered").count(), 3);
}

// --- Files, reloads, shutdown ------------------------------------------------------------------------

fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_file_name(format!(".{}.tmp", path.file_name().unwrap().to_str().unwrap()));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn watched_yaml(version: &str) -> String {
    std::fs::read_to_string(Path::new(WORKSPACE).join("examples/quickstart/bundle.yaml"))
        .unwrap()
        .replace("bundle_id: edu-gate", "bundle_id: watched")
        .replace("version: \"1.2.0\"", &format!("version: \"{version}\""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_artifacts_load_at_start() {
    let dir = scratch("watch-vdc");
    let mut qs = quickstart_json();
    qs["bundle_id"] = json!("watched-vdc");
    std::fs::write(dir.join("gate.vdc"), artifact_of(&qs)).unwrap();
    let mut broken = artifact_of(&quickstart_json());
    broken.truncate(broken.len() - 1);
    std::fs::write(dir.join("broken.vdc"), broken).unwrap();
    let watch = dir.clone();
    let h = start_with("watch-vdc", |c| c.watch = Some(watch)).await;
    assert_eq!(h.get("/bundles", Some(ADMIN)).await.1, json!({"bundle_ids": ["watched-vdc"]}));
    let (s, d) = h.post("/bundles/watched-vdc/evaluate", Some(EVAL), &admin_ctx()).await;
    assert_eq!((s, d["bundle_id"].clone()), (StatusCode::OK, json!("watched-vdc")), "{d}");
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_directory_reloads_and_keeps_good_bundles() {
    let dir = scratch("watch-dir");
    let file = dir.join("watched.yaml");
    write_atomic(&file, &watched_yaml("1.0.0"));
    let watch = dir.clone();
    let h = start_with("watch", |c| {
        c.watch = Some(watch);
        c.poll_interval = Duration::from_millis(50);
    })
    .await;
    let version = || async { h.post("/bundles/watched/evaluate", Some(EVAL), &admin_ctx()).await };
    assert_eq!(version().await.1["bundle_version"], "1.0.0");
    // A change is picked up by polling.
    write_atomic(&file, &watched_yaml("2.0.0"));
    let mut seen = String::new();
    for _ in 0..100 {
        seen = version().await.1["bundle_version"].as_str().unwrap_or_default().to_owned();
        if seen == "2.0.0" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, "2.0.0");
    // A broken file never replaces the good bundle (polling finds it; a forced reload, as
    // SIGHUP does, tries it again).
    write_atomic(&file, &watched_yaml("3.0.0").replace("effect: allow", "effect: perhaps"));
    let failures = || async {
        let (_, _, m) = h.call(Method::GET, "/metrics", None, None, "").await;
        m.as_str()
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("verdict_bundle_reload_failures_total "))
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    for _ in 0..100 {
        if failures().await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(failures().await > 0);
    let report = h.server.reload().await;
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(report.failed[0].1.to_string().contains("V105"), "{report:?}");
    assert_eq!(version().await.1["bundle_version"], "2.0.0");
    // A file's bundle belongs to the file: the API cannot replace it.
    let mut api = quickstart_json();
    api["bundle_id"] = json!("watched");
    assert_eq!(h.put("/bundles/watched", Some(ADMIN), &api).await.0, 409);
    // The file removed: its bundle goes.
    std::fs::remove_file(&file).unwrap();
    let mut status = StatusCode::OK;
    for _ in 0..100 {
        status = version().await.0;
        if status == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 404);
    let lines = h.finish().await;
    let mut events: Vec<&str> =
        lines.iter().filter_map(|l| l["event"].as_str()).filter(|e| e.starts_with("bundle_")).collect();
    events.dedup();
    assert_eq!(events, ["bundle_loaded", "bundle_reloaded", "bundle_rejected", "bundle_removed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_bundles_must_load() {
    let dir = scratch("explicit");
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "bundle_id: x\npolicies: 3\n").unwrap();
    let mut config = Config::new("127.0.0.1:0".parse().unwrap());
    config.bundles = vec![bad];
    config.audit = AuditTarget::File(dir.join("audit.jsonl"));
    let err = start(config).await.unwrap_err();
    assert!(err.to_string().contains("bad.yaml:2:11"), "{err}");
}

/// Load while bundles are reloaded (good and bad versions, in turn): no request fails, every
/// request is served by a complete version, and the audit log has exactly one line per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reliability_under_continuous_reloads() {
    let dir = scratch("reliability-dir");
    let file = dir.join("watched.yaml");
    write_atomic(&file, &watched_yaml("1.0.0"));
    let watch = dir.clone();
    let h = start_with("reliability", |c| {
        c.watch = Some(watch);
        c.poll_interval = Duration::from_millis(10);
    })
    .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reloader = {
        let (stop, file) = (stop.clone(), file.clone());
        tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let text = match n % 3 {
                    0 => watched_yaml("1.0.0"),
                    1 => watched_yaml("2.0.0"),
                    _ => watched_yaml("9.9.9").replace("policies:", "policies: 7\nbroken:"),
                };
                write_atomic(&file, &text);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            n
        })
    };
    let (workers, per_worker) = (4, 250);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (client, url) = (h.client.clone(), format!("{}/bundles/watched/evaluate", h.base));
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            for i in 0..per_worker {
                let resp = client
                    .post(&url)
                    .bearer_auth(EVAL)
                    .header("x-request-id", format!("w{w}-{i}"))
                    .body(admin_ctx().to_string())
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status() == 200 => {
                        let v: Value = r.json().await.unwrap();
                        let version = v["bundle_version"].as_str().unwrap_or_default().to_owned();
                        if v["decision"]["kind"] != "allow" || !["1.0.0", "2.0.0"].contains(&version.as_str()) {
                            failures.push(format!("{v}"));
                        }
                    }
                    Ok(r) => failures.push(format!("status {}", r.status())),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            failures
        }));
    }
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    let rewrites = reloader.await.unwrap();
    assert!(failures.is_empty(), "{} failed: {:?}", failures.len(), &failures[..failures.len().min(5)]);
    assert!(rewrites > 10, "the bundle was rewritten {rewrites} times");
    let lines = h.finish().await;
    let evals: Vec<&Value> = lines.iter().filter(|l| l["event"] == "evaluation").collect();
    assert_eq!(evals.len(), workers * per_worker, "exactly one audit line per request");
    let mut ids: Vec<&str> = evals.iter().map(|l| l["correlation_id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), workers * per_worker);
    assert!(lines.iter().any(|l| l["event"] == "bundle_rejected"), "bad versions were tried");
    assert!(lines.iter().any(|l| l["event"] == "bundle_reloaded"), "good versions were swapped in");
}
