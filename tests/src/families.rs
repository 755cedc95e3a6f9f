//! Seeded generators of the rule-analysis benchmark families (ANALYSIS.md): ACL boxes, an ABAC
//! bundle, DMN grids, string/regex paths, deep boolean nesting, adversarial union covers,
//! change-impact pairs, and rich effects under each combining mode.
//!
//! Each generator writes a `.verdict` bundle and its **ground truth**: the findings the analysis
//! must report (`expect`), which the tests compare with what it does report — every planted
//! anomaly found (recall), nothing else (in particular nothing on the planted controls, which
//! look like anomalies and are not). Base rules are built pairwise disjoint (each fixes a unique
//! combination of enumerated values), so the only interactions are the planted ones.
//!
//! The analysis tests (`tests/tests/analysis_*.rs`) check the ground truth; the benchmarks in
//! `bench/benches/analysis.rs` time `check` on the same generators.

use std::fmt::Write as _;

pub use crate::generate::Rng;

/// A finding the analysis must report: its code and the policy and rule it names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Expect {
    pub code: &'static str,
    pub policy: Option<String>,
    pub rule: Option<String>,
}

fn expect(code: &'static str, policy: &str, rule: Option<&str>) -> Expect {
    Expect { code, policy: Some(policy.to_owned()), rule: rule.map(str::to_owned) }
}

/// A generated bundle with its ground truth.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: String,
    /// The bundle, as `.verdict` text.
    pub text: String,
    /// Exactly the findings the analysis must report.
    pub expect: Vec<Expect>,
    /// Rules planted to look like anomalies that are not: (policy, rule).
    pub controls: Vec<(String, String)>,
    /// Number of rules.
    pub rules: usize,
}

#[derive(Debug, Clone)]
struct RuleSpec {
    id: String,
    effect: String,
    when: String,
    priority: Option<i64>,
    /// Sort key: rules are written in this order.
    at: f64,
}

#[derive(Debug, Clone)]
struct PolicySpec {
    id: String,
    default: String,
    priority: bool,
    rules: Vec<RuleSpec>,
}

fn rule(id: impl Into<String>, effect: &str, when: impl Into<String>, at: f64) -> RuleSpec {
    RuleSpec { id: id.into(), effect: effect.to_owned(), when: when.into(), priority: None, at }
}

fn render(name: &str, effects: &[&str], combine: &str, policies: &[PolicySpec]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "bundle \"{name}\" {{\n  effects [{}]\n  combine {combine}\n}}\n", effects.join(", "));
    for p in policies {
        let _ = writeln!(out, "policy \"{}\" {{\n  default {}", p.id, p.default);
        if p.priority {
            let _ = writeln!(out, "  match priority");
        }
        let mut rules = p.rules.clone();
        rules.sort_by(|a, b| a.at.total_cmp(&b.at));
        for r in &rules {
            let _ = writeln!(out, "  rule \"{}\" {} {{\n    when {}", r.id, r.effect, r.when);
            if let Some(pr) = r.priority {
                let _ = writeln!(out, "    priority {pr}");
            }
            let _ = writeln!(out, "  }}");
        }
        let _ = writeln!(out, "}}\n");
    }
    out
}

const ROLES: usize = 8;

/// The unique enumerated key of base rule `k`: an action, a role and a region.
fn key(k: usize, actions: usize) -> String {
    let a = k % actions;
    let r = (k / actions) % ROLES;
    let g = k / (actions * ROLES);
    format!("action == \"a{a}\" and subject.role == \"r{r}\" and region == \"g{g}\"")
}

/// Extra atoms of a base rule, over distinct paths (so always satisfiable together).
fn extras(rng: &mut Rng, string_percent: u64) -> String {
    let mut parts = Vec::new();
    if rng.chance(60) {
        parts.push(format!("subject.level >= {}", rng.below(10)));
    }
    if rng.chance(40) {
        parts.push(format!("resource.size < {}", [100, 1000, 10000].get(rng.below(3)).copied().unwrap_or(100)));
    }
    if rng.chance(25) {
        parts.push("flags.beta == true".to_owned());
    }
    if rng.chance(25) {
        parts.push("resource.owner != \"nobody\"".to_owned());
    }
    if rng.chance(string_percent) {
        parts.push(match rng.below(3) {
            0 => format!("resource.name starts_with \"n{}-\"", rng.below(40)),
            1 => format!("resource.name matches \"^doc-[0-9]{{{}}}$\"", 1 + rng.below(5)),
            _ => format!("resource.name ends_with \".t{}\"", rng.below(20)),
        });
    }
    parts.iter().map(|p| format!(" and {p}")).collect()
}

