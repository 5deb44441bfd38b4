//! `OrderShipped`: the back office has handed a parcel of an order to the carrier.

use chrono::{DateTime, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::CatalogEvent;
use super::common::{CUSTOMER_ID_PATTERN, ItemLine, ORDER_ID_PATTERN};
use super::fulfilment_issue_resolved::ServiceLevel;

/// A parcel of an order left the warehouse. Published by the back office (`retail.backoffice`)
/// through its transactional outbox, with subject `orders/<order_id>`. The back office is a
/// service, so the envelope's auth context names it (`service_account`); the customer the order
/// belongs to is `customer_id`, for consumers to scope by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderShipped {
    /// The order the parcel belongs to.
    #[schemars(regex(pattern = ORDER_ID_PATTERN))]
    pub order_id: String,
    /// The customer who placed the order.
    #[schemars(regex(pattern = CUSTOMER_ID_PATTERN))]
    pub customer_id: String,
    /// The shipment, as the back office names it, e.g. `sh-4002`.
    #[schemars(length(min = 1))]
    pub shipment_id: String,
    /// What the parcel holds.
    #[schemars(length(min = 1))]
    pub items: Vec<ItemLine>,
    /// The carrier, e.g. `DHL`.
    #[schemars(length(min = 1))]
    pub carrier: String,
    /// How fast, e.g. `next_day`.
    pub service_level: ServiceLevel,
    /// The date the carrier promises.
    pub estimated_delivery: NaiveDate,
    /// When the shipment was created (RFC 3339, UTC).
    pub shipped_at: DateTime<Utc>,
}

impl CatalogEvent for OrderShipped {
    const NAME: &'static str = "OrderShipped";
}
