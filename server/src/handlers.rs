//! The routes of TOOLCHAIN.md's PDP table, with the reference's shapes and status codes.
//!
//! Every protected handler runs the same steps in the same order: authorize (503/401/403),
//! read the body within the size and time limits (413/408), parse it as unambiguous JSON (400),
//! check its schema (422), then act (404, 409, …).
//!
//! An answer that reports something the audit log records (a decision, a registration, a
//! condition assertion) leaves only after its audit line is written; if the line cannot be
//! written, the answer is 503 instead. Decisions are evaluated on the evaluation threads unless
//! they are known to be cheap ([`decide`]), compilations (sources, artifacts, cards) on blocking
//! threads a bounded number at once, so no bundle can hold up the async workers.

use crate::AppState;
use crate::audit::{AuditError, BundleSummary, EvaluationLine, fields};
use crate::auth::{Caller, Role};
use crate::engine::Engine;
use crate::error::ApiError;
use crate::pool::INLINE_INPUT;
use crate::reload::SourceFailure;
use crate::store::{Loaded, Origin, Outcome, Put, PutError};
use crate::{decisions, shadow};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;
use verdict_compiler::SourceKind;
use verdict_compiler::card::{self, CardOptions, POSITIVE_STATUSES};
use verdict_compiler::source::SourceFile;
use verdict_runtime::env::{Env, Mode};
use verdict_runtime::request::Request as Context;
use verdict_runtime::signature;

type St = State<Arc<AppState>>;

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/healthz", get(health))
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .route("/bundles", get(list_bundles).post(register_bundle))
        .route("/bundles/from-decision-card", post(register_card))
        .route("/bundles/{id}", get(get_bundle).put(put_bundle))
        .route("/bundles/{id}/evaluate", post(evaluate_registered))
        .route("/bundles/{id}/conditions/{cid}", put(assert_condition))
        .route("/bundles/{id}/shadow", put(shadow::put).get(shadow::get).delete(shadow::delete))
        .route("/bundles/{id}/shadow/promote", post(shadow::promote))
        .route("/decisions/{id}/commit", post(decisions::commit))
        .route("/decisions/{id}/release", post(decisions::release))
        .route("/evaluate", post(evaluate_oneshot))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(no_store))
        .with_state(state)
}

/// The routes of the overflow lane (connections beyond the limit, see [`crate::conn`]): health
/// and metrics are answered, everything else is told to retry.
pub(crate) fn overflow_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(at_capacity)
        .with_state(state)
}