/// ACL boxes: one `match first` policy of `rules` disjoint `allow` rules over enumerated
/// actions, roles and regions plus numeric ranges and (for `string_percent`% of the rules)
/// string and regex atoms; default `deny`. Planted (about 1% each): exact duplicates placed
/// later (V001 on the copy, V003 on the original, which the copy would replace), narrowed copies
/// with the effect flipped placed later (V001), contradictions (V002). Controls: narrowed flipped
/// copies placed *before* the original, satisfiable near-contradictions, near-duplicates on
/// another region.
pub fn acl(seed: u64, rules: usize, actions: usize, string_percent: u64) -> Family {
    let mut rng = Rng(seed);
    let mut specs: Vec<RuleSpec> = Vec::with_capacity(rules + rules / 20);
    let mut conds: Vec<String> = Vec::with_capacity(rules);
    for k in 0..rules {
        let when = format!("{}{}", key(k, actions), extras(&mut rng, string_percent));
        specs.push(rule(format!("r{k}"), "allow", when.clone(), k as f64));
        conds.push(when);
    }
    let per = (rules / 100).max(1);
    let targets = rng.sample(rules, 6 * per);
    let mut expect_list = Vec::new();
    let mut controls = Vec::new();
    let pol = "acl";
    let after = |rng: &mut Rng, k: usize| k as f64 + 0.5 + rng.below(rules - k) as f64;
    for (n, &k) in targets.iter().enumerate() {
        let cond = conds.get(k).cloned().unwrap_or_default();
        let a = k % actions;
        match n / per {
            0 => {
                let id = format!("dup-{k}");
                specs.push(rule(&id, "allow", cond, after(&mut rng, k)));
                expect_list.push(expect("V001", pol, Some(&id)));
                expect_list.push(expect("V003", pol, Some(&format!("r{k}"))));
            }
            1 => {
                let id = format!("narrow-{k}");
                specs.push(rule(&id, "deny", format!("{cond} and subject.level >= 100"), after(&mut rng, k)));
                expect_list.push(expect("V001", pol, Some(&id)));
            }
            2 => {
                let id = format!("contra-{k}");
                let when = format!("action == \"a{a}\" and subject.level > 7 and subject.level < 3");
                specs.push(rule(&id, "allow", when, rng.below(rules) as f64 + 0.25));
                expect_list.push(expect("V002", pol, Some(&id)));
            }
            3 => {
                let id = format!("early-{k}");
                let at = k as f64 - 0.5 - rng.below(k + 1) as f64;
                specs.push(rule(&id, "deny", format!("{cond} and subject.level >= 100"), at));
                controls.push((pol.to_owned(), id));
            }
            4 => {
                let id = format!("near-contra-{k}");
                let when = format!(
                    "action == \"a{a}\" and region == \"solo-{k}\" and subject.level > 3 and subject.level < 7"
                );
                specs.push(rule(&id, "allow", when, rng.below(rules) as f64 + 0.75));
                controls.push((pol.to_owned(), id));
            }
            _ => {
                let id = format!("near-dup-{k}");
                let when = cond.replace("region == \"g", "region == \"alt-g");
                specs.push(rule(&id, "allow", when, after(&mut rng, k)));
                controls.push((pol.to_owned(), id));
            }
        }
    }
    let n = specs.len();
    let policy = PolicySpec { id: pol.to_owned(), default: "deny".to_owned(), priority: false, rules: specs };
    expect_list.sort();
    Family {
        name: format!("acl-{rules}-s{seed}"),
        text: render("acl", &["deny", "allow"], "overrides", &[policy]),
        expect: expect_list,
        controls,
        rules: n,
    }
}

