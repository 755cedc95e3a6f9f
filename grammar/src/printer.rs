//! The canonical layout of `.verdict` text: `verdict fmt`, `verdict convert` and the bundle
//! fingerprint all print through here, so there is one spelling of every construct.
//!
//! Layout: two-space indentation; bundle settings, then `let`s, then policies, one blank line
//! between items and between rules; names bare when they are identifiers, quoted otherwise;
//! conditions on one line unless longer than [`WIDTH`], then split at the top-level `and`/`or`.
//! Comments are kept: each is printed on its own line before the element that follows it.
//!
//! Literals print with an explicit stack; conditions recurse, so callers print only trees whose
//! [`crate::ast::max_depth`] is within [`crate::ast::MAX_DEPTH`].

use crate::ast::*;
use crate::lexer::{Comment, is_bare_ident, quote};

/// Lines longer than this are split at top-level connectives.
pub const WIDTH: usize = 100;

struct Printer<'c> {
    out: String,
    comments: &'c [Comment],
    next_comment: usize,
}

impl Printer<'_> {
    fn comments_before(&mut self, pos: u32, indent: usize) {
        while let Some(c) = self.comments.get(self.next_comment) {
            if c.start as u64 >= u64::from(pos) {
                break;
            }
            push_indent(&mut self.out, indent);
            self.out.push_str(&c.text);
            self.out.push('\n');
            self.next_comment += 1;
        }
    }

    fn props(&mut self, props: &[Prop], indent: usize) {
        for p in props {
            self.comments_before(p.span.start, indent);
            push_indent(&mut self.out, indent);
            self.out.push_str(&p.key.text);
            self.out.push(' ');
            self.out.push_str(&setting(&p.value));
            self.out.push('\n');
        }
    }
}

fn push_indent(out: &mut String, n: usize) {
    for _ in 0..n {
        out.push_str("  ");
    }
}

/// Prints a whole file with its comments in canonical layout.
pub fn print_file(file: &File, comments: &[Comment]) -> String {
    let mut p = Printer { out: String::new(), comments, next_comment: 0 };
    let mut first = true;
    for item in &file.items {
        let span = match item {
            Item::Bundle(b) => b.span,
            Item::Let(l) => l.span,
            Item::Policy(pd) => pd.span,
            Item::State(st) => st.span,
            Item::Extern(x) => x.span,
            Item::Error(s) => *s,
        };
        if !first {
            p.out.push('\n');
        }
        first = false;
        p.comments_before(span.start, 0);
        match item {
            Item::Bundle(b) => {
                p.out.push_str(&format!("bundle {} {{\n", name(&b.name.text)));
                p.props(&b.props, 1);
                p.comments_before(b.span.end, 1);
                p.out.push_str("}\n");
            }
            Item::Let(l) => {
                let head = format!("let {} = ", l.name.text);
                p.out.push_str(&head);
                p.out.push_str(&condition(&l.expr, head.len(), 1));
                p.out.push('\n');
            }
            Item::State(st) => {
                p.out.push_str(&format!("state {} {{\n", st.name.text));
                for (k, v) in &st.members {
                    p.comments_before(k.span.start, 1);
                    p.out.push_str(&format!("  {} {}\n", k.text, print_expr(v)));
                }
                p.comments_before(st.span.end, 1);
                p.out.push_str("}\n");
            }
            Item::Extern(x) => {
                let params: Vec<String> = x.params.iter().map(setting).collect();
                p.out.push_str(&format!("extern {}({}) -> {}\n", x.name.text, params.join(", "), setting(&x.returns)));
            }
            Item::Policy(pd) => {
                p.out.push_str(&format!("policy {} {{\n", name(&pd.name.text)));
                p.props(&pd.props, 1);
                for (i, r) in pd.rules.iter().enumerate() {
                    if i > 0 || !pd.props.is_empty() {
                        p.out.push('\n');
                    }
                    p.comments_before(r.span.start, 1);
                    p.out.push_str(&format!("  rule {} {} {{\n", name(&r.name.text), name(&r.effect.text)));
                    if let Some(w) = &r.when {
                        p.comments_before(w.span.start, 2);
                        p.out.push_str("    when ");
                        p.out.push_str(&condition(w, 9, 3));
                        p.out.push('\n');
                    }
                    p.props(&r.props, 2);
                    p.comments_before(r.span.end, 2);
                    p.out.push_str("  }\n");
                }
                p.comments_before(pd.span.end, 1);
                p.out.push_str("}\n");
            }
            Item::Error(_) => {}
        }
    }
    p.comments_before(u32::MAX, 0);
    p.out
}