async fn at_capacity() -> Response {
    let mut resp = ApiError::new(503, "the server is at its connection limit; retry later").into_response();
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// 503 for an answer whose audit line could not be written (the answer is withheld).
pub(crate) fn audit_failed(st: &AppState, e: &AuditError) -> ApiError {
    st.metrics.audit_failed();
    tracing::error!(error = %e, "answer withheld: its audit line is not written");
    ApiError::new(503, "the audit log cannot be written")
}

/// `Cache-Control: no-store` on policy material and decisions.
async fn no_store(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let protect = path.starts_with("/bundles") || path == "/evaluate" || path.starts_with("/decisions");
    let mut resp = next.run(req).await;
    if protect {
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

async fn not_found() -> ApiError {
    ApiError::new(404, "Not Found")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(405, "Method Not Allowed")
}

// --- Meta ---------------------------------------------------------------------------------------

async fn root() -> Json<Value> {
    Json(json!({
        "name": "verdict",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "Verdict policy decision point: compiled policy bundles and Decision Cards evaluated to explained decisions (the policy-as-code-engine HTTP surface).",
        "endpoints": {
            "GET  /": "this page",
            "GET  /healthz": "liveness probe (also /health)",
            "GET  /version": "versions and the evaluation backend",
            "GET  /metrics": "Prometheus metrics",
            "GET  /bundles": "list registered bundle IDs",
            "POST /bundles": "register a bundle (JSON; YAML or .verdict by content type)",
            "GET  /bundles/{bundle_id}": "fetch a registered bundle",
            "PUT  /bundles/{bundle_id}": "register or replace a bundle",
            "POST /bundles/{bundle_id}/evaluate": "evaluate a stored bundle against a context",
            "POST /evaluate": "one-shot: bundle + context in, decision out (with a default bundle, a bare context or flat facts for it)",
            "POST /bundles/from-decision-card": "build and register a bundle from a signed Decision Card",
            "PUT  /bundles/{bundle_id}/conditions/{condition_id}": "assert a Decision Card condition (expires within 7 days)",
            "POST /decisions/{decision_id}/commit": "make a stateful decision's holds permanent",
            "POST /decisions/{decision_id}/release": "drop a stateful decision's holds",
            "PUT  /bundles/{bundle_id}/shadow": "evaluate a candidate bundle beside the live one, off the response path",
            "GET  /bundles/{bundle_id}/shadow": "the shadow report: agreement, transitions, what `verdict diff` predicts",
            "DELETE /bundles/{bundle_id}/shadow": "stop shadowing",
            "POST /bundles/{bundle_id}/shadow/promote": "make the candidate the live bundle (one atomic swap)",
        },
    }))
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn version(State(st): St) -> Json<Value> {
    Json(json!({
        "name": "verdict",
        "version": env!("CARGO_PKG_VERSION"),
        "backend": crate::engine::BACKENDS.first().copied().unwrap_or("interp"),
        "backends": crate::engine::BACKENDS,
        "compatible_with": "policy-as-code-engine 0.2.1",
        "decision_card_version": "0.1",
        "auth": st.auth.mode(),
        "state_store": st.state.name(),
    }))
}

async fn metrics(State(st): St) -> Response {
    let mut text = st.metrics.render(st.store.len());
    text.push_str(&decisions::metrics_text(&st.state));
    if let Some(s) = &st.stream {
        text.push_str(&s.metrics_text());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

// --- Body, JSON and schema helpers ----------------------------------------------------------------

/// How much of an oversized body is read and dropped before answering 413, so the client gets
/// the answer instead of a connection reset while it is still sending.
const DRAIN_LIMIT: usize = 1024 * 1024;

/// Reads the body within the size limit (413) and the read timeout (408).
async fn read_body(st: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::new(413, format!("request body exceeds {} KiB", st.body_limit / 1024));
    let deadline = tokio::time::Instant::now() + st.read_timeout;
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|s| s.parse::<u64>().ok());
    let mut body = body;
    if let Some(n) = declared.filter(|n| *n > st.body_limit as u64) {
        if n <= (st.body_limit + DRAIN_LIMIT) as u64 {
            drain(&mut body, deadline).await;
        }
        return Err(too_large());
    }
    let mut buf = Vec::with_capacity(declared.map_or(1024, |n| usize::try_from(n).unwrap_or(0)));
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(ApiError::new(408, "request body read timed out")),
            Ok(None) => return Ok(Bytes::from(buf)),
            Ok(Some(Err(_))) => return Err(ApiError::new(400, "cannot read the request body")),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if buf.len() + data.len() > st.body_limit {
                        drain(&mut body, deadline).await;
                        return Err(too_large());
                    }
                    buf.extend_from_slice(&data);
                }
            }
        }
    }
}

/// Reads and drops up to [`DRAIN_LIMIT`] more bytes of a body (within its deadline, at most two
/// seconds).
async fn drain(body: &mut Body, deadline: tokio::time::Instant) {
    let deadline = deadline.min(tokio::time::Instant::now() + std::time::Duration::from_secs(2));
    let mut dropped = 0usize;
    while dropped <= DRAIN_LIMIT {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => dropped += frame.data_ref().map_or(0, Bytes::len),
            _ => return,
        }
    }
}

/// Parses a body as unambiguous JSON: 400 when it is not; 422 when it is empty (no document).
fn json_body(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid_request("the request body is empty"));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| ApiError::bad_json("the body is not UTF-8"))?;
    card::parse_strict_json(text).map_err(|e| ApiError::bad_json(e.message))
}

/// A request context (422 when it is not one).
fn context(v: Value) -> Result<Context, ApiError> {
    Context::from_value(v).map_err(|e| ApiError::invalid_request(e.message))
}

/// The correlation id of a request: `X-Request-Id` when it is 1–128 visible ASCII characters,
/// else a fresh id in UUID form: a random per-process half and a counter (unique within the
/// process, unguessable across restarts, and no system call per request).
pub(crate) fn correlation_id(headers: &HeaderMap) -> String {
    static PROCESS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(
            || {
                let process = *PROCESS.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
                let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                uuid::Uuid::from_u64_pair(process, n).to_string()
            },
            str::to_owned,
        )
}

fn trace_asked(uri: &Uri) -> bool {
    uri.query().is_some_and(|q| q.split('&').any(|p| matches!(p, "trace" | "trace=true" | "trace=1")))
}

