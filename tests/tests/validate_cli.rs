//! `choreo validate` end to end: the real binary on the source tree's agent folders, then on a
//! copy of them with one defect each, which must be named by file and field with exit code 1.

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

/// Exit code 1, one problem naming `file` and `field` (and `detail`), then the count.
fn assert_one_problem(run: &Run, file: &str, field: &str, detail: &str) {
    assert_eq!(run.code, Some(1), "{run:?}");
    let lines = run.lines();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert!(lines[0].contains(file), "no `{file}` in: {}", lines[0]);
    assert!(lines[0].contains(field), "no `{field}` in: {}", lines[0]);
    assert!(lines[0].contains(detail), "no `{detail}` in: {}", lines[0]);
    assert_eq!(lines[1], "1 problem in the agent folders");
}

#[test]
fn the_source_tree_agents_validate() {
    let run = run(&["validate", "--agents-dir", agents_dir().to_str().unwrap()], b"");
    assert_eq!(run.code, Some(0), "{run:?}");
    let lines = run.lines();
    assert_eq!(lines.len(), 1, "{}", run.stdout);
    assert!(lines[0].starts_with("ok: 4 agents (inventory, orders, payments, support) — rules, tools"), "{}", lines[0]);
    assert!(lines[0].ends_with("cases checked"), "{}", lines[0]);
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
