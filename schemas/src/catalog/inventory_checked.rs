//! `InventoryChecked`: the inventory agent has checked the stock of one product.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::CatalogEvent;
use super::common::ORDER_ID_PATTERN;

/// The stock of one product of an order, and an alternative when it is out of stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryChecked {
    /// The order the check was for.
    #[schemars(regex(pattern = ORDER_ID_PATTERN))]
    pub order_id: String,
    /// The product checked.
    #[schemars(length(min = 1))]
    pub sku: String,
    /// Whether it can be shipped now.
    pub available: bool,
    /// Units in stock.
    pub quantity_on_hand: u32,
    /// A similar product to offer instead, when this one is out of stock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternative: Option<Alternative>,
}

/// A product offered in place of one that is out of stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Alternative {
    /// The product offered.
    #[schemars(length(min = 1))]
    pub sku: String,
    /// Its name, as the customer would see it.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Whether it can be shipped now.
    pub available: bool,
}

impl CatalogEvent for InventoryChecked {
    const NAME: &'static str = "InventoryChecked";
}