/// Whether a bundle body is declared a compiled artifact by its content type.
fn artifact_declared(headers: &HeaderMap) -> bool {
    content_type(headers)
        .is_some_and(|t| matches!(t.as_str(), "application/octet-stream" | "application/vnd.verdict.artifact"))
}

/// The media type of the body (lowercase, without parameters).
fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
}

/// The source form of a bundle body, by content type.
fn source_kind(headers: &HeaderMap, text: &str) -> Result<SourceKind, ApiError> {
    match content_type(headers).as_deref() {
        None | Some("") => Ok(SourceKind::detect("", text)),
        Some("application/json") => Ok(SourceKind::Json),
        Some(t) if t.ends_with("+json") => Ok(SourceKind::Json),
        Some("application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml") => Ok(SourceKind::Yaml),
        Some("text/x-verdict" | "application/x-verdict" | "application/vnd.verdict") => Ok(SourceKind::Verdict),
        Some("text/plain") => Ok(SourceKind::detect("", text)),
        Some(other) => Err(ApiError::new(
            415,
            format!(
                "unsupported content type `{other}`: use application/json, application/yaml, text/x-verdict or application/vnd.verdict.artifact"
            ),
        )),
    }
}

fn diagnostics_json(file: &SourceFile, diags: &[verdict_compiler::diagnostic::Diagnostic]) -> Value {
    Value::Array(
        diags
            .iter()
            .map(|d| {
                let (line, column) = file.line_col(d.span.start);
                json!({"code": d.code.as_str(), "severity": d.severity.as_str(), "message": d.message, "line": line, "column": column})
            })
            .collect(),
    )
}

/// Runs a compilation on a blocking thread, a bounded number at once.
pub(crate) async fn compile_job<T: Send + 'static>(
    st: &AppState,
    job: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let permit = st.compile_slots.clone().acquire_owned().await.map_err(|_| ApiError::new(503, "shutting down"))?;
    let done = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        job()
    });
    done.await.map_err(|_| ApiError::new(500, "compilation failed"))?
}

/// Compiles a bundle source on a blocking thread; 422 with the diagnostics when it has errors.
async fn compile(
    st: &AppState,
    name: &str,
    text: String,
    kind: SourceKind,
    origin: Origin,
) -> Result<Loaded, ApiError> {
    let name = name.to_owned();
    compile_job(st, move || {
        let file = SourceFile::new(name, text);
        crate::reload::compile_source(&file, kind, origin).map_err(|e| match e {
            SourceFailure::Diagnostics(d) => {
                ApiError::invalid_request(crate::reload::CompileErrors::of(&file, &d).to_string())
                    .with("errors", diagnostics_json(&file, &d))
            }
            SourceFailure::Engine(e) => ApiError::invalid_request(e.to_string()),
        })
    })
    .await
}

/// Loads a `.vdc` artifact body on a blocking thread (the JIT compiles there); 422 with the
/// loader's reason when it is refused (unsigned or badly signed under trusted keys, corrupt,
/// tampered, truncated, another format version).
async fn load_artifact(st: &AppState, bytes: Bytes, origin: Origin) -> Result<Loaded, ApiError> {
    let keys = st.trusted_keys.clone();
    compile_job(st, move || {
        crate::reload::load_artifact(&bytes, &keys, origin)
            .map_err(|e| ApiError::invalid_request(format!("the artifact is refused: {e}")))
    })
    .await
}

/// Reads, parses and compiles a bundle body: a compiled artifact (by content type or by its
/// header), or a source in the form its content type names.
pub(crate) async fn bundle_body(st: &AppState, headers: &HeaderMap, body: Body) -> Result<Loaded, ApiError> {
    let bytes = read_body(st, headers, body).await?;
    if artifact_declared(headers) || verdict_runtime::artifact::is_artifact(&bytes) {
        return load_artifact(st, bytes, Origin::Api).await;
    }
    if !st.trusted_keys.is_empty() {
        return Err(ApiError::invalid_request(crate::engine::SOURCE_UNTRUSTED));
    }
    let text = String::from_utf8(bytes.to_vec()).map_err(|_| ApiError::bad_json("the body is not UTF-8"))?;
    let kind = source_kind(headers, &text)?;
    if kind == SourceKind::Json {
        json_body(text.as_bytes())?;
    } else if text.trim().is_empty() {
        return Err(ApiError::invalid_request("the request body is empty"));
    }
    compile(st, "request body", text, kind, Origin::Api).await
}

