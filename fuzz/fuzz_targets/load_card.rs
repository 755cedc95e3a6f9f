//! Decision Cards: any JSON is a bundle or a refusal with a message, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verdict_compiler::card::{self, CardOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(value) = card::parse_strict_json(text) else { return };
    let now = jiff::Timestamp::UNIX_EPOCH;
    let actions = vec!["use".to_owned()];
    let opts = CardOptions { attestation: None, trust: None, allowed_actions: Some(&actions), now };
    if let Err(e) = card::compile(&value, &opts) {
        assert!(!e.message.is_empty());
    }
});