/// ABAC: `policies` policies of `per_policy` disjoint `allow` rules each (default `deny`,
/// `combine overrides`), and a last policy `conflicts` (default `allow`) of `deny` rules.
/// Planted: a `deny` rule with exactly the condition of some base rule (V004 on that base rule:
/// `allow` loses). Controls: `deny` rules on regions no base rule uses.
pub fn abac(seed: u64, policies: usize, per_policy: usize) -> Family {
    let mut rng = Rng(seed);
    let actions = 64;
    let mut pols = Vec::new();
    let mut conds: Vec<(String, String, String)> = Vec::new();
    for p in 0..policies {
        let mut rules = Vec::new();
        for i in 0..per_policy {
            let k = p * per_policy + i;
            let when = format!("{}{}", key(k, actions), extras(&mut rng, 10));
            let id = format!("p{p}-r{i}");
            rules.push(rule(&id, "allow", when.clone(), i as f64));
            conds.push((format!("p{p}"), id, when));
        }
        pols.push(PolicySpec { id: format!("p{p}"), default: "deny".into(), priority: false, rules });
    }
    let planted = (policies * per_policy / 100).max(2);
    let targets = rng.sample(conds.len(), planted);
    let mut rules = Vec::new();
    let mut expect_list = Vec::new();
    let mut controls = Vec::new();
    for (n, &t) in targets.iter().enumerate() {
        let Some((p, id, when)) = conds.get(t).cloned() else { continue };
        rules.push(rule(format!("c{n}"), "deny", when, n as f64));
        expect_list.push(expect("V004", &p, Some(&id)));
        let cid = format!("control{n}");
        rules.push(rule(
            &cid,
            "deny",
            format!("action == \"a{}\" and region == \"nowhere-{n}\"", n % actions),
            n as f64 + 0.5,
        ));
        controls.push(("conflicts".to_owned(), cid));
    }
    pols.push(PolicySpec { id: "conflicts".into(), default: "allow".into(), priority: false, rules });
    expect_list.sort();
    Family {
        name: format!("abac-{policies}x{per_policy}-s{seed}"),
        text: render("abac", &["deny", "allow"], "overrides", &pols),
        expect: expect_list,
        controls,
        rules: policies * per_policy + 2 * planted,
    }
}

const RICH: [&str; 4] = ["block", "require_review", "degrade", "allow"];

fn rich_effect(i: usize) -> &'static str {
    RICH.get(i % 4).copied().unwrap_or("allow")
}

/// Rich effects: `policies` policies over `[block, require_review, degrade, allow]`, policy `i`'s
/// base rules of effect `i mod 4` and default `i+1 mod 4`, under `combine` (`overrides` or
/// `first`). Planted: a rule in another policy with a base rule's condition and a different
/// effect (V004 on whichever loses the combination). Controls: such rules on unused regions.
pub fn rich(seed: u64, combine: &str, policies: usize, per_policy: usize) -> Family {
    let mut rng = Rng(seed);
    let actions = 16;
    let mut pols: Vec<PolicySpec> = Vec::new();
    for p in 0..policies {
        let mut rules = Vec::new();
        for i in 0..per_policy {
            let k = p * per_policy + i;
            let when = format!("{}{}", key(k, actions), extras(&mut rng, 10));
            rules.push(rule(format!("p{p}-r{i}"), rich_effect(p), when, i as f64));
        }
        pols.push(PolicySpec { id: format!("p{p}"), default: rich_effect(p + 1).into(), priority: false, rules });
    }
    let mut expect_list = Vec::new();
    let mut controls = Vec::new();
    let planted = (policies * per_policy / 50).max(2);
    let targets = rng.sample(policies * per_policy, planted);
    for (n, &t) in targets.iter().enumerate() {
        let (p, i) = (t / per_policy, t % per_policy);
        let q = (p + 1 + rng.below(policies - 1)) % policies;
        let base_effect = p % 4;
        let default_q = (q + 1) % 4;
        let Some(e) =
            (0..4).map(|d| (base_effect + 1 + d + rng.below(4)) % 4).find(|e| *e != base_effect && *e != default_q)
        else {
            continue;
        };
        let Some(when) = pols.get(p).and_then(|x| x.rules.get(i)).map(|r| r.when.clone()) else { continue };
        let id = format!("x{n}");
        let loser = match combine {
            "first" if q > p => (format!("p{q}"), id.clone()),
            "first" => (format!("p{p}"), format!("p{p}-r{i}")),
            _ if e > base_effect => (format!("p{q}"), id.clone()),
            _ => (format!("p{p}"), format!("p{p}-r{i}")),
        };
        expect_list.push(expect("V004", &loser.0, Some(&loser.1)));
        let cid = format!("y{n}");
        if let Some(qp) = pols.get_mut(q) {
            qp.rules.push(rule(&id, rich_effect(e), when, 1e6 + n as f64));
            qp.rules.push(rule(
                &cid,
                rich_effect(e),
                format!("action == \"a0\" and region == \"unused-{n}\""),
                1e6 + n as f64 + 0.5,
            ));
        }
        controls.push((format!("p{q}"), cid));
    }
    expect_list.sort();
    Family {
        name: format!("rich-{combine}-s{seed}"),
        text: render("rich", &RICH, combine, &pols),
        expect: expect_list,
        controls,
        rules: policies * per_policy + 2 * planted,
    }
}