/// The answer to a bundle the store refused: 409 for a taken id, 503 when the store is full.
pub(crate) fn put_error(e: PutError) -> ApiError {
    let status = if matches!(e, PutError::Full { .. }) { 503 } else { 409 };
    ApiError::new(status, e.to_string())
}

/// Writes the `bundle_registered` or `bundle_replaced` line of a bundle put in the store (the
/// one writer of these events, so every one keeps the audit contract); `more` adds fields.
pub(crate) async fn audit_registration(
    st: &AppState,
    s: &BundleSummary,
    caller: Caller,
    outcome: Outcome,
    more: Vec<(&str, Value)>,
) -> Result<(), ApiError> {
    let event = if outcome == Outcome::Created { "bundle_registered" } else { "bundle_replaced" };
    tracing::info!(bundle_id = s.id, version = s.version, origin = s.origin, "{event}");
    let mut f = s.fields();
    f.insert("caller".into(), json!(caller.as_str()));
    f.extend(fields(more));
    st.audit.emit(event, f).await.map_err(|e| audit_failed(st, &e))
}

// --- Bundles ----------------------------------------------------------------------------------

async fn list_bundles(State(st): St, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    st.auth.check(&headers, Role::Admin)?;
    Ok(Json(json!({"bundle_ids": st.store.ids()})))
}

async fn register_bundle(State(st): St, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let caller = st.auth.check(&headers, Role::Admin)?;
    let loaded = bundle_body(&st, &headers, body).await?;
    let s = BundleSummary::of(&loaded);
    let outcome = st.store.put(loaded, Put::Create).map_err(put_error)?;
    audit_registration(&st, &s, caller, outcome, Vec::new()).await?;
    let body = json!({"bundle_id": s.id, "status": "registered", "version": s.version, "fingerprint": s.fingerprint, "digest": s.digest});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn put_bundle(
    State(st): St,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = st.auth.check(&headers, Role::Admin)?;
    let loaded = bundle_body(&st, &headers, body).await?;
    if loaded.id() != id {
        return Err(ApiError::new(400, format!("the body's bundle_id `{}` is not the path's `{id}`", loaded.id())));
    }
    let s = BundleSummary::of(&loaded);
    let outcome = st.store.put(loaded, Put::Upsert).map_err(put_error)?;
    audit_registration(&st, &s, caller, outcome, Vec::new()).await?;
    let (status, word) = match outcome {
        Outcome::Created => (StatusCode::CREATED, "registered"),
        Outcome::Replaced => (StatusCode::OK, "replaced"),
    };
    let body = json!({"bundle_id": id, "status": word, "version": s.version, "fingerprint": s.fingerprint, "digest": s.digest});
    Ok((status, Json(body)).into_response())
}

/// The bundle (its reference JSON, or an artifact's metadata), with the digest of the bytes it
/// was loaded from in `Verdict-Bundle-Digest` (a header, so the JSON still registers as it is).
async fn get_bundle(State(st): St, Path(id): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    st.auth.check(&headers, Role::Admin)?;
    let loaded = st.store.get(&id).ok_or_else(|| ApiError::new(404, "unknown bundle"))?;
    let mut resp = Json(loaded.json.clone()).into_response();
    if let Ok(v) = HeaderValue::from_str(&loaded.digest) {
        resp.headers_mut().insert(DIGEST_HEADER, v);
    }
    Ok(resp)
}

/// The response header of `GET /bundles/{id}` with the digest of the bytes loaded.
const DIGEST_HEADER: &str = "verdict-bundle-digest";

// --- Decision Cards ---------------------------------------------------------------------------

async fn register_card(State(st): St, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let caller = st.auth.check(&headers, Role::Admin)?;
    let bytes = read_body(&st, &headers, body).await?;
    let v = json_body(&bytes)?;
    // The whole body must have a canonical form, as the reference checks (no integer beyond ±2^53).
    card::canonical_json(&v).map_err(ApiError::bad_json)?;
    let bare_card = card::looks_like_card(&v);
    let Value::Object(m) = v else {
        return Err(ApiError::invalid_request("the body must be an object"));
    };
    if let Some(k) = m.keys().find(|k| !["card", "attestation", "allowed_actions"].contains(&k.as_str())) {
        let shape = "the body is `{card, attestation, allowed_actions}`";
        return Err(ApiError::invalid_request(if bare_card {
            format!("unknown key `{k}`: {shape}, with the Decision Card under `card`")
        } else {
            format!("unknown key `{k}`: {shape}")
        }));
    }
    let card_value = match m.get("card") {
        Some(c @ Value::Object(_)) => c,
        _ => return Err(ApiError::invalid_request("`card` must be an object")),
    };
    let attestation = match m.get("attestation") {
        None | Some(Value::Null) => None,
        Some(a) => {
            card::Attestation::from_value(a).map_err(|e| ApiError::invalid_request(e.message))?;
            Some(a)
        }
    };
    let allowed: Option<Vec<String>> = match m.get("allowed_actions") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| ApiError::invalid_request("`allowed_actions` must be a list of strings"))?,
        ),
        Some(_) => return Err(ApiError::invalid_request("`allowed_actions` must be a list of strings")),
    };
    let refused = |why: String| {
        tracing::info!(reason = %why, "Decision Card refused");
        ApiError::new(400, "invalid Decision Card or attestation").with("reason", json!(why))
    };
    let status = card_value.get("decision").and_then(|d| d.get("status")).and_then(Value::as_str);
    let mut trust = None;
    let mut buyer_id = None;
    if status.is_some_and(|s| POSITIVE_STATUSES.contains(&s)) {
        let Some(att) = attestation else {
            return Err(refused("approved Decision Cards require a trusted buyer attestation".into()));
        };
        if allowed.as_deref() != Some(&["use".to_owned()][..]) {
            return Err(refused("the HTTP bridge only permits allowed_actions [\"use\"]".into()));
        }
        let Some(buyer) =
            card_value.get("buyer").and_then(|b| b.get("id")).and_then(Value::as_str).filter(|b| !b.trim().is_empty())
        else {
            return Err(refused("approved Decision Cards require buyer.id".into()));
        };
        let key_url = att.get("key_url").and_then(Value::as_str).unwrap_or_default();
        let Some(t) = st.keys.trust(buyer, key_url) else {
            tracing::warn!(buyer_id = buyer, key_url, "no trusted buyer key is configured for this buyer and key URL");
            return Err(ApiError::new(503, "trusted buyer key is not configured"));
        };
        trust = Some(t);
        buyer_id = Some(buyer.to_owned());
    }
    let digest = card::card_digest(card_value).unwrap_or_default();
    let card_digest = signature::digest(&bytes);
    // Verifying the card and compiling its bundle (the JIT too) run on a blocking thread.
    let (card_value, attestation) = (card_value.clone(), attestation.cloned());
    let (loaded, json) = compile_job(&st, move || {
        let opts = CardOptions {
            attestation: attestation.as_ref(),
            trust: trust.as_ref(),
            allowed_actions: allowed.as_deref(),
            now: jiff::Timestamp::now(),
        };
        let out = card::compile(&card_value, &opts).map_err(|e| refused(e.message))?;
        let engine = Engine::new(out.bundle).map_err(|e| refused(e.to_string()))?;
        Ok((Loaded::new(engine, out.json.clone(), Origin::Card, card_digest, None), out.json))
    })
    .await?;
    let s = BundleSummary::of(&loaded);
    let outcome = st.store.put(loaded, Put::Create).map_err(put_error)?;
    audit_registration(&st, &s, caller, outcome, vec![("card_hash", json!(digest)), ("buyer_id", json!(buyer_id))])
        .await?;
    Ok((StatusCode::CREATED, Json(json)).into_response())
}

