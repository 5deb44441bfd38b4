//! What the back office answers: plain, self-describing structs that agents receive as JSON tool
//! results. Money is always integer minor units beside its currency.

use chrono::{DateTime, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How fast a shipment travels; decides its estimated delivery date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServiceLevel {
    /// Four days.
    Standard,
    /// Two days.
    Express,
    /// The next day.
    NextDay,
    /// The same day.
    SameDay,
}

impl ServiceLevel {
    /// The wire (and database) name, e.g. `next_day`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceLevel::Standard => "standard",
            ServiceLevel::Express => "express",
            ServiceLevel::NextDay => "next_day",
            ServiceLevel::SameDay => "same_day",
        }
    }

    /// Days between the day a shipment is created and its estimated delivery.
    pub fn transit_days(self) -> u64 {
        match self {
            ServiceLevel::SameDay => 0,
            ServiceLevel::NextDay => 1,
            ServiceLevel::Express => 2,
            ServiceLevel::Standard => 4,
        }
    }

    /// The level named `name` (`standard`, `express`, `next_day`, `same_day`).
    pub fn parse(name: &str) -> Option<Self> {
        [ServiceLevel::Standard, ServiceLevel::Express, ServiceLevel::NextDay, ServiceLevel::SameDay]
            .into_iter()
            .find(|l| l.as_str() == name)
    }
}

/// An order as the customer sees it: what was bought, what shipped, what is missing and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderView {
    pub order_id: String,
    pub customer_id: String,
    /// When the order was placed (RFC 3339, UTC).
    pub placed_at: DateTime<Utc>,
    /// `placed`, `partially_shipped`, `shipped`, `partially_delivered` or `delivered`, from the shipments.
    pub status: String,
    pub items: Vec<OrderItemView>,
    pub shipments: Vec<ShipmentView>,
    /// Sum of quantity × unit price over the items.
    pub total_minor: i64,
    pub currency: String,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderItemView {
    pub sku: String,
    pub name: String,
    pub quantity: u32,
    pub unit_price_minor: i64,
    pub currency: String,
    /// Units in any shipment of this order (delivered, in transit or label created).
    pub quantity_shipped: u32,
    /// Units in delivered shipments.
    pub quantity_delivered: u32,
    /// Units ordered but in no shipment yet (quantity − quantity_shipped).
    pub missing: u32,
    /// Why the missing units did not ship; absent when nothing is missing.
    pub note: Option<String>,
}

/// The payments taken for one order, with duplicates flagged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChargesView {
    pub order_id: String,
    pub order_total_minor: i64,
    pub currency: String,
    /// Oldest first.
    pub charges: Vec<ChargeView>,
    pub total_charged_minor: i64,
    pub total_refunded_minor: i64,
}

/// One captured payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChargeView {
    pub charge_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub captured_at: DateTime<Utc>,
    /// e.g. `visa •••• 4242`.
    pub payment_method: String,
    /// Sum of the refunds of this charge so far.
    pub refunded_minor: i64,
    /// The earlier charge this one duplicates: same amount and payment method within 10 minutes,
    /// while the order was charged more than its total. Kept after the duplicate is refunded.
    pub duplicate_of: Option<String>,
}

/// Stock of one product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StockView {
    pub sku: String,
    pub name: String,
    pub on_hand: i64,
    /// Units held by active reservations.
    pub reserved: i64,
    /// on_hand − reserved: what a new shipment or reservation can take.
    pub available: i64,
    /// When an out-of-stock product is expected back.
    pub restock_date: Option<NaiveDate>,
}

/// A product offered as an alternative.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProductView {
    pub sku: String,
    pub name: String,
    pub category: String,
    pub price_minor: i64,
    pub currency: String,
    pub available: i64,
}

/// A parcel of one sku.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShipmentView {
    pub shipment_id: String,
    pub order_id: String,
    pub sku: String,
    pub quantity: u32,
    pub carrier: String,
    pub service_level: ServiceLevel,
    /// `label_created`, `in_transit` or `delivered`.
    pub status: String,
    pub estimated_delivery: NaiveDate,
    pub created_at: DateTime<Utc>,
}

/// Money given back on a charge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RefundView {
    pub refund_id: String,
    pub charge_id: String,
    pub order_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

/// Units held for an order until they ship.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReservationView {
    pub reservation_id: String,
    pub order_id: String,
    pub sku: String,
    pub quantity: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_levels_round_trip_by_their_wire_names() {
        for level in [ServiceLevel::Standard, ServiceLevel::Express, ServiceLevel::NextDay, ServiceLevel::SameDay] {
            let json = serde_json::to_string(&level).unwrap();
            assert_eq!(json, format!("\"{}\"", level.as_str()));
            assert_eq!(ServiceLevel::parse(level.as_str()), Some(level));
        }
        assert_eq!(ServiceLevel::parse("overnight"), None);
    }
}
