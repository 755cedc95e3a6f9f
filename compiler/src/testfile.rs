//! Policy test files (`*.test.yaml`, TOOLCHAIN.md `verdict test`): the spanned model of a file
//! ([`parse`]) and its checks against the bundle it tests ([`check`]). Plain data with spans:
//! `verdict test` runs the cases, and the language server reports the same diagnostics.
//!
//! ```yaml
//! bundle: bundle.verdict              # relative to the test file
//! now: "2026-03-02T10:00:00Z"         # optional: the time of every case (default: now)
//! externs: {no_pii: true}             # optional: extern mocks of every case
//! cases:
//!   - name: admins may update
//!     context: {subject: {role: admin}, action: update}
//!     now: "2026-03-02T11:00:00Z"     # optional
//!     events:                         # optional: decided first, in order, on a fresh store
//!       - {now: "…", context: {…}, then: commit}
//!     externs: {risk: {error: down}}  # optional: overrides the file's mocks by name
//!     expect: {kind: allow, policy: writes, rule: admin-writes, reason: "…", codes: [],
//!              obligations: {}, matches: [{policy_id: writes, rule_id: admin-writes, effect: allow}]}
//! ```
//!
//! Every key is checked (unknown keys are errors that point at the key, as in bundles), and
//! expectations name policies, rules and effects of the bundle.

use crate::diagnostic::{Code, Diagnostic, Severity};
use crate::ir::Bundle;
use crate::tree::{Node, NodeKind};
use serde_json::{Map, Value};
use verdict_grammar::ast::Span;

/// A value and where it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

/// A parsed test file.
#[derive(Debug, Clone, PartialEq)]
pub struct TestFile {
    /// The bundle's path as written (relative to the test file's folder).
    pub bundle: Spanned<String>,
    pub now: Option<Spanned<jiff::Timestamp>>,
    pub externs: Option<Spanned<Value>>,
    pub cases: Vec<Case>,
}

/// One case.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub name: Spanned<String>,
    /// The whole case (its list item).
    pub span: Span,
    pub context: Spanned<Value>,
    pub now: Option<Spanned<jiff::Timestamp>>,
    pub events: Vec<Event>,
    pub externs: Option<Spanned<Value>>,
    pub expect: Expect,
}

/// A decision made before a case, against the case's store.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub span: Span,
    pub now: Option<Spanned<jiff::Timestamp>>,
    pub context: Spanned<Value>,
    pub then: Then,
}

/// What happens to an event's holds once it is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    Commit,
    Release,
    Hold,
}

impl Then {
    /// The spelling in test files and `verdict eval --events` lines; `None` for anything else.
    pub fn parse(text: &str) -> Option<Then> {
        match text {
            "commit" => Some(Then::Commit),
            "release" => Some(Then::Release),
            "hold" => Some(Then::Hold),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Then::Commit => "commit",
            Then::Release => "release",
            Then::Hold => "hold",
        }
    }
}

/// The expectations of a case on the bundle decision; absent fields are not checked. `policy`
/// and `rule` may be null (no deciding policy; the policy default).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expect {
    pub span: Option<Span>,
    pub kind: Option<Spanned<String>>,
    pub policy: Option<Spanned<Option<String>>>,
    pub rule: Option<Spanned<Option<String>>>,
    pub reason: Option<Spanned<String>>,
    pub codes: Option<Spanned<Vec<String>>>,
    pub obligations: Option<Spanned<Map<String, Value>>>,
    /// The exhaustive result's `matches`, each entry compared on the fields it gives.
    pub matches: Option<Spanned<Vec<MatchExpect>>>,
}

/// One expected entry of `matches`: the fields it gives (`policy_id`, `rule_id`, optionally
/// `effect` or `error`).
pub type MatchExpect = Spanned<Map<String, Value>>;

impl Expect {
    /// Whether the case needs an exhaustive evaluation.
    pub fn exhaustive(&self) -> bool {
        self.matches.is_some()
    }
}

