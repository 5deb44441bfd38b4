//! The operator's calls on inboxes: counts, peeking without receiving, redrive of dead letters
//! to the inbox they came from (all or none), deletion, and archive listing for dry runs.

mod common;

use choreo_bus::api::{Failure, RuleSpec, Target};
use choreo_bus::{Bus, BusError, Inboxes};
use common::*;
use serde_json::json;

/// Puts `n` events for `payments` and dead-letters each with a permanent failure.
async fn dead_lettered(t: &TestBus, n: usize) -> Vec<String> {
    route(&t.bus, "payments", "Charge", policy(2, 3600)).await;
    let ids = put(&t.bus, "Charge", (0..n).map(|i| json!({"n": i}))).await;
    for m in drain(&t.bus, "payments").await {
        t.bus.nack("payments", &m.receipt, Failure::permanent("TOOL_BROKEN", "refunds are frozen")).await.unwrap();
    }
    ids
}

#[tokio::test]
async fn peeking_changes_nothing_and_pages_in_arrival_order() {
    let t = open();
    let ids = dead_lettered(&t, 3).await;
    let first = t.bus.peek("payments-dlq", None, 2).await.unwrap();
    assert_eq!(first.len(), 2);
    let rest = t.bus.peek("payments-dlq", Some(&first[1].message_id), 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    let seen: Vec<String> = first.iter().chain(&rest).map(event_id).collect();
    assert_eq!(seen, ids);
    let reason = first[0].dead_letter.clone().unwrap();
    assert_eq!((reason.error_code.as_str(), reason.retry_attempts), ("TOOL_BROKEN", 0));
    // Peeked messages are still there to receive, and a peeked receipt settles nothing.
    assert!(t.bus.ack("payments-dlq", &first[0].receipt).await.is_err());
    assert_eq!(drain(&t.bus, "payments-dlq").await.len(), 3);
    let other = t.bus.peek("payments-dlq", Some("payments/1"), 10).await.unwrap_err();
    assert!(matches!(other, BusError::MessageNotFound { .. }), "{other}");
}

#[tokio::test]
async fn counts_name_every_inbox() {
    let t = open();
    dead_lettered(&t, 2).await;
    let inboxes = t.bus.list_inboxes().await.unwrap();
    let dlq = inboxes.iter().find(|i| i.name == "payments-dlq").unwrap();
    assert_eq!((dlq.visible, dlq.hidden), (2, 0));
    let live = inboxes.iter().find(|i| i.name == "payments").unwrap();
    assert_eq!((live.visible, live.hidden), (0, 0));
}

#[tokio::test]
async fn a_redriven_message_goes_back_to_its_inbox_with_fresh_attempts_and_the_same_event() {
    let t = open();
    let ids = dead_lettered(&t, 2).await;
    let dead = t.bus.peek("payments-dlq", None, 10).await.unwrap();
    let moved = t.bus.redrive("payments-dlq", &[dead[0].message_id.clone()]).await.unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].inbox, "payments");
    assert_eq!(t.bus.peek("payments-dlq", None, 10).await.unwrap().len(), 1, "only the one named moved");
    let back = drain(&t.bus, "payments").await;
    assert_eq!(back.len(), 1);
    assert_eq!(event_id(&back[0]), ids[0], "the same delivered event");
    assert_eq!(back[0].receive_count, 1, "attempts start again");
    assert_eq!(back[0].message_id, moved[0].new_message_id);
    assert!(back[0].dead_letter.is_none());
    // It is retried under the target's policy again: 2 retries, then the dead letters.
    for attempt in 1..=3 {
        let m = if attempt == 1 { back[0].clone() } else { wait_visible(&t, "payments").await };
        t.bus.nack("payments", &m.receipt, Failure::retryable("STILL", "broken")).await.unwrap();
    }
    assert_eq!(t.bus.peek("payments-dlq", None, 10).await.unwrap().len(), 2);
}

