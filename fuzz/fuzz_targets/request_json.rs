//! Request contexts from JSON bytes: the projection parser accepts exactly what the full parser
//! accepts, and keeps the same values on the paths a bundle reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verdict_runtime::project::PathTrie;
use verdict_runtime::request::Request;

fuzz_target!(|data: &[u8]| {
    let paths: Vec<Vec<String>> =
        [&["subject", "role"][..], &["action"], &["resource", "tags"], &["region"], &["a", "0"]]
            .iter()
            .map(|p| p.iter().map(|s| (*s).to_owned()).collect())
            .collect();
    let trie = PathTrie::new(paths.iter().map(Vec::as_slice));
    let full = Request::from_json(data);
    let projected = trie.parse(data);
    assert_eq!(full.is_ok(), projected.is_ok(), "same acceptance");
    if let (Ok(f), Ok(p)) = (full, projected) {
        for path in &paths {
            assert_eq!(f.lookup(path), p.lookup(path), "{path:?}");
        }
    }
});
