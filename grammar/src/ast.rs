//! The syntax tree of a `.verdict` file and of a condition expression.
//!
//! Every node carries its byte [`Span`]. The tree is free of lexer and parser types. Nodes that can
//! nest without bound ([`Expr`], [`Lit`]) are dropped iteratively, so a hostile file nested 100,000
//! deep cannot overflow the stack when its tree is freed; walkers bound their recursion with
//! [`MAX_DEPTH`].

use verdict_vocab::{Arith, AtomOp};

/// Nesting deeper than this is refused by every consumer of the tree (LANGUAGE.md §6.5).
pub const MAX_DEPTH: usize = 128;

/// A half-open byte range in one source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span { start: u32::try_from(start).unwrap_or(u32::MAX), end: u32::try_from(end).unwrap_or(u32::MAX) }
    }

    /// The smallest span covering both.
    pub fn cover(self, other: Span) -> Span {
        Span { start: self.start.min(other.start), end: self.end.max(other.end) }
    }

    /// Moves the span by `offset` bytes (for expressions embedded in a larger file).
    pub fn shift(self, offset: u32) -> Span {
        Span { start: self.start.saturating_add(offset), end: self.end.saturating_add(offset) }
    }

    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// A name: an identifier or a quoted string (ids such as `writes-require-admin` need quotes).
#[derive(Debug, Clone, PartialEq)]
pub struct Name {
    pub text: String,
    pub span: Span,
}

/// A parsed `.verdict` file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Bundle(BundleDecl),
    Let(LetDecl),
    Policy(PolicyDecl),
    State(StateDecl),
    Extern(ExternDecl),
    /// A stretch the parser skipped while recovering; its error is in the error list.
    Error(Span),
}

/// `bundle NAME { PROP* }`: the bundle's id and settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleDecl {
    pub name: Name,
    pub props: Vec<Prop>,
    pub span: Span,
}

/// `let NAME = EXPR`: a named condition.
#[derive(Debug, Clone, PartialEq)]
pub struct LetDecl {
    pub name: Name,
    pub expr: Expr,
    pub span: Span,
}

/// `policy NAME { PROP* RULE* }`.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDecl {
    pub name: Name,
    pub props: Vec<Prop>,
    pub rules: Vec<RuleDecl>,
    pub span: Span,
}

/// `state NAME { add TERM key [PATH…] on [EFFECT…] apply commit|decision }`: a state series.
#[derive(Debug, Clone, PartialEq)]
pub struct StateDecl {
    pub name: Name,
    /// Each member (`add`, `key`, `on`, `apply`) with its value as an expression.
    pub members: Vec<(Name, Expr)>,
    pub span: Span,
}

/// `extern NAME(TYPE, …) -> TYPE`: a host function the embedding program binds.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternDecl {
    pub name: Name,
    /// Parameter types, written as in schemas (`string`, `list<string>`).
    pub params: Vec<Lit>,
    pub returns: Lit,
    pub span: Span,
}

/// `rule NAME EFFECT { when EXPR PROP* }`.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleDecl {
    pub name: Name,
    pub effect: Name,
    pub when: Option<Expr>,
    pub props: Vec<Prop>,
    pub span: Span,
}

/// A setting: `KEY VALUE`, e.g. `version "1.2.0"`, `default deny`, `codes ["A"]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Prop {
    pub key: Name,
    pub value: Lit,
    pub span: Span,
}

