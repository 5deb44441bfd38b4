//! The whole path on a real embedded bus: an agent's completion is put on the bus, the rule
//! `notifier` routes it to the inbox, the consumer writes it, the customer's WebSocket gets it.

mod common;

use std::sync::Arc;

use choreo_bus::api::ReceiveOptions;
use choreo_bus::{Bus, Config, EmbeddedBus, Inboxes};
use choreo_notifier::{Consumer, INBOX, RULE};
use choreo_schemas::Envelope;
use choreo_schemas::envelope::AuthType;
use choreo_schemas::eventbridge::PutEventsEntry;
use common::*;
use serde_json::json;

struct OnBus {
    served: Served,
    bus: EmbeddedBus,
    consumer: Consumer,
}

async fn on_bus() -> OnBus {
    let served = serve().await;
    let bus = EmbeddedBus::open(Config::new(served.dir.path().join("bus"))).unwrap();
    choreo_notifier::install(&bus).await.unwrap();
    let consumer = served.notifier.spawn(Arc::new(bus.clone()));
    OnBus { served, bus, consumer }
}

async fn put(bus: &EmbeddedBus, events: &[&Envelope]) {
    let entries = events.iter().map(|e| PutEventsEntry::from_envelope(e)).collect();
    let out = bus.put_events(entries).await.unwrap();
    assert_eq!(out.failed_entry_count, 0, "{out:?}");
}

#[tokio::test]
async fn install_puts_the_rule_with_its_inbox_and_dead_letter_inbox() {
    let t = on_bus().await;
    let rule = t.bus.describe_rule(RULE).await.unwrap();
    let pattern: serde_json::Value = serde_json::from_str(&rule.event_pattern).unwrap();
    assert_eq!(pattern["source"], json!([{"prefix": "agents."}]));
    assert_eq!(pattern["detail"]["authtype"], json!(["app_user"]));
    assert_eq!(rule.targets.len(), 1);
    assert_eq!(rule.targets[0].inbox, INBOX);
    assert_eq!(rule.targets[0].dead_letter_inbox, "notifier-dlq");
    // Installing again replaces, it does not fail or duplicate.
    choreo_notifier::install(&t.bus).await.unwrap();
    assert_eq!(t.bus.describe_rule(RULE).await.unwrap().targets.len(), 1);
    t.consumer.shutdown().await;
}

#[tokio::test]
async fn a_completion_reaches_its_customer_only_while_another_is_connected() {
    let t = on_bus().await;
    let (mut alice, _) = t.served.connect_ready("c-alice", "").await;
    let (mut bob, _) = t.served.connect_ready("c-bob", "").await;

    let placed = Envelope::builder("retail.support-api", "OrderSupportPlaced")
        .data(json!({"order_id": "o-1001"}))
        .auth(AuthType::AppUser, "c-alice")
        .build()
        .unwrap();
    let triaged = placed.follow_up("agents.support", "SupportTriaged").data(json!({"issues": ["x"]})).build().unwrap();
    let resolved =
        triaged.follow_up("agents.payments", "PaymentIssueResolved").data(json!({"refunded": true})).build().unwrap();
    // Not customer-facing: the request itself (not from an agent) and a service's event.
    let service = Envelope::builder("agents.payments", "PaymentIssueResolved")
        .auth(AuthType::ServiceAccount, "c-alice")
        .build()
        .unwrap();
    put(&t.bus, &[&placed, &service, &triaged]).await;
    put(&t.bus, &[&resolved]).await;

    let first = notification(&mut alice).await;
    assert_eq!(first["seq"], 1);
    assert_eq!(first["id"], triaged.id());
    assert_eq!(first["case"], placed.id());
    assert_eq!(first["event"], "SupportTriaged");
    assert_eq!(first["source"], "agents.support");
    assert_eq!(first["data"], json!({"issues": ["x"]}));
    let second = notification(&mut alice).await;
    assert_eq!((second["seq"].as_u64(), second["id"].as_str()), (Some(2), Some(resolved.id())));

    // Bob got none of it: the first thing he receives is his own, later, notification.
    let bobs = completion("c-bob", "OrderSupportCompleted", json!({"answer": "done"}));
    put(&t.bus, &[&bobs]).await;
    let got = notification(&mut bob).await;
    assert_eq!(got["id"], bobs.id());
    assert_eq!(got["seq"], 1);
    assert_eq!(t.served.notifier.cursor("c-bob").await.unwrap(), (1, 0));
    // And Alice none of his: her next notification is her own.
    let escalated = completion("c-alice", "CaseEscalated", json!({}));
    put(&t.bus, &[&escalated]).await;
    assert_eq!(notification(&mut alice).await["id"], escalated.id());
    t.consumer.shutdown().await;
}

