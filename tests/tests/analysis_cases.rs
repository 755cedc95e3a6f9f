//! Hand-written cases for the rule analysis, one `check(source, expected findings)` each: the
//! exact atom semantics it must respect (missing paths, `not`, `!=`, `not in`, exact numbers,
//! bool ≠ number, `contains` on strings, lists and objects, ordering only within numbers or
//! strings, regexes against prefixes), path structure, card scopes, every matching and
//! combining mode, definitions and path-vs-path atoms. Every case is also checked in its YAML
//! and JSON forms (same findings), every witness is confirmed by the interpreter, and every
//! universal claim survives 10,000 random requests.
#![allow(clippy::panic, clippy::unwrap_used, clippy::indexing_slicing, reason = "test failures")]

use verdict_compiler::analysis::{Options, analyze, analyze_with};
use verdict_compiler::diagnostic::{Diagnostic, Severity};
use verdict_compiler::ir::Bundle;
use verdict_compiler::source::SourceFile;
use verdict_compiler::{SourceKind, compile_as, emit};
use verdict_tests::analysis::{check_universal, verify_witnesses};
use verdict_tests::families;

fn compile(name: &str, text: &str, kind: SourceKind) -> Bundle {
    let file = SourceFile::new(name, text);
    let c = compile_as(&file, kind);
    let errors: Vec<_> = c.diagnostics.iter().filter(|d| d.severity == Severity::Error).collect();
    assert!(errors.is_empty(), "{name}: {errors:?}");
    c.bundle.unwrap()
}

fn summary(diags: &[Diagnostic]) -> Vec<String> {
    let mut out: Vec<String> = diags
        .iter()
        .map(|d| format!("{} {}", d.code.as_str(), d.rule.as_deref().or(d.policy.as_deref()).unwrap_or("-")))
        .collect();
    out.sort();
    out
}

