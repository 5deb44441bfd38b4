//! The transactional outbox: every domain change that others must hear of (a shipment created,
//! a charge captured) writes its CloudEvent into the `outbox` table in the same transaction as the
//! change itself. Either both are committed or neither is; a relay (`choreo_producers::outbox`)
//! then publishes the rows to the bus, at least once and in order per order.
//!
//! # The `outbox` table: the contract between the back office and the relay
//!
//! | column | type | written by | meaning |
//! |---|---|---|---|
//! | `seq` | `INTEGER PRIMARY KEY AUTOINCREMENT` | back office | the order of writing; never reused |
//! | `aggregate` | `TEXT NOT NULL` | back office | the order id (`o-1001`): events of one aggregate are relayed in `seq` order |
//! | `event` | `TEXT NOT NULL` | back office | the whole CloudEvent, JSON structured mode; its `id` is fixed here, so a re-relay publishes the same id |
//! | `created_at` | `TEXT NOT NULL` | back office | RFC 3339, UTC |
//! | `relayed_at` | `TEXT` | relay | RFC 3339, UTC; set once the bus accepted the event |
//! | `parked_at` | `TEXT` | relay | RFC 3339, UTC; set when the event can never be published (refused by the catalog or the bus) |
//! | `error` | `TEXT` | relay | why it was parked, or the last failure of a row still pending |
//! | `attempts` | `INTEGER NOT NULL DEFAULT 0` | relay | publish attempts that failed |
//!
//! The DDL is `src/outbox.sql`, which the relay's tests create too.
//!
//! A row is *pending* while `relayed_at` and `parked_at` are both NULL. The back office only
//! inserts rows; the relay only updates its own columns. The partial index `outbox_pending
//! (aggregate, seq)` serves the relay's query: the oldest pending row of each aggregate.
//!
//! Events are built here with `choreo-schemas` (source [`OUTBOX_SOURCE`], subject
//! `orders/<order id>`, auth context `service_account` / [`OUTBOX_AUTH_ID`]: the back office
//! acts as itself; the customer is `customer_id` in the data) but not checked against the
//! catalog: a domain change is never refused for its event's sake. The relay checks, and parks a
//! row the catalog refuses.

use choreo_schemas::catalog::{self, ChargeCaptured, ItemLine, Money, OrderShipped};
use choreo_schemas::envelope::{AuthType, Envelope, EnvelopeBuilder, new_traceparent};
use chrono::{DateTime, Utc};
use rusqlite::{Row, Transaction, params};
use serde::Serialize;
use serde_json::Value;

use crate::error::{BackOfficeError, Fail};
use crate::reads::order_row;
use crate::store::{BackOffice, parse_timestamp, timestamp};
use crate::views::{ServiceLevel, ShipmentView};

/// The CloudEvent `source` of every event the back office writes.
pub const OUTBOX_SOURCE: &str = "retail.backoffice";
/// The `authid` of every event the back office writes (with `authtype` `service_account`).
pub const OUTBOX_AUTH_ID: &str = "backoffice";

/// One row of the outbox, as [`BackOffice::outbox`] reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxEntry {
    /// The order of writing.
    pub seq: i64,
    /// The order id the event is about.
    pub aggregate: String,
    /// The CloudEvent, JSON structured mode.
    pub event: Value,
    pub created_at: DateTime<Utc>,
    /// When the bus accepted it; `None` while pending or parked.
    pub relayed_at: Option<DateTime<Utc>>,
    /// When the relay gave up on it for good.
    pub parked_at: Option<DateTime<Utc>>,
    /// Why it was parked, or its last failure.
    pub error: Option<String>,
    /// Failed publish attempts.
    pub attempts: u32,
}

impl OutboxEntry {
    /// The CloudEvent `id`.
    pub fn event_id(&self) -> &str {
        self.event["id"].as_str().unwrap_or_default()
    }

    /// The CloudEvent `type`.
    pub fn event_type(&self) -> &str {
        self.event["type"].as_str().unwrap_or_default()
    }
}

