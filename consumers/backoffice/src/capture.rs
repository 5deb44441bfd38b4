//! Capturing a charge: a payment taken on an order, recorded with its `ChargeCaptured` event in
//! one transaction, idempotent per key like every effect of the back office.

use rusqlite::{OptionalExtension, params};

use choreo_schemas::catalog::Money;

use crate::effects::{check_key, invalid, key_reused, now};
use crate::error::BackOfficeError;
use crate::outbox;
use crate::reads::{charges_of, not_found, order_total, owned_order};
use crate::store::{BackOffice, next_id, timestamp};
use crate::views::ChargeView;

impl BackOffice {
    /// Captures a payment of `amount_minor` (in the order's currency) by `payment_method` (e.g.
    /// `visa •••• 4242`) on `customer`'s order `order_id`, and writes `ChargeCaptured` into the
    /// outbox in the same transaction. The charge is answered as [`BackOffice::list_charges`]
    /// shows it, so a capture that duplicates an earlier one comes back flagged. The same key
    /// again returns the charge as it is now and writes nothing; the same key for a different
    /// capture is refused (`Invalid { field: "idempotency_key" }`).
    pub fn capture_charge(
        &self,
        customer: &str,
        order_id: &str,
        amount_minor: i64,
        payment_method: &str,
        idempotency_key: &str,
    ) -> Result<ChargeView, BackOfficeError> {
        check_key(idempotency_key)?;
        if amount_minor <= 0 {
            return Err(invalid("amount_minor", format!("must be positive, got {amount_minor}")));
        }
        if payment_method.trim().is_empty() {
            return Err(invalid("payment_method", "must name how the customer paid".to_owned()));
        }
        self.write(|tx| {
            let order = owned_order(tx, customer, order_id)?;
            let replay: Option<(String, String, i64, String)> = tx
                .prepare_cached(
                    "SELECT charge_id, order_id, amount_minor, payment_method FROM charges WHERE idempotency_key = ?1",
                )?
                .query_row([idempotency_key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .optional()?;
            let charge_id = match replay {
                Some((charge_id, first_order, first_amount, first_method)) => {
                    if first_order != order_id || first_amount != amount_minor || first_method != payment_method {
                        return Err(key_reused(idempotency_key, "charge"));
                    }
                    charge_id
                }
                None => {
                    let charge_id = next_id(tx, "ch", "charges", "charge_id")?;
                    let captured_at = now();
                    tx.prepare_cached(
                        "INSERT INTO charges (charge_id, order_id, amount_minor, currency, captured_at, payment_method,
                                              idempotency_key)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?
                    .execute(params![
                        charge_id,
                        order_id,
                        amount_minor,
                        order.currency,
                        timestamp(captured_at),
                        payment_method,
                        idempotency_key
                    ])?;
                    let amount = Money { amount_minor, currency: order.currency.clone() };
                    outbox::charge_captured(tx, &order.customer_id, order_id, &charge_id, amount, captured_at)?;
                    charge_id
                }
            };
            let total = order_total(tx, order_id)?;
            charges_of(tx, order_id, total)?
                .into_iter()
                .find(|c| c.charge_id == charge_id)
                .ok_or_else(|| not_found("charge", &charge_id))
        })
    }
}
