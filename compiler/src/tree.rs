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
    /// than [`MAX_DEPTH`].
    pub fn to_json(&self) -> Result<Value, Diagnostic> {
        self.to_json_at(1)
    }

    fn to_json_at(&self, depth: usize) -> Result<Value, Diagnostic> {
        if depth > MAX_DEPTH {
            return Err(Diagnostic::error(
                Code::TooDeep,
                self.span,
                format!("value nested deeper than {MAX_DEPTH} levels"),
            ));
        }
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
            NodeKind::Seq(items) => {
                Value::Array(items.iter().map(|n| n.to_json_at(depth + 1)).collect::<Result<_, _>>()?)
            }
            NodeKind::Map(entries) => {
                let mut m = Map::new();
                for (k, v) in entries {
                    m.insert(k.text.clone(), v.to_json_at(depth + 1)?);
                }
                Value::Object(m)
            }
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
