//! The Cranelift JIT: a verified program's condition segments compiled to native functions.
//!
//! Every rule condition and every definition becomes one native function
//! `extern "C" fn(env, syms) -> u8` (1 when it holds). Control flow (`and`/`or` short-circuits,
//! `not`, definition calls) is native. Atoms that compare a path with strings, booleans or null
//! (`==`, `!=`, `in`, `not in`, `exists`, `missing`: [`crate::symbols::fast_atom`]) are native
//! too: integer compares on the path's *symbol*, read from the request's symbol table `syms`
//! (one `u32` per path, filled by the engine before the call for every path in
//! [`JitCode::native_paths`]). Every other atom goes through the host helper [`h_atom`], which
//! calls back into the engine's shared atom evaluation (caches, constant sets, regexes). Traced
//! evaluations do not run native code: they run the same program's bytecode on the VM, which
//! records every atom. The differential tests hold the JIT to the interpreter.
//!
//! # Safety
//! This is the only module with `unsafe` code. Its invariants:
//! - Native code is generated only from programs that passed [`Program::verify`]: every jump is
//!   forward and in range, definition calls are acyclic, so every call returns.
//! - The only function native code calls (besides other functions of the same module) is
//!   [`h_atom`], through an address constant with the exact signature it was declared with.
//! - `env` is a pointer to a `&mut dyn Host` that [`JitCode::holds`] creates on its stack and
//!   that outlives the native call; native code passes it through untouched.
//! - `syms` points at a `&[u32]` that [`JitCode::holds`] borrows for the whole call and whose
//!   length it checks to be the program's path count; native code only reads it, at path ids
//!   below that count (checked when compiling).
//! - [`h_atom`] never unwinds: a panic in the host is caught and read as `false`.
//! - The module's memory is freed only when the [`JitCode`] drops, and no function pointer
//!   escapes it (they are private and only called through `&self`).

#![allow(unsafe_code)]

use crate::bytecode::Op;
use crate::program::Program;
use crate::symbols::{self, Symbols, Test};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{AbiParam, InstBuilder, MemFlagsData, UserFuncName, Value, types};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module, default_libcall_names};
use std::collections::{BTreeSet, HashMap};
use std::ffi::c_void;
use std::panic::AssertUnwindSafe;

/// What native code calls back into: the engine's evaluation of one request.
pub trait Host {
    /// Evaluates an atom that is not compiled natively: `(atom, site) -> holds`.
    fn atom(&mut self, atom: u32, site: u32) -> bool;
}

type CondFn = unsafe extern "C" fn(*mut c_void, *const u32) -> u8;

/// The host helper for atoms. Never unwinds.
extern "C" fn h_atom(env: *mut c_void, atom: u32, site: u32) -> u8 {
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `env` is the pointer `JitCode::holds` made from a live `&mut &mut dyn Host`
        // that outlives this call (see the module's safety invariants).
        let host = unsafe { &mut *env.cast::<&mut dyn Host>() };
        host.atom(atom, site)
    }));
    u8::from(matches!(result, Ok(true)))
}

/// Owns the JIT module and frees its memory on drop.
struct Code(Option<JITModule>);

// SAFETY: after `finalize_definitions` the module is only touched again by `Drop`, which has
// exclusive access; the finished code is immutable and may run on any thread.
unsafe impl Send for Code {}
// SAFETY: as above: no method reads or writes the module through a shared reference.
unsafe impl Sync for Code {}

impl Drop for Code {
    fn drop(&mut self) {
        if let Some(module) = self.0.take() {
            // SAFETY: the `JitCode` that owns this is being dropped, so no function pointer of
            // the module can be called any more (they never leave `JitCode`).
            unsafe { module.free_memory() };
        }
    }
}

/// Native condition functions of one program.
pub struct JitCode {
    /// `rules[policy][rule]`.
    rules: Vec<Vec<CondFn>>,
    /// The program's path count: the length of every symbol table passed to native code.
    paths: usize,
    /// Atoms compiled natively, out of all the program's atoms.
    native_atoms: usize,
    /// The paths native atoms read (sorted, distinct): their symbols must be resolved.
    native_paths: Vec<u32>,
    _code: Code,
}

