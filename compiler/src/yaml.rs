//! YAML (1.2 core schema) and JSON loading into the spanned [`Node`] tree.
//!
//! Built from saphyr-parser's event stream with an explicit stack: no recursion, nesting beyond
//! [`MAX_NODE_DEPTH`] refused, texts over [`MAX_SOURCE_BYTES`] refused before parsing, aliases
//! expanded under a budget of nodes and of bytes (no "billion laughs"), duplicate keys refused
//! (in time linear in the number of keys). JSON files are first checked by serde_json, so JSON
//! syntax is strict and its errors are JSON's. A leading byte-order mark is skipped in both.

use crate::diagnostic::{Code, Diagnostic};
use crate::source::{MAX_SOURCE_BYTES, strip_bom, too_large};
use crate::tree::{Key, Node, NodeKind, number};
use saphyr_parser::{Event, Parser, ScalarStyle, Span as YSpan};
use std::collections::HashMap;
use verdict_grammar::ast::Span;

/// Deeper documents are refused outright (conditions are limited to 128 levels later on).
pub const MAX_NODE_DEPTH: usize = 1024;
/// At most this many nodes after alias expansion.
pub const MAX_NODES: usize = 4_000_000;
/// At most this many bytes after alias expansion, counted as the bytes of every scalar (keys
/// included) plus one per node: a document may not expand beyond what could be written out
/// without aliases.
pub const MAX_EXPANDED_BYTES: usize = MAX_SOURCE_BYTES;

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

/// The expanded size of a node: nodes, and bytes as [`MAX_EXPANDED_BYTES`] counts them.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    nodes: usize,
    bytes: usize,
}