async fn assert_condition(
    State(st): St,
    Path((id, cid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let caller = st.auth.check(&headers, Role::Admin)?;
    let bytes = read_body(&st, &headers, body).await?;
    let v = json_body(&bytes)?;
    let Value::Object(m) = v else {
        return Err(ApiError::invalid_request("the body must be an object"));
    };
    if let Some(k) = m.keys().find(|k| !["satisfied", "valid_until"].contains(&k.as_str())) {
        return Err(ApiError::invalid_request(format!("unknown key `{k}`")));
    }
    let Some(Value::Bool(satisfied)) = m.get("satisfied") else {
        return Err(ApiError::invalid_request("`satisfied` must be a boolean"));
    };
    let until = match m.get("valid_until") {
        Some(Value::String(s)) => s
            .parse::<jiff::Timestamp>()
            .map_err(|_| ApiError::invalid_request("`valid_until` must be an RFC 3339 date-time with an offset"))?,
        _ => return Err(ApiError::invalid_request("`valid_until` must be an RFC 3339 date-time with an offset")),
    };
    let loaded = st.store.get(&id).ok_or_else(|| ApiError::new(404, "unknown bundle"))?;
    let known = loaded.engine.card_conditions().is_some_and(|ids| ids.contains(&cid));
    if !known {
        return Err(ApiError::new(404, "unknown card condition"));
    }
    let now = jiff::Timestamp::now();
    let week = now.checked_add(jiff::SignedDuration::from_hours(7 * 24)).unwrap_or(now);
    if until <= now || until > week {
        return Err(ApiError::new(400, "condition assertion must expire within seven days"));
    }
    st.store.set_condition(&id, &cid, *satisfied, until);
    tracing::info!(bundle_id = id, condition_id = cid, satisfied, valid_until = %until, "condition asserted");
    st.audit
        .emit(
            "condition_asserted",
            fields(vec![
                ("bundle_id", json!(id)),
                ("condition_id", json!(cid)),
                ("satisfied", json!(satisfied)),
                ("valid_until", json!(until.to_string())),
                ("caller", json!(caller.as_str())),
            ]),
        )
        .await
        .map_err(|e| audit_failed(&st, &e))?;
    Ok(Json(json!({"bundle_id": id, "condition_id": cid, "status": "asserted"})))
}

// --- Evaluation -------------------------------------------------------------------------------

/// Evaluates one request: admin-asserted card conditions in, then, on an evaluation thread
/// ([`crate::pool`]), the decision, its metrics and its audit line; the answer comes back once
/// the line is written (see [`crate::audit`]).
///
/// The async worker only checks the conditions and waits: a bundle that is slow to evaluate (a
/// trace, a large bundle, long strings under regular expressions) costs an evaluation thread,
/// never the accept loop or the health and metrics routes. A stateful decision on a shared store
/// waits for the store on one of the state threads, never on an async worker or the evaluation
/// threads. `registered`: the bundle is the store's (`/bundles/{id}/evaluate`), so a shadow of
/// it is evaluated too.
#[allow(clippy::too_many_arguments)]
async fn decide(
    st: &Arc<AppState>,
    loaded: Arc<Loaded>,
    input_len: usize,
    mut req: Context,
    correlation: &str,
    caller: Caller,
    trace: bool,
    registered: bool,
) -> Result<Vec<u8>, ApiError> {
    let now = jiff::Timestamp::now();
    if let Some(condition_ids) = loaded.engine.card_conditions() {
        if req.data.contains_key("conditions_satisfied") {
            return Err(ApiError::new(
                400,
                "Decision Card conditions must come from admin assertions, not evaluation input",
            ));
        }
        if !condition_ids.is_empty() {
            let satisfied = st.store.condition_snapshot(loaded.engine.id(), condition_ids, now);
            req.data.insert("conditions_satisfied".into(), Value::Object(satisfied));
        }
    }
    let stateful = loaded.engine.is_stateful();
    let shadow = if registered { st.shadows.get(loaded.id()) } else { None };
    let job = Decision {
        st: st.clone(),
        loaded,
        req,
        now,
        correlation: correlation.to_owned(),
        caller,
        trace,
        stateful,
        shadow,
    };
    let local = !stateful || st.state.is_local();
    if local && !trace && input_len <= INLINE_INPUT && job.loaded.cost.cheap() {
        let (out, line, live) = job.evaluate()?;
        let written = st.audit.write(line).await;
        // After the live decision's line, so a mismatch line never precedes it.
        job.shadow(live);
        return match written {
            Ok(()) => Ok(out),
            Err(e) => Err(audit_failed(st, &e)),
        };
    }
    let (answer, answered) = oneshot::channel();
    // If the pool has stopped, the job (and `answer`) is dropped: answered 500 below.
    let pool = if local { &st.pool } else { &st.state_pool };
    pool.run(move || job.run(answer));
    match answered.await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(Failure::Audit(e))) => Err(audit_failed(st, &e)),
        Ok(Err(Failure::Api(e))) => Err(e),
        // The evaluation panicked (a bug): no decision, and no answer that looks like one.
        Err(_) => Err(ApiError::new(500, "the evaluation failed")),
    }
}

