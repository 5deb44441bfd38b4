//! Inboxes on the embedded bus, with SQS's semantics: visibility, ack, nack with backoff,
//! dead letters with EventBridge's reason, competing consumers, long polling. Time is moved by
//! the test's clock, never slept.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use choreo_bus::api::{BusError, ExhaustedCondition, Failure, NackOutcome, ReceiveOptions};
use choreo_bus::{Config, EmbeddedBus, Inboxes};
use common::*;
use serde_json::json;

#[tokio::test]
async fn an_acknowledged_message_never_comes_back() {
    let t = open();
    route(&t.bus, "payments", "SupportTriaged", policy(3, 3600)).await;
    put(&t.bus, "SupportTriaged", [json!({})]).await;
    let got = t.bus.receive("payments", opts(10, 30)).await.unwrap();
    t.bus.ack("payments", &got[0].receipt).await.unwrap();
    t.clock.advance(Duration::from_secs(3600));
    assert!(t.bus.receive("payments", opts(10, 30)).await.unwrap().is_empty());
    let err = t.bus.ack("payments", &got[0].receipt).await.unwrap_err();
    assert!(err.to_string().contains("no longer in the inbox"), "{err}");
}

#[tokio::test]
async fn a_batch_ack_settles_each_receipt_alone_and_refuses_bad_batches_whole() {
    let t = open();
    route(&t.bus, "payments", "SupportTriaged", policy(3, 3600)).await;
    put(&t.bus, "SupportTriaged", [json!({}), json!({}), json!({})]).await;
    let got = t.bus.receive("payments", opts(10, 30)).await.unwrap();
    assert_eq!(got.len(), 3);
    t.bus.ack("payments", &got[1].receipt).await.unwrap();
    let receipts: Vec<_> = got.iter().map(|m| m.receipt.clone()).collect();
    let answers = t.bus.ack_batch("payments", &receipts).await.unwrap();
    assert!(answers[0].is_ok() && answers[2].is_ok(), "{answers:?}");
    let stale = answers[1].as_ref().unwrap_err();
    assert!(stale.to_string().contains("no longer in the inbox"), "{stale}");
    t.clock.advance(Duration::from_secs(3600));
    assert!(t.bus.receive("payments", opts(10, 30)).await.unwrap().is_empty(), "all three are gone");
    // Empty, more than SQS's ten, an unknown inbox: the whole call is refused.
    let err = t.bus.ack_batch("payments", &[]).await.unwrap_err();
    assert_eq!(err.to_string(), "invalid Entries: ack: 0 entries is out of range 1..=10");
    let eleven = vec![receipts[0].clone(); 11];
    let err = t.bus.ack_batch("payments", &eleven).await.unwrap_err();
    assert_eq!(err.to_string(), "invalid Entries: ack: 11 entries is out of range 1..=10");
    let err = t.bus.ack_batch("nobody", &receipts[..1]).await.unwrap_err();
    assert_eq!(err, BusError::UnknownInbox("nobody".into()));
}

#[tokio::test]
async fn an_unacknowledged_message_comes_back_after_its_visibility_timeout_under_a_new_receipt() {
    let t = open();
    route(&t.bus, "payments", "SupportTriaged", policy(3, 3600)).await;
    let ids = put(&t.bus, "SupportTriaged", [json!({})]).await;
    let first = t.bus.receive("payments", opts(10, 30)).await.unwrap();
    assert_eq!(first.len(), 1);
    t.clock.advance(Duration::from_millis(29_999));
    assert!(t.bus.receive("payments", opts(10, 30)).await.unwrap().is_empty(), "hidden until the timeout");
    t.clock.advance(Duration::from_millis(1));
    let second = t.bus.receive("payments", opts(10, 30)).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(event_id(&second[0]), ids[0]);
    assert_eq!(second[0].receive_count, 2);
    assert_ne!(second[0].receipt, first[0].receipt);
    // The first receiver's receipt no longer settles the message someone else now holds.
    let err = t.bus.ack("payments", &first[0].receipt).await.unwrap_err();
    assert!(matches!(err, BusError::InvalidReceipt { .. }), "{err}");
    assert!(err.to_string().contains("received again"), "{err}");
    t.bus.ack("payments", &second[0].receipt).await.unwrap();
}