const TOP_KEYS: [&str; 4] = ["bundle", "now", "externs", "cases"];
const CASE_KEYS: [&str; 6] = ["name", "context", "now", "events", "externs", "expect"];
const EVENT_KEYS: [&str; 3] = ["now", "context", "then"];
const EXPECT_KEYS: [&str; 7] = ["kind", "policy", "rule", "reason", "codes", "obligations", "matches"];
const MATCH_KEYS: [&str; 4] = ["policy_id", "rule_id", "effect", "error"];

/// Whether a file name is a test file's (`*.test.yaml`, `*.test.yml`, `*.test.json`).
pub fn is_test_file(name: &str) -> bool {
    [".test.yaml", ".test.yml", ".test.json"].iter().any(|s| name.ends_with(s))
}

/// Parses a test file; every problem is a diagnostic (the model is returned when the structure
/// allowed building it, possibly without the faulty parts).
pub fn parse(text: &str) -> (Option<TestFile>, Vec<Diagnostic>) {
    let root = match crate::yaml::load_yaml(text) {
        Ok(n) => n,
        Err(d) => return (None, vec![d]),
    };
    let mut p = Parser { diags: Vec::new() };
    let file = p.file(&root);
    (file, p.diags)
}

struct Parser {
    diags: Vec<Diagnostic>,
}

impl Parser {
    fn error(&mut self, code: Code, span: Span, message: String) {
        self.diags.push(Diagnostic::error(code, span, message));
    }

