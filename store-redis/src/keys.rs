//! The key layout and the texts the store keeps in Redis: series tags, order-preserving time
//! texts, score bounds and entry members.
//!
//! A series (state name plus key values, [`series_id`]) lives in three keys that share one
//! cluster hash slot through the `{tag}` in their names, the tag being the first 128 bits of the
//! SHA-256 of the series id in hex (a key value may contain braces, so the id itself cannot be
//! the tag):
//!
//! - `<prefix>s:{<tag>}:m` — a hash: `v` the series' version (bumped by every change), `q` the
//!   last entry sequence number, `id` the readable series id (for operators).
//! - `<prefix>s:{<tag>}:e` — a sorted set of the series' live entries, scored by time.
//! - `<prefix>s:{<tag>}:x` — a sorted set of the series' hold entries, scored by expiry (what the
//!   purge of long-expired holds scans).
//!
//! A decision that made holds has `<prefix>d:<decision id>`, a hash: `st` (`h` held, `c`
//! committed, `r` released), `exp` (the holds' expiry), `n` and, for the i-th hold, `t<i>` (its
//! series tag) and `m<i>` (its entry member).
//!
//! An entry member is `<seq>|<time>|<expiry>|<amount>`: `seq` orders the series' entries as they
//! were recorded (reads sum in that order), times are [`time_text`]s (the expiry is empty for a
//! permanent entry), the amount is its JSON number text. Scores are the times as doubles, only
//! used to narrow a range: every comparison of times is made exactly, in Rust or on the
//! fixed-width texts in Lua.

use serde_json::{Number, Value};
use sha2::{Digest, Sha256};
use verdict_runtime::state::{Micros, Range, series_id};

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

/// The keys of one series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeriesKeys {
    pub tag: String,
    pub meta: String,
    pub entries: String,
    pub expiries: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys { prefix: prefix.to_owned() }
    }

    pub fn series(&self, state: &str, key: &[Value]) -> SeriesKeys {
        self.series_of_tag(&tag(&series_id(state, key)))
    }

    pub fn series_of_tag(&self, tag: &str) -> SeriesKeys {
        let base = format!("{}s:{{{tag}}}:", self.prefix);
        SeriesKeys {
            tag: tag.to_owned(),
            meta: format!("{base}m"),
            entries: format!("{base}e"),
            expiries: format!("{base}x"),
        }
    }

    pub fn decision(&self, decision_id: &str) -> String {
        format!("{}d:{decision_id}", self.prefix)
    }
}

