//! The relay's test harness: an outbox file made from the back office's own DDL, events built
//! the way the back office builds them, and the embedded bus behind a wrapper that fails chosen
//! entries, loses the answer of an accepted call, or hangs after the bus accepted a call.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use choreo_bus::api::*;
use choreo_bus::{Bus, BusError, Config, EmbeddedBus, Inboxes};
use choreo_producers::{Publisher, RetryPolicy};
use choreo_schemas::Envelope;
use choreo_schemas::catalog::{CatalogEvent, ChargeCaptured, ItemLine, Money, OrderShipped, ServiceLevel};
use choreo_schemas::envelope::{AuthType, EnvelopeBuilder};
use choreo_schemas::eventbridge::PutEventsEntry;
use chrono::{NaiveDate, Utc};
use rusqlite::{Connection, params};
use tokio::sync::Notify;

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

/// The embedded bus, its PutEvents calls recorded (as CloudEvent subjects) and faults injected.
pub struct Faulty {
    pub inner: EmbeddedBus,
    /// The subjects of the entries of each call.
    pub calls: Mutex<Vec<Vec<String>>>,
    /// Subject → how many more of its entries to fail with ThrottlingException.
    pub fail: Mutex<HashMap<String, u32>>,
    /// Calls still to pass to the bus and then answer with an error, as if the answer was lost.
    pub lose_answers: AtomicU32,
    /// While set, calls pass to the bus, notify, and never answer.
    pub hang: Mutex<Option<Arc<Notify>>>,
}

#[async_trait]
impl Bus for Faulty {
    async fn put_events(&self, entries: Vec<PutEventsEntry>) -> Result<PutEventsOutput, BusError> {
        let subjects: Vec<String> =
            entries.iter().map(|e| e.to_envelope().unwrap().subject().unwrap_or_default().to_owned()).collect();
        self.calls.lock().unwrap().push(subjects.clone());
        let (mut pass, mut slots) = (Vec::new(), Vec::new());
        {
            let mut fail = self.fail.lock().unwrap();
            for (entry, subject) in entries.into_iter().zip(&subjects) {
                match fail.get_mut(subject).filter(|n| **n > 0) {
                    Some(n) => {
                        *n -= 1;
                        slots.push(None);
                    }
                    None => {
                        slots.push(Some(pass.len()));
                        pass.push(entry);
                    }
                }
            }
        }
        let answered = if pass.is_empty() { Vec::new() } else { self.inner.put_events(pass).await?.entries };
        let hang = self.hang.lock().unwrap().clone();
        if let Some(notify) = hang {
            notify.notify_one();
            std::future::pending::<()>().await;
        }
        if self.lose_answers.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(BusError::Closed);
        }
        let entries: Vec<EntryResult> = slots
            .into_iter()
            .map(|slot| match slot {
                Some(k) => answered[k].clone(),
                None => EntryResult::Failed {
                    error_code: ErrorCode::ThrottlingException,
                    error_message: "Rate exceeded".into(),
                },
            })
            .collect();
        let failed_entry_count = entries.iter().filter(|e| e.event_id().is_none()).count();
        Ok(PutEventsOutput { failed_entry_count, entries })
    }
    async fn put_rule(&self, rule: RuleSpec) -> Result<String, BusError> {
        self.inner.put_rule(rule).await
    }
    async fn delete_rule(&self, name: &str) -> Result<(), BusError> {
        self.inner.delete_rule(name).await
    }
    async fn set_rule_state(&self, name: &str, state: RuleState) -> Result<(), BusError> {
        self.inner.set_rule_state(name, state).await
    }
    async fn describe_rule(&self, name: &str) -> Result<Rule, BusError> {
        self.inner.describe_rule(name).await
    }
    async fn list_rules(&self) -> Result<Vec<Rule>, BusError> {
        self.inner.list_rules().await
    }
    async fn put_targets(&self, rule: &str, targets: Vec<Target>) -> Result<(), BusError> {
        self.inner.put_targets(rule, targets).await
    }
    async fn remove_targets(&self, rule: &str, ids: &[String]) -> Result<(), BusError> {
        self.inner.remove_targets(rule, ids).await
    }
    async fn create_archive(&self, archive: ArchiveSpec) -> Result<String, BusError> {
        self.inner.create_archive(archive).await
    }
    async fn delete_archive(&self, name: &str) -> Result<(), BusError> {
        self.inner.delete_archive(name).await
    }
    async fn describe_archive(&self, name: &str) -> Result<Archive, BusError> {
        self.inner.describe_archive(name).await
    }
    async fn list_archives(&self) -> Result<Vec<Archive>, BusError> {
        self.inner.list_archives().await
    }
    async fn start_replay(&self, replay: ReplaySpec) -> Result<Replay, BusError> {
        self.inner.start_replay(replay).await
    }
    async fn describe_replay(&self, name: &str) -> Result<Replay, BusError> {
        self.inner.describe_replay(name).await
    }
    async fn cancel_replay(&self, name: &str) -> Result<ReplayState, BusError> {
        self.inner.cancel_replay(name).await
    }
    async fn list_replays(&self) -> Result<Vec<Replay>, BusError> {
        self.inner.list_replays().await
    }
}

/// The embedded bus in `dir/bus`, with a rule sending every back office event to inbox `all`.
pub async fn faulty(dir: &Path) -> Arc<Faulty> {
    let inner = EmbeddedBus::open(Config::new(dir.join("bus"))).unwrap();
    inner.put_rule(RuleSpec::new("all", r#"{"source": ["retail.backoffice"]}"#)).await.unwrap();
    inner.put_targets("all", vec![Target::new("all", "all")]).await.unwrap();
    Arc::new(Faulty {
        inner,
        calls: Mutex::new(vec![]),
        fail: Mutex::new(HashMap::new()),
        lose_answers: AtomicU32::new(0),
        hang: Mutex::new(None),
    })
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
