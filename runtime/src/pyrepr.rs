//! Python's `repr()` of a string, to the character: the reference writes ids this way in reasons
//! (`matched rule 'p0-r1'`, `default_effect='deny'`).

use unicode_general_category::{GeneralCategory, get_general_category};

/// Whether Python's `str.isprintable()` holds for one non-ASCII character.
fn printable(c: char) -> bool {
    !matches!(
        get_general_category(c),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::Surrogate
            | GeneralCategory::PrivateUse
            | GeneralCategory::Unassigned
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
            | GeneralCategory::SpaceSeparator
    )
}

/// `repr(s)` as CPython writes it.
pub fn repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            c if c == quote || c == '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_ascii() => out.push(c),
            c if printable(c) => out.push(c),
            c if (c as u32) <= 0xff => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::repr;

    #[test]
    fn matches_cpython() {
        assert_eq!(repr("p0-r1"), "'p0-r1'");
        assert_eq!(repr("it's"), "\"it's\"");
        assert_eq!(repr("both'\""), "'both\\'\"'");
        assert_eq!(repr("a\\b"), "'a\\\\b'");
        assert_eq!(repr("tab\there"), "'tab\\there'");
        assert_eq!(repr("\u{7}"), "'\\x07'");
        assert_eq!(repr("é"), "'é'");
        assert_eq!(repr("\u{a0}"), "'\\xa0'");
        assert_eq!(repr("\u{200b}"), "'\\u200b'");
        assert_eq!(repr("\u{e0001}"), "'\\U000e0001'");
    }
}
