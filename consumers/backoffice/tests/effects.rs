//! Refunds, shipments and reservations: idempotent per key, refused when not owned or not
//! possible, and leaving nothing behind when refused.

use choreo_backoffice::{BackOffice, BackOfficeError, ServiceLevel};
use chrono::NaiveDate;
use tempfile::TempDir;

fn office() -> (TempDir, BackOffice) {
    let dir = tempfile::tempdir().unwrap();
    let office = BackOffice::open_seeded(&dir.path().join("retail.db")).unwrap();
    (dir, office)
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, d).unwrap()
}

#[test]
fn same_refund_key_twice_returns_the_first_refund_and_writes_one_row() {
    let (_dir, office) = office();
    let first = office.refund_charge("c-1001", "ch-1001-b", None, "duplicate charge", "k-1").unwrap();
    assert_eq!((first.refund_id.as_str(), first.amount_minor, first.order_id.as_str()), ("rf-1", 20_800, "o-1001"));
    let again = office.refund_charge("c-1001", "ch-1001-b", None, "duplicate charge", "k-1").unwrap();
    assert_eq!(again, first);
    assert_eq!(office.refunds("o-1001").unwrap(), [first]);
}

#[test]
fn refunded_duplicate_keeps_its_flag_and_shows_the_refund() {
    let (_dir, office) = office();
    office.refund_charge("c-1001", "ch-1001-b", None, "duplicate charge", "k-1").unwrap();
    let charges = office.list_charges("c-1001", "o-1001").unwrap();
    let b = &charges.charges[1];
    assert_eq!(b.duplicate_of.as_deref(), Some("ch-1001-a"));
    assert_eq!(b.refunded_minor, b.amount_minor);
    assert_eq!(charges.total_refunded_minor, 20_800);
}

#[test]
fn new_key_on_a_fully_refunded_charge_is_a_conflict() {
    let (_dir, office) = office();
    office.refund_charge("c-1001", "ch-1001-b", None, "duplicate charge", "k-1").unwrap();
    let err = office.refund_charge("c-1001", "ch-1001-b", None, "duplicate charge", "k-2").unwrap_err();
    assert_eq!(err.to_string(), "charge `ch-1001-b` is already fully refunded");
    assert_eq!(office.refunds("o-1001").unwrap().len(), 1);
}

#[test]
fn partial_refunds_add_up_and_more_than_remains_is_a_conflict() {
    let (_dir, office) = office();
    let part = office.refund_charge("c-1003", "ch-1003-b", Some(10_000), "duplicate, part 1", "p-1").unwrap();
    assert_eq!(part.amount_minor, 10_000);
    let err = office.refund_charge("c-1003", "ch-1003-b", Some(5_000), "duplicate, part 2", "p-2").unwrap_err();
    assert!(matches!(err, BackOfficeError::Conflict { kind: "charge", .. }), "{err}");
    assert!(err.to_string().contains("2900"), "{err}");
    let rest = office.refund_charge("c-1003", "ch-1003-b", None, "duplicate, rest", "p-3").unwrap();
    assert_eq!(rest.amount_minor, 2_900);
    assert_eq!(office.list_charges("c-1003", "o-1003").unwrap().total_refunded_minor, 12_900);
}

#[test]
fn malformed_refund_requests_are_invalid() {
    let (_dir, office) = office();
    let field = |r: Result<_, BackOfficeError>| match r {
        Err(BackOfficeError::Invalid { field, .. }) => field,
        other => panic!("expected Invalid, got {other:?}"),
    };
    assert_eq!(field(office.refund_charge("c-1001", "ch-1001-b", Some(0), "x", "k")), "amount_minor");
    assert_eq!(field(office.refund_charge("c-1001", "ch-1001-b", None, "x", " ")), "idempotency_key");
    assert_eq!(field(office.refund_charge("c-1001", "ch-1001-b", None, "", "k")), "reason");
    office.refund_charge("c-1001", "ch-1001-b", Some(100), "x", "k").unwrap();
    // The same key for a different request is a client bug, not a replay.
    assert_eq!(field(office.refund_charge("c-1001", "ch-1001-a", Some(100), "x", "k")), "idempotency_key");
}

#[test]
fn refunding_another_customers_charge_is_refused_and_changes_nothing() {
    let (_dir, office) = office();
    let err = office.refund_charge("c-1001", "ch-1003-b", None, "duplicate charge", "k-x").unwrap_err();
    assert_eq!(err, BackOfficeError::NotOwned { kind: "charge", id: "ch-1003-b".into(), customer: "c-1001".into() });
    assert!(office.refunds("o-1003").unwrap().is_empty());
    assert_eq!(office.list_charges("c-1003", "o-1003").unwrap().total_refunded_minor, 0);
    assert!(matches!(
        office.refund_charge("c-1001", "ch-nope", None, "x", "k-y"),
        Err(BackOfficeError::NotFound { kind: "charge", .. })
    ));
}

#[test]
fn shipment_takes_stock_once_per_key_and_estimates_next_day() {
    let (_dir, office) = office();
    let ship = || office.create_shipment("c-1001", "o-1001", "SKU-SPEAKER-02", 1, ServiceLevel::NextDay, day(3), "s-1");
    let first = ship().unwrap();
    assert_eq!(first.shipment_id, "sh-1");
    assert_eq!((first.carrier.as_str(), first.status.as_str()), ("DHL", "label_created"));
    assert_eq!(first.estimated_delivery, day(4));
    assert_eq!(ship().unwrap(), first);
    assert_eq!(office.check_stock("SKU-SPEAKER-02").unwrap().on_hand, 13);
    assert_eq!(office.shipments("o-1001").unwrap().len(), 2);
    let order = office.get_order("c-1001", "o-1001").unwrap();
    assert_eq!((order.items[1].missing, order.items[1].quantity_shipped), (0, 1));
    assert_eq!(order.items[1].note, None, "the reason is stale once the item ships");
}

