//! Vocabulary shared by several events of the catalog: ids and their patterns, issue kinds.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An order id of the back office, e.g. `o-1001`.
pub const ORDER_ID_PATTERN: &str = "^o-[0-9A-Za-z]+$";
/// A customer id of the back office, e.g. `c-1001`.
pub const CUSTOMER_ID_PATTERN: &str = "^c-[0-9A-Za-z]+$";
/// An agent name: a lowercase noun, the same as its folder, e.g. `payments`.
pub const AGENT_NAME_PATTERN: &str = "^[a-z][a-z0-9_-]*$";
/// An ISO 4217 currency code, e.g. `EUR`.
pub const CURRENCY_PATTERN: &str = "^[A-Z]{3}$";

/// A kind of problem with an order, as triage names it. Agents subscribe by these names
/// (`{"detail": {"data": {"issues": ["duplicate_charge"]}}}`), so they are part of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IssueKind {
    /// The customer was charged more than once for the order.
    DuplicateCharge,
    /// An item of the order did not arrive.
    MissingItem,
    /// The customer needs the order by a given date.
    DeliveryDeadline,
    /// An item arrived damaged.
    DamagedItem,
    /// An item other than the one ordered arrived.
    WrongItem,
    /// The customer asks for a refund.
    RefundRequest,
    /// Anything triage could not name more precisely.
    Other,
}

/// A quantity of one product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemLine {
    /// The stock keeping unit, e.g. `SKU-HEADPHONES-01`.
    #[schemars(length(min = 1))]
    pub sku: String,
    /// How many units.
    #[schemars(range(min = 1))]
    pub quantity: u32,
}