/// A DMN-style decision table: `columns` numeric inputs, each cut into `intervals` intervals,
/// one `match priority` rule per cell (effects in a checkerboard, all priority 0), a guard for
/// inputs outside the table, default `none`. Without plants the rules cover every request
/// (V009). `widen`: one cell's upper bound moves into its neighbour, which has the other effect
/// (V005 on the `allow` one of the two). `shrink`: one cell's upper bound moves down, leaving a
/// gap (V010, and no V009).
pub fn dmn(seed: u64, columns: usize, intervals: usize, widen: bool, shrink: bool) -> Family {
    let mut rng = Rng(seed);
    let cells: usize = intervals.pow(u32::try_from(columns).unwrap_or(1));
    let pol = "table";
    let mut rules = Vec::new();
    let inside: Vec<String> =
        (0..columns).map(|c| format!("cols.c{c} >= 0 and cols.c{c} < {}", intervals * 10)).collect();
    rules.push(rule("guard", "deny", format!("not ({})", inside.join(" and ")), 0.0));
    let widened = rng.below(cells);
    let shrunk = (widened + 2 + rng.below(cells.saturating_sub(4).max(1))) % cells;
    let mut expect_list = Vec::new();
    let idx = |cell: usize, c: usize| (cell / intervals.pow(u32::try_from(c).unwrap_or(0))) % intervals;
    let effect_of =
        |cell: usize| if (0..columns).map(|c| idx(cell, c)).sum::<usize>() % 2 == 0 { "deny" } else { "allow" };
    for cell in 0..cells {
        let mut parts = Vec::new();
        for c in 0..columns {
            let i = idx(cell, c);
            let lo = i * 10;
            let mut hi = lo + 10;
            if c == 0 && widen && cell == widened && i + 1 < intervals {
                hi += 5;
            }
            if c == 0 && shrink && cell == shrunk {
                hi -= 5;
            }
            parts.push(format!("cols.c{c} >= {lo} and cols.c{c} < {hi}"));
        }
        let mut r = rule(format!("cell-{cell}"), effect_of(cell), parts.join(" and "), cell as f64 + 1.0);
        r.priority = Some(0);
        rules.push(r);
    }
    let widened_real = widen && idx(widened, 0) + 1 < intervals;
    if widened_real {
        let neighbour = widened + 1;
        let allow_one = if effect_of(widened) == "allow" { widened } else { neighbour };
        expect_list.push(expect("V005", pol, Some(&format!("cell-{allow_one}"))));
    }
    if shrink {
        expect_list.push(Expect { code: "V010", policy: None, rule: None });
    } else {
        expect_list.push(expect("V009", pol, None));
    }
    expect_list.sort();
    let n = rules.len();
    let policy = PolicySpec { id: pol.into(), default: "none".into(), priority: true, rules };
    Family {
        name: format!("dmn-{columns}x{intervals}-w{}-s{}-s{seed}", u8::from(widened_real), u8::from(shrink)),
        text: render("dmn", &["deny", "allow"], "first", &[policy]),
        expect: expect_list,
        controls: Vec::new(),
        rules: n,
    }
}

