//! What a bus call can fail with, as one value a caller can show, match and classify.

use std::path::PathBuf;

/// Why a bus call failed as a whole. (A PutEvents entry that fails alone is an
/// [`EntryResult::Failed`](super::EntryResult::Failed), not an error.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// A field of the request is out of bounds or malformed; `field` names it.
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("the request has {count} entries; PutEvents takes at most {limit}")]
    TooManyEntries { count: usize, limit: usize },
    #[error("rule `{rule}`: invalid event pattern: {reason}")]
    InvalidPattern { rule: String, reason: String },
    #[error("rule `{0}` does not exist")]
    RuleNotFound(String),
    #[error("rule `{rule}` still has {targets} target(s); remove them before deleting it")]
    RuleHasTargets { rule: String, targets: usize },
    #[error("rule `{rule}` would have {count} targets; a rule has at most {limit}")]
    TooManyTargets { rule: String, count: usize, limit: usize },
    #[error("inbox `{0}` does not exist")]
    UnknownInbox(String),
    #[error("inbox `{inbox}`: receipt `{receipt}` is not valid: {reason}")]
    InvalidReceipt { inbox: String, receipt: String, reason: String },
    #[error("archive `{0}` does not exist")]
    ArchiveNotFound(String),
    #[error("archive `{0}` already exists")]
    ArchiveExists(String),
    #[error("replay `{0}` does not exist")]
    ReplayNotFound(String),
    #[error("replay `{0}` already exists")]
    ReplayExists(String),
    #[error("replay `{name}` is {state}; only a STARTING or RUNNING replay can be cancelled")]
    ReplayNotCancellable { name: String, state: String },
    #[error("{active} replays are active; at most {limit} run at once")]
    TooManyReplays { active: usize, limit: usize },
    #[error("inbox `{inbox}` has no message `{message}`")]
    MessageNotFound { inbox: String, message: String },
    /// A dead-lettered message cannot go back: no rule targets the inbox it came from.
    #[error("message `{message}` cannot be redriven: {reason}")]
    RedriveImpossible { message: String, reason: String },
    /// The backend does not offer this operation (EventBridge cannot list an archive).
    #[error("{operation} is not supported by the {backend} backend")]
    Unsupported { operation: String, backend: String },
    /// The store could not do what was asked; nothing of the call was applied.
    #[error("{}: {kind}: {detail}", path.display())]
    Storage { path: PathBuf, kind: StorageFault, detail: String },
    /// An AWS service refused or failed the call.
    #[error(transparent)]
    Service(Box<ServiceFailure>),
    /// The backend cannot be used as configured (no region, no credentials, a bad endpoint).
    #[error("{0}")]
    Config(String),
    /// The bus was closed, or its writer stopped.
    #[error("the bus is closed")]
    Closed,
    #[error("internal error: {0}")]
    Internal(String),
}

/// A call an AWS service refused or failed: `resource` names what it was about (a rule, a
/// queue, the bus), `code` is the service's error code (or `Timeout`, `Unreachable`, `Config`
/// when no answer came).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{service} {operation} `{resource}`: {code}: {message}")]
pub struct ServiceFailure {
    pub service: String,
    pub operation: String,
    pub resource: String,
    pub code: String,
    pub message: String,
    /// Whether another try may succeed (throttling, a 5xx answer, no answer at all).
    pub retryable: bool,
}

/// What went wrong with the store, as an operator would want it named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StorageFault {
    #[error("the database is locked by another process")]
    Locked,
    #[error("storage is full")]
    Full,
    #[error("the database is corrupt")]
    Corrupt,
    #[error("not a Choreo data directory")]
    Foreign,
    #[error("written by a newer Choreo")]
    Newer,
    #[error("the database is read-only")]
    ReadOnly,
    #[error("cannot open the data directory")]
    CannotOpen,
    #[error("i/o error")]
    Io,
}

impl BusError {
    /// Whether the same call may succeed if tried again later (a locked or full store, a
    /// busy writer); a caller backs off and retries only these.
    pub fn is_retryable(&self) -> bool {
        match self {
            BusError::Storage { kind, .. } => {
                matches!(kind, StorageFault::Locked | StorageFault::Full | StorageFault::Io)
            }
            BusError::Service(failure) => failure.retryable,
            _ => false,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        BusError::InvalidArgument { field: field.into(), reason: reason.into() }
    }
}
