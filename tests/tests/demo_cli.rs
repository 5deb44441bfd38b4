//! `choreo demo` on every seeded case, and what it says when it cannot start.

use choreo_tests::run;

fn demo(args: &[&str]) -> (tempfile::TempDir, choreo_tests::Run) {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec!["--data-dir", dir.path().to_str().unwrap(), "demo"];
    all.extend_from_slice(args);
    let out = run(&all, b"");
    (dir, out)
}

#[test]
fn an_item_out_of_stock_gets_an_alternative_and_no_shipment() {
    let (_dir, out) = demo(&["--case", "out-of-stock"]);
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("SKU-SPEAKER-04 out of stock, alternative SKU-SPEAKER-03"), "{}", out.stdout);
    assert!(out.stdout.contains("alternative_proposed"), "{}", out.stdout);
    assert!(out.stdout.contains("We can send the Compact Bluetooth speaker instead"), "{}", out.stdout);
    assert!(out.stdout.contains("Back office, order o-1004: refunds [], new shipments []."), "{}", out.stdout);
}

#[test]
fn a_missing_item_alone_ships_and_nobody_refunds() {
    let (_dir, out) = demo(&["--case", "missing-item"]);
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(!out.stdout.contains("payments  ←"), "payments took part:\n{}", out.stdout);
    assert!(out.stdout.contains("refunds [], new shipments [sh-1]"), "{}", out.stdout);
    // No deadline was given: a standard shipment.
    assert!(out.stdout.contains("DHL standard"), "{}", out.stdout);
}

#[test]
fn a_double_charge_alone_is_refunded_once_and_nothing_ships() {
    let (_dir, out) = demo(&["--case", "double-charge"]);
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(!out.stdout.contains("inventory ←"), "inventory took part:\n{}", out.stdout);
    assert!(out.stdout.contains("refunds [rf-1], new shipments []"), "{}", out.stdout);
}

#[test]
fn another_customers_order_is_refused_and_escalated() {
    let (_dir, out) = demo(&["--case", "not-yours"]);
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("refused: order `o-1005` does not belong to customer `c-1001`"), "{}", out.stdout);
    assert!(out.stdout.contains("The case went to a human (\"unauthorized\")"), "{}", out.stdout);
    assert!(out.stdout.contains("refunds [], new shipments []"), "{}", out.stdout);
}

#[test]
fn the_demo_runs_again_from_scratch_on_the_same_data_directory() {
    let (dir, first) = demo(&[]);
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let again = run(&["--data-dir", dir.path().to_str().unwrap(), "demo"], b"");
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert!(again.stdout.contains("refunds [rf-1], new shipments [sh-1]"), "{}", again.stdout);
}

#[test]
fn an_invalid_agent_folder_stops_the_demo_with_the_file_and_field() {
    let agents = tempfile::tempdir().unwrap();
    let payments = agents.path().join("payments");
    std::fs::create_dir(&payments).unwrap();
    std::fs::write(
        payments.join("agent.toml"),
        "name = \"billing\"\ndescription = \"x\"\nsubscribe = {}\ncompletes_with = \"PaymentIssueResolved\"\n",
    )
    .unwrap();
    std::fs::write(payments.join("prompt.md"), "x").unwrap();
    let (_dir, out) = demo(&["--agents-dir", agents.path().to_str().unwrap()]);
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    assert!(
        out.stderr.contains("payments/agent.toml: `name`: `billing` differs from its folder `payments`"),
        "{}",
        out.stderr
    );
}

#[test]
fn an_unknown_model_is_a_usage_error() {
    let (_dir, out) = demo(&["--model", "gpt-5"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("unknown model `gpt-5`"), "{}", out.stderr);
}
