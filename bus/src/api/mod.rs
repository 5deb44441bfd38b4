//! The bus as its users see it, whatever runs it: [`Bus`] is EventBridge's side (events, rules,
//! targets, archives, replays), [`Inboxes`] SQS's (receive, ack, nack, extend). The embedded
//! engine implements both here; the AWS backend implements the same traits.

mod error;
mod types;

use std::time::Duration;

use async_trait::async_trait;
use choreo_schemas::eventbridge::PutEventsEntry;
use chrono::{DateTime, Utc};

pub use error::{BusError, ServiceFailure, StorageFault};
pub use types::*;

/// EventBridge's side of the bus.
#[async_trait]
pub trait Bus: Send + Sync {
    /// Puts up to 10 entries; each is accepted (and durable) or refused on its own.
    async fn put_events(&self, entries: Vec<PutEventsEntry>) -> Result<PutEventsOutput, BusError>;

    /// Creates or replaces a rule; answers its ARN.
    async fn put_rule(&self, rule: RuleSpec) -> Result<String, BusError>;
    /// Deletes a rule that has no targets left.
    async fn delete_rule(&self, name: &str) -> Result<(), BusError>;
    async fn set_rule_state(&self, name: &str, state: RuleState) -> Result<(), BusError>;
    async fn describe_rule(&self, name: &str) -> Result<Rule, BusError>;
    async fn list_rules(&self) -> Result<Vec<Rule>, BusError>;
    /// Adds or replaces targets (by id) on a rule; creates their inboxes.
    async fn put_targets(&self, rule: &str, targets: Vec<Target>) -> Result<(), BusError>;
    async fn remove_targets(&self, rule: &str, ids: &[String]) -> Result<(), BusError>;

    async fn enable_rule(&self, name: &str) -> Result<(), BusError> {
        self.set_rule_state(name, RuleState::Enabled).await
    }

    async fn disable_rule(&self, name: &str) -> Result<(), BusError> {
        self.set_rule_state(name, RuleState::Disabled).await
    }

    async fn create_archive(&self, archive: ArchiveSpec) -> Result<String, BusError>;
    async fn delete_archive(&self, name: &str) -> Result<(), BusError>;
    async fn describe_archive(&self, name: &str) -> Result<Archive, BusError>;
    async fn list_archives(&self) -> Result<Vec<Archive>, BusError>;

    async fn start_replay(&self, replay: ReplaySpec) -> Result<Replay, BusError>;
    async fn describe_replay(&self, name: &str) -> Result<Replay, BusError>;
    async fn cancel_replay(&self, name: &str) -> Result<ReplayState, BusError>;
    async fn list_replays(&self) -> Result<Vec<Replay>, BusError>;

    /// Up to `limit` events of an archive in the window (both ends included), in the order a
    /// replay walks them, after `after`. An extension for dry runs: EventBridge cannot list an
    /// archive, and its backend answers [`BusError::Unsupported`].
    async fn archived_events(
        &self,
        archive: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        after: Option<ArchiveCursor>,
        limit: u32,
    ) -> Result<Vec<ArchivedEvent>, BusError> {
        let _ = (archive, start, end, after, limit);
        Err(BusError::Unsupported { operation: "listing an archive's events".into(), backend: "this".into() })
    }
}

/// SQS's side of the bus: each consumer's inbox.
#[async_trait]
pub trait Inboxes: Send + Sync {
    /// Creates an inbox (and nothing else) if it does not exist.
    async fn create_inbox(&self, name: &str) -> Result<(), BusError>;
    /// Receives up to `max_messages`, hiding them from other receivers for the visibility
    /// timeout; waits up to `wait_time` for the first one.
    async fn receive(&self, inbox: &str, options: ReceiveOptions) -> Result<Vec<Message>, BusError>;
    /// Deletes a received message: it is never delivered again.
    async fn ack(&self, inbox: &str, receipt: &Receipt) -> Result<(), BusError>;
    /// Deletes up to [`MAX_RECEIVE`] received messages at once (SQS's
    /// `DeleteMessageBatch`): one answer per receipt, in order, each settled alone. The error
    /// of the whole call is for the batch itself (empty, too large) or the bus failing.
    async fn ack_batch(&self, inbox: &str, receipts: &[Receipt]) -> Result<Vec<Result<(), BusError>>, BusError> {
        check_batch("ack", receipts.len())?;
        let mut answers = Vec::with_capacity(receipts.len());
        for receipt in receipts {
            answers.push(self.ack(inbox, receipt).await);
        }
        Ok(answers)
    }
    /// Reports a failed attempt: the message is retried after a backoff, or dead-lettered.
    async fn nack(&self, inbox: &str, receipt: &Receipt, failure: Failure) -> Result<NackOutcome, BusError>;
    /// Keeps a received message hidden for `timeout` from now.
    async fn extend_visibility(&self, inbox: &str, receipt: &Receipt, timeout: Duration) -> Result<(), BusError>;

    /// Takes over a message of `inbox` that someone else received for this process (Lambda's
    /// event source mapping hands a function its queue's messages): it is settled here from
    /// now on. The embedded bus needs nothing of it; the AWS backend keeps what a nack needs.
    fn adopt(&self, inbox: &str, message: &Message) {
        let _ = (inbox, message);
    }

    /// Every inbox with its counts (dead-letter inboxes among them).
    async fn list_inboxes(&self) -> Result<Vec<InboxSummary>, BusError>;
    /// Up to `limit` messages of an inbox in arrival order after message `after`, without
    /// receiving them: nothing about them changes. Their receipts settle nothing.
    async fn peek(&self, inbox: &str, after: Option<&str>, limit: u32) -> Result<Vec<Message>, BusError>;
    /// Sends dead-lettered messages back to the inbox they were dead-lettered from, with
    /// their target's current retry policy and fresh attempts (SQS's dead-letter redrive).
    /// All or none: if one cannot go back, nothing moves.
    async fn redrive(&self, dead_letter_inbox: &str, message_ids: &[String]) -> Result<Vec<Redriven>, BusError>;
    /// Deletes messages for good, received or not. All or none.
    async fn delete_messages(&self, inbox: &str, message_ids: &[String]) -> Result<u64, BusError>;
}
