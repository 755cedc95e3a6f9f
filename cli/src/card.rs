//! `verdict card`: a Decision Card → a bundle (YAML on standard output, or by OUT's extension:
//! `.yaml`/`.yml`, `.json`, `.verdict`, or a compiled `.vdc` artifact); and the card loading
//! `verdict eval` and `verdict compile` share.
//!
//! Exit codes: 0 converted, 1 refused (shape, attestation, trust), 2 unreadable input (I/O, not
//! UTF-8, not JSON, bad flags).

use crate::render;
use std::path::{Path, PathBuf};
use verdict_compiler::card::{self, CardOptions, Input, Trust};
use verdict_compiler::source::SourceFile;
use verdict_compiler::{emit, ir};

/// The trust flags: the attestation and the operator's pinned buyer key.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TrustArgs {
    /// The card's attestation (JSON: algorithm, hash_profile, signed_hash, signature, key_url, signed_at).
    #[arg(long, value_name = "A.json")]
    pub attestation: Option<PathBuf>,
    /// The buyer key URL the operator pins; the attestation must name exactly this URL.
    #[arg(long, value_name = "URL", requires = "trusted_public_key")]
    pub trusted_key_url: Option<String>,
    /// The buyer's Ed25519 public key the operator pins (64 hexadecimal digits).
    #[arg(long, value_name = "HEX", requires = "trusted_key_url")]
    pub trusted_public_key: Option<String>,
}

impl TrustArgs {
    pub fn given(&self) -> bool {
        self.attestation.is_some() || self.trusted_key_url.is_some() || self.trusted_public_key.is_some()
    }
}

/// Whether a source file is a Decision Card: trust flags were given, or it is JSON that looks like one.
pub fn is_card(file: &SourceFile, trust: &TrustArgs) -> bool {
    if trust.given() {
        return true;
    }
    if verdict_compiler::SourceKind::detect(&file.name, &file.text) != verdict_compiler::SourceKind::Json {
        return false;
    }
    serde_json::from_str::<serde_json::Value>(&file.text).is_ok_and(|v| card::looks_like_card(&v))
}

/// The bundle of a source file, or of a Decision Card (trust flags given, or JSON that looks like
/// a card) checked at `now`. Diagnostics and refusals are reported on standard error; the error is
/// the exit code: 1 refused or does not compile, 2 unreadable.
pub fn bundle_of(file: &SourceFile, trust: &TrustArgs, now: jiff::Timestamp) -> Result<ir::Bundle, u8> {
    if is_card(file, trust) {
        return load(file, trust, now);
    }
    let compiled = verdict_compiler::compile_for_use(file);
    render::eprint_all(file, &compiled.diagnostics);
    compiled.bundle.ok_or_else(|| {
        eprintln!("error: {} does not compile", file.name);
        1
    })
}

/// Reads a JSON file strictly; a syntax error is reported with its position (exit 2).
fn read_json(file: &SourceFile) -> Result<serde_json::Value, u8> {
    card::parse_strict_json(&file.text).map_err(|e| {
        let offset = u32::try_from(e.offset).unwrap_or(u32::MAX);
        let span = verdict_grammar::ast::Span { start: offset, end: offset };
        let syntax = serde_json::from_str::<serde_json::Value>(&file.text).is_err();
        let d = verdict_compiler::diagnostic::Diagnostic::error(
            if syntax {
                verdict_compiler::diagnostic::Code::Syntax
            } else {
                verdict_compiler::diagnostic::Code::CardRefused
            },
            span,
            e.message,
        );
        render::eprint_all(file, &[d]);
        // Not JSON at all is unreadable input; JSON with duplicate keys is a refusal.
        if syntax { 2 } else { 1 }
    })
}

/// Checks, verifies and compiles a card, reporting any refusal on the card or attestation text.
pub fn load(file: &SourceFile, trust: &TrustArgs, now: jiff::Timestamp) -> Result<ir::Bundle, u8> {
    let pinned = match (&trust.trusted_key_url, &trust.trusted_public_key) {
        (Some(url), Some(hex)) => match Trust::from_hex(url, hex) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("error: `--trusted-public-key`: {e}");
                return Err(2);
            }
        },
        _ => None,
    };
    let attestation_file = match &trust.attestation {
        Some(p) => Some(render::read(p)?),
        None => None,
    };
    let attestation = match &attestation_file {
        Some(f) => Some(read_json(f)?),
        None => None,
    };
    let card_value = read_json(file)?;
    let actions = vec!["use".to_owned()];
    let opts =
        CardOptions { attestation: attestation.as_ref(), trust: pinned.as_ref(), allowed_actions: Some(&actions), now };
    match card::compile(&card_value, &opts) {
        Ok(out) => Ok(out.bundle),
        Err(e) => {
            match (e.input, &attestation_file) {
                (Input::Card, _) => render::eprint_all(file, &[card::diagnostic(&e, &file.text)]),
                (Input::Attestation, Some(a)) => render::eprint_all(a, &[card::diagnostic(&e, &a.text)]),
                _ => {
                    let hint = if pinned.is_none() || attestation_file.is_none() {
                        "\n  help: give `--attestation A.json --trusted-key-url URL --trusted-public-key HEX`"
                    } else {
                        ""
                    };
                    eprintln!("error[V111]: {}: {}{hint}", file.name, e.message);
                }
            }
            eprintln!("error: {} is refused as a Decision Card", file.name);
            Err(1)
        }
    }
}

/// The form a bundle is written in, by OUT's extension (YAML when there is no OUT).
#[derive(Clone, Copy)]
enum Form {
    Yaml,
    Json,
    Verdict,
    /// A compiled `.vdc` artifact.
    Artifact,
}

fn output_form(output: Option<&Path>) -> Result<Form, u8> {
    let Some(out) = output else {
        return Ok(Form::Yaml);
    };
    let name = out.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".yaml") || name.ends_with(".yml") {
        Ok(Form::Yaml)
    } else if name.ends_with(".json") {
        Ok(Form::Json)
    } else if name.ends_with(".verdict") {
        Ok(Form::Verdict)
    } else if name.ends_with(".vdc") {
        Ok(Form::Artifact)
    } else {
        eprintln!("error: cannot tell the output form of {}: use .yaml, .yml, .json, .verdict or .vdc", out.display());
        Err(2)
    }
}

pub fn run(path: &Path, trust: &TrustArgs, output: Option<&Path>) -> u8 {
    let form = match output_form(output) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let file = match render::read(path) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let bundle = match load(&file, trust, jiff::Timestamp::now()) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let text = match form {
        Form::Yaml => emit::yaml(&emit::to_json(&bundle)),
        Form::Json => serde_json::to_string_pretty(&emit::to_json(&bundle)).unwrap_or_default() + "\n",
        Form::Verdict => emit::to_dsl(&bundle),
        Form::Artifact => return crate::compile::write(&bundle, output, crate::Emit::Artifact),
    };
    match output {
        None => match render::stdout_line(text.trim_end_matches('\n')) {
            Ok(()) => 0,
            Err(code) => code,
        },
        Some(out) => match std::fs::write(out, text) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", out.display());
                2
            }
        },
    }
}
