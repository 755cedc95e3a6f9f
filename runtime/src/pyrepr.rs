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

/// `repr(x)` (= `str(x)`) of a finite float as CPython writes it: the shortest digits that read
/// back to the same value, in fixed notation for decimal exponents from -4 to 15 (with `.0` when
/// integral), else in scientific notation with a signed, at least two-digit exponent.
pub fn float(x: f64) -> String {
    // Rust's `{:e}` gives the same shortest round-trip digits: `d.ddde±x`.
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if (-4..16).contains(&exp) {
        // Fixed: the point goes after `exp + 1` digits.
        let point = exp + 1;
        let body = if point <= 0 {
            format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
        } else {
            let p = point as usize;
            if digits.len() <= p {
                format!("{digits}{}.0", "0".repeat(p - digits.len()))
            } else {
                format!("{}.{}", digits.get(..p).unwrap_or(""), digits.get(p..).unwrap_or(""))
            }
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        let mant = if rest.is_empty() { first.to_owned() } else { format!("{first}.{rest}") };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mant}e{esign}{:02}", exp.unsigned_abs())
    }
}

#[cfg(test)]
mod float_tests {
    #[test]
    fn floats_as_python_writes_them() {
        for (x, want) in [
            (60.0, "60.0"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (1e-4, "0.0001"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (-2.5, "-2.5"),
            (-0.0, "-0.0"),
            (1e15, "1000000000000000.0"),
            (12.34, "12.34"),
            (5e-324, "5e-324"),
        ] {
            assert_eq!(super::float(x), want, "{x}");
        }
    }
}
