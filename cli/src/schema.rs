//! `verdict schema`: prints the JSON Schema (2020-12) of a contract. The files under
//! `contracts/` are the single source: they are compiled into the binary as they are.

use crate::render;

/// The contracts, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Contract {
    /// A request context (the body of an evaluation).
    Request,
    /// An evaluation result: decision, policy decisions, trace, exhaustive matches, holds.
    Decision,
    /// One line of the service's audit log.
    AuditEvent,
    /// A YAML/JSON bundle.
    Bundle,
    /// A `*.test.yaml` policy test file.
    Test,
}

impl Contract {
    /// The schema's text, as committed under `contracts/`.
    pub fn text(self) -> &'static str {
        match self {
            Contract::Request => include_str!("../../contracts/request.schema.json"),
            Contract::Decision => include_str!("../../contracts/decision.schema.json"),
            Contract::AuditEvent => include_str!("../../contracts/audit-event.schema.json"),
            Contract::Bundle => include_str!("../../contracts/bundle.schema.json"),
            Contract::Test => include_str!("../../contracts/test.schema.json"),
        }
    }
}

pub fn run(contract: Contract) -> u8 {
    // The file ends with a newline; `stdout_line` adds one.
    match render::stdout_line(contract.text().trim_end_matches('\n')) {
        Ok(()) => 0,
        Err(code) => code,
    }
}