impl std::fmt::Debug for JitCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JitCode({} policies)", self.rules.len())
    }
}

/// Why a program was not compiled to native code (the engine falls back to the VM).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JitError {
    /// Cranelift does not support this host (or its settings were refused).
    #[error("JIT unavailable: unsupported host: {message}")]
    Host { message: String },
    /// A condition segment could not be taken from the code.
    #[error("JIT unavailable: {0}")]
    Segment(#[from] crate::program::VerifyError),
    /// Code generation or linking failed.
    #[error("JIT unavailable: code generation failed: {message}")]
    Codegen { message: String },
}

fn err(e: impl std::fmt::Display) -> JitError {
    JitError::Codegen { message: e.to_string() }
}

fn host_err(e: impl std::fmt::Display) -> JitError {
    JitError::Host { message: e.to_string() }
}

/// Native code for an atom that symbols decide: the path's symbol from the table, compared.
fn native_test(b: &mut FunctionBuilder<'_>, syms: Value, path: u32, test: &Test) -> Value {
    let slot = b.ins().iadd_imm_u(syms, i64::from(path) * 4);
    let s = b.ins().load(types::I32, MemFlagsData::trusted(), slot, 0);
    let eq = |b: &mut FunctionBuilder<'_>, k: u32| b.ins().icmp_imm_u(IntCC::Equal, s, i64::from(k));
    let ne = |b: &mut FunctionBuilder<'_>, k: u32| b.ins().icmp_imm_u(IntCC::NotEqual, s, i64::from(k));
    match test {
        Test::Eq(k) => eq(b, *k),
        Test::Ne(k) => {
            let present = ne(b, symbols::MISSING);
            let other = ne(b, *k);
            b.ins().band(present, other)
        }
        Test::In(ks) => {
            let mut acc = b.ins().iconst(types::I8, 0);
            for k in ks {
                let hit = eq(b, *k);
                acc = b.ins().bor(acc, hit);
            }
            acc
        }
        Test::NotIn(ks) => {
            let mut acc = ne(b, symbols::MISSING);
            for k in ks {
                let miss = ne(b, *k);
                acc = b.ins().band(acc, miss);
            }
            acc
        }
        Test::Exists => ne(b, symbols::MISSING),
        Test::Missing => eq(b, symbols::MISSING),
    }
}