async fn wait_visible(t: &TestBus, inbox: &str) -> choreo_bus::api::Message {
    t.clock.advance(std::time::Duration::from_secs(120));
    t.bus.receive(inbox, opts(1, 30)).await.unwrap().pop().expect("the retry is due")
}

#[tokio::test]
async fn redrive_is_all_or_none_and_names_what_cannot_go_back() {
    let t = open();
    dead_lettered(&t, 2).await;
    let dead = t.bus.peek("payments-dlq", None, 10).await.unwrap();
    let ids: Vec<String> = dead.iter().map(|m| m.message_id.clone()).collect();
    let unknown = vec![ids[0].clone(), "payments-dlq/999".into()];
    let err = t.bus.redrive("payments-dlq", &unknown).await.unwrap_err();
    assert!(err.to_string().contains("payments-dlq/999"), "{err}");
    assert_eq!(t.bus.peek("payments-dlq", None, 10).await.unwrap().len(), 2, "nothing moved");
    // The agent is removed: its rule has no target left.
    t.bus.remove_targets("payments", &["inbox".into()]).await.unwrap();
    let err = t.bus.redrive("payments-dlq", &ids).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, BusError::RedriveImpossible { .. }) && text.contains("payments"), "{text}");
    assert_eq!(t.bus.peek("payments-dlq", None, 10).await.unwrap().len(), 2, "nothing moved");
    // Another rule now sends to that inbox: the message goes back under that rule.
    t.bus.put_rule(RuleSpec::new("payments-v2", json!({"detail-type": ["Charge"]}).to_string())).await.unwrap();
    t.bus.put_targets("payments-v2", vec![Target::new("t", "payments")]).await.unwrap();
    let moved = t.bus.redrive("payments-dlq", &ids).await.unwrap();
    assert_eq!(moved.len(), 2);
    let back = drain(&t.bus, "payments").await;
    assert!(back.iter().all(|m| m.rule == "payments-v2"), "{back:?}");
}

#[tokio::test]
async fn deleting_is_for_good_and_all_or_none() {
    let t = open();
    dead_lettered(&t, 3).await;
    let dead = t.bus.peek("payments-dlq", None, 10).await.unwrap();
    let err = t.bus.delete_messages("payments-dlq", &[dead[0].message_id.clone(), "nope".into()]).await.unwrap_err();
    assert!(matches!(err, BusError::MessageNotFound { .. }), "{err}");
    assert_eq!(t.bus.peek("payments-dlq", None, 10).await.unwrap().len(), 3);
    let n = t.bus.delete_messages("payments-dlq", &[dead[0].message_id.clone()]).await.unwrap();
    assert_eq!(n, 1);
    assert_eq!(t.bus.peek("payments-dlq", None, 10).await.unwrap().len(), 2);
    assert!(matches!(t.bus.peek("nowhere", None, 1).await.unwrap_err(), BusError::UnknownInbox(_)));
}

#[tokio::test]
async fn an_archive_lists_its_window_in_replay_order_by_pages() {
    let t = open();
    t.bus.create_archive(choreo_bus::api::ArchiveSpec::new("all")).await.unwrap();
    put(&t.bus, "A", (0..5).map(|i| json!({"n": i}))).await;
    t.clock.advance(std::time::Duration::from_secs(60));
    put(&t.bus, "B", (0..3).map(|i| json!({"n": i}))).await;
    let (start, end) = (start_time(), t.clock_now());
    let page = t.bus.archived_events("all", start, end, None, 4).await.unwrap();
    assert_eq!(page.len(), 4);
    let rest = t.bus.archived_events("all", start, end, Some(page[3].cursor), 100).await.unwrap();
    assert_eq!(rest.len(), 4);
    assert!(rest.iter().skip(1).all(|e| e.body.contains(r#""detail-type":"B""#)));
    let late = t.bus.archived_events("all", end, end, None, 100).await.unwrap();
    assert_eq!(late.len(), 3, "both ends of the window are included");
    let err = t.bus.archived_events("none", start, end, None, 1).await.unwrap_err();
    assert!(matches!(err, BusError::ArchiveNotFound(_)));
}
