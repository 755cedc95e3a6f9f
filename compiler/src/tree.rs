//! A spanned, format-neutral document tree. YAML and JSON files load into it (see [`crate::yaml`]),
//! and `.verdict` files are mapped onto it (see [`crate::dsl`]), so one lowering checks the keys
//! and types of every source form.

use crate::diagnostic::{Code, Diagnostic};
use serde_json::{Map, Number, Value};
use verdict_grammar::ast::{Expr, MAX_DEPTH, Span};

#[derive(Debug, Clone)]
pub struct Node {
    pub kind: NodeKind,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum NodeKind {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
    /// A bare word of the DSL (`deny`, `first`): accepted where a name is expected.
    Word(String),
    /// A condition already parsed (DSL `when`, or a `let`).
    Cond(Box<Expr>),
}

#[derive(Debug, Clone)]
pub struct Key {
    pub text: String,
    pub span: Span,
}

impl Node {
    pub fn new(kind: NodeKind, span: Span) -> Node {
        Node { kind, span }
    }

    /// What the node is, for "expected X, found Y" messages.
    pub fn describe(&self) -> &'static str {
        match self.kind {
            NodeKind::Null => "null",
            NodeKind::Bool(_) => "a boolean",
            NodeKind::Int(_) | NodeKind::UInt(_) | NodeKind::Float(_) => "a number",
            NodeKind::Str(_) => "a string",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
            NodeKind::Word(_) => "a name",
            NodeKind::Cond(_) => "a condition",
        }
    }

    /// The text of a string or bare word.
    pub fn as_text(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Str(s) | NodeKind::Word(s) => Some(s),
            _ => None,
        }
    }

    /// Converts a data node to a JSON value, refusing conditions, bare words and nesting deeper
    /// than [`MAX_DEPTH`]. Walks with an explicit stack: no recursion whatever the nesting.
    pub fn to_json(&self) -> Result<Value, Diagnostic> {
        /// A list or mapping whose children are being converted.
        enum Open<'n> {
            Seq(Vec<Value>, std::slice::Iter<'n, Node>),
            Map(Map<String, Value>, std::slice::Iter<'n, (Key, Node)>, Option<&'n str>),
        }
        let mut stack: Vec<Open<'_>> = Vec::new();
        let mut next: Option<&Node> = Some(self);
        loop {
            // Convert `next`: a scalar becomes a value at once; a container is opened.
            let mut done: Option<Value> = None;
            if let Some(n) = next.take() {
                // INVARIANT: `stack.len()` containers enclose `n`, so `n` is at depth `stack.len() + 1`.
                if stack.len() >= MAX_DEPTH {
                    // A list or mapping is pointed at by its first character, not its whole extent.
                    let at = Span { start: n.span.start, end: n.span.end.min(n.span.start.saturating_add(1)) };
                    return Err(Diagnostic::error(
                        Code::TooDeep,
                        at,
                        format!("value nested deeper than {MAX_DEPTH} levels"),
                    ));
                }
                match &n.kind {
                    NodeKind::Seq(items) => stack.push(Open::Seq(Vec::with_capacity(items.len()), items.iter())),
                    NodeKind::Map(entries) => stack.push(Open::Map(Map::new(), entries.iter(), None)),
                    _ => done = Some(n.scalar_json()?),
                }
            }
            // Hand the finished value to its container, then find the next child to convert,
            // closing containers whose children are all done.
            loop {
                let Some(top) = stack.last_mut() else {
                    return Ok(done.unwrap_or(Value::Null));
                };
                match top {
                    Open::Seq(values, rest) => {
                        if let Some(v) = done.take() {
                            values.push(v);
                        }
                        if let Some(child) = rest.next() {
                            next = Some(child);
                            break;
                        }
                    }
                    Open::Map(map, rest, key) => {
                        if let (Some(v), Some(k)) = (done.take(), key.take()) {
                            map.insert(k.to_owned(), v);
                        }
                        if let Some((k, child)) = rest.next() {
                            *key = Some(&k.text);
                            next = Some(child);
                            break;
                        }
                    }
                }
                done = match stack.pop() {
                    Some(Open::Seq(values, _)) => Some(Value::Array(values)),
                    Some(Open::Map(map, _, _)) => Some(Value::Object(map)),
                    None => None,
                };
                if stack.is_empty() {
                    return Ok(done.unwrap_or(Value::Null));
                }
            }
        }
    }

    /// The JSON value of a node that is not a list or a mapping.
    fn scalar_json(&self) -> Result<Value, Diagnostic> {
        Ok(match &self.kind {
            NodeKind::Null => Value::Null,
            NodeKind::Bool(b) => Value::Bool(*b),
            NodeKind::Int(i) => Value::Number(Number::from(*i)),
            NodeKind::UInt(u) => Value::Number(Number::from(*u)),
            NodeKind::Float(f) => match Number::from_f64(*f) {
                Some(n) => Value::Number(n),
                None => {
                    return Err(Diagnostic::error(Code::BadValue, self.span, "non-finite numbers are not JSON values"));
                }
            },
            NodeKind::Str(s) => Value::String(s.clone()),
            NodeKind::Seq(_) | NodeKind::Map(_) => Value::Null,
            NodeKind::Word(w) => {
                return Err(Diagnostic::error(
                    Code::WrongType,
                    self.span,
                    format!("expected a value, found the bare name `{w}`"),
                )
                .with_help(format!("write a string as \"{w}\"")));
            }
            NodeKind::Cond(_) => {
                return Err(Diagnostic::error(Code::WrongType, self.span, "expected a value, found a condition"));
            }
        })
    }
}

/// Parses the number text of the DSL or of a YAML plain scalar into an integer or float node.
pub fn number(text: &str) -> Option<NodeKind> {
    if let Ok(i) = text.parse::<i64>() {
        return Some(NodeKind::Int(i));
    }
    if let Ok(u) = text.parse::<u64>() {
        return Some(NodeKind::UInt(u));
    }
    let digits = text.trim_start_matches(['-', '+']);
    if digits.is_empty() || !digits.bytes().next().is_some_and(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    text.parse::<f64>().ok().filter(|f| f.is_finite()).map(NodeKind::Float)
}
