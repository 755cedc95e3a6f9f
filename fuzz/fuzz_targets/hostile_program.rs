//! Hostile programs built directly (`verdict_tests::hostile`: self-calls behind jumps,
//! exponential call trees 34 deep, jumps into instructions, everything out of range): the
//! verifier refuses each, or the VM, the JIT and the traced VM decide it alike. Run with a short
//! `-timeout` (scripts/fuzz.sh): a slow input is unbounded work, a stack overflow a crash.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use verdict_tests::hostile;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(program) = hostile::program(&mut u) else { return };
    let requests = hostile::requests(&mut u).unwrap_or_default();
    if let Err(e) = hostile::check(&program, &requests) {
        panic!("{e}");
    }
});
