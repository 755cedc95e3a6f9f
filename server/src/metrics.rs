//! Prometheus metrics in the text exposition format (0.0.4), kept in atomics: decisions by
//! effect, an evaluation latency histogram, bundles loaded, reload failures, bundles from Redis,
//! connections (open, over the limit, dropped for not reading) and audit write failures.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
pub const BUCKETS: [f64; 14] = [
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 1.0,
];

#[derive(Debug, Default)]
pub struct Metrics {
    decisions: RwLock<BTreeMap<String, Arc<AtomicU64>>>,
    /// Per-bucket counts (not cumulative); the last slot is `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
    reload_failures: AtomicU64,
    /// Bundle revisions from Redis activated, refused, and whether Redis answers (see `source`).
    source_activations: AtomicU64,
    source_compilations: AtomicU64,
    source_rejections: AtomicU64,
    source_connected: AtomicU64,
    connections_open: AtomicU64,
    connections_over_limit: AtomicU64,
    write_timeouts: AtomicU64,
    audit_failures: AtomicU64,
    shadow_evaluations: AtomicU64,
    shadow_mismatches: AtomicU64,
    shadow_dropped: AtomicU64,
}

/// Counts a connection as open while it lives.
#[derive(Debug)]
pub struct OpenConnection<'m>(&'m Metrics);

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Writes the `# HELP` and `# TYPE` lines of a metric (its series follow).
pub(crate) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Writes a metric of one series: its `# HELP` and `# TYPE` lines, then its value.
pub(crate) fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    /// Counts one decision of `effect` that took `elapsed`.
    pub fn observe(&self, effect: &str, elapsed: Duration) {
        let counter = self.decisions.read().ok().and_then(|m| m.get(effect).cloned());
        let counter = match counter {
            Some(c) => c,
            None => match self.decisions.write() {
                Ok(mut m) => m.entry(effect.to_owned()).or_default().clone(),
                Err(_) => return,
            },
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let slot = BUCKETS.iter().position(|b| secs <= *b).unwrap_or(BUCKETS.len());
        if let Some(b) = self.buckets.get(slot) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_nanos.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn reload_failed(&self) {
        self.reload_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A bundle revision from Redis now serves.
    pub fn source_activated(&self) {
        self.source_activations.fetch_add(1, Ordering::Relaxed);
    }

    /// A bundle revision from Redis was read and compiled (or loaded as an artifact).
    pub fn source_compiled(&self) {
        self.source_compilations.fetch_add(1, Ordering::Relaxed);
    }

    /// A bundle revision from Redis was refused (it does not verify or load).
    pub fn source_rejected(&self) {
        self.source_rejections.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the bundle source (Redis) answered last time it was asked.
    pub fn source_connected(&self, up: bool) {
        self.source_connected.store(u64::from(up), Ordering::Relaxed);
    }

    /// Counts a connection served (within the limit) until the guard is dropped.
    pub fn connection_opened(&self) -> OpenConnection<'_> {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self)
    }

    /// A connection arrived while the limit was reached (it went to the overflow lane).
    pub fn connection_over_limit(&self) {
        self.connections_over_limit.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection was dropped because its client did not take a response in time.
    pub fn write_timed_out(&self) {
        self.write_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// An answer was withheld (503) because its audit line could not be written.
    pub fn audit_failed(&self) {
        self.audit_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A shadow candidate was evaluated; `agreed`: it decided the live decision's effect.
    pub fn shadow_evaluated(&self, agreed: bool) {
        self.shadow_evaluations.fetch_add(1, Ordering::Relaxed);
        if !agreed {
            self.shadow_mismatches.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A shadow evaluation was dropped because its queue was full.
    pub fn shadow_dropped(&self) {
        self.shadow_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text.
    pub fn render(&self, bundles: usize) -> String {
        let mut out = String::new();
        header(&mut out, "verdict_decisions_total", "counter", "Decisions made, by effect (or not_applicable).");
        if let Ok(m) = self.decisions.read() {
            for (effect, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "verdict_decisions_total{{effect=\"{}\"}} {}",
                    escape(effect),
                    n.load(Ordering::Relaxed)
                );
            }
        }
        header(
            &mut out,
            "verdict_evaluation_duration_seconds",
            "histogram",
            "Time from a parsed request context to its decision serialized.",
        );
        let mut cumulative = 0u64;
        for (i, slot) in self.buckets.iter().enumerate() {
            cumulative += slot.load(Ordering::Relaxed);
            let le = BUCKETS.get(i).map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(out, "verdict_evaluation_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "verdict_evaluation_duration_seconds_sum {sum}");
        let _ = writeln!(out, "verdict_evaluation_duration_seconds_count {}", self.count.load(Ordering::Relaxed));
        metric(&mut out, "verdict_bundles", "gauge", "Bundles loaded.", bundles);
        let counters = [
            (
                "verdict_bundle_reload_failures_total",
                "counter",
                "Bundle files that failed to compile on (re)load.",
                &self.reload_failures,
            ),
            (
                "verdict_bundle_source_activations_total",
                "counter",
                "Bundle revisions from Redis (--bundles-from) activated.",
                &self.source_activations,
            ),
            (
                "verdict_bundle_source_compilations_total",
                "counter",
                "Bundle revisions from Redis (--bundles-from) read and compiled (or loaded as artifacts), whether they activated or not.",
                &self.source_compilations,
            ),
            (
                "verdict_bundle_source_rejections_total",
                "counter",
                "Bundle revisions from Redis refused (digest, signature, compilation or bundle id); the previous version kept serving.",
                &self.source_rejections,
            ),
            (
                "verdict_bundle_source_connected",
                "gauge",
                "1 when Redis (--bundles-from) answered the last check, else 0.",
                &self.source_connected,
            ),
            (
                "verdict_connections_open",
                "gauge",
                "Connections being served (within the limit).",
                &self.connections_open,
            ),
            (
                "verdict_connections_over_limit_total",
                "counter",
                "Connections that arrived at the limit (answered on the overflow lane or closed).",
                &self.connections_over_limit,
            ),
            (
                "verdict_connection_write_timeouts_total",
                "counter",
                "Connections dropped because the client did not take a response within the write timeout.",
                &self.write_timeouts,
            ),
            (
                "verdict_audit_write_failures_total",
                "counter",
                "Answers withheld (503) because their audit line could not be written.",
                &self.audit_failures,
            ),
            (
                "verdict_shadow_evaluations_total",
                "counter",
                "Shadow candidates evaluated beside live decisions.",
                &self.shadow_evaluations,
            ),
            (
                "verdict_shadow_mismatches_total",
                "counter",
                "Shadow candidates that decided another effect than the live decision.",
                &self.shadow_mismatches,
            ),
            (
                "verdict_shadow_dropped_total",
                "counter",
                "Shadow evaluations dropped because their queue was full.",
                &self.shadow_dropped,
            ),
        ];
        for (name, kind, help, value) in counters {
            metric(&mut out, name, kind, help, value.load(Ordering::Relaxed));
        }
        out
    }
}
