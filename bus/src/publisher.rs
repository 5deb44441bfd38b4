//! The publisher: checks each event against the catalog, packs them into PutEvents calls
//! within EventBridge's limits (10 entries, 256 KiB), and retries only the entries the bus
//! failed with a retryable code, with backoff. An entry is reported published only when the bus
//! answered it with an event id.
//!
//! It lives beside the `Bus` trait so that every producer of events uses it: the ingest API
//! and the outbox relay (through `choreo-producers`, which re-exports it) and the agents'
//! completions ([`publish_on`], over a borrowed bus).

use std::sync::Arc;
use std::time::Duration;

use crate::api::{EntryResult, ErrorCode, MAX_ENTRIES, MAX_ENTRY_BYTES};
use crate::{Bus, BusError};
use choreo_schemas::Envelope;
use choreo_schemas::catalog;
use choreo_schemas::eventbridge::PutEventsEntry;

/// The code of an event not sent because a whole call failed (the bus unavailable).
pub const BUS_UNAVAILABLE: &str = "BusUnavailable";
/// The code of an event left unsent when the publish stopped early.
pub const NOT_SENT: &str = "NotSent";

/// How a publisher retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per entry, the first included.
    pub max_attempts: u32,
    /// The delay before the first retry; doubled each time up to `max_backoff`, jittered
    /// between half and all of it.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 5, base_backoff: Duration::from_millis(50), max_backoff: Duration::from_secs(2) }
    }
}

/// What became of one event, at its index in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The bus accepted it: its EventBridge event id.
    Published { event_id: String },
    /// Not sent: it breaks its event's schema or a PutEvents limit.
    Refused { reason: String },
    /// The bus refused it, or kept failing it until the attempts ran out.
    Failed { code: String, message: String, attempts: u32 },
}

impl Outcome {
    pub fn is_published(&self) -> bool {
        matches!(self, Outcome::Published { .. })
    }

    /// Whether sending the event again later may succeed: it failed with a retryable code
    /// (throttled, an internal failure) or was not sent because the bus was unavailable.
    pub fn is_retryable(&self) -> bool {
        match self {
            Outcome::Failed { code, .. } => {
                [ErrorCode::InternalFailure, ErrorCode::ThrottlingException].iter().any(|c| c.as_str() == code)
                    || code == BUS_UNAVAILABLE
                    || code == NOT_SENT
            }
            Outcome::Published { .. } | Outcome::Refused { .. } => false,
        }
    }
}

/// Why a whole publish could not be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The bus failed whole calls until the attempts ran out; what it accepted before is in
    /// `outcomes`, the rest is `Failed`.
    #[error("the bus is unavailable: {source}")]
    Unavailable { source: BusError, outcomes: Vec<Outcome> },
}

/// Puts events on a bus.
#[derive(Clone)]
pub struct Publisher {
    bus: Arc<dyn Bus>,
    retry: RetryPolicy,
}

impl Publisher {
    pub fn new(bus: Arc<dyn Bus>) -> Self {
        Self { bus, retry: RetryPolicy::default() }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Publishes `events`; one outcome per event, in order. Events of the catalog are checked
    /// against their schema first; events it does not know are sent as they are.
    pub async fn publish(&self, events: &[Envelope]) -> Result<Vec<Outcome>, PublishError> {
        self.send(events, true).await
    }

    /// Like [`Publisher::publish`], for events whose data the caller has just checked against
    /// the catalog itself (the ingest API does, to answer 422 with a pointer per event): the
    /// schema check is not run twice. Sizes are still checked.
    pub async fn publish_checked(&self, events: &[Envelope]) -> Result<Vec<Outcome>, PublishError> {
        self.send(events, false).await
    }

    async fn send(&self, events: &[Envelope], validate: bool) -> Result<Vec<Outcome>, PublishError> {
        publish_on(self.bus.as_ref(), &self.retry, events, validate).await
    }
}

/// What [`Publisher::publish`] does (with `validate`; without it, what
/// [`Publisher::publish_checked`] does), on a bus the caller holds.
pub async fn publish_on(
    bus: &dyn Bus,
    policy: &RetryPolicy,
    events: &[Envelope],
    validate: bool,
) -> Result<Vec<Outcome>, PublishError> {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; events.len()];
    let mut pending: Vec<(usize, PutEventsEntry)> = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        match check(event, validate) {
            Ok(entry) => pending.push((i, entry)),
            Err(reason) => outcomes[i] = Some(Outcome::Refused { reason }),
        }
    }
    let mut attempt = 0;
    while !pending.is_empty() {
        attempt += 1;
        if attempt > 1 {
            tokio::time::sleep(backoff(policy, attempt - 1)).await;
        }
        let mut retry = Vec::new();
        let mut calls = batches(pending).into_iter();
        while let Some(batch) = calls.next() {
            let entries: Vec<PutEventsEntry> = batch.iter().map(|(_, e)| e.clone()).collect();
            match bus.put_events(entries).await {
                Ok(output) => {
                    for ((i, entry), result) in batch.into_iter().zip(output.entries) {
                        match result {
                            EntryResult::Accepted { event_id } => {
                                outcomes[i] = Some(Outcome::Published { event_id });
                            }
                            EntryResult::Failed { error_code, error_message }
                                if error_code.is_retryable() && attempt < policy.max_attempts =>
                            {
                                tracing::debug!(%error_code, %error_message, attempt, "entry failed; retrying");
                                retry.push((i, entry));
                            }
                            EntryResult::Failed { error_code, error_message } => {
                                outcomes[i] = Some(failed(error_code, error_message, attempt));
                            }
                        }
                    }
                }
                Err(e) if e.is_retryable() && attempt < policy.max_attempts => retry.extend(batch),
                Err(source) => {
                    // The whole call failed: nothing of this batch was accepted, and what
                    // was still to be sent is not sent.
                    let unsent = batch.into_iter().chain(calls.flatten()).chain(retry);
                    for (i, _) in unsent {
                        outcomes[i] = Some(Outcome::Failed {
                            code: BUS_UNAVAILABLE.into(),
                            message: source.to_string(),
                            attempts: attempt,
                        });
                    }
                    return Err(PublishError::Unavailable { outcomes: settled(outcomes), source });
                }
            }
        }
        pending = retry;
    }
    Ok(settled(outcomes))
}

