//! The WebSocket notifier: the customer-facing events of the bus (every agent's completion
//! acting for a customer), pushed to that customer and no one else, in order, each with a
//! sequence number the customer acknowledges, from a durable outbox.
//!
//! # How it fits
//!
//! - [`install`] puts the rule [`RULE`] on the bus: events whose `source` starts with `agents.`
//!   and whose CloudEvent (under `detail`) has `authtype` `app_user` and an `authid`, to the
//!   inbox [`INBOX`] (retries, then the dead-letter inbox `notifier-dlq`).
//! - [`Notifier::spawn`] consumes that inbox: each event becomes a notification of its customer
//!   (the `authid`), written durably with the customer's next sequence number, then the message
//!   is acknowledged. An event without `authtype` `app_user` or without `authid` is skipped (and
//!   acknowledged); a message that is not an EventBridge event carrying a CloudEvent is
//!   dead-lettered with the reason.
//! - A CloudEvent `id` gives at most one notification per customer: a redelivered or replayed
//!   event never makes a second one ([`Notifier::notify`] answers `None` for it).
//! - [`Notifier::router`] serves `GET /v1/notifications`, the WebSocket below.
//!
//! The store is `<data_dir>/notifier.db` (SQLite, WAL, every commit fsynced, commits grouped):
//! the notifications by customer and sequence number, and each customer's last acknowledged
//! number, which only moves forward.
//!
//! # The WebSocket protocol
//!
//! Connect with `GET /v1/notifications?token=<jwt>&after=<seq>`. The token may instead come as
//! `Authorization: Bearer <jwt>` (browsers cannot set headers on a WebSocket, hence the query;
//! the header wins when both are given). It must be a valid *customer* token of the configured
//! issuer. `after` is optional: without it the connection resumes after the customer's last
//! acknowledged sequence number; with it, after that number (a client that kept what it saw).
//!
//! Every frame is a JSON text frame. The server first says hello:
//!
//! ```json
//! {"type":"ready","customer":"c-1001","after":4}
//! ```
//!
//! then sends every notification after `after`, in sequence order, each exactly once on this
//! connection, and each new one as it arrives:
//!
//! ```json
//! {"type":"notification","seq":5,"id":"01JD…","case":"01JD…","event":"PaymentIssueResolved",
//!  "source":"agents.payments","time":"2024-11-29T10:00:03.120Z","data":{"order_id":"o-1001"}}
//! ```
//!
//! `id` is the CloudEvent id, `case` its `correlationid` (the id itself when it has none),
//! `event` its `type`, `data` its data (`null` when it has none). The client acknowledges:
//!
//! ```json
//! {"type":"ack","seq":5}
//! ```
//!
//! which acknowledges every notification up to and including 5 (acknowledging less than
//! before does nothing). What is not acknowledged is sent again on the next connection that
//! does not pass `after`. Several connections of one customer each receive everything.
//!
//! The server pings every 20 seconds; a connection that stays silent (no frame, no pong) for
//! 60 seconds is closed. Close codes, the reason always says why:
//!
//! | code | when |
//! |---|---|
//! | 4401 | the token is missing, malformed, forged, signed with an unknown key, or expired — at connect or later, when its `exp` passes (reason e.g. `token expired`) |
//! | 4403 | the token is valid but not a customer's (a service token) |
//! | 1002 | a protocol error: a frame that is not `{"type":"ack","seq":N}` (or `{"type":"hello"}`, which changes nothing here and is how a client begins on API Gateway: see [`aws`]), an ack beyond the last notification sent, an `after` beyond the last notification |
//! | 1003 | a binary frame |
//! | 4408 | nothing heard from the client for 60 seconds |
//! | 1001 | the server is shutting down (`going away`) |
//! | 1011 | the notification store failed |
//!
//! # Shutting down
//!
//! A WebSocket outlives the HTTP server's graceful shutdown (it is an upgraded connection), so
//! call [`Notifier::close_sessions`] when the server stops: every session then closes with
//! 1001 `going away`, and new connections are refused the same way.
//!
//! ```no_run
//! # async fn run(notifier: std::sync::Arc<choreo_notifier::Notifier>, listener: tokio::net::TcpListener,
//! #              stop: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
//! let sessions = notifier.clone();
//! axum::serve(listener, notifier.router())
//!     .with_graceful_shutdown(async move {
//!         stop.await;
//!         sessions.close_sessions();
//!     })
//!     .await
//! # }
//! ```

pub mod aws;
mod consumer;
mod fanout;
mod history;
mod protocol;
mod session;
mod store;
mod token;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use choreo_auth::Verifier;
use choreo_bus::api::{RetryPolicy, RuleSpec, RuleState, Target};
use choreo_bus::{Bus, BusError, Inboxes};
use choreo_schemas::Envelope;
use choreo_schemas::envelope::AuthType;
use tokio::sync::watch;

pub use consumer::Consumer;
pub use history::{CaseNotification, case_notifications};
pub use protocol::close_code;

