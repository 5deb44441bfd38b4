//! The requests and answers of the bus, named after EventBridge's and SQS's own.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use choreo_schemas::eventbridge::DeliveredEvent;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::BusError;

/// PutEvents takes at most this many entries.
pub const MAX_ENTRIES: usize = 10;
/// An entry's size (EventBridge's formula) must not exceed this.
pub const MAX_ENTRY_BYTES: usize = 256 * 1024;
/// `DetailType` is at most this many characters.
pub const MAX_DETAIL_TYPE_CHARS: usize = 128;
/// A rule has at most this many targets.
pub const MAX_TARGETS_PER_RULE: usize = 5;
/// At most this many replays are active at once.
pub const MAX_ACTIVE_REPLAYS: usize = 10;
/// A receive returns at most this many messages.
pub const MAX_RECEIVE: u32 = 10;
/// The longest visibility timeout (SQS: 12 hours).
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
/// The longest a receive waits for a message (SQS: 20 seconds).
pub const MAX_WAIT: Duration = Duration::from_secs(20);

/// Why one PutEvents entry was refused (`PutEventsResultEntry.ErrorCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    InvalidArgument,
    MalformedDetail,
    NotAuthorizedForSourceException,
    InternalFailure,
    ThrottlingException,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "InvalidArgument",
            ErrorCode::MalformedDetail => "MalformedDetail",
            ErrorCode::NotAuthorizedForSourceException => "NotAuthorizedForSourceException",
            ErrorCode::InternalFailure => "InternalFailure",
            ErrorCode::ThrottlingException => "ThrottlingException",
        }
    }

    /// Whether sending the same entry again may succeed (EventBridge: `InternalFailure` and
    /// `ThrottlingException`).
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorCode::InternalFailure | ErrorCode::ThrottlingException)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer to one entry, at the entry's index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EntryResult {
    Accepted {
        #[serde(rename = "EventId")]
        event_id: String,
    },
    Failed {
        #[serde(rename = "ErrorCode")]
        error_code: ErrorCode,
        #[serde(rename = "ErrorMessage")]
        error_message: String,
    },
}

impl EntryResult {
    pub fn event_id(&self) -> Option<&str> {
        match self {
            EntryResult::Accepted { event_id } => Some(event_id),
            EntryResult::Failed { .. } => None,
        }
    }
}

/// The answer to PutEvents: one result per entry, in the order of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutEventsOutput {
    pub failed_entry_count: usize,
    pub entries: Vec<EntryResult>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RuleState {
    Enabled,
    Disabled,
}

impl RuleState {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleState::Enabled => "ENABLED",
            RuleState::Disabled => "DISABLED",
        }
    }
}

/// A rule to create or replace (`PutRule`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    pub name: String,
    pub event_pattern: String,
    pub state: RuleState,
    pub description: Option<String>,
}

impl RuleSpec {
    /// An enabled rule.
    pub fn new(name: impl Into<String>, event_pattern: impl Into<String>) -> Self {
        Self { name: name.into(), event_pattern: event_pattern.into(), state: RuleState::Enabled, description: None }
    }
}

/// A rule as the bus holds it (`DescribeRule` with its targets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub arn: String,
    pub event_pattern: String,
    pub state: RuleState,
    pub description: Option<String>,
    pub targets: Vec<Target>,
}

/// How delivery to a target is retried (EventBridge's `RetryPolicy`, with the backoff made
/// explicit): an attempt fails when the consumer nacks it or its visibility timeout runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Retries after the first attempt, 0 to 185.
    pub maximum_retry_attempts: u32,
    /// How long after the bus received the event it may still be retried, 60 s to 24 h.
    pub maximum_event_age: Duration,
    /// The delay before the first retry; each retry doubles it, up to `backoff_cap`, and
    /// the delay is jittered between half and all of that.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