/// Why a decision job did not produce an answer.
enum Failure {
    Api(ApiError),
    Audit(AuditError),
}

/// One evaluation, as a blocking thread runs it.
struct Decision {
    st: Arc<AppState>,
    loaded: Arc<Loaded>,
    req: Context,
    now: jiff::Timestamp,
    correlation: String,
    caller: Caller,
    trace: bool,
    /// The bundle declares state: the decision runs against the service's state store.
    stateful: bool,
    /// The candidate shadowing this bundle, if any.
    shadow: Option<Arc<shadow::Shadow>>,
}

/// What the shadow evaluation of a decision needs from the live one.
type ShadowInput = Option<(shadow::Live, Vec<decisions::Read>, String)>;

impl Decision {
    /// Evaluates (recording the bundle's cost) and serializes the answer and the audit line.
    /// Every decision gets an id; a stateful one reads and records its state in the store.
    fn evaluate(&self) -> Result<(Vec<u8>, String, ShadowInput), ApiError> {
        let started = Instant::now();
        let id = verdict_runtime::state::new_decision_id();
        let env = Env { decision_id: Some(&id), ..Env::at(self.now) };
        let mode = Mode::traced(self.trace);
        let engine = &self.loaded.engine;
        let mut reads = Vec::new();
        let mut result = if self.stateful {
            // The reads go into the audit line (and to the shadow candidate).
            let capture = decisions::Capture::new(&self.st.state);
            let r = engine.evaluate_with_store(&self.req, &env, mode, &capture);
            reads = capture.into_reads();
            r
        } else {
            engine.evaluate(&self.req, &env, mode)
        };
        let took = started.elapsed();
        if !self.trace {
            self.loaded.cost.observe(took);
        }
        if result.decision_id.is_none() {
            result.decision_id = Some(id);
        }
        let out = serde_json::to_vec(&result).map_err(|_| ApiError::new(500, "cannot serialize the decision"))?;
        self.st.metrics.observe(&result.decision.kind, started.elapsed());
        let d = &result.decision;
        let decision_id = result.decision_id.as_deref().unwrap_or_default();
        let line = EvaluationLine {
            time: self.now,
            event: "evaluation",
            correlation_id: &self.correlation,
            decision_id,
            caller: self.caller.as_str(),
            bundle_id: &result.bundle_id,
            bundle_version: &result.bundle_version,
            fingerprint: &result.fingerprint,
            bundle_digest: &self.loaded.digest,
            decision: &d.kind,
            matched_policy_id: d.matched_policy_id.as_deref(),
            matched_rule_id: d.matched_rule_id.as_deref(),
            reason: &d.reason,
            codes: &d.codes,
            obligations: &d.obligations,
            holds: &result.holds,
            input: self.loaded.inputs.pruned(&self.req),
            state_reads: &reads,
        };
        let mut text =
            serde_json::to_string(&line).map_err(|_| ApiError::new(500, "cannot serialize the audit line"))?;
        if !self.loaded.inputs_logged.swap(true, std::sync::atomic::Ordering::Relaxed) {
            // The first evaluation of this bundle version also writes the paths its lines record.
            text = format!("{}\n{text}", crate::audit::inputs_line(&self.loaded));
        }
        let live = self.shadow.as_ref().map(|_| {
            let live = shadow::Live {
                kind: d.kind.clone(),
                policy: d.matched_policy_id.clone(),
                rule: d.matched_rule_id.clone(),
                reason: d.reason.clone(),
                version: result.bundle_version.clone(),
                fingerprint: result.fingerprint.clone(),
            };
            (live, reads, decision_id.to_owned())
        });
        Ok((out, text, live))
    }

