//! YAML (1.2 core schema) and JSON loading into the spanned [`Node`] tree.
//!
//! Built from saphyr-parser's event stream with an explicit stack: no recursion, nesting beyond
//! [`MAX_NODE_DEPTH`] refused, aliases expanded under a node budget (no "billion laughs"),
//! duplicate keys refused. JSON files are first checked by serde_json, so JSON syntax is strict
//! and its errors are JSON's.

use crate::diagnostic::{Code, Diagnostic};
use crate::tree::{Key, Node, NodeKind, number};
use saphyr_parser::{Event, Parser, ScalarStyle, Span as YSpan};
use std::collections::HashMap;
use verdict_grammar::ast::Span;

/// Deeper documents are refused outright (conditions are limited to 128 levels later on).
pub const MAX_NODE_DEPTH: usize = 1024;
/// At most this many nodes after alias expansion.
pub const MAX_NODES: usize = 4_000_000;

/// Maps saphyr's character indices to byte offsets.
struct Offsets {
    bytes: Option<Vec<u32>>,
    len: u32,
}

impl Offsets {
    fn new(text: &str) -> Offsets {
        let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
        if text.is_ascii() {
            return Offsets { bytes: None, len };
        }
        let mut v: Vec<u32> = text.char_indices().map(|(i, _)| u32::try_from(i).unwrap_or(u32::MAX)).collect();
        v.push(len);
        Offsets { bytes: Some(v), len }
    }

    fn at(&self, char_index: usize) -> u32 {
        match &self.bytes {
            None => u32::try_from(char_index).unwrap_or(u32::MAX).min(self.len),
            Some(v) => v.get(char_index).copied().unwrap_or(self.len),
        }
    }

    fn span(&self, s: &YSpan) -> Span {
        Span { start: self.at(s.start.index()), end: self.at(s.end.index()).max(self.at(s.start.index())) }
    }
}

enum Frame {
    Seq { items: Vec<Node>, start: Span, anchor: usize },
    Map { entries: Vec<(Key, Node)>, pending: Option<Key>, start: Span, anchor: usize },
}

/// Loads a JSON text: strict JSON syntax (serde_json), then the spanned tree.
pub fn load_json(text: &str) -> Result<Node, Diagnostic> {
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        let offset = offset_of(text, e.line(), e.column());
        let mut span = Span::new(offset, offset);
        let msg = e.to_string();
        let mut msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
        // serde_json says "expected value" or "key must be a string" at the `]` or `}` after a
        // trailing comma.
        let before = text.get(..offset).unwrap_or("").trim_end();
        if before.ends_with(',') && text.get(offset..).is_some_and(|r| r.starts_with([']', '}'])) {
            msg = "trailing comma".to_owned();
            span = Span::new(before.len().saturating_sub(1), before.len());
        }
        return Err(Diagnostic::error(Code::Syntax, span, format!("invalid JSON: {msg}")));
    }
    load(text, "JSON")
}

/// The byte offset of serde_json's 1-based line and column (column counts bytes).
pub(crate) fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let mut start = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return (start + column.saturating_sub(1)).min(text.len());
        }
        start += l.len();
    }
    text.len()
}

/// Loads a YAML text holding one document.
pub fn load_yaml(text: &str) -> Result<Node, Diagnostic> {
    load(text, "YAML")
}

