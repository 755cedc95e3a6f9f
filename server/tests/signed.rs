//! The service under trusted keys (`Config::trusted_keys`), over real HTTP on 127.0.0.1: signed
//! artifacts register and decide; unsigned, foreign-signed and tampered artifacts and source
//! bundles are refused with 422 and the reason while the old version serves on; the watched
//! directory and the command line obey the same keys; and audit lines and `GET /bundles/{id}`
//! carry the SHA-256 of the bytes actually posted, not only the fingerprint the artifact claims.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use ed25519_dalek::SigningKey;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use verdict_runtime::signature::{self, KeyId, TrustedKeys};
use verdict_server::audit::AuditTarget;
use verdict_server::auth::Auth;
use verdict_server::{Config, Server, start};

const ADMIN: &str = "admin-token-0123456789abcdef-0123456789";
const EVAL: &str = "evaluate-token-0123456789abcdef-0123456";
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const VDC: &str = "application/vnd.verdict.artifact";

static SCRATCH: AtomicUsize = AtomicUsize::new(0);

fn scratch(name: &str) -> PathBuf {
    let n = SCRATCH.fetch_add(1, Ordering::Relaxed);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("signed-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn publisher() -> SigningKey {
    SigningKey::from_bytes(&[11; 32])
}

fn attacker() -> SigningKey {
    SigningKey::from_bytes(&[66; 32])
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// The quickstart with another id and version, as an artifact (its writes deny non-admins).
fn artifact(id: &str, version: &str, default_allow: bool) -> Vec<u8> {
    let text = std::fs::read_to_string(Path::new(WORKSPACE).join("examples/quickstart/bundle.yaml")).unwrap();
    let text = text.replace("bundle_id: edu-gate", &format!("bundle_id: {id}"));
    let text = text.replace("version: \"1.2.0\"", &format!("version: \"{version}\""));
    let file = verdict_compiler::source::SourceFile::new("bundle.yaml", text);
    let mut program = verdict_compiler::codegen::program(&verdict_compiler::compile(&file).bundle.unwrap());
    if default_allow {
        // A crafted artifact: the same id, version and fingerprint, every default flipped to allow.
        let allow = program.effects.iter().position(|e| e == "allow").unwrap() as u32;
        for p in &mut program.policies {
            p.default = Some(allow);
        }
    }
    verdict_runtime::artifact::write(&program)
}

fn signed(bytes: &[u8], key: &SigningKey) -> Vec<u8> {
    signature::sign(bytes, key).unwrap()
}

fn student_update() -> Value {
    json!({"subject": {"id": "u-42", "role": "student"}, "action": "update", "resource": {"type": "gradebook", "id": "gb-3", "tags": []}, "data": {}})
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
    config.audit = AuditTarget::File(audit.clone());
    config.trusted_keys = TrustedKeys::new([publisher().verifying_key()]);
    f(&mut config);
    let server = start(config).await.unwrap();
    Harness { base: format!("http://{}", server.addr()), server, client: Client::new(), audit }
}

impl Harness {
    async fn send(&self, method: Method, path: &str, body: Vec<u8>, ctype: &str) -> (StatusCode, Value) {
        let resp = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
            .header("content-type", ctype)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn evaluate(&self, id: &str) -> Value {
        let (s, v) = self
            .send(
                Method::POST,
                &format!("/bundles/{id}/evaluate"),
                student_update().to_string().into_bytes(),
                "application/json",
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }

    async fn finish(self) -> Vec<Value> {
        self.server.shutdown().await.unwrap();
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_artifacts_signed_by_a_trusted_key_register() {
    let h = start_with("api", |_| {}).await;
    let genuine = signed(&artifact("gate", "1.0.0", false), &publisher());
    let (s, v) = h.send(Method::POST, "/bundles", genuine.clone(), VDC).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["digest"], sha256(&genuine));
    assert_eq!(h.evaluate("gate").await["decision"]["kind"], "deny");

    // Every replacement below is refused with 422 and its reason; version 1.0.0 serves on.
    let crafted = artifact("gate", "1.0.0", true);
    let mut spliced = crafted.clone();
    spliced.extend_from_slice(&genuine[genuine.len() - signature::TRAILER_LEN..]);
    let mut tampered = genuine.clone();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0x01;
    let source = std::fs::read(Path::new(WORKSPACE).join("examples/quickstart/bundle.yaml")).unwrap();
    let cases: [(&str, Vec<u8>, &str, &str); 5] = [
        ("unsigned", artifact("gate", "2.0.0", false), VDC, "not signed"),
        ("crafted, signed by another key", signed(&crafted, &attacker()), VDC, "not a trusted key"),
        ("crafted, the genuine signature copied", spliced, VDC, "does not verify"),
        ("tampered", tampered, "application/octet-stream", "does not verify"),
        ("source", source, "application/yaml", "not a signed artifact"),
    ];
    for (what, body, ctype, reason) in cases {
        let (s, v) = h.send(Method::PUT, "/bundles/gate", body, ctype).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {v}");
        assert!(v["reason"].as_str().unwrap_or_default().contains(reason), "{what}: {v}");
        let d = h.evaluate("gate").await;
        assert_eq!(
            (d["bundle_version"].clone(), d["decision"]["kind"].clone()),
            (json!("1.0.0"), json!("deny")),
            "{what}"
        );
    }
    let attacker_id = KeyId::of(&attacker().verifying_key()).to_string();
    let (_, v) = h.send(Method::POST, "/bundles", signed(&artifact("other", "1", false), &attacker()), VDC).await;
    assert!(v["reason"].as_str().unwrap().contains(&attacker_id), "the refusal names the key: {v}");
    // A one-shot evaluation of a source bundle is refused too.
    let body = json!({"bundle": std::fs::read_to_string(Path::new(WORKSPACE).join("examples/quickstart/bundle.yaml")).unwrap(), "context": student_update()});
    let (s, v) = h.send(Method::POST, "/evaluate", body.to_string().into_bytes(), "application/json").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // A signed replacement is accepted.
    let v2 = signed(&artifact("gate", "2.0.0", false), &publisher());
    let (s, v) = h.send(Method::PUT, "/bundles/gate", v2.clone(), VDC).await;
    assert_eq!((s, v["digest"].clone()), (StatusCode::OK, json!(sha256(&v2))), "{v}");
    assert_eq!(h.evaluate("gate").await["bundle_version"], "2.0.0");

    // `GET` carries the digest and the signer.
    let resp = h.client.get(format!("{}/bundles/gate", h.base)).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(resp.headers()["verdict-bundle-digest"], sha256(&v2).as_str());
    let v: Value = resp.json().await.unwrap();
    let publisher_id = KeyId::of(&publisher().verifying_key()).to_string();
    assert_eq!((v["digest"].clone(), v["signed_by"].clone()), (json!(sha256(&v2)), json!(publisher_id)), "{v}");

    let lines = h.finish().await;
    let registrations: Vec<&Value> =
        lines.iter().filter(|l| l["event"] == "bundle_registered" || l["event"] == "bundle_replaced").collect();
    assert_eq!(registrations.len(), 2, "{lines:?}");
    assert_eq!(registrations[0]["bundle_digest"], sha256(&genuine));
    assert_eq!(registrations[1]["bundle_digest"], sha256(&v2));
    assert!(registrations.iter().all(|l| l["signed_by"] == json!(publisher_id)));
    // Every evaluation line names the digest of the bytes posted for the version that decided.
    let evaluations: Vec<&Value> = lines.iter().filter(|l| l["event"] == "evaluation").collect();
    assert_eq!(evaluations.len(), 7);
    for l in evaluations {
        let want = if l["bundle_version"] == "1.0.0" { sha256(&genuine) } else { sha256(&v2) };
        assert_eq!(l["bundle_digest"], want, "{l}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_trusted_keys_the_digest_tells_a_crafted_artifact_apart() {
    let h = start_with("loose", |c| c.trusted_keys = TrustedKeys::none()).await;
    let genuine = artifact("gate", "1.0.0", false);
    let crafted = artifact("gate", "1.0.0", true);
    assert_eq!(h.send(Method::POST, "/bundles", genuine.clone(), VDC).await.0, StatusCode::CREATED);
    let before = h.evaluate("gate").await;
    // A checksum is not authentication: without keys the crafted artifact loads...
    assert_eq!(h.send(Method::PUT, "/bundles/gate", crafted.clone(), VDC).await.0, StatusCode::OK);
    let after = h.evaluate("gate").await;
    assert_eq!(
        (before["decision"]["kind"].clone(), after["decision"]["kind"].clone()),
        (json!("deny"), json!("allow"))
    );
    // ... with the same fingerprint, but not the same digest.
    assert_eq!(before["fingerprint"], after["fingerprint"]);
    // Source bundles and signed artifacts load too (the signature unchecked: `signed_by` null).
    let source = std::fs::read(Path::new(WORKSPACE).join("examples/quickstart/bundle.yaml")).unwrap();
    assert_eq!(h.send(Method::POST, "/bundles", source.clone(), "application/yaml").await.0, StatusCode::CREATED);
    let other = signed(&artifact("other", "1", false), &attacker());
    assert_eq!(h.send(Method::POST, "/bundles", other, VDC).await.0, StatusCode::CREATED);
    let lines = h.finish().await;
    let evaluations: Vec<&Value> = lines.iter().filter(|l| l["event"] == "evaluation").collect();
    assert_eq!(evaluations[0]["bundle_digest"], sha256(&genuine));
    assert_eq!(evaluations[1]["bundle_digest"], sha256(&crafted));
    let registered: Vec<&Value> = lines.iter().filter(|l| l["event"] == "bundle_registered").collect();
    assert_eq!(registered[1]["bundle_digest"], sha256(&source));
    assert!(registered.iter().all(|l| l["signed_by"].is_null()), "{registered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_the_watched_directory_obey_the_keys() {
    let dir = scratch("watch");
    let good = signed(&artifact("watched-signed", "1", false), &publisher());
    std::fs::write(dir.join("a-signed.vdc"), &good).unwrap();
    std::fs::write(dir.join("b-unsigned.vdc"), artifact("watched-unsigned", "1", false)).unwrap();
    std::fs::write(dir.join("c-foreign.vdc"), signed(&artifact("watched-foreign", "1", false), &attacker())).unwrap();
    let yaml = std::fs::read_to_string(Path::new(WORKSPACE).join("examples/quickstart/bundle.yaml")).unwrap();
    std::fs::write(dir.join("d-source.yaml"), yaml.replace("bundle_id: edu-gate", "bundle_id: watched-source"))
        .unwrap();
    let watch = dir.clone();
    let h = start_with("watch", |c| {
        c.watch = Some(watch);
        c.poll_interval = Duration::from_millis(50);
    })
    .await;
    let (s, v) = h.send(Method::GET, "/bundles", Vec::new(), "application/json").await;
    assert_eq!((s, v), (StatusCode::OK, json!({"bundle_ids": ["watched-signed"]})));
    // An unsigned replacement of the signed file is refused; the signed version serves on.
    std::fs::write(dir.join(".tmp"), artifact("watched-signed", "2", false)).unwrap();
    std::fs::rename(dir.join(".tmp"), dir.join("a-signed.vdc")).unwrap();
    h.server.reload().await;
    assert_eq!(h.evaluate("watched-signed").await["bundle_version"], "1");
    let lines = h.finish().await;
    let rejected: Vec<String> = lines
        .iter()
        .filter(|l| l["event"] == "bundle_rejected")
        .map(|l| l["errors"].as_str().unwrap().to_owned())
        .collect();
    // Forced reloads try every file again, and the poller may see the change first: at least four.
    assert!(rejected.len() >= 4, "{rejected:?}");
    for (file, why) in [
        ("b-unsigned.vdc", "not signed"),
        ("c-foreign.vdc", "not a trusted key"),
        ("d-source.yaml", "not a signed artifact"),
        ("a-signed.vdc", "not signed"),
    ] {
        assert!(rejected.iter().any(|r| r.contains(file) && r.contains(why)), "{file}: {rejected:?}");
    }
    let loaded = lines.iter().find(|l| l["event"] == "bundle_loaded").unwrap();
    assert_eq!(loaded["bundle_digest"], sha256(&good));

    // A bundle given on the command line must load: an unsigned one stops the start.
    let unsigned = dir.join("b-unsigned.vdc");
    let mut config = Config::new("127.0.0.1:0".parse().unwrap());
    config.bundles = vec![unsigned];
    config.audit = AuditTarget::File(scratch("explicit").join("audit.jsonl"));
    config.trusted_keys = TrustedKeys::new([publisher().verifying_key()]);
    let err = start(config).await.unwrap_err().to_string();
    assert!(err.contains("b-unsigned.vdc") && err.contains("not signed"), "{err}");
}
