//! `choreo trace <case>` through the real binary, on the seeded case run in-process: every
//! hop from the request to the answer, the redelivered payments run with its refund answered
//! by the ledger, the notifications, `--json`, and unknown cases.

mod trace_common;

use std::sync::OnceLock;

use serde_json::Value;
use trace_common::{run_seeded, trace};

/// The seeded case, run once for every test of this file.
struct Seeded {
    dir: tempfile::TempDir,
    case: String,
}

fn seeded() -> &'static Seeded {
    static SEEDED: OnceLock<Seeded> = OnceLock::new();
    SEEDED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let placed = run_seeded(dir.path());
        let case = placed.correlation_id().unwrap_or(placed.id()).to_owned();
        Seeded { dir, case }
    })
}

/// The index of the first line at or after `from` containing every one of `parts`.
fn find(lines: &[&str], from: usize, parts: &[&str]) -> Option<usize> {
    (from..lines.len()).find(|&i| parts.iter().all(|p| lines[i].contains(p)))
}

fn indent(line: &str) -> usize {
    // After the offset column: `  +12.3 ms  ` then the tree's indentation.
    let rest = line.split_once(" ms  ").map(|(_, r)| r).unwrap_or(line);
    rest.len() - rest.trim_start().len()
}

#[test]
fn trace_of_the_seeded_case_lists_every_hop() {
    let s = seeded();
    let out = trace(s.dir.path(), &[&s.case]);
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    let lines = out.lines();
    let text = &out.stdout;

    // The request, and support's triage of it.
    let placed = find(&lines, 0, &["● OrderSupportPlaced", &s.case, "from retail.support-api"]).expect(text);
    let support = find(&lines, placed, &["support ← delivery 1 · done"]).expect(text);
    let turn = find(&lines, support, &["model turn 1 ·", "tokens ("]).expect(text);
    assert!(turn > support);
    let triaged_publish = find(&lines, support, &["→ SupportTriaged"]).expect(text);
    let triaged = find(&lines, triaged_publish, &["● SupportTriaged", "from agents.support"]).expect(text);
    assert!(indent(lines[triaged]) > indent(lines[placed]), "SupportTriaged is not under the request:\n{text}");

    // Payments: throttled after its refund, then redelivered; the ledger answers the refund.
    let first = find(&lines, triaged, &["payments ← delivery 1 · failed"]).expect(text);
    let refund = find(&lines, first, &["tool payments.refund_charge", "ch-1001-b", "· ok ·"]).expect(text);
    let throttled = find(&lines, refund, &["✗ MODEL_THROTTLED, retried"]).expect(text);
    let second = find(&lines, throttled, &["payments ← delivery 2 · done"]).expect(text);
    let suppressed =
        find(&lines, second, &["tool payments.refund_charge", "SUPPRESSED by the ledger (already done, not repeated)"])
            .expect(text);
    let resolved = find(&lines, suppressed, &["→ PaymentIssueResolved"]).expect(text);
    assert_eq!(lines.iter().filter(|l| l.contains("SUPPRESSED by the ledger")).count(), 1, "{text}");

    // Inventory and orders, then support's two joins and its answer.
    let inventory = find(&lines, triaged, &["inventory ← delivery 1 · done"]).expect(text);
    find(&lines, inventory, &["tool inventory.reserve_stock"]).expect(text);
    find(&lines, inventory, &["→ InventoryChecked"]).expect(text);
    let payment_event = find(&lines, resolved, &["● PaymentIssueResolved", "from agents.payments"]).expect(text);
    find(&lines, payment_event, &["support ← delivery 1 · done"]).expect(text);
    let checked = find(&lines, 0, &["● InventoryChecked", "from agents.inventory"]).expect(text);
    let orders = find(&lines, checked, &["orders ← delivery 1 · done"]).expect(text);
    find(&lines, orders, &["tool orders.create_shipment"]).expect(text);
    let fulfilled = find(&lines, orders, &["● FulfilmentIssueResolved", "from agents.orders"]).expect(text);
    assert!(indent(lines[fulfilled]) > indent(lines[checked]), "{text}");
    find(&lines, fulfilled, &["support ← delivery 1 · done"]).expect(text);
    // Support answers on whichever resolution came last: the answer hangs under that one.
    let answered = find(&lines, 0, &["→ OrderSupportCompleted"]).expect(text);
    let answer = find(&lines, answered, &["● OrderSupportCompleted", "from agents.support"]).expect(text);
    assert!(indent(lines[answer]) > indent(lines[payment_event]).min(indent(lines[fulfilled])), "{text}");

    // Every agent run says its model turns and tokens.
    for line in lines.iter().filter(|l| l.contains(" ← delivery") && l.contains("· done")) {
        assert!(line.contains("model turn(s)") && line.contains("tokens"), "{line}");
    }

    // The customer's notifications, the ledger and the totals.
    let notes = find(&lines, answer, &["Notifications ("]).expect(text);
    find(&lines, notes, &["c-1001 #", "OrderSupportCompleted"]).expect(text);
    find(&lines, notes, &["c-1001 #", "PaymentIssueResolved"]).expect(text);
    let ledger = find(&lines, notes, &["Ledger"]).expect(text);
    find(&lines, ledger, &["payments.refund_charge", "suppressed 1×"]).expect(text);
    let totals = find(&lines, ledger, &["Totals"]).expect(text);
    find(&lines, totals, &["6 events", "7 agent runs", "1 failure(s)"]).expect(text);
    find(&lines, totals, &["model turns", "tokens", "(1 suppressed by the ledger)"]).expect(text);
    find(&lines, totals, &["wall", "ms from the first event"]).expect(text);
}

