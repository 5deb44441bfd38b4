//! `choreo validate` end to end: the real binary on the source tree's agent folders, then on a
//! copy of them with one defect each, which must be named by file and field with exit code 1;
//! then the choreography (subscriptions, unconsumed events, loops, completion schemas) and the
//! `--graph` formats.

use std::path::Path;

use choreo_tests::{Run, run};

fn agents_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../consumers/agents")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A copy of the source tree's agents.
fn copy_agents() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    copy_dir(&agents_dir(), root.path());
    root
}

/// A copy of the source tree's agents with `from` replaced by `to` in `file`.
fn with_defect(file: &str, from: &str, to: &str) -> tempfile::TempDir {
    let root = copy_agents();
    let path = root.path().join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} no longer has `{from}`: update this test");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    root
}

fn validate(root: &Path) -> Run {
    run(&["validate", "--agents-dir", root.to_str().unwrap()], b"")
}

/// The lines that are errors: not warnings, notes or the count.
fn errors(run: &Run) -> Vec<&str> {
    let lines = run.lines();
    let body = &lines[..lines.len().saturating_sub(1)];
    body.iter().copied().filter(|l| !l.contains(": warning: ") && !l.starts_with("note: ")).collect()
}

/// Exit code 1, one problem naming `file` and `field` (and `detail`), then the count (warnings
/// about the choreography may come beside it).
fn assert_one_problem(run: &Run, file: &str, field: &str, detail: &str) {
    assert_eq!(run.code, Some(1), "{run:?}");
    let errors = errors(run);
    assert_eq!(errors.len(), 1, "{}", run.stdout);
    assert!(errors[0].contains(file), "no `{file}` in: {}", errors[0]);
    assert!(errors[0].contains(field), "no `{field}` in: {}", errors[0]);
    assert!(errors[0].contains(detail), "no `{detail}` in: {}", errors[0]);
    let count = run.lines().last().copied().unwrap_or_default();
    assert!(count == "1 problem in the agent folders" || count.starts_with("1 problem and "), "{count}");
}

#[test]
fn the_source_tree_agents_validate() {
    let run = run(&["validate", "--agents-dir", agents_dir().to_str().unwrap()], b"");
    assert_eq!(run.code, Some(0), "{run:?}");
    let lines = run.lines();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    // The back office's events have no consumer yet: warnings, not failures.
    assert!(lines[0].ends_with("schemas/json/OrderShipped.json: warning: `OrderShipped`, published by `retail.backoffice`, is consumed by nobody: no agent's rule matches it, nor `notifier`'s"), "{}", run.stdout);
    assert!(lines[1].contains("schemas/json/ChargeCaptured.json: warning: `ChargeCaptured`"), "{}", run.stdout);
    assert!(lines[2].starts_with("ok: 4 agents (inventory, orders, payments, support) — rules, tools"), "{}", lines[2]);
    assert!(lines[2].ends_with("cases and the choreography checked; 2 warnings"), "{}", lines[2]);
}

#[test]
fn an_unknown_tool_is_named_with_the_known_ones() {
    let root = with_defect(
        "payments/agent.toml",
        "\"payments.list_charges\",",
        "\"payments.list_charges\", \"payments.void_charge\",",
    );
    let run = validate(root.path());
    assert_one_problem(&run, "payments/agent.toml", "`tools`", "unknown tool `payments.void_charge`");
    assert!(run.stdout.contains("payments.refund_charge"), "{}", run.stdout);
}

#[test]
fn an_unknown_completion_event_is_named() {
    let root = with_defect("payments/agent.toml", "\"PaymentIssueResolved\"", "\"RefundDone\"");
    let run = validate(root.path());
    // The script's `complete.PaymentIssueResolved` is no longer allowed either, but with the
    // manifest refused there is nothing to check it against.
    assert_one_problem(&run, "payments/agent.toml", "`completes_with`", "unknown event `RefundDone`");
}

#[test]
fn an_invalid_pattern_is_named() {
    let root = with_defect("payments/agent.toml", "[\"SupportTriaged\"]", "\"SupportTriaged\"");
    assert_one_problem(&validate(root.path()), "payments/agent.toml", "`subscribe`", "invalid pattern");
}

#[test]
fn a_name_differing_from_its_folder_is_named() {
    let root = with_defect("payments/agent.toml", "name = \"payments\"", "name = \"refunds\"");
    assert_one_problem(&validate(root.path()), "payments/agent.toml", "`name`", "differs from its folder");
}

