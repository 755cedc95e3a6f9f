//! Bundles in Redis (`bundles.rs`): revisions named by their digest and never rewritten, the
//! active pointer moved by compare-and-swap (two pushers racing on one expected revision: exactly
//! one wins, every round), replica status with expiry, size limits, and the watch: a message per
//! push, a poll, and a new subscription (which is the signal for a full check) after the
//! subscription's connection was killed, after Redis restarted and after it stopped answering.

mod common;

use common::server;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::time::{Duration, Instant};
use verdict_store_redis::bundles::{
    BundleOptions, BundleSource, Conflict, Expect, Notice, PushStatus, SourceError, TooLarge, revision_of,
};
use verdict_store_redis::testing::RedisServer;

/// Far above every timeout used here: waiting longer is a hang.
const HANG: Duration = Duration::from_secs(10);

fn options(prefix: &str) -> BundleOptions {
    BundleOptions {
        prefix: prefix.into(),
        connect_timeout: Duration::from_millis(300),
        io_timeout: Duration::from_millis(300),
        ..BundleOptions::default()
    }
}

fn source(server: &RedisServer, prefix: &str) -> Result<BundleSource, String> {
    BundleSource::open(&server.url(), options(prefix)).map_err(|e| e.to_string())
}

#[test]
fn a_push_moves_the_pointer_and_revisions_are_never_rewritten() -> Result<(), String> {
    let Some(server) = server()? else { return Ok(()) };
    let s = source(&server, "imm:")?;
    let (a, b, c) = (b"bundle a".as_slice(), b"bundle b".as_slice(), b"bundle c".as_slice());
    let (ra, rb) = (revision_of(a), revision_of(b));
    assert!(ra.starts_with("sha256:") && ra.len() == 7 + 64, "{ra}");
    assert_eq!(s.active("p").map_err(|e| e.to_string())?, None);

    let first = s.push("p", a, &Expect::Nothing).map_err(|e| e.to_string())?;
    assert_eq!(
        (first.revision.as_str(), first.previous.as_deref(), first.status, first.notified),
        (ra.as_str(), None, PushStatus::Activated, 0)
    );
    assert_eq!(s.active("p").map_err(|e| e.to_string())?, Some(ra.clone()));
    assert_eq!(s.revision("p", &ra).map_err(|e| e.to_string())?.as_deref(), Some(a));

    // The same bytes again: the same revision, nothing moves.
    let again = s.push("p", a, &Expect::Any).map_err(|e| e.to_string())?;
    assert_eq!((again.status, again.previous.as_deref()), (PushStatus::Unchanged, Some(ra.as_str())));

    let second = s.push("p", b, &Expect::Revision(ra.clone())).map_err(|e| e.to_string())?;
    assert_eq!((second.status, second.previous.as_deref()), (PushStatus::Activated, Some(ra.as_str())));
    // The old revision is still there, unchanged: a rollback is a push of its bytes.
    assert_eq!(s.revision("p", &ra).map_err(|e| e.to_string())?.as_deref(), Some(a));
    let back = s.push("p", a, &Expect::Revision(rb.clone())).map_err(|e| e.to_string())?;
    assert_eq!((back.revision.as_str(), back.status), (ra.as_str(), PushStatus::Activated));

    // Stale expectations write nothing, not even the revision.
    let stale = s.push("p", c, &Expect::Revision(rb.clone()));
    let conflict = Conflict { bundle_id: "p".into(), expected: Expect::Revision(rb.clone()), active: Some(ra.clone()) };
    assert_eq!(stale, Err(SourceError::Conflict(conflict)));
    assert_eq!(
        stale.err().map(|e| e.to_string()).unwrap_or_default(),
        format!("bundle `p`: the active revision is `{ra}`, not `{rb}`")
    );
    assert_eq!(s.revision("p", &revision_of(c)).map_err(|e| e.to_string())?, None);
    assert!(matches!(s.push("p", c, &Expect::Nothing), Err(SourceError::Conflict(_))));
    let none = s.push("q", c, &Expect::Revision(ra.clone()));
    assert_eq!(
        none.err().map(|e| e.to_string()).unwrap_or_default(),
        format!("bundle `q`: the active revision is none, not `{ra}`")
    );

    // Every bundle with its active revision, sorted; `q` never got a pointer.
    s.push("a-first", b, &Expect::Any).map_err(|e| e.to_string())?;
    let actives = s.actives().map_err(|e| e.to_string())?;
    assert_eq!(actives, vec![("a-first".into(), Some(rb.clone())), ("p".into(), Some(ra.clone())), ("q".into(), None)]);

    // Each push that moved the pointer of `p` counted (a, b, then a again).
    let meta = server.command(&["HGET", &format!("imm:b:{{{}}}:m", tag("p")), "n"])?;
    assert_eq!(meta.as_deref(), Some("3"));
    Ok(())
}

