//! The Verdict runtime: what a service links to evaluate decisions.
//!
//! It loads compiled bundles and decides with them: [`artifact`] reads and writes `.vdc` files
//! (header, checksum, bounded decoding) and [`program::Program::verify`] checks every loaded
//! program before use; [`vm::Engine`] decides on the bytecode VM ([`bytecode`], [`vm`]) or on
//! native code from the Cranelift JIT ([`jit`], the default), with [`project`] parsing JSON
//! request contexts only as far as the bundle's paths reach and [`symbols`] interning their
//! strings. The pieces every backend shares are here too, so there is one definition of the
//! semantics: the request model and its merged-view [`request::Request::lookup`], the total
//! two-valued semantics of every atom ([`atom`]), gates, reasons and combining ([`policy`]), and
//! the decision and trace types with their JSON form ([`decision`]). The compiler's reference
//! interpreter calls exactly these functions.
//!
//! Architecture invariant: this crate depends on neither `verdict-grammar` nor `verdict-compiler`.

pub mod artifact;
pub mod atom;
pub mod bytecode;
pub mod coverage;
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