/// A literal value. In settings, bare identifiers (`deny`, `first`) and type applications
/// (`list<string>`) are literals too.
#[derive(Debug, Clone, PartialEq)]
pub struct Lit {
    pub kind: LitKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LitKind {
    Null,
    Bool(bool),
    /// The number's source text, with a leading `-` when negative.
    Number(String),
    Str(String),
    List(Vec<Lit>),
    Object(Vec<(Name, Lit)>),
    /// A bare word (settings only), or a dotted key in a settings object (`subject.role`).
    Ident(String),
    /// `list<string>` (settings only).
    Apply(Name, Box<Lit>),
    /// `f"…"`: a reason template (settings only), its text with escapes decoded.
    Template(String),
    /// A value the parser could not read.
    Error,
}

/// A condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Bool(bool),
    /// `a or b or c`, flattened.
    Or(Vec<Expr>),
    /// `a and b and c`, flattened.
    And(Vec<Expr>),
    Not(Box<Expr>),
    Paren(Box<Expr>),
    /// A binary atom (`==`, `<`, `in`, `not in`, `contains`, …).
    Cmp {
        op: AtomOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// `a + b`, `a - b`, `a * b`, `a / b`.
    Arith {
        op: Arith,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// `-a` (of anything but a number literal, which is a negative literal).
    Neg(Box<Expr>),
    /// `f(args)`: a function, an extern, `exists(path)`/`missing(path)`, or a state window with an
    /// argument (`spend.last("90m")`); the compiler resolves the callee.
    Call {
        callee: Path,
        args: Vec<Expr>,
    },
    /// A bare path: a `let` reference, a state read (`spend.day`), `now.hour`, or a request path.
    Name(Path),
    /// A literal (`null`, a number, a string, an object, a list of literals).
    Lit(Lit),
    /// A list with elements that are not all literals (`[subject.id]` in a `state` block).
    List(Vec<Expr>),
    /// A condition the parser could not read.
    Error,
}

/// `-e`: a negative literal when `e` is a number literal, else a negation.
pub fn negate(e: Expr, span: Span) -> Expr {
    match &e.kind {
        ExprKind::Lit(Lit { kind: LitKind::Number(n), .. }) if !n.starts_with('-') => {
            let lit = Lit { kind: LitKind::Number(format!("-{n}")), span };
            Expr { kind: ExprKind::Lit(lit), span }
        }
        _ => Expr { kind: ExprKind::Neg(Box::new(e)), span },
    }
}

/// `[items]`: a list literal when every item is a literal, else a list of expressions.
pub fn list(items: Vec<Expr>, span: Span) -> Expr {
    let literal = items.iter().all(|e| matches!(e.kind, ExprKind::Lit(_) | ExprKind::Bool(_)));
    if !literal {
        return Expr { kind: ExprKind::List(items), span };
    }
    let lits = items
        .into_iter()
        .map(|mut e| match std::mem::replace(&mut e.kind, ExprKind::Error) {
            ExprKind::Lit(l) => l,
            ExprKind::Bool(b) => Lit { kind: LitKind::Bool(b), span: e.span },
            _ => Lit { kind: LitKind::Error, span: e.span },
        })
        .collect();
    Expr { kind: ExprKind::Lit(Lit { kind: LitKind::List(lits), span }), span }
}

/// A path into the request's merged view: `subject.role`, `resource.tags[0]`, `input."odd.key"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    pub segments: Vec<Segment>,
    /// Written with `input.`: a request path even where its first segment names a `let`, a
    /// state series, an extern or `now`.
    pub input: bool,
    pub span: Span,
}

/// One step of a path. `[0]` and `."0"` are the same step: an index on a list, a key on an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub text: String,
    pub span: Span,
}

impl Drop for Expr {
    fn drop(&mut self) {
        // INVARIANT: children are moved onto an explicit stack before they drop, so dropping never
        // recurses more than one level whatever the nesting.
        let mut stack: Vec<Expr> = Vec::new();
        take_expr_children(&mut self.kind, &mut stack);
        while let Some(mut e) = stack.pop() {
            take_expr_children(&mut e.kind, &mut stack);
        }
    }
}

fn take_expr_children(kind: &mut ExprKind, stack: &mut Vec<Expr>) {
    match std::mem::replace(kind, ExprKind::Error) {
        ExprKind::Or(v) | ExprKind::And(v) | ExprKind::List(v) | ExprKind::Call { args: v, .. } => stack.extend(v),
        ExprKind::Not(b) | ExprKind::Paren(b) | ExprKind::Neg(b) => stack.push(*b),
        ExprKind::Cmp { lhs, rhs, .. } | ExprKind::Arith { lhs, rhs, .. } => {
            stack.push(*lhs);
            stack.push(*rhs);
        }
        _ => {}
    }
}

impl Drop for Lit {
    fn drop(&mut self) {
        // INVARIANT: as for `Expr`, nested lists and objects drop without recursion.
        let mut stack: Vec<Lit> = Vec::new();
        take_lit_children(&mut self.kind, &mut stack);
        while let Some(mut l) = stack.pop() {
            take_lit_children(&mut l.kind, &mut stack);
        }
    }
}

fn take_lit_children(kind: &mut LitKind, stack: &mut Vec<Lit>) {
    match std::mem::replace(kind, LitKind::Null) {
        LitKind::List(v) => stack.extend(v),
        LitKind::Object(v) => stack.extend(v.into_iter().map(|(_, l)| l)),
        LitKind::Apply(_, b) => stack.push(*b),
        _ => {}
    }
}

