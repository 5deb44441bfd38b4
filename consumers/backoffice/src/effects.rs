//! Effects: refunds, shipments and stock reservations. Each is one immediate transaction keyed by
//! an idempotency key (UNIQUE in its table): the same key again returns the first result.
//! A shipment also writes its event into the outbox, in the same transaction.

use chrono::{NaiveDate, TimeDelta, Utc};
use rusqlite::{OptionalExtension, Transaction, params};

use crate::error::{BackOfficeError, Fail};
use crate::outbox;
use crate::reads::{REFUND_SELECT, SHIPMENT_SELECT, not_found, owned_order, refund_view, shipment_view, stock_of};
use crate::store::{BackOffice, next_id, timestamp};
use crate::views::{RefundView, ReservationView, ServiceLevel, ShipmentView};

/// Every shipment the back office creates goes with this carrier.
const CARRIER: &str = "DHL";

impl BackOffice {
    /// Refunds `amount_minor` (or, with `None`, all that remains) of `customer`'s charge
    /// `charge_id`. Refuses a fully refunded charge or an amount above what remains (Conflict).
    pub fn refund_charge(
        &self,
        customer: &str,
        charge_id: &str,
        amount_minor: Option<i64>,
        reason: &str,
        idempotency_key: &str,
    ) -> Result<RefundView, BackOfficeError> {
        check_key(idempotency_key)?;
        if let Some(amount) = amount_minor.filter(|a| *a <= 0) {
            return Err(invalid("amount_minor", format!("must be positive, got {amount}")));
        }
        if reason.trim().is_empty() {
            return Err(invalid("reason", "must say why the money is given back".to_owned()));
        }
        self.write(|tx| {
            let (order_id, charged, currency, owner, refunded): (String, i64, String, String, i64) = tx
                .prepare_cached("SELECT c.order_id, c.amount_minor, c.currency, o.customer_id,
                            (SELECT coalesce(sum(r.amount_minor), 0) FROM refunds r WHERE r.charge_id = c.charge_id)
                     FROM charges c JOIN orders o ON o.order_id = c.order_id WHERE c.charge_id = ?1")?.query_row([charge_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()?
                .ok_or_else(|| not_found("charge", charge_id))?;
            if owner != customer {
                return Err(not_owned("charge", charge_id, customer));
            }
            let replay = tx
                .prepare_cached(&format!("{REFUND_SELECT} WHERE r.idempotency_key = ?1"))?.query_row([idempotency_key], refund_view)
                .optional()?;
            if let Some(first) = replay {
                if first.charge_id != charge_id || amount_minor.is_some_and(|a| a != first.amount_minor) {
                    return Err(key_reused(idempotency_key, "refund"));
                }
                return Ok(first);
            }
            let remaining = charged - refunded;
            if remaining <= 0 {
                return Err(conflict("charge", charge_id, "is already fully refunded".to_owned()));
            }
            let amount = amount_minor.unwrap_or(remaining);
            if amount > remaining {
                return Err(conflict(
                    "charge",
                    charge_id,
                    format!("has only {remaining} {currency} minor units left to refund, asked for {amount}"),
                ));
            }
            let refund_id = next_id(tx, "rf", "refunds", "refund_id")?;
            let created_at = now();
            tx.prepare_cached("INSERT INTO refunds (refund_id, charge_id, amount_minor, currency, reason, created_at, idempotency_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?.execute(params![refund_id, charge_id, amount, currency, reason, timestamp(created_at), idempotency_key],
            )?;
            Ok(RefundView {
                refund_id,
                charge_id: charge_id.to_owned(),
                order_id,
                amount_minor: amount,
                currency,
                reason: reason.to_owned(),
                created_at,
            })
        })
    }

    /// Ships `quantity` units of `sku`, an item of `customer`'s order `order_id` not shipped yet,
    /// taking them from stock (this order's reservations first). The estimate is `today` plus the
    /// service level's transit days. Writes `OrderShipped` into the outbox in the same
    /// transaction; a replay of the same key writes nothing.
    #[allow(clippy::too_many_arguments)] // the tool's arguments, each named by the agent's call
    pub fn create_shipment(
        &self,
        customer: &str,
        order_id: &str,
        sku: &str,
        quantity: u32,
        service_level: ServiceLevel,
        today: NaiveDate,
        idempotency_key: &str,
    ) -> Result<ShipmentView, BackOfficeError> {
        check_key(idempotency_key)?;
        check_quantity(quantity)?;
        self.write(|tx| {
            let order = owned_order(tx, customer, order_id)?;
            let replay = tx
                .prepare_cached(&format!("{SHIPMENT_SELECT} WHERE idempotency_key = ?1"))?
                .query_row([idempotency_key], shipment_view)
                .optional()?;
            if let Some(first) = replay {
                if first.order_id != order_id
                    || first.sku != sku
                    || first.quantity != quantity
                    || first.service_level != service_level
                {
                    return Err(key_reused(idempotency_key, "shipment"));
                }
                return Ok(first);
            }
            let left = unshipped(tx, order_id, sku)?;
            if i64::from(quantity) > left {
                return Err(conflict(
                    "order",
                    order_id,
                    format!("has {left} unit(s) of `{sku}` left to ship, asked for {quantity}"),
                ));
            }
            let stock = stock_of(tx, sku)?;
            let held_for_order = reserved_for(tx, order_id, sku)?;
            let available = stock.on_hand - stock.reserved + held_for_order;
            if i64::from(quantity) > available {
                let restock = stock.restock_date.map(|d| format!(" (restock expected {d})")).unwrap_or_default();
                return Err(conflict(
                    "product",
                    sku,
                    format!("has {available} available, asked for {quantity}{restock}"),
                ));
            }
            tx.prepare_cached("UPDATE products SET on_hand = on_hand - ?1 WHERE sku = ?2")?
                .execute(params![quantity, sku])?;
            tx.prepare_cached(
                "UPDATE reservations SET status = 'fulfilled' WHERE order_id = ?1 AND sku = ?2 AND status = 'active'",
            )?
            .execute([order_id, sku])?;
            let shipment_id = next_id(tx, "sh", "shipments", "shipment_id")?;
            let days = i64::try_from(service_level.transit_days()).unwrap_or(0);
            let estimated_delivery = today + TimeDelta::days(days);
            let created_at = now();
            tx.prepare_cached(
                "INSERT INTO shipments (shipment_id, order_id, sku, quantity, carrier, service_level, status,
                                        estimated_delivery, created_at, idempotency_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'label_created', ?7, ?8, ?9)",
            )?
            .execute(params![
                shipment_id,
                order_id,
                sku,
                quantity,
                CARRIER,
                service_level.as_str(),
                estimated_delivery.to_string(),
                timestamp(created_at),
                idempotency_key
            ])?;
            let shipment = ShipmentView {
                shipment_id,
                order_id: order_id.to_owned(),
                sku: sku.to_owned(),
                quantity,
                carrier: CARRIER.to_owned(),
                service_level,
                status: "label_created".to_owned(),
                estimated_delivery,
                created_at,
            };
            // Same transaction: the shipment and its event are committed together or not at all.
            outbox::order_shipped(tx, &order.customer_id, &shipment)?;
            Ok(shipment)
        })
    }