impl Default for RetryPolicy {
    /// EventBridge's defaults: 185 retries, 24 hours.
    fn default() -> Self {
        Self {
            maximum_retry_attempts: 185,
            maximum_event_age: Duration::from_secs(86_400),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    pub(crate) fn validate(&self, target: &str) -> Result<(), BusError> {
        let field = |f: &str| format!("target `{target}`: RetryPolicy.{f}");
        if self.maximum_retry_attempts > 185 {
            return Err(BusError::invalid(
                field("MaximumRetryAttempts"),
                format!("{} is out of range 0..=185", self.maximum_retry_attempts),
            ));
        }
        let age = self.maximum_event_age.as_secs();
        if !(60..=86_400).contains(&age) || self.maximum_event_age.subsec_nanos() != 0 {
            return Err(BusError::invalid(
                field("MaximumEventAgeInSeconds"),
                format!("{:?} is out of range 60..=86400 whole seconds", self.maximum_event_age),
            ));
        }
        if self.backoff_base.is_zero() || self.backoff_cap < self.backoff_base || self.backoff_cap > MAX_VISIBILITY {
            return Err(BusError::invalid(
                field("backoff"),
                format!("base {:?} must be above zero and at most the cap {:?}", self.backoff_base, self.backoff_cap),
            ));
        }
        Ok(())
    }
}

/// Where a rule sends what it matched: an inbox, with its retry policy and dead-letter inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Unique within the rule, 1-64 characters of `[.\-_A-Za-z0-9]`.
    pub id: String,
    pub inbox: String,
    /// Where deliveries go after the last attempt; `<inbox>-dlq` unless set.
    pub dead_letter_inbox: String,
    pub retry_policy: RetryPolicy,
}

impl Target {
    /// A target for `inbox` with EventBridge's default retry policy and `<inbox>-dlq` as its
    /// dead-letter inbox.
    pub fn new(id: impl Into<String>, inbox: impl Into<String>) -> Self {
        let inbox = inbox.into();
        Self { id: id.into(), dead_letter_inbox: format!("{inbox}-dlq"), inbox, retry_policy: RetryPolicy::default() }
    }

    #[must_use]
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry_policy = policy;
        self
    }

    #[must_use]
    pub fn with_dead_letter_inbox(mut self, inbox: impl Into<String>) -> Self {
        self.dead_letter_inbox = inbox.into();
        self
    }
}

/// How to receive (SQS `ReceiveMessage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveOptions {
    /// 1 to 10.
    pub max_messages: u32,
    /// How long a received message stays hidden from other receivers, up to 12 hours.
    pub visibility_timeout: Duration,
    /// How long to wait for a message when none is ready, up to 20 seconds (long polling).
    pub wait_time: Duration,
}

impl Default for ReceiveOptions {
    fn default() -> Self {
        Self { max_messages: 10, visibility_timeout: Duration::from_secs(30), wait_time: Duration::ZERO }
    }
}

/// Refuses a batch call with no entries or more than [`MAX_RECEIVE`], as SQS does.
pub(crate) fn check_batch(call: &str, entries: usize) -> Result<(), BusError> {
    if !(1..=MAX_RECEIVE as usize).contains(&entries) {
        return Err(BusError::invalid(
            "Entries",
            format!("{call}: {entries} entries is out of range 1..={MAX_RECEIVE}"),
        ));
    }
    Ok(())
}

impl ReceiveOptions {
    pub(crate) fn validate(&self) -> Result<(), BusError> {
        if !(1..=MAX_RECEIVE).contains(&self.max_messages) {
            return Err(BusError::invalid(
                "MaxNumberOfMessages",
                format!("{} is out of range 1..={MAX_RECEIVE}", self.max_messages),
            ));
        }
        if self.visibility_timeout > MAX_VISIBILITY {
            return Err(BusError::invalid(
                "VisibilityTimeout",
                format!("{:?} is longer than {:?}", self.visibility_timeout, MAX_VISIBILITY),
            ));
        }
        if self.wait_time > MAX_WAIT {
            return Err(BusError::invalid(
                "WaitTimeSeconds",
                format!("{:?} is longer than {:?}", self.wait_time, MAX_WAIT),
            ));
        }
        Ok(())
    }
}

/// The handle of one receipt of a message: it acknowledges, nacks or extends that receipt
/// only, so a consumer whose visibility ran out cannot settle a message someone else holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Receipt(pub String);

impl fmt::Display for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A received message: the delivered EventBridge event and how it got here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub message_id: String,
    pub receipt: Receipt,
    /// The delivered event, exactly as a target receives it from EventBridge.
    pub body: String,
    /// How many times it has been received, this time included.
    pub receive_count: u32,
    /// When it entered this inbox.
    pub sent_at: DateTime<Utc>,
    /// The rule and target that delivered it.
    pub rule: String,
    pub target: String,
    /// Why it is here, on a message of a dead-letter inbox.
    pub dead_letter: Option<DeadLetter>,
}

impl Message {
    /// The body read as EventBridge's delivered event.
    pub fn event(&self) -> Result<DeliveredEvent, serde_json::Error> {
        serde_json::from_str(&self.body)
    }
}

/// Why a consumer could not handle a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// A short stable code, e.g. `TIMEOUT`, `THROTTLING`, `MODEL_ERROR`.
    pub code: String,
    pub message: String,
    /// A permanent failure skips the remaining retries and dead-letters the message at once.
    pub retryable: bool,
}

impl Failure {
    pub fn retryable(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into(), retryable: true }
    }

    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into(), retryable: false }
    }
}