use fanout::Fanout;
use store::{Pending, Store};

/// The name of the notifier's rule.
pub const RULE: &str = "notifier";
/// The notifier's inbox (its dead-letter inbox is `notifier-dlq`).
pub const INBOX: &str = "notifier";
/// The file of the notifier's store, in the data directory.
pub const STORE_FILE: &str = "notifier.db";
/// The path of the WebSocket.
pub const PATH: &str = "/v1/notifications";

/// The rule's event pattern: every agent's completion acting for a customer.
pub const PATTERN: &str =
    r#"{"source":[{"prefix":"agents."}],"detail":{"authtype":["app_user"],"authid":[{"exists":true}]}}"#;

/// Puts the rule [`RULE`] and its target, the inbox [`INBOX`] (5 retries with backoff within
/// an hour, then `notifier-dlq`, as the agents' inboxes).
pub async fn install(bus: &dyn Bus) -> Result<(), BusError> {
    bus.put_rule(RuleSpec {
        name: RULE.into(),
        event_pattern: PATTERN.into(),
        state: RuleState::Enabled,
        description: Some("Customer-facing agent completions, pushed to the customer by WebSocket".into()),
    })
    .await?;
    bus.put_targets(RULE, vec![Target::new(INBOX, INBOX).with_retry_policy(retry_policy())]).await
}

/// The retry policy of the notifier's rule target: 5 retries with backoff within an hour.
pub fn retry_policy() -> RetryPolicy {
    RetryPolicy {
        maximum_retry_attempts: 5,
        maximum_event_age: Duration::from_secs(3600),
        backoff_base: Duration::from_millis(200),
        backoff_cap: Duration::from_secs(60),
    }
}

/// Why the notifier could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifierError {
    /// The store failed; `retryable` when trying again later may work (a locked or busy
    /// database, a full disk).
    #[error("notifier store {}: {detail}", path.display())]
    Store { path: PathBuf, detail: String, retryable: bool },
    /// The store's writer has stopped.
    #[error("the notifier store is closed")]
    Closed,
}

impl NotifierError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, NotifierError::Store { retryable: true, .. })
    }
}

/// The notifier: its store, the live sessions of each customer and the token verifier.
pub struct Notifier {
    store: Store,
    fanout: Arc<Fanout>,
    verifier: Verifier,
    closing: watch::Sender<bool>,
    sessions: AtomicUsize,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("store", &self.store.path())
            .field("sessions", &self.live_sessions())
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Opens (creating if needed) the store `<data_dir>/notifier.db`; connections are checked
    /// with `verifier`.
    pub fn open(data_dir: &Path, verifier: Verifier) -> Result<Arc<Notifier>, NotifierError> {
        let fanout = Arc::new(Fanout::new());
        let store = Store::open(data_dir, fanout.clone())?;
        let (closing, _) = watch::channel(false);
        Ok(Arc::new(Notifier { store, fanout, verifier, closing, sessions: AtomicUsize::new(0) }))
    }

    /// Starts consuming the inbox [`INBOX`].
    pub fn spawn(self: &Arc<Self>, inboxes: Arc<dyn Inboxes>) -> Consumer {
        Consumer::spawn(self.clone(), inboxes)
    }

    /// The router serving `GET /v1/notifications`.
    pub fn router(self: &Arc<Self>) -> axum::Router {
        session::router(self.clone())
    }

    /// Makes `envelope` a notification of its customer, durably, and wakes that customer's
    /// sessions. Answers its sequence number, or `None` when the event is not for a customer
    /// (no `authtype` `app_user` or no `authid`) or was already notified (same CloudEvent `id`).
    pub async fn notify(&self, envelope: &Envelope) -> Result<Option<u64>, NotifierError> {
        let Some(pending) = Pending::of(envelope) else {
            return Ok(None);
        };
        let mut seqs = self.store.insert(vec![pending]).await?;
        Ok(seqs.pop().flatten())
    }

    /// The last sequence number given to `customer` and the last they acknowledged (0 when
    /// none).
    pub async fn cursor(&self, customer: &str) -> Result<(u64, u64), NotifierError> {
        self.store.cursor(customer).await
    }

    /// Closes every session with 1001 `going away`, and refuses new connections the same way.
    pub fn close_sessions(&self) {
        self.closing.send_replace(true);
    }

    /// How many WebSocket sessions are open.
    pub fn live_sessions(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }

    /// The store's file.
    pub fn store_path(&self) -> &Path {
        self.store.path()
    }

    pub(crate) fn queue_insert(&self, pending: Vec<Pending>) -> Result<store::Answer<Vec<Option<u64>>>, NotifierError> {
        self.store.queue_insert(pending)
    }
}

/// The customer an event is for: `authtype` `app_user` with a non-empty `authid`.
pub(crate) fn customer_of(envelope: &Envelope) -> Option<&str> {
    match (envelope.auth_type(), envelope.auth_id()) {
        (Some(AuthType::AppUser), Some(id)) if !id.is_empty() => Some(id),
        _ => None,
    }
}
