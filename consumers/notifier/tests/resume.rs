//! Acknowledgements, resuming after a disconnect, duplicates and order, with `notify` directly.

mod common;

use std::collections::HashSet;

use common::*;
use serde_json::json;

async fn notify(served: &Served, customer: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let event = completion(customer, "PaymentIssueResolved", json!({"step": i}));
        assert!(served.notifier.notify(&event).await.unwrap().is_some());
        ids.push(event.id().to_owned());
    }
    ids
}

#[tokio::test]
async fn a_client_that_drops_mid_case_gets_the_rest_exactly_once_on_reconnect() {
    let s = serve().await;
    let ids = notify(&s, "c-1", 3).await;
    let (mut ws, after) = s.connect_ready("c-1", "").await;
    assert_eq!(after, 0);
    for (seq, id) in [(1, &ids[0]), (2, &ids[1])] {
        let n = notification(&mut ws).await;
        assert_eq!((n["seq"].as_u64(), n["id"].as_str()), (Some(seq), Some(id.as_str())));
    }
    ack(&mut ws, 2).await;
    hang_up(ws).await;
    assert_eq!(s.notifier.cursor("c-1").await.unwrap(), (3, 2));

    // More of the case happens while the client is away.
    let later = notify(&s, "c-1", 2).await;
    let (mut ws, after) = s.connect_ready("c-1", "&after=2").await;
    assert_eq!(after, 2);
    for (seq, id) in [(3, &ids[2]), (4, &later[0]), (5, &later[1])] {
        let n = notification(&mut ws).await;
        assert_eq!((n["seq"].as_u64(), n["id"].as_str()), (Some(seq), Some(id.as_str())));
    }
    // Exactly once: the next frame is the next new notification, not a repeat.
    let newest = notify(&s, "c-1", 1).await;
    let n = notification(&mut ws).await;
    assert_eq!((n["seq"].as_u64(), n["id"].as_str()), (Some(6), Some(newest[0].as_str())));
    hang_up(ws).await;

    // Without `after`, the connection resumes after the stored acknowledgement (2).
    let (mut ws, after) = s.connect_ready("c-1", "").await;
    assert_eq!(after, 2);
    for seq in 3..=6 {
        assert_eq!(notification(&mut ws).await["seq"], seq);
    }
    ack(&mut ws, 6).await;
    hang_up(ws).await;
    assert_eq!(s.notifier.cursor("c-1").await.unwrap(), (6, 6));
    let (mut ws, after) = s.connect_ready("c-1", "").await;
    assert_eq!(after, 6);
    let last = notify(&s, "c-1", 1).await;
    let n = notification(&mut ws).await;
    assert_eq!((n["seq"].as_u64(), n["id"].as_str()), (Some(7), Some(last[0].as_str())));
}

#[tokio::test]
async fn acknowledgements_only_move_forward() {
    let s = serve().await;
    notify(&s, "c-1", 3).await;
    let (mut ws, _) = s.connect_ready("c-1", "").await;
    for seq in 1..=3 {
        assert_eq!(notification(&mut ws).await["seq"], seq);
    }
    ack(&mut ws, 3).await;
    ack(&mut ws, 1).await;
    hang_up(ws).await;
    assert_eq!(s.notifier.cursor("c-1").await.unwrap(), (3, 3));
    // A client may ask for what it already acknowledged, e.g. a new device.
    let (mut ws, after) = s.connect_ready("c-1", "&after=1").await;
    assert_eq!(after, 1);
    assert_eq!(notification(&mut ws).await["seq"], 2);
    assert_eq!(notification(&mut ws).await["seq"], 3);
    hang_up(ws).await;
    assert_eq!(s.notifier.cursor("c-1").await.unwrap(), (3, 3));
}

#[tokio::test]
async fn the_same_event_notified_twice_gives_one_notification() {
    let s = serve().await;
    let event = completion("c-1", "SupportTriaged", json!({"issues": []}));
    assert_eq!(s.notifier.notify(&event).await.unwrap(), Some(1));
    assert_eq!(s.notifier.notify(&event).await.unwrap(), None);
    // The same id for another customer is that customer's own notification.
    let other = choreo_schemas::Envelope::builder("agents.support", "SupportTriaged")
        .id(event.id())
        .auth(choreo_schemas::envelope::AuthType::AppUser, "c-2")
        .build()
        .unwrap();
    assert_eq!(s.notifier.notify(&other).await.unwrap(), Some(1));
    let next = completion("c-1", "OrderSupportCompleted", json!({}));
    assert_eq!(s.notifier.notify(&next).await.unwrap(), Some(2));
    let (mut ws, _) = s.connect_ready("c-1", "").await;
    assert_eq!(notification(&mut ws).await["id"], event.id());
    assert_eq!(notification(&mut ws).await["id"], next.id());
}