    /// Holds `quantity` available units of `sku` for `customer`'s order `order_id` until they ship.
    pub fn reserve_stock(
        &self,
        customer: &str,
        order_id: &str,
        sku: &str,
        quantity: u32,
        idempotency_key: &str,
    ) -> Result<ReservationView, BackOfficeError> {
        check_key(idempotency_key)?;
        check_quantity(quantity)?;
        self.write(|tx| {
            owned_order(tx, customer, order_id)?;
            let replay = tx
                .prepare_cached("SELECT reservation_id, order_id, sku, quantity FROM reservations WHERE idempotency_key = ?1")?.query_row([idempotency_key],
                    |r| {
                        Ok(ReservationView {
                            reservation_id: r.get(0)?,
                            order_id: r.get(1)?,
                            sku: r.get(2)?,
                            quantity: r.get(3)?,
                        })
                    },
                )
                .optional()?;
            if let Some(first) = replay {
                if first.order_id != order_id || first.sku != sku || first.quantity != quantity {
                    return Err(key_reused(idempotency_key, "reservation"));
                }
                return Ok(first);
            }
            let held_for_order = reserved_for(tx, order_id, sku)?;
            let left = unshipped(tx, order_id, sku)? - held_for_order;
            if i64::from(quantity) > left {
                return Err(conflict(
                    "order",
                    order_id,
                    format!("has {left} unit(s) of `{sku}` left to reserve, asked for {quantity}"),
                ));
            }
            let stock = stock_of(tx, sku)?;
            let available = stock.on_hand - stock.reserved;
            if i64::from(quantity) > available {
                let restock = stock.restock_date.map(|d| format!(" (restock expected {d})")).unwrap_or_default();
                return Err(conflict(
                    "product",
                    sku,
                    format!("has {available} available, asked for {quantity}{restock}"),
                ));
            }
            let reservation_id = next_id(tx, "rs", "reservations", "reservation_id")?;
            tx.prepare_cached("INSERT INTO reservations (reservation_id, order_id, sku, quantity, status, created_at, idempotency_key)
                 VALUES (?1, ?2, ?3, ?4, 'active', ?5, ?6)")?.execute(params![reservation_id, order_id, sku, quantity, timestamp(now()), idempotency_key],
            )?;
            Ok(ReservationView { reservation_id, order_id: order_id.to_owned(), sku: sku.to_owned(), quantity })
        })
    }
}

