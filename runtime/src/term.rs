//! The semantics of terms (LANGUAGE.md §5.1–5.5) that every backend shares: arithmetic,
//! functions, the fields of `now`, the time ranges of state windows, extern calls and state
//! reads with their fail-closed errors, per-decision memos, and reason templates. The
//! interpreter walks the IR and the VM walks the program's term table; both compute each step
//! here, so the semantics are written once.
//!
//! A term's value is `None` when it is *undefined* (a missing path, an operand of the wrong type,
//! a division by zero, a non-finite result): an atom with an undefined operand is false. A term
//! that cannot be evaluated at all — an extern that fails, a state store that cannot answer —
//! is a *fault* (`Err` with the reason), which decides the most severe effect.

use crate::env::Env;
use crate::number;
use crate::state::{Micros, Range};
use crate::value::Type;
use serde_json::{Number, Value};
use verdict_vocab::{Arith, Func, NowField, Window};

/// A term's value, borrowed from the request or the program when it can be.
pub type TermValue<'a> = Option<std::borrow::Cow<'a, Value>>;

/// `lhs op rhs` (or `-lhs` for `Neg`): numbers only, not bools.
pub fn arith(op: Arith, lhs: Option<&Value>, rhs: Option<&Value>) -> Option<Value> {
    arith_operands(op, &Operand::of(lhs), &Operand::of(rhs)).map(Value::Number)
}

/// A term's value as arithmetic sees it: a number, undefined, or a value of another type. What
/// a backend computes arithmetic on without building a [`Value`] for every step (a state read
/// and a sum are numbers).
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Number(Number),
    Undefined,
    /// Defined, but not a number (a bool is not a number).
    Other,
}

impl Operand {
    #[inline]
    pub fn of(v: Option<&Value>) -> Operand {
        match v {
            Some(Value::Number(n)) => Operand::Number(n.clone()),
            Some(_) => Operand::Other,
            None => Operand::Undefined,
        }
    }

    /// A number's operand, `Undefined` for `None` (an undefined result).
    #[inline]
    pub fn number(n: Option<Number>) -> Operand {
        n.map_or(Operand::Undefined, Operand::Number)
    }
}

/// [`arith`] on operands: `lhs op rhs` (or `-lhs` for `Neg`, whose `rhs` is undefined); `None`
/// when undefined.
#[inline]
pub fn arith_operands(op: Arith, lhs: &Operand, rhs: &Operand) -> Option<Number> {
    let Operand::Number(a) = lhs else { return None };
    match (op, rhs) {
        (Arith::Neg, Operand::Undefined) => number::neg(a),
        (_, Operand::Number(b)) => number::binary(op, a, b),
        _ => None,
    }
}

/// A built-in function of one argument.
pub fn func(f: Func, arg: Option<&Value>) -> Option<Value> {
    let arg = arg?;
    Some(match (f, arg) {
        (Func::Lower, Value::String(s)) => Value::String(s.to_lowercase()),
        (Func::Upper, Value::String(s)) => Value::String(s.to_uppercase()),
        (Func::Len, Value::String(s)) => Value::from(s.chars().count()),
        (Func::Len, Value::Array(items)) => Value::from(items.len()),
        (Func::Len, Value::Object(m)) => Value::from(m.len()),
        (Func::Abs, Value::Number(n)) => Value::Number(number::abs(n)?),
        _ => return None,
    })
}

/// A field of the evaluation time: in `tz` except `epoch` (whole seconds since 1970, UTC).
pub fn now_field(field: NowField, now: jiff::Timestamp, tz: &jiff::tz::TimeZone) -> Value {
    if field == NowField::Epoch {
        return Value::from(now.as_second());
    }
    let z = now.to_zoned(tz.clone());
    Value::from(match field {
        NowField::Year => i64::from(z.year()),
        NowField::Month => i64::from(z.month()),
        NowField::Day => i64::from(z.day()),
        NowField::Hour => i64::from(z.hour()),
        NowField::Minute => i64::from(z.minute()),
        NowField::Weekday => i64::from(z.weekday().to_monday_zero_offset()),
        NowField::Epoch => now.as_second(),
    })
}

