//! From a satisfying assignment to a concrete request context, and the search that keeps only
//! requests the interpreter agrees with.
//!
//! Each path's region gives a value (its witness; nothing for "missing"); values are placed at
//! their paths, ancestors first, building objects (or lists, for a list region) on the way;
//! "another list/object" regions take the elements and keys their opaque variables ask for and
//! are kept different from every constant. The root keys `subject` and `resource` go to the
//! request's own keys when they are objects, and `action` when it is a string — which is also
//! where the card-scope gate reads them — and every other root key goes to `data`.

use super::bdd::{Bdd, NodeId};
use super::domain::{Assignment, Domain, Kind, OpaqueKey};
use crate::ir::AtomOp;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use verdict_runtime::value::deep_eq;

/// Paths longer than this are not placed in witnesses.
const MAX_WITNESS_DEPTH: usize = 128;

/// A value under construction.
#[derive(Debug)]
enum Slot {
    Leaf(Value),
    Obj(Vec<(String, Slot)>, Option<usize>),
    List(BTreeMap<u64, Slot>, Option<usize>),
}

fn child<'s>(slot: &'s mut Slot, seg: &str) -> Option<&'s mut Slot> {
    match slot {
        Slot::Leaf(_) => None,
        Slot::Obj(entries, _) => {
            let pos = match entries.iter().position(|(k, _)| k == seg) {
                Some(p) => p,
                None => {
                    entries.push((seg.to_owned(), Slot::Obj(Vec::new(), None)));
                    entries.len() - 1
                }
            };
            entries.get_mut(pos).map(|(_, s)| s)
        }
        Slot::List(items, _) => {
            if seg.is_empty() || !seg.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let i: u64 = seg.parse().ok()?;
            if i > 4096 {
                return None;
            }
            Some(items.entry(i).or_insert_with(|| Slot::Obj(Vec::new(), None)))
        }
    }
}

/// Puts `value` at `segs`, creating objects on the way. Paths come ancestors first, so the slot
/// is new (an empty object made on the way is replaced); a step through a scalar, or a non-index
/// step into a list, cannot be taken and the value is dropped (the structure constraint rules
/// those assignments out, and the interpreter checks every witness anyway).
fn place(root: &mut Slot, segs: &[String], value: Slot) {
    let Some((last, init)) = segs.split_last() else { return };
    let mut cur = root;
    for seg in init {
        match child(cur, seg) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(slot) = child(cur, last)
        && matches!(slot, Slot::Obj(e, None) if e.is_empty())
    {
        *slot = value;
    }
}

fn finish(slot: Slot, dom: &Domain, asg: &Assignment) -> Value {
    // INVARIANT: recursion depth is the longest path placed, at most `MAX_WITNESS_DEPTH`.
    match slot {
        Slot::Leaf(v) => v,
        Slot::Obj(entries, p) => {
            let mut m = Map::new();
            for (k, s) in entries {
                m.insert(k, finish(s, dom, asg));
            }
            if let Some(p) = p {
                for (key, on) in &asg.opaque {
                    if let (OpaqueKey::Key(q, k), true) = (key, on)
                        && *q == p
                        && !m.contains_key(k)
                    {
                        m.insert(k.clone(), Value::Null);
                    }
                }
                let (_, objs) = dom.containers(p);
                let mut filler = String::from("~");
                while objs.iter().any(|o| deep_eq(o, &Value::Object(m.clone()))) {
                    while m.contains_key(&filler) {
                        filler.push('~');
                    }
                    m.insert(filler.clone(), Value::Null);
                }
            }
            Value::Object(m)
        }
        Slot::List(items, p) => {
            let len = items.keys().next_back().map_or(0, |i| i + 1);
            let mut out: Vec<Value> = Vec::new();
            let mut items = items;
            for i in 0..len {
                out.push(items.remove(&i).map_or(Value::Null, |s| finish(s, dom, asg)));
            }
            if let Some(p) = p {
                for (key, on) in &asg.opaque {
                    if let (OpaqueKey::Member(q, c), true) = (key, on)
                        && *q == p
                        && let Some(v) = dom.consts.get(*c)
                        && !out.iter().any(|x| deep_eq(x, v))
                    {
                        out.push(v.clone());
                    }
                }
                let (lists, _) = dom.containers(p);
                while lists.iter().any(|l| deep_eq(l, &Value::Array(out.clone()))) {
                    out.push(Value::String("~".into()));
                }
            }
            Value::Array(out)
        }
    }
}

fn get<'v>(v: &'v Value, segs: &[String]) -> Option<&'v Value> {
    let mut cur = v;
    for s in segs {
        cur = verdict_runtime::request::step(cur, s)?;
    }
    Some(cur)
}

