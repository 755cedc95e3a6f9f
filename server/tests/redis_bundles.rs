//! Replicas following bundles pushed to a real Redis (`Config::bundles_from`; `redis-server` from
//! Debian on a free loopback port, a failure under CI when missing), over real HTTP:
//! - two replicas load the active revision at start and follow every push (sources and
//!   artifacts), a replica started later loads what is active, and each writes its status key;
//! - bad revisions pushed while clients evaluate on both replicas (a source under trusted keys, an
//!   unsigned artifact, a foreign signature, a tampered signed artifact, a revision holding
//!   another bundle, bytes that do not match their revision's name) are never served: every
//!   request succeeds on the old version, each refusal shows in `/metrics`, the audit log and the
//!   status key, and the next good push is followed;
//! - a revision whose bundle id a file holds is compiled once, offered to the store at every
//!   check without compiling it again, and serves when the file is gone;
//! - Redis restarted (empty) while the replicas serve: they keep serving, report the outage in
//!   `/metrics`, and catch up with a push they never got a message for, by the full check they
//!   make when they subscribe again (the poll is an hour here).
//!
//! Timeouts below are hang guards, not measurements.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use ed25519_dalek::SigningKey;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use verdict_runtime::signature::{self, TrustedKeys};
use verdict_server::audit::AuditTarget;
use verdict_server::auth::Auth;
use verdict_server::source::RedisBundles;
use verdict_server::{Config, Server, start};
use verdict_store_redis::bundles::{BundleOptions, BundleSource, Expect, revision_of};
use verdict_store_redis::testing::RedisServer;

const ADMIN: &str = "admin-token-0123456789abcdef-0123456789";
const EVAL: &str = "evaluate-token-0123456789abcdef-0123456";
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
/// How long anything below may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(20);

static SCRATCH: AtomicUsize = AtomicUsize::new(0);