/// String and regex paths: `allow` rules on disjoint prefixes `p{k}/` and on suffixes, default
/// `deny`. Planted: a longer prefix or an anchored regex under an earlier prefix with the effect
/// flipped (V001); two incompatible prefixes, digits-only with a letter (V002). Controls:
/// disjoint anchored regexes, and an unanchored regex placed before the prefix it overlaps.
pub fn strings(seed: u64, prefixes: usize) -> Family {
    let mut rng = Rng(seed);
    let pol = "names";
    let mut rules = Vec::new();
    for k in 0..prefixes {
        rules.push(rule(format!("prefix-{k}"), "allow", format!("resource.name starts_with \"p{k}/\""), k as f64));
    }
    for k in 0..prefixes / 4 {
        rules.push(rule(
            format!("suffix-{k}"),
            "allow",
            format!("resource.name ends_with \".e{k}\""),
            prefixes as f64 + k as f64,
        ));
    }
    let mut expect_list = Vec::new();
    let mut controls = Vec::new();
    let targets = rng.sample(prefixes, 4.min(prefixes));
    let end = 10.0 * prefixes as f64;
    for (n, &k) in targets.iter().enumerate() {
        match n {
            0 => {
                let id = format!("sub-{k}");
                rules.push(rule(&id, "deny", format!("resource.name starts_with \"p{k}/sub\""), end + 1.0));
                expect_list.push(expect("V001", pol, Some(&id)));
            }
            1 => {
                let id = format!("regex-{k}");
                rules.push(rule(&id, "deny", format!("resource.name matches \"^p{k}/[0-9]+$\""), end + 2.0));
                expect_list.push(expect("V001", pol, Some(&id)));
            }
            2 => {
                let id = format!("unanchored-{k}");
                rules.push(rule(&id, "allow", format!("resource.name matches \"p{k}/[0-9]+\""), k as f64 - 0.5));
                controls.push((pol.to_owned(), id));
            }
            _ => {
                let id = format!("suffix-and-prefix-{k}");
                rules.push(rule(
                    &id,
                    "allow",
                    format!("resource.name starts_with \"q{k}\" and resource.name ends_with \".f0\""),
                    end + 3.0,
                ));
                controls.push((pol.to_owned(), id));
            }
        }
    }
    rules.push(rule(
        "two-prefixes",
        "allow",
        "resource.name starts_with \"x-\" and resource.name starts_with \"y-\"",
        end + 4.0,
    ));
    expect_list.push(expect("V002", pol, Some("two-prefixes")));
    rules.push(rule(
        "digits-with-letter",
        "allow",
        "resource.name matches \"^[0-9]+$\" and resource.name contains \"z\"",
        end + 5.0,
    ));
    expect_list.push(expect("V002", pol, Some("digits-with-letter")));
    for (id, re) in [("title-a", "^a[0-9]+$"), ("title-b", "^b[0-9]+$")] {
        rules.push(rule(id, "allow", format!("resource.title matches \"{re}\""), end + 6.0));
        controls.push((pol.to_owned(), id.to_owned()));
    }
    expect_list.sort();
    let n = rules.len();
    let policy = PolicySpec { id: pol.into(), default: "deny".into(), priority: false, rules };
    Family {
        name: format!("strings-{prefixes}-s{seed}"),
        text: render("strings", &["deny", "allow"], "overrides", &[policy]),
        expect: expect_list,
        controls,
        rules: n,
    }
}

/// A random read-once boolean formula (every atom on a path of its own), and an equivalent
/// rewrite of it (negations pushed inwards by De Morgan, operands reordered).
#[derive(Debug, Clone)]
enum Formula {
    Atom(String),
    Not(Box<Formula>),
    And(Vec<Formula>),
    Or(Vec<Formula>),
}

impl Formula {
    fn random(rng: &mut Rng, depth: usize, prefix: &str, counter: &mut usize) -> Formula {
        if depth == 0 || (depth < 3 && rng.chance(25)) {
            *counter += 1;
            let path = format!("{prefix}.v{counter}");
            return Formula::Atom(match rng.below(5) {
                0 => format!("{path} == \"s{}\"", rng.below(5)),
                1 => format!("{path} > {}", rng.below(100)),
                2 => format!("{path} starts_with \"w{}\"", rng.below(5)),
                3 => format!("exists({path})"),
                _ => format!("{path} in [1, 2, \"three\"]"),
            });
        }
        match rng.below(3) {
            0 => Formula::Not(Box::new(Formula::random(rng, depth - 1, prefix, counter))),
            k => {
                let n = 2 + rng.below(2);
                let kids = (0..n).map(|_| Formula::random(rng, depth - 1, prefix, counter)).collect();
                if k == 1 { Formula::And(kids) } else { Formula::Or(kids) }
            }
        }
    }

