//! Payments: the charges of an order (with suspected duplicates flagged) and refunds.

use choreo_backoffice::{ChargesView, RefundView};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{ToolContext, ToolDef, ToolError};

pub(super) fn tools() -> Vec<ToolDef> {
    vec![
        ToolDef::typed(
            "payments.list_charges",
            "The charges of the customer's order, with refunds so far; a charge that repeats an earlier one (same amount, same card, minutes apart, more charged than the order's total) names it in duplicate_of.",
            false,
            list_charges,
        ),
        ToolDef::typed(
            "payments.refund_charge",
            "Refunds a charge of the customer's (all that remains unless amount_minor is given). Side effect: done once per event, whatever is retried.",
            true,
            refund_charge,
        ),
    ]
}

/// Which order.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListCharges {
    /// The order id, e.g. `o-1001`.
    pub order_id: String,
}

fn list_charges(ctx: &ToolContext<'_>, input: ListCharges) -> Result<ChargesView, ToolError> {
    Ok(ctx.backoffice.list_charges(ctx.customer()?, &input.order_id)?)
}

/// What to refund.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundCharge {
    /// The charge, e.g. `ch-1001-b`.
    pub charge_id: String,
    /// Minor units (cents) to refund; all that remains when absent.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub amount_minor: Option<i64>,
    /// Why, in a few words (kept on the refund).
    #[schemars(length(min = 1))]
    pub reason: String,
}

fn refund_charge(ctx: &ToolContext<'_>, input: RefundCharge) -> Result<RefundView, ToolError> {
    Ok(ctx.backoffice.refund_charge(
        ctx.customer()?,
        &input.charge_id,
        input.amount_minor,
        &input.reason,
        ctx.idempotency_key,
    )?)
}
