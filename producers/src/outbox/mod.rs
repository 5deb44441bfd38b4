//! The transactional outbox relay: publishes the events an existing system wrote into its
//! `outbox` table (in the same SQLite transaction as the domain change), at least once and in
//! order per aggregate.
//!
//! The table's contract is the back office's (`choreo_backoffice::outbox`, DDL in
//! `consumers/backoffice/src/outbox.sql`): `seq` orders the rows, `aggregate` is the order id,
//! `event` the whole structured CloudEvent (its `id` fixed at write time), and the relay owns
//! `relayed_at`, `parked_at`, `error` and `attempts`. The relay opens the file itself; it does
//! not depend on the back office's code.
//!
//! How rows go out:
//! - Each PutEvents call holds at most one row per aggregate: the oldest pending row of each of
//!   up to 10 aggregates, oldest first. An aggregate's next row is sent only after the bus has
//!   accepted the previous one, so the events of one order reach the bus in `seq` order.
//! - A row is marked relayed only after the bus accepted it. A crash between the two sends the
//!   row again on the next run, with the same CloudEvent `id` (consumers dedupe by id): at least
//!   once, never lost.
//! - A row the bus fails (throttled, internal failure, bus down) stays pending, its `attempts`
//!   and `error` recorded; it holds back only the later rows of its own aggregate, until a later
//!   run gets it through.
//! - A row that can never be published is *parked* (`parked_at`, `error`), reported, and not
//!   retried: its event is not a structured CloudEvent, its type is not in the catalog, the
//!   catalog's schema or a PutEvents limit refuses it, or the bus refuses it for good. Parking
//!   does not hold back the aggregate's later rows. Nothing is dropped silently: parked rows stay
//!   in the table ([`Relay::parked`]) and an operator may [`Relay::requeue`] one.
//!
//! Run one relay per database: two would both be correct (at least once, same ids) but could
//! deliver a duplicate of an earlier event after a later one.
//!
//! Latency: [`Relay::spawn`] checks SQLite's `data_version` every `poll` (a cheap read that
//! changes when another connection commits), so a committed row goes out within about `poll`
//! plus one PutEvents call; a row that failed is tried again after the retry interval.

mod store;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use choreo_bus::BusError;
use choreo_bus::api::{ErrorCode, MAX_ENTRIES};
use choreo_schemas::Envelope;
use choreo_schemas::catalog;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{Outcome, PublishError, Publisher};
use store::{Head, Mark, OutboxDb};

/// A row the bus accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayedRow {
    pub seq: i64,
    /// The order id.
    pub aggregate: String,
    /// The CloudEvent id, as written.
    pub event_id: String,
}

/// A row that was not relayed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnrelayedRow {
    pub seq: i64,
    /// The order id.
    pub aggregate: String,
    /// The CloudEvent id, when the stored event has one.
    pub event_id: Option<String>,
    pub reason: String,
}

/// What one [`Relay::run_once`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayReport {
    /// PutEvents calls made.
    pub batches: usize,
    /// Accepted by the bus and marked relayed, in the order sent.
    pub relayed: Vec<RelayedRow>,
    /// Failed by the bus; still pending, holding back their aggregates' later rows.
    pub failed: Vec<UnrelayedRow>,
    /// Parked for good in this run.
    pub parked: Vec<UnrelayedRow>,
}

/// Why a relay run stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// The database could not be opened, read or written.
    #[error("outbox database {}: {detail}", path.display())]
    Storage { path: PathBuf, detail: String },
    /// The file has no `outbox` table of the expected shape.
    #[error("outbox database {}: no outbox table of the expected shape: {detail}", path.display())]
    NotAnOutbox { path: PathBuf, detail: String },
    /// The bus failed whole calls; what was relayed before is in `report`, the rest is pending.
    #[error("the bus is unavailable ({source}); {} row(s) relayed before it failed", report.relayed.len())]
    Unavailable { source: BusError, report: Box<RelayReport> },
}

/// Relays an outbox table to the bus through a [`Publisher`].
pub struct Relay {
    db: Mutex<OutboxDb>,
    publisher: Publisher,
    retry_interval: Duration,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("retry_interval", &self.retry_interval).finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay of the outbox in the SQLite file at `path`, which must exist and have the table.
    pub fn open(path: &Path, publisher: Publisher) -> Result<Self, RelayError> {
        Ok(Self { db: Mutex::new(OutboxDb::open(path)?), publisher, retry_interval: Duration::from_secs(1) })
    }

    /// How long [`Relay::spawn`] waits before trying a failed row again (1 s unless said).
    pub fn with_retry_interval(mut self, interval: Duration) -> Self {
        self.retry_interval = interval;
        self
    }

