//! A throwaway `redis-server` for tests and benchmarks: Debian's binary from `PATH`, on a free
//! loopback port, without persistence (`--save "" --appendonly no`), stopped when dropped.
//!
//! When `redis-server` is missing, [`RedisServer::start`] answers `Ok(None)` so a developer
//! without it sees the tests say so; with `CI` set it is an error, so CI never passes by skipping
//! (`.ci/run` installs it: `apt-get install -y redis-server`).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a started server may take to answer `PING` (a hang guard, not a measurement).
const READY_WITHIN: Duration = Duration::from_secs(20);

/// A running `redis-server` child process.
#[derive(Debug)]
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    child: Option<Child>,
}

/// `redis-server` on `PATH`, if any.
fn find_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("redis-server")).find(|p| p.is_file())
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("no free port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| format!("no free port: {e}"))
}

impl RedisServer {
    /// Starts a server on a free port; `Ok(None)` when `redis-server` is not installed and `CI`
    /// is not set (the caller then reports the test as not run).
    pub fn start() -> Result<Option<RedisServer>, String> {
        let Some(binary) = find_binary() else {
            if std::env::var_os("CI").is_some() {
                return Err("redis-server is not on PATH (apt-get install -y redis-server)".into());
            }
            // Straight to stderr (the test harness captures `eprintln!`): the developer sees it.
            let _ = writeln!(
                std::io::stderr(),
                "redis-server is not on PATH: this test did not run (apt-get install -y redis-server)"
            );
            return Ok(None);
        };
        let mut last = String::new();
        // Another process may take the free port before the server binds it: try a few.
        for _ in 0..5 {
            let mut server = RedisServer { binary: binary.clone(), port: free_port()?, child: None };
            match server.launch() {
                Ok(()) => return Ok(Some(server)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The URL of the server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id of the running server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn launch(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let dir = std::env::temp_dir();
        let mut child = Command::new(&self.binary)
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--protected-mode", "no", "--dir"])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("redis-server on port {port} exited at start: {status}"));
            }
            if ping(self.port) {
                self.child = Some(child);
                return Ok(());
            }
            if started.elapsed() > READY_WITHIN {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("redis-server on port {port} did not answer within {READY_WITHIN:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the server at once (SIGKILL): what a crash looks like to clients.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty: nothing was persisted).
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        let started = Instant::now();
        loop {
            match self.launch() {
                Ok(()) => return Ok(()),
                Err(e) if started.elapsed() > READY_WITHIN => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Runs one command as the default user (`ACL SETUSER …`, `HGETALL …`) and gives its answer as
    /// text: a simple or bulk string as it is, an integer in decimal, nil as `None`, an array as
    /// its elements' texts joined by newlines.
    pub fn command(&self, args: &[&str]) -> Result<Option<String>, String> {
        fn text(v: redis::Value) -> Option<String> {
            match v {
                redis::Value::Nil => None,
                redis::Value::Okay => Some("OK".into()),
                redis::Value::Int(n) => Some(n.to_string()),
                redis::Value::SimpleString(s) => Some(s),
                redis::Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                redis::Value::Array(items) | redis::Value::Set(items) => {
                    Some(items.into_iter().filter_map(text).collect::<Vec<_>>().join("\n"))
                }
                other => Some(format!("{other:?}")),
            }
        }
        let client = redis::Client::open(self.url()).map_err(|e| e.to_string())?;
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(5)).map_err(|e| e.to_string())?;
        let (name, rest) = args.split_first().ok_or("no command")?;
        let mut cmd = redis::cmd(name);
        for a in rest {
            cmd.arg(*a);
        }
        cmd.query::<redis::Value>(&mut conn).map(text).map_err(|e| e.to_string())
    }

    /// Stops (SIGSTOP) or continues (SIGCONT) the server: a server that accepts connections but
    /// answers nothing.
    pub fn signal(&self, signal: &str) -> Result<(), String> {
        let pid = self.pid().ok_or("the server is not running")?;
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .map_err(|e| format!("cannot run kill: {e}"))?;
        if status.success() { Ok(()) } else { Err(format!("kill -{signal} {pid} failed: {status}")) }
    }
}

/// Whether a server answers `PING` on the port.
fn ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL also ends a stopped server.
        self.kill();
    }
}
