//! Seeded generators of random bundles and requests for differential tests (interpreter vs VM,
//! later vs JIT). Bundles use every atom kind, `not`/`all_of`/`any_of`, expression strings with
//! path-vs-path atoms and definitions, every effect set, both matching and both combining modes,
//! `none` defaults, effective windows and card scopes; requests draw paths and values from the
//! same small pools so that atoms often hold.

use serde_json::{Map, Value, json};

/// A small, fast, deterministic generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0, without drawing).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }

    /// `k` distinct indices below `n`, in random order.
    pub fn sample(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..n).collect();
        let k = k.min(n);
        for i in 0..k {
            let j = i + self.below(n - i);
            all.swap(i, j);
        }
        all.truncate(k);
        all
    }
}

/// Paths requests set and atoms read (reference `field` spelling).
pub const PATHS: &[&str] = &[
    "subject.role",
    "subject.id",
    "subject.level",
    "subject.groups",
    "action",
    "resource.owner",
    "resource.tags",
    "resource.tags.0",
    "resource.size",
    "resource.meta.classification",
    "region",
    "risk_score",
    "flags.beta",
    "items.1.qty",
    "odd\\.key",
    "conditions_satisfied.dpa-signed",
];

fn scalar(rng: &mut Rng) -> Value {
    let pool = [
        json!("admin"),
        json!("viewer"),
        json!("read"),
        json!("update"),
        json!("u-1"),
        json!("u-2"),
        json!("eu"),
        json!("locked"),
        json!(""),
        json!("Report.PDF"),
        json!(0),
        json!(1),
        json!(1.0),
        json!(2.5),
        json!(-3),
        json!(9_007_199_254_740_993_u64),
        json!(true),
        json!(false),
        json!(null),
    ];
    rng.pick(&pool).cloned().unwrap_or(Value::Null)
}

/// A random JSON value, nested a little.
pub fn value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 1 { 1 } else { 8 }) {
        0..=4 => scalar(rng),
        5 | 6 => Value::Array((0..rng.below(4)).map(|_| value(rng, depth + 1)).collect()),
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.below(3) {
                let k = ["k", "locked", "a", "role"][rng.below(4)];
                m.insert(k.into(), value(rng, depth + 1));
            }
            Value::Object(m)
        }
    }
}

const OPS: &[&str] = &[
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "not_in",
    "contains",
    "regex",
    "starts_with",
    "ends_with",
    "exists",
    "missing",
];

fn path(rng: &mut Rng) -> &'static str {
    rng.pick(PATHS).copied().unwrap_or("action")
}

/// A DSL spelling of a reference `field` (for expression strings).
fn dsl_path(field: &str) -> String {
    let segs = verdict_runtime::request::split_field(field);
    verdict_grammar::printer::path_of(segs.iter().map(String::as_str))
}

fn matcher(rng: &mut Rng, depth: usize, defs: &[String]) -> Value {
    let leaf = depth >= 4 || rng.chance(45);
    if leaf {
        if rng.chance(6) {
            return json!({"kind": "always"});
        }
        if rng.chance(10) {
            // Path-vs-path atoms and definition references need the expression form.
            let a = dsl_path(path(rng));
            let b = dsl_path(path(rng));
            let op = ["==", "!=", "<", ">=", "contains", "in"][rng.below(6)];
            let mut text = format!("{a} {op} {b}");
            if let Some(d) = rng.pick(defs).filter(|_| rng.chance(50)) {
                text = format!("{d} {} {text}", if rng.chance(50) { "and" } else { "or" });
            }
            return Value::String(text);
        }
        let op = rng.pick(OPS).copied().unwrap_or("eq");
        let field = path(rng);
        let v = match op {
            "exists" | "missing" => return json!({"kind": op, "field": field}),
            "in" | "not_in" => Value::Array((0..1 + rng.below(4)).map(|_| scalar(rng)).collect()),
            "regex" => json!(["^a", "dmin$", "u-[0-9]+", "e", "^$", "(?i)report"][rng.below(6)]),
            "starts_with" | "ends_with" | "contains" if rng.chance(70) => {
                json!(["a", "u-", "ad", "", "PDF", "locked"][rng.below(6)])
            }
            _ => {
                let v = value(rng, 0);
                if v.is_null() { json!(1) } else { v }
            }
        };
        return json!({"kind": op, "field": field, "value": v});
    }
    match rng.below(3) {
        0 => json!({"kind": "not", "matcher": matcher(rng, depth + 1, defs)}),
        1 => {
            json!({"kind": "all_of", "matchers": (0..1 + rng.below(3)).map(|_| matcher(rng, depth + 1, defs)).collect::<Vec<_>>()})
        }
        _ => {
            json!({"kind": "any_of", "matchers": (0..1 + rng.below(3)).map(|_| matcher(rng, depth + 1, defs)).collect::<Vec<_>>()})
        }
    }
}