    fn text(&self) -> String {
        match self {
            Formula::Atom(a) => a.clone(),
            Formula::Not(f) => format!("not ({})", f.text()),
            Formula::And(v) => format!("({})", v.iter().map(Formula::text).collect::<Vec<_>>().join(" and ")),
            Formula::Or(v) => format!("({})", v.iter().map(Formula::text).collect::<Vec<_>>().join(" or ")),
        }
    }

    /// An equivalent formula: negations pushed to the atoms, operands reversed.
    fn rewrite(&self, negate: bool) -> Formula {
        match (self, negate) {
            (Formula::Atom(_), false) => self.clone(),
            (Formula::Atom(_), true) => Formula::Not(Box::new(self.clone())),
            (Formula::Not(f), n) => f.rewrite(!n),
            (Formula::And(v), false) => Formula::And(v.iter().rev().map(|f| f.rewrite(false)).collect()),
            (Formula::Or(v), false) => Formula::Or(v.iter().rev().map(|f| f.rewrite(false)).collect()),
            (Formula::And(v), true) => Formula::Or(v.iter().rev().map(|f| f.rewrite(true)).collect()),
            (Formula::Or(v), true) => Formula::And(v.iter().rev().map(|f| f.rewrite(true)).collect()),
        }
    }

    /// The same formula with its first atom negated (not equivalent: every atom of a read-once
    /// formula matters).
    fn flip_first(&self) -> Formula {
        match self {
            Formula::Atom(_) => Formula::Not(Box::new(self.clone())),
            Formula::Not(f) => Formula::Not(Box::new(f.flip_first())),
            Formula::And(v) | Formula::Or(v) => {
                let mut v = v.clone();
                if let Some(first) = v.first_mut() {
                    *first = first.flip_first();
                }
                if matches!(self, Formula::And(_)) { Formula::And(v) } else { Formula::Or(v) }
            }
        }
    }
}

/// Deep boolean nesting (depth `depth`): `allow` rules `kind == k and F_k` with random
/// read-once formulas, default `deny`. Planted: an equivalent rewrite of `F_k` with the effect
/// flipped, later (V001); `F_k and not rewrite(F_k)` (V002). Controls: `F_k` with one atom
/// negated, later (reachable).
pub fn nesting(seed: u64, rules: usize, depth: usize) -> Family {
    let mut rng = Rng(seed);
    let pol = "nested";
    let mut specs = Vec::new();
    let mut formulas = Vec::new();
    for k in 0..rules {
        let mut counter = 0;
        let f = Formula::random(&mut rng, depth, &format!("f{k}"), &mut counter);
        specs.push(rule(format!("n{k}"), "allow", format!("resource.kind == \"k{k}\" and {}", f.text()), k as f64));
        formulas.push(f);
    }
    let mut expect_list = Vec::new();
    let mut controls = Vec::new();
    let targets = rng.sample(rules, 3 * (rules / 20).max(1));
    let per = (rules / 20).max(1);
    for (n, &k) in targets.iter().enumerate() {
        let Some(f) = formulas.get(k) else { continue };
        match n / per {
            0 => {
                let id = format!("same-{k}");
                specs.push(rule(
                    &id,
                    "deny",
                    format!("resource.kind == \"k{k}\" and {}", f.rewrite(false).text()),
                    1e6 + n as f64,
                ));
                expect_list.push(expect("V001", pol, Some(&id)));
            }
            1 => {
                let id = format!("contra-{k}");
                specs.push(rule(
                    &id,
                    "allow",
                    format!("resource.kind == \"c{k}\" and {} and not ({})", f.text(), f.rewrite(false).text()),
                    1e6 + n as f64,
                ));
                expect_list.push(expect("V002", pol, Some(&id)));
            }
            _ => {
                let id = format!("flipped-{k}");
                specs.push(rule(
                    &id,
                    "allow",
                    format!("resource.kind == \"k{k}\" and {}", f.flip_first().text()),
                    1e6 + n as f64,
                ));
                controls.push((pol.to_owned(), id));
            }
        }
    }
    expect_list.sort();
    let n = specs.len();
    let policy = PolicySpec { id: pol.into(), default: "deny".into(), priority: false, rules: specs };
    Family {
        name: format!("nesting-{rules}-d{depth}-s{seed}"),
        text: render("nesting", &["deny", "allow"], "overrides", &[policy]),
        expect: expect_list,
        controls,
        rules: n,
    }
}