    /// The entries of a mapping, unknown keys reported.
    fn map<'n>(&mut self, node: &'n Node, what: &str, known: &[&str]) -> Option<Vec<(&'n str, Span, &'n Node)>> {
        let NodeKind::Map(entries) = &node.kind else {
            self.error(Code::WrongType, node.span, format!("{what} must be a mapping, found {}", node.describe()));
            return None;
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            if known.contains(&k.text.as_str()) {
                out.push((k.text.as_str(), k.span, v));
            } else {
                let list = known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
                self.error(
                    Code::UnknownKey,
                    k.span,
                    format!("unknown key `{}` in {what}; expected one of {list}", k.text),
                );
            }
        }
        Some(out)
    }

    fn text(&mut self, node: &Node, what: &str) -> Option<Spanned<String>> {
        match &node.kind {
            NodeKind::Str(s) => Some(Spanned { value: s.clone(), span: node.span }),
            _ => {
                self.error(Code::WrongType, node.span, format!("{what} must be a string, found {}", node.describe()));
                None
            }
        }
    }

    fn optional_text(&mut self, node: &Node, what: &str) -> Option<Spanned<Option<String>>> {
        match &node.kind {
            NodeKind::Null => Some(Spanned { value: None, span: node.span }),
            _ => self.text(node, what).map(|s| Spanned { value: Some(s.value), span: s.span }),
        }
    }

    fn time(&mut self, node: &Node) -> Option<Spanned<jiff::Timestamp>> {
        let t = self.text(node, "`now`")?;
        match t.value.parse::<jiff::Timestamp>() {
            Ok(ts) => Some(Spanned { value: ts, span: t.span }),
            Err(e) => {
                self.error(Code::BadValue, t.span, format!("`now` is not an RFC 3339 date-time with an offset: {e}"));
                None
            }
        }
    }

    fn json(&mut self, node: &Node) -> Option<Value> {
        match node.to_json() {
            Ok(v) => Some(v),
            Err(d) => {
                self.diags.push(d);
                None
            }
        }
    }

    /// A request context: an object (checked further against the bundle by [`check`]).
    fn context(&mut self, node: &Node) -> Option<Spanned<Value>> {
        let v = self.json(node)?;
        if !v.is_object() {
            self.error(Code::WrongType, node.span, format!("`context` must be a mapping, found {}", node.describe()));
            return None;
        }
        Some(Spanned { value: v, span: node.span })
    }

    fn mocks(&mut self, node: &Node) -> Option<Spanned<Value>> {
        let v = self.json(node)?;
        if let Err(e) = verdict_runtime::externs::ExternTable::mocks(&v) {
            self.error(Code::BadValue, node.span, format!("`externs`: {e}"));
            return None;
        }
        Some(Spanned { value: v, span: node.span })
    }

    fn file(&mut self, root: &Node) -> Option<TestFile> {
        let entries = self.map(root, "a test file", &TOP_KEYS)?;
        let (mut bundle, mut now, mut externs, mut cases) = (None, None, None, None);
        for (key, _, v) in entries {
            match key {
                "bundle" => bundle = self.text(v, "`bundle`"),
                "now" => now = self.time(v),
                "externs" => externs = self.mocks(v),
                _ => cases = Some(self.cases(v)),
            }
        }
        let Some(bundle) = bundle else {
            if !self.diags.iter().any(|d| d.message.contains("`bundle`")) {
                self.error(
                    Code::MissingKey,
                    root.span,
                    "a test file needs `bundle`: the path of the bundle it tests".into(),
                );
            }
            return None;
        };
        if cases.is_none() {
            self.error(Code::MissingKey, root.span, "a test file needs `cases`: a list of cases".into());
        }
        Some(TestFile { bundle, now, externs, cases: cases.unwrap_or_default() })
    }

    fn cases(&mut self, node: &Node) -> Vec<Case> {
        let NodeKind::Seq(items) = &node.kind else {
            self.error(Code::WrongType, node.span, format!("`cases` must be a list, found {}", node.describe()));
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for item in items {
            let Some(case) = self.case(item) else { continue };
            if names.contains(&case.name.value) {
                self.error(Code::DuplicateId, case.name.span, format!("duplicate case name `{}`", case.name.value));
            }
            names.push(case.name.value.clone());
            out.push(case);
        }
        out
    }

    fn case(&mut self, node: &Node) -> Option<Case> {
        let entries = self.map(node, "a case", &CASE_KEYS)?;
        let (mut name, mut context, mut now, mut events, mut externs, mut expect) =
            (None, None, None, Vec::new(), None, Expect::default());
        let mut broken = false;
        for (key, _, v) in entries {
            match key {
                "name" => name = self.text(v, "`name`"),
                "context" => {
                    context = self.context(v);
                    broken |= context.is_none();
                }
                "now" => now = self.time(v),
                "events" => events = self.events(v),
                "externs" => externs = self.mocks(v),
                _ => expect = self.expect(v),
            }
        }
        let Some(name) = name else {
            self.error(Code::MissingKey, node.span, "a case needs a `name`".into());
            return None;
        };
        let Some(context) = context else {
            if !broken {
                self.error(Code::MissingKey, name.span, format!("case `{}` needs a `context`", name.value));
            }
            return None;
        };
        Some(Case { name, span: node.span, context, now, events, externs, expect })
    }

    fn events(&mut self, node: &Node) -> Vec<Event> {
        let NodeKind::Seq(items) = &node.kind else {
            self.error(Code::WrongType, node.span, format!("`events` must be a list, found {}", node.describe()));
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            let Some(entries) = self.map(item, "an event", &EVENT_KEYS) else { continue };
            let (mut now, mut context, mut then) = (None, None, Then::Commit);
            for (key, _, v) in entries {
                match key {
                    "now" => now = self.time(v),
                    "context" => context = self.context(v),
                    _ => match v.as_text().and_then(Then::parse) {
                        Some(t) => then = t,
                        None => {
                            self.error(Code::BadValue, v.span, "`then` must be `commit`, `release` or `hold`".into())
                        }
                    },
                }
            }
            match context {
                Some(context) => out.push(Event { span: item.span, now, context, then }),
                None => self.error(Code::MissingKey, item.span, "an event needs a `context`".into()),
            }
        }
        out
    }

    fn expect(&mut self, node: &Node) -> Expect {
        let mut e = Expect { span: Some(node.span), ..Expect::default() };
        let Some(entries) = self.map(node, "`expect`", &EXPECT_KEYS) else { return e };
        for (key, _, v) in entries {
            match key {
                "kind" => e.kind = self.text(v, "`kind`"),
                "policy" => e.policy = self.optional_text(v, "`policy`"),
                "rule" => e.rule = self.optional_text(v, "`rule`"),
                "reason" => e.reason = self.text(v, "`reason`"),
                "codes" => {
                    e.codes = match self.json(v) {
                        Some(Value::Array(items)) if items.iter().all(Value::is_string) => Some(Spanned {
                            value: items.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
                            span: v.span,
                        }),
                        Some(_) => {
                            self.error(Code::WrongType, v.span, "`codes` must be a list of strings".into());
                            None
                        }
                        None => None,
                    }
                }
                "obligations" => {
                    e.obligations = match self.json(v) {
                        Some(Value::Object(m)) => Some(Spanned { value: m, span: v.span }),
                        Some(_) => {
                            self.error(Code::WrongType, v.span, "`obligations` must be a mapping".into());
                            None
                        }
                        None => None,
                    }
                }
                _ => e.matches = self.matches(v),
            }
        }
        e
    }

    fn matches(&mut self, node: &Node) -> Option<Spanned<Vec<MatchExpect>>> {
        let NodeKind::Seq(items) = &node.kind else {
            self.error(Code::WrongType, node.span, format!("`matches` must be a list, found {}", node.describe()));
            return None;
        };
        let mut out = Vec::new();
        for item in items {
            let Some(entries) = self.map(item, "a match", &MATCH_KEYS) else { continue };
            let mut m = Map::new();
            for (key, _, v) in entries {
                if let Some(t) = self.text(v, &format!("`{key}`")) {
                    m.insert(key.to_owned(), Value::String(t.value));
                }
            }
            if !m.contains_key("policy_id") || !m.contains_key("rule_id") {
                self.error(Code::MissingKey, item.span, "a match needs `policy_id` and `rule_id`".into());
                continue;
            }
            out.push(Spanned { value: m, span: item.span });
        }
        Some(Spanned { value: out, span: node.span })
    }
}