fn scratch(name: &str) -> PathBuf {
    let n = SCRATCH.fetch_add(1, Ordering::Relaxed);
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("redis-bundles-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The quickstart as bundle `id` at `version` (YAML text).
fn source(id: &str, version: &str) -> String {
    std::fs::read_to_string(Path::new(WORKSPACE).join("examples/quickstart/bundle.yaml"))
        .unwrap()
        .replace("bundle_id: edu-gate", &format!("bundle_id: {id}"))
        .replace("version: \"1.2.0\"", &format!("version: \"{version}\""))
}

fn artifact(id: &str, version: &str) -> Vec<u8> {
    let file = verdict_compiler::source::SourceFile::new("bundle.yaml", source(id, version));
    let bundle = verdict_compiler::compile_for_use(&file).bundle.unwrap();
    verdict_runtime::artifact::write(&verdict_compiler::codegen::program(&bundle))
}

fn publisher() -> SigningKey {
    SigningKey::from_bytes(&[11; 32])
}

fn signed(id: &str, version: &str, key: &SigningKey) -> Vec<u8> {
    signature::sign(&artifact(id, version), key).unwrap()
}

fn pusher(redis: &RedisServer, prefix: &str) -> BundleSource {
    BundleSource::open(&redis.url(), BundleOptions { prefix: prefix.into(), ..BundleOptions::default() }).unwrap()
}

fn push(src: &BundleSource, id: &str, bytes: &[u8]) -> String {
    src.push(id, bytes, &Expect::Any).unwrap().revision
}

/// A replica: a server following `prefix` on the Redis, and its audit log.
struct Replica {
    server: Server,
    base: String,
    client: Client,
    audit: PathBuf,
    name: String,
}

async fn replica(redis: &RedisServer, prefix: &str, name: &str, keys: Option<TrustedKeys>, poll: Duration) -> Replica {
    replica_with(redis, prefix, name, keys, poll, |_| {}).await
}

/// [`replica`] with more configuration.
async fn replica_with(
    redis: &RedisServer,
    prefix: &str,
    name: &str,
    keys: Option<TrustedKeys>,
    poll: Duration,
    tune: impl FnOnce(&mut Config),
) -> Replica {
    let audit = scratch(name).join("audit.jsonl");
    let mut config = Config::new("127.0.0.1:0".parse().unwrap());
    config.auth = Auth::from_tokens(Some(ADMIN.into()), Some(EVAL.into()));
    config.audit = AuditTarget::File(audit.clone());
    config.trusted_keys = keys.unwrap_or_else(TrustedKeys::none);
    let mut from = RedisBundles::new(redis.url());
    from.prefix = prefix.into();
    from.replica = Some(name.into());
    from.poll_interval = poll;
    config.bundles_from = Some(from);
    tune(&mut config);
    let server = start(config).await.unwrap();
    Replica { base: format!("http://{}", server.addr()), server, client: Client::new(), audit, name: name.into() }
}

impl Replica {
    /// The digest of the bytes `id` was loaded from, if this replica has it.
    async fn serving(&self, id: &str) -> Option<String> {
        let resp = self.client.get(format!("{}/bundles/{id}", self.base)).bearer_auth(ADMIN).send().await.unwrap();
        let digest = resp.headers().get("verdict-bundle-digest").map(|v| v.to_str().unwrap().to_owned());
        (resp.status() == StatusCode::OK).then_some(digest).flatten()
    }

    /// A student's update of a gradebook on `id`: the status and the version that decided.
    async fn evaluate(&self, id: &str) -> (StatusCode, Value) {
        let body = json!({"subject": {"id": "u-42", "role": "student"}, "action": "update", "resource": {"type": "gradebook", "id": "gb-3", "tags": []}, "data": {}});
        let resp = self
            .client
            .post(format!("{}/bundles/{id}/evaluate", self.base))
            .bearer_auth(EVAL)
            .json(&body)
            .timeout(HANG)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn version(&self, id: &str) -> Value {
        let (s, v) = self.evaluate(id).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["bundle_version"].clone()
    }

    async fn metric(&self, name: &str) -> f64 {
        let text = self.client.get(format!("{}/metrics", self.base)).send().await.unwrap().text().await.unwrap();
        let line = text.lines().find(|l| l.split(' ').next() == Some(name)).unwrap_or_else(|| panic!("no {name}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    /// This replica's status key, parsed.
    fn status(&self, src: &BundleSource) -> Value {
        src.status(&self.name).unwrap().map_or(Value::Null, |t| serde_json::from_str(&t).unwrap())
    }

    async fn finish(self) -> Vec<Value> {
        self.server.shutdown().await.unwrap();
        std::fs::read_to_string(&self.audit).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

/// Waits until `check` holds, failing after the hang guard.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < HANG, "{what}: not within {HANG:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn both_serve(replicas: &[&Replica], id: &str, revision: &str) {
    for r in replicas {
        until(&format!("{} serves {revision}", r.name), || async { r.serving(id).await.as_deref() == Some(revision) })
            .await;
    }
}

/// Waits until every replica's status key shows `revision` of `id` refused; returns the errors.
async fn both_refuse(replicas: &[&Replica], src: &BundleSource, id: &str, revision: &str) -> Vec<String> {
    let mut errors = Vec::new();
    for r in replicas {
        until(&format!("{} refuses {revision}", r.name), || async {
            r.status(src)["bundles"][id]["refused"]["revision"] == revision
        })
        .await;
        errors.push(r.status(src)["bundles"][id]["refused"]["error"].as_str().unwrap().to_owned());
    }
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_load_the_active_revision_and_follow_every_push() {
    let Some(redis) = RedisServer::start().unwrap() else { return };
    let src = pusher(&redis, "conv:");
    let mut current = push(&src, "gate", &artifact("gate", "1.0.1"));
    let second = Duration::from_secs(1);
    let (r1, r2) =
        (replica(&redis, "conv:", "r1", None, second).await, replica(&redis, "conv:", "r2", None, second).await);
    // Loaded before the server accepted connections.
    for r in [&r1, &r2] {
        assert_eq!(r.serving("gate").await, Some(current.clone()));
        assert_eq!(r.version("gate").await, "1.0.1");
    }

    // Sources and artifacts alike, one push after the other.
    for n in 2..=7 {
        let version = format!("1.0.{n}");
        let bytes = if n % 2 == 0 { source("gate", &version).into_bytes() } else { artifact("gate", &version) };
        current = push(&src, "gate", &bytes);
        both_serve(&[&r1, &r2], "gate", &current).await;
        assert_eq!(r1.version("gate").await, version.as_str());
        assert_eq!(r2.version("gate").await, version.as_str());
    }

    // A source that does not compile: refused with its position, the old version serves on.
    let broken =
        push(&src, "gate", source("gate", "1.0.8").replace("default_effect: deny", "default_effect: [").as_bytes());
    let errors = both_refuse(&[&r1, &r2], &src, "gate", &broken).await;
    assert!(errors[0].starts_with("redis:gate@sha256:") && errors[0].contains(":10:5: V100"), "{}", errors[0]);
    // A revision holding another bundle.
    let other = push(&src, "gate", &artifact("not-gate", "1.0.9"));
    let errors = both_refuse(&[&r1, &r2], &src, "gate", &other).await;
    assert!(errors[1].ends_with("holds bundle `not-gate`, not `gate`"), "{}", errors[1]);
    for r in [&r1, &r2] {
        assert_eq!(r.version("gate").await, "1.0.7");
        assert_eq!(r.metric("verdict_bundle_source_rejections_total").await, 2.0);
        assert_eq!(r.metric("verdict_bundle_source_activations_total").await, 7.0);
        assert_eq!(r.metric("verdict_bundle_source_connected").await, 1.0);
    }

    // Back to a good revision already served (a rollback of the bad pushes): nothing reloads and
    // no refusal stands. A second bundle comes along.
    push(&src, "gate", &artifact("gate", "1.0.7"));
    let extra = push(&src, "extra", &artifact("extra", "2.0.0"));
    both_serve(&[&r1, &r2], "extra", &extra).await;
    for r in [&r1, &r2] {
        until("the rollback and the new bundle in the status", || async {
            let status = r.status(&src);
            status["bundles"]["gate"]["refused"].is_null() && status["bundles"]["extra"]["serving"] == extra
        })
        .await;
        let status = r.status(&src);
        assert_eq!(status["replica"], r.name.as_str());
        assert_eq!(status["connected"], true);
        assert_eq!(status["bundles"]["gate"]["active"], current.as_str());
        assert_eq!(status["bundles"]["gate"]["serving"], current.as_str());
        assert_eq!(status["bundles"]["extra"]["serving"], extra.as_str());
    }

    // A replica started now loads what is active.
    let r3 = replica(&redis, "conv:", "r3", None, second).await;
    assert_eq!(r3.serving("gate").await, Some(current.clone()));
    assert_eq!(r3.serving("extra").await, Some(extra.clone()));

    // The API may not replace a bundle that Redis owns.
    let resp = r1
        .client
        .put(format!("{}/bundles/gate", r1.base))
        .bearer_auth(ADMIN)
        .header("content-type", "application/yaml")
        .body(source("gate", "9.9.9"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let refused: Value = resp.json().await.unwrap();
    assert_eq!(refused["detail"], "bundle id `gate` is already registered by redis", "{refused}");

    let audit = r1.finish().await;
    let loads: Vec<&Value> = audit.iter().filter(|l| l["event"] == "bundle_reloaded").collect();
    assert_eq!(loads.len(), 6, "{loads:?}");
    assert!(loads.iter().all(|l| l["origin"] == format!("redis:127.0.0.1:{}", redis.port())), "{loads:?}");
    let rejected: Vec<&Value> = audit.iter().filter(|l| l["event"] == "bundle_rejected").collect();
    assert_eq!(rejected.iter().map(|l| l["revision"].clone()).collect::<Vec<_>>(), [json!(broken), json!(other)]);
    r2.finish().await;
    r3.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_pushes_under_load_never_serve_and_the_next_good_one_does() {
    let Some(redis) = RedisServer::start().unwrap() else { return };
    let src = pusher(&redis, "load:");
    let keys = || Some(TrustedKeys::new([publisher().verifying_key()]));
    let first = push(&src, "gate", &signed("gate", "1.0.1", &publisher()));
    let second = Duration::from_secs(1);
    let r1 = Arc::new(replica(&redis, "load:", "r1", keys(), second).await);
    let r2 = Arc::new(replica(&redis, "load:", "r2", keys(), second).await);
    both_serve(&[&r1, &r2], "gate", &first).await;

    // Clients on both replicas until told to stop. `phase` is 1 until the good push: a request
    // answered in phase 1 must have been decided by version 1.0.1.
    let stop = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(AtomicUsize::new(1));
    let mut clients = Vec::new();
    for c in 0..8 {
        let (r, stop, phase) = (if c % 2 == 0 { r1.clone() } else { r2.clone() }, stop.clone(), phase.clone());
        clients.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (s, v) = r.evaluate("gate").await;
                // Still phase 1 once answered: the request was over before the good push began.
                let p = phase.load(Ordering::SeqCst);
                assert_eq!(s, StatusCode::OK, "{v}");
                let version = v["bundle_version"].as_str().unwrap().to_owned();
                assert!(p == 2 || version == "1.0.1", "phase {p}: decided by {version}");
                seen.push(version);
            }
            seen
        }));
    }

    let genuine = signed("gate", "1.0.2", &publisher());
    let mut tampered = genuine.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x20;
    let bad: Vec<(Vec<u8>, &str)> = vec![
        (source("gate", "1.0.3").into_bytes(), "not a signed artifact"),
        (artifact("gate", "1.0.4"), "artifact is not signed"),
        (signed("gate", "1.0.5", &SigningKey::from_bytes(&[66; 32])), "which is not a trusted key"),
        (tampered, "does not verify"),
        (signed("other", "1.0.6", &publisher()), "holds bundle `other`"),
    ];
    for (bytes, why) in &bad {
        let revision = push(&src, "gate", bytes);
        let errors = both_refuse(&[&r1, &r2], &src, "gate", &revision).await;
        assert!(errors.iter().all(|e| e.contains(why)), "{why}: {errors:?}");
    }
    // Bytes changed by hand under an existing revision's name.
    let forged = revision_of(b"what the pointer names");
    redis.command(&["SET", &format!("load:b:{{{}}}:r:{forged}", tag("gate")), "other bytes"]).unwrap();
    redis.command(&["HSET", &format!("load:b:{{{}}}:m", tag("gate")), "rev", &forged]).unwrap();
    redis.command(&["PUBLISH", "load:bundles:changed", r#"{"bundle_id":"gate"}"#]).unwrap();
    let errors = both_refuse(&[&r1, &r2], &src, "gate", &forged).await;
    assert!(errors.iter().all(|e| e.contains("have the digest")), "{errors:?}");

    // Still version 1.0.1 everywhere, then the good push takes over under the same load.
    for r in [&r1, &r2] {
        assert_eq!(r.serving("gate").await, Some(first.clone()));
        assert_eq!(r.metric("verdict_bundle_source_rejections_total").await, 6.0);
    }
    phase.store(2, Ordering::SeqCst);
    let good = push(&src, "gate", &genuine);
    both_serve(&[&r1, &r2], "gate", &good).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let mut answered = 0;
    for c in clients {
        let seen = c.await.unwrap();
        answered += seen.len();
        assert!(seen.iter().all(|v| v == "1.0.1" || v == "1.0.2"), "{seen:?}");
    }
    assert!(answered > 0);
    for r in [&r1, &r2] {
        assert_eq!(r.version("gate").await, "1.0.2");
        assert_eq!(r.metric("verdict_bundle_source_activations_total").await, 2.0);
    }
    for r in [r1, r2] {
        let r = Arc::into_inner(r).unwrap();
        let audit = r.finish().await;
        assert_eq!(audit.iter().filter(|l| l["event"] == "bundle_rejected").count(), 6);
        // Every answered request is in the audit log, decided by 1.0.1 or 1.0.2.
        let evaluations: Vec<&Value> = audit.iter().filter(|l| l["event"] == "evaluation").collect();
        assert!(evaluations.iter().all(|l| l["bundle_digest"] == first || l["bundle_digest"] == good));
    }
}

/// A revision whose bundle id a file holds is refused by the store: it is compiled once, offered
/// to the store again at every check without a new compilation or refusal, and serves as soon as
/// the file is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_the_store_refuses_is_compiled_once_and_serves_once_its_id_is_free() {
    let Some(redis) = RedisServer::start().unwrap() else { return };
    let src = pusher(&redis, "own:");
    let files = scratch("owned-files");
    std::fs::write(files.join("gate.yaml"), source("gate", "1.0.0")).unwrap();
    let pushed = push(&src, "gate", &artifact("gate", "2.0.0"));
    let watch = files.clone();
    let r = replica_with(&redis, "own:", "r1", None, Duration::from_millis(10), move |c| {
        c.watch = Some(watch);
        // Files are reloaded only when the test says so.
        c.poll_interval = Duration::from_secs(3600);
    })
    .await;
    let errors = both_refuse(&[&r], &src, "gate", &pushed).await;
    assert!(errors[0].starts_with("bundle id `gate` is already registered by file:"), "{}", errors[0]);
    // Checks go on (each rewrites the status key with its time); none compiles the revision again.
    let mut times = std::collections::BTreeSet::new();
    until("ten more checks", || {
        times.insert(r.status(&src)["time"].as_str().unwrap().to_owned());
        let checks = times.len();
        async move { checks > 10 }
    })
    .await;
    assert_eq!(r.version("gate").await, "1.0.0");
    assert_eq!(r.metric("verdict_bundle_source_compilations_total").await, 1.0);
    assert_eq!(r.metric("verdict_bundle_source_rejections_total").await, 1.0);

    // The file goes: the revision compiled then serves, without being compiled again.
    std::fs::remove_file(files.join("gate.yaml")).unwrap();
    assert_eq!(r.server.reload().await.removed, ["gate"]);
    until("the refused revision serves", || async { r.serving("gate").await.as_deref() == Some(pushed.as_str()) })
        .await;
    assert_eq!(r.version("gate").await, "2.0.0");
    assert_eq!(r.metric("verdict_bundle_source_compilations_total").await, 1.0);
    assert_eq!(r.metric("verdict_bundle_source_activations_total").await, 1.0);
    let audit = r.finish().await;
    let rejected: Vec<&Value> = audit.iter().filter(|l| l["event"] == "bundle_rejected").collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(audit.iter().any(|l| l["event"] == "bundle_loaded" && l["bundle_digest"] == pushed.as_str()));
}

/// The hash tag of a bundle id (as the store makes it: 128 bits of its SHA-256, in hex).
fn tag(id: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(id.as_bytes()).iter().take(16).map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_keep_serving_through_a_redis_restart_and_catch_up_on_reconnect() {
    let Some(mut redis) = RedisServer::start().unwrap() else { return };
    // No poll in this test: only messages and the full check after a new subscription.
    let hour = Duration::from_secs(3600);
    let first = push(&pusher(&redis, "rs:"), "gate", &artifact("gate", "1.0.1"));
    let r1 = replica(&redis, "rs:", "r1", None, hour).await;
    let r2 = replica(&redis, "rs:", "r2", None, hour).await;
    both_serve(&[&r1, &r2], "gate", &first).await;

    // A push nobody hears of: Redis restarts empty and the push lands before the replicas
    // subscribe again (their retries are 50 ms apart, doubling: after a second down, the next is
    // about half a second away). Tried a few times, since that timing is not guaranteed.
    let mut unheard = false;
    for attempt in 2..=4 {
        redis.kill();
        for r in [&r1, &r2] {
            assert_eq!(r.version("gate").await, format!("1.0.{}", attempt - 1), "serving while redis is down");
            until("the outage in /metrics", || async { r.metric("verdict_bundle_source_connected").await == 0.0 })
                .await;
        }
        tokio::time::sleep(Duration::from_millis(900)).await;
        redis.restart().unwrap();
        let version = format!("1.0.{attempt}");
        let pushed = pusher(&redis, "rs:").push("gate", &artifact("gate", &version), &Expect::Nothing).unwrap();
        both_serve(&[&r1, &r2], "gate", &pushed.revision).await;
        for r in [&r1, &r2] {
            assert_eq!(r.version("gate").await, version.as_str());
            until("the status key written again", || async {
                r.status(&pusher(&redis, "rs:"))["bundles"]["gate"]["serving"] == pushed.revision
            })
            .await;
            assert_eq!(r.metric("verdict_bundle_source_connected").await, 1.0);
        }
        if pushed.notified == 0 {
            unheard = true;
            break;
        }
    }
    assert!(unheard, "every push after a restart reached a subscriber: the reconnect check was not exercised");
    r1.finish().await;
    r2.finish().await;
}
