//! `PaymentIssueResolved`: the payments agent has looked into the charges of an order.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::CatalogEvent;
use super::common::{CURRENCY_PATTERN, ORDER_ID_PATTERN};

/// What the payments agent found and did about the charges of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentIssueResolved {
    /// The order whose charges were examined.
    #[schemars(regex(pattern = ORDER_ID_PATTERN))]
    pub order_id: String,
    /// The result.
    pub outcome: PaymentOutcome,
    /// The refunds made; empty unless the outcome is `refunded`.
    pub refunds: Vec<Refund>,
    /// What was done, for the customer's answer.
    #[schemars(length(min = 1))]
    pub summary: String,
}

/// The result of a payment investigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentOutcome {
    /// One or more duplicate charges were refunded.
    Refunded,
    /// Every charge matched a distinct payment; nothing to refund.
    NoDuplicateFound,
    /// A refund was due but refused, e.g. by policy or by the payment provider.
    Refused,
}

/// One refund of one charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Refund {
    /// The charge refunded.
    #[schemars(length(min = 1))]
    pub charge_id: String,
    /// The refund, as the payment system names it.
    #[schemars(length(min = 1))]
    pub refund_id: String,
    /// How much was refunded.
    pub amount: Money,
}

/// An amount of money: integer minor units (cents) of an ISO 4217 currency, never a float.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Money {
    /// The amount in minor units, e.g. 4999 for 49.99.
    #[schemars(range(min = 0))]
    pub amount_minor: i64,
    /// The ISO 4217 currency code, e.g. `EUR`.
    #[schemars(regex(pattern = CURRENCY_PATTERN))]
    pub currency: String,
}

impl CatalogEvent for PaymentIssueResolved {
    const NAME: &'static str = "PaymentIssueResolved";
}
