//! The inputs a decision read, for its audit line (PolicyGate's "minimal decision-relevant
//! context"): the request context pruned to the paths the bundle reads, with their values, so
//! that a line can be replayed (`verdict replay`) without logging whole requests.
//!
//! A bundle's [`Inputs`] are the paths of its path table (every path a condition, a term, a
//! state key or a reason template reads) plus what a Decision Card's scope reads (`action`,
//! `resource.vendor_id`), kept as a trie. [`Inputs::prune`] copies, along each path, the
//! objects of the request's merged view (LANGUAGE.md §1) with only the keys the paths go
//! through, and the whole value where a path ends or reaches a non-object (a list is copied
//! whole: its indexes must not move). A path that does not resolve leaves nothing, so it is
//! missing in the pruned context too.
//!
//! INVARIANT: for every path `p` of the bundle, `prune(r).lookup(p) == r.lookup(p)`, and the
//! card scope reads the same `action` and `resource.vendor_id`: the bundle decides the pruned
//! context exactly as it decided the request (checked by `server/tests/decision_logs.rs`, which
//! replays every logged input).

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use verdict_runtime::request::{Request, join_field};

/// Below this depth the pruning copies whole values (the context stays exact, only larger), so
/// no bundle makes it recurse deeply.
const MAX_DEPTH: usize = 32;

/// The paths a bundle reads, as a trie over path segments.
#[derive(Debug, Default)]
pub struct Inputs {
    root: Node,
    /// Each path in the reference's field form (`a.b`, dots in keys escaped), sorted.
    texts: Vec<String>,
}

#[derive(Debug, Default)]
struct Node {
    /// A path ends here: the whole value is read.
    whole: bool,
    children: BTreeMap<String, Node>,
}

impl Inputs {
    /// The trie of these paths (each a list of segments; empty ones are ignored).
    pub fn new<'p>(paths: impl IntoIterator<Item = &'p [String]>) -> Inputs {
        let mut inputs = Inputs::default();
        for path in paths {
            if path.is_empty() {
                continue;
            }
            inputs.texts.push(join_field(path));
            let mut node = &mut inputs.root;
            for (depth, seg) in path.iter().enumerate() {
                node = node.children.entry(seg.clone()).or_default();
                if depth + 1 == MAX_DEPTH {
                    break;
                }
            }
            node.whole = true;
        }
        inputs.texts.sort();
        inputs.texts.dedup();
        inputs
    }

    /// The paths, in the reference's field form, sorted.
    pub fn texts(&self) -> &[String] {
        &self.texts
    }

    /// The request context pruned to these paths: `subject`, `action` and `resource` when the
    /// request has them and a path reads them, `data` with the other roots a path reads (the
    /// value of [`Inputs::pruned`], which the audit line writes without building it).
    pub fn prune(&self, req: &Request) -> Map<String, Value> {
        match serde_json::to_value(self.pruned(req)) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        }
    }
}

impl Inputs {
    /// The pruned request context, serialized straight from the request: a root with an own
    /// value as it is, the others under `data`; inside, an object that no path reads whole keeps
    /// only the keys the paths go through.
    pub fn pruned<'a>(&'a self, req: &'a Request) -> Pruned<'a> {
        Pruned { inputs: self, req }
    }
}

/// The pruned request context of [`Inputs::pruned`], ready to serialize.
#[derive(Debug, Clone, Copy)]
pub struct Pruned<'a> {
    inputs: &'a Inputs,
    req: &'a Request,
}

impl<'a> Pruned<'a> {
    /// The request's own `subject`, `action` or `resource` for a root key that names one.
    fn own(&self, key: &str) -> Option<&'a Value> {
        match key {
            "subject" => self.req.subject.as_ref(),
            "action" => self.req.action.as_ref(),
            "resource" => self.req.resource.as_ref(),
            _ => None,
        }
    }

    /// The roots read from `data` (those without an own value), with their values.
    fn data(&self) -> impl Iterator<Item = (&'a String, &'a Value, &'a Node)> + '_ {
        self.inputs
            .root
            .children
            .iter()
            .filter(|(key, _)| self.own(key).is_none())
            .filter_map(|(key, node)| self.req.data.get(key).map(|v| (key, v, node)))
    }
}