/// Loads a YAML (or already checked JSON) text; `form` names it in syntax errors.
fn load(text: &str, form: &str) -> Result<Node, Diagnostic> {
    let offsets = Offsets::new(text);
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut nodes = 0usize;
    let mut documents = 0usize;
    while let Some(next) = parser.next_event() {
        let (event, yspan) = match next {
            Ok(e) => e,
            Err(e) => {
                let at = offsets.at(e.marker().index());
                let span = Span { start: at, end: at };
                // saphyr counts flow nesting (`[`, `{`) in a byte.
                if e.info() == "recursion limit exceeded" {
                    return Err(Diagnostic::error(
                        Code::TooDeep,
                        span,
                        format!("{form} document nested deeper than {} levels of `[` and `{{`", u8::MAX),
                    ));
                }
                return Err(Diagnostic::error(Code::Syntax, span, format!("invalid {form}: {}", e.info())));
            }
        };
        let span = offsets.span(&yspan);
        let complete: Option<(Node, usize)> = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => None,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(Diagnostic::error(Code::Syntax, span, "expected a single YAML document"));
                }
                None
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some(n) => {
                    nodes = nodes.saturating_add(count(n));
                    if nodes > MAX_NODES {
                        return Err(Diagnostic::error(
                            Code::TooDeep,
                            span,
                            "document too large after expanding aliases",
                        ));
                    }
                    Some((Node { kind: n.kind.clone(), span }, 0))
                }
                None => return Err(Diagnostic::error(Code::Syntax, span, "unknown YAML alias")),
            },
            Event::Scalar(value, style, anchor, tag) => {
                nodes += 1;
                let tag = tag.map(|t| format!("{}{}", t.handle, t.suffix));
                Some((scalar(&value, style, tag.as_deref(), span)?, anchor))
            }
            Event::SequenceStart(anchor, tag) => {
                check_tag(tag.map(|t| format!("{}{}", t.handle, t.suffix)).as_deref(), "seq", span)?;
                stack.push(Frame::Seq { items: Vec::new(), start: span, anchor });
                if stack.len() > MAX_NODE_DEPTH {
                    return Err(too_deep(span));
                }
                None
            }
            Event::MappingStart(anchor, tag) => {
                check_tag(tag.map(|t| format!("{}{}", t.handle, t.suffix)).as_deref(), "map", span)?;
                stack.push(Frame::Map { entries: Vec::new(), pending: None, start: span, anchor });
                if stack.len() > MAX_NODE_DEPTH {
                    return Err(too_deep(span));
                }
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq { items, start, anchor }) => {
                    nodes += 1;
                    Some((Node::new(NodeKind::Seq(items), start.cover(span)), anchor))
                }
                _ => {
                    return Err(Diagnostic::error(Code::Syntax, span, "unbalanced YAML sequence"));
                }
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map { entries, start, anchor, .. }) => {
                    nodes += 1;
                    Some((Node::new(NodeKind::Map(entries), start.cover(span)), anchor))
                }
                _ => {
                    return Err(Diagnostic::error(Code::Syntax, span, "unbalanced YAML mapping"));
                }
            },
        };
        if nodes > MAX_NODES {
            return Err(Diagnostic::error(Code::TooDeep, span, "document too large"));
        }
        let Some((node, anchor)) = complete else {
            continue;
        };
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, pending, .. }) => match pending.take() {
                None => {
                    let text = match &node.kind {
                        NodeKind::Str(s) => s.clone(),
                        NodeKind::Int(i) => i.to_string(),
                        NodeKind::UInt(u) => u.to_string(),
                        NodeKind::Float(f) => f.to_string(),
                        NodeKind::Bool(b) => b.to_string(),
                        NodeKind::Null => "null".to_owned(),
                        _ => {
                            return Err(Diagnostic::error(Code::WrongType, node.span, "mapping keys must be strings"));
                        }
                    };
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.text == text) {
                        return Err(Diagnostic::error(Code::DuplicateId, node.span, format!("duplicate key `{text}`"))
                            .with_label(first.span, "first given here"));
                    }
                    *pending = Some(Key { text, span: node.span });
                }
                Some(key) => entries.push((key, node)),
            },
        }
    }
    Ok(root.unwrap_or(Node::new(NodeKind::Null, Span::default())))
}

fn count(n: &Node) -> usize {
    let mut total = 0;
    let mut work = vec![n];
    while let Some(n) = work.pop() {
        total += 1;
        match &n.kind {
            NodeKind::Seq(v) => work.extend(v.iter()),
            NodeKind::Map(v) => work.extend(v.iter().map(|(_, n)| n)),
            _ => {}
        }
    }
    total
}

fn too_deep(span: Span) -> Diagnostic {
    Diagnostic::error(Code::TooDeep, span, format!("document nested deeper than {MAX_NODE_DEPTH} levels"))
}

