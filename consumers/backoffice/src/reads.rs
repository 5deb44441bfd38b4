//! Reads: orders, charges (with duplicates flagged), stock and alternatives. Every read of a
//! customer's resource checks that the authenticated customer owns it.

use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{Connection, OptionalExtension, Row};

use crate::error::{BackOfficeError, Fail};
use crate::store::{BackOffice, parse_date, parse_timestamp};
use crate::views::{
    ChargeView, ChargesView, OrderItemView, OrderView, ProductView, RefundView, ServiceLevel, ShipmentView, StockView,
};

/// Two charges this close together, same amount and same card, look like one payment taken twice.
const DUPLICATE_WINDOW: TimeDelta = TimeDelta::minutes(10);

impl BackOffice {
    /// The order `order_id` of `customer`: items with what shipped, what is missing and why.
    pub fn get_order(&self, customer: &str, order_id: &str) -> Result<OrderView, BackOfficeError> {
        self.read(|c| {
            let order = owned_order(c, customer, order_id)?;
            let shipments = shipments_of(c, order_id)?;
            let mut stmt = c.prepare_cached(
                "SELECT i.sku, p.name, i.quantity, i.unit_price_minor, i.note
                 FROM order_items i JOIN products p ON p.sku = i.sku WHERE i.order_id = ?1 ORDER BY i.line",
            )?;
            let rows = stmt.query_map([order_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get(1)?, r.get::<_, u32>(2)?, r.get::<_, i64>(3)?, r.get(4)?))
            })?;
            let mut items = Vec::new();
            for row in rows {
                let (sku, name, quantity, unit_price_minor, note): (String, String, u32, i64, Option<String>) = row?;
                let of_sku = || shipments.iter().filter(|s| s.sku == sku);
                let quantity_shipped: u32 = of_sku().map(|s| s.quantity).sum();
                let quantity_delivered: u32 = of_sku().filter(|s| s.status == "delivered").map(|s| s.quantity).sum();
                let missing = quantity.saturating_sub(quantity_shipped);
                items.push(OrderItemView {
                    sku,
                    name,
                    quantity,
                    unit_price_minor,
                    currency: order.currency.clone(),
                    quantity_shipped,
                    quantity_delivered,
                    missing,
                    // Once the missing units ship, the old reason no longer applies.
                    note: note.filter(|_| missing > 0),
                });
            }
            let total_minor = items.iter().map(|i| i64::from(i.quantity) * i.unit_price_minor).sum();
            Ok(OrderView {
                order_id: order_id.to_owned(),
                customer_id: order.customer_id,
                placed_at: order.placed_at,
                status: order_status(&items).to_owned(),
                items,
                shipments,
                total_minor,
                currency: order.currency,
            })
        })
    }

    /// The charges of `customer`'s order `order_id`, oldest first, with duplicates flagged.
    pub fn list_charges(&self, customer: &str, order_id: &str) -> Result<ChargesView, BackOfficeError> {
        self.read(|c| {
            let order = owned_order(c, customer, order_id)?;
            let order_total_minor = order_total(c, order_id)?;
            let charges = charges_of(c, order_id, order_total_minor)?;
            Ok(ChargesView {
                order_id: order_id.to_owned(),
                order_total_minor,
                currency: order.currency,
                total_charged_minor: charges.iter().map(|c| c.amount_minor).sum(),
                total_refunded_minor: charges.iter().map(|c| c.refunded_minor).sum(),
                charges,
            })
        })
    }

    /// Stock of `sku`: on hand, reserved, available, and when it comes back if it is out.
    pub fn check_stock(&self, sku: &str) -> Result<StockView, BackOfficeError> {
        self.read(|c| {
            let stock = stock_of(c, sku)?;
            Ok(StockView {
                sku: sku.to_owned(),
                name: stock.name,
                on_hand: stock.on_hand,
                reserved: stock.reserved,
                available: stock.on_hand - stock.reserved,
                restock_date: stock.restock_date.as_deref().map(parse_date).transpose()?,
            })
        })
    }

    /// Other products of `sku`'s category: in stock first, then by closeness of price, then by sku.
    pub fn find_alternatives(&self, sku: &str) -> Result<Vec<ProductView>, BackOfficeError> {
        self.read(|c| {
            let (category, price): (String, i64) = c
                .prepare_cached("SELECT category, price_minor FROM products WHERE sku = ?1")?.query_row([sku], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?
                .ok_or_else(|| not_found("product", sku))?;
            let mut stmt = c.prepare_cached(
                "SELECT p.sku, p.name, p.category, p.price_minor, p.currency, p.on_hand -
                        (SELECT coalesce(sum(quantity), 0) FROM reservations r WHERE r.sku = p.sku AND r.status = 'active')
                 FROM products p WHERE p.category = ?1 AND p.sku <> ?2",
            )?;
            let mut products = stmt
                .query_map([&category, sku], |r| {
                    Ok(ProductView {
                        sku: r.get(0)?,
                        name: r.get(1)?,
                        category: r.get(2)?,
                        price_minor: r.get(3)?,
                        currency: r.get(4)?,
                        available: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            products.sort_by(|a, b| {
                (a.available <= 0, (a.price_minor - price).abs(), &a.sku).cmp(&(
                    b.available <= 0,
                    (b.price_minor - price).abs(),
                    &b.sku,
                ))
            });
            Ok(products)
        })
    }

    /// Every refund of `order_id`, oldest first, whoever owns it (for tests and the demo).
    pub fn refunds(&self, order_id: &str) -> Result<Vec<RefundView>, BackOfficeError> {
        self.read(|c| {
            order_row(c, order_id)?;
            let mut stmt = c.prepare_cached(&format!("{REFUND_SELECT} WHERE c.order_id = ?1 ORDER BY r.rowid"))?;
            Ok(stmt.query_map([order_id], refund_view)?.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Every shipment of `order_id`, oldest first, whoever owns it (for tests and the demo).
    pub fn shipments(&self, order_id: &str) -> Result<Vec<ShipmentView>, BackOfficeError> {
        self.read(|c| {
            order_row(c, order_id)?;
            shipments_of(c, order_id)
        })
    }
}

/// An order's header.
pub(crate) struct OrderRow {
    pub customer_id: String,
    pub placed_at: DateTime<Utc>,
    pub currency: String,
}

pub(crate) fn not_found(kind: &'static str, id: &str) -> Fail {
    Fail::Api(BackOfficeError::NotFound { kind, id: id.to_owned() })
}

pub(crate) fn order_row(c: &Connection, order_id: &str) -> Result<OrderRow, Fail> {
    c.prepare_cached("SELECT customer_id, placed_at, currency FROM orders WHERE order_id = ?1")?
        .query_row([order_id], |r| {
            Ok(OrderRow {
                customer_id: r.get(0)?,
                placed_at: parse_timestamp(&r.get::<_, String>(1)?)?,
                currency: r.get(2)?,
            })
        })
        .optional()?
        .ok_or_else(|| not_found("order", order_id))
}

/// The order, if it exists and `customer` owns it.
pub(crate) fn owned_order(c: &Connection, customer: &str, order_id: &str) -> Result<OrderRow, Fail> {
    let order = order_row(c, order_id)?;
    if order.customer_id != customer {
        return Err(Fail::Api(BackOfficeError::NotOwned {
            kind: "order",
            id: order_id.to_owned(),
            customer: customer.to_owned(),
        }));
    }
    Ok(order)
}

/// The charges of `order_id`, oldest first, with duplicates flagged.
pub(crate) fn charges_of(c: &Connection, order_id: &str, order_total_minor: i64) -> Result<Vec<ChargeView>, Fail> {
    let mut stmt = c.prepare_cached(
        "SELECT c.charge_id, c.amount_minor, c.currency, c.captured_at, c.payment_method,
                (SELECT coalesce(sum(r.amount_minor), 0) FROM refunds r WHERE r.charge_id = c.charge_id)
         FROM charges c WHERE c.order_id = ?1 ORDER BY c.captured_at, c.charge_id",
    )?;
    let mut charges = stmt
        .query_map([order_id], |r| {
            Ok(ChargeView {
                charge_id: r.get(0)?,
                amount_minor: r.get(1)?,
                currency: r.get(2)?,
                captured_at: parse_timestamp(&r.get::<_, String>(3)?)?,
                payment_method: r.get(4)?,
                refunded_minor: r.get(5)?,
                duplicate_of: None,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    mark_duplicates(&mut charges, order_total_minor);
    Ok(charges)
}

pub(crate) fn order_total(c: &Connection, order_id: &str) -> Result<i64, Fail> {
    Ok(c.prepare_cached("SELECT coalesce(sum(quantity * unit_price_minor), 0) FROM order_items WHERE order_id = ?1")?
        .query_row([order_id], |r| r.get(0))?)
}

/// A product's stock row; `reserved` counts active reservations.
pub(crate) struct StockRow {
    pub name: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub restock_date: Option<String>,
}

pub(crate) fn stock_of(c: &Connection, sku: &str) -> Result<StockRow, Fail> {
    c.prepare_cached(
        "SELECT name, on_hand, restock_date,
                (SELECT coalesce(sum(quantity), 0) FROM reservations WHERE sku = ?1 AND status = 'active')
         FROM products WHERE sku = ?1",
    )?
    .query_row([sku], |r| {
        Ok(StockRow { name: r.get(0)?, on_hand: r.get(1)?, restock_date: r.get(2)?, reserved: r.get(3)? })
    })
    .optional()?
    .ok_or_else(|| not_found("product", sku))
}

pub(crate) const SHIPMENT_SELECT: &str = "SELECT shipment_id, order_id, sku, quantity, carrier, service_level, status,
        estimated_delivery, created_at FROM shipments";

pub(crate) fn shipment_view(r: &Row<'_>) -> rusqlite::Result<ShipmentView> {
    let level: String = r.get(5)?;
    Ok(ShipmentView {
        shipment_id: r.get(0)?,
        order_id: r.get(1)?,
        sku: r.get(2)?,
        quantity: r.get(3)?,
        carrier: r.get(4)?,
        service_level: ServiceLevel::parse(&level)
            .ok_or_else(|| rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, level.into()))?,
        status: r.get(6)?,
        estimated_delivery: parse_date(&r.get::<_, String>(7)?)?,
        created_at: parse_timestamp(&r.get::<_, String>(8)?)?,
    })
}

fn shipments_of(c: &Connection, order_id: &str) -> Result<Vec<ShipmentView>, Fail> {
    let mut stmt = c.prepare_cached(&format!("{SHIPMENT_SELECT} WHERE order_id = ?1 ORDER BY rowid"))?;
    Ok(stmt.query_map([order_id], shipment_view)?.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(crate) const REFUND_SELECT: &str = "SELECT r.refund_id, r.charge_id, c.order_id, r.amount_minor, r.currency,
        r.reason, r.created_at FROM refunds r JOIN charges c ON c.charge_id = r.charge_id";

pub(crate) fn refund_view(r: &Row<'_>) -> rusqlite::Result<RefundView> {
    Ok(RefundView {
        refund_id: r.get(0)?,
        charge_id: r.get(1)?,
        order_id: r.get(2)?,
        amount_minor: r.get(3)?,
        currency: r.get(4)?,
        reason: r.get(5)?,
        created_at: parse_timestamp(&r.get::<_, String>(6)?)?,
    })
}

/// The order's state from its items: what the customer would read on a tracking page.
fn order_status(items: &[OrderItemView]) -> &'static str {
    let all = |f: fn(&OrderItemView) -> bool| items.iter().all(f);
    let any = |f: fn(&OrderItemView) -> bool| items.iter().any(f);
    if all(|i| i.quantity_delivered >= i.quantity) {
        "delivered"
    } else if any(|i| i.quantity_delivered > 0) {
        "partially_delivered"
    } else if all(|i| i.quantity_shipped >= i.quantity) {
        "shipped"
    } else if any(|i| i.quantity_shipped > 0) {
        "partially_shipped"
    } else {
        "placed"
    }
}

/// Flags each later charge that repeats an earlier, not fully refunded, original charge (same
/// amount, currency and payment method, within ten minutes), when the order was charged more than
/// its total. `charges` must be oldest first. Refunding the duplicate keeps its flag: the gross
/// total charged still exceeds the order total.
fn mark_duplicates(charges: &mut [ChargeView], order_total_minor: i64) {
    let charged: i64 = charges.iter().map(|c| c.amount_minor).sum();
    if charged <= order_total_minor {
        return;
    }
    for later in 1..charges.len() {
        let (earlier, rest) = charges.split_at_mut(later);
        let charge = &mut rest[0];
        charge.duplicate_of = earlier
            .iter()
            .find(|e| {
                e.duplicate_of.is_none()
                    && e.refunded_minor < e.amount_minor
                    && e.amount_minor == charge.amount_minor
                    && e.currency == charge.currency
                    && e.payment_method == charge.payment_method
                    && charge.captured_at - e.captured_at <= DUPLICATE_WINDOW
            })
            .map(|e| e.charge_id.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(id: &str, amount_minor: i64, minute: i64, method: &str, refunded_minor: i64) -> ChargeView {
        ChargeView {
            charge_id: id.to_owned(),
            amount_minor,
            currency: "EUR".to_owned(),
            captured_at: DateTime::<Utc>::UNIX_EPOCH + TimeDelta::minutes(minute),
            payment_method: method.to_owned(),
            refunded_minor,
            duplicate_of: None,
        }
    }

    fn flags(mut charges: Vec<ChargeView>, total: i64) -> Vec<Option<String>> {
        mark_duplicates(&mut charges, total);
        charges.into_iter().map(|c| c.duplicate_of).collect()
    }

    #[test]
    fn second_identical_charge_within_ten_minutes_is_a_duplicate() {
        let got = flags(vec![charge("a", 100, 0, "visa", 0), charge("b", 100, 2, "visa", 0)], 100);
        assert_eq!(got, [None, Some("a".to_owned())]);
    }

    #[test]
    fn refunded_duplicate_keeps_its_flag() {
        let got = flags(vec![charge("a", 100, 0, "visa", 0), charge("b", 100, 2, "visa", 100)], 100);
        assert_eq!(got, [None, Some("a".to_owned())]);
    }

    #[test]
    fn no_duplicate_when_charges_do_not_exceed_the_order_total() {
        // An order paid in two equal instalments is not a double charge.
        let got = flags(vec![charge("a", 100, 0, "visa", 0), charge("b", 100, 2, "visa", 0)], 200);
        assert_eq!(got, [None, None]);
    }

    #[test]
    fn other_card_later_window_or_refunded_original_is_not_a_duplicate() {
        let other_card = flags(vec![charge("a", 100, 0, "visa", 0), charge("b", 100, 2, "amex", 0)], 100);
        assert_eq!(other_card, [None, None]);
        let too_late = flags(vec![charge("a", 100, 0, "visa", 0), charge("b", 100, 11, "visa", 0)], 100);
        assert_eq!(too_late, [None, None]);
        let original_refunded = flags(vec![charge("a", 100, 0, "visa", 100), charge("b", 100, 2, "visa", 0)], 100);
        assert_eq!(original_refunded, [None, None]);
    }

    #[test]
    fn a_third_identical_charge_names_the_original() {
        let got = flags(
            vec![charge("a", 100, 0, "visa", 0), charge("b", 100, 1, "visa", 0), charge("c", 100, 2, "visa", 0)],
            100,
        );
        assert_eq!(got, [None, Some("a".to_owned()), Some("a".to_owned())]);
    }
}