/// A name as written: bare when it is an identifier, quoted otherwise.
pub fn name(text: &str) -> String {
    if is_bare_ident(text) { text.to_owned() } else { quote(text) }
}

/// A condition on one line, or split at its top-level connective when longer than [`WIDTH`]
/// (`column` is where it starts, `indent` the indentation level of continuation lines).
fn condition(e: &Expr, column: usize, indent: usize) -> String {
    let flat = print_expr(e);
    if column + flat.len() <= WIDTH {
        return flat;
    }
    let e = unparen(e);
    let (parts, word) = match &e.kind {
        ExprKind::Or(_) => (flatten(e), "or"),
        ExprKind::And(_) => (flatten(e), "and"),
        _ => return flat,
    };
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push('\n');
            push_indent(&mut out, indent);
            out.push_str(word);
            out.push(' ');
        }
        out.push_str(&expr_in(part, if word == "or" { Prec::Or } else { Prec::And }));
    }
    out
}

/// Binding strength, loosest first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Prec {
    Or,
    And,
    Not,
    Cmp,
    Sum,
    Product,
    Unary,
    Primary,
}

/// A condition or term on one line with the fewest parentheses that keep its structure.
pub fn print_expr(e: &Expr) -> String {
    expr_in(e, Prec::Or)
}

fn unparen(e: &Expr) -> &Expr {
    let mut e = e;
    while let ExprKind::Paren(inner) = &e.kind {
        e = inner;
    }
    e
}

/// The operands of an `and`/`or` chain, with nested chains of the same connective (parenthesised
/// or not) spliced in: `a and (b and c)` prints as `a and b and c`, which means the same.
fn flatten(e: &Expr) -> Vec<&Expr> {
    let is_and = matches!(e.kind, ExprKind::And(_));
    let mut out = Vec::new();
    let mut work = vec![e];
    while let Some(x) = work.pop() {
        let x = unparen(x);
        match &x.kind {
            ExprKind::And(v) if is_and => work.extend(v.iter().rev()),
            ExprKind::Or(v) if !is_and => work.extend(v.iter().rev()),
            _ => out.push(x),
        }
    }
    out
}

fn expr_in(e: &Expr, ctx: Prec) -> String {
    let e = unparen(e);
    let (text, prec) = match &e.kind {
        ExprKind::Bool(b) => (b.to_string(), Prec::Primary),
        ExprKind::Or(_) => {
            (flatten(e).iter().map(|c| expr_in(c, Prec::And)).collect::<Vec<_>>().join(" or "), Prec::Or)
        }
        ExprKind::And(_) => {
            (flatten(e).iter().map(|c| expr_in(c, Prec::Not)).collect::<Vec<_>>().join(" and "), Prec::And)
        }
        ExprKind::Not(c) => (format!("not {}", expr_in(c, Prec::Not)), Prec::Not),
        ExprKind::Paren(_) => (String::new(), Prec::Primary),
        ExprKind::Cmp { op, lhs, rhs } => {
            (format!("{} {} {}", expr_in(lhs, Prec::Sum), op.name(), expr_in(rhs, Prec::Sum)), Prec::Cmp)
        }
        ExprKind::Arith { op, lhs, rhs } => {
            // Left-associative: the right operand binds one level tighter.
            let (own, right) =
                if op.info().precedence >= 2 { (Prec::Product, Prec::Unary) } else { (Prec::Sum, Prec::Product) };
            (format!("{} {} {}", expr_in(lhs, own), op.name(), expr_in(rhs, right)), own)
        }
        ExprKind::Neg(c) => {
            let inner = expr_in(c, Prec::Unary);
            // `-(-x)` rather than `--x`.
            if inner.starts_with('-') {
                (format!("-({inner})"), Prec::Unary)
            } else {
                (format!("-{inner}"), Prec::Unary)
            }
        }
        ExprKind::Call { callee, args } => {
            let args: Vec<String> = args.iter().map(print_expr).collect();
            (format!("{}({})", path(callee), args.join(", ")), Prec::Primary)
        }
        ExprKind::Name(p) => (path(p), Prec::Primary),
        ExprKind::Lit(l) => (literal(l), Prec::Primary),
        ExprKind::List(v) => (format!("[{}]", v.iter().map(print_expr).collect::<Vec<_>>().join(", ")), Prec::Primary),
        ExprKind::Error => ("<error>".into(), Prec::Primary),
    };
    if prec < ctx { format!("({text})") } else { text }
}