fn check_tag(tag: Option<&str>, want: &str, span: Span) -> Result<(), Diagnostic> {
    match tag {
        None => Ok(()),
        Some(t) if t == format!("tag:yaml.org,2002:{want}") || t == format!("!!{want}") => Ok(()),
        Some(t) => Err(Diagnostic::error(Code::BadValue, span, format!("unsupported YAML tag `{t}`"))),
    }
}

/// Resolves a scalar by the YAML 1.2 core schema (quoted scalars are strings).
fn scalar(value: &str, style: ScalarStyle, tag: Option<&str>, span: Span) -> Result<Node, Diagnostic> {
    let tag = tag.map(|t| t.trim_start_matches("tag:yaml.org,2002:").trim_start_matches("!!"));
    let bad = |what: &str| Diagnostic::error(Code::BadValue, span, format!("`{value}` is not a valid {what}"));
    let kind = match tag {
        Some("str") => NodeKind::Str(value.to_owned()),
        Some("null") => NodeKind::Null,
        Some("bool") => core_bool(value).map(NodeKind::Bool).ok_or_else(|| bad("boolean"))?,
        Some("int") => core_int(value).ok_or_else(|| bad("integer"))?,
        Some("float") => core_float(value).or_else(|| core_int(value)).ok_or_else(|| bad("float"))?,
        Some(other) => {
            return Err(Diagnostic::error(Code::BadValue, span, format!("unsupported YAML tag `{other}`")));
        }
        None if style != ScalarStyle::Plain => NodeKind::Str(value.to_owned()),
        None => {
            if matches!(value, "" | "~" | "null" | "Null" | "NULL") {
                NodeKind::Null
            } else if let Some(b) = core_bool(value) {
                NodeKind::Bool(b)
            } else if let Some(n) = core_int(value).or_else(|| core_float(value)) {
                n
            } else {
                NodeKind::Str(value.to_owned())
            }
        }
    };
    Ok(Node::new(kind, span))
}

fn core_bool(v: &str) -> Option<bool> {
    match v {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

fn core_int(v: &str) -> Option<NodeKind> {
    if let Some(oct) = v.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).ok().map(NodeKind::Int);
    }
    if let Some(hex) = v.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok().map(NodeKind::Int);
    }
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v = v.strip_prefix('+').unwrap_or(v);
    number(v).or_else(|| v.parse::<f64>().ok().map(NodeKind::Float))
}

fn core_float(v: &str) -> Option<NodeKind> {
    match v {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Some(NodeKind::Float(f64::INFINITY));
        }
        "-.inf" | "-.Inf" | "-.INF" => return Some(NodeKind::Float(f64::NEG_INFINITY)),
        ".nan" | ".NaN" | ".NAN" => return Some(NodeKind::Float(f64::NAN)),
        _ => {}
    }
    let body = v.strip_prefix(['-', '+']).unwrap_or(v);
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (body.get(..i)?, Some(body.get(i + 1..)?)),
        None => (body, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((a, b)) => {
            a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
                && !(a.is_empty() && b.is_empty())
        }
        None => !mantissa.is_empty() && mantissa.bytes().all(|c| c.is_ascii_digit()),
    };
    let exp_ok = exp.is_none_or(|e| {
        let d = e.strip_prefix(['-', '+']).unwrap_or(e);
        !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit())
    });
    if !mantissa_ok || !exp_ok {
        return None;
    }
    v.parse::<f64>().ok().map(NodeKind::Float)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_schema() {
        let n = load_yaml("a: yes\nb: 1\nc: 1.5\nd: ~\ne: '1'\nf: 0x1f\ng: 1e3\n").ok();
        let Some(Node { kind: NodeKind::Map(m), .. }) = n else { unreachable!() };
        let kinds: Vec<String> = m.iter().map(|(k, v)| format!("{}={:?}", k.text, v.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                "a=Str(\"yes\")",
                "b=Int(1)",
                "c=Float(1.5)",
                "d=Null",
                "e=Str(\"1\")",
                "f=Int(31)",
                "g=Float(1000.0)"
            ]
        );
    }

    #[test]
    fn deep_and_duplicate() {
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(load_yaml(&deep).is_err());
        assert!(load_json(&deep).is_err());
        assert!(load_yaml("a: 1\na: 2\n").is_err());
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n";
        assert!(load_yaml(bomb).is_err());
    }
}