/// Checks a parsed file against the bundle it tests: expectations name the bundle's effects,
/// policies and rules (a rule of the expected policy when one is given); contexts are valid
/// request contexts; and contexts that the bundle's run-time schema refuses are pointed out (a
/// warning: a case may test the schema gate on purpose).
pub fn check(file: &TestFile, b: &Bundle) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for case in &file.cases {
        for ctx in std::iter::once(&case.context).chain(case.events.iter().map(|e| &e.context)) {
            check_context(b, ctx, &mut out);
        }
        let e = &case.expect;
        if let Some(kind) = &e.kind
            && kind.value != verdict_runtime::decision::NOT_APPLICABLE
            && !b.effects.contains(&kind.value)
        {
            let effects = b.effects.iter().map(|x| format!("`{x}`")).collect::<Vec<_>>().join(", ");
            out.push(Diagnostic::error(
                Code::UnknownEffect,
                kind.span,
                format!(
                    "`{}` is not an effect of bundle `{}`; expected {effects} or `not_applicable`",
                    kind.value, b.id
                ),
            ));
        }
        let policy = match e.policy.as_ref().and_then(|p| p.value.as_ref().map(|v| (v, p.span))) {
            Some((id, span)) => match b.policies.iter().find(|p| p.id == *id) {
                Some(p) => Some(p),
                None => {
                    out.push(unknown_policy(b, id, span));
                    None
                }
            },
            None => None,
        };
        if let Some(Spanned { value: Some(rule), span }) = &e.rule {
            check_rule(b, policy, rule, *span, &mut out);
        }
        for m in e.matches.iter().flat_map(|m| &m.value) {
            let pid = m.value.get("policy_id").and_then(Value::as_str).unwrap_or_default();
            let rid = m.value.get("rule_id").and_then(Value::as_str).unwrap_or_default();
            match b.policies.iter().find(|p| p.id == pid) {
                Some(p) => check_rule(b, Some(p), rid, m.span, &mut out),
                None => out.push(unknown_policy(b, pid, m.span)),
            }
            if let Some(effect) = m.value.get("effect").and_then(Value::as_str)
                && !b.effects.iter().any(|x| x == effect)
            {
                out.push(Diagnostic::error(
                    Code::UnknownEffect,
                    m.span,
                    format!("`{effect}` is not an effect of bundle `{}`", b.id),
                ));
            }
        }
    }
    out
}

