//! `OrderSupportPlaced`: a customer asks for help with an order.

use chrono::NaiveDate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::CatalogEvent;
use super::common::ORDER_ID_PATTERN;

/// A customer's request for help with one of their orders. The customer is not in the data:
/// who asks travels in the envelope (`authtype`, `authid`), where a producer cannot forge it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderSupportPlaced {
    /// The order the request is about.
    #[schemars(regex(pattern = ORDER_ID_PATTERN))]
    pub order_id: String,
    /// The customer's message, in their own words.
    #[schemars(length(min = 1, max = 4000))]
    pub message: String,
    /// The date by which the customer needs the order, if they said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needed_by: Option<NaiveDate>,
    /// Where the request came from.
    pub channel: Channel,
}

/// Where a customer's request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The web page.
    Web,
    /// The mobile app.
    App,
    /// An email to support.
    Email,
    /// The chat widget.
    Chat,
    /// A phone call, typed in by an agent.
    Phone,
}

impl CatalogEvent for OrderSupportPlaced {
    const NAME: &'static str = "OrderSupportPlaced";
}
