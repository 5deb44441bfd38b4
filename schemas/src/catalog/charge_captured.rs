//! `ChargeCaptured`: the back office has taken a payment for an order.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::CatalogEvent;
use super::common::{CUSTOMER_ID_PATTERN, ORDER_ID_PATTERN};
use super::payment_issue_resolved::Money;

/// A payment was captured on an order. Published by the back office (`retail.backoffice`)
/// through its transactional outbox, with subject `orders/<order_id>`. The back office is a
/// service, so the envelope's auth context names it (`service_account`); the customer charged is
/// `customer_id`, for consumers to scope by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChargeCaptured {
    /// The order paid for.
    #[schemars(regex(pattern = ORDER_ID_PATTERN))]
    pub order_id: String,
    /// The customer charged.
    #[schemars(regex(pattern = CUSTOMER_ID_PATTERN))]
    pub customer_id: String,
    /// The charge, as the back office names it, e.g. `ch-1001-a`.
    #[schemars(length(min = 1))]
    pub charge_id: String,
    /// How much was taken.
    pub amount: Money,
    /// When the payment was captured (RFC 3339, UTC).
    pub captured_at: DateTime<Utc>,
}

impl CatalogEvent for ChargeCaptured {
    const NAME: &'static str = "ChargeCaptured";
}
