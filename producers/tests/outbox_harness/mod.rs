//! The relay's test harness: an outbox file made from the back office's own DDL, events built
//! the way the back office builds them, and the embedded bus behind a wrapper that fails chosen
//! entries, loses the answer of an accepted call, or hangs after the bus accepted a call.

#[path = "../common/faulty.rs"]
mod faulty;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use choreo_bus::api::*;
use choreo_bus::{Bus, Config, EmbeddedBus, Inboxes};
use choreo_producers::{Publisher, RetryPolicy};
use choreo_schemas::Envelope;
use choreo_schemas::catalog::{CatalogEvent, ChargeCaptured, ItemLine, Money, OrderShipped, ServiceLevel};
use choreo_schemas::envelope::{AuthType, EnvelopeBuilder};
use chrono::{NaiveDate, Utc};
use rusqlite::{Connection, params};

pub use faulty::{Faulty, Key};

/// The table as the back office creates it: the contract, not a copy of it.
const OUTBOX_DDL: &str = include_str!("../../../consumers/backoffice/src/outbox.sql");

/// An outbox file written through its own connection, as the back office would.
pub struct Outbox {
    pub path: PathBuf,
    conn: Connection,
}

impl Outbox {
    pub fn create(dir: &Path) -> Self {
        let path = dir.join("backoffice.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch(OUTBOX_DDL).unwrap();
        Self { path, conn }
    }

    /// Appends a row; returns its seq.
    pub fn write(&self, aggregate: &str, event: &str) -> i64 {
        self.conn
            .execute(
                "INSERT INTO outbox (aggregate, event, created_at) VALUES (?1, ?2, ?3)",
                params![aggregate, event, Utc::now().to_rfc3339()],
            )
            .unwrap();
        self.conn.last_insert_rowid()
    }

    /// Appends `event` about order `aggregate`; returns it.
    pub fn write_event(&self, aggregate: &str, event: Envelope) -> Envelope {
        self.write(aggregate, &event.to_json_string());
        event
    }

    /// `(relayed, parked, attempts, error)` of row `seq`.
    pub fn row(&self, seq: i64) -> (bool, bool, u32, Option<String>) {
        self.conn
            .query_row(
                "SELECT relayed_at IS NOT NULL, parked_at IS NOT NULL, attempts, error FROM outbox WHERE seq = ?1",
                [seq],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap()
    }
}

fn built<T: CatalogEvent>(source: &str, order_id: &str, data: &T) -> Envelope {
    EnvelopeBuilder::of(source, data)
        .subject(format!("orders/{order_id}"))
        .auth(AuthType::ServiceAccount, "backoffice")
        .build()
        .unwrap()
}

/// `OrderShipped` as the back office writes it; `n` tells the events of one order apart.
pub fn shipped(order_id: &str, n: u32) -> Envelope {
    shipped_from("retail.backoffice", order_id, n)
}

pub fn shipped_from(source: &str, order_id: &str, n: u32) -> Envelope {
    let data = OrderShipped {
        order_id: order_id.to_owned(),
        customer_id: "c-1001".to_owned(),
        shipment_id: format!("sh-{n}"),
        items: vec![ItemLine { sku: "SKU-SPEAKER-02".to_owned(), quantity: n.max(1) }],
        carrier: "DHL".to_owned(),
        service_level: ServiceLevel::NextDay,
        estimated_delivery: NaiveDate::from_ymd_opt(2026, 12, 4).unwrap(),
        shipped_at: Utc::now(),
    };
    built(source, order_id, &data)
}

/// `ChargeCaptured` as the back office writes it.
pub fn captured(order_id: &str, amount_minor: i64) -> Envelope {
    let data = ChargeCaptured {
        order_id: order_id.to_owned(),
        customer_id: "c-1001".to_owned(),
        charge_id: format!("ch-{amount_minor}"),
        amount: Money { amount_minor, currency: "EUR".to_owned() },
        captured_at: Utc::now(),
    };
    built("retail.backoffice", order_id, &data)
}

/// The embedded bus in `dir/bus`, with a rule sending every back office event to inbox `all`.
pub async fn faulty(dir: &Path) -> Arc<Faulty> {
    let inner = EmbeddedBus::open(Config::new(dir.join("bus"))).unwrap();
    inner.put_rule(RuleSpec::new("all", r#"{"source": ["retail.backoffice"]}"#)).await.unwrap();
    inner.put_targets("all", vec![Target::new("all", "all")]).await.unwrap();
    Arc::new(Faulty::new(inner, Key::Subject))
}

/// A publisher that surfaces every entry failure to the relay at once.
pub fn publisher(bus: Arc<Faulty>) -> Publisher {
    let once =
        RetryPolicy { max_attempts: 1, base_backoff: Duration::from_millis(1), max_backoff: Duration::from_millis(1) };
    Publisher::new(bus).with_retry(once)
}

/// Every event delivered to the inbox so far, in order, each acknowledged.
pub async fn delivered(bus: &Faulty) -> Vec<Envelope> {
    delivered_waiting(bus, Duration::ZERO).await
}

/// As [`delivered`], waiting up to `wait` (long polling) for the first one.
pub async fn delivered_waiting(bus: &Faulty, wait: Duration) -> Vec<Envelope> {
    let mut events = Vec::new();
    loop {
        let wait_time = if events.is_empty() { wait } else { Duration::ZERO };
        let options = ReceiveOptions { max_messages: 10, wait_time, ..Default::default() };
        let got = bus.inner.receive("all", options).await.unwrap();
        if got.is_empty() {
            return events;
        }
        for m in got {
            events.push(m.event().unwrap().to_delivery().unwrap().envelope);
            bus.inner.ack("all", &m.receipt).await.unwrap();
        }
    }
}

/// The CloudEvent ids of `events` about order `order_id`, in order.
pub fn ids_of(events: &[Envelope], order_id: &str) -> Vec<String> {
    let subject = format!("orders/{order_id}");
    events.iter().filter(|e| e.subject() == Some(subject.as_str())).map(|e| e.id().to_owned()).collect()
}
