//! The HTTP ingest API (axum): customers place support requests, existing systems publish
//! CloudEvents over HTTP (structured, binary and batched modes of the HTTP protocol binding
//! 1.0.2). Every error is an `application/problem+json` document with a stable `type`.
//!
//! | route | caller | answer |
//! |---|---|---|
//! | `POST /v1/support-requests` | customer token | 202 `{"case_id", "event_id"}` |
//! | `POST /v1/events` | service token | 202 `{"event_ids": [...]}` |
//! | `GET /v1/openapi.json` | anyone | the OpenAPI document (also checked in as `producers/openapi.json`) |
//!
//! Problem types (`https://choreo.dev/problems/<slug>`): `malformed-request` (400),
//! `unauthorized` (401), `forbidden` (403), `payload-too-large` (413), `unsupported-media-type`
//! (415), `schema-violation` (422, with the JSON pointer and batch index),
//! `idempotency-key-reused` (422), `events-refused` (422: the bus refused entries for good; the
//! ones it accepted are listed), `bus-unavailable` (503, with `Retry-After`), `internal-error`
//! (500).
//!
//! Events go onto the bus only through the [`Publisher`]; an answer is 202 only once the bus
//! has accepted every event of the request.
//!
//! ```no_run
//! # async fn serve(data_dir: &std::path::Path, publisher: choreo_producers::Publisher, verifier: choreo_auth::Verifier) -> Result<(), Box<dyn std::error::Error>> {
//! use choreo_producers::http::Ingest;
//!
//! let ingest = Ingest::open(data_dir, publisher, verifier)?;
//! let app = axum::Router::new().merge(ingest.router()); // beside other routers
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

mod binding;
mod dynamo;
mod events;
mod idempotency;
mod openapi;
mod problem;
mod request;
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use choreo_auth::Verifier;
use choreo_schemas::Envelope;

pub use binding::{BATCH_JSON, STRUCTURED_JSON, decode_header_value};
pub use events::EventsAccepted;
pub use idempotency::{MAX_KEY_LEN, StoreError};
pub use openapi::openapi_json;
pub use problem::{Kind, PROBLEM_BASE, PROBLEM_JSON, Problem, ProblemDetail, ProblemDocument};
pub use request::TOKEN_CACHE_TTL;
pub use support::{SupportCase, SupportRequest};

use crate::{Outcome, PublishError, Publisher};

/// The largest request body taken by default: 1 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// The largest event: EventBridge's 256 KiB PutEvents entry limit, counted as it counts.
pub const MAX_EVENT_BYTES: usize = choreo_bus::api::MAX_ENTRY_BYTES;
/// The `Retry-After` of a 503 by default.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why the ingest API could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The data directory could not be created.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The idempotency store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The ingest API: its settings and state; [`Ingest::router`] serves it. Cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    inner: Inner,
}

/// The state the handlers share.
#[derive(Clone)]
pub(crate) struct Inner {
    publisher: Publisher,
    verifier: Verifier,
    idempotency: Arc<idempotency::Idempotency>,
    tokens: Arc<request::TokenCache>,
    max_request_bytes: usize,
    retry_after: Duration,
}

impl Ingest {
    /// Opens the ingest API on `data_dir` (idempotency records in `<data_dir>/ingest.db`),
    /// publishing with `publisher` and checking bearer tokens with `verifier`.
    pub fn open(data_dir: &Path, publisher: Publisher, verifier: Verifier) -> Result<Self, IngestError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|source| IngestError::DataDir { path: data_dir.display().to_string(), source })?;
        let idempotency = Arc::new(idempotency::Idempotency::open(data_dir)?);
        Ok(Self {
            inner: Inner {
                publisher,
                verifier,
                idempotency,
                tokens: Arc::default(),
                max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
                retry_after: DEFAULT_RETRY_AFTER,
            },
        })
    }

    /// The largest request body taken (1 MiB unless set); a larger one is a 413.
    #[must_use]
    pub fn with_max_request_bytes(mut self, bytes: usize) -> Self {
        self.inner.max_request_bytes = bytes;
        self
    }

    /// Keeps the `Idempotency-Key` records in DynamoDB table `table` (reached with `sdk`)
    /// instead of `<data_dir>/ingest.db`: shared by every instance of a Lambda function.
    #[must_use]
    pub fn with_idempotency_table(mut self, sdk: &aws_config::SdkConfig, table: &str) -> Self {
        if let Some(records) = Arc::get_mut(&mut self.inner.idempotency) {
            records.set_table(dynamo::TableRecords::new(sdk, table));
        } else {
            tracing::warn!("the ingest API's routers exist already: idempotency records stay in the file");
        }
        self
    }

    /// The `Retry-After` sent with a 503 (rounded up to whole seconds, at least 1).
    #[must_use]
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.inner.retry_after = after;
        self
    }

    /// The routes `POST /v1/support-requests`, `POST /v1/events` and `GET /v1/openapi.json`
    /// with this API's settings; routers made from one `Ingest` (or its clones) share its
    /// idempotency store. The router has no fallback, so `merge` it with others freely.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/support-requests", post(support::place))
            .route("/v1/events", post(events::publish))
            .route("/v1/openapi.json", get(openapi::serve))
            .with_state(Arc::new(self.inner.clone()))
    }
}

impl Inner {
    fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0)
    }

    /// Puts `events` on the bus: their CloudEvent ids when the bus accepted every one; a 503
    /// when it is unavailable or kept failing entries that may pass later; a 422 when it refused
    /// some for good. Both problems list what the bus did accept; `batch` puts indexes on them.
    async fn publish(&self, events: &[Envelope], batch: bool) -> Result<Vec<String>, Problem> {
        let (outcomes, unavailable) = match self.publisher.publish_checked(events).await {
            Ok(outcomes) => (outcomes, None),
            Err(PublishError::Unavailable { source, outcomes }) => (outcomes, Some(source.to_string())),
        };
        let mut accepted = Vec::new();
        let mut errors = Vec::new();
        let mut transient = unavailable.is_some();
        for (i, (event, outcome)) in events.iter().zip(&outcomes).enumerate() {
            let index = batch.then_some(i);
            match outcome {
                Outcome::Published { .. } => accepted.push(event.id().to_owned()),
                Outcome::Refused { reason } => errors.push(ProblemDetail::at("", reason.clone()).in_event(index)),
                Outcome::Failed { code, message, attempts } => {
                    transient |= outcome.is_retryable();
                    let reason = format!("{code}: {message} (after {attempts} attempts)");
                    errors.push(ProblemDetail::at("", reason).in_event(index));
                }
            }
        }
        if errors.is_empty() {
            return Ok(accepted);
        }
        let problem = if transient {
            let why = unavailable.unwrap_or_else(|| "it kept failing entries".into());
            Problem::new(
                Kind::BusUnavailable,
                format!(
                    "the bus is unavailable ({why}); {} of {} events were accepted; send the request again: \
                     events keep their ids, and consumers ignore one they have seen",
                    accepted.len(),
                    events.len()
                ),
            )
            .retry_after(self.retry_after_secs().max(1))
        } else {
            Problem::new(Kind::EventsRefused, format!("the bus refused {} of {} events", errors.len(), events.len()))
        };
        Err(problem.with_errors(errors).with_accepted(accepted))
    }
}