/// The YAML `field` spelling of a path: segments joined by `.`, with `\.` and `\\` escaped.
pub fn field_text(path: &Path) -> String {
    let mut out = String::new();
    for (i, seg) in path.segments.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        for c in seg.text.chars() {
            if c == '.' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out
}

/// Visits every condition and literal node under the given roots with its depth (roots carry
/// their own), without recursion. `visit` gets the node's span, depth and what it is
/// (`"condition"` or `"value"`), and returns `false` to stop the walk.
pub fn walk_depths<'a>(
    mut exprs: Vec<(&'a Expr, usize)>,
    mut lits: Vec<(&'a Lit, usize)>,
    mut visit: impl FnMut(Span, usize, &'static str) -> bool,
) {
    loop {
        let (span, depth, what) = if let Some((e, d)) = exprs.pop() {
            match &e.kind {
                ExprKind::Or(v) | ExprKind::And(v) | ExprKind::List(v) | ExprKind::Call { args: v, .. } => {
                    exprs.extend(v.iter().map(|c| (c, d + 1)));
                }
                ExprKind::Not(c) | ExprKind::Paren(c) | ExprKind::Neg(c) => exprs.push((c, d + 1)),
                ExprKind::Cmp { lhs, rhs, .. } | ExprKind::Arith { lhs, rhs, .. } => {
                    exprs.push((lhs, d + 1));
                    exprs.push((rhs, d + 1));
                }
                ExprKind::Lit(l) => lits.push((l, d + 1)),
                _ => {}
            }
            (e.span, d, "condition")
        } else if let Some((l, d)) = lits.pop() {
            match &l.kind {
                LitKind::List(v) => lits.extend(v.iter().map(|c| (c, d + 1))),
                LitKind::Object(v) => lits.extend(v.iter().map(|(_, c)| (c, d + 1))),
                LitKind::Apply(_, c) => lits.push((c, d + 1)),
                _ => {}
            }
            (l.span, d, "value")
        } else {
            return;
        };
        if !visit(span, depth, what) {
            return;
        }
    }
}

/// Nodes to visit with their depth: conditions and literals.
type Work<'a> = (Vec<(&'a Expr, usize)>, Vec<(&'a Lit, usize)>);

/// The roots of the file's conditions and literals, at depth 1.
fn roots(file: &File) -> Work<'_> {
    let mut exprs: Vec<(&Expr, usize)> = Vec::new();
    let mut lits: Vec<(&Lit, usize)> = Vec::new();
    for item in &file.items {
        match item {
            Item::Bundle(b) => lits.extend(b.props.iter().map(|p| (&p.value, 1))),
            Item::Let(l) => exprs.push((&l.expr, 1)),
            Item::State(st) => exprs.extend(st.members.iter().map(|(_, e)| (e, 1))),
            Item::Extern(x) => lits.extend(x.params.iter().chain(std::iter::once(&x.returns)).map(|l| (l, 1))),
            Item::Policy(p) => {
                lits.extend(p.props.iter().map(|p| (&p.value, 1)));
                for r in &p.rules {
                    exprs.extend(r.when.iter().map(|e| (e, 1)));
                    lits.extend(r.props.iter().map(|p| (&p.value, 1)));
                }
            }
            Item::Error(_) => {}
        }
    }
    (exprs, lits)
}

/// The deepest nesting of conditions or literals in the file, measured without recursion.
pub fn max_depth(file: &File) -> usize {
    let (exprs, lits) = roots(file);
    let mut deepest = 0;
    walk_depths(exprs, lits, |_, d, _| {
        deepest = deepest.max(d);
        true
    });
    deepest
}

/// The first node the parser kept as an error (a skipped item, an unreadable condition or
/// value, a second `when` in a rule), if any: such a tree has no faithful printed form.
pub fn first_error_node(file: &File) -> Option<Span> {
    if let Some(Item::Error(span)) = file.items.iter().find(|i| matches!(i, Item::Error(_))) {
        return Some(*span);
    }
    let (mut exprs, mut lits) = roots(file);
    loop {
        if let Some((e, _)) = exprs.pop() {
            match &e.kind {
                ExprKind::Error => return Some(e.span),
                ExprKind::Or(v) | ExprKind::And(v) | ExprKind::List(v) | ExprKind::Call { args: v, .. } => {
                    exprs.extend(v.iter().map(|c| (c, 0)));
                }
                ExprKind::Not(c) | ExprKind::Paren(c) | ExprKind::Neg(c) => exprs.push((c, 0)),
                ExprKind::Cmp { lhs, rhs, .. } | ExprKind::Arith { lhs, rhs, .. } => {
                    exprs.push((lhs, 0));
                    exprs.push((rhs, 0));
                }
                ExprKind::Lit(l) => lits.push((l, 0)),
                ExprKind::Bool(_) | ExprKind::Name(_) => {}
            }
        } else if let Some((l, _)) = lits.pop() {
            match &l.kind {
                LitKind::Error => return Some(l.span),
                LitKind::List(v) => lits.extend(v.iter().map(|c| (c, 0))),
                LitKind::Object(v) => lits.extend(v.iter().map(|(_, c)| (c, 0))),
                LitKind::Apply(_, c) => lits.push((c, 0)),
                LitKind::Null
                | LitKind::Bool(_)
                | LitKind::Number(_)
                | LitKind::Str(_)
                | LitKind::Ident(_)
                | LitKind::Template(_) => {}
            }
        } else {
            return None;
        }
    }
}