/// The time range a state window reads at `now`: a calendar period of `tz` containing `now`
/// (weeks start on Monday 00:00), all time, or the sliding `(now - seconds, now]`. `None` when
/// the calendar cannot represent the period (at the ends of time).
pub fn window_range(window: Window, seconds: u32, now: jiff::Timestamp, tz: &jiff::tz::TimeZone) -> Option<Range> {
    use jiff::civil::Date;
    let at = |d: Date| d.to_zoned(tz.clone()).ok().map(|z| crate::state::micros(z.timestamp()));
    match window {
        Window::Total => return Some(Range::Total),
        Window::Last => return sliding(seconds, now),
        Window::Hour | Window::Day | Window::Week | Window::Month | Window::Year => {}
    }
    let z = now.to_zoned(tz.clone());
    let date = z.date();
    let (from, until): (Micros, Micros) = match window {
        Window::Total | Window::Last => return None,
        Window::Hour => {
            let start = z.with().minute(0).second(0).subsec_nanosecond(0).build().ok()?;
            let from = crate::state::micros(start.timestamp());
            (from, from.checked_add(3_600_000_000)?)
        }
        Window::Day => (at(date)?, at(date.tomorrow().ok()?)?),
        Window::Week => {
            let monday = date.checked_sub(jiff::Span::new().days(z.weekday().to_monday_zero_offset())).ok()?;
            (at(monday)?, at(monday.checked_add(jiff::Span::new().days(7)).ok()?)?)
        }
        Window::Month => {
            let first = date.first_of_month();
            (at(first)?, at(first.checked_add(jiff::Span::new().months(1)).ok()?)?)
        }
        Window::Year => {
            let first = date.first_of_year();
            (at(first)?, at(first.checked_add(jiff::Span::new().years(1)).ok()?)?)
        }
    };
    Some(Range::Period { from, until })
}

/// The sliding window `(now - seconds, now]`.
#[inline]
fn sliding(seconds: u32, now: jiff::Timestamp) -> Option<Range> {
    let until = crate::state::micros(now);
    Some(Range::Sliding { after: until.checked_sub(i64::from(seconds).checked_mul(1_000_000)?)?, until })
}

/// The calendar periods the state windows of one engine's decisions last read, kept from
/// decision to decision (a period changes once an hour at most), so a read inside the same
/// period does no calendar arithmetic. A period `[from, until)` is kept only when the evaluation
/// time it was computed at is inside it, the timezone keeps one UTC offset over all of it, and
/// [`window_range`] gives the same period at its first and its last instant: local time then
/// runs forward through the period without jumps, so every time in it lies in the same calendar
/// period as both ends, and [`window_range`] gives it the same `[from, until)`.
#[derive(Debug, Default, Clone)]
pub struct Periods {
    /// The engine whose timezone the periods are in (see [`Periods::range`]).
    owner: u64,
    /// Per calendar window (hour, day, week, month, year).
    periods: [Option<(Micros, Micros)>; 5],
}

impl Periods {
    /// [`window_range`], from the kept period when `now` is inside it. `owner` names the
    /// timezone: a different owner than the last one forgets every kept period.
    #[inline]
    pub fn range(
        &mut self,
        owner: u64,
        window: Window,
        seconds: u32,
        now: jiff::Timestamp,
        tz: &jiff::tz::TimeZone,
    ) -> Option<Range> {
        let slot = match window {
            Window::Hour => 0,
            Window::Day => 1,
            Window::Week => 2,
            Window::Month => 3,
            Window::Year => 4,
            Window::Total => return Some(Range::Total),
            Window::Last => return sliding(seconds, now),
        };
        if self.owner == owner
            && let Some(Some((from, until))) = self.periods.get(slot)
            && inside(now, *from, *until)
        {
            return Some(Range::Period { from: *from, until: *until });
        }
        self.compute(owner, slot, window, now, tz)
    }