#[tokio::test]
async fn extending_visibility_keeps_a_message_hidden() {
    let t = open();
    route(&t.bus, "payments", "SupportTriaged", policy(3, 3600)).await;
    put(&t.bus, "SupportTriaged", [json!({})]).await;
    let got = t.bus.receive("payments", opts(1, 30)).await.unwrap();
    t.clock.advance(Duration::from_secs(20));
    t.bus.extend_visibility("payments", &got[0].receipt, Duration::from_secs(60)).await.unwrap();
    t.clock.advance(Duration::from_secs(59));
    assert!(t.bus.receive("payments", opts(1, 30)).await.unwrap().is_empty());
    t.clock.advance(Duration::from_secs(1));
    assert_eq!(t.bus.receive("payments", opts(1, 30)).await.unwrap().len(), 1);
    let err = t.bus.extend_visibility("payments", &got[0].receipt, Duration::from_secs(13 * 3600)).await.unwrap_err();
    assert!(err.to_string().contains("VisibilityTimeout"), "{err}");
}

#[tokio::test]
async fn a_nacked_message_is_retried_after_a_growing_backoff_then_dead_lettered_with_the_reason() {
    let t = open();
    route(&t.bus, "payments", "SupportTriaged", policy(2, 3600)).await;
    let ids = put(&t.bus, "SupportTriaged", [json!({"n": 1})]).await;
    let mut backoffs = Vec::new();
    for attempt in 1..=3u32 {
        let got = t.bus.receive("payments", opts(1, 30)).await.unwrap();
        assert_eq!(got.len(), 1, "attempt {attempt}");
        assert_eq!(got[0].receive_count, attempt);
        let outcome = t
            .bus
            .nack("payments", &got[0].receipt, Failure::retryable("MODEL_THROTTLED", format!("try {attempt}")))
            .await
            .unwrap();
        match outcome {
            NackOutcome::RetryAt(at) => {
                let wait = (at - t.clock_now()).to_std().unwrap();
                let full = Duration::from_secs(1 << (attempt - 1));
                assert!(
                    wait >= full / 2 && wait <= full,
                    "attempt {attempt}: backoff {wait:?} outside {full:?}/2..={full:?}"
                );
                backoffs.push(wait);
                t.clock.advance(wait - Duration::from_millis(1));
                assert!(t.bus.receive("payments", opts(1, 30)).await.unwrap().is_empty(), "not before its backoff");
                t.clock.advance(Duration::from_millis(1));
            }
            NackOutcome::DeadLettered { inbox } => {
                assert_eq!(attempt, 3, "dead-lettered after the first attempt and 2 retries");
                assert_eq!(inbox, "payments-dlq");
            }
        }
    }
    assert_eq!(backoffs.len(), 2);
    assert!(t.bus.receive("payments", opts(1, 30)).await.unwrap().is_empty());
    let dead = drain(&t.bus, "payments-dlq").await;
    assert_eq!(dead.len(), 1);
    assert_eq!(event_id(&dead[0]), ids[0], "the same event, untouched");
    let reason = dead[0].dead_letter.clone().unwrap();
    assert_eq!(reason.rule_arn, "arn:aws:events:us-east-1:000000000000:rule/choreo/payments");
    assert_eq!(reason.target_arn, "arn:aws:sqs:us-east-1:000000000000:payments");
    assert_eq!(reason.error_code, "MODEL_THROTTLED");
    assert_eq!(reason.error_message, "try 3");
    assert_eq!(reason.exhausted_retry_condition, Some(ExhaustedCondition::MaximumRetryAttempts));
    assert_eq!(reason.retry_attempts, 2);
    assert_eq!(dead[0].rule, "payments");
}

