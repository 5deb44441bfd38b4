//! The envelope survives its own JSON and the SDK's, unknown extensions included.

use choreo_schemas::envelope::{AuthType, Envelope};
use cloudevents::Event;
use cloudevents::event::ExtensionValue;
use serde_json::json;

fn foreign_event() -> serde_json::Value {
    json!({
        "specversion": "1.0", "id": "01JDQ5X8Y7Z6W5V4T3S2R1Q0PN", "source": "retail.support-api",
        "type": "OrderSupportPlaced", "subject": "orders/o-1001",
        "time": "2024-11-29T11:15:00.123456789+01:00", "datacontenttype": "application/json",
        "dataschema": "urn:choreo:schema:OrderSupportPlaced:1",
        "correlationid": "01JDQ5X8Y7Z6W5V4T3S2R1Q0PN", "authtype": "app_user", "authid": "c-1001",
        "tenant": "retail-eu", "sampled": true, "hops": 3, "ignored": null,
        "data": {"order_id": "o-1001", "message": "charged twice", "channel": "web"}
    })
}

#[test]
fn parse_serialize_parse_is_the_same_event() {
    let first = Envelope::from_json_value(foreign_event()).unwrap();
    let second = Envelope::from_json_str(&first.to_json_string()).unwrap();
    assert_eq!(second, first);
    let via_serde: Envelope = serde_json::from_str(&serde_json::to_string(&first).unwrap()).unwrap();
    assert_eq!(via_serde, first);
}

#[test]
fn unknown_extensions_keep_their_names_and_types() {
    let e = Envelope::from_json_value(foreign_event()).unwrap();
    assert_eq!(e.extension("tenant"), Some(&ExtensionValue::String("retail-eu".into())));
    assert_eq!(e.extension("sampled"), Some(&ExtensionValue::Boolean(true)));
    assert_eq!(e.extension("hops"), Some(&ExtensionValue::Integer(3)));
    let json = e.to_json_value();
    assert_eq!(json["hops"], 3);
    assert_eq!(json["sampled"], true);
    assert!(json.get("ignored").is_none(), "a null attribute is an absent one");
}

#[test]
fn our_json_and_the_sdk_agree() {
    let e = Envelope::from_json_value(foreign_event()).unwrap();
    let by_sdk = serde_json::to_value(e.as_event()).unwrap();
    assert_eq!(by_sdk, e.to_json_value());
    let read_by_sdk: Event = serde_json::from_value(e.to_json_value()).unwrap();
    assert_eq!(&read_by_sdk, e.as_event());
    assert_eq!(Envelope::try_from(read_by_sdk).unwrap(), e);
}

#[test]
fn time_keeps_its_instant_and_precision() {
    let e = Envelope::from_json_value(foreign_event()).unwrap();
    assert_eq!(e.to_json_value()["time"], "2024-11-29T10:15:00.123456789Z");
}

#[test]
fn built_envelope_round_trips_with_every_extension() {
    let e = Envelope::builder("retail.support-api", "OrderSupportPlaced")
        .subject("orders/o-1001")
        .data(json!({"order_id": "o-1001"}))
        .traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .auth(AuthType::AppUser, "c-1001")
        .extension("tenant", "retail-eu")
        .build()
        .unwrap();
    assert_eq!(Envelope::from_json_str(&e.to_json_string()).unwrap(), e);
}