fn unknown_policy(b: &Bundle, id: &str, span: Span) -> Diagnostic {
    Diagnostic::error(Code::BadValue, span, format!("bundle `{}` has no policy `{id}`", b.id))
        .with_help(format!("its policies: {}", list(b.policies.iter().map(|p| p.id.as_str()))))
}

fn check_rule(b: &Bundle, policy: Option<&crate::ir::Policy>, rule: &str, span: Span, out: &mut Vec<Diagnostic>) {
    let found = match policy {
        Some(p) => p.rules.iter().any(|r| r.id == rule),
        None => b.policies.iter().any(|p| p.rules.iter().any(|r| r.id == rule)),
    };
    if found {
        return;
    }
    let d = match policy {
        Some(p) => Diagnostic::error(Code::BadValue, span, format!("policy `{}` has no rule `{rule}`", p.id))
            .with_help(format!("its rules: {}", list(p.rules.iter().map(|r| r.id.as_str())))),
        None => Diagnostic::error(Code::BadValue, span, format!("bundle `{}` has no rule `{rule}`", b.id)),
    };
    out.push(d);
}

fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let all: Vec<String> = items.map(|s| format!("`{s}`")).collect();
    if all.len() > 12 {
        format!("{}, … ({} in all)", all.get(..12).unwrap_or_default().join(", "), all.len())
    } else {
        all.join(", ")
    }
}

/// A context that is not a request context is an error; one the schema gate refuses, a warning.
fn check_context(b: &Bundle, ctx: &Spanned<Value>, out: &mut Vec<Diagnostic>) {
    let req = match verdict_runtime::request::Request::from_value(ctx.value.clone()) {
        Ok(r) => r,
        Err(e) => {
            out.push(Diagnostic::error(Code::BadValue, ctx.span, format!("not a request context: {e}")));
            return;
        }
    };
    let text = |p: crate::ir::PathId| b.path(p).join(".");
    for (path, _) in &b.required {
        if req.lookup(b.path(*path)).is_none() {
            out.push(Diagnostic {
                severity: Severity::Warning,
                ..Diagnostic::error(
                    Code::MissingKey,
                    ctx.span,
                    format!(
                        "the context lacks `{}`, which the bundle requires: the schema gate decides this case",
                        text(*path)
                    ),
                )
            });
        }
    }
    for entry in b.schema.iter().flatten() {
        if let Some(v) = req.lookup(b.path(entry.path))
            && !entry.ty.admits(v)
        {
            out.push(Diagnostic {
                severity: Severity::Warning,
                ..Diagnostic::error(
                    Code::WrongType,
                    ctx.span,
                    format!(
                        "`{}` is {} here, but the bundle's schema declares {}: the schema gate decides this case",
                        text(entry.path),
                        verdict_runtime::value::type_name(v),
                        entry.ty.name()
                    ),
                )
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_file_and_reports_unknown_keys() {
        let text = "bundle: b.verdict\ncases:\n  - name: one\n    context: {action: read}\n    expect: {kind: allow, rule: null, colour: red}\n";
        let (file, diags) = parse(text);
        let file = file.unwrap_or_else(|| unreachable!());
        assert_eq!(file.bundle.value, "b.verdict");
        assert_eq!(file.cases.len(), 1);
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(diags.first().is_some_and(|d| d.code == Code::UnknownKey && d.message.contains("`colour`")));
        let case = file.cases.first().unwrap_or_else(|| unreachable!());
        assert_eq!(case.expect.rule.as_ref().map(|r| r.value.clone()), Some(None));
    }
}