    fn db(&self) -> MutexGuard<'_, OutboxDb> {
        // A panic while holding the lock left no transaction open: the connection is sound.
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Relays what is pending now, batch after batch, until every aggregate is done or held
    /// back by a failed row. The publisher's retries apply within each batch.
    pub async fn run_once(&self) -> Result<RelayReport, RelayError> {
        let mut report = RelayReport::default();
        let mut held_back: Vec<String> = Vec::new();
        loop {
            let heads = self.db().heads(MAX_ENTRIES, &held_back)?;
            if heads.is_empty() {
                return Ok(report);
            }
            let mut marks = Vec::with_capacity(heads.len());
            let mut sending: Vec<(Head, Envelope)> = Vec::with_capacity(heads.len());
            for head in heads {
                match decode(&head.event) {
                    Ok(event) => sending.push((head, event)),
                    Err(reason) => park(&mut report, &mut marks, &head, reason),
                }
            }
            if sending.is_empty() {
                self.db().mark(&marks)?;
                continue;
            }
            report.batches += 1;
            let events: Vec<Envelope> = sending.iter().map(|(_, e)| e.clone()).collect();
            let (outcomes, unavailable) = match self.publisher.publish(&events).await {
                Ok(outcomes) => (outcomes, None),
                Err(PublishError::Unavailable { source, outcomes }) => (outcomes, Some(source)),
            };
            for ((head, event), outcome) in sending.iter().zip(outcomes) {
                match outcome {
                    Outcome::Published { .. } => {
                        marks.push((head.seq, Mark::Relayed));
                        report.relayed.push(RelayedRow {
                            seq: head.seq,
                            aggregate: head.aggregate.clone(),
                            event_id: event.id().to_owned(),
                        });
                    }
                    Outcome::Refused { reason } => park(&mut report, &mut marks, head, reason),
                    Outcome::Failed { code, message, attempts } if refused_for_good(&code) => {
                        let reason = format!("the bus refused it: {code}: {message} (attempt {attempts})");
                        park(&mut report, &mut marks, head, reason);
                    }
                    Outcome::Failed { code, message, attempts } => {
                        let reason = format!("{code}: {message} (after {attempts} attempt(s))");
                        marks.push((head.seq, Mark::Failed(reason.clone())));
                        held_back.push(head.aggregate.clone());
                        report.failed.push(unrelayed(head, reason));
                    }
                }
            }
            self.db().mark(&marks)?;
            if let Some(source) = unavailable {
                return Err(RelayError::Unavailable { source, report: Box::new(report) });
            }
        }
    }

    /// Rows still to relay (pending, not parked).
    pub fn pending(&self) -> Result<u64, RelayError> {
        self.db().pending()
    }

    /// Every parked row, oldest first, with the reason.
    pub fn parked(&self) -> Result<Vec<UnrelayedRow>, RelayError> {
        self.db().parked()
    }

    /// Makes the parked row `seq` pending again (after its cause was fixed); false if it is not
    /// parked. It goes out after its aggregate's later rows that were already relayed.
    pub fn requeue(&self, seq: i64) -> Result<bool, RelayError> {
        self.db().requeue(seq)
    }

    /// Runs the relay in the background: a run now, then one whenever another connection
    /// commits to the file (checked every `poll`) or, while a row is failing, every retry
    /// interval. Stops at [`RelayHandle::shutdown`], or when the handle is dropped.
    pub fn spawn(self, poll: Duration) -> RelayHandle {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(self.run(poll, stopped));
        RelayHandle { stop, task }
    }

    async fn run(self, poll: Duration, mut stopped: watch::Receiver<bool>) -> RelayTotals {
        let mut totals = RelayTotals::default();
        loop {
            let seen = self.db().data_version().ok();
            let retry_at = match self.run_once().await {
                Ok(report) => {
                    totals.add(&report);
                    (!report.failed.is_empty()).then(|| Instant::now() + self.retry_interval)
                }
                Err(e) => {
                    totals.errors += 1;
                    if let RelayError::Unavailable { report, .. } = &e {
                        totals.add(report);
                    }
                    tracing::warn!(error = %e, "outbox relay run failed; trying again");
                    Some(Instant::now() + self.retry_interval)
                }
            };
            totals.runs += 1;
            loop {
                if *stopped.borrow() {
                    return totals;
                }
                tokio::select! {
                    changed = stopped.changed() => if changed.is_err() { return totals },
                    () = tokio::time::sleep(poll) => {}
                }
                let changed = self.db().data_version().ok() != seen || seen.is_none();
                if changed || retry_at.is_some_and(|at| Instant::now() >= at) {
                    break;
                }
            }
        }
    }
}

/// What a spawned relay did over its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayTotals {
    pub runs: u64,
    pub relayed: u64,
    pub failed: u64,
    pub parked: u64,
    /// Runs that stopped on an error (storage, or the bus unavailable).
    pub errors: u64,
}

impl RelayTotals {
    fn add(&mut self, report: &RelayReport) {
        self.relayed += report.relayed.len() as u64;
        self.failed += report.failed.len() as u64;
        self.parked += report.parked.len() as u64;
    }
}

/// A relay running in the background.
#[derive(Debug)]
pub struct RelayHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<RelayTotals>,
}

impl RelayHandle {
    /// Stops the relay after the run in progress, if any, and returns what it did.
    pub async fn shutdown(self) -> RelayTotals {
        // The receiver lives as long as the task; if the task is gone, there is nothing to stop.
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

/// The stored event as an envelope the catalog knows, or why it can never be published.
fn decode(event: &str) -> Result<Envelope, String> {
    let envelope =
        Envelope::from_json_str(event).map_err(|e| format!("the stored event is not a structured CloudEvent: {e}"))?;
    if catalog::lookup(envelope.event_type()).is_none() {
        return Err(format!("the catalog has no event type `{}`", envelope.event_type()));
    }
    Ok(envelope)
}

/// Whether the bus refused an entry in a way that sending it again cannot change.
fn refused_for_good(code: &str) -> bool {
    [ErrorCode::InvalidArgument, ErrorCode::MalformedDetail, ErrorCode::NotAuthorizedForSourceException]
        .iter()
        .any(|c| c.as_str() == code)
}

fn unrelayed(head: &Head, reason: String) -> UnrelayedRow {
    UnrelayedRow { seq: head.seq, aggregate: head.aggregate.clone(), event_id: store::event_id(&head.event), reason }
}

fn park(report: &mut RelayReport, marks: &mut Vec<(i64, Mark)>, head: &Head, reason: String) {
    tracing::warn!(seq = head.seq, aggregate = %head.aggregate, %reason, "outbox row parked");
    marks.push((head.seq, Mark::Parked(reason.clone())));
    report.parked.push(unrelayed(head, reason));
}
