//! The Verdict runtime: what a service links to evaluate decisions.
//!
//! Today it holds the pieces every backend shares — the request model and its merged-view
//! [`request::Request::lookup`], the total two-valued semantics of every atom ([`atom`]), and the
//! decision and trace types with their JSON form ([`decision`]). The compiler's reference
//! interpreter calls exactly these functions, so there is one definition of the semantics.
//!
//! Architecture invariant: this crate depends on neither `verdict-grammar` nor `verdict-compiler`.

pub mod artifact;
pub mod atom;
pub mod bytecode;
pub mod decision;
pub mod env;
pub mod externs;
pub mod jit;
pub mod json;
pub mod number;
pub mod policy;
pub mod program;
pub mod project;
pub mod pyrepr;
pub mod request;
pub mod signature;
pub mod state;
pub mod symbols;
pub mod term;
pub mod value;
pub mod vm;
