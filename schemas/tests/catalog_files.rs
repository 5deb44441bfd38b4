//! The catalog's published files: the JSON Schemas are what the types generate (golden, rewritten
//! with `UPDATE_GOLDEN=1`), every example is valid, and no event is half added.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use choreo_schemas::catalog::{
    self, CaseEscalated, CatalogEvent, ChargeCaptured, FulfilmentIssueResolved, InventoryChecked, OrderShipped,
    OrderSupportCompleted, OrderSupportPlaced, PaymentIssueResolved, SupportTriaged, ValidationError,
};
use serde_json::{Value, json};

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

fn json_stems(name: &str) -> BTreeSet<String> {
    fs::read_dir(dir(name))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn example(name: &str) -> Value {
    let path = dir("examples").join(format!("{name}.json"));
    serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn checked_in_schemas_match_the_types() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut stale = Vec::new();
    for event in catalog::catalog() {
        let path = dir("json").join(format!("{}.json", event.name()));
        let generated = serde_json::to_string_pretty(event.schema()).unwrap() + "\n";
        if update {
            fs::write(&path, &generated).unwrap();
        } else if fs::read_to_string(&path).ok().as_deref() != Some(generated.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(stale.is_empty(), "stale schemas (rerun with UPDATE_GOLDEN=1): {stale:?}");
}

#[test]
fn every_event_has_a_schema_and_an_example_and_nothing_else_is_there() {
    let names: BTreeSet<String> = catalog::catalog().iter().map(|e| e.name().to_owned()).collect();
    assert_eq!(json_stems("json"), names, "schemas/json/ must hold exactly one schema per event");
    assert_eq!(json_stems("examples"), names, "schemas/examples/ must hold exactly one example per event");
}

#[test]
fn every_example_is_valid_against_its_schema() {
    for event in catalog::catalog() {
        let data = example(event.name());
        if let Err(e) = event.validate(&data) {
            panic!("example {}: {e}", event.name());
        }
    }
}

fn round_trips<T: CatalogEvent + std::fmt::Debug>() {
    let data = example(T::NAME);
    let typed: T = serde_json::from_value(data.clone())
        .unwrap_or_else(|e| panic!("example {} does not deserialize: {e}", T::NAME));
    assert_eq!(serde_json::to_value(&typed).unwrap(), data, "{}", T::NAME);
}

#[test]
fn every_example_deserializes_into_its_type_and_back() {
    round_trips::<OrderSupportPlaced>();
    round_trips::<SupportTriaged>();
    round_trips::<PaymentIssueResolved>();
    round_trips::<FulfilmentIssueResolved>();
    round_trips::<InventoryChecked>();
    round_trips::<OrderSupportCompleted>();
    round_trips::<CaseEscalated>();
    round_trips::<OrderShipped>();
    round_trips::<ChargeCaptured>();
    assert_eq!(catalog::catalog().len(), 9, "a new event needs its line above too");
}

#[test]
fn invalid_examples_report_pointer_and_reason() {
    let mut data = example("SupportTriaged");
    data["issues"][0] = json!("alien_abduction");
    let err = catalog::validate("SupportTriaged", &data).unwrap_err();
    let ValidationError::Invalid { pointer, reason, .. } = &err else { panic!("{err:?}") };
    assert_eq!(pointer, "/issues/0");
    assert!(reason.contains("\"alien_abduction\" is not one of"), "{reason}");

    let mut data = example("PaymentIssueResolved");
    data["refunds"][0]["amount"].as_object_mut().unwrap().remove("currency");
    let err = catalog::validate("PaymentIssueResolved", &data).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`PaymentIssueResolved` data is invalid at `/refunds/0/amount`: \"currency\" is a required property"
    );

    let mut data = example("PaymentIssueResolved");
    data["refunds"][0]["amount"]["amount_minor"] = json!(129.98);
    let err = catalog::validate("PaymentIssueResolved", &data).unwrap_err();
    let ValidationError::Invalid { pointer, .. } = &err else { panic!("{err:?}") };
    assert_eq!(pointer, "/refunds/0/amount/amount_minor");
}

#[test]
fn every_example_travels_in_a_valid_envelope() {
    use choreo_schemas::envelope::{AuthType, Envelope};
    for event in catalog::catalog() {
        let envelope = Envelope::builder("retail.support-api", event.name())
            .subject("orders/o-1001")
            .auth(AuthType::AppUser, "c-1001")
            .data(example(event.name()))
            .build()
            .unwrap();
        catalog::validate_envelope(&envelope).unwrap();
    }
    let placed: OrderSupportPlaced = serde_json::from_value(example("OrderSupportPlaced")).unwrap();
    let envelope = Envelope::builder("retail.support-api", OrderSupportPlaced::NAME)
        .data(serde_json::to_value(&placed).unwrap())
        .build()
        .unwrap();
    assert_eq!(envelope.data_as::<OrderSupportPlaced>().unwrap(), placed);
    assert!(envelope.data_as::<SupportTriaged>().is_err());
}
