//! The choreography checks on this source tree's agents and on temporary folders that break them.

use std::path::Path;

use super::*;
use crate::manifest;
use crate::validate::Severity;

/// The notifier's rule as `choreo_notifier::PATTERN` has it (that crate depends on this one; the
/// CLI tests run the real one).
const NOTIFIER: &str =
    r#"{"source":[{"prefix":"agents."}],"detail":{"authtype":["app_user"],"authid":[{"exists":true}]}}"#;

fn world(notifier: bool) -> World {
    let mut world = World::new(&World::source_tree_schemas());
    world.producers = vec![
        Producer {
            source: "retail.support-api".into(),
            events: vec!["OrderSupportPlaced".into()],
            auth: Auth::Customer,
        },
        Producer {
            source: "retail.backoffice".into(),
            events: vec!["OrderShipped".into(), "ChargeCaptured".into()],
            auth: Auth::Service("backoffice".into()),
        },
    ];
    if notifier {
        world.subscribers =
            vec![Subscriber { name: "notifier".into(), pattern: NOTIFIER.into(), file: "notifier/lib.rs".into() }];
    }
    world
}

/// A copy of this source tree's agents, plus `extra` files.
fn agents(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    copy(&crate::local::default_agents_dir(), root.path());
    for (path, text) in extra {
        let path = root.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    root
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().map(Result::unwrap) {
        if entry.file_type().unwrap().is_dir() {
            copy(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// An agent `name` on `subscribe`, completing with `event` (its own event, any data).
fn agent(name: &str, subscribe: &str, event: &str, more: &str) -> Vec<(String, String)> {
    vec![
        (
            format!("{name}/agent.toml"),
            format!(
                "name = \"{name}\"\ndescription = \"x\"\nsubscribe = {subscribe}\ncompletes_with = \"{event}\"\n{more}"
            ),
        ),
        (format!("{name}/prompt.md"), "x".into()),
        (format!("{name}/events/{event}.json"), r#"{"type": "object"}"#.into()),
    ]
}

fn check_dir(root: &Path, world: &World) -> (Vec<String>, Graph) {
    let agents = manifest::discover(root).unwrap();
    let checked = check(&agents, world);
    let shown = root.display().to_string();
    (checked.problems.iter().map(|p| p.to_string().replace(&shown, "")).collect(), checked.graph)
}

fn with(files: Vec<(String, String)>) -> tempfile::TempDir {
    let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
    agents(&files)
}

#[test]
fn the_source_tree_agents_have_no_errors_and_the_expected_graph() {
    let agents = manifest::discover(&crate::local::default_agents_dir()).unwrap();
    let checked = check(&agents, &world(true));
    let errors: Vec<String> =
        checked.problems.iter().filter(|p| p.severity == Severity::Error).map(ToString::to_string).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let warnings: Vec<String> = checked.problems.iter().map(|p| p.message.clone()).collect();
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(warnings[0].starts_with("`OrderShipped`, published by `retail.backoffice`, is consumed by nobody"));
    assert!(warnings[1].starts_with("`ChargeCaptured`, published by `retail.backoffice`, is consumed by nobody"));
    let text = checked.graph.text();
    for line in [
        "OrderSupportPlaced (retail.support-api) → support",
        "OrderShipped (retail.backoffice) → nobody",
        "support —SupportTriaged→ inventory, notifier, payments",
        "support —OrderSupportCompleted→ notifier",
        "payments —PaymentIssueResolved→ notifier, support",
        "inventory —InventoryChecked→ notifier, orders",
        "orders —FulfilmentIssueResolved→ notifier, support",
        "orders —CaseEscalated→ notifier",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    assert!(text.starts_with("OrderSupportPlaced (retail.support-api) → support\n"), "{text}");
    // The joins loop back to support, bounded by its triage being once per case.
    let loops: Vec<&str> = text.lines().filter(|l| l.starts_with("loop: ")).collect();
    assert_eq!(loops.len(), 2, "{text}");
    assert!(loops.iter().all(|l| l.ends_with("(bounded: `support` publishes `SupportTriaged` once per case)")));
    assert!(loops.contains(&"loop: inventory —InventoryChecked→ orders —FulfilmentIssueResolved→ support —SupportTriaged→ inventory (bounded: `support` publishes `SupportTriaged` once per case)"), "{text}");
}

#[test]
fn a_rule_on_an_event_nobody_publishes_is_an_error_naming_it() {
    let root = with(agent("refunds", r#"{ "detail-type" = ["RefundRequested"] }"#, "RefundDone", ""));
    let (problems, graph) = check_dir(root.path(), &world(true));
    assert!(
        problems.contains(&"/refunds/agent.toml: `subscribe`: the rule of `refunds` matches no event anyone publishes: nobody publishes `RefundRequested` (no producer, and no agent completes with it)".to_owned()),
        "{problems:#?}"
    );
    assert!(graph.edges().iter().all(|(_, _, to)| !to.contains(&"refunds".to_owned())));
}

#[test]
fn a_field_condition_the_schema_rules_out_is_an_error_with_the_reason() {
    let subscribe = r#"{ "detail-type" = ["SupportTriaged"], detail = { data = { issues = ["lost_parcel"] } } }"#;
    let root = with(agent("parcels", subscribe, "ParcelTraced", ""));
    let (problems, _) = check_dir(root.path(), &world(true));
    let found: Vec<&String> = problems.iter().filter(|p| p.starts_with("/parcels/agent.toml: `subscribe`:")).collect();
    assert_eq!(found.len(), 1, "{problems:#?}");
    assert!(found[0].contains("matches no event anyone publishes: `detail.data.issues` wants [\"lost_parcel\"], but in `SupportTriaged` from `agents.support` it is one of \"duplicate_charge\""), "{}", found[0]);
}

#[test]
fn a_rule_naming_no_event_that_nothing_can_match_is_an_error_with_an_example_reason() {
    let mut files = agent("triage", r#"{ detail = { data = { issues = ["lost_parcel"] } } }"#, "Triaged", "");
    // An open schema could carry `issues` (and the rule would answer its own completion).
    files[2].1 = r#"{"type": "object", "additionalProperties": false, "properties": {}}"#.into();
    let root = with(files);
    let (problems, _) = check_dir(root.path(), &world(true));
    let found: Vec<&String> = problems.iter().filter(|p| p.starts_with("/triage/")).collect();
    assert_eq!(found.len(), 1, "{problems:#?}");
    assert!(found[0].contains("no producer's event and no agent's completion can match it, e.g. `detail.data.issues` wants [\"lost_parcel\"], but in `"), "{}", found[0]);
    assert!(!found[0].ends_with("no such field"), "{}", found[0]);
}

#[test]
fn a_named_event_a_rule_can_never_receive_is_a_warning_when_others_match() {
    let subscribe = r#"{ "detail-type" = ["InventoryChecked", "StockCounted"] }"#;
    let root = with(agent("restock", subscribe, "RestockOrdered", ""));
    let (problems, _) = check_dir(root.path(), &world(true));
    let found: Vec<&String> = problems.iter().filter(|p| p.starts_with("/restock/")).collect();
    assert_eq!(found.len(), 1, "{problems:#?}");
    assert!(found[0].contains("`subscribe`: warning: the rule of `restock` names an event it never receives: nobody publishes `StockCounted`"), "{}", found[0]);
}

#[test]
fn an_event_nobody_consumes_is_a_warning_unless_the_notifier_takes_it() {
    let root = with(agent("auditor", r#"{ "detail-type" = ["OrderShipped"] }"#, "AuditDone", ""));
    let (problems, _) = check_dir(root.path(), &world(false));
    let audit = "/auditor/agent.toml: `completes_with`: warning: `auditor` publishes `AuditDone`, which nobody consumes: no agent's rule matches it";
    assert!(problems.iter().any(|p| p == audit), "{problems:#?}");
    assert!(problems.iter().any(|p| p.contains("`CaseEscalated`, published by every agent, is consumed by nobody")));
    let (with_notifier, _) = check_dir(root.path(), &world(true));
    assert!(
        !with_notifier.iter().any(|p| p.contains("AuditDone") || p.contains("CaseEscalated")),
        "{with_notifier:#?}"
    );
    // OrderShipped now has a consumer; ChargeCaptured still has none.
    assert!(!with_notifier.iter().any(|p| p.contains("`OrderShipped`")), "{with_notifier:#?}");
    assert!(with_notifier.iter().any(|p| p.contains("`ChargeCaptured`")), "{with_notifier:#?}");
}

#[test]
fn a_loop_between_two_agents_is_an_error_with_its_path_unless_once_per_case() {
    let mut files = agent("ping", r#"{ "detail-type" = ["Ponged", "OrderShipped"] }"#, "Pinged", "");
    files.extend(agent("pong", r#"{ "detail-type" = ["Pinged"] }"#, "Ponged", ""));
    let root = with(files);
    let (problems, graph) = check_dir(root.path(), &world(true));
    let loops: Vec<&String> = problems.iter().filter(|p| p.contains("loop")).collect();
    assert_eq!(
        loops,
        [
            "/ping/agent.toml: `subscribe`: a loop that could run forever: ping —Pinged→ pong —Ponged→ ping; no event on it is once_per_case, so only the case's hop budget (`budgethops`) stops it"
        ],
        "{problems:#?}"
    );
    assert!(graph.text().contains("loop: ping —Pinged→ pong —Ponged→ ping (unbounded"), "{}", graph.text());

    let mut bounded =
        agent("ping", r#"{ "detail-type" = ["Ponged", "OrderShipped"] }"#, "Pinged", "once_per_case = [\"Pinged\"]\n");
    bounded.extend(agent("pong", r#"{ "detail-type" = ["Pinged"] }"#, "Ponged", ""));
    let root = with(bounded);
    let (problems, graph) = check_dir(root.path(), &world(true));
    assert!(!problems.iter().any(|p| p.contains("loop")), "{problems:#?}");
    assert!(
        graph
            .text()
            .contains("loop: ping —Pinged→ pong —Ponged→ ping (bounded: `ping` publishes `Pinged` once per case)")
    );
}

#[test]
fn an_agent_answering_its_own_completion_loops() {
    let root = with(agent("echo", r#"{ "detail-type" = ["Echoed", "OrderShipped"] }"#, "Echoed", ""));
    let (problems, _) = check_dir(root.path(), &world(true));
    assert!(problems.iter().any(|p| p.contains("a loop that could run forever: echo —Echoed→ echo;")), "{problems:#?}");
}

/// A published folder with `schemas` as `<Event>.json` files.
fn published(schemas: &[(&str, serde_json::Value)]) -> (tempfile::TempDir, World) {
    let dir = tempfile::tempdir().unwrap();
    for (name, schema) in schemas {
        std::fs::write(dir.path().join(format!("{name}.json")), schema.to_string()).unwrap();
    }
    let world = World { published: dir.path().to_owned(), ..world(true) };
    (dir, world)
}

fn voucher(id: &str, required: &[&str]) -> String {
    serde_json::json!({"$id": id, "type": "object", "additionalProperties": false, "required": required,
        "properties": {"order_id": {"type": "string"}, "code": {"type": "string"}}})
    .to_string()
}

#[test]
fn an_own_completion_schema_that_breaks_its_published_version_is_an_error_until_the_version_is_bumped() {
    let baseline = serde_json::from_str(&voucher("urn:choreo:schema:VoucherGranted:1", &["order_id", "code"])).unwrap();
    let (_dir, world) = published(&[("VoucherGranted", baseline)]);
    let mut files = agent("loyalty", r#"{ "detail-type" = ["OrderSupportCompleted"] }"#, "VoucherGranted", "");
    files[2].1 = voucher("urn:choreo:schema:VoucherGranted:1", &["order_id", "code", "customer"]);
    let root = with(files.clone());
    let found = check_schemas(&root.path().join("loyalty"), &world);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!((found[0].severity, found[0].field.as_deref()), (Severity::Error, Some("completes_with")));
    assert!(found[0].file.ends_with("loyalty/agent.toml"), "{found:?}");
    assert!(
        found[0]
            .message
            .starts_with("`VoucherGranted` (events/VoucherGranted.json, version 1) breaks the published version 1"),
        "{}",
        found[0].message
    );
    assert!(found[0].message.contains("`customer` newly required") && found[0].message.contains("needs version 2"));

    files[2].1 = voucher("urn:choreo:schema:VoucherGranted:2", &["order_id", "code", "customer"]);
    let root = with(files);
    assert_eq!(check_schemas(&root.path().join("loyalty"), &world), Vec::new());
}

#[test]
fn a_catalog_completion_is_checked_against_the_published_file() {
    let mut schema = choreo_schemas::catalog::lookup("PaymentIssueResolved").unwrap().schema().clone();
    schema["properties"]["note"] = serde_json::json!({"type": "string"});
    let (_dir, doctored) = published(&[("PaymentIssueResolved", schema)]);
    let root = agents(&[]);
    let found = check_schemas(&root.path().join("payments"), &doctored);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].message.starts_with("`PaymentIssueResolved` (the catalog, version 1) breaks the published version 1")
    );
    assert!(found[0].message.contains("`note` removed"), "{}", found[0].message);
    // This tree's published files and its catalog agree.
    for agent in ["payments", "support", "orders", "inventory"] {
        assert_eq!(check_schemas(&root.path().join(agent), &world(true)), Vec::new(), "{agent}");
    }
}