impl BackOffice {
    /// Every outbox row of the order `order_id`, in the order written (for tests, the demo and
    /// operators).
    pub fn outbox(&self, order_id: &str) -> Result<Vec<OutboxEntry>, BackOfficeError> {
        self.read(|c| {
            order_row(c, order_id)?;
            let mut stmt = c.prepare_cached(
                "SELECT seq, aggregate, event, created_at, relayed_at, parked_at, error, attempts
                 FROM outbox WHERE aggregate = ?1 ORDER BY seq",
            )?;
            Ok(stmt.query_map([order_id], entry)?.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }
}

fn entry(r: &Row<'_>) -> rusqlite::Result<OutboxEntry> {
    let instant = |i: usize| -> rusqlite::Result<Option<DateTime<Utc>>> {
        r.get::<_, Option<String>>(i)?.as_deref().map(parse_timestamp).transpose()
    };
    let event: String = r.get(2)?;
    let event = serde_json::from_str(&event)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e)))?;
    Ok(OutboxEntry {
        seq: r.get(0)?,
        aggregate: r.get(1)?,
        event,
        created_at: parse_timestamp(&r.get::<_, String>(3)?)?,
        relayed_at: instant(4)?,
        parked_at: instant(5)?,
        error: r.get(6)?,
        attempts: r.get(7)?,
    })
}

/// Writes `data`'s event about `order_id` into the outbox, inside the caller's transaction.
fn append<T: catalog::CatalogEvent>(
    tx: &Transaction<'_>,
    order_id: &str,
    data: &T,
    time: DateTime<Utc>,
) -> Result<(), Fail> {
    let envelope: Envelope = EnvelopeBuilder::of(OUTBOX_SOURCE, data)
        .subject(format!("orders/{order_id}"))
        .time(time)
        .auth(AuthType::ServiceAccount, OUTBOX_AUTH_ID)
        .traceparent(new_traceparent())
        .build()
        .map_err(|e| Fail::Api(BackOfficeError::Invalid { field: "event", reason: format!("`{}`: {e}", T::NAME) }))?;
    tx.prepare_cached("INSERT INTO outbox (aggregate, event, created_at) VALUES (?1, ?2, ?3)")?.execute(params![
        order_id,
        envelope.to_json_string(),
        timestamp(Utc::now())
    ])?;
    Ok(())
}

/// Writes `OrderShipped` for a shipment just created of `customer_id`'s order.
pub(crate) fn order_shipped(tx: &Transaction<'_>, customer_id: &str, shipment: &ShipmentView) -> Result<(), Fail> {
    let data = OrderShipped {
        order_id: shipment.order_id.clone(),
        customer_id: customer_id.to_owned(),
        shipment_id: shipment.shipment_id.clone(),
        items: vec![ItemLine { sku: shipment.sku.clone(), quantity: shipment.quantity }],
        carrier: shipment.carrier.clone(),
        service_level: service_level(shipment.service_level),
        estimated_delivery: shipment.estimated_delivery,
        shipped_at: shipment.created_at,
    };
    append(tx, &shipment.order_id, &data, shipment.created_at)
}

/// Writes `ChargeCaptured` for a charge just captured on `customer_id`'s order.
pub(crate) fn charge_captured(
    tx: &Transaction<'_>,
    customer_id: &str,
    order_id: &str,
    charge_id: &str,
    amount: Money,
    captured_at: DateTime<Utc>,
) -> Result<(), Fail> {
    let data = ChargeCaptured {
        order_id: order_id.to_owned(),
        customer_id: customer_id.to_owned(),
        charge_id: charge_id.to_owned(),
        amount,
        captured_at,
    };
    append(tx, order_id, &data, captured_at)
}

fn service_level(level: ServiceLevel) -> catalog::ServiceLevel {
    match level {
        ServiceLevel::Standard => catalog::ServiceLevel::Standard,
        ServiceLevel::Express => catalog::ServiceLevel::Express,
        ServiceLevel::NextDay => catalog::ServiceLevel::NextDay,
        ServiceLevel::SameDay => catalog::ServiceLevel::SameDay,
    }
}