/// Analyses `src` (a `.verdict` bundle) and its YAML and JSON conversions; the findings must be
/// exactly `expected` (`"V001 rule"`, `"V009 policy"`, `"V010 -"`), witnesses must verify and
/// universal claims survive random search. Returns the diagnostics of the `.verdict` form.
fn check(src: &str, expected: &[&str]) -> Vec<Diagnostic> {
    let bundle = compile("case.verdict", src, SourceKind::Verdict);
    let diags = analyze(&bundle);
    let mut want: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    assert_eq!(summary(&diags), want, "findings of\n{src}\n{diags:#?}");
    verify_witnesses(&bundle, &diags).unwrap_or_else(|e| panic!("{e}"));
    check_universal(&bundle, &diags, 10_000, 5).unwrap_or_else(|e| panic!("{e}"));
    let json = emit::to_json(&bundle);
    for (name, text, kind) in
        [("case.json", json.to_string(), SourceKind::Json), ("case.yaml", emit::yaml(&json), SourceKind::Yaml)]
    {
        let other = compile(name, &text, kind);
        let d = analyze(&other);
        assert_eq!(summary(&d), want, "{name}:\n{text}");
        verify_witnesses(&other, &d).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    diags
}

const HEAD: &str = "bundle \"t\" {\n  effects [deny, review, allow]\n}\n";

fn policy(rules: &str) -> String {
    format!("{HEAD}policy p {{\n  default deny\n{rules}\n}}\n")
}

#[test]
fn not_is_true_on_a_missing_path() {
    check(&policy("rule a allow { when not (x == 1) }\nrule b review { when missing(x) }"), &["V001 b"]);
}

#[test]
fn ne_and_not_in_are_false_on_a_missing_path() {
    check(&policy("rule a allow { when x != 1 }\nrule b review { when missing(x) }"), &[]);
    check(&policy("rule a allow { when x not in [1, 2] }\nrule b review { when missing(x) }"), &[]);
}

#[test]
fn numbers_compare_exactly_across_int_and_float() {
    check(&policy("rule a allow { when x == 1 }\nrule b review { when x == 1.0 }"), &["V001 b"]);
    check(&policy("rule a allow { when x == 9007199254740993 }\nrule b review { when x == 9007199254740992.0 }"), &[]);
    check(
        &policy(
            "rule a allow { when x > 1 and x < 1.0000000000000002 }\nrule b review { when x > 1 and x < 2 and x != 1.5 }",
        ),
        &["V002 a"],
    );
    check(&policy("rule a allow { when x >= 1 and x < 2 }\nrule b review { when x == 1.5 }"), &["V001 b"]);
}

#[test]
fn bool_never_equals_a_number() {
    check(&policy("rule a allow { when x == true }\nrule b review { when x == 1 }"), &[]);
    check(&policy("rule a allow { when x in [1, 2] }\nrule b review { when x == true }"), &[]);
    check(&policy("rule a allow { when x in [[1], true] }\nrule b review { when x == [1.0] }"), &["V001 b"]);
}

#[test]
fn ordering_holds_only_between_numbers_or_between_strings() {
    check(
        &policy(
            "rule a allow { when x > 5 and x < \"z\" }\nrule b review { when x > 5 }\nrule c allow { when x > \"a\" }",
        ),
        &["V002 a"],
    );
    check(&policy("rule a allow { when x >= \"b\" and x < \"c\" }\nrule b review { when x == \"bz\" }"), &["V001 b"]);
    check(&policy("rule a allow { when x > true }"), &["V002 a"]);
}

#[test]
fn contains_looks_into_strings_lists_and_objects() {
    check(
        &policy(
            "rule a allow { when tags contains \"a\" }
rule l review { when tags == [\"a\", \"b\"] }
rule s review { when tags == \"xay\" }
rule o review { when tags == {\"a\": 1} }
rule n review { when tags == [\"b\"] }",
        ),
        &["V001 l", "V001 o", "V001 s"],
    );
    check(&policy("rule a allow { when tags contains 5 and tags == \"5\" }"), &["V002 a"]);
}

#[test]
fn regexes_and_prefixes() {
    check(
        &policy(
            "rule a allow { when name matches \"^a\" }
rule b review { when name starts_with \"ab\" }
rule c review { when name matches \"(?i)^A\" }
rule d allow { when name matches \"^[0-9]+$\" and name ends_with \"x\" }
rule e review { when name ends_with \".pdf\" and name starts_with \"a\" }",
        ),
        &["V001 b", "V001 e", "V002 d"],
    );
}

#[test]
fn paths_inside_values_fit_together() {
    check(
        &policy(
            "rule a allow { when exists(r.b) and r == 5 }
rule b review { when r == {\"b\": 1} and r.b == 2 }
rule c allow { when r.b == 1 }
rule d review { when r == {\"b\": 1} }
rule e allow { when exists(l.1) and l == [] }
rule f review { when exists(l.2) and missing(l.0) and l contains 5 }",
        ),
        &["V001 d", "V002 a", "V002 b", "V002 e", "V002 f"],
    );
}

#[test]
fn card_scope_bounds_what_a_rule_can_see() {
    let src = "bundle \"t\" {
  card_scope { vendor_id: \"v1\", allowed_actions: [\"use\"] }
}
policy p {
  default deny
  rule a allow { when action == \"train\" }
  rule b allow { when action == \"use\" }
}
";
    // Inside the scope the action is always `use`, so `b` also leaves the default no request.
    let d = check(src, &["V001 a", "V009 p"]);
    assert!(d.iter().any(|d| d.message.contains("outside the card scope")), "{d:?}");
}

#[test]
fn priority_matching() {
    let src = format!(
        "{HEAD}policy p {{
  default deny
  match priority
  rule low allow {{ when x == 1 priority 1 }}
  rule high review {{ when x >= 1 priority 5 }}
  rule tie deny {{ when y == 1 priority 1 }}
  rule other allow {{ when y == 1 and z == 1 priority 1 }}
}}
"
    );
    // Tried in the order high, tie, low, other. `low` is covered by `high`; `other` by `tie`,
    // with which it also ties (deny wins) where `high` does not hold. `low` never ties with
    // `tie`: wherever `low` holds, `high` does.
    let d = check(&src, &["V001 low", "V001 other", "V005 other"]);
    assert!(d.iter().any(|d| d.severity == Severity::Error));
}

#[test]
fn ambiguity_is_an_error_with_a_witness() {
    let src = format!(
        "{HEAD}policy p {{
  default deny
  match priority
  rule a allow {{ when role == \"admin\" }}
  rule b review {{ when action == \"delete\" }}
}}
"
    );
    // `review` is more severe than `allow`: the tie goes to `b`, and `a` is reported.
    let d = check(&src, &["V005 a"]);
    assert_eq!(d[0].severity, Severity::Error);
    assert!(d[0].witness.is_some());
}

#[test]
fn redundancy_and_dead_defaults_under_priority() {
    let src = format!(
        "{HEAD}policy p {{
  default deny
  match priority
  rule a allow {{ when x == 1 priority 5 }}
  rule b allow {{ when x >= 1 priority 1 }}
  rule c review {{ when true priority 0 }}
}}
"
    );
    // `a`'s requests get `allow` from `b` anyway; `c` catches everything else.
    check(&src, &["V003 a", "V009 p"]);
}

#[test]
fn conflicts_between_priority_policies() {
    let src = "bundle \"t\" {\n  effects [deny, review, allow]\n  combine overrides\n}
policy p1 {\n  default deny\n  match priority\n  rule a allow { when role == \"admin\" priority 2 }\n  rule a2 review { when role == \"admin\" and action == \"delete\" priority 1 }\n}
policy p2 {\n  default allow\n  match priority\n  rule b review { when action == \"delete\" priority 1 }\n}
";
    // In p1, `a` outranks `a2` (unreachable). Across policies `a` (allow) loses to `b` (review).
    check(src, &["V001 a2", "V004 a"]);
}

#[test]
fn redundancy_and_dead_defaults() {
    check(&policy("rule a deny { when x == 1 }\nrule b allow { when x == 2 }"), &["V003 a"]);
    check(
        &policy("rule a allow { when x == 1 }\nrule b review { when x == 2 }\nrule c allow { when true }"),
        &["V003 a", "V009 p"],
    );
}

#[test]
fn conflicts_under_each_combining_mode() {
    let two = |combine: &str| {
        format!(
            "bundle \"t\" {{\n  effects [deny, review, allow]\n  combine {combine}\n}}
policy p1 {{\n  default none\n  rule a allow {{ when role == \"admin\" }}\n}}
policy p2 {{\n  default none\n  rule b deny {{ when action == \"delete\" }}\n}}
"
        )
    };
    // `overrides`: the less severe loses; `first`: the later policy loses.
    check(&two("overrides"), &["V004 a", "V010 -"]);
    check(&two("first"), &["V004 b", "V010 -"]);
}

#[test]
fn gaps_come_with_a_missing_rule() {
    let src = format!(
        "{HEAD}policy p {{
  default none
  rule a allow {{ when role == \"admin\" }}
  rule b deny {{ when role == \"guest\" and action == \"delete\" }}
}}
"
    );
    let d = check(&src, &["V010 -"]);
    let help = d[0].help.clone().unwrap_or_default();
    assert!(help.contains("no policy applies when"), "{help}");
}

#[test]
fn definitions() {
    let src = format!(
        "{HEAD}let never = x > 5 and x < 3
let admin = role == \"admin\"
policy p {{
  default deny
  rule a allow {{ when admin and never }}
  rule b allow {{ when admin }}
  rule c review {{ when admin and y == 1 }}
}}
"
    );
    // A definition's finding names no rule.
    check(&src, &["V001 c", "V002 -", "V002 a"]);
}

#[test]
fn path_against_path_is_opaque_but_consistent() {
    check(
        &policy(
            "rule a allow { when x == y }\nrule b review { when x == y and exists(x) }\nrule c allow { when x == y and x != y }",
        ),
        &["V001 b", "V002 c"],
    );
    let src = "bundle \"t\" {}
policy p1 { default none rule w allow { when resource.owner == subject.id } }
policy p2 { default none rule v deny { when exists(subject.id) } }
";
    check(src, &["V004 w", "V010 -"]);
}

#[test]
fn the_examples_have_only_verified_findings() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    // The example directories that hold programs rather than a bundle of their own.
    const NOT_BUNDLES: [&str; 2] = ["python", "service"];
    let (mut dirs, mut checked) = (0, 0);
    for entry in std::fs::read_dir(dir).unwrap() {
        let example = entry.unwrap().path();
        let skip = example.file_name().and_then(|n| n.to_str()).is_some_and(|n| NOT_BUNDLES.contains(&n));
        if !example.is_dir() || skip {
            continue;
        }
        dirs += 1;
        let before = checked;
        for f in std::fs::read_dir(&example).unwrap() {
            let path = f.unwrap().path();
            let name = path.display().to_string();
            // Policy test files (`bundle.test.yaml`) are not bundles.
            if !(name.ends_with(".verdict") || name.ends_with(".yaml")) || name.ends_with(".test.yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let b = compile(&name, &text, SourceKind::detect(&name, &text));
            let d = analyze(&b);
            verify_witnesses(&b, &d).unwrap_or_else(|e| panic!("{name}: {e}"));
            check_universal(&b, &d, 10_000, 3).unwrap_or_else(|e| panic!("{name}: {e}"));
            checked += 1;
        }
        assert!(checked > before, "{} holds no bundle (`.verdict` or `.yaml`)", example.display());
    }
    // Every example directory contributed a bundle; none went missing unnoticed.
    assert!(dirs >= 8, "{dirs} example directories");
    assert!(checked >= dirs, "{checked} bundles checked in {dirs} example directories");
}

#[test]
fn the_rule_graph_records_what_was_proved() {
    use verdict_compiler::analysis::graph::{Edge, RuleRef};
    let src = policy(
        "rule broad allow { when action == \"read\" }\nrule narrow review { when action == \"read\" and role == \"guest\" }\nrule other allow { when action == \"write\" }",
    );
    let b = compile("g.verdict", &src, SourceKind::Verdict);
    let a = analyze_with(&b, &Options::default());
    let (broad, narrow) = (RuleRef { policy: 0, rule: 0 }, RuleRef { policy: 0, rule: 1 });
    assert_eq!(a.graph.related(narrow, Edge::Blocks), vec![broad]);
    assert_eq!(a.graph.related(narrow, Edge::Overlaps), vec![broad]);
    assert!(a.graph.related(RuleRef { policy: 0, rule: 2 }, Edge::Overlaps).is_empty());
    assert_eq!(a.stats.discriminating.as_deref(), Some("action"));
}

/// Hostile paths of thousands of segments: analysed quickly, no panic, no unverified claim.
#[test]
fn very_long_paths_stay_cheap() {
    let seg = vec!["a"; 20_000].join(".");
    let yaml = format!(
        "bundle_id: x\npolicies:\n  - id: p\n    default_effect: deny\n    rules:\n      - id: r\n        effect: allow\n        when: {{kind: eq, field: \"{seg}\", value: 1}}\n  - id: q\n    default_effect: none\n    rules:\n      - id: s\n        effect: deny\n        when: {{kind: exists, field: \"a.a\"}}\n"
    );
    let b = compile("deep.yaml", &yaml, SourceKind::Yaml);
    let t = std::time::Instant::now();
    let d = analyze(&b);
    assert!(t.elapsed().as_secs() < 20, "{:?}", t.elapsed());
    verify_witnesses(&b, &d).unwrap_or_else(|e| panic!("{e}"));
}

/// Output is byte-identical across runs (hash maps are seeded anew for each run).
#[test]
fn findings_are_deterministic() {
    for f in [families::acl(5, 200, 16, 30), families::rich(5, "first", 4, 20), families::strings(5, 12)] {
        let b = compile(&format!("{}.verdict", f.name), &f.text, SourceKind::Verdict);
        let first = format!("{:?}", analyze(&b));
        for _ in 0..3 {
            assert_eq!(format!("{:?}", analyze(&b)), first, "{}", f.name);
        }
    }
}

/// Tiny budgets: the analysis stops early, says so (V110), and what it did report still holds.
#[test]
fn budgets_turn_blow_up_into_undecided_never_into_wrong_claims() {
    let tiny = Options { max_nodes: 300, max_steps: 2_000, ..Options::default() };
    let mut undecided = 0;
    for case in verdict_tests::seed_compat().iter().step_by(5) {
        let file = SourceFile::new("b.json", case.bundle.to_string());
        let Some(b) = compile_as(&file, SourceKind::Json).bundle else { continue };
        let a = analyze_with(&b, &tiny);
        if a.stats.undecided {
            undecided += 1;
            assert!(a.diagnostics.iter().any(|d| d.code.as_str() == "V110" && d.severity == Severity::Info));
        }
        verify_witnesses(&b, &a.diagnostics).unwrap_or_else(|e| panic!("line {}: {e}", case.line));
        check_universal(&b, &a.diagnostics, 500, 9).unwrap_or_else(|e| panic!("line {}: {e}", case.line));
    }
    assert!(undecided > 10, "the tiny budget should run out on many bundles ({undecided})");
}

/// Rules that read state or call externs may fault, and a fault decides (the most severe effect,
/// naming the rule): such a rule is neither redundant nor unreachable where it is reached, and
/// later rules stay reachable (a fault only takes requests away from them).
#[test]
fn rules_that_may_fault_decide_by_their_faults() {
    let head = "bundle \"t\" {\n  effects [deny, review, allow]\n}\nextern ok(any) -> bool\nstate spend { add 1  key [subject.id] }\n";
    let with = |rules: &str| format!("{head}policy p {{\n  default deny\n{rules}\n}}\n");
    // Without the extern, `a` (deny) would be redundant beside the default deny.
    check(&with("rule a deny { when x == 1 }\nrule b allow { when x == 2 }"), &["V003 a"]);
    check(&with("rule a deny { when x == 1 and ok(y) }\nrule b allow { when x == 2 }"), &[]);
    // The same call in a later rule is memoized (it would have faulted in `a` already), but the
    // analysis does not track which calls were made: it stays silent rather than guess.
    check(&with("rule a deny { when x == 1 and ok(y) }\nrule b allow { when x == 1 and ok(y) }"), &[]);
    // A later rule that cannot fault is shadowed as before.
    check(&with("rule a deny { when x == 1 or ok(y) }\nrule b allow { when x == 1 }"), &["V001 b"]);
    // A fallible rule behind a catch-all is never reached, so it is unreachable.
    check(&with("rule a allow { when true }\nrule b deny { when spend.day > 10 }"), &["V001 b", "V009 p"]);
    // A contradiction the extern is reached before: the rule can still fault, so no V002.
    check(&with("rule a allow { when ok(y) and x == 1 and x == 2 }"), &[]);
    // After the contradiction, the extern is never reached: V002 stands.
    check(&with("rule a allow { when x == 1 and x == 2 and ok(y) }"), &["V002 a"]);
    // A state read: the rule may fault (the key may be missing, the store down).
    check(&with("rule a deny { when spend.day > 100 }\nrule b allow { when x == 2 }"), &[]);
}

/// `diff` never claims equivalence when a rule may fault where it is reached, even between a
/// bundle and itself: the comparison covers only decisions without faults.
#[test]
fn diff_claims_no_equivalence_over_faults() {
    let src =
        format!("{HEAD}extern ok(any) -> bool\npolicy p {{\n  default deny\n  rule a allow {{ when ok(y) }}\n}}\n");
    let b = compile("f.verdict", &src, SourceKind::Verdict);
    let report = verdict_compiler::analysis::diff(&b, &b, &Options::default());
    assert!(report.faults && !report.equivalent() && report.transitions.is_empty(), "{report:?}");
    // An extern behind a condition that never holds is never reached: equivalence stands.
    let src = format!(
        "{HEAD}extern ok(any) -> bool\npolicy p {{\n  default deny\n  rule a allow {{ when x == 1 and x == 2 and ok(y) }}\n}}\n"
    );
    let b = compile("g.verdict", &src, SourceKind::Verdict);
    let report = verdict_compiler::analysis::diff(&b, &b, &Options::default());
    assert!(!report.faults && report.equivalent(), "{report:?}");
}

/// State updates that may be refused (a key path a request may lack) decide the most severe
/// effect whatever the rules say: `diff` claims no equivalence over them, unless every key path
/// is required and typed as a scalar.
#[test]
fn diff_claims_no_equivalence_over_refused_updates() {
    let with = |header: &str| {
        format!(
            "bundle \"u\" {{\n{header}}}\nstate spend {{ add amount  key [subject.id]  on [allow] }}\npolicy p {{\n  default allow\n  rule r deny {{ when x == 1 }}\n}}\n"
        )
    };
    let loose = compile("u.verdict", &with(""), SourceKind::Verdict);
    let report = verdict_compiler::analysis::diff(&loose, &loose, &Options::default());
    assert!(report.faults && !report.equivalent(), "{report:?}");
    let sure = compile(
        "v.verdict",
        &with("  schema { subject.id: string, x: any, amount: any }\n  required [subject.id]\n"),
        SourceKind::Verdict,
    );
    let report = verdict_compiler::analysis::diff(&sure, &sure, &Options::default());
    assert!(!report.faults && report.equivalent(), "{report:?}");
}
