//! The Cranelift JIT: a verified program's condition segments compiled to native functions.
//!
//! Every rule condition and every definition becomes one native function
//! `extern "C" fn(env) -> u8` (1 when it holds). Control flow (`and`/`or` short-circuits, `not`,
//! definition calls) is native; atoms go through one host helper, [`h_atom`], which calls back
//! into the engine's shared atom evaluation (caches, constant sets, regexes, traces) — so the
//! semantics stay in one place and the JIT can only differ in control flow, which the
//! differential tests cover.
//!
//! # Safety
//! This is the only module with `unsafe` code. Its invariants:
//! - Native code is generated only from programs that passed [`Program::verify`]: every jump is
//!   forward and in range, definition calls are acyclic, so every call returns.
//! - The only function native code calls (besides other functions of the same module) is
//!   [`h_atom`], through an address constant with the exact signature it was declared with.
//! - `env` is a pointer to a `&mut AtomCallback` that [`JitCode::holds`] creates on its stack and
//!   that outlives the native call; native code passes it through untouched.
//! - [`h_atom`] never unwinds: a panic in the callback is caught and read as `false`.
//! - The module's memory is freed only when the [`JitCode`] drops, and no function pointer
//!   escapes it (they are private and only called through `&self`).

#![allow(unsafe_code)]

use crate::bytecode::Op;
use crate::program::Program;
use cranelift_codegen::ir::{AbiParam, InstBuilder, UserFuncName, types};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module, default_libcall_names};
use std::collections::{BTreeSet, HashMap};
use std::ffi::c_void;
use std::panic::AssertUnwindSafe;

/// What native code calls for an atom: `(atom, site) -> holds`.
pub type AtomCallback<'a> = dyn FnMut(u32, u32) -> bool + 'a;

type CondFn = unsafe extern "C" fn(*mut c_void) -> u8;

/// The host helper for atoms. Never unwinds.
extern "C" fn h_atom(env: *mut c_void, atom: u32, site: u32) -> u8 {
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `env` is the pointer `JitCode::holds` made from a live `&mut &mut AtomCallback`
        // that outlives this call (see the module's safety invariants).
        let callback = unsafe { &mut *env.cast::<&mut AtomCallback<'_>>() };
        callback(atom, site)
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
    _code: Code,
}

impl std::fmt::Debug for JitCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JitCode({} policies)", self.rules.len())
    }
}

/// Why a program was not compiled to native code (the engine falls back to the VM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JitError(pub String);

impl std::fmt::Display for JitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JIT unavailable: {}", self.0)
    }
}

fn err(e: impl std::fmt::Display) -> JitError {
    JitError(e.to_string())
}

/// The instructions of the segment starting at `entry`: up to the `Ret` that ends it (the first
/// `Ret` at or after every jump target seen so far).
fn segment(code: &[u32], entry: u32) -> Result<Vec<(usize, Op)>, JitError> {
    let mut out = Vec::new();
    let mut pc = entry as usize;
    let mut furthest = pc;
    loop {
        let (op, next) = Op::decode(code, pc).ok_or_else(|| err(format!("undecodable instruction at {pc}")))?;
        out.push((pc, op));
        match op {
            Op::JumpIfFalse { target } | Op::JumpIfTrue { target } => furthest = furthest.max(target as usize),
            Op::Ret {} if pc >= furthest => return Ok(out),
            _ => {}
        }
        pc = next;
    }
}

impl JitCode {
    /// Compiles every rule and definition of a verified program.
    pub fn compile(p: &Program) -> Result<JitCode, JitError> {
        let mut flags = settings::builder();
        flags.set("use_colocated_libcalls", "false").map_err(err)?;
        flags.set("is_pic", "false").map_err(err)?;
        flags.set("opt_level", "speed").map_err(err)?;
        let isa = cranelift_native::builder().map_err(err)?.finish(settings::Flags::new(flags)).map_err(err)?;
        let mut module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
        let ptr = module.target_config().pointer_type();
        let call_conv = module.isa().default_call_conv();

        let mut cond_sig = module.make_signature();
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
            let ops = segment(&p.code, entry)?;
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
                            let addr = b.ins().iconst(ptr, h_atom as *const () as usize as i64);
                            let a = b.ins().iconst(types::I32, i64::from(atom));
                            let s = b.ins().iconst(types::I32, i64::from(site));
                            let call = b.ins().call_indirect(helper_ref, addr, &[env, a, s]);
                            let v = *b.inst_results(call).first().ok_or_else(|| err("helper returns nothing"))?;
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
                            let call = b.ins().call(fref, &[env]);
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
                        // `extern "C" fn(*mut c_void) -> u8` in the platform's default convention.
                        unsafe { std::mem::transmute::<*const u8, CondFn>(ptr) }
                    })
                    .collect()
            })
            .collect();
        Ok(JitCode { rules, _code: Code(Some(module)) })
    }

    /// Runs a rule's native condition, calling `atom` for every atom it evaluates.
    pub fn holds(&self, policy: usize, rule: usize, atom: &mut AtomCallback<'_>) -> Option<bool> {
        let f = *self.rules.get(policy)?.get(rule)?;
        let mut callback: &mut AtomCallback<'_> = atom;
        let env = (&raw mut callback).cast::<c_void>();
        // SAFETY: `f` was compiled by `compile` from a verified program and its module lives as
        // long as `self`; `env` points at `callback`, alive for the whole call.
        Some(unsafe { f(env) } != 0)
    }
}