#[test]
fn trace_json_has_the_tree_the_runs_and_totals_that_add_up() {
    let s = seeded();
    let out = trace(s.dir.path(), &[&s.case, "--json"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let doc: Value = serde_json::from_str(&out.stdout).expect("one JSON document on stdout");
    assert_eq!(doc["case"], s.case.as_str());
    assert_eq!(doc["journal"], true);
    let events = doc["events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types[0], "OrderSupportPlaced", "{types:?}");
    for expected in [
        "SupportTriaged",
        "PaymentIssueResolved",
        "InventoryChecked",
        "FulfilmentIssueResolved",
        "OrderSupportCompleted",
    ] {
        assert_eq!(types.iter().filter(|t| **t == expected).count(), 1, "{expected} in {types:?}");
    }
    // Depth first along causation: each event's cause comes before it, one level up.
    for (i, event) in events.iter().enumerate().skip(1) {
        let cause = event["causation_id"].as_str().unwrap();
        let parent = events[..i].iter().rposition(|e| e["id"] == cause).expect("the cause comes first");
        assert_eq!(event["depth"].as_u64().unwrap(), events[parent]["depth"].as_u64().unwrap() + 1);
    }

    let triaged = events.iter().find(|e| e["type"] == "SupportTriaged").unwrap();
    let payments: Vec<&Value> =
        triaged["runs"].as_array().unwrap().iter().filter(|r| r["agent"] == "payments").collect();
    assert_eq!(payments.len(), 2, "{triaged}");
    assert_eq!((payments[0]["receive_count"].as_u64(), payments[0]["outcome"].as_str()), (Some(1), Some("failed")));
    assert_eq!((payments[1]["receive_count"].as_u64(), payments[1]["outcome"].as_str()), (Some(2), Some("done")));
    let failed = payments[0]["steps"].as_array().unwrap().iter().find(|s| s["kind"] == "failed").unwrap();
    assert_eq!((failed["code"].as_str(), failed["then"].as_str()), (Some("MODEL_THROTTLED"), Some("retried")));
    let refunds: Vec<(&str, bool)> = payments
        .iter()
        .flat_map(|r| r["steps"].as_array().unwrap())
        .filter(|s| s["kind"] == "tool_call" && s["tool"] == "payments.refund_charge")
        .map(|s| (s["outcome"].as_str().unwrap(), s["suppressed"].as_bool().unwrap()))
        .collect();
    assert_eq!(refunds, [("ok", false), ("suppressed", true)]);

    // Totals are the sums of the runs.
    let runs: Vec<&Value> = events.iter().flat_map(|e| e["runs"].as_array().unwrap()).collect();
    let sum = |field: &str| runs.iter().map(|r| r[field].as_u64().unwrap()).sum::<u64>();
    let totals = &doc["totals"];
    assert_eq!(totals["runs"].as_u64(), Some(runs.len() as u64));
    assert_eq!(totals["model_turns"].as_u64(), Some(sum("model_turns")));
    assert!(totals["model_turns"].as_u64().unwrap() >= 18, "{totals}");
    assert_eq!(totals["tokens"].as_u64(), Some(sum("input_tokens") + sum("output_tokens")));
    assert_eq!(totals["suppressed"], 1);
    assert!(totals["wall_ms"].as_f64().unwrap() > 0.0);
    let notifications = doc["notifications"].as_array().expect("the notifier's store is there");
    assert!(notifications.iter().any(|n| n["event_type"] == "OrderSupportCompleted" && n["customer"] == "c-1001"));
    let refund = doc["ledger"].as_array().unwrap().iter().find(|e| e["tool"] == "payments.refund_charge").unwrap();
    assert_eq!(refund["suppressed"], 1);
}

#[test]
fn an_unknown_case_exits_3_naming_the_case_and_the_data_dir() {
    let s = seeded();
    let out = trace(s.dir.path(), &["01NOSUCHCASE"]);
    assert_eq!(out.code, Some(3), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("case `01NOSUCHCASE` not found"), "{}", out.stderr);
    assert!(out.stderr.contains(&s.dir.path().display().to_string()), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);

    let empty = tempfile::tempdir().unwrap();
    let out = trace(empty.path(), &["01NOSUCHCASE"]);
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    assert!(out.stderr.contains("no agents store at") && out.stderr.contains("agents.db"), "{}", out.stderr);
    assert!(out.stderr.contains(&empty.path().display().to_string()), "{}", out.stderr);
}
