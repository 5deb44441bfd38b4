//! Fixture files of EventBridge's shapes, round-tripped through our types and the envelope.

use std::fs;
use std::path::Path;

use choreo_schemas::catalog;
use choreo_schemas::eventbridge::{DeliveredEvent, Delivery, PutEventsEntry};
use serde_json::Value;

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    fs::read_to_string(path).unwrap()
}

#[test]
fn replayed_delivery_round_trips() {
    let text = fixture("delivered-support-triaged-replayed.json");
    let wire: Value = serde_json::from_str(&text).unwrap();
    let delivered: DeliveredEvent = serde_json::from_str(&text).unwrap();
    assert_eq!(serde_json::to_value(&delivered).unwrap(), wire, "the delivered shape is kept as is");

    let Delivery { envelope, meta } = delivered.to_delivery().unwrap();
    assert_eq!(meta.replay_name.as_deref(), Some("black-friday-replay"));
    assert_eq!(meta.id, "3f1c2b9e-8d47-4a55-9c61-0e2f6b7a1d34");
    assert_eq!(envelope.id(), "01JDQ5XB2K7M3N4P5Q6R7S8T9V");
    assert_eq!(envelope.auth_id(), Some("c-1001"));
    assert!(envelope.extension("tenant").is_some() && envelope.extension("hops").is_some());
    catalog::validate_envelope(&envelope).unwrap();

    let again = DeliveredEvent::from_envelope(&envelope, &meta);
    assert_eq!(again, delivered);
    assert_eq!(serde_json::to_value(&again).unwrap(), wire);
}

#[test]
fn aws_service_delivery_round_trips() {
    let text = fixture("delivered-aws-ec2.json");
    let delivered: DeliveredEvent = serde_json::from_str(&text).unwrap();
    assert_eq!(serde_json::to_value(&delivered).unwrap(), serde_json::from_str::<Value>(&text).unwrap());
    let Delivery { envelope, meta } = delivered.to_delivery().unwrap();
    assert_eq!(envelope.id(), meta.id);
    assert_eq!(envelope.data(), Some(&delivered.event.detail));
    assert_eq!(meta.replay_name, None);
}

#[test]
fn put_events_entry_round_trips() {
    let text = fixture("put-events-entry.json");
    let entry: PutEventsEntry = serde_json::from_str(&text).unwrap();
    assert_eq!(serde_json::to_value(&entry).unwrap(), serde_json::from_str::<Value>(&text).unwrap());

    let envelope = entry.to_envelope().unwrap();
    assert_eq!(envelope.event_type(), "OrderSupportPlaced");
    catalog::validate_envelope(&envelope).unwrap();

    let again = PutEventsEntry::from_envelope(&envelope).with_event_bus_name("choreo");
    assert_eq!(again.detail_value().unwrap(), entry.detail_value().unwrap());
    assert_eq!((&again.source, &again.detail_type, again.time), (&entry.source, &entry.detail_type, entry.time));
    assert_eq!(again.to_envelope().unwrap(), envelope);
}