impl Size {
    fn add(&mut self, other: Size) {
        self.nodes = self.nodes.saturating_add(other.nodes);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

/// A sequence or mapping being read, with the size of what it holds so far.
enum Frame {
    Seq {
        items: Vec<Node>,
        start: Span,
        anchor: usize,
        size: Size,
    },
    Map {
        entries: Vec<(Key, Node)>,
        /// Each key given so far and where: duplicates are found in constant time.
        keys: HashMap<String, Span>,
        pending: Option<Key>,
        start: Span,
        anchor: usize,
        size: Size,
    },
}

/// Loads a JSON text: strict JSON syntax (serde_json), then the spanned tree.
pub fn load_json(text: &str) -> Result<Node, Diagnostic> {
    load_json_with(text, &|| {})
}

/// [`load_json`], calling `checkpoint` every few thousand events (see [`crate::compile_with`]).
pub fn load_json_with(text: &str, checkpoint: &dyn Fn()) -> Result<Node, Diagnostic> {
    if let Some(d) = too_large(text.len()) {
        return Err(d);
    }
    let (body, bom) = strip_bom(text);
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(body) {
        let offset = bom + offset_of(body, e.line(), e.column());
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
    checkpoint();
    load(text, "JSON", checkpoint)
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
    load(text, "YAML", &|| {})
}

/// [`load_yaml`], calling `checkpoint` every few thousand events (see [`crate::compile_with`]).
pub fn load_yaml_with(text: &str, checkpoint: &dyn Fn()) -> Result<Node, Diagnostic> {
    load(text, "YAML", checkpoint)
}

/// How many parser events are read between two calls of a checkpoint.
const CHECKPOINT_EVENTS: usize = 4096;

/// Loads a YAML (or already checked JSON) text; `form` names it in syntax errors.
fn load(text: &str, form: &str, checkpoint: &dyn Fn()) -> Result<Node, Diagnostic> {
    if let Some(d) = too_large(text.len()) {
        return Err(d);
    }
    let offsets = Offsets::new(text);
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, (Node, Size)> = HashMap::new();
    let mut root: Option<Node> = None;
    // What the document holds so far, aliases expanded.
    let mut total = Size::default();
    let mut documents = 0usize;
    let mut events = 0usize;
    while let Some(next) = parser.next_event() {
        events += 1;
        if events.is_multiple_of(CHECKPOINT_EVENTS) {
            checkpoint();
        }
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
        let complete: Option<(Node, usize, Size)> = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => None,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(Diagnostic::error(Code::Syntax, span, "expected a single YAML document"));
                }
                None
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some((n, size)) => {
                    total.add(*size);
                    if total.nodes > MAX_NODES || total.bytes > MAX_EXPANDED_BYTES {
                        return Err(Diagnostic::error(
                            Code::TooLarge,
                            span,
                            format!(
                                "document too large after expanding aliases (over {MAX_NODES} nodes or {MAX_EXPANDED_BYTES} bytes)"
                            ),
                        ));
                    }
                    Some((Node { kind: n.kind.clone(), span }, 0, *size))
                }
                None => return Err(Diagnostic::error(Code::Syntax, span, "unknown YAML alias")),
            },
            Event::Scalar(value, style, anchor, tag) => {
                let size = Size { nodes: 1, bytes: value.len().saturating_add(1) };
                total.add(size);
                let tag = tag.map(|t| format!("{}{}", t.handle, t.suffix));
                Some((scalar(&value, style, tag.as_deref(), span)?, anchor, size))
            }
            Event::SequenceStart(anchor, tag) => {
                check_tag(tag.map(|t| format!("{}{}", t.handle, t.suffix)).as_deref(), "seq", span)?;
                stack.push(Frame::Seq { items: Vec::new(), start: span, anchor, size: Size::default() });
                if stack.len() > MAX_NODE_DEPTH {
                    return Err(too_deep(span));
                }
                None
            }
            Event::MappingStart(anchor, tag) => {
                check_tag(tag.map(|t| format!("{}{}", t.handle, t.suffix)).as_deref(), "map", span)?;
                stack.push(Frame::Map {
                    entries: Vec::new(),
                    keys: HashMap::new(),
                    pending: None,
                    start: span,
                    anchor,
                    size: Size::default(),
                });
                if stack.len() > MAX_NODE_DEPTH {
                    return Err(too_deep(span));
                }
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq { items, start, anchor, mut size }) => {
                    let own = Size { nodes: 1, bytes: 1 };
                    total.add(own);
                    size.add(own);
                    Some((Node::new(NodeKind::Seq(items), start.cover(span)), anchor, size))
                }
                _ => {
                    return Err(Diagnostic::error(Code::Syntax, span, "unbalanced YAML sequence"));
                }
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map { entries, start, anchor, mut size, .. }) => {
                    let own = Size { nodes: 1, bytes: 1 };
                    total.add(own);
                    size.add(own);
                    Some((Node::new(NodeKind::Map(entries), start.cover(span)), anchor, size))
                }
                _ => {
                    return Err(Diagnostic::error(Code::Syntax, span, "unbalanced YAML mapping"));
                }
            },
        };
        if total.nodes > MAX_NODES || total.bytes > MAX_EXPANDED_BYTES {
            return Err(Diagnostic::error(
                Code::TooLarge,
                span,
                format!("document too large (over {MAX_NODES} nodes or {MAX_EXPANDED_BYTES} bytes)"),
            ));
        }
        let Some((node, anchor, size)) = complete else {
            continue;
        };
        if anchor != 0 {
            anchors.insert(anchor, (node.clone(), size));
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, size: outer, .. }) => {
                outer.add(size);
                items.push(node);
            }
            Some(Frame::Map { entries, keys, pending, size: outer, .. }) => {
                outer.add(size);
                match pending.take() {
                    None => {
                        let text = match &node.kind {
                            NodeKind::Str(s) => s.clone(),
                            NodeKind::Int(i) => i.to_string(),
                            NodeKind::UInt(u) => u.to_string(),
                            NodeKind::Float(f) => f.to_string(),
                            NodeKind::Bool(b) => b.to_string(),
                            NodeKind::Null => "null".to_owned(),
                            _ => {
                                return Err(Diagnostic::error(
                                    Code::WrongType,
                                    node.span,
                                    "mapping keys must be strings",
                                ));
                            }
                        };
                        if let Some(first) = keys.get(&text) {
                            return Err(Diagnostic::error(
                                Code::DuplicateId,
                                node.span,
                                format!("duplicate key `{text}`"),
                            )
                            .with_label(*first, "first given here"));
                        }
                        keys.insert(text.clone(), node.span);
                        *pending = Some(Key { text, span: node.span });
                    }
                    Some(key) => entries.push((key, node)),
                }
            }
        }
    }
    Ok(root.unwrap_or(Node::new(NodeKind::Null, Span::default())))
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
