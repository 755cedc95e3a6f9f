use verdict_grammar::parse_file;

#[test]
fn smoke() {
    let src = r#"
bundle "edu-gate" { version "1.2.0" effects [deny, allow] schema { subject.role: string, resource.tags: list<string> } }
let is_admin = subject.role == "admin"
policy "writes" {
  default deny
  match first
  rule "admin-writes" allow {
    when action in ["create", "update"] and is_admin or not exists(subject.x) and input."odd.key" == true
    reason "writes need admin"
    codes ["A"]
    obligations { "log": true, ttl: -3 }
  }
  rule r2 deny { when resource.tags[0] contains "locked" and a.0.1 != null }
}
policy p2 {
  rule "x" allow { when (a == 1
"#;
    let p = parse_file(src);
    println!("{:#?}", p.errors);
    println!("{:?}", p.tree.items.len());
    for i in &p.tree.items {
        println!("{:?}\n", i);
    }
}
