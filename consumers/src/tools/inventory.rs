//! Inventory: stock of a product, alternatives to a product out of stock, reservations.

use choreo_backoffice::{ProductView, ReservationView, StockView};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ToolContext, ToolDef, ToolError};

pub(super) fn tools() -> Vec<ToolDef> {
    vec![
        ToolDef::typed(
            "inventory.check_stock",
            "Units of a product on hand, reserved and available, and when it is restocked.",
            false,
            check_stock,
        ),
        ToolDef::typed(
            "inventory.find_alternatives",
            "Products of the same category to offer instead of one out of stock, available ones first.",
            false,
            find_alternatives,
        ),
        ToolDef::typed(
            "inventory.reserve_stock",
            "Holds available units of a product for the customer's order until they ship. Side effect: done once per event.",
            true,
            reserve_stock,
        ),
    ]
}

/// Which product.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sku {
    /// The stock keeping unit, e.g. `SKU-SPEAKER-02`.
    pub sku: String,
}

fn check_stock(ctx: &ToolContext<'_>, input: Sku) -> Result<StockView, ToolError> {
    Ok(ctx.backoffice.check_stock(&input.sku)?)
}

/// The alternatives found.
#[derive(Debug, Serialize)]
pub struct Alternatives {
    pub sku: String,
    pub alternatives: Vec<ProductView>,
}

fn find_alternatives(ctx: &ToolContext<'_>, input: Sku) -> Result<Alternatives, ToolError> {
    let alternatives = ctx.backoffice.find_alternatives(&input.sku)?;
    Ok(Alternatives { sku: input.sku, alternatives })
}

/// What to reserve.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveStock {
    pub order_id: String,
    pub sku: String,
    #[schemars(range(min = 1))]
    pub quantity: u32,
}

fn reserve_stock(ctx: &ToolContext<'_>, input: ReserveStock) -> Result<ReservationView, ToolError> {
    Ok(ctx.backoffice.reserve_stock(
        ctx.customer()?,
        &input.order_id,
        &input.sku,
        input.quantity,
        ctx.idempotency_key,
    )?)
}