    /// [`Periods::range`] of calendar window `window` (kept at `slot`) when its period is not
    /// kept: computed, and kept when it may be.
    fn compute(
        &mut self,
        owner: u64,
        slot: usize,
        window: Window,
        now: jiff::Timestamp,
        tz: &jiff::tz::TimeZone,
    ) -> Option<Range> {
        if self.owner != owner {
            self.owner = owner;
            self.periods = [None; 5];
        }
        let range = window_range(window, 0, now, tz)?;
        if let Range::Period { from, until } = range
            && inside(now, from, until)
            && one_offset(tz, from, until)
            && ends_agree(window, tz, range)
            && let Some(kept) = self.periods.get_mut(slot)
        {
            *kept = Some((from, until));
        }
        Some(range)
    }
}

/// Whether `now` is in `[from, until)`, compared in nanoseconds (`now` is not rounded).
#[inline]
fn inside(now: jiff::Timestamp, from: Micros, until: Micros) -> bool {
    let t = now.as_nanosecond();
    i128::from(from) * 1000 <= t && t < i128::from(until) * 1000
}

/// Whether [`window_range`] gives `range` at its first and at its last instant.
fn ends_agree(window: Window, tz: &jiff::tz::TimeZone, range: Range) -> bool {
    let Range::Period { from, until } = range else { return false };
    let first = jiff::Timestamp::from_microsecond(from);
    let last =
        jiff::Timestamp::from_microsecond(until).and_then(|t| t.checked_sub(jiff::SignedDuration::from_nanos(1)));
    match (first, last) {
        (Ok(first), Ok(last)) => {
            window_range(window, 0, first, tz) == Some(range) && window_range(window, 0, last, tz) == Some(range)
        }
        _ => false,
    }
}

/// Whether `tz` has no offset transition inside `(from, until)`.
fn one_offset(tz: &jiff::tz::TimeZone, from: Micros, until: Micros) -> bool {
    if tz.to_fixed_offset().is_ok() {
        return true;
    }
    let Ok(start) = jiff::Timestamp::from_microsecond(from) else { return false };
    match tz.following(start).next() {
        None => true,
        Some(t) => crate::state::micros(t.timestamp()) >= until,
    }
}

