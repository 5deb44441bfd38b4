//! `FulfilmentIssueResolved`: the orders agent has dealt with the items that did not arrive.

use chrono::NaiveDate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::CatalogEvent;
use super::common::{ItemLine, ORDER_ID_PATTERN};

/// What the orders agent did about the missing items of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FulfilmentIssueResolved {
    /// The order.
    #[schemars(regex(pattern = ORDER_ID_PATTERN))]
    pub order_id: String,
    /// The result.
    pub outcome: FulfilmentOutcome,
    /// The items the customer did not receive.
    pub missing_items: Vec<ItemLine>,
    /// The shipments arranged for them; empty if none could be.
    pub shipments: Vec<Shipment>,
    /// What was done, for the customer's answer.
    #[schemars(length(min = 1))]
    pub summary: String,
}

/// The result of a fulfilment investigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FulfilmentOutcome {
    /// Every missing item is on its way.
    ShipmentArranged,
    /// A missing item is out of stock and an alternative was offered.
    AlternativeProposed,
    /// Nothing was missing after all.
    NothingMissing,
    /// The items cannot be sent in time or at all.
    CannotFulfil,
}

/// A shipment of one product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Shipment {
    /// The shipment, as the back office names it.
    #[schemars(length(min = 1))]
    pub shipment_id: String,
    /// The product shipped.
    #[schemars(length(min = 1))]
    pub sku: String,
    /// How many units.
    #[schemars(range(min = 1))]
    pub quantity: u32,
    /// The carrier, e.g. `DHL`.
    #[schemars(length(min = 1))]
    pub carrier: String,
    /// How fast.
    pub service_level: ServiceLevel,
    /// The date the carrier promises.
    pub estimated_delivery: NaiveDate,
}

/// How fast a shipment travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServiceLevel {
    Standard,
    Express,
    NextDay,
    SameDay,
}

impl CatalogEvent for FulfilmentIssueResolved {
    const NAME: &'static str = "FulfilmentIssueResolved";
}