/// An adversarial union cover: a box tiled by `t`×`t` earlier `allow` tiles, then the box as a
/// `deny` rule — no single tile covers it, their union does (V001). With `leave_hole`, one tile
/// is left out and the box rule is reachable: the control. The default is `allow`, so neither
/// the box (which decides the hole) nor a tile (whose requests the box would deny) is redundant.
pub fn cover(seed: u64, t: usize, leave_hole: bool) -> Family {
    let mut rng = Rng(seed);
    let pol = "cover";
    let hole = rng.below(t * t);
    let mut specs = Vec::new();
    for i in 0..t {
        for j in 0..t {
            if leave_hole && i * t + j == hole {
                continue;
            }
            specs.push(rule(
                format!("tile-{i}-{j}"),
                "allow",
                format!("x >= {i} and x < {} and y >= {j} and y < {}", i + 1, j + 1),
                (i * t + j) as f64,
            ));
        }
    }
    specs.push(rule("box", "deny", format!("x >= 0 and x < {t} and y >= 0 and y < {t}"), 1e6));
    let (expect_list, controls) = if leave_hole {
        (Vec::new(), vec![(pol.to_owned(), "box".to_owned())])
    } else {
        (vec![expect("V001", pol, Some("box"))], Vec::new())
    };
    let n = specs.len();
    let policy = PolicySpec { id: pol.into(), default: "allow".into(), priority: false, rules: specs };
    Family {
        name: format!("cover-{t}-h{}-s{seed}", u8::from(leave_hole)),
        text: render("cover", &["deny", "allow"], "overrides", &[policy]),
        expect: expect_list,
        controls,
        rules: n,
    }
}

/// A change-impact pair: an ACL bundle and a copy with `changes` mutations (an effect flipped,
/// a rule removed, a constant changed, a rule added), or — with `changes == 0` — with two
/// disjoint rules swapped, which changes no decision. Returns (old, new).
pub fn change_pair(seed: u64, rules: usize, changes: usize) -> (String, String) {
    let mut rng = Rng(seed);
    let mut base: Vec<RuleSpec> = Vec::new();
    for k in 0..rules {
        let when = format!("{}{}", key(k, 16), extras(&mut rng, 10));
        base.push(rule(format!("r{k}"), "allow", when, k as f64));
    }
    let old = render(
        "change",
        &["deny", "allow"],
        "overrides",
        &[PolicySpec { id: "acl".into(), default: "deny".into(), priority: false, rules: base.clone() }],
    );
    let mut new = base;
    if changes == 0 {
        let i = rng.below(rules.saturating_sub(1));
        if let (Some(a), Some(b)) = (new.get(i).map(|r| r.at), new.get(i + 1).map(|r| r.at)) {
            if let Some(r) = new.get_mut(i) {
                r.at = b;
            }
            if let Some(r) = new.get_mut(i + 1) {
                r.at = a;
            }
        }
    }
    for c in 0..changes {
        let i = rng.below(new.len());
        match c % 4 {
            0 => {
                if let Some(r) = new.get_mut(i) {
                    r.effect = if r.effect == "allow" { "deny".into() } else { "allow".into() };
                }
            }
            1 => {
                if new.len() > 1 {
                    new.remove(i);
                }
            }
            2 => {
                if let Some(r) = new.get_mut(i) {
                    r.when = r.when.replace("region == \"g", "region == \"h");
                }
            }
            _ => new.push(rule(
                format!("added-{c}"),
                "allow",
                format!("action == \"a{}\" and subject.level >= 5", i % 16),
                1e6,
            )),
        }
    }
    let new = render(
        "change",
        &["deny", "allow"],
        "overrides",
        &[PolicySpec { id: "acl".into(), default: "deny".into(), priority: false, rules: new }],
    );
    (old, new)
}

/// The large benchmark bundle: ACL boxes with 64 actions, 8 paths and 10% string/regex atoms.
pub fn large(seed: u64, rules: usize) -> Family {
    acl(seed, rules, 64, 10)
}