/// Whether a value can select a state series (a key value): a string, a number or a bool.
pub fn is_key_value(v: &Value) -> bool {
    matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

/// An extern call of one decision: `(extern index, arguments, result or fault reason)`.
pub type Call = (u32, Vec<Value>, Result<Value, String>);
/// A state read of one decision: `(series index, range, sum or fault reason)`. The key values are
/// the request's, fixed for the decision, so the series index names the series.
pub type Read = (u32, Range, Result<Number, String>);

/// The calls and reads one decision has made: each extern call with the same arguments and each
/// state read of the same series and range runs once (LANGUAGE.md §5.3), and their order is the
/// order every backend makes them in (the interpreter's short-circuit order).
///
/// The reads are those of one request: clear them (as every backend does when a decision starts)
/// before a memo serves another request.
#[derive(Debug, Default, Clone)]
pub struct HostMemo {
    /// In call order.
    pub calls: Vec<Call>,
    /// In read order.
    pub reads: Vec<Read>,
    /// Set by the interpreter when a policy was decided by a fault (a condition or a template
    /// that failed) rather than by its rules.
    pub faulted: bool,
    /// Set by the interpreter when the decision's state updates were refused (a key path
    /// missing, an `add` that faulted): the bundle decision is then the refusal, whatever the
    /// policies decided. The analysis' oracle rejects both.
    pub refused: bool,
    /// The key values of the read being made, kept so that their strings' buffers are reused by
    /// the next decisions.
    key: Vec<Value>,
    /// The calendar periods of the last reads (the VM's; the interpreter computes each).
    pub(crate) periods: Periods,
}

/// The calls and reads, in order: what every backend must agree on (the flags are the
/// interpreter's, the buffers caches).
impl PartialEq for HostMemo {
    fn eq(&self, other: &HostMemo) -> bool {
        self.calls == other.calls && self.reads == other.reads
    }
}

impl HostMemo {
    pub fn clear(&mut self) {
        self.calls.clear();
        self.reads.clear();
        self.faulted = false;
        self.refused = false;
    }
}

/// Calls extern `index` (`name` with its declared `params` and `returns`) on `args` (`None`:
/// undefined), once per decision: the result, or the fault's reason (`extern error: NAME: …`).
pub fn call_extern(
    env: &Env<'_>,
    memo: &mut HostMemo,
    index: u32,
    name: &str,
    params: &[Type],
    returns: &Type,
    args: &[Option<&Value>],
) -> Result<Value, String> {
    let fail = |what: String| Err(format!("extern error: {name}: {what}"));
    let mut values = Vec::with_capacity(args.len());
    for (i, (a, ty)) in args.iter().zip(params).enumerate() {
        match a {
            None => return fail(format!("argument {} is undefined", i + 1)),
            Some(v) if !ty.admits(v) => {
                return fail(format!("argument {} must be {}, not {}", i + 1, ty.name(), crate::value::type_name(v)));
            }
            Some(v) => values.push((*v).clone()),
        }
    }
    if let Some((_, _, r)) = memo.calls.iter().find(|(e, a, _)| *e == index && *a == values) {
        return r.clone();
    }
    let result = match env.externs {
        None => fail("not bound".to_owned()),
        Some(host) => match host.call(name, &values) {
            Ok(v) if returns.admits(&v) => Ok(v),
            Ok(v) => fail(format!("returned {}, expected {}", crate::value::type_name(&v), returns.name())),
            Err(e) => fail(e.to_string()),
        },
    };
    memo.calls.push((index, values, result.clone()));
    result
}

/// The state error of a key path (`text`, its value `v` on the request) that cannot select a
/// series of `name`: missing, or not a string, number or bool. Reads and updates both choose
/// their series by it.
#[inline]
pub fn key_error(name: &str, text: &str, v: Option<&Value>) -> Option<String> {
    match v {
        Some(v) if is_key_value(v) => None,
        _ => key_error_of(name, text, v),
    }
}

#[cold]
fn key_error_of(name: &str, text: &str, v: Option<&Value>) -> Option<String> {
    match v {
        None => Some(format!("state error: key {text} of {} is missing", crate::pyrepr::repr(name))),
        Some(v) if !is_key_value(v) => Some(format!(
            "state error: key {text} of {} is {}, not a string, number or bool",
            crate::pyrepr::repr(name),
            crate::value::type_name(v)
        )),
        Some(_) => None,
    }
}

/// The values that select series `name` on a request (`key`: each key path's text and its
/// value), or the state error of the first that cannot ([`key_error`]).
pub fn key_values(name: &str, key: &[(&str, Option<&Value>)]) -> Result<Vec<Value>, String> {
    let mut values = Vec::with_capacity(key.len());
    for (text, v) in key {
        match (key_error(name, text, *v), v) {
            (Some(e), _) => return Err(e),
            (None, Some(v)) => values.push((*v).clone()),
            (None, None) => {}
        }
    }
    Ok(values)
}

/// Reads state series `index` (`name`, keyed by the values at its key paths, whose texts name
/// them in errors) over `range`, once per decision: the sum, or the fault's reason
/// (`state error: …`). A read the decision already made is answered from the memo without
/// looking at the key; a new one copies the key values (two or more) into buffers the memo keeps.
#[inline]
pub fn read_state(
    env: &Env<'_>,
    memo: &mut HostMemo,
    index: u32,
    name: &str,
    key: &[(&str, Option<&Value>)],
    range: Range,
) -> Result<Number, String> {
    // The key values are the request's: within one decision, the series index and the range
    // name the read. A key that cannot select a series fails before the memo is written, so
    // such a read is never in it.
    if let Some((_, _, r)) = memo.reads.iter().find(|(s, r, _)| *s == index && *r == range) {
        return r.clone();
    }
    let values: &[Value] = match key {
        // One key value is its own slice: nothing to copy.
        [(text, v)] => match (key_error(name, text, *v), v) {
            (Some(e), _) => return Err(e),
            (None, Some(v)) => std::slice::from_ref(*v),
            (None, None) => &[],
        },
        _ => {
            memo.key.truncate(key.len());
            for (i, (text, v)) in key.iter().enumerate() {
                if let Some(e) = key_error(name, text, *v) {
                    return Err(e);
                }
                if let Some(v) = v {
                    match memo.key.get_mut(i) {
                        Some(slot) => crate::state::copy_value(slot, v),
                        None => memo.key.push((*v).clone()),
                    }
                }
            }
            memo.key.get(..key.len()).unwrap_or(&[])
        }
    };
    let result = match env.state {
        None => Err("state error: no state store".to_owned()),
        Some(view) => {
            view.read(name, values, range, crate::state::micros(env.now)).map_err(|e| format!("state error: {e}"))
        }
    };
    memo.reads.push((index, range, result.clone()));
    result
}

/// Renders a value as Python's `str()` would (LANGUAGE.md §5.5): `60`, `60.0`, `True`, `None`,
/// strings as they are, lists and objects as compact JSON; `<undefined>` for an undefined term.
/// With `decimals`, a number is written with that many decimals, rounding the exact binary value
/// half to even (Python's `format(x, ".2f")`); anything else as without.
pub fn render(v: Option<&Value>, decimals: Option<u8>) -> String {
    match (v, decimals) {
        (None, _) => "<undefined>".to_owned(),
        (Some(Value::Number(n)), Some(d)) => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            format!("{:.*}", usize::from(d), f)
        }
        (Some(Value::Number(n)), None) => {
            if n.is_f64() {
                crate::pyrepr::float(n.as_f64().unwrap_or(f64::NAN))
            } else {
                n.to_string()
            }
        }
        (Some(Value::Bool(true)), _) => "True".to_owned(),
        (Some(Value::Bool(false)), _) => "False".to_owned(),
        (Some(Value::Null), _) => "None".to_owned(),
        (Some(Value::String(s)), _) => s.clone(),
        (Some(other), _) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arithmetic_and_functions() {
        assert_eq!(arith(Arith::Mul, Some(&json!(100)), Some(&json!(1.2))), Some(json!(120.0)));
        assert_eq!(arith(Arith::Add, Some(&json!(true)), Some(&json!(1))), None);
        assert_eq!(arith(Arith::Neg, Some(&json!(2)), None), Some(json!(-2)));
        assert_eq!(arith(Arith::Div, Some(&json!(1)), Some(&json!(0))), None);
        assert_eq!(func(Func::Lower, Some(&json!("AWS Marketplace"))), Some(json!("aws marketplace")));
        assert_eq!(func(Func::Len, Some(&json!("héllo"))), Some(json!(5)));
        assert_eq!(func(Func::Len, Some(&json!({"a": 1}))), Some(json!(1)));
        assert_eq!(func(Func::Abs, Some(&json!(-1.5))), Some(json!(1.5)));
        assert_eq!(func(Func::Upper, Some(&json!(1))), None);
    }

    #[test]
    fn calendar_windows() {
        let tz = jiff::tz::TimeZone::UTC;
        let now: jiff::Timestamp = "2026-11-30T10:15:00Z".parse().unwrap_or_default();
        let us = |s: &str| crate::state::micros(s.parse::<jiff::Timestamp>().unwrap_or_default());
        let period = |a: &str, b: &str| Some(Range::Period { from: us(a), until: us(b) });
        assert_eq!(window_range(Window::Hour, 0, now, &tz), period("2026-11-30T10:00:00Z", "2026-11-30T11:00:00Z"));
        assert_eq!(window_range(Window::Day, 0, now, &tz), period("2026-11-30T00:00:00Z", "2026-12-01T00:00:00Z"));
        // 2026-11-30 is a Monday.
        assert_eq!(window_range(Window::Week, 0, now, &tz), period("2026-11-30T00:00:00Z", "2026-12-07T00:00:00Z"));
        assert_eq!(window_range(Window::Month, 0, now, &tz), period("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"));
        assert_eq!(window_range(Window::Year, 0, now, &tz), period("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"));
        assert_eq!(
            window_range(Window::Last, 3600, now, &tz),
            Some(Range::Sliding { after: us("2026-11-30T09:15:00Z"), until: us("2026-11-30T10:15:00Z") })
        );
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap_or(jiff::tz::TimeZone::UTC);
        assert_eq!(window_range(Window::Day, 0, now, &berlin), period("2026-11-29T23:00:00Z", "2026-11-30T23:00:00Z"));
        assert_eq!(now_field(NowField::Weekday, now, &tz), json!(0));
        assert_eq!(now_field(NowField::Hour, now, &berlin), json!(11));
    }

    /// Kept periods give what `window_range` gives, in timezones with offset changes at midnight
    /// (Havana, and São Paulo before 2019), by half an hour (Lord Howe), a skipped day (Apia,
    /// 2011-12-30), none (UTC), and a POSIX zone whose summer time ends at 00:30 (local time
    /// goes back into the day before, so a day is not one stretch of time): around every offset
    /// change of 2011 and 2012 (times an hour to a day and a half later, then back just after and
    /// just before it), and on a walk through both years with time going back now and then.
    #[test]
    fn kept_periods_are_the_computed_ones() {
        let zones = [
            "UTC",
            "Europe/Berlin",
            "America/Havana",
            "America/Sao_Paulo",
            "Australia/Lord_Howe",
            "Pacific/Apia",
            // Summer time ends at 00:30, back to 23:30 of the day before.
            "XST3XDT,M3.2.0/0:30,M11.1.0/0:30",
        ];
        let windows = [Window::Hour, Window::Day, Window::Week, Window::Month, Window::Year];
        let start: jiff::Timestamp = "2011-01-01T00:00:00Z".parse().unwrap_or_default();
        let end: jiff::Timestamp = "2013-01-01T00:00:00Z".parse().unwrap_or_default();
        let at = |t: jiff::Timestamp, seconds: i64, nanos: i64| {
            t.checked_add(jiff::Span::new().seconds(seconds).nanoseconds(nanos)).unwrap_or(t)
        };
        for (owner, name) in zones.iter().enumerate() {
            let tz = jiff::tz::TimeZone::get(name).or_else(|_| jiff::tz::TimeZone::posix(name));
            let Ok(tz) = tz else { unreachable!("{name} is a known timezone") };
            let owner = u64::try_from(owner).unwrap_or(0) + 1;
            let mut periods = Periods::default();
            let mut check = |t: jiff::Timestamp| {
                for w in windows {
                    assert_eq!(periods.range(owner, w, 0, t, &tz), window_range(w, 0, t, &tz), "{name} {t} {w:?}");
                }
            };
            for change in tz.following(start).take_while(|c| c.timestamp() < end) {
                let c = change.timestamp();
                for (seconds, nanos) in [
                    (3_600, 0),
                    (36 * 3_600, 0),
                    (10 * 3_600, 0),
                    (1_800, 0),
                    (0, 1),
                    (0, 0),
                    (0, -1),
                    (-1_800, 0),
                    (-36 * 3_600, 0),
                    (5_400, 0),
                ] {
                    check(at(c, seconds, nanos));
                }
            }
            let mut t = start;
            for step in 0..12_000i64 {
                // Minutes or hours forward (an hour on average), now and then half a day back.
                let jump = match (step % 97, step % 3) {
                    (96, _) => -50_000,
                    (_, 0) => 6_007 + step % 13 * 601,
                    _ => 599,
                };
                t = at(t, jump, step % 3 * 333);
                check(t);
            }
        }
    }

    #[test]
    fn rendering_as_python() {
        assert_eq!(render(Some(&json!(60)), None), "60");
        assert_eq!(render(Some(&json!(60.0)), None), "60.0");
        assert_eq!(render(Some(&json!(60)), Some(2)), "60.00");
        assert_eq!(render(Some(&json!(2.675)), Some(2)), "2.67");
        assert_eq!(render(Some(&json!(true)), None), "True");
        assert_eq!(render(Some(&json!(null)), None), "None");
        assert_eq!(render(Some(&json!("aws")), Some(2)), "aws");
        assert_eq!(render(Some(&json!([1, "a"])), None), "[1,\"a\"]");
        assert_eq!(render(None, None), "<undefined>");
    }
}
