//! The Verdict language server (`verdict lsp`). The only crate that speaks LSP (lsp-server +
//! lsp-types) and the home of the salsa database; the compiler stays free of protocol types.
//!
//! - [`db`]: the salsa database; source files are inputs; parse, per-policy checks, the context
//!   check and whole-file compiles are tracked queries; [`db::file_diagnostics`] gathers them.
//! - [`symbols`]: the symbol index (bundle, effects, schema, `let`s, states, externs, policies,
//!   rules, and the uses of `let`s, paths and terms, reason templates included).
//! - [`ide`]: hover, definition, references, outline, completion, formatting as plain data.
//! - [`proto`]: byte offsets ↔ UTF-16 positions, diagnostics and symbols → LSP types.
//! - [`transport`]: framed JSON-RPC over stdio that survives malformed input.
//! - [`server`]: the main loop, the worker pool, cancellation.
//! - [`workload`]: synthetic files for the reuse tests and the benchmark.

pub mod db;
pub mod ide;
pub mod proto;
pub mod server;
pub mod symbols;
pub mod transport;
pub mod workload;

/// Runs the language server on stdin/stdout until `exit`; returns the process exit code (0 after
/// `shutdown` then `exit`, 1 when `exit` comes without `shutdown` or the input ends first, 2 when
/// the stdio threads cannot start).
pub fn run_stdio() -> u8 {
    let (incoming, outgoing, threads) = match transport::stdio() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("verdict-lsp: cannot start: {e}");
            return 2;
        }
    };
    let code = server::serve(incoming, outgoing);
    threads.join();
    code
}
