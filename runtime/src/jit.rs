//! The Cranelift JIT: a verified program's condition segments compiled to native functions.
//!
//! Every rule condition and every definition becomes one native function
//! `extern "C" fn(env, syms, memo, generation) -> u8`: 1 when it holds, 0 when it does not, 2 on
//! a fault (a host callback that failed or panicked), which returns at once through every caller
//! and is never negated. Control flow (`and`/`or` short-circuits, `not`, definition calls) is
//! native. A definition runs at most once per request: its result is kept in `memo` (the
//! engine's `[stamp, truth]` slots, valid when `stamp == generation`), so definitions that share
//! sub-definitions cost linear time. Atoms that compare a path with strings, booleans or null
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
//! - `memo` points at a `&mut [[u32; 2]]` that [`JitCode::holds`] borrows mutably for the whole
//!   call and whose length it checks to be the program's definition count; native code reads
//!   and writes it only at definition ids below that count (checked when compiling).
//! - [`h_atom`] never unwinds: a panic in the host is caught and returned as a fault (2), which
//!   decides the most severe effect (never read as `false`, which `not` would turn into `true`).
//! - The module's memory is freed only when the [`JitCode`] drops, and no function pointer
//!   escapes it (they are private and only called through `&self`).

#![allow(unsafe_code)]

use crate::bytecode::Op;
use crate::policy::Truth;
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
    /// Evaluates an atom that is not compiled natively.
    fn atom(&mut self, atom: u32, site: u32) -> Truth;
}

type CondFn = unsafe extern "C" fn(*mut c_void, *const u32, *mut [u32; 2], u32) -> u8;

/// The fault code of native functions and of [`h_atom`].
const FAULT: i64 = Truth::Fault as i64;

/// The host helper for atoms: 0, 1, or 2 for a fault. Never unwinds: a panic is a fault.
extern "C" fn h_atom(env: *mut c_void, atom: u32, site: u32) -> u8 {
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `env` is the pointer `JitCode::holds` made from a live `&mut &mut dyn Host`
        // that outlives this call (see the module's safety invariants).
        let host = unsafe { &mut *env.cast::<&mut dyn Host>() };
        host.atom(atom, site)
    }));
    result.unwrap_or(Truth::Fault) as u8
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
    /// `rules[policy][rule]`; `None` for a rule left to the bytecode (see [`MAX_NATIVE_OPS`]).
    rules: Vec<Vec<Option<CondFn>>>,
    /// The program's path count: the length of every symbol table passed to native code.
    paths: usize,
    /// The program's definition count: the length of every memo passed to native code.
    defs: usize,
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

/// A condition segment's instructions with their code offsets.
type Segment = Vec<(usize, Op)>;

/// The most instructions a segment may have to become native code. Cranelift's compile time
/// grows faster than linearly in a function's size (a 40,000-atom condition took 30 s); larger
/// segments run on the bytecode, which decides them identically.
pub const MAX_NATIVE_OPS: usize = 4096;

