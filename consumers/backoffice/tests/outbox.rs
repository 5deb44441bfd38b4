//! The transactional outbox: a shipment or a captured charge and its event are committed
//! together or not at all, a replayed key writes no second event, and each event is a valid
//! CloudEvent of the catalog about its order.

use choreo_backoffice::{BackOffice, BackOfficeError, OUTBOX_AUTH_ID, OUTBOX_SOURCE, ServiceLevel};
use choreo_schemas::catalog::{self, ChargeCaptured, OrderShipped};
use choreo_schemas::envelope::{AuthType, Envelope};
use chrono::NaiveDate;
use tempfile::TempDir;

fn office() -> (TempDir, BackOffice) {
    let dir = tempfile::tempdir().unwrap();
    let office = BackOffice::open_seeded(&dir.path().join("retail.db")).unwrap();
    (dir, office)
}

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 3).unwrap()
}

fn envelope(office: &BackOffice, order_id: &str, index: usize) -> Envelope {
    Envelope::from_json_value(office.outbox(order_id).unwrap()[index].event.clone()).unwrap()
}

#[test]
fn a_shipment_writes_one_valid_order_shipped_event_in_its_transaction() {
    let (_dir, office) = office();
    assert!(office.outbox("o-1001").unwrap().is_empty());
    let parcel =
        office.create_shipment("c-1001", "o-1001", "SKU-SPEAKER-02", 1, ServiceLevel::NextDay, today(), "k-1").unwrap();
    let rows = office.outbox("o-1001").unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].aggregate.as_str(), rows[0].relayed_at, rows[0].attempts), ("o-1001", None, 0));
    let event = envelope(&office, "o-1001", 0);
    assert_eq!(rows[0].event_id(), event.id());
    assert_eq!(event.event_type(), "OrderShipped");
    assert_eq!(event.source(), OUTBOX_SOURCE);
    assert_eq!(event.subject(), Some("orders/o-1001"));
    assert_eq!(event.auth_type(), Some(AuthType::ServiceAccount));
    assert_eq!(event.auth_id(), Some(OUTBOX_AUTH_ID));
    assert_eq!(event.time(), Some(&parcel.created_at));
    catalog::validate_envelope(&event).unwrap();
    let data: OrderShipped = event.data_as().unwrap();
    assert_eq!(data.customer_id, "c-1001");
    assert_eq!(data.shipment_id, parcel.shipment_id);
    assert_eq!((data.items[0].sku.as_str(), data.items[0].quantity), ("SKU-SPEAKER-02", 1));
    assert_eq!(data.service_level, catalog::ServiceLevel::NextDay);
    assert_eq!(data.estimated_delivery, parcel.estimated_delivery);
}

#[test]
fn replaying_a_shipment_key_writes_no_second_event() {
    let (_dir, office) = office();
    let first =
        office.create_shipment("c-1001", "o-1001", "SKU-SPEAKER-02", 1, ServiceLevel::NextDay, today(), "k-1").unwrap();
    let id = office.outbox("o-1001").unwrap()[0].event_id().to_owned();
    let again =
        office.create_shipment("c-1001", "o-1001", "SKU-SPEAKER-02", 1, ServiceLevel::NextDay, today(), "k-1").unwrap();
    assert_eq!(again, first);
    let rows = office.outbox("o-1001").unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].event_id(), id);
}

#[test]
fn a_refused_shipment_writes_neither_the_shipment_nor_an_event() {
    let (_dir, office) = office();
    let before = office.shipments("o-1001").unwrap();
    // Not an item of the order; not the customer's order; more than ordered; an unknown order.
    let refusals = [
        office.create_shipment("c-1001", "o-1001", "SKU-CABLE-01", 1, ServiceLevel::Express, today(), "k-1"),
        office.create_shipment("c-1002", "o-1001", "SKU-SPEAKER-02", 1, ServiceLevel::Express, today(), "k-2"),
        office.create_shipment("c-1001", "o-1001", "SKU-SPEAKER-02", 2, ServiceLevel::Express, today(), "k-3"),
        office.create_shipment("c-1001", "o-9999", "SKU-SPEAKER-02", 1, ServiceLevel::Express, today(), "k-4"),
    ];
    for refusal in refusals {
        assert!(refusal.is_err(), "{refusal:?}");
    }
    assert_eq!(office.shipments("o-1001").unwrap(), before);
    assert!(office.outbox("o-1001").unwrap().is_empty());
    assert!(matches!(office.outbox("o-9999"), Err(BackOfficeError::NotFound { kind: "order", .. })));
}