#[tokio::test]
async fn the_same_event_put_twice_is_notified_once() {
    let t = on_bus().await;
    let (mut ws, _) = t.served.connect_ready("c-1", "").await;
    let once = completion("c-1", "InventoryChecked", json!({"in_stock": true}));
    let next_one = completion("c-1", "FulfilmentIssueResolved", json!({}));
    // Two deliveries of one CloudEvent (as a redelivery or a replay brings), then another.
    put(&t.bus, &[&once]).await;
    put(&t.bus, &[&once]).await;
    put(&t.bus, &[&next_one]).await;
    assert_eq!(notification(&mut ws).await["id"], once.id());
    let second = notification(&mut ws).await;
    assert_eq!(second["id"], next_one.id());
    assert_eq!(second["seq"], 2);
    t.consumer.shutdown().await;
}

#[tokio::test]
async fn a_malformed_message_is_dead_lettered_with_its_reason() {
    let t = on_bus().await;
    // A `detail` claiming to be a CloudEvent but missing its id and type.
    let entry = PutEventsEntry {
        source: "agents.payments".into(),
        detail_type: "PaymentIssueResolved".into(),
        detail: json!({"specversion": "1.0", "authtype": "app_user", "authid": "c-1"}).to_string(),
        time: None,
        resources: Vec::new(),
        event_bus_name: None,
        trace_header: None,
    };
    assert_eq!(t.bus.put_events(vec![entry]).await.unwrap().failed_entry_count, 0);
    let options = ReceiveOptions { wait_time: std::time::Duration::from_secs(10), ..ReceiveOptions::default() };
    let dead = t.bus.receive("notifier-dlq", options).await.unwrap();
    assert_eq!(dead.len(), 1);
    let letter = dead[0].dead_letter.clone().unwrap();
    assert_eq!(letter.error_code, "MALFORMED_EVENT");
    assert!(letter.error_message.contains("cloudevent"), "{}", letter.error_message);
    t.consumer.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_the_consumer_and_a_new_one_takes_over() {
    let t = on_bus().await;
    t.consumer.shutdown().await;
    let late = completion("c-9", "OrderSupportCompleted", json!({}));
    put(&t.bus, &[&late]).await;
    // Nobody consumes now: the event waits in the inbox; a new consumer delivers it.
    assert_eq!(t.served.notifier.cursor("c-9").await.unwrap(), (0, 0));
    let consumer = t.served.notifier.spawn(Arc::new(t.bus.clone()));
    let (mut ws, _) = t.served.connect_ready("c-9", "").await;
    assert_eq!(notification(&mut ws).await["id"], late.id());
    consumer.shutdown().await;
}

#[tokio::test]
async fn an_event_for_no_customer_is_skipped_and_acknowledged() {
    let t = on_bus().await;
    // `authid` present (so the rule matches) but empty: nobody to notify.
    let nobody = Envelope::builder("agents.support", "SupportTriaged").auth(AuthType::AppUser, "").build().unwrap();
    let someone = completion("c-1", "SupportTriaged", json!({}));
    put(&t.bus, &[&nobody]).await;
    put(&t.bus, &[&someone]).await;
    let (mut ws, _) = t.served.connect_ready("c-1", "").await;
    assert_eq!(notification(&mut ws).await["id"], someone.id());
    assert_eq!(t.served.notifier.cursor("").await.unwrap(), (0, 0));
    t.consumer.shutdown().await;
    // Both settled by acknowledgement: nothing left in the inbox, nothing dead-lettered.
    let options = ReceiveOptions { visibility_timeout: std::time::Duration::ZERO, ..ReceiveOptions::default() };
    assert!(t.bus.receive(INBOX, options).await.unwrap().is_empty());
    assert!(t.bus.receive("notifier-dlq", options).await.unwrap().is_empty());
}