/// Units of `sku` ordered in `order_id` and in no shipment yet; `sku` must be an item of the order.
fn unshipped(tx: &Transaction<'_>, order_id: &str, sku: &str) -> Result<i64, Fail> {
    let ordered: i64 = tx
        .prepare_cached("SELECT quantity FROM order_items WHERE order_id = ?1 AND sku = ?2")?
        .query_row([order_id, sku], |r| r.get(0))
        .optional()?
        .ok_or_else(|| Fail::Api(invalid("sku", format!("`{sku}` is not an item of order `{order_id}`"))))?;
    let shipped: i64 = tx
        .prepare_cached("SELECT coalesce(sum(quantity), 0) FROM shipments WHERE order_id = ?1 AND sku = ?2")?
        .query_row([order_id, sku], |r| r.get(0))?;
    Ok(ordered - shipped)
}

fn reserved_for(tx: &Transaction<'_>, order_id: &str, sku: &str) -> Result<i64, Fail> {
    Ok(tx.prepare_cached("SELECT coalesce(sum(quantity), 0) FROM reservations WHERE order_id = ?1 AND sku = ?2 AND status = 'active'")?.query_row([order_id, sku],
        |r| r.get(0),
    )?)
}

/// Now, to the second: what `created_at` records.
pub(crate) fn now() -> chrono::DateTime<Utc> {
    let t = Utc::now();
    t - TimeDelta::nanoseconds(i64::from(chrono::Timelike::nanosecond(&t)))
}

pub(crate) fn check_key(key: &str) -> Result<(), BackOfficeError> {
    if key.trim().is_empty() {
        return Err(invalid("idempotency_key", "must not be empty".to_owned()));
    }
    Ok(())
}

fn check_quantity(quantity: u32) -> Result<(), BackOfficeError> {
    if quantity == 0 {
        return Err(invalid("quantity", "must be at least 1".to_owned()));
    }
    Ok(())
}

pub(crate) fn invalid(field: &'static str, reason: String) -> BackOfficeError {
    BackOfficeError::Invalid { field, reason }
}

pub(crate) fn key_reused(key: &str, what: &str) -> Fail {
    // Says no more than that: the first request may concern another customer's resource.
    Fail::Api(invalid("idempotency_key", format!("`{key}` was already used for a different {what} request")))
}

fn conflict(kind: &'static str, id: &str, reason: String) -> Fail {
    Fail::Api(BackOfficeError::Conflict { kind, id: id.to_owned(), reason })
}

fn not_owned(kind: &'static str, id: &str, customer: &str) -> Fail {
    Fail::Api(BackOfficeError::NotOwned { kind, id: id.to_owned(), customer: customer.to_owned() })
}