#[test]
fn a_captured_charge_is_listed_and_writes_charge_captured() {
    let (_dir, office) = office();
    let charge = office.capture_charge("c-1002", "o-1002", 4_999, "visa •••• 1111", "cap-1").unwrap();
    assert_eq!((charge.charge_id.as_str(), charge.amount_minor, charge.refunded_minor), ("ch-1", 4_999, 0));
    let listed = office.list_charges("c-1002", "o-1002").unwrap();
    assert!(listed.charges.contains(&charge), "{listed:?}");
    let rows = office.outbox("o-1002").unwrap();
    assert_eq!(rows.len(), 1);
    let event = envelope(&office, "o-1002", 0);
    assert_eq!((event.event_type(), event.subject()), ("ChargeCaptured", Some("orders/o-1002")));
    catalog::validate_envelope(&event).unwrap();
    let data: ChargeCaptured = event.data_as().unwrap();
    assert_eq!((data.customer_id.as_str(), data.charge_id.as_str()), ("c-1002", "ch-1"));
    assert_eq!((data.amount.amount_minor, data.amount.currency.as_str()), (4_999, listed.currency.as_str()));
    assert_eq!(data.captured_at, charge.captured_at);
}

#[test]
fn a_capture_replayed_with_its_key_returns_the_charge_and_writes_nothing_more() {
    let (_dir, office) = office();
    let first = office.capture_charge("c-1002", "o-1002", 4_999, "visa •••• 1111", "cap-1").unwrap();
    let again = office.capture_charge("c-1002", "o-1002", 4_999, "visa •••• 1111", "cap-1").unwrap();
    assert_eq!(again, first);
    assert_eq!(office.outbox("o-1002").unwrap().len(), 1);
    let reused = office.capture_charge("c-1002", "o-1002", 5_000, "visa •••• 1111", "cap-1").unwrap_err();
    assert!(matches!(reused, BackOfficeError::Invalid { field: "idempotency_key", .. }), "{reused}");
    let second = office.capture_charge("c-1002", "o-1002", 1_000, "visa •••• 1111", "cap-2").unwrap();
    assert_eq!(second.charge_id, "ch-2");
    assert_eq!(office.outbox("o-1002").unwrap().len(), 2);
}

#[test]
fn a_capture_that_repeats_an_earlier_charge_comes_back_flagged() {
    let (_dir, office) = office();
    let total = office.list_charges("c-1002", "o-1002").unwrap();
    let last = total.charges.last().unwrap().clone();
    let again = office.capture_charge("c-1002", "o-1002", last.amount_minor, &last.payment_method, "cap-1").unwrap();
    // Captured now, long after the seeded charge: outside the duplicate window.
    assert_eq!(again.duplicate_of, None);
    let next = office.capture_charge("c-1002", "o-1002", again.amount_minor, &again.payment_method, "cap-2").unwrap();
    assert_eq!(next.duplicate_of.as_deref(), Some(again.charge_id.as_str()));
}

#[test]
fn refused_captures_name_the_field_and_leave_nothing_behind() {
    let (_dir, office) = office();
    let before = office.list_charges("c-1002", "o-1002").unwrap();
    let cases = [
        (office.capture_charge("c-1002", "o-1002", 0, "visa", "k-1"), "amount_minor"),
        (office.capture_charge("c-1002", "o-1002", -5, "visa", "k-2"), "amount_minor"),
        (office.capture_charge("c-1002", "o-1002", 100, " ", "k-3"), "payment_method"),
        (office.capture_charge("c-1002", "o-1002", 100, "visa", ""), "idempotency_key"),
    ];
    for (result, field) in cases {
        assert!(matches!(result, Err(BackOfficeError::Invalid { field: f, .. }) if f == field), "{field}");
    }
    let not_owned = office.capture_charge("c-1001", "o-1002", 100, "visa", "k-4").unwrap_err();
    assert!(matches!(not_owned, BackOfficeError::NotOwned { .. }), "{not_owned}");
    let unknown = office.capture_charge("c-1002", "o-9999", 100, "visa", "k-5").unwrap_err();
    assert!(matches!(unknown, BackOfficeError::NotFound { kind: "order", .. }), "{unknown}");
    assert_eq!(office.list_charges("c-1002", "o-1002").unwrap(), before);
    assert!(office.outbox("o-1002").unwrap().is_empty());
}

#[test]
fn a_version_1_file_is_upgraded_in_place_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("retail.db");
    drop(BackOffice::open_seeded(&path).unwrap());
    // Back to what version 1 wrote: no outbox, no capture keys, no charge counter.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP TABLE outbox; DROP INDEX charges_by_key; ALTER TABLE charges DROP COLUMN idempotency_key;
         DELETE FROM counters WHERE name = 'ch'; PRAGMA user_version = 1;",
    )
    .unwrap();
    drop(conn);
    let office = BackOffice::open(&path).unwrap();
    assert_eq!(office.list_charges("c-1001", "o-1001").unwrap().charges.len(), 2, "the data is kept");
    office.capture_charge("c-1001", "o-1001", 100, "visa", "cap-1").unwrap();
    office.create_shipment("c-1001", "o-1001", "SKU-SPEAKER-02", 1, ServiceLevel::Standard, today(), "k-1").unwrap();
    let types: Vec<String> = office.outbox("o-1001").unwrap().iter().map(|r| r.event_type().to_owned()).collect();
    assert_eq!(types, ["ChargeCaptured", "OrderShipped"]);
    drop(office);
    let version: i32 =
        rusqlite::Connection::open(&path).unwrap().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, 2);
}