/// A path in DSL spelling: `subject.role`, `items[0].kind`, `conditions_satisfied."dpa-signed"`,
/// `input."odd.key"` when the first segment is not a plain identifier.
pub fn path(p: &Path) -> String {
    let text = path_of(p.segments.iter().map(|s| s.text.as_str()));
    // `path_of` already spells `input` before a first segment that is not a plain identifier;
    // anything else needs the prefix (`input.inputs`, where `inputs` may be a `let`).
    if p.input && p.segments.first().is_some_and(|s| is_bare_ident(&s.text)) { format!("input.{text}") } else { text }
}

/// Like [`path`], from bare segment texts.
pub fn path_of<'a>(segments: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for (i, seg) in segments.into_iter().enumerate() {
        let digits = !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit());
        if i == 0 {
            if is_bare_ident(seg) {
                out.push_str(seg);
            } else {
                out.push_str("input");
                if digits {
                    out.push_str(&format!("[{seg}]"));
                } else {
                    out.push('.');
                    out.push_str(&segment(seg));
                }
            }
        } else if digits {
            out.push_str(&format!("[{seg}]"));
        } else {
            out.push('.');
            out.push_str(&segment(seg));
        }
    }
    out
}

fn segment(seg: &str) -> String {
    let ident = seg.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ident { seg.to_owned() } else { quote(seg) }
}

/// A literal in expression spelling (JSON-like).
pub fn literal(l: &Lit) -> String {
    print_lit(l, Spelling::Expression)
}

/// A settings value: like [`literal`], with names bare where they can be and dotted object keys
/// (schema paths) unquoted.
fn setting(l: &Lit) -> String {
    print_lit(l, Spelling::Setting)
}

/// Where a literal is printed: in a condition, or as a setting's value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Spelling {
    Expression,
    Setting,
}

/// Prints a literal with an explicit stack of what is left to write: no recursion, so any
/// nesting prints (callers still bound it with [`crate::ast::MAX_DEPTH`]).
fn print_lit(l: &Lit, spelling: Spelling) -> String {
    enum Work<'a> {
        Lit(&'a Lit),
        Text(&'static str),
        Key(&'a str),
    }
    let setting = spelling == Spelling::Setting;
    let mut out = String::new();
    let mut work: Vec<Work<'_>> = vec![Work::Lit(l)];
    while let Some(w) = work.pop() {
        let l = match w {
            Work::Text(t) => {
                out.push_str(t);
                continue;
            }
            Work::Key(k) => {
                out.push_str(&if setting { key(k) } else { quote(k) });
                out.push_str(": ");
                continue;
            }
            Work::Lit(l) => l,
        };
        match &l.kind {
            LitKind::Null => out.push_str("null"),
            LitKind::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            LitKind::Number(n) => out.push_str(n),
            LitKind::Str(s) => out.push_str(&quote(s)),
            LitKind::Ident(s) if setting => out.push_str(&key(s)),
            LitKind::Ident(s) => out.push_str(s),
            LitKind::Error => out.push_str("<error>"),
            LitKind::Template(t) => {
                out.push('f');
                out.push_str(&quote(t));
            }
            LitKind::List(v) => {
                out.push('[');
                work.push(Work::Text("]"));
                for (i, item) in v.iter().enumerate().rev() {
                    work.push(Work::Lit(item));
                    if i > 0 {
                        work.push(Work::Text(", "));
                    }
                }
            }
            LitKind::Object(v) if v.is_empty() => out.push_str("{}"),
            LitKind::Object(v) => {
                out.push_str(if setting { "{ " } else { "{" });
                work.push(Work::Text(if setting { " }" } else { "}" }));
                for (i, (k, item)) in v.iter().enumerate().rev() {
                    work.push(Work::Lit(item));
                    work.push(Work::Key(&k.text));
                    if i > 0 {
                        work.push(Work::Text(", "));
                    }
                }
            }
            LitKind::Apply(f, a) => {
                out.push_str(&f.text);
                out.push('<');
                work.push(Work::Text(">"));
                work.push(Work::Lit(a));
            }
        }
    }
    out
}

/// An object key in settings: bare when it is a dotted run of identifiers, quoted otherwise.
fn key(text: &str) -> String {
    let plain = !text.contains('\\')
        && text.split('.').enumerate().all(|(i, s)| if i == 0 { is_bare_ident(s) } else { segment(s) == s });
    if plain { text.to_owned() } else { quote(text) }
}