#[tokio::test]
async fn a_dead_lettered_message_does_not_hold_up_the_others() {
    let t = open();
    route(&t.bus, "payments", "SupportTriaged", policy(0, 3600)).await;
    put(&t.bus, "SupportTriaged", (0..5).map(|n| json!({"n": n}))).await;
    let mut done = Vec::new();
    for _ in 0..5 {
        let got = t.bus.receive("payments", opts(1, 30)).await.unwrap();
        let n = detail(&got[0])["n"].as_i64().unwrap();
        if n == 0 {
            let out = t.bus.nack("payments", &got[0].receipt, Failure::retryable("BUG", "boom")).await.unwrap();
            assert!(matches!(out, NackOutcome::DeadLettered { .. }));
        } else {
            t.bus.ack("payments", &got[0].receipt).await.unwrap();
            done.push(n);
        }
    }
    assert_eq!(done, [1, 2, 3, 4]);
    assert_eq!(drain(&t.bus, "payments-dlq").await.len(), 1);
}

#[tokio::test]
async fn a_permanent_failure_skips_the_retries() {
    let t = open();
    route(&t.bus, "payments", "SupportTriaged", policy(185, 86_400)).await;
    put(&t.bus, "SupportTriaged", [json!({})]).await;
    let got = t.bus.receive("payments", opts(1, 30)).await.unwrap();
    let out =
        t.bus.nack("payments", &got[0].receipt, Failure::permanent("SCHEMA", "data.order_id: missing")).await.unwrap();
    assert_eq!(out, NackOutcome::DeadLettered { inbox: "payments-dlq".into() });
    let reason = drain(&t.bus, "payments-dlq").await[0].dead_letter.clone().unwrap();
    assert_eq!(reason.exhausted_retry_condition, None);
    assert_eq!(reason.retry_attempts, 0);
    assert_eq!(reason.error_message, "data.order_id: missing");
}

#[tokio::test]
async fn retries_stop_at_the_maximum_event_age() {
    let t = open();
    route(&t.bus, "payments", "SupportTriaged", policy(185, 60)).await;
    put(&t.bus, "SupportTriaged", [json!({})]).await;
    // The next retry (at least half a second away) would come after the 60 s.
    t.clock.advance(Duration::from_millis(59_600));
    let got = t.bus.receive("payments", opts(1, 30)).await.unwrap();
    let out = t.bus.nack("payments", &got[0].receipt, Failure::retryable("DOWN", "model endpoint down")).await.unwrap();
    assert!(matches!(out, NackOutcome::DeadLettered { .. }), "{out:?}");
    let reason = drain(&t.bus, "payments-dlq").await[0].dead_letter.clone().unwrap();
    assert_eq!(reason.exhausted_retry_condition, Some(ExhaustedCondition::MaximumEventAgeInSeconds));
}

#[tokio::test]
async fn visibility_timeouts_count_as_failed_attempts() {
    let t = open();
    route(&t.bus, "payments", "SupportTriaged", policy(1, 3600)).await;
    put(&t.bus, "SupportTriaged", [json!({})]).await;
    for _ in 0..2 {
        assert_eq!(t.bus.receive("payments", opts(1, 10)).await.unwrap().len(), 1);
        t.clock.advance(Duration::from_secs(10));
    }
    assert!(t.bus.receive("payments", opts(1, 10)).await.unwrap().is_empty(), "two attempts, both timed out");
    let dead = drain(&t.bus, "payments-dlq").await;
    let reason = dead[0].dead_letter.clone().unwrap();
    assert_eq!(reason.error_code, "TIMEOUT");
    assert_eq!(reason.exhausted_retry_condition, Some(ExhaustedCondition::MaximumRetryAttempts));
    assert_eq!(reason.retry_attempts, 1);
}

#[tokio::test]
async fn dead_letters_can_be_received_nacked_and_acked_but_never_dead_lettered_again() {
    let t = open();
    route(&t.bus, "payments", "SupportTriaged", policy(0, 3600)).await;
    put(&t.bus, "SupportTriaged", [json!({})]).await;
    let got = t.bus.receive("payments", opts(1, 30)).await.unwrap();
    t.bus.nack("payments", &got[0].receipt, Failure::permanent("X", "y")).await.unwrap();
    let dead = t.bus.receive("payments-dlq", opts(1, 30)).await.unwrap();
    let out = t.bus.nack("payments-dlq", &dead[0].receipt, Failure::permanent("X", "again")).await.unwrap();
    assert!(matches!(out, NackOutcome::RetryAt(_)), "{out:?}");
    t.clock.advance(Duration::from_secs(2));
    let dead = t.bus.receive("payments-dlq", opts(1, 30)).await.unwrap();
    assert_eq!(dead.len(), 1);
    t.bus.ack("payments-dlq", &dead[0].receipt).await.unwrap();
    assert!(drain(&t.bus, "payments-dlq").await.is_empty());
}