#[test]
fn a_script_calling_a_tool_outside_the_manifest_is_named() {
    let root =
        with_defect("payments/offline.toml", "tool = \"payments.list_charges\"", "tool = \"orders.create_shipment\"");
    assert_one_problem(&validate(root.path()), "payments/offline.toml", "`rule.tool`", "`orders.create_shipment`");
}

#[test]
fn a_case_with_a_bad_outcome_is_named() {
    let root =
        with_defect("payments/cases/double_charge_only.json", "\"outcome\": \"completed\"", "\"outcome\": \"done\"");
    assert_one_problem(&validate(root.path()), "payments/cases/double_charge_only.json", "`expect.outcome`", "`done`");
}

#[test]
fn a_case_the_rule_would_never_deliver_is_named() {
    let root = with_defect("payments/cases/double_charge_only.json", "\"duplicate_charge\"", "\"late_delivery\"");
    assert_one_problem(
        &validate(root.path()),
        "payments/cases/double_charge_only.json",
        "`event.data.issues`",
        "would never deliver",
    );
}

#[test]
fn a_folder_without_a_manifest_is_not_an_agent() {
    let root = copy_agents();
    std::fs::create_dir(root.path().join("refunds")).unwrap();
    std::fs::write(root.path().join("refunds/prompt.md"), "You refund.").unwrap();
    assert_one_problem(&validate(root.path()), "refunds", "not an agent", "no agent.toml");
}

#[test]
fn an_unknown_manifest_field_is_named() {
    let root = with_defect("payments/agent.toml", "max_turns = 6", "max_turns = 6\ncolour = \"blue\"");
    assert_one_problem(&validate(root.path()), "payments/agent.toml", "unknown field `colour`", "line 7");
}

#[test]
fn every_defect_is_reported_in_one_run() {
    let root = with_defect("payments/agent.toml", "name = \"payments\"", "name = \"refunds\"");
    let orders = root.path().join("orders/agent.toml");
    let text = std::fs::read_to_string(&orders).unwrap().replace("\"case.get_case\"", "\"case.get_everything\"");
    std::fs::write(&orders, text).unwrap();
    let run = validate(root.path());
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.contains("payments/agent.toml: `name`"), "{}", run.stdout);
    assert!(run.stdout.contains("orders/agent.toml: `tools`: unknown tool `case.get_everything`"), "{}", run.stdout);
    // The renamed tool also leaves the orders script calling one the manifest no longer has.
    assert!(
        run.stdout.contains("orders/offline.toml: `rule.tool`: `orders` may not call `case.get_case`"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.ends_with("3 problems in the agent folders\n"), "{}", run.stdout);
}

/// The files of an agent `name` on `subscribe` that completes with `event`, an event of its own
/// (any object), adding `more` to its manifest.
fn add_agent(root: &Path, name: &str, subscribe: &str, event: &str, more: &str) {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("events")).unwrap();
    let manifest = format!(
        "name = \"{name}\"\ndescription = \"A test agent\"\nsubscribe = {subscribe}\ncompletes_with = \"{event}\"\n{more}"
    );
    std::fs::write(dir.join("agent.toml"), manifest).unwrap();
    std::fs::write(dir.join("prompt.md"), "You test.").unwrap();
    std::fs::write(dir.join("offline.toml"), format!("[[rule]]\ntool = \"complete.{event}\"\ninput = '{{}}'\n"))
        .unwrap();
    std::fs::write(dir.join(format!("events/{event}.json")), r#"{"type": "object"}"#).unwrap();
}