/// Sets the value at `segs`, creating objects on the way; a step through a scalar or a missing
/// list index is not taken.
fn set(v: &mut Value, segs: &[String], new: Value) {
    let Some((last, init)) = segs.split_last() else { return };
    let mut cur = v;
    for s in init {
        let next = match cur {
            Value::Object(m) => m.entry(s.clone()).or_insert_with(|| Value::Object(Map::new())),
            Value::Array(items) => match s.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                Some(x) => x,
                None => return,
            },
            _ => return,
        };
        cur = next;
    }
    match cur {
        Value::Object(m) => {
            m.insert(last.clone(), new);
        }
        Value::Array(items) => {
            if let Some(x) = last.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                *x = new;
            }
        }
        _ => {}
    }
}

/// The request context of an assignment.
pub fn request(dom: &Domain, asg: &Assignment) -> Value {
    let mut order: Vec<usize> = (0..dom.paths.len()).collect();
    order.sort_by_key(|&p| dom.paths.get(p).map_or(0, |pd| pd.segments.len()));
    let mut root = Slot::Obj(Vec::new(), None);
    for p in order {
        let (Some(pd), Some(&r)) = (dom.paths.get(p), asg.regions.get(p)) else { continue };
        // INVARIANT: `finish` recurses once per path step; deeper paths are left out of the
        // witness (the interpreter then refuses it if they mattered).
        if pd.segments.len() > MAX_WITNESS_DEPTH {
            continue;
        }
        let Some(region) = pd.regions.get(r) else { continue };
        let slot = match (region.kind, &region.value) {
            (Kind::Missing, _) | (_, None) => continue,
            (Kind::ListOther, _) => Slot::List(BTreeMap::new(), Some(p)),
            (Kind::ObjOther, _) => Slot::Obj(Vec::new(), Some(p)),
            (_, Some(v)) => Slot::Leaf(v.clone()),
        };
        place(&mut root, &pd.segments, slot);
    }
    let mut top = finish(root, dom, asg);
    // Path-vs-path equalities the assignment wants: give both paths the same value.
    for (key, on) in &asg.opaque {
        if let (OpaqueKey::PathPath(AtomOp::Eq, p, q), true) = (key, on)
            && let (Some(pp), Some(qp)) = (dom.paths.get(*p), dom.paths.get(*q))
            && let Some(v) = get(&top, &pp.segments).cloned()
        {
            set(&mut top, &qp.segments, v);
        }
    }
    let Value::Object(top) = top else { return Value::Object(Map::new()) };
    let mut req = Map::new();
    let mut data = Map::new();
    for (k, v) in top {
        let own = matches!((k.as_str(), &v), ("subject" | "resource", Value::Object(_)) | ("action", Value::String(_)));
        if own {
            req.insert(k, v);
        } else {
            data.insert(k, v);
        }
    }
    if !data.is_empty() {
        req.insert("data".into(), Value::Object(data));
    }
    Value::Object(req)
}

fn prefer(attempt: usize, var: u32) -> bool {
    match attempt {
        0 => false,
        1 => true,
        k => {
            let mut h =
                (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(var).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
            h ^= h >> 29;
            h & 1 == 1
        }
    }
}

/// Up to `attempts` requests from `set` (varying the branch choices), the first that `accept`
/// takes.
pub fn search(
    bdd: &Bdd,
    dom: &Domain,
    set: NodeId,
    attempts: usize,
    mut accept: impl FnMut(&Value) -> bool,
) -> Option<Value> {
    let mut tried: Vec<Value> = Vec::new();
    for k in 0..attempts {
        let path = bdd.sat_one(set, |v| prefer(k, v))?;
        let req = request(dom, &dom.decode(&path));
        if tried.contains(&req) {
            continue;
        }
        if accept(&req) {
            return Some(req);
        }
        tried.push(req);
    }
    None
}