impl serde::Serialize for Pruned<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        for (key, node) in &self.inputs.root.children {
            if let Some(v) = self.own(key) {
                m.serialize_entry(key, &Sub { v, node, depth: 1 })?;
            }
        }
        if self.data().next().is_some() {
            m.serialize_entry("data", &Data(*self))?;
        }
        m.end()
    }
}

/// The `data` object of a pruned context.
struct Data<'a>(Pruned<'a>);

impl serde::Serialize for Data<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.data().map(|(key, v, node)| (key, Sub { v, node, depth: 1 })))
    }
}

/// One value of a pruned context, as it serializes: if it is an object that no path reads
/// whole, only the keys the paths go through.
struct Sub<'a> {
    v: &'a Value,
    node: &'a Node,
    depth: usize,
}

impl serde::Serialize for Sub<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.v {
            Value::Object(m) if !self.node.whole && self.depth < MAX_DEPTH => {
                s.collect_map(self.node.children.iter().filter_map(|(key, child)| {
                    m.get(key).map(|v| (key, Sub { v, node: child, depth: self.depth + 1 }))
                }))
            }
            v => v.serialize(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(texts: &[&str]) -> Vec<Vec<String>> {
        texts.iter().map(|t| verdict_runtime::request::split_field(t)).collect()
    }

    fn inputs(texts: &[&str]) -> Inputs {
        let p = paths(texts);
        Inputs::new(p.iter().map(Vec::as_slice))
    }

    /// The pruned context, checked to serialize as [`Inputs::pruned`] does (same text, same
    /// key order).
    fn pruned(i: &Inputs, req: &Request) -> Value {
        let built = Value::Object(i.prune(req));
        let streamed = serde_json::to_string(&i.pruned(req)).unwrap_or_default();
        assert_eq!(streamed, built.to_string());
        built
    }

    #[test]
    fn keeps_only_what_the_paths_read() {
        let req = Request::from_value(json!({
            "subject": {"role": "admin", "name": "Ann", "team": {"id": 7, "size": 3}},
            "action": "read",
            "resource": {"owner": "bob", "tags": ["a", "b"]},
            "data": {"amount": 12, "note": "x", "region": {"code": "eu", "zone": 2}}
        }))
        .unwrap_or_default();
        let i = inputs(&["subject.role", "subject.team.id", "resource.tags.1", "amount", "region", "missing.x"]);
        assert_eq!(
            pruned(&i, &req),
            json!({
                "subject": {"role": "admin", "team": {"id": 7}},
                "resource": {"tags": ["a", "b"]},
                "data": {"amount": 12, "region": {"code": "eu", "zone": 2}}
            })
        );
        assert_eq!(i.texts(), ["amount", "missing.x", "region", "resource.tags.1", "subject.role", "subject.team.id"]);
    }

    #[test]
    fn follows_the_merged_view() {
        // Without an own `subject`, `subject.x` reads `data.subject.x`.
        let req =
            Request::from_value(json!({"data": {"subject": {"x": 1, "y": 2}, "action": "w"}})).unwrap_or_default();
        let i = inputs(&["subject.x", "action"]);
        let pruned = pruned(&i, &req);
        assert_eq!(pruned, json!({"data": {"subject": {"x": 1}, "action": "w"}}));
        let back = Request::from_value(pruned).unwrap_or_default();
        for p in paths(&["subject.x", "action"]) {
            assert_eq!(back.lookup(&p), req.lookup(&p));
        }
    }

    #[test]
    fn a_prefix_read_whole_wins_and_escaped_dots_stay_one_key() {
        let req = Request::from_value(json!({"data": {"a": {"b": 1, "c": 2}, "odd.key": 3, "odd": {"key": 4}}}))
            .unwrap_or_default();
        let i = inputs(&["a.b", "a", "odd\\.key"]);
        assert_eq!(pruned(&i, &req), json!({"data": {"a": {"b": 1, "c": 2}, "odd.key": 3}}));
    }
}