    /// Queues the shadow evaluation of this decision (never waits; see [`crate::shadow`]).
    fn shadow(self, live: ShadowInput) {
        let st = self.st.clone();
        if let Some(job) = self.shadow_job(live) {
            st.shadows.submit(job);
        }
    }

    /// The shadow evaluation of this decision, if its bundle is shadowed.
    fn shadow_job(self, live: ShadowInput) -> Option<shadow::Job> {
        let (Some(shadow), Some((live, reads, decision_id))) = (self.shadow, live) else { return None };
        Some(shadow::Job {
            st: self.st,
            shadow,
            req: self.req,
            now: self.now,
            correlation: self.correlation,
            decision_id,
            live,
            reads,
        })
    }

    /// [`Decision::evaluate`] on an evaluation thread, then queues the line; `answer` receives
    /// the answer once the line is written (or why there is none).
    fn run(self, answer: oneshot::Sender<Result<Vec<u8>, Failure>>) {
        let (out, line, live) = match self.evaluate() {
            Ok(done) => done,
            Err(e) => {
                let _ = answer.send(Err(Failure::Api(e)));
                return;
            }
        };
        let st = self.st.clone();
        let shadow = self.shadow_job(live);
        st.audit.submit_blocking(
            line,
            Box::new(move |written| {
                // After the live line and before the answer: shadow evaluations queue in the
                // order decisions are answered, as on the inline path.
                if let Some(job) = shadow {
                    let st = job.st.clone();
                    st.shadows.submit(job);
                }
                let _ = answer.send(written.map(|()| out).map_err(Failure::Audit));
            }),
        );
    }
}