/// The hash tag of a bundle id, as `keys::tag` makes it (128 bits of its SHA-256 in hex).
fn tag(id: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(id.as_bytes());
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// One pusher's round: the revision it expected and what its push gave.
type Round = (String, Result<String, SourceError>);

#[test]
fn two_pushers_racing_on_one_expected_revision_never_both_win() -> Result<(), String> {
    let Some(server) = server()? else { return Ok(()) };
    const ROUNDS: usize = 60;
    let first = source(&server, "race:")?.push("r", b"round 0", &Expect::Nothing).map_err(|e| e.to_string())?;
    let barrier = Arc::new(Barrier::new(2));
    let pusher = |who: usize| {
        let (barrier, url) = (barrier.clone(), server.url());
        std::thread::spawn(move || -> Result<Vec<Round>, String> {
            let s = BundleSource::open(&url, options("race:")).map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            for round in 1..=ROUNDS {
                // Both read the same active revision, then both push against it.
                let expected = s.active("r").map_err(|e| e.to_string())?.ok_or("no active revision")?;
                barrier.wait();
                let bytes = format!("round {round} by pusher {who}");
                let pushed = s.push("r", bytes.as_bytes(), &Expect::Revision(expected.clone()));
                out.push((expected, pushed.map(|p| p.revision)));
                barrier.wait();
            }
            Ok(out)
        })
    };
    let (one, two) = (pusher(1), pusher(2));
    let one = one.join().map_err(|_| "pusher 1 panicked")??;
    let two = two.join().map_err(|_| "pusher 2 panicked")??;
    let mut previous = first.revision;
    for (round, ((e1, p1), (e2, p2))) in one.into_iter().zip(two).enumerate() {
        assert_eq!((&e1, &e2), (&previous, &previous), "round {round}: both expected the active revision");
        let winner = match (p1, p2) {
            (Ok(w), Err(SourceError::Conflict(c))) | (Err(SourceError::Conflict(c)), Ok(w)) => {
                // The loser is told what won.
                assert_eq!(c.active.as_ref(), Some(&w), "round {round}");
                w
            }
            other => return Err(format!("round {round}: exactly one push must win, got {other:?}")),
        };
        previous = winner;
    }
    assert_eq!(source(&server, "race:")?.active("r").map_err(|e| e.to_string())?, Some(previous));
    Ok(())
}

#[test]
fn status_keys_expire_and_sizes_are_bounded() -> Result<(), String> {
    let Some(server) = server()? else { return Ok(()) };
    let s = source(&server, "st:")?;
    s.set_status("replica-1", r#"{"ok":true}"#, Duration::from_millis(300)).map_err(|e| e.to_string())?;
    assert_eq!(s.status("replica-1").map_err(|e| e.to_string())?.as_deref(), Some(r#"{"ok":true}"#));
    assert_eq!(s.status_key("replica-1"), "st:replica:replica-1");
    let until = Instant::now() + HANG;
    while s.status("replica-1").map_err(|e| e.to_string())?.is_some() {
        if Instant::now() > until {
            return Err("the status key did not expire".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let small = BundleSource::open(&server.url(), BundleOptions { max_bytes: 10, ..options("st:") })
        .map_err(|e| e.to_string())?;
    let big = b"eleven bytes";
    let refused = TooLarge { bundle_id: "b".into(), bytes: big.len(), limit: 10 };
    assert_eq!(small.push("b", big, &Expect::Any), Err(SourceError::TooLarge(refused.clone())));
    // Written by hand, bigger than the reader's limit: refused without being read.
    s.push("b", big, &Expect::Any).map_err(|e| e.to_string())?;
    assert_eq!(small.revision("b", &revision_of(big)), Err(SourceError::TooLarge(refused)));
    assert_eq!(s.revision("b", &revision_of(big)).map_err(|e| e.to_string())?.as_deref(), Some(big.as_slice()));
    Ok(())
}

/// A watch on its own thread, its notices through a channel; stopped and joined on drop.
struct Watch {
    stop: Arc<AtomicBool>,
    notices: mpsc::Receiver<Notice>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    fn start(server: &RedisServer, prefix: &str, every: Duration) -> Result<Watch, String> {
        let s = source(server, prefix)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, notices) = mpsc::channel();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            s.watch(every, &flag, |n| {
                let _ = tx.send(n);
            });
        });
        Ok(Watch { stop, notices, thread: Some(thread) })
    }

    /// The next notice that `want` accepts (others are skipped), within the hang guard.
    fn expect(&self, what: &str, want: impl Fn(&Notice) -> bool) -> Result<Notice, String> {
        let until = Instant::now() + HANG;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.notices.recv_timeout(left) {
                Ok(n) if want(&n) => return Ok(n),
                Ok(_) => {}
                Err(_) => return Err(format!("no {what} notice within {HANG:?}")),
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_watch_reports_pushes_and_subscribes_again_after_every_loss() -> Result<(), String> {
    let Some(mut server) = server()? else { return Ok(()) };
    // No poll during the test: only messages and (re)subscriptions are seen.
    let watch = Watch::start(&server, "w:", Duration::from_secs(3600))?;
    watch.expect("subscribed", |n| *n == Notice::Subscribed)?;
    let s = source(&server, "w:")?;
    let pushed = s.push("x", b"one", &Expect::Any).map_err(|e| e.to_string())?;
    assert_eq!(pushed.notified, 1, "the watch received the announcement");
    assert_eq!(watch.expect("changed", |n| !matches!(n, Notice::Poll))?, Notice::Changed("x".into()));
    // An unchanged push announces nothing; the next move does.
    assert_eq!(s.push("x", b"one", &Expect::Any).map_err(|e| e.to_string())?.notified, 0);
    s.push("y", b"two", &Expect::Any).map_err(|e| e.to_string())?;
    assert_eq!(watch.expect("changed", |n| !matches!(n, Notice::Poll))?, Notice::Changed("y".into()));

    // The subscription's connection killed: lost, then subscribed again.
    server.command(&["CLIENT", "KILL", "TYPE", "pubsub"])?;
    assert!(matches!(watch.expect("lost", |n| !matches!(n, Notice::Poll))?, Notice::Lost(_)));
    watch.expect("subscribed", |n| *n == Notice::Subscribed)?;

    // Redis restarted: lost (naming the server), then subscribed again once it is back.
    server.restart()?;
    match watch.expect("lost", |n| !matches!(n, Notice::Poll))? {
        Notice::Lost(SourceError::Unavailable(m)) => {
            assert!(m.contains(&format!("127.0.0.1:{}", server.port())), "{m}");
        }
        other => return Err(format!("expected a lost subscription, got {other:?}")),
    }
    watch.expect("subscribed", |n| *n == Notice::Subscribed)?;
    s.push("x", b"three", &Expect::Any).map_err(|e| e.to_string())?;
    assert_eq!(watch.expect("changed", |n| matches!(n, Notice::Changed(_)))?, Notice::Changed("x".into()));
    Ok(())
}

#[test]
fn a_watch_polls_and_notices_a_server_that_stopped_answering() -> Result<(), String> {
    let Some(server) = server()? else { return Ok(()) };
    let watch = Watch::start(&server, "p:", Duration::from_millis(100))?;
    watch.expect("subscribed", |n| *n == Notice::Subscribed)?;
    watch.expect("poll", |n| *n == Notice::Poll)?;
    watch.expect("poll", |n| *n == Notice::Poll)?;
    // Stopped (SIGSTOP): the connection stays open, only the poll's PING can tell.
    server.signal("STOP")?;
    let lost = watch.expect("lost", |n| matches!(n, Notice::Lost(_)));
    server.signal("CONT")?;
    match lost? {
        Notice::Lost(SourceError::Unavailable(m)) => assert!(m.contains("did not answer within 300 ms"), "{m}"),
        other => return Err(format!("expected a lost subscription, got {other:?}")),
    }
    watch.expect("subscribed", |n| *n == Notice::Subscribed)?;
    Ok(())
}
