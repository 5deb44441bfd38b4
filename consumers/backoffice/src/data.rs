//! The data set a back office is loaded from: the reviewed seed in `data/retail.json` (one
//! customer per support case) and a synthetic generator for load tests.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::error::BackOfficeError;
use crate::views::ServiceLevel;

/// The seed, checked into the repository and embedded so that `DataSet::seeded()` works anywhere.
const RETAIL_JSON: &str = include_str!("../data/retail.json");

/// Customers, products and orders (with their items, charges, refunds and shipments).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSet {
    pub customers: Vec<CustomerRecord>,
    pub products: Vec<ProductRecord>,
    pub orders: Vec<OrderRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerRecord {
    pub customer_id: String,
    pub name: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductRecord {
    pub sku: String,
    pub name: String,
    pub category: String,
    pub price_minor: i64,
    pub currency: String,
    /// Units in the warehouse now (after the seeded shipments left).
    pub on_hand: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restock_date: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRecord {
    pub order_id: String,
    pub customer_id: String,
    pub placed_at: DateTime<Utc>,
    /// Currency of the items, charges and refunds of this order.
    pub currency: String,
    pub items: Vec<ItemRecord>,
    #[serde(default)]
    pub charges: Vec<ChargeRecord>,
    #[serde(default)]
    pub shipments: Vec<ShipmentRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemRecord {
    pub sku: String,
    pub quantity: u32,
    pub unit_price_minor: i64,
    /// Why the item did not ship, shown while units are missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChargeRecord {
    pub charge_id: String,
    pub amount_minor: i64,
    pub captured_at: DateTime<Utc>,
    pub payment_method: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refunds: Vec<RefundRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundRecord {
    pub refund_id: String,
    pub amount_minor: i64,
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShipmentRecord {
    pub shipment_id: String,
    pub sku: String,
    pub quantity: u32,
    pub carrier: String,
    pub service_level: ServiceLevel,
    pub status: String,
    pub estimated_delivery: NaiveDate,
    pub created_at: DateTime<Utc>,
}

/// The dedicated products of synthetic cases, so that they never drain the seeded stock.
pub const SYNTHETIC_HEADPHONES: &str = "SKU-SYN-HEADPHONES";
pub const SYNTHETIC_SPEAKER: &str = "SKU-SYN-SPEAKER";

impl DataSet {
    /// The seeded support cases (`c-1001` … `c-1005`), parsed from the embedded `data/retail.json`.
    pub fn seeded() -> DataSet {
        // The file is embedded at build time and parsed by a unit test, so this cannot fail at run time.
        Self::from_json(RETAIL_JSON).unwrap_or_default()
    }

    /// A data set from its JSON text.
    pub fn from_json(text: &str) -> Result<DataSet, BackOfficeError> {
        serde_json::from_str(text).map_err(|e| BackOfficeError::Invalid { field: "data_set", reason: e.to_string() })
    }

    /// `n` extra customers `c-s000001…` each with one order `o-s000001…` shaped like seeded case 1:
    /// charged twice the full amount two minutes apart, the headphones delivered, the speaker left
    /// behind while in stock. The two products are dedicated and hold `n` units each.
    pub fn synthetic(n: usize) -> DataSet {
        let stock = i64::try_from(n).unwrap_or(i64::MAX).max(1);
        let product = |sku: &str, name: &str, category: &str, price_minor| ProductRecord {
            sku: sku.to_owned(),
            name: name.to_owned(),
            category: category.to_owned(),
            price_minor,
            currency: "EUR".to_owned(),
            on_hand: stock,
            restock_date: None,
        };
        let products = vec![
            product(SYNTHETIC_HEADPHONES, "Wireless headphones (load test)", "synthetic-headphones", 12_900),
            product(SYNTHETIC_SPEAKER, "Portable speaker (load test)", "synthetic-speakers", 7_900),
        ];
        let black_friday = NaiveDate::from_ymd_opt(2026, 11, 27)
            .and_then(|d| d.and_hms_opt(8, 0, 0))
            .map(|t| t.and_utc())
            .unwrap_or_default();
        let mut customers = Vec::with_capacity(n);
        let mut orders = Vec::with_capacity(n);
        for i in 1..=n {
            let customer_id = format!("c-s{i:06}");
            let order_id = format!("o-s{i:06}");
            let placed_at = black_friday + TimeDelta::seconds(i as i64);
            let charge = |suffix: &str, after_seconds| ChargeRecord {
                charge_id: format!("ch-s{i:06}-{suffix}"),
                amount_minor: 20_800,
                captured_at: placed_at + TimeDelta::seconds(after_seconds),
                payment_method: "visa •••• 4242".to_owned(),
                refunds: Vec::new(),
            };
            customers.push(CustomerRecord {
                customer_id: customer_id.clone(),
                name: format!("Synthetic Customer {i}"),
                email: format!("customer{i}@example.com"),
            });
            orders.push(OrderRecord {
                order_id: order_id.clone(),
                customer_id,
                placed_at,
                currency: "EUR".to_owned(),
                items: vec![
                    ItemRecord {
                        sku: SYNTHETIC_HEADPHONES.to_owned(),
                        quantity: 1,
                        unit_price_minor: 12_900,
                        note: None,
                    },
                    ItemRecord {
                        sku: SYNTHETIC_SPEAKER.to_owned(),
                        quantity: 1,
                        unit_price_minor: 7_900,
                        note: Some("left behind at the warehouse: split parcel not created".to_owned()),
                    },
                ],
                charges: vec![charge("a", 30), charge("b", 150)],
                shipments: vec![ShipmentRecord {
                    shipment_id: format!("sh-s{i:06}-1"),
                    sku: SYNTHETIC_HEADPHONES.to_owned(),
                    quantity: 1,
                    carrier: "DHL".to_owned(),
                    service_level: ServiceLevel::Standard,
                    status: "delivered".to_owned(),
                    estimated_delivery: placed_at.date_naive() + TimeDelta::days(4),
                    created_at: placed_at + TimeDelta::hours(20),
                }],
            });
        }
        DataSet { customers, products, orders }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_seed_parses_and_round_trips() {
        let parsed = DataSet::from_json(RETAIL_JSON).unwrap();
        assert_eq!(parsed.customers.len(), 5);
        let again: DataSet = serde_json::from_str(&serde_json::to_string(&parsed).unwrap()).unwrap();
        assert_eq!(again, parsed);
        assert_eq!(DataSet::seeded(), parsed);
    }

    #[test]
    fn unknown_fields_in_a_data_set_are_refused() {
        let err = DataSet::from_json(r#"{"customers": [], "products": [], "orders": [], "refunds": []}"#).unwrap_err();
        assert!(matches!(err, BackOfficeError::Invalid { field: "data_set", .. }), "{err}");
    }

    #[test]
    fn synthetic_cases_are_numbered_and_stocked_for_every_case() {
        let data = DataSet::synthetic(3);
        let ids: Vec<_> = data.orders.iter().map(|o| o.order_id.as_str()).collect();
        assert_eq!(ids, ["o-s000001", "o-s000002", "o-s000003"]);
        assert_eq!(data.customers[2].customer_id, "c-s000003");
        assert!(data.products.iter().all(|p| p.on_hand >= 3));
    }
}
