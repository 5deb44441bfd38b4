//! The seeded support cases read as the agents will see them: duplicates flagged, missing items
//! with their reason, stock and alternatives, and another customer's resources refused.

use choreo_backoffice::{BackOffice, BackOfficeError};
use tempfile::TempDir;

fn office() -> (TempDir, BackOffice) {
    let dir = tempfile::tempdir().unwrap();
    let office = BackOffice::open_seeded(&dir.path().join("retail.db")).unwrap();
    (dir, office)
}

#[test]
fn case_1_second_charge_is_flagged_as_duplicate_of_the_first() {
    let (_dir, office) = office();
    let charges = office.list_charges("c-1001", "o-1001").unwrap();
    assert_eq!(charges.order_total_minor, 20_800);
    assert_eq!(charges.total_charged_minor, 41_600);
    assert_eq!(charges.total_refunded_minor, 0);
    let ids: Vec<_> = charges.charges.iter().map(|c| (c.charge_id.as_str(), c.duplicate_of.as_deref())).collect();
    assert_eq!(ids, [("ch-1001-a", None), ("ch-1001-b", Some("ch-1001-a"))]);
    assert_eq!(charges.charges[0].payment_method, "visa •••• 4242");
}

#[test]
fn case_1_speaker_is_missing_with_a_note_and_in_stock() {
    let (_dir, office) = office();
    let order = office.get_order("c-1001", "o-1001").unwrap();
    assert_eq!(order.status, "partially_delivered");
    assert_eq!(order.total_minor, 20_800);
    assert_eq!(order.placed_at.to_rfc3339(), "2026-11-27T09:14:00+00:00");
    let headphones = &order.items[0];
    assert_eq!(
        (headphones.sku.as_str(), headphones.quantity_delivered, headphones.missing),
        ("SKU-HEADPHONES-01", 1, 0)
    );
    assert_eq!(headphones.note, None);
    let speaker = &order.items[1];
    assert_eq!((speaker.sku.as_str(), speaker.quantity_shipped, speaker.missing), ("SKU-SPEAKER-02", 0, 1));
    assert_eq!(speaker.note.as_deref(), Some("left behind at the warehouse: split parcel not created"));
    assert_eq!(order.shipments.len(), 1);
    assert_eq!(order.shipments[0].status, "delivered");
    let stock = office.check_stock("SKU-SPEAKER-02").unwrap();
    assert_eq!((stock.on_hand, stock.reserved, stock.available, stock.restock_date), (14, 0, 14, None));
}

#[test]
fn case_2_single_charge_is_not_a_duplicate_and_the_charger_is_missing() {
    let (_dir, office) = office();
    let charges = office.list_charges("c-1002", "o-1002").unwrap();
    assert_eq!(charges.charges.len(), 1);
    assert_eq!(charges.charges[0].duplicate_of, None);
    assert_eq!(charges.total_charged_minor, charges.order_total_minor);
    let order = office.get_order("c-1002", "o-1002").unwrap();
    let missing: Vec<_> = order.items.iter().filter(|i| i.missing > 0).map(|i| i.sku.as_str()).collect();
    assert_eq!(missing, ["SKU-CHARGER-01"]);
    assert!(order.items[1].note.is_some());
    assert!(office.check_stock("SKU-CHARGER-01").unwrap().available > 0);
}

#[test]
fn case_3_is_a_double_charge_with_everything_delivered() {
    let (_dir, office) = office();
    let charges = office.list_charges("c-1003", "o-1003").unwrap();
    assert_eq!(charges.charges[1].duplicate_of.as_deref(), Some("ch-1003-a"));
    let order = office.get_order("c-1003", "o-1003").unwrap();
    assert_eq!(order.status, "delivered");
    assert!(order.items.iter().all(|i| i.missing == 0 && i.quantity_delivered == i.quantity && i.note.is_none()));
}

#[test]
fn case_4_missing_speaker_is_out_of_stock_with_an_in_stock_alternative() {
    let (_dir, office) = office();
    let order = office.get_order("c-1004", "o-1004").unwrap();
    let speaker = order.items.iter().find(|i| i.sku == "SKU-SPEAKER-04").unwrap();
    assert_eq!(speaker.missing, 1);
    assert!(speaker.note.as_deref().unwrap().contains("out of stock"));
    let charges = office.list_charges("c-1004", "o-1004").unwrap();
    assert!(charges.charges.iter().all(|c| c.duplicate_of.is_none()));
    let stock = office.check_stock("SKU-SPEAKER-04").unwrap();
    assert_eq!(stock.available, 0);
    assert_eq!(stock.restock_date.unwrap().to_string(), "2026-12-18");
    let alternatives = office.find_alternatives("SKU-SPEAKER-04").unwrap();
    assert_eq!(alternatives[0].sku, "SKU-SPEAKER-03");
    assert!(alternatives[0].available > 0);
    assert!(alternatives.iter().all(|p| p.category == "speakers" && p.sku != "SKU-SPEAKER-04"));
}

#[test]
fn alternatives_list_in_stock_products_before_out_of_stock_ones() {
    let (_dir, office) = office();
    // From the in-stock speaker, the out-of-stock one is nearer in price but comes last.
    let skus: Vec<_> =
        office.find_alternatives("SKU-SPEAKER-03").unwrap().into_iter().map(|p| (p.sku, p.available)).collect();
    assert_eq!(skus, [("SKU-SPEAKER-02".to_owned(), 14), ("SKU-SPEAKER-04".to_owned(), 0)]);
}

#[test]
fn case_5_order_is_refused_to_another_customer() {
    let (_dir, office) = office();
    let err = office.get_order("c-1001", "o-1005").unwrap_err();
    assert_eq!(err, BackOfficeError::NotOwned { kind: "order", id: "o-1005".into(), customer: "c-1001".into() });
    assert_eq!(err.to_string(), "order `o-1005` does not belong to customer `c-1001`");
    assert!(matches!(office.list_charges("c-1001", "o-1005"), Err(BackOfficeError::NotOwned { .. })));
    assert_eq!(office.get_order("c-1005", "o-1005").unwrap().status, "delivered");
}

#[test]
fn unknown_order_and_product_are_not_found() {
    let (_dir, office) = office();
    let err = office.get_order("c-1001", "o-9").unwrap_err();
    assert_eq!(err.to_string(), "order `o-9` does not exist");
    assert!(matches!(office.check_stock("SKU-NOPE"), Err(BackOfficeError::NotFound { kind: "product", .. })));
    assert!(matches!(office.find_alternatives("SKU-NOPE"), Err(BackOfficeError::NotFound { kind: "product", .. })));
    assert!(matches!(office.refunds("o-9"), Err(BackOfficeError::NotFound { kind: "order", .. })));
}

#[test]
fn views_serialise_as_snake_case_json_with_minor_units() {
    let (_dir, office) = office();
    let json = serde_json::to_value(office.list_charges("c-1001", "o-1001").unwrap()).unwrap();
    assert_eq!(json["charges"][1]["duplicate_of"], "ch-1001-a");
    assert_eq!(json["charges"][0]["amount_minor"], 20_800);
    assert_eq!(json["charges"][0]["captured_at"], "2026-11-27T09:14:32Z");
    let order = serde_json::to_value(office.get_order("c-1001", "o-1001").unwrap()).unwrap();
    assert_eq!(order["shipments"][0]["service_level"], "standard");
}