#[tokio::test]
async fn events_for_no_customer_are_not_notified() {
    let s = serve().await;
    let service = choreo_schemas::Envelope::builder("agents.payments", "PaymentIssueResolved")
        .auth(choreo_schemas::envelope::AuthType::ServiceAccount, "billing")
        .build()
        .unwrap();
    let anonymous = choreo_schemas::Envelope::builder("agents.payments", "PaymentIssueResolved").build().unwrap();
    assert_eq!(s.notifier.notify(&service).await.unwrap(), None);
    assert_eq!(s.notifier.notify(&anonymous).await.unwrap(), None);
    assert_eq!(s.notifier.cursor("billing").await.unwrap(), (0, 0));
}

#[tokio::test]
async fn every_connection_of_a_customer_gets_every_notification() {
    let s = serve().await;
    let (mut phone, _) = s.connect_ready("c-1", "").await;
    let (mut laptop, _) = s.connect_ready("c-1", "").await;
    let ids = notify(&s, "c-1", 2).await;
    for ws in [&mut phone, &mut laptop] {
        assert_eq!(notification(ws).await["id"], ids[0]);
        assert_eq!(notification(ws).await["id"], ids[1]);
    }
    assert_eq!(s.notifier.live_sessions(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn order_holds_under_concurrent_publishes() {
    let s = serve().await;
    let (mut ws, _) = s.connect_ready("c-1", "").await;
    let (mut other, _) = s.connect_ready("c-2", "").await;
    let mut tasks = tokio::task::JoinSet::new();
    for publisher in 0..4 {
        let notifier = s.notifier.clone();
        tasks.spawn(async move {
            let mut ids = Vec::new();
            for i in 0..50 {
                let customer = if i % 5 == 4 { "c-2" } else { "c-1" };
                let event = completion(customer, "InventoryChecked", json!({"publisher": publisher, "i": i}));
                notifier.notify(&event).await.unwrap().unwrap();
                if customer == "c-1" {
                    ids.push(event.id().to_owned());
                }
            }
            ids
        });
    }
    let mut expected: HashSet<String> = HashSet::new();
    let mut per_publisher = Vec::new();
    while let Some(ids) = tasks.join_next().await {
        let ids = ids.unwrap();
        expected.extend(ids.iter().cloned());
        per_publisher.push(ids);
    }
    assert_eq!(expected.len(), 160);
    let mut seen = Vec::new();
    for seq in 1..=160u64 {
        let n = notification(&mut ws).await;
        assert_eq!(n["seq"], seq, "out of order");
        seen.push(n["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), expected, "each exactly once");
    // Each publisher's events keep the order it published them in.
    for ids in per_publisher {
        let positions: Vec<usize> = ids.iter().map(|id| seen.iter().position(|s| s == id).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "a publisher's events were reordered");
    }
    for seq in 1..=40u64 {
        let n = notification(&mut other).await;
        assert_eq!(n["seq"], seq);
        assert!(!expected.contains(n["id"].as_str().unwrap()), "c-2 got a notification of c-1");
    }
}

#[tokio::test]
async fn notifications_and_acknowledgements_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = choreo_auth::Issuer::open_or_create(dir.path()).unwrap();
    let first = completion("c-1", "SupportTriaged", json!({}));
    let second = completion("c-1", "OrderSupportCompleted", json!({}));
    {
        let notifier = choreo_notifier::Notifier::open(dir.path(), issuer.verifier()).unwrap();
        assert_eq!(notifier.notify(&first).await.unwrap(), Some(1));
        assert_eq!(notifier.notify(&second).await.unwrap(), Some(2));
        assert!(notifier.store_path().ends_with("notifier.db"));
    }
    let notifier = choreo_notifier::Notifier::open(dir.path(), issuer.verifier()).unwrap();
    // Still known after the restart: no second notification, and the next number follows.
    assert_eq!(notifier.notify(&first).await.unwrap(), None);
    assert_eq!(notifier.cursor("c-1").await.unwrap(), (2, 0));
    let addr = serve_router(notifier.router()).await;
    let url = format!(
        "ws://{addr}/v1/notifications?token={}",
        issuer.issue(&choreo_auth::Principal::customer("c-1"), std::time::Duration::from_secs(60)).unwrap()
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(next(&mut ws).await["type"], "ready");
    assert_eq!(notification(&mut ws).await["id"], first.id());
    assert_eq!(notification(&mut ws).await["id"], second.id());
}

#[tokio::test]
async fn a_foreign_file_is_not_taken_for_a_store() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notifier.db"), b"this is not a database, not even close to one....").unwrap();
    let issuer = choreo_auth::Issuer::open_or_create(dir.path()).unwrap();
    let error = choreo_notifier::Notifier::open(dir.path(), issuer.verifier()).unwrap_err();
    assert!(!error.is_retryable());
    let text = error.to_string();
    assert!(text.contains("notifier.db") && text.contains("not a database"), "{text}");
}