#[tokio::test]
async fn unknown_inboxes_and_bad_options_are_named() {
    let t = open();
    assert_eq!(t.bus.receive("nobody", opts(1, 30)).await.unwrap_err(), BusError::UnknownInbox("nobody".into()));
    let err = t.bus.receive("nobody", opts(11, 30)).await.unwrap_err();
    assert_eq!(err.to_string(), "invalid MaxNumberOfMessages: 11 is out of range 1..=10");
    let wait = ReceiveOptions { wait_time: Duration::from_secs(21), ..opts(1, 30) };
    assert!(t.bus.receive("nobody", wait).await.unwrap_err().to_string().contains("WaitTimeSeconds"));
    let err = t.bus.ack("nobody", &choreo_bus::api::Receipt("garbage".into())).await.unwrap_err();
    assert!(err.to_string().contains("not a receipt this bus gave out"), "{err}");
    let err = t.bus.create_inbox("no spaces").await.unwrap_err();
    assert!(err.to_string().contains("inbox name is 1 to 80 characters"), "{err}");
    t.bus.create_inbox("later").await.unwrap();
    assert!(t.bus.receive("later", opts(1, 30)).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn competing_consumers_never_hold_the_same_message_at_once() {
    let t = open();
    route(&t.bus, "payments", "SupportTriaged", policy(3, 3600)).await;
    let ids: BTreeSet<String> =
        put(&t.bus, "SupportTriaged", (0..300).map(|n| json!({"n": n}))).await.into_iter().collect();
    let mut consumers = Vec::new();
    for _ in 0..8 {
        let bus = t.bus.clone();
        consumers.push(tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let got = bus.receive("payments", opts(3, 300)).await.unwrap();
                if got.is_empty() {
                    return held;
                }
                held.extend(got.iter().map(event_id));
            }
        }));
    }
    let mut all = Vec::new();
    for c in consumers {
        all.extend(c.await.unwrap());
    }
    let distinct: BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(all.len(), 300, "every message handed out exactly once while hidden");
    assert_eq!(distinct, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_wakes_when_an_event_lands() {
    // The system clock: the wait is real, bounded by a deadline rather than a sleep.
    let dir = tempfile::tempdir().unwrap();
    let bus = EmbeddedBus::open(Config::new(dir.path())).unwrap();
    route(&bus, "payments", "SupportTriaged", policy(3, 3600)).await;
    let receiver = bus.clone();
    let waiting = tokio::spawn(async move {
        let options = ReceiveOptions { wait_time: Duration::from_secs(20), ..opts(1, 30) };
        receiver.receive("payments", options).await.unwrap()
    });
    let ids = put(&bus, "SupportTriaged", [json!({})]).await;
    let got = tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("the poll woke").unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(event_id(&got[0]), ids[0]);
}

#[tokio::test]
async fn a_zero_visibility_timeout_hands_each_message_out_once_per_receive() {
    let t = open();
    route(&t.bus, "payments", "SupportTriaged", policy(5, 3600)).await;
    put(&t.bus, "SupportTriaged", (0..3).map(|n| json!({"n": n}))).await;
    let got = t.bus.receive("payments", opts(10, 0)).await.unwrap();
    let ids: BTreeSet<String> = got.iter().map(|m| m.message_id.clone()).collect();
    assert_eq!((got.len(), ids.len()), (3, 3));
    assert!(got.iter().all(|m| m.receive_count == 1));
}

#[tokio::test]
async fn message_ids_are_never_reused() {
    let t = open();
    route(&t.bus, "payments", "SupportTriaged", policy(5, 3600)).await;
    let mut ids = BTreeSet::new();
    for n in 0..3 {
        put(&t.bus, "SupportTriaged", [json!({"n": n})]).await;
        let got = t.bus.receive("payments", opts(1, 30)).await.unwrap();
        assert!(ids.insert(got[0].message_id.clone()), "{} reused", got[0].message_id);
        t.bus.ack("payments", &got[0].receipt).await.unwrap();
    }
}
