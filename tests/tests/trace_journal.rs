//! The step journal is durable: a graceful stop commits every step (the last run's end
//! included), and after a restart on the same data directory the case reads the same, new
//! cases add to it, and `choreo trace` shows both.

mod trace_common;

use choreo_consumers::journal::{self, Entry, group_runs};
use choreo_consumers::local::SupportRequest;
use trace_common::{Running, options, trace};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_is_flushed_on_shutdown_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let running = Running::start(options(dir.path(), None, None)).await;
    let placed = running.seeded_case().await;
    let case = placed.correlation_id().unwrap_or(placed.id()).to_owned();
    running.shutdown().await;

    // Right after the stop returns, nothing waits in memory: every run has its end, up to
    // support's answer (reported just before the stop, within the writer's 50 ms batching).
    let before = journal::read_case(dir.path(), &case).unwrap();
    let runs = group_runs(&before.steps);
    assert_eq!(runs.len(), 6, "{runs:#?}");
    for run in &runs {
        assert!(matches!(run.first().unwrap().entry, Entry::Received { .. }), "{run:#?}");
        assert!(matches!(run.last().unwrap().entry, Entry::Done { .. }), "a run without its end: {run:#?}");
    }
    let answered = before
        .steps
        .iter()
        .any(|s| matches!(&s.entry, Entry::Published { event_type, .. } if event_type == "OrderSupportCompleted"));
    assert!(answered, "support's answer is not in the journal");
    let received = before.steps.iter().find_map(|s| match &s.entry {
        Entry::Received { traceparent, .. } if s.event_id == case => traceparent.clone(),
        _ => None,
    });
    assert_eq!(received.as_deref(), placed.traceparent(), "the receipt keeps the event's traceparent");

    // A restart on the same data directory, and another case.
    let running = Running::start(options(dir.path(), None, None)).await;
    let request = SupportRequest {
        customer: "c-1003".into(),
        order_id: "o-1003".into(),
        message: "My card shows two charges for one order.".into(),
        needed_by: None,
        ..SupportRequest::seeded(chrono::Utc::now().date_naive())
    };
    let second = running.case(&request).await;
    let second_case = second.correlation_id().unwrap_or(second.id()).to_owned();
    running.shutdown().await;

    let after = journal::read_case(dir.path(), &case).unwrap();
    assert_eq!(after.steps, before.steps, "the first case's journal changed across the restart");
    let newer = journal::read_case(dir.path(), &second_case).unwrap();
    let last_before = before.steps.iter().map(|s| s.seq).max().unwrap();
    assert!(!newer.steps.is_empty() && newer.steps.iter().all(|s| s.seq > last_before));

    for (case, answer) in [(&case, "OrderSupportCompleted"), (&second_case, "PaymentIssueResolved")] {
        let out = trace(dir.path(), &[case.as_str()]);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        assert!(out.stdout.contains(&format!("● {answer}")), "{}", out.stdout);
        assert!(!out.stdout.contains("unfinished"), "{}", out.stdout);
    }
}