#[test]
fn a_subscription_on_an_event_nobody_publishes_is_an_error_naming_the_agent_and_the_event() {
    let root = copy_agents();
    add_agent(root.path(), "refunds", r#"{ "detail-type" = ["RefundRequested"] }"#, "RefundDone", "");
    let run = validate(root.path());
    assert_one_problem(
        &run,
        "refunds/agent.toml",
        "`subscribe`",
        "the rule of `refunds` matches no event anyone publishes: nobody publishes `RefundRequested`",
    );
}

#[test]
fn a_field_condition_the_schema_rules_out_is_an_error() {
    let root = copy_agents();
    let subscribe = r#"{ "detail-type" = ["SupportTriaged"], detail = { data = { issues = ["lost_parcel"] } } }"#;
    add_agent(root.path(), "parcels", subscribe, "ParcelTraced", "");
    let run = validate(root.path());
    assert_one_problem(
        &run,
        "parcels/agent.toml",
        "`subscribe`",
        "`detail.data.issues` wants [\"lost_parcel\"], but in `SupportTriaged` from `agents.support` it is one of",
    );
    // Another value of the enum is fine, though no example has it.
    let root = copy_agents();
    let subscribe = r#"{ "detail-type" = ["SupportTriaged"], detail = { data = { issues = ["wrong_item"] } } }"#;
    add_agent(root.path(), "parcels", subscribe, "ParcelTraced", "");
    assert_eq!(validate(root.path()).code, Some(0));
}

#[test]
fn an_event_gains_a_consumer_and_its_warning_goes() {
    let root = copy_agents();
    add_agent(root.path(), "shipping", r#"{ "detail-type" = ["OrderShipped"] }"#, "ShipmentTracked", "");
    let run = validate(root.path());
    assert_eq!(run.code, Some(0), "{run:?}");
    let warnings: Vec<&str> = run.lines().into_iter().filter(|l| l.contains(": warning: ")).collect();
    assert_eq!(warnings.len(), 1, "{}", run.stdout);
    assert!(
        warnings[0].contains("`ChargeCaptured`, published by `retail.backoffice`, is consumed by nobody"),
        "{}",
        warnings[0]
    );
    assert!(run.lines().last().unwrap().starts_with("ok: 5 agents"), "{}", run.stdout);
}

#[test]
fn a_loop_between_two_agents_is_an_error_showing_its_path() {
    let root = copy_agents();
    add_agent(root.path(), "ping", r#"{ "detail-type" = ["Ponged", "OrderShipped"] }"#, "Pinged", "");
    add_agent(root.path(), "pong", r#"{ "detail-type" = ["Pinged"] }"#, "Ponged", "");
    assert_one_problem(
        &validate(root.path()),
        "ping/agent.toml",
        "`subscribe`",
        "a loop that could run forever: ping —Pinged→ pong —Ponged→ ping; no event on it is once_per_case, so only the case's hop budget (`budgethops`) stops it",
    );
    // Published once per case, the loop runs at most once.
    let root = copy_agents();
    add_agent(
        root.path(),
        "ping",
        r#"{ "detail-type" = ["Ponged", "OrderShipped"] }"#,
        "Pinged",
        "once_per_case = [\"Pinged\"]\n",
    );
    add_agent(root.path(), "pong", r#"{ "detail-type" = ["Pinged"] }"#, "Ponged", "");
    let run = run(&["validate", "--agents-dir", root.path().to_str().unwrap(), "--graph", "text"], b"");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout
            .contains("loop: ping —Pinged→ pong —Ponged→ ping (bounded: `ping` publishes `Pinged` once per case)\n"),
        "{}",
        run.stdout
    );
}

/// The published `PaymentIssueResolved` without `summary`, with `$id` version `version`, as
/// the payments folder's own `events/PaymentIssueResolved.json`.
fn without_summary(version: u32) -> tempfile::TempDir {
    let root = copy_agents();
    let published = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/json/PaymentIssueResolved.json");
    let mut schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(published).unwrap()).unwrap();
    schema["properties"].as_object_mut().unwrap().remove("summary").unwrap();
    schema["required"] = serde_json::json!(["order_id", "outcome", "refunds"]);
    schema["$id"] = format!("urn:choreo:schema:PaymentIssueResolved:{version}").into();
    std::fs::create_dir_all(root.path().join("payments/events")).unwrap();
    std::fs::write(root.path().join("payments/events/PaymentIssueResolved.json"), schema.to_string()).unwrap();
    root
}

#[test]
fn a_completion_schema_breaking_its_published_version_is_an_error_and_a_bumped_version_is_not() {
    let run = validate(without_summary(1).path());
    assert_eq!(run.code, Some(1), "{run:?}");
    let breaks = "payments/agent.toml: `completes_with`: `PaymentIssueResolved` (events/PaymentIssueResolved.json, version 1) breaks the published version 1";
    let line = run.lines().into_iter().find(|l| l.contains(breaks)).unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(line.contains("`summary` removed"), "{line}");
    assert!(line.contains("a breaking change needs version 2"), "{line}");

    let run = validate(without_summary(2).path());
    assert!(!run.stdout.contains("breaks the published version"), "{}", run.stdout);
    // The runtime still refuses an agent redefining a catalog event, whatever its version.
    assert_eq!(errors(&run), [run.lines()[0]], "{}", run.stdout);
    assert!(run.lines()[0].ends_with("payments/events/PaymentIssueResolved.json: `PaymentIssueResolved` is an event of the catalog; an agent cannot redefine it"), "{}", run.stdout);
}

fn graph(format: &str) -> Run {
    run(&["validate", "--agents-dir", agents_dir().to_str().unwrap(), "--graph", format], b"")
}

/// The graph is alone on stdout; the findings and the count go to stderr.
fn assert_graph_alone(run: &Run) {
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(!run.stdout.contains("warning") && !run.stdout.contains("ok: "), "{}", run.stdout);
    assert!(run.stderr.contains("ok: 4 agents"), "{}", run.stderr);
}

#[test]
fn the_text_graph_lists_who_triggers_whom() {
    let run = graph("text");
    assert_graph_alone(&run);
    let lines = run.lines();
    assert_eq!(lines[0], "OrderSupportPlaced (retail.support-api) → support");
    for edge in [
        "OrderShipped (retail.backoffice) → nobody",
        "support —SupportTriaged→ inventory, notifier, payments",
        "support —OrderSupportCompleted→ notifier",
        "payments —PaymentIssueResolved→ notifier, support",
        "inventory —InventoryChecked→ notifier, orders",
        "orders —FulfilmentIssueResolved→ notifier, support",
    ] {
        assert!(lines.contains(&edge), "no `{edge}` in:\n{}", run.stdout);
    }
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("loop: ") && l.contains("(bounded: ")).count(),
        2,
        "{}",
        run.stdout
    );
}

/// Every `(from, to)` edge names declared nodes, and `expected` edges are among them.
fn check_edges(edges: &[(String, String)], declared: &[String], expected: &[(&str, &str)], text: &str) {
    assert!(!edges.is_empty(), "{text}");
    for (from, to) in edges {
        assert!(declared.contains(from) && declared.contains(to), "undeclared node in {from} → {to}:\n{text}");
    }
    for (from, to) in expected {
        assert!(edges.iter().any(|(f, t)| f == from && t == to), "no edge {from} → {to} in:\n{text}");
    }
}

#[test]
fn the_mermaid_graph_is_a_flowchart_of_declared_nodes() {
    let run = graph("mermaid");
    assert_graph_alone(&run);
    let lines = run.lines();
    assert_eq!(lines[0], "flowchart LR");
    assert!(lines[1..].iter().all(|l| l.starts_with("    ")), "{}", run.stdout);
    let declared: Vec<String> = lines[1..]
        .iter()
        .filter(|l| !l.contains("->"))
        .map(|l| l.trim().split(['[', '(']).next().unwrap().to_owned())
        .collect();
    assert!(declared.contains(&"agent_support".to_owned()) && declared.contains(&"nobody".to_owned()), "{declared:?}");
    let edges = [
        ("producer_retail_support_api", "agent_support"),
        ("agent_support", "agent_payments"),
        ("agent_payments", "agent_support"),
        ("agent_orders", "subscriber_notifier"),
    ];
    // `from -->|"Event"| to`, dashed (`-.->`) to `nobody`.
    let found: Vec<(String, String)> = lines
        .iter()
        .filter(|l| l.contains("->|"))
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(words.len(), 3, "{l}");
            assert!(words[1].starts_with("-->|\"") || words[1].starts_with("-.->|\""), "{l}");
            (words[0].to_owned(), words[2].to_owned())
        })
        .collect();
    check_edges(&found, &declared, &edges, &run.stdout);
}