/// What a nack did with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NackOutcome {
    /// It will be delivered again at this time.
    RetryAt(DateTime<Utc>),
    /// It went to the dead-letter inbox.
    DeadLettered { inbox: String },
}

/// Which limit ended the retries (`EXHAUSTED_RETRY_CONDITION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExhaustedCondition {
    MaximumRetryAttempts,
    MaximumEventAgeInSeconds,
}

/// Why a message was dead-lettered: the attributes EventBridge puts on a DLQ message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct DeadLetter {
    pub rule_arn: String,
    pub target_arn: String,
    pub error_code: String,
    pub error_message: String,
    /// Absent when the failure was permanent (not retried).
    pub exhausted_retry_condition: Option<ExhaustedCondition>,
    pub retry_attempts: u32,
}

/// An archive to create (`CreateArchive`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSpec {
    pub name: String,
    /// Which events to keep; every event when absent.
    pub event_pattern: Option<String>,
    /// 0 keeps events forever.
    pub retention_days: u32,
    pub description: Option<String>,
}

impl ArchiveSpec {
    /// An archive of every event, kept forever.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), event_pattern: None, retention_days: 0, description: None }
    }
}

/// An archive as the bus holds it (`DescribeArchive`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    pub name: String,
    pub arn: String,
    pub event_pattern: Option<String>,
    pub retention_days: u32,
    pub description: Option<String>,
    pub state: String,
    pub event_count: u64,
    pub size_bytes: u64,
    pub creation_time: DateTime<Utc>,
}

/// A replay to start (`StartReplay`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaySpec {
    /// 1-64 characters of `[.\-_A-Za-z0-9]`; it is the `replay-name` of every replayed event.
    pub name: String,
    pub archive: String,
    /// The window of event times, both ends included.
    pub event_start_time: DateTime<Utc>,
    pub event_end_time: DateTime<Utc>,
    /// Only these rules get the replayed events; every rule when absent.
    pub rules: Option<BTreeSet<String>>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReplayState {
    Starting,
    Running,
    Cancelling,
    Completed,
    Cancelled,
    Failed,
}

impl ReplayState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplayState::Starting => "STARTING",
            ReplayState::Running => "RUNNING",
            ReplayState::Cancelling => "CANCELLING",
            ReplayState::Completed => "COMPLETED",
            ReplayState::Cancelled => "CANCELLED",
            ReplayState::Failed => "FAILED",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "STARTING" => ReplayState::Starting,
            "RUNNING" => ReplayState::Running,
            "CANCELLING" => ReplayState::Cancelling,
            "COMPLETED" => ReplayState::Completed,
            "CANCELLED" => ReplayState::Cancelled,
            "FAILED" => ReplayState::Failed,
            _ => return None,
        })
    }

    /// Whether the replay is still working (or about to stop).
    pub fn is_active(self) -> bool {
        matches!(self, ReplayState::Starting | ReplayState::Running | ReplayState::Cancelling)
    }
}

impl fmt::Display for ReplayState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A replay's state and progress (`DescribeReplay`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub name: String,
    pub arn: String,
    pub archive: String,
    pub description: Option<String>,
    pub state: ReplayState,
    pub state_reason: Option<String>,
    pub event_start_time: DateTime<Utc>,
    pub event_end_time: DateTime<Utc>,
    pub rules: Option<BTreeSet<String>>,
    /// The time of the last event replayed so far.
    pub event_last_replayed_time: Option<DateTime<Utc>>,
    /// Archived events in the window when the replay started.
    pub events_total: u64,
    /// Archived events gone through so far.
    pub events_replayed: u64,
    /// Deliveries made to targets so far.
    pub deliveries: u64,
    pub replay_start_time: DateTime<Utc>,
    pub replay_end_time: Option<DateTime<Utc>>,
}

/// An inbox and what it holds (`GetQueueAttributes`' message counts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InboxSummary {
    pub name: String,
    /// Messages waiting to be received.
    pub visible: u64,
    /// Messages received and not yet settled, or waiting for a retry's backoff.
    pub hidden: u64,
    /// When the oldest message entered the inbox.
    pub oldest: Option<DateTime<Utc>>,
}

/// A dead-lettered message sent back to the inbox it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Redriven {
    /// Its id in the dead-letter inbox, gone now.
    pub message_id: String,
    /// The inbox it went back to, and its id there.
    pub inbox: String,
    pub new_message_id: String,
}

/// One archived event (an extension: EventBridge cannot list an archive's events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedEvent {
    /// Where the next page starts after this event.
    pub cursor: ArchiveCursor,
    pub time: DateTime<Utc>,
    /// The event as the bus delivered it.
    pub body: String,
}

/// A position in an archive, between two events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ArchiveCursor {
    pub time_ms: i64,
    pub seq: i64,
}
