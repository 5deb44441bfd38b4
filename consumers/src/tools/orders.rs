//! Orders: read an order with what shipped and what did not; ship items.

use choreo_backoffice::{OrderView, ServiceLevel, ShipmentView};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{ToolContext, ToolDef, ToolError};

pub(super) fn tools() -> Vec<ToolDef> {
    vec![
        ToolDef::typed(
            "orders.get_order",
            "The customer's order: items (with quantities shipped, delivered and missing, and why), shipments and total.",
            false,
            get_order,
        ),
        ToolDef::typed(
            "orders.create_shipment",
            "Ships items of the customer's order from stock, at a service level (next_day for a customer who needs it tomorrow). Side effect: done once per event.",
            true,
            create_shipment,
        ),
    ]
}

/// Which order.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetOrder {
    /// The order id, e.g. `o-1001`.
    pub order_id: String,
}

fn get_order(ctx: &ToolContext<'_>, input: GetOrder) -> Result<OrderView, ToolError> {
    Ok(ctx.backoffice.get_order(ctx.customer()?, &input.order_id)?)
}

/// What to ship.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateShipment {
    /// The order the items belong to.
    pub order_id: String,
    /// The product to ship; it must be an item of the order.
    pub sku: String,
    /// How many units.
    #[schemars(range(min = 1))]
    pub quantity: u32,
    /// How fast.
    pub service_level: ServiceLevel,
}

fn create_shipment(ctx: &ToolContext<'_>, input: CreateShipment) -> Result<ShipmentView, ToolError> {
    Ok(ctx.backoffice.create_shipment(
        ctx.customer()?,
        &input.order_id,
        &input.sku,
        input.quantity,
        input.service_level,
        ctx.today,
        ctx.idempotency_key,
    )?)
}