impl JitCode {
    /// Compiles every rule and definition of a verified program; `symbols` are the program's
    /// (the same table the engine resolves request values with).
    pub fn compile(p: &Program, symbols: &Symbols) -> Result<JitCode, JitError> {
        let fast: Vec<Option<(u32, Test)>> = p
            .atoms
            .iter()
            .map(|a| symbols::fast_atom(a, p, symbols).filter(|(path, _)| (*path as usize) < p.paths.len()))
            .collect();
        let native_atoms = fast.iter().filter(|f| f.is_some()).count();
        let native_paths: Vec<u32> =
            fast.iter().flatten().map(|(path, _)| *path).collect::<BTreeSet<u32>>().into_iter().collect();
        let mut flags = settings::builder();
        flags.set("use_colocated_libcalls", "false").map_err(host_err)?;
        flags.set("is_pic", "false").map_err(host_err)?;
        flags.set("opt_level", "speed").map_err(host_err)?;
        let isa =
            cranelift_native::builder().map_err(host_err)?.finish(settings::Flags::new(flags)).map_err(host_err)?;
        let mut module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
        let ptr = module.target_config().pointer_type();
        let call_conv = module.isa().default_call_conv();

        let mut cond_sig = module.make_signature();
        cond_sig.params.push(AbiParam::new(ptr));
        cond_sig.params.push(AbiParam::new(ptr));
        cond_sig.returns.push(AbiParam::new(types::I8));
        let mut helper_sig = cranelift_codegen::ir::Signature::new(call_conv);
        helper_sig.params.push(AbiParam::new(ptr));
        helper_sig.params.push(AbiParam::new(types::I32));
        helper_sig.params.push(AbiParam::new(types::I32));
        helper_sig.returns.push(AbiParam::new(types::I8));

        let mut def_ids = Vec::with_capacity(p.defs.len());
        for i in 0..p.defs.len() {
            def_ids.push(module.declare_function(&format!("d{i}"), Linkage::Local, &cond_sig).map_err(err)?);
        }
        let mut rule_ids: Vec<Vec<FuncId>> = Vec::with_capacity(p.policies.len());
        for (pi, pol) in p.policies.iter().enumerate() {
            let mut ids = Vec::with_capacity(pol.rules.len());
            for ri in 0..pol.rules.len() {
                ids.push(module.declare_function(&format!("p{pi}r{ri}"), Linkage::Local, &cond_sig).map_err(err)?);
            }
            rule_ids.push(ids);
        }

        let mut ctx = module.make_context();
        let mut fctx = FunctionBuilderContext::new();
        let frontend_config = module.target_config();
        let mut define = |module: &mut JITModule, id: FuncId, entry: u32| -> Result<(), JitError> {
            let ops = crate::program::segment(&p.code, entry)?;
            ctx.func.signature = cond_sig.clone();
            ctx.func.name = UserFuncName::user(0, id.as_u32());
            {
                let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
                let helper_ref = b.import_signature(helper_sig.clone());
                let f = b.declare_var(types::I8);
                let start = b.create_block();
                b.append_block_params_for_function_params(start);
                b.switch_to_block(start);
                let env = *b.block_params(start).first().ok_or_else(|| err("no env parameter"))?;
                let syms = *b.block_params(start).get(1).ok_or_else(|| err("no syms parameter"))?;
                let zero = b.ins().iconst(types::I8, 0);
                b.def_var(f, zero);
                // A block at every jump target and after every conditional jump.
                let mut starts: BTreeSet<usize> = BTreeSet::new();
                for (i, (_, op)) in ops.iter().enumerate() {
                    if let Op::JumpIfFalse { target } | Op::JumpIfTrue { target } = op {
                        starts.insert(*target as usize);
                        if let Some((next_pc, _)) = ops.get(i + 1) {
                            starts.insert(*next_pc);
                        }
                    }
                }
                let blocks: HashMap<usize, cranelift_codegen::ir::Block> =
                    starts.iter().map(|pc| (*pc, b.create_block())).collect();
                let block_at = |pc: usize| blocks.get(&pc).copied().ok_or_else(|| err(format!("no block at {pc}")));
                let mut open = true;
                for (i, (pc, op)) in ops.iter().enumerate() {
                    if i > 0
                        && let Some(&blk) = blocks.get(pc)
                    {
                        if open {
                            b.ins().jump(blk, &[]);
                        }
                        b.switch_to_block(blk);
                        open = true;
                    }
                    if !open {
                        continue; // unreachable until the next block
                    }
                    let next_pc = ops.get(i + 1).map(|(n, _)| *n);
                    match *op {
                        Op::Atom { atom, site } => {
                            let v = match fast.get(atom as usize) {
                                Some(Some((path, test))) => native_test(&mut b, syms, *path, test),
                                _ => {
                                    let addr = b.ins().iconst(ptr, h_atom as *const () as usize as i64);
                                    let a = b.ins().iconst(types::I32, i64::from(atom));
                                    let s = b.ins().iconst(types::I32, i64::from(site));
                                    let call = b.ins().call_indirect(helper_ref, addr, &[env, a, s]);
                                    *b.inst_results(call).first().ok_or_else(|| err("helper returns nothing"))?
                                }
                            };
                            b.def_var(f, v);
                        }
                        Op::True {} => {
                            let v = b.ins().iconst(types::I8, 1);
                            b.def_var(f, v);
                        }
                        Op::False {} => {
                            let v = b.ins().iconst(types::I8, 0);
                            b.def_var(f, v);
                        }
                        Op::Not {} => {
                            let cur = b.use_var(f);
                            let v = b.ins().bxor_imm_u(cur, 1);
                            b.def_var(f, v);
                        }
                        Op::JumpIfFalse { target } | Op::JumpIfTrue { target } => {
                            let to = block_at(target as usize)?;
                            let fall = block_at(next_pc.ok_or_else(|| err("jump at the end"))?)?;
                            let cur = b.use_var(f);
                            if matches!(op, Op::JumpIfTrue { .. }) {
                                b.ins().brif(cur, to, &[], fall, &[]);
                            } else {
                                b.ins().brif(cur, fall, &[], to, &[]);
                            }
                            open = false;
                        }
                        Op::Call { def } => {
                            let callee = *def_ids.get(def as usize).ok_or_else(|| err("definition out of range"))?;
                            let fref = module.declare_func_in_func(callee, b.func);
                            let call = b.ins().call(fref, &[env, syms]);
                            let v = *b.inst_results(call).first().ok_or_else(|| err("definition returns nothing"))?;
                            b.def_var(f, v);
                        }
                        Op::Ret {} => {
                            let cur = b.use_var(f);
                            b.ins().return_(&[cur]);
                            open = false;
                        }
                    }
                }
                if open {
                    let cur = b.use_var(f);
                    b.ins().return_(&[cur]);
                }
                b.seal_all_blocks();
                b.finalize(frontend_config);
            }
            module.define_function(id, &mut ctx).map_err(|e| err(format!("{e:?}")))?;
            module.clear_context(&mut ctx);
            Ok(())
        };
        for (i, id) in def_ids.iter().enumerate() {
            let entry = *p.defs.get(i).ok_or_else(|| err("definition out of range"))?;
            define(&mut module, *id, entry)?;
        }
        for (pol, ids) in p.policies.iter().zip(&rule_ids) {
            for (r, id) in pol.rules.iter().zip(ids) {
                define(&mut module, *id, r.entry)?;
            }
        }
        module.finalize_definitions().map_err(err)?;
        let rules = rule_ids
            .iter()
            .map(|ids| {
                ids.iter()
                    .map(|id| {
                        let ptr = module.get_finalized_function(*id);
                        // SAFETY: the function was defined with `cond_sig`, which is
                        // `extern "C" fn(*mut c_void, *const u32) -> u8` in the platform's default
                        // convention.
                        unsafe { std::mem::transmute::<*const u8, CondFn>(ptr) }
                    })
                    .collect()
            })
            .collect();
        Ok(JitCode { rules, paths: p.paths.len(), native_atoms, native_paths, _code: Code(Some(module)) })
    }

    /// How many of the program's atoms run as native code (the rest call back into the host).
    pub fn native_atoms(&self) -> usize {
        self.native_atoms
    }

    /// The paths whose symbols native code reads.
    pub fn native_paths(&self) -> &[u32] {
        &self.native_paths
    }

    /// Runs a rule's native condition with the request's symbol table `syms` (one entry per
    /// path, resolved at least for [`JitCode::native_paths`]), calling `host` for every atom it
    /// does not decide natively. `None` when the rule does not exist or `syms` has the wrong
    /// length.
    pub fn holds(&self, policy: usize, rule: usize, host: &mut dyn Host, syms: &[u32]) -> Option<bool> {
        let f = *self.rules.get(policy)?.get(rule)?;
        if syms.len() != self.paths {
            return None;
        }
        let mut host: &mut dyn Host = host;
        let env = (&raw mut host).cast::<c_void>();
        // SAFETY: `f` was compiled by `compile` from a verified program and its module lives as
        // long as `self`; `env` points at `host`, alive for the whole call; `syms` is borrowed
        // for the whole call and has the length every native read was checked against.
        Some(unsafe { f(env, syms.as_ptr()) } != 0)
    }
}