/// Every event has its outcome by now: refused, published or failed.
fn settled(outcomes: Vec<Option<Outcome>>) -> Vec<Outcome> {
    outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| Outcome::Failed { code: NOT_SENT.into(), message: "not sent".into(), attempts: 0 })
        })
        .collect()
}

/// The delay before retry number `retry` (1 = the first).
fn backoff(policy: &RetryPolicy, retry: u32) -> Duration {
    let exp = policy.base_backoff.saturating_mul(1 << retry.saturating_sub(1).min(16));
    let capped = exp.min(policy.max_backoff);
    // Half to all of it, so that producers retrying together spread out.
    capped / 2 + capped.mul_f64(fastrand::f64() / 2.0)
}

fn failed(code: ErrorCode, message: String, attempts: u32) -> Outcome {
    Outcome::Failed { code: code.to_string(), message, attempts }
}

/// The entry of an event, or why it cannot be sent.
fn check(event: &Envelope, validate: bool) -> Result<PutEventsEntry, String> {
    if validate && catalog::lookup(event.event_type()).is_some() {
        catalog::validate_envelope(event).map_err(|e| e.to_string())?;
    }
    let entry = PutEventsEntry::from_envelope(event);
    let size = entry.size();
    if size > MAX_ENTRY_BYTES {
        return Err(format!(
            "event {} is {size} bytes as a PutEvents entry; the limit is {MAX_ENTRY_BYTES}",
            event.id()
        ));
    }
    Ok(entry)
}

/// Packs entries into calls of at most 10 entries and 256 KiB, keeping their order.
fn batches(entries: Vec<(usize, PutEventsEntry)>) -> Vec<Vec<(usize, PutEventsEntry)>> {
    let mut out: Vec<Vec<(usize, PutEventsEntry)>> = Vec::new();
    let mut bytes = 0;
    for (i, entry) in entries {
        let size = entry.size();
        let full = out.last().is_none_or(|b| b.len() == MAX_ENTRIES || bytes + size > MAX_ENTRY_BYTES);
        if full {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        if let Some(batch) = out.last_mut() {
            batch.push((i, entry));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(detail_bytes: usize) -> PutEventsEntry {
        let envelope = Envelope::builder("retail.test", "Thing")
            .data(serde_json::json!({"pad": "x".repeat(detail_bytes)}))
            .build()
            .unwrap();
        PutEventsEntry::from_envelope(&envelope)
    }

    #[test]
    fn batches_hold_at_most_ten_entries_and_256_kib_in_order() {
        let small: Vec<_> = (0..23).map(|i| (i, entry(10))).collect();
        let sizes: Vec<_> = batches(small).iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 3]);
        let big: Vec<_> = (0..5).map(|i| (i, entry(100_000))).collect();
        let packed = batches(big);
        assert_eq!(packed.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
        for batch in &packed {
            assert!(batch.iter().map(|(_, e)| e.size()).sum::<usize>() <= MAX_ENTRY_BYTES);
        }
        let order: Vec<_> = packed.into_iter().flatten().map(|(i, _)| i).collect();
        assert_eq!(order, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn backoff_grows_and_stays_within_half_to_all_of_its_cap() {
        let policy = RetryPolicy {
            max_attempts: 9,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(400),
        };
        for (retry, full) in [(1, 100), (2, 200), (3, 400), (8, 400)] {
            let d = backoff(&policy, retry).as_millis();
            assert!(d >= full / 2 && d <= full, "retry {retry}: {d} ms");
        }
    }
}
