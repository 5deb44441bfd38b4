//! The event catalog: one Rust type per event, its JSON Schema and a validator for incoming
//! data. Adding an event is one file here, one line in [`catalog`], a schema and an example.

mod common;
mod validate;

mod case_escalated;
mod charge_captured;
mod fulfilment_issue_resolved;
mod inventory_checked;
mod order_shipped;
mod order_support_completed;
mod order_support_placed;
mod payment_issue_resolved;
mod support_triaged;

use std::sync::{LazyLock, OnceLock};

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use case_escalated::{CaseEscalated, EscalationReason};
pub use charge_captured::ChargeCaptured;
pub use common::{AGENT_NAME_PATTERN, CURRENCY_PATTERN, CUSTOMER_ID_PATTERN, IssueKind, ItemLine, ORDER_ID_PATTERN};
pub use fulfilment_issue_resolved::{FulfilmentIssueResolved, FulfilmentOutcome, ServiceLevel, Shipment};
pub use inventory_checked::{Alternative, InventoryChecked};
pub use order_shipped::OrderShipped;
pub use order_support_completed::{ActionTaken, OrderSupportCompleted};
pub use order_support_placed::{Channel, OrderSupportPlaced};
pub use payment_issue_resolved::{Money, PaymentIssueResolved, PaymentOutcome, Refund};
pub use support_triaged::SupportTriaged;
pub use validate::{ValidationError, validate, validate_envelope};

/// An event of the catalog: the Rust type of its data.
pub trait CatalogEvent: Serialize + DeserializeOwned + JsonSchema {
    /// The event name: the CloudEvent `type`, the EventBridge `detail-type`, the type's name.
    const NAME: &'static str;
    /// The version of its data schema; a breaking change to the data is a new version.
    const VERSION: u32 = 1;
}

static CATALOG: LazyLock<Vec<EventSchema>> = LazyLock::new(|| {
    vec![
        EventSchema::of::<OrderSupportPlaced>(),
        EventSchema::of::<SupportTriaged>(),
        EventSchema::of::<PaymentIssueResolved>(),
        EventSchema::of::<FulfilmentIssueResolved>(),
        EventSchema::of::<InventoryChecked>(),
        EventSchema::of::<OrderSupportCompleted>(),
        EventSchema::of::<CaseEscalated>(),
        EventSchema::of::<OrderShipped>(),
        EventSchema::of::<ChargeCaptured>(),
    ]
});

/// Every event of the catalog.
pub fn catalog() -> &'static [EventSchema] {
    &CATALOG
}

/// The event called `name`, if the catalog has it.
pub fn lookup(name: &str) -> Option<&'static EventSchema> {
    CATALOG.iter().find(|e| e.name == name)
}

/// The id of a data schema, as found in `dataschema`: `urn:choreo:schema:<name>:<version>`.
pub fn schema_id(name: &str, version: u32) -> String {
    format!("urn:choreo:schema:{name}:{version}")
}

/// The published JSON Schema of `T`'s data (draft 2020-12), with its `$id` and `title`.
pub fn schema_for<T: CatalogEvent>() -> Value {
    let mut schema = SchemaSettings::draft2020_12().into_generator().into_root_schema_for::<T>();
    schema.insert("$id".to_owned(), schema_id(T::NAME, T::VERSION).into());
    schema.insert("title".to_owned(), T::NAME.into());
    schema.to_value()
}

/// One event of the catalog: its name, version and schema.
pub struct EventSchema {
    name: &'static str,
    version: u32,
    schema_id: String,
    schema: Value,
    /// Compiled on first use, once, and shared by every validation after.
    validator: OnceLock<Result<jsonschema::Validator, String>>,
}

impl EventSchema {
    fn of<T: CatalogEvent>() -> Self {
        Self {
            name: T::NAME,
            version: T::VERSION,
            schema_id: schema_id(T::NAME, T::VERSION),
            schema: schema_for::<T>(),
            validator: OnceLock::new(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub fn schema_id(&self) -> &str {
        &self.schema_id
    }

    pub fn schema(&self) -> &Value {
        &self.schema
    }
}

impl std::fmt::Debug for EventSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSchema")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("schema_id", &self.schema_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_ids_follow_the_urn_scheme() {
        let mut names: Vec<_> = catalog().iter().map(EventSchema::name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), catalog().len());
        let triaged = lookup("SupportTriaged").unwrap();
        assert_eq!(triaged.schema_id(), "urn:choreo:schema:SupportTriaged:1");
        assert_eq!(triaged.version(), 1);
        assert!(lookup("supporttriaged").is_none());
    }

    #[test]
    fn schemas_carry_id_title_and_descriptions() {
        for event in catalog() {
            let schema = event.schema();
            assert_eq!(schema["$id"], event.schema_id());
            assert_eq!(schema["title"], event.name());
            assert!(schema["description"].is_string(), "{} has no description", event.name());
            assert_eq!(schema["additionalProperties"], false, "{}", event.name());
        }
    }

    #[test]
    fn issues_stay_a_flat_array_of_strings_for_rules_to_match() {
        let schema = lookup("SupportTriaged").unwrap().schema();
        assert_eq!(schema["properties"]["issues"]["type"], "array");
        assert_eq!(schema["properties"]["issues"]["uniqueItems"], true);
        let data = serde_json::to_value(SupportTriaged {
            order_id: "o-1001".into(),
            issues: vec![IssueKind::DuplicateCharge, IssueKind::MissingItem],
            summary: "charged twice, one item missing".into(),
            needed_by: None,
        })
        .unwrap();
        assert_eq!(data["issues"], serde_json::json!(["duplicate_charge", "missing_item"]));
    }
}