#[test]
fn the_dot_graph_is_a_digraph_of_declared_nodes() {
    let run = graph("dot");
    assert_graph_alone(&run);
    let lines = run.lines();
    assert_eq!(lines.first(), Some(&"digraph choreography {"));
    assert_eq!(lines.last(), Some(&"}"));
    assert_eq!(run.stdout.matches('{').count(), run.stdout.matches('}').count());
    let declared: Vec<String> =
        lines.iter().filter(|l| l.contains("shape=")).map(|l| l.trim().split(' ').next().unwrap().to_owned()).collect();
    let edges = [
        ("\"producer_retail_support_api\"", "\"agent_support\""),
        ("\"agent_support\"", "\"agent_inventory\""),
        ("\"agent_inventory\"", "\"agent_orders\""),
        ("\"producer_retail_backoffice\"", "\"nobody\""),
    ];
    // `"from" -> "to" [label="Event"];`
    let found: Vec<(String, String)> = lines
        .iter()
        .filter(|l| l.contains(" -> "))
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            assert!(words[1] == "->" && words[3].starts_with("[label=\"") && l.ends_with("];"), "{l}");
            (words[0].to_owned(), words[2].to_owned())
        })
        .collect();
    check_edges(&found, &declared, &edges, &run.stdout);
}
