//! Push → active latency (issue 13): two `verdict serve --bundles-from` replicas (this build's
//! binary, as processes) on a throwaway `redis-server` on loopback; 50 pushes of a new artifact
//! revision, each timed from the start of the push (`BundleSource::push`, what `verdict push` does
//! after compiling) until both replicas serve it (`GET /bundles/{id}` reports its digest, polled
//! every 100 µs). Prints the distribution.
//!
//! `cargo bench -p verdict-cli --bench push_active` (release build; redis-server on PATH).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use verdict_store_redis::bundles::{BundleOptions, BundleSource, Expect};
use verdict_store_redis::testing::RedisServer;

const BIN: &str = env!("CARGO_BIN_EXE_verdict");
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const ADMIN: &str = "admin-token-0123456789abcdef-0123456789";
const PUSHES: usize = 50;
/// Longer than this is a hang, not a measurement.
const HANG: Duration = Duration::from_secs(30);

struct Replica {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn replica(url: &str, name: &str) -> Result<Replica, String> {
    let mut child = Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1:0", "--audit", "/dev/null", "--bundles-from", url, "--replica-id", name])
        .env("POLICY_ENGINE_ADMIN_TOKEN", ADMIN)
        .env("POLICY_ENGINE_EVALUATE_TOKEN", "evaluate-token-0123456789abcdef-0123456")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {BIN}: {e}"))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if let Some(addr) = line.strip_prefix("verdict serve: listening on http://") {
            let addr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
            return Ok(Replica { child, addr });
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    Err("verdict serve did not start".into())
}

/// The digest `GET /bundles/{id}` reports.
fn serving(addr: SocketAddr, id: &str) -> Result<Option<String>, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let req =
        format!("GET /bundles/{id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    Ok(resp.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("verdict-bundle-digest").then(|| value.trim().to_owned())
    }))
}

fn artifact(version: usize) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(format!("{WORKSPACE}/examples/quickstart/bundle.yaml"))
        .map_err(|e| e.to_string())?
        .replace("version: \"1.2.0\"", &format!("version: \"9.0.{version}\""));
    let file = verdict_compiler::source::SourceFile::new("bundle.yaml", text);
    let bundle = verdict_compiler::compile_for_use(&file).bundle.ok_or("the quickstart does not compile")?;
    Ok(verdict_runtime::artifact::write(&verdict_compiler::codegen::program(&bundle)))
}

fn main() -> Result<(), String> {
    let Some(redis) = RedisServer::start()? else { return Err("redis-server is not on PATH".into()) };
    let url = redis.url();
    let source = BundleSource::open(&url, BundleOptions::default()).map_err(|e| e.to_string())?;
    source.push("edu-gate", &artifact(0)?, &Expect::Any).map_err(|e| e.to_string())?;
    let replicas = [replica(&url, "bench-1")?, replica(&url, "bench-2")?];
    let mut took = Vec::with_capacity(PUSHES);
    for n in 1..=PUSHES {
        let bytes = artifact(n)?;
        // Let the replicas settle between pushes (as separate deployments would).
        std::thread::sleep(Duration::from_millis(50));
        let started = Instant::now();
        let pushed = source.push("edu-gate", &bytes, &Expect::Any).map_err(|e| e.to_string())?;
        for r in &replicas {
            while serving(r.addr, "edu-gate")?.as_deref() != Some(pushed.revision.as_str()) {
                if started.elapsed() > HANG {
                    return Err(format!("push {n} not active within {HANG:?}"));
                }
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        took.push(started.elapsed());
    }
    took.sort_unstable();
    let at =
        |q: f64| took.get(((took.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or_default();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "push -> active on both replicas, {PUSHES} pushes: min {:.2} ms, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(took.first().copied().unwrap_or_default()),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(0.99)),
        ms(took.last().copied().unwrap_or_default())
    );
    Ok(())
}
