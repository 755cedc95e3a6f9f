//! The artifact loader: any bytes are a verified program or an error, never a panic; a program
//! that loads decides a request on the VM and on the JIT alike.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verdict_runtime::artifact;
use verdict_runtime::request::Request;
use verdict_runtime::vm::{Backend, Engine};
use verdict_runtime::env::{Env, Mode};

fuzz_target!(|data: &[u8]| {
    let Ok(program) = artifact::read(data) else { return };
    let Ok(vm) = Engine::with_backend(program.clone(), Backend::Vm) else { return };
    let Ok(jit) = Engine::with_backend(program, Backend::Jit) else { return };
    let req = Request::default();
    let now = jiff::Timestamp::UNIX_EPOCH;
    assert_eq!(vm.evaluate(&req, &Env::at(now), Mode::TRACE), jit.evaluate(&req, &Env::at(now), Mode::TRACE));
});
