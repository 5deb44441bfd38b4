//! The publisher against the real embedded bus, with a wrapper that fails chosen entries or
//! calls the way EventBridge can: batching, retries of failed entries only, refusals, an
//! unavailable bus. Nothing is reported published that the bus did not accept.

#[path = "common/faulty.rs"]
mod faulty;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use choreo_bus::api::*;
use choreo_bus::{Bus, Config, EmbeddedBus, Inboxes};
use choreo_producers::{Outcome, PublishError, Publisher, RetryPolicy};
use choreo_schemas::Envelope;
use faulty::{Faulty, Key};
use serde_json::json;

async fn faulty(dir: &tempfile::TempDir, down: bool) -> Arc<Faulty> {
    let inner = EmbeddedBus::open(Config::new(dir.path())).unwrap();
    inner.put_rule(RuleSpec::new("all", r#"{"source": [{"prefix": "retail."}]}"#)).await.unwrap();
    inner.put_targets("all", vec![Target::new("all", "all")]).await.unwrap();
    let bus = Faulty::new(inner, Key::Id);
    bus.down.store(down, Ordering::SeqCst);
    Arc::new(bus)
}

fn events(n: usize) -> Vec<Envelope> {
    (0..n)
        .map(|i| {
            Envelope::builder("retail.orders", "ParcelScanned")
                .without_data_schema()
                .data(json!({"order_id": format!("o-{i}"), "seq": i}))
                .build()
                .unwrap()
        })
        .collect()
}

fn fast() -> RetryPolicy {
    RetryPolicy { max_attempts: 3, base_backoff: Duration::from_millis(1), max_backoff: Duration::from_millis(4) }
}

/// The CloudEvent ids delivered to the inbox, in order.
async fn delivered(bus: &Faulty) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let options = ReceiveOptions { max_messages: 10, wait_time: Duration::ZERO, ..Default::default() };
        let got = bus.inner.receive("all", options).await.unwrap();
        if got.is_empty() {
            return ids;
        }
        for m in got {
            ids.push(m.event().unwrap().to_delivery().unwrap().envelope.id().to_owned());
            bus.inner.ack("all", &m.receipt).await.unwrap();
        }
    }
}

#[tokio::test]
async fn twenty_five_events_go_in_three_calls_in_order_and_all_are_published() {
    let dir = tempfile::tempdir().unwrap();
    let bus = faulty(&dir, false).await;
    let events = events(25);
    let outcomes = Publisher::new(bus.clone()).with_retry(fast()).publish(&events).await.unwrap();
    assert!(outcomes.iter().all(Outcome::is_published), "{outcomes:?}");
    let sizes: Vec<_> = bus.calls.lock().unwrap().iter().map(Vec::len).collect();
    assert_eq!(sizes, [10, 10, 5]);
    let ids: Vec<_> = events.iter().map(|e| e.id().to_owned()).collect();
    assert_eq!(delivered(&bus).await, ids);
}

#[tokio::test]
async fn only_the_throttled_entries_are_sent_again_and_each_event_lands_once() {
    let dir = tempfile::tempdir().unwrap();
    let bus = faulty(&dir, false).await;
    let events = events(6);
    let throttled: Vec<String> = events.iter().step_by(2).map(|e| e.id().to_owned()).collect();
    bus.fail.lock().unwrap().extend(throttled.iter().map(|id| (id.clone(), 1)));
    let outcomes = Publisher::new(bus.clone()).with_retry(fast()).publish(&events).await.unwrap();
    assert!(outcomes.iter().all(Outcome::is_published), "{outcomes:?}");
    let calls = bus.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1], throttled, "the second call carries the failed entries only");
    let mut landed = delivered(&bus).await;
    landed.sort();
    let mut ids: Vec<_> = events.iter().map(|e| e.id().to_owned()).collect();
    ids.sort();
    assert_eq!(landed, ids);
}

#[tokio::test]
async fn bad_events_are_refused_before_sending_and_the_rest_go() {
    let dir = tempfile::tempdir().unwrap();
    let bus = faulty(&dir, false).await;
    let mut batch = events(2);
    // Breaks OrderSupportPlaced's schema (order ids are `o-…`).
    batch.push(
        Envelope::builder("retail.support-api", "OrderSupportPlaced")
            .data(json!({"order_id": "1001", "message": "hi", "channel": "web"}))
            .build()
            .unwrap(),
    );
    // Bigger than a PutEvents entry may be.
    batch.push(Envelope::builder("retail.orders", "Big").data(json!({"pad": "x".repeat(300_000)})).build().unwrap());
    // Refused by the bus itself, and not worth retrying.
    batch.push(Envelope::builder("aws.ec2", "Spoofed").data(json!({})).build().unwrap());
    let outcomes = Publisher::new(bus.clone()).with_retry(fast()).publish(&batch).await.unwrap();
    assert!(outcomes[0].is_published() && outcomes[1].is_published());
    assert!(matches!(&outcomes[2], Outcome::Refused { reason } if reason.contains("/order_id")), "{:?}", outcomes[2]);
    assert!(
        matches!(&outcomes[3], Outcome::Refused { reason } if reason.contains("the limit is 262144")),
        "{:?}",
        outcomes[3]
    );
    assert!(
        matches!(&outcomes[4], Outcome::Failed { code, attempts: 1, .. } if code == "NotAuthorizedForSourceException"),
        "{:?}",
        outcomes[4]
    );
    assert_eq!(bus.calls.lock().unwrap().len(), 1, "nothing retried");
}

#[tokio::test]
async fn an_unavailable_bus_fails_every_event_and_publishes_none() {
    let dir = tempfile::tempdir().unwrap();
    let bus = faulty(&dir, true).await;
    let err = Publisher::new(bus.clone()).with_retry(fast()).publish(&events(12)).await.unwrap_err();
    let PublishError::Unavailable { outcomes, .. } = err;
    assert_eq!(outcomes.len(), 12);
    assert!(
        outcomes.iter().all(|o| matches!(o, Outcome::Failed { code, .. } if code == "BusUnavailable")),
        "{outcomes:?}"
    );
    assert_eq!(bus.calls.lock().unwrap().len(), 1, "a closed bus is not retried, and the rest is not sent");
    assert!(delivered(&bus).await.is_empty());
}