#[test]
fn estimated_delivery_follows_the_service_level() {
    let (_dir, office) = office();
    for (level, sku, order, customer, expected) in [
        (ServiceLevel::SameDay, "SKU-SPEAKER-02", "o-1001", "c-1001", day(3)),
        (ServiceLevel::Express, "SKU-CHARGER-01", "o-1002", "c-1002", day(5)),
    ] {
        let s = office.create_shipment(customer, order, sku, 1, level, day(3), order).unwrap();
        assert_eq!(s.estimated_delivery, expected, "{level:?}");
    }
}

#[test]
fn out_of_stock_shipment_is_a_conflict_naming_sku_and_availability() {
    let (_dir, office) = office();
    let err = office
        .create_shipment("c-1004", "o-1004", "SKU-SPEAKER-04", 1, ServiceLevel::Express, day(3), "s-4")
        .unwrap_err();
    assert!(matches!(&err, BackOfficeError::Conflict { kind: "product", id, .. } if id == "SKU-SPEAKER-04"));
    assert_eq!(err.to_string(), "product `SKU-SPEAKER-04` has 0 available, asked for 1 (restock expected 2026-12-18)");
    assert!(office.shipments("o-1004").unwrap().iter().all(|s| s.sku != "SKU-SPEAKER-04"));
}

#[test]
fn shipping_what_already_shipped_or_is_not_in_the_order_is_refused() {
    let (_dir, office) = office();
    let ship = |sku, key| office.create_shipment("c-1001", "o-1001", sku, 1, ServiceLevel::Standard, day(3), key);
    assert!(matches!(ship("SKU-HEADPHONES-01", "a"), Err(BackOfficeError::Conflict { kind: "order", .. })));
    assert!(matches!(ship("SKU-CHARGER-01", "b"), Err(BackOfficeError::Invalid { field: "sku", .. })));
    ship("SKU-SPEAKER-02", "c").unwrap();
    // A second key does not ship the same missing speaker twice.
    assert!(matches!(ship("SKU-SPEAKER-02", "d"), Err(BackOfficeError::Conflict { kind: "order", .. })));
    assert_eq!(office.check_stock("SKU-SPEAKER-02").unwrap().on_hand, 13);
}

#[test]
fn shipping_for_another_customers_order_is_refused_and_takes_no_stock() {
    let (_dir, office) = office();
    let err = office
        .create_shipment("c-1001", "o-1002", "SKU-CHARGER-01", 1, ServiceLevel::NextDay, day(3), "s-x")
        .unwrap_err();
    assert!(matches!(err, BackOfficeError::NotOwned { kind: "order", .. }));
    assert_eq!(office.check_stock("SKU-CHARGER-01").unwrap().on_hand, 40);
}

#[test]
fn reservation_holds_stock_until_its_shipment_takes_it() {
    let (_dir, office) = office();
    let held = office.reserve_stock("c-1002", "o-1002", "SKU-CHARGER-01", 1, "r-1").unwrap();
    assert_eq!((held.reservation_id.as_str(), held.quantity), ("rs-1", 1));
    assert_eq!(office.reserve_stock("c-1002", "o-1002", "SKU-CHARGER-01", 1, "r-1").unwrap(), held);
    let stock = office.check_stock("SKU-CHARGER-01").unwrap();
    assert_eq!((stock.on_hand, stock.reserved, stock.available), (40, 1, 39));
    assert!(matches!(
        office.reserve_stock("c-1002", "o-1002", "SKU-CHARGER-01", 1, "r-2"),
        Err(BackOfficeError::Conflict { kind: "order", .. })
    ));
    office.create_shipment("c-1002", "o-1002", "SKU-CHARGER-01", 1, ServiceLevel::Standard, day(3), "s-1").unwrap();
    let stock = office.check_stock("SKU-CHARGER-01").unwrap();
    assert_eq!((stock.on_hand, stock.reserved, stock.available), (39, 0, 39));
}

#[test]
fn reserving_an_out_of_stock_item_is_a_conflict() {
    let (_dir, office) = office();
    let err = office.reserve_stock("c-1004", "o-1004", "SKU-SPEAKER-04", 1, "r-4").unwrap_err();
    assert!(matches!(err, BackOfficeError::Conflict { kind: "product", .. }), "{err}");
    assert!(matches!(
        office.reserve_stock("c-1001", "o-1004", "SKU-SPEAKER-04", 1, "r-5"),
        Err(BackOfficeError::NotOwned { .. })
    ));
    assert!(matches!(
        office.reserve_stock("c-1004", "o-1004", "SKU-SPEAKER-04", 0, "r-6"),
        Err(BackOfficeError::Invalid { field: "quantity", .. })
    ));
}

#[test]
fn concurrent_replays_of_one_refund_key_refund_once() {
    let (_dir, office) = office();
    let refunds: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| office.refund_charge("c-1001", "ch-1001-b", None, "duplicate", "same").unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(refunds.iter().all(|r| r == &refunds[0]));
    assert_eq!(office.refunds("o-1001").unwrap().len(), 1);
}