/// Which definitions become native: small enough, and calling only native definitions.
/// Definitions call each other without cycles (verified), so a depth-first walk settles each
/// once.
fn native_definitions(def_ops: &[Vec<(usize, Op)>]) -> Vec<bool> {
    let calls = |d: usize| -> Vec<usize> {
        def_ops
            .get(d)
            .map(|ops| {
                ops.iter()
                    .filter_map(|(_, op)| match op {
                        Op::Call { def } => Some(*def as usize),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let n = def_ops.len();
    let mut native: Vec<Option<bool>> = vec![None; n];
    for root in 0..n {
        let mut stack = vec![root];
        while let Some(&d) = stack.last() {
            if native.get(d).copied().flatten().is_some() {
                stack.pop();
                continue;
            }
            let callees = calls(d);
            let mut pending: Vec<usize> =
                callees.iter().copied().filter(|c| native.get(*c).copied().flatten().is_none()).collect();
            pending.sort_unstable();
            pending.dedup();
            // The bound only guards against a cycle, which the verifier excludes: a definition
            // settled early is merely left to the bytecode.
            if pending.is_empty() || stack.len() > 4 * n + 16 {
                let small = def_ops.get(d).is_some_and(|ops| ops.len() <= MAX_NATIVE_OPS);
                let ok = small && callees.iter().all(|c| native.get(*c).copied().flatten() == Some(true));
                if let Some(slot) = native.get_mut(d) {
                    *slot = Some(ok);
                }
                stack.pop();
            } else {
                stack.extend(pending);
            }
        }
    }
    native.into_iter().map(|v| v == Some(true)).collect()
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
        cond_sig.params.push(AbiParam::new(ptr));
        cond_sig.params.push(AbiParam::new(types::I32));
        cond_sig.returns.push(AbiParam::new(types::I8));
        let mut helper_sig = cranelift_codegen::ir::Signature::new(call_conv);
        helper_sig.params.push(AbiParam::new(ptr));
        helper_sig.params.push(AbiParam::new(types::I32));
        helper_sig.params.push(AbiParam::new(types::I32));
        helper_sig.returns.push(AbiParam::new(types::I8));

        // Which segments become native: those of at most `MAX_NATIVE_OPS` instructions whose
        // called definitions are native too (the rest run on the bytecode, so compile time stays
        // linear in the program however large one condition is).
        let def_ops: Vec<Vec<(usize, Op)>> =
            p.defs.iter().map(|d| crate::program::segment(&p.code, d.entry)).collect::<Result<_, _>>()?;
        let native_defs = native_definitions(&def_ops);
        let fits = |ops: &[(usize, Op)]| {
            ops.len() <= MAX_NATIVE_OPS
                && ops.iter().all(|(_, op)| match op {
                    Op::Call { def } => native_defs.get(*def as usize).copied().unwrap_or(false),
                    _ => true,
                })
        };
        let mut def_ids: Vec<Option<FuncId>> = Vec::with_capacity(p.defs.len());
        for (i, native) in native_defs.iter().enumerate() {
            def_ids.push(match native {
                true => Some(module.declare_function(&format!("d{i}"), Linkage::Local, &cond_sig).map_err(err)?),
                false => None,
            });
        }
        let mut rule_ids: Vec<Vec<Option<(FuncId, Segment)>>> = Vec::with_capacity(p.policies.len());
        for (pi, pol) in p.policies.iter().enumerate() {
            let mut ids = Vec::with_capacity(pol.rules.len());
            for (ri, r) in pol.rules.iter().enumerate() {
                let ops = crate::program::segment(&p.code, r.entry)?;
                ids.push(match fits(&ops) {
                    true => Some((
                        module.declare_function(&format!("p{pi}r{ri}"), Linkage::Local, &cond_sig).map_err(err)?,
                        ops,
                    )),
                    false => None,
                });
            }
            rule_ids.push(ids);
        }

        let mut ctx = module.make_context();
        let mut fctx = FunctionBuilderContext::new();
        let frontend_config = module.target_config();
        let mut define = |module: &mut JITModule, id: FuncId, ops: &[(usize, Op)]| -> Result<(), JitError> {
            ctx.func.signature = cond_sig.clone();
            ctx.func.name = UserFuncName::user(0, id.as_u32());
            {
                let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
                let helper_ref = b.import_signature(helper_sig.clone());
                let f = b.declare_var(types::I8);
                let start = b.create_block();
                b.append_block_params_for_function_params(start);
                b.switch_to_block(start);
                let params = b.block_params(start).to_vec();
                let [env, syms, memo, generation] = params[..] else { return Err(err("wrong parameters")) };
                let zero = b.ins().iconst(types::I8, 0);
                b.def_var(f, zero);
                // One block returns a fault for the whole function.
                let fault = b.create_block();
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
                                    let r =
                                        *b.inst_results(call).first().ok_or_else(|| err("helper returns nothing"))?;
                                    let failed = b.ins().icmp_imm_u(IntCC::Equal, r, FAULT);
                                    let go_on = b.create_block();
                                    b.ins().brif(failed, fault, &[], go_on, &[]);
                                    b.switch_to_block(go_on);
                                    r
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
                            // The memo slot first: a definition already run for this request is
                            // read, not run again.
                            let callee = def_ids
                                .get(def as usize)
                                .copied()
                                .flatten()
                                .ok_or_else(|| err("call of a definition without native code"))?;
                            let slot = b.ins().iadd_imm_u(memo, i64::from(def) * 8);
                            let stamp = b.ins().load(types::I32, MemFlagsData::trusted(), slot, 0);
                            let known = b.ins().icmp(IntCC::Equal, stamp, generation);
                            let (hit, miss, join) = (b.create_block(), b.create_block(), b.create_block());
                            b.append_block_param(join, types::I8);
                            b.ins().brif(known, hit, &[], miss, &[]);
                            b.switch_to_block(hit);
                            let stored = b.ins().load(types::I32, MemFlagsData::trusted(), slot, 4);
                            let v = b.ins().ireduce(types::I8, stored);
                            b.ins().jump(join, &[v.into()]);
                            b.switch_to_block(miss);
                            let fref = module.declare_func_in_func(callee, b.func);
                            let call = b.ins().call(fref, &[env, syms, memo, generation]);
                            let r = *b.inst_results(call).first().ok_or_else(|| err("definition returns nothing"))?;
                            let failed = b.ins().icmp_imm_u(IntCC::Equal, r, FAULT);
                            let store = b.create_block();
                            b.ins().brif(failed, fault, &[], store, &[]);
                            b.switch_to_block(store);
                            b.ins().store(MemFlagsData::trusted(), generation, slot, 0);
                            let wide = b.ins().uextend(types::I32, r);
                            b.ins().store(MemFlagsData::trusted(), wide, slot, 4);
                            b.ins().jump(join, &[r.into()]);
                            b.switch_to_block(join);
                            let v = *b.block_params(join).first().ok_or_else(|| err("no joined value"))?;
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
                b.switch_to_block(fault);
                let code = b.ins().iconst(types::I8, FAULT);
                b.ins().return_(&[code]);
                b.seal_all_blocks();
                b.finalize(frontend_config);
            }
            module.define_function(id, &mut ctx).map_err(|e| err(format!("{e:?}")))?;
            module.clear_context(&mut ctx);
            Ok(())
        };
        for (id, ops) in def_ids.iter().zip(&def_ops) {
            if let Some(id) = id {
                define(&mut module, *id, ops)?;
            }
        }
        for (id, ops) in rule_ids.iter().flatten().flatten() {
            define(&mut module, *id, ops)?;
        }
        module.finalize_definitions().map_err(err)?;
        let rules = rule_ids
            .iter()
            .map(|ids| {
                ids.iter()
                    .map(|slot| {
                        let (id, _) = slot.as_ref()?;
                        let ptr = module.get_finalized_function(*id);
                        // SAFETY: the function was defined with `cond_sig`, which is
                        // `extern "C" fn(*mut c_void, *const u32, *mut [u32; 2], u32) -> u8` in the
                        // platform's default convention.
                        Some(unsafe { std::mem::transmute::<*const u8, CondFn>(ptr) })
                    })
                    .collect()
            })
            .collect();
        Ok(JitCode {
            rules,
            paths: p.paths.len(),
            defs: p.defs.len(),
            native_atoms,
            native_paths,
            _code: Code(Some(module)),
        })
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
    /// path, resolved at least for [`JitCode::native_paths`]) and the request's definition memo
    /// (`[stamp, truth]` per definition, valid when `stamp == generation`), calling `host` for
    /// every atom it does not decide natively. `None` when the rule has no native code (it is
    /// too large, or does not exist) or a table has the wrong length: the caller runs the
    /// rule's bytecode instead.
    pub fn holds(
        &self,
        policy: usize,
        rule: usize,
        host: &mut dyn Host,
        syms: &[u32],
        memo: &mut [[u32; 2]],
        generation: u32,
    ) -> Option<Truth> {
        let f = (*self.rules.get(policy)?.get(rule)?)?;
        if syms.len() != self.paths || memo.len() != self.defs {
            return None;
        }
        let mut host: &mut dyn Host = host;
        let env = (&raw mut host).cast::<c_void>();
        // SAFETY: `f` was compiled by `compile` from a verified program and its module lives as
        // long as `self`; `env` points at `host`, alive for the whole call; `syms` and `memo` are
        // borrowed for the whole call and have the lengths every native access was checked
        // against.
        Some(Truth::from_code(unsafe { f(env, syms.as_ptr(), memo.as_mut_ptr(), generation) }))
    }
}
