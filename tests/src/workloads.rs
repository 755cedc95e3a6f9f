//! The benchmark workloads, shared by the tests and the benchmarks: W52 of `PERFORMANCE.md`
//! and a generated 10,000-rule bundle (1,000 actions × 10 rules), with their requests.

use std::fmt::Write;

/// W52: the reference quickstart plus 50 filler rules plus a locked-resource deny (52 rules).
pub fn w52_source() -> String {
    let mut s = String::from(
        "bundle w52 { version \"1\" }\n\npolicy writes {\n  default deny\n\n  rule \"admin-writes\" allow {\n    when action in [\"create\", \"update\", \"delete\"] and subject.role == \"admin\"\n  }\n",
    );
    for i in 0..50 {
        let _ = write!(
            s,
            "\n  rule \"filler-{i}\" allow {{\n    when action == \"act{i}\" and subject.role == \"viewer\"\n  }}\n"
        );
    }
    s.push_str("}\n\npolicy locked {\n  default allow\n\n  rule locked deny {\n    when resource.tags contains \"locked\"\n  }\n}\n");
    s
}

/// The three W52 requests: admin update (first rule), viewer read of a locked resource (scans
/// everything), viewer `act49` (last filler).
pub fn w52_requests() -> [(&'static str, &'static str); 3] {
    [
        (
            "admin-update",
            r#"{"subject": {"id": "u1", "role": "admin"}, "action": "update", "resource": {"id": "r1", "tags": ["public"]}}"#,
        ),
        (
            "viewer-locked-read",
            r#"{"subject": {"id": "u2", "role": "viewer"}, "action": "read", "resource": {"id": "r2", "tags": ["locked"]}}"#,
        ),
        (
            "viewer-act49",
            r#"{"subject": {"id": "u3", "role": "viewer"}, "action": "act49", "resource": {"id": "r3", "tags": []}}"#,
        ),
    ]
}

/// 1,000 actions × 10 rules, each rule on a role, a level and a region; one deny policy.
pub fn rules_10k_source() -> String {
    let mut s = String::from("bundle big { version \"1\" }\n\npolicy main {\n  default deny\n");
    let roles = ["admin", "editor", "viewer", "auditor", "guest"];
    for a in 0..1000 {
        for r in 0..10 {
            let role = roles.get((a + r) % roles.len()).copied().unwrap_or("guest");
            let _ = write!(
                s,
                "\n  rule \"a{a}-r{r}\" allow {{\n    when action == \"act{a}\" and subject.role == \"{role}\" and subject.level >= {r} and region != \"blocked-{r}\"\n  }}\n"
            );
        }
    }
    s.push_str("}\n\npolicy locked {\n  default allow\n\n  rule locked deny {\n    when resource.tags contains \"locked\"\n  }\n}\n");
    s
}

/// Requests of the 10,000-rule bundle: a match early in a bucket, late in a bucket, and no match.
pub fn rules_10k_requests() -> [(&'static str, &'static str); 3] {
    [
        (
            "early",
            r#"{"subject": {"role": "admin", "level": 9}, "action": "act0", "resource": {"tags": []}, "data": {"region": "eu"}}"#,
        ),
        (
            "late",
            r#"{"subject": {"role": "viewer", "level": 9}, "action": "act998", "resource": {"tags": []}, "data": {"region": "eu"}}"#,
        ),
        (
            "none",
            r#"{"subject": {"role": "nobody", "level": 0}, "action": "act500", "resource": {"tags": ["locked"]}, "data": {"region": "eu"}}"#,
        ),
    ]
}