fn decision_response(out: Vec<u8>, correlation: &str) -> Response {
    let mut resp = ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], out).into_response();
    if let Ok(v) = HeaderValue::from_str(correlation) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

async fn evaluate_registered(
    State(st): St,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = st.auth.check(&headers, Role::Evaluator)?;
    let correlation = correlation_id(&headers);
    let bytes = read_body(&st, &headers, body).await?;
    let req = context(json_body(&bytes)?)?;
    let loaded = st.store.get(&id).ok_or_else(|| ApiError::new(404, "unknown bundle"))?;
    let out = decide(&st, loaded, bytes.len(), req, &correlation, caller, trace_asked(&uri), true).await?;
    Ok(decision_response(out, &correlation))
}

/// `POST /evaluate`: `{"bundle", "context"}` evaluates a bundle given in the body (admin). With
/// a default bundle (`--default-bundle`), any other body is a request for that bundle
/// (evaluator or admin): a request context, or, when the object has none of `subject`,
/// `action`, `resource`, `data`, flat facts taken as `data` (PolicyGate's callers send those).
async fn evaluate_oneshot(State(st): St, uri: Uri, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let Some(default) = st.default_bundle.clone() else {
        let caller = st.auth.check(&headers, Role::Admin)?;
        let correlation = correlation_id(&headers);
        let bytes = read_body(&st, &headers, body).await?;
        let v = json_body(&bytes)?;
        return oneshot(&st, v, bytes.len(), &uri, &correlation, caller).await;
    };
    let caller = st.auth.check(&headers, Role::Evaluator)?;
    let correlation = correlation_id(&headers);
    let bytes = read_body(&st, &headers, body).await?;
    let v = json_body(&bytes)?;
    if is_oneshot(&v) {
        let caller = st.auth.check(&headers, Role::Admin)?;
        return oneshot(&st, v, bytes.len(), &uri, &correlation, caller).await;
    }
    let req = context(facts(v)?)?;
    let loaded = st.store.get(&default).ok_or_else(|| ApiError::new(404, "unknown bundle"))?;
    let out = decide(&st, loaded, bytes.len(), req, &correlation, caller, trace_asked(&uri), true).await?;
    Ok(decision_response(out, &correlation))
}

/// Whether a body is the one-shot form: an object with both `bundle` and `context`.
fn is_oneshot(v: &Value) -> bool {
    v.as_object().is_some_and(|m| m.contains_key("bundle") && m.contains_key("context"))
}

/// The request context of a default-bundle body: the body itself when it has one of the
/// context's keys, else the body as `data` (flat facts).
fn facts(v: Value) -> Result<Value, ApiError> {
    match v {
        Value::Object(m) if ["subject", "action", "resource", "data"].iter().any(|k| m.contains_key(*k)) => {
            Ok(Value::Object(m))
        }
        Value::Object(m) => Ok(json!({"data": m})),
        _ => Err(ApiError::invalid_request("the body must be a JSON object: a request context, or facts")),
    }
}

/// Compiles the bundle of a one-shot body and evaluates its context.
async fn oneshot(
    st: &Arc<AppState>,
    v: Value,
    input_len: usize,
    uri: &Uri,
    correlation: &str,
    caller: Caller,
) -> Result<Response, ApiError> {
    let Value::Object(mut m) = v else {
        return Err(ApiError::invalid_request("the body must be an object with `bundle` and `context`"));
    };
    let req = context(m.remove("context").ok_or_else(|| ApiError::invalid_request("`context` is required"))?)?;
    let (text, kind) = match m.remove("bundle") {
        Some(b @ Value::Object(_)) => (b.to_string(), SourceKind::Json),
        Some(Value::String(s)) => {
            let kind = SourceKind::detect("", &s);
            (s, kind)
        }
        _ => return Err(ApiError::invalid_request("`bundle` must be a bundle object (or a YAML/.verdict text)")),
    };
    if !st.trusted_keys.is_empty() {
        return Err(ApiError::invalid_request(crate::engine::SOURCE_UNTRUSTED));
    }
    let loaded = compile(st, "bundle", text, kind, Origin::Api).await?;
    let out = decide(st, Arc::new(loaded), input_len, req, correlation, caller, trace_asked(uri), false).await?;
    Ok(decision_response(out, correlation))
}
