//! Synthetic `.verdict` files for the reuse tests and the language-server benchmark: one
//! definition, so the test that counts re-checked policies and the benchmark that times the
//! edit measure the same thing.

use std::fmt::Write;

/// A bundle of `policies` × `rules` rules, each with a distinct condition over a schema with a
/// `let`, and without findings.
pub fn many_rules(policies: usize, rules: usize) -> String {
    let mut s = String::from(
        "bundle big {\n  effects [deny, review, allow]\n  schema { subject.role: string, subject.level: number, action: string }\n}\n\nlet is_admin = subject.role == \"admin\"\n\n",
    );
    for p in 0..policies {
        let _ = write!(s, "policy \"p{p}\" {{\n  default deny\n");
        for r in 0..rules {
            let _ = write!(
                s,
                "  rule \"p{p}-r{r}\" allow {{\n    when action == \"act{r}\" and subject.level >= {p} and not is_admin\n    reason \"rule {r}\"\n  }}\n"
            );
        }
        s.push_str("}\n\n");
    }
    s
}

/// The text with the effect of rule `r` of policy `p` replaced by `effect`, and the byte offset
/// of the new effect; `None` when there is no such rule.
pub fn with_rule_effect(text: &str, p: usize, r: usize, effect: &str) -> Option<(String, usize)> {
    let header = format!("rule \"p{p}-r{r}\" ");
    let at = text.find(&header)? + header.len();
    let len = text.get(at..)?.find(' ')?;
    let mut out = String::with_capacity(text.len() + effect.len());
    out.push_str(text.get(..at)?);
    out.push_str(effect);
    out.push_str(text.get(at + len..)?);
    Some((out, at))
}