/// The hash tag of a series: 128 bits of the SHA-256 of its id, in hex.
pub(crate) fn tag(series_id: &str) -> String {
    let digest = Sha256::digest(series_id.as_bytes());
    let mut out = String::with_capacity(32);
    for b in digest.iter().take(16) {
        out.push(char::from(HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0')));
        out.push(char::from(HEX.get(usize::from(b & 15)).copied().unwrap_or(b'0')));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A time as a fixed-width text whose byte order is the times' order: the `i64` with its sign bit
/// flipped, as 20 decimal digits. Lua compares two such texts exactly by halves (each half is an
/// integer below 2^53), where comparing the times as Lua numbers (doubles) would not be exact.
pub(crate) fn time_text(t: Micros) -> String {
    format!("{:020}", (t as u64) ^ (1 << 63))
}

/// The time of a [`time_text`].
pub(crate) fn parse_time(text: &str) -> Option<Micros> {
    if text.len() != 20 {
        return None;
    }
    let u: u64 = text.parse().ok()?;
    Some((u ^ (1 << 63)) as i64)
}

/// A time as a sorted-set score: the nearest double, printed exactly (Rust prints the shortest
/// text that reads back as the same double). Rounding is monotonic, so the scores of the times
/// in `[a, b]` are in `[score(a), score(b)]`.
pub(crate) fn score(t: Micros) -> String {
    format!("{}", t as f64)
}

/// Inclusive score bounds that cover every time `range` contains (the exact test follows).
pub(crate) fn score_bounds(range: Range) -> (String, String) {
    match range {
        Range::Period { from, until } => (score(from), score(until)),
        Range::Sliding { after, until } => (score(after), score(until)),
        Range::Total => ("-inf".to_owned(), "+inf".to_owned()),
    }
}

/// One entry of a series, read back from its member.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub seq: u64,
    pub time: Micros,
    /// When the hold stops counting (`None`: permanent).
    pub expires: Option<Micros>,
    pub amount: Number,
}

/// The member of an entry (see the module's documentation).
#[cfg(test)]
pub(crate) fn member(seq: u64, time: Micros, expires: Option<Micros>, amount: &Number) -> String {
    let exp = expires.map(time_text).unwrap_or_default();
    format!("{seq}|{}|{exp}|{amount}", time_text(time))
}

/// Reads a member back; `None` when it is not one this store wrote.
pub(crate) fn parse_member(text: &str) -> Option<Entry> {
    let mut parts = text.splitn(4, '|');
    let seq = parts.next()?.parse().ok()?;
    let time = parse_time(parts.next()?)?;
    let expires = match parts.next()? {
        "" => None,
        e => Some(parse_time(e)?),
    };
    let amount = parse_amount(parts.next()?)?;
    Some(Entry { seq, time, expires, amount })
}

/// A JSON number text as serde_json wrote it, read back to the same value: integers as integers,
/// floats with Rust's correctly rounded parser (serde_json's default float parser may miss the
/// last bit, and the workspace does not enable its `float_roundtrip` feature).
pub(crate) fn parse_amount(text: &str) -> Option<Number> {
    if text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        return text.parse::<f64>().ok().and_then(Number::from_f64);
    }
    match text.parse::<i64>() {
        Ok(i) => Some(Number::from(i)),
        Err(_) => text.parse::<u64>().ok().map(Number::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn series_keys_share_one_tag_and_the_prefix() {
        let keys = Keys::new("t1:");
        let s = keys.series("spend", &[json!("a}b{c")]);
        assert_eq!(s.tag.len(), 32);
        for k in [&s.meta, &s.entries, &s.expiries] {
            assert!(k.starts_with(&format!("t1:s:{{{}}}:", s.tag)), "{k}");
        }
        assert_ne!(s, keys.series("spend", &[json!("a}b{d")]));
        assert_ne!(s.tag, keys.series("spend", &[json!(1)]).tag);
        assert_eq!(keys.decision("d-1"), "t1:d:d-1");
    }

    #[test]
    fn members_round_trip_every_kind_of_number() {
        for amount in [json!(0), json!(-7), json!(u64::MAX), json!(i64::MIN), json!(0.1), json!(-0.0), json!(1e308)] {
            let Value::Number(n) = amount else { continue };
            let m = member(3, -5, Some(i64::MAX), &n);
            let e = parse_member(&m);
            assert_eq!(e.as_ref().map(|e| e.amount.to_string()), Some(n.to_string()), "{m}");
            assert_eq!(e.map(|e| (e.seq, e.time, e.expires)), Some((3, -5, Some(i64::MAX))));
        }
        assert_eq!(parse_member("1|x||1"), None);
        assert_eq!(parse_member("1|00000000000000000001||"), None);
    }

    proptest! {
        #[test]
        fn amounts_round_trip_to_the_bit(f in any::<f64>(), i in any::<i64>(), u in any::<u64>()) {
            let numbers = [Number::from_f64(f), Some(Number::from(i)), Some(Number::from(u))];
            for n in numbers.into_iter().flatten() {
                let back = parse_amount(&n.to_string());
                prop_assert_eq!(back.as_ref().map(|b| (b.as_f64().map(f64::to_bits), b.as_i64(), b.as_u64(), b.is_f64())),
                    Some((n.as_f64().map(f64::to_bits), n.as_i64(), n.as_u64(), n.is_f64())), "{}", n);
            }
        }

        #[test]
        fn time_texts_order_as_the_times(a in any::<i64>(), b in any::<i64>()) {
            let (ta, tb) = (time_text(a), time_text(b));
            prop_assert_eq!(ta.len(), 20);
            prop_assert_eq!(ta.cmp(&tb), a.cmp(&b));
            // The Lua comparison: by halves of ten digits, each exact as a double.
            let half = |t: &str, r: std::ops::Range<usize>| t.get(r).and_then(|h| h.parse::<u64>().ok()).map(|h| h as f64);
            let lua = (half(&ta, 0..10), half(&ta, 10..20)).partial_cmp(&(half(&tb, 0..10), half(&tb, 10..20)));
            prop_assert_eq!(lua, Some(a.cmp(&b)));
            prop_assert_eq!(parse_time(&ta), Some(a));
        }

        #[test]
        fn score_bounds_cover_every_contained_time(a in any::<i64>(), t in any::<i64>(), b in any::<i64>()) {
            let (from, until) = (a.min(b), a.max(b));
            for range in [Range::Period { from, until }, Range::Sliding { after: from, until }] {
                if range.contains(t) {
                    let (lo, hi) = score_bounds(range);
                    let s = t as f64;
                    prop_assert!(lo.parse::<f64>().is_ok_and(|lo| lo <= s) && hi.parse::<f64>().is_ok_and(|hi| s <= hi));
                }
            }
        }
    }
}
