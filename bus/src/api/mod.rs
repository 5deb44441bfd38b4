//! The bus as its users see it, whatever runs it: [`Bus`] is EventBridge's side (events, rules,
//! targets, archives, replays), [`Inboxes`] SQS's (receive, ack, nack, extend). The embedded
//! engine implements both here; the AWS backend implements the same traits.

mod error;
mod types;

use std::time::Duration;

use async_trait::async_trait;
use choreo_schemas::eventbridge::PutEventsEntry;

pub use error::{BusError, StorageFault};
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
    /// Reports a failed attempt: the message is retried after a backoff, or dead-lettered.
    async fn nack(&self, inbox: &str, receipt: &Receipt, failure: Failure) -> Result<NackOutcome, BusError>;
    /// Keeps a received message hidden for `timeout` from now.
    async fn extend_visibility(&self, inbox: &str, receipt: &Receipt, timeout: Duration) -> Result<(), BusError>;
}