/// A random bundle in the reference JSON format with Verdict's extensions.
pub fn bundle(rng: &mut Rng) -> Value {
    let effects: Vec<&str> = match rng.below(3) {
        0 => vec!["deny", "allow"],
        1 => vec!["block", "require_review", "degrade", "allow"],
        _ => vec!["deny", "mask", "allow"],
    };
    let mut b = Map::new();
    b.insert("bundle_id".into(), json!(format!("gen-{}", rng.below(1000))));
    b.insert("version".into(), json!("1.0.0"));
    if effects != ["deny", "allow"] || rng.chance(20) {
        b.insert("effects".into(), json!(effects));
    }
    if rng.chance(30) {
        b.insert("combine".into(), json!("first"));
    }
    if rng.chance(8) {
        b.insert("effective_from".into(), json!(["2020-01-01T00:00:00Z", "2090-01-01T00:00:00+02:00"][rng.below(2)]));
    }
    if rng.chance(8) {
        b.insert("effective_until".into(), json!(["2021-01-01T00:00:00Z", "2095-01-01T00:00:00Z"][rng.below(2)]));
    }
    if rng.chance(10) {
        b.insert("card_scope".into(), json!({"vendor_id": "v-1", "allowed_actions": ["use", "read"]}));
    }
    let mut defs = Vec::new();
    if rng.chance(30) {
        let mut d = Map::new();
        for i in 0..1 + rng.below(2) {
            let name = format!("d{i}");
            d.insert(name.clone(), matcher(rng, 2, &defs));
            defs.push(name);
        }
        b.insert("definitions".into(), Value::Object(d));
    }
    let mut policies = Vec::new();
    for pi in 0..1 + rng.below(3) {
        let mut p = Map::new();
        p.insert("id".into(), json!(format!("p{pi}")));
        let priority = rng.chance(25);
        if priority {
            p.insert("match".into(), json!("priority"));
        }
        if rng.chance(50) {
            let d =
                if rng.chance(25) { "none" } else { effects.get(rng.below(effects.len())).copied().unwrap_or("deny") };
            p.insert("default_effect".into(), json!(d));
        }
        let mut rules = Vec::new();
        for ri in 0..1 + rng.below(5) {
            let mut r = Map::new();
            r.insert("id".into(), json!(format!("p{pi}-r{ri}")));
            r.insert("effect".into(), json!(effects.get(rng.below(effects.len())).copied().unwrap_or("deny")));
            r.insert("when".into(), matcher(rng, 0, &defs));
            if rng.chance(20) {
                r.insert("description".into(), json!(["", "blocked", "it's fine"][rng.below(3)]));
            }
            if rng.chance(20) {
                r.insert("codes".into(), json!(["C1", "C2"]));
            }
            if rng.chance(20) {
                r.insert("obligations".into(), json!({"log": rng.chance(50), ["ttl", "log"][rng.below(2)]: 3}));
            }
            if priority {
                r.insert("priority".into(), json!(rng.below(3)));
            }
            rules.push(Value::Object(r));
        }
        p.insert("rules".into(), Value::Array(rules));
        policies.push(Value::Object(p));
    }
    b.insert("policies".into(), Value::Array(policies));
    Value::Object(b)
}

fn set(root: &mut Map<String, Value>, field: &str, v: Value) {
    let segs = verdict_runtime::request::split_field(field);
    let Some((last, init)) = segs.split_last() else { return };
    let mut cur = root;
    for s in init {
        let entry = cur.entry(s.clone()).or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(m) = entry else { return };
        cur = m;
    }
    cur.insert(last.clone(), v);
}

/// A random request context.
pub fn request(rng: &mut Rng) -> Value {
    let mut merged = Map::new();
    for field in PATHS {
        if rng.chance(55) {
            let v = match *field {
                "resource.tags" | "subject.groups" => Value::Array((0..rng.below(4)).map(|_| scalar(rng)).collect()),
                "items.1.qty" => {
                    merged.insert("items".into(), json!([{"qty": 1}, {"qty": scalar(rng)}]));
                    continue;
                }
                _ => {
                    if rng.chance(85) {
                        scalar(rng)
                    } else {
                        value(rng, 0)
                    }
                }
            };
            set(&mut merged, field, v);
        }
    }
    let mut ctx = Map::new();
    let subject = merged.remove("subject");
    let resource = merged.remove("resource");
    let action = merged.remove("action");
    if let Some(Value::Object(mut s)) = subject {
        if rng.chance(10) {
            s.insert("vendor_id".into(), json!("v-1"));
        }
        ctx.insert("subject".into(), Value::Object(s));
    }
    if let Some(Value::Object(mut r)) = resource {
        if rng.chance(50) {
            r.insert("vendor_id".into(), json!(["v-1", "v-2"][rng.below(2)]));
        }
        ctx.insert("resource".into(), Value::Object(r));
    }
    match action {
        Some(Value::String(a)) => {
            ctx.insert("action".into(), json!(a));
        }
        _ if rng.chance(30) => {
            ctx.insert("action".into(), json!(["use", "read", "update"][rng.below(3)]));
        }
        _ => {}
    }
    ctx.insert("data".into(), Value::Object(merged));
    Value::Object(ctx)
}
