//! Parsing never gives up: every error is reported and what was written still yields a tree.

use verdict_grammar::ast::Item;
use verdict_grammar::parse_file;

#[test]
fn half_typed_file_keeps_what_was_written() {
    let src = "bundle demo { version \"1\" }\n\npolicy p {\n  rule a allow { when subject.role == \"admin\" }\n  rule b deny { when resource.tags contains \"locked\" and }\n  rule c allow { when action == 'read }\n}\n";
    let p = parse_file(src);
    let messages: Vec<&str> = p.errors.iter().map(|e| e.message.as_str()).collect();
    assert!(messages.iter().any(|m| m.starts_with("unexpected `}`")), "{messages:?}");
    assert!(messages.contains(&"unterminated string literal"), "{messages:?}");
    assert!(matches!(p.tree.items.first(), Some(Item::Bundle(_))), "{:#?}", p.tree.items);
    let Some(Item::Policy(pol)) = p.tree.items.get(1) else { unreachable!("{:#?}", p.tree.items) };
    assert!(pol.rules.iter().any(|r| r.name.text == "a"));
}

#[test]
fn unclosed_policy_at_end_of_file() {
    let src = "bundle demo { version \"1\" }\npolicy p {\n  rule a allow { when true }\n  rule b deny { when x ==";
    let p = parse_file(src);
    assert!(p.errors.iter().any(|e| e.message.starts_with("unexpected end of input")), "{:?}", p.errors);
    let Some(Item::Policy(pol)) = p.tree.items.get(1) else { unreachable!("{:#?}", p.tree.items) };
    assert_eq!(pol.rules.first().map(|r| r.name.text.as_str()), Some("a"));
}

#[test]
fn every_error_in_one_pass() {
    let src = "bundle d { version \"1\" }\npolicy p {\n  rule a allow { when x == }\n  rule b allow { when (y }\n  rule c allow { when z = 1 }\n}\n";
    let p = parse_file(src);
    assert!(p.errors.len() >= 3, "{:#?}", p.errors);
    assert_eq!(p.tree.items.len(), 2);
}
