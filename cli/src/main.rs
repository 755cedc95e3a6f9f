//! `verdict`: the command-line front of the toolchain. The only crate that parses flags.
//!
//! Exit codes follow TOOLCHAIN.md: 0 success (for `eval`: allow or not_applicable), 1 findings
//! (errors, a non-allow decision, unformatted files, differing bundles), 2 unreadable or invalid
//! input.

mod bench;
mod card;
mod check;
mod compile;
mod convert;
mod diff;
mod eval;
mod fmt;
mod keys;
mod load;
mod policy_test;
mod push;
mod render;
mod replay;
mod schema;
mod serve;
mod store;

use clap::{Parser, Subcommand, ValueEnum};

/// mimalloc: the service allocates a few short-lived objects per request (JSON values, decision
/// strings) from several threads, which glibc's allocator serves noticeably slower.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "verdict", version, about = "Compile, check and evaluate Verdict policy bundles")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DenyLevel {
    Warnings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// Cranelift-compiled native code (falls back to the VM where unavailable, and says so).
    Jit,
    /// The bytecode VM.
    Vm,
    /// The reference interpreter over the IR.
    Interp,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Emit {
    Artifact,
    Asm,
}

#[derive(Subcommand)]
enum Command {
    /// Parse, type-check and analyse bundles; print diagnostics.
    Check {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
        /// Treat warnings as errors for the exit code.
        #[arg(long, value_enum)]
        deny: Option<DenyLevel>,
    },
    /// Evaluate a bundle on one request context, or on every line of `--contexts`.
    Eval {
        source: PathBuf,
        /// The request context (a JSON file; `-` for standard input).
        context: Option<PathBuf>,
        /// A JSON Lines file of request contexts: one result per line.
        #[arg(long, conflicts_with = "context")]
        contexts: Option<PathBuf>,
        /// A stateful run: a JSON Lines file of `{"now", "context", "then"}` events, each decided
        /// at its time against the store, then its holds committed (default), released or left.
        #[arg(long, conflicts_with_all = ["context", "contexts"])]
        events: Option<PathBuf>,
        /// The state store of a stateful run: `memory` (the default: empty at the start) or
        /// `redis://HOST:PORT[/DB]` (shared with every process on that Redis; the run's decision
        /// ids are `e<line>`, so start each run on an empty database).
        #[arg(long, value_name = "STORE")]
        store: Option<String>,
        /// Bind externs to mocks: a JSON file of `{"name": RESULT}` or `{"name": {"error": "msg"}}`;
        /// unbound externs fail closed.
        #[arg(long, value_name = "FILE.json")]
        externs: Option<PathBuf>,
        /// Include the evaluation trace.
        #[arg(long)]
        trace: bool,
        /// Also list every rule whose condition holds (`matches`) and count the rule conditions
        /// evaluated (`rules_evaluated`).
        #[arg(long)]
        exhaustive: bool,
        #[arg(long, value_enum, default_value = "jit")]
        backend: Backend,
        /// Evaluate as of this RFC 3339 time instead of now (a card's attestation is checked
        /// against it too).
        #[arg(long)]
        now: Option<String>,
        /// With these, SOURCE may be a Decision Card.
        #[command(flatten)]
        trust: card::TrustArgs,
        /// Accept only artifacts signed by this Ed25519 public key (a PEM `PUBLIC KEY` or base64
        /// file; repeatable; also `VERDICT_TRUSTED_KEYS`). Source bundles are refused then.
        #[arg(long = "trusted-key", value_name = "PUBKEY")]
        trusted_keys: Vec<PathBuf>,
    },
    /// Convert a Decision Card to a bundle: YAML on standard output, or OUT by its extension.
    Card {
        card: PathBuf,
        #[command(flatten)]
        trust: card::TrustArgs,
        /// Where to write the bundle (.yaml, .yml, .json, .verdict, or .vdc for an artifact).
        #[arg(short, long, value_name = "OUT")]
        output: Option<PathBuf>,
    },
    /// Compile a bundle ahead of time to a `.vdc` artifact (or print its disassembly). A
    /// Decision Card is compiled too, verified with the trust flags.
    Compile {
        source: PathBuf,
        #[command(flatten)]
        trust: card::TrustArgs,
        /// Where to write (`-` for standard output; without it the disassembly goes there).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// What to write: the artifact, or its disassembly.
        #[arg(long, value_enum, default_value = "artifact")]
        emit: Emit,
        /// Sign the artifact with this Ed25519 key (PKCS#8 PEM, as `openssl genpkey -algorithm
        /// ed25519` writes, or a base64 32-byte seed).
        #[arg(long, value_name = "KEYFILE")]
        sign: Option<PathBuf>,
    },
    /// Convert a bundle between forms, by the output's extension (.verdict, .yaml/.yml, .json).
    Convert {
        input: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Change impact: per effect transition, a request and the rules that decide it, or
    /// `equivalent`.
    Diff {
        old: PathBuf,
        new: PathBuf,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Change impact on real traffic: every evaluation an audit log of `verdict serve` recorded,
    /// decided again on a candidate bundle (source or artifact); the effect transitions with
    /// counts and example correlation ids. Exit 0 no change, 1 changes, 2 bad input.
    Replay {
        /// An audit log written by `verdict serve` (JSON Lines).
        audit: PathBuf,
        candidate: PathBuf,
        /// Replay the evaluations of this bundle id [default: the candidate's id].
        #[arg(long, value_name = "ID")]
        bundle: Option<String>,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Run the policy decision point HTTP service.
    Serve(serve::ServeArgs),
    /// Publish a bundle to Redis as a new revision and make it active for every `verdict serve
    /// --bundles-from` replica (compiled to an artifact first; compare-and-swap with `--expect`).
    Push(push::PushArgs),
    /// Rewrite `.verdict` files in canonical layout.
    Fmt {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Only report files that are not formatted.
        #[arg(long)]
        check: bool,
    },
    /// Run the language server on stdin/stdout (for editors).
    Lsp,
    /// Run policy test files (`*.test.yaml`): each case's decision against its expectations,
    /// with coverage and a suggested case for every rule no case reaches.
    Test {
        /// Test files, or folders searched for `*.test.yaml`, `*.test.yml` and `*.test.json`
        /// (default: the current folder).
        paths: Vec<PathBuf>,
        /// Report coverage: rules that decided in some case, atoms seen true and false, and a
        /// request for every rule no case reaches.
        #[arg(long)]
        coverage: bool,
        /// Fail (exit 1) when the rule coverage, in percent, is below this (implies `--coverage`).
        #[arg(long, value_name = "PCT")]
        min_coverage: Option<f64>,
        #[arg(long, value_enum, default_value = "human")]
        format: policy_test::TestFormat,
    },
    /// Measure decisions per second and latency percentiles of a bundle on given requests, per
    /// backend.
    Bench {
        source: PathBuf,
        /// A JSON Lines file of request contexts (or of objects with a `context`, as in
        /// `cases.jsonl`), decided in order, round and round.
        contexts: PathBuf,
        /// The backends to measure (repeatable) [default: jit, vm, and interp for a source].
        #[arg(long, value_enum)]
        backend: Vec<Backend>,
        /// How long to measure each backend (`5s`, `500ms`, `1m`, or seconds).
        #[arg(long, default_value = "5s")]
        duration: String,
        /// What each timed decision starts from.
        #[arg(long, value_enum, default_value = "json")]
        input: bench::Input,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
        /// Bind externs to mocks (as `verdict eval --externs`).
        #[arg(long, value_name = "FILE.json")]
        externs: Option<PathBuf>,
        /// Evaluate as of this RFC 3339 time instead of now.
        #[arg(long)]
        now: Option<String>,
        /// Compare with a report of `verdict bench --format json`: exit 1 when the median or p99
        /// latency of a backend is worse by more than `--max-regress`.
        #[arg(long, value_name = "BASELINE.json")]
        compare: Option<PathBuf>,
        /// The regression allowed by `--compare`, in percent.
        #[arg(long, value_name = "PCT", default_value_t = 10.0)]
        max_regress: f64,
    },
    /// Print the JSON Schema (2020-12) of a contract (the files under `contracts/`).
    Schema {
        #[arg(value_enum)]
        contract: schema::Contract,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let code = match cli.command {
        Command::Check { paths, format, deny } => check::run(&paths, format, deny.is_some()),
        Command::Eval {
            source,
            context,
            contexts,
            events,
            store,
            externs,
            trace,
            exhaustive,
            backend,
            now,
            trust,
            trusted_keys,
        } => {
            let opts = eval::Options {
                context: context.as_deref(),
                contexts: contexts.as_deref(),
                events: events.as_deref(),
                store: store.as_deref(),
                externs: externs.as_deref(),
                trace,
                exhaustive,
                backend,
                now: now.as_deref(),
                trusted_keys: &trusted_keys,
            };
            eval::run(&source, &opts, &trust)
        }
        Command::Compile { source, trust, output, emit, sign } => {
            compile::run(&source, &trust, output.as_deref(), emit, sign.as_deref())
        }
        Command::Card { card, trust, output } => card::run(&card, &trust, output.as_deref()),
        Command::Convert { input, output } => convert::run(&input, &output),
        Command::Fmt { files, check } => fmt::run(&files, check),
        Command::Diff { old, new, format } => diff::run(&old, &new, format),
        Command::Replay { audit, candidate, bundle, format } => {
            replay::run(&audit, &candidate, bundle.as_deref(), format)
        }
        Command::Serve(args) => serve::run(args),
        Command::Push(args) => push::run(&args),
        Command::Lsp => verdict_lsp::run_stdio(),
        Command::Test { paths, coverage, min_coverage, format } => {
            policy_test::run(&policy_test::Options { paths: &paths, coverage, min_coverage, format })
        }
        Command::Schema { contract } => schema::run(contract),
        Command::Bench { source, contexts, backend, duration, input, format, externs, now, compare, max_regress } => {
            bench::run(&bench::Options {
                source: &source,
                contexts: &contexts,
                backends: &backend,
                duration: &duration,
                input,
                format,
                externs: externs.as_deref(),
                now: now.as_deref(),
                compare: compare.as_deref(),
                max_regress,
            })
        }
    };
    ExitCode::from(code)
}
