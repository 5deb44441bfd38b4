//! Problem documents (RFC 9457, `application/problem+json`): every error of the ingest API is
//! one, with a stable `type` a client can branch on.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The media type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The prefix of every problem `type`; the slug follows.
pub const PROBLEM_BASE: &str = "https://choreo.dev/problems/";

/// The kinds of problem, each with a stable slug (the end of its `type` URI) and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 400: the request cannot be read (bad JSON, a CloudEvent that breaks the spec, a bad
    /// header).
    Malformed,
    /// 401: no bearer token, or one that does not verify.
    Unauthorized,
    /// 403: a valid token of the wrong kind for the route.
    Forbidden,
    /// 413: the request body or one event is over its limit.
    PayloadTooLarge,
    /// 415: a content type the route does not take.
    UnsupportedMediaType,
    /// 422: the event data breaks its schema in the catalog.
    SchemaViolation,
    /// 422: an `Idempotency-Key` already used for a different request.
    IdempotencyKeyReused,
    /// 422: the bus refused some events for good (they will not be accepted on a retry).
    EventsRefused,
    /// 503: the bus is unavailable; retry after `Retry-After` seconds.
    BusUnavailable,
    /// 500: the ingest API's own store failed.
    Internal,
}

impl Kind {
    /// The slug: the last segment of the problem `type`.
    pub const fn slug(self) -> &'static str {
        match self {
            Kind::Malformed => "malformed-request",
            Kind::Unauthorized => "unauthorized",
            Kind::Forbidden => "forbidden",
            Kind::PayloadTooLarge => "payload-too-large",
            Kind::UnsupportedMediaType => "unsupported-media-type",
            Kind::SchemaViolation => "schema-violation",
            Kind::IdempotencyKeyReused => "idempotency-key-reused",
            Kind::EventsRefused => "events-refused",
            Kind::BusUnavailable => "bus-unavailable",
            Kind::Internal => "internal-error",
        }
    }

    /// The HTTP status of this kind of problem.
    pub const fn status(self) -> StatusCode {
        match self {
            Kind::Malformed => StatusCode::BAD_REQUEST,
            Kind::Unauthorized => StatusCode::UNAUTHORIZED,
            Kind::Forbidden => StatusCode::FORBIDDEN,
            Kind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Kind::SchemaViolation | Kind::IdempotencyKeyReused | Kind::EventsRefused => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Kind::BusUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short, fixed summary of this kind of problem.
    pub const fn title(self) -> &'static str {
        match self {
            Kind::Malformed => "The request is malformed",
            Kind::Unauthorized => "A valid bearer token is required",
            Kind::Forbidden => "The token may not use this route",
            Kind::PayloadTooLarge => "The request or an event is too large",
            Kind::UnsupportedMediaType => "The content type is not accepted here",
            Kind::SchemaViolation => "The event data breaks its schema",
            Kind::IdempotencyKeyReused => "The idempotency key was used for a different request",
            Kind::EventsRefused => "The bus refused some events",
            Kind::BusUnavailable => "The bus is unavailable",
            Kind::Internal => "The ingest API failed",
        }
    }

    /// The full problem `type` URI.
    pub fn type_uri(self) -> String {
        format!("{PROBLEM_BASE}{}", self.slug())
    }
}

/// One thing wrong, where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProblemDetail {
    /// A JSON pointer into the event (or the request body) at fault; for a binary-mode header,
    /// the pointer of the attribute it carries (e.g. `/source` for `ce-source`).
    pub pointer: String,
    /// What is wrong there.
    pub reason: String,
    /// The event's index in a batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
}

impl ProblemDetail {
    /// A detail at `pointer`, with no batch index.
    pub fn at(pointer: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { pointer: pointer.into(), reason: reason.into(), index: None }
    }

    /// The same detail, for the event at `index` of a batch.
    #[must_use]
    pub fn in_event(mut self, index: Option<usize>) -> Self {
        self.index = index;
        self
    }
}

/// A problem document as sent: the body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProblemDocument {
    /// `https://choreo.dev/problems/<slug>`; the slug is stable.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// The summary of the kind of problem.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// Each thing wrong, where it is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemDetail>,
    /// The ids of the events the bus accepted, when it did not accept all of a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<Vec<String>>,
}

/// An error answer: a problem of one [`Kind`], sent as a [`ProblemDocument`].
#[derive(Debug, Clone)]
pub struct Problem {
    kind: Kind,
    detail: String,
    errors: Vec<ProblemDetail>,
    accepted: Option<Vec<String>>,
    retry_after: Option<u64>,
}

impl Problem {
    /// A problem of `kind` with its `detail`.
    pub fn new(kind: Kind, detail: impl Into<String>) -> Self {
        Self { kind, detail: detail.into(), errors: Vec::new(), accepted: None, retry_after: None }
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Adds the details.
    #[must_use]
    pub fn with_errors(mut self, errors: Vec<ProblemDetail>) -> Self {
        self.errors = errors;
        self
    }

    /// Adds one detail.
    #[must_use]
    pub fn with_error(mut self, error: ProblemDetail) -> Self {
        self.errors.push(error);
        self
    }

    /// Lists the events accepted before the problem.
    #[must_use]
    pub fn with_accepted(mut self, accepted: Vec<String>) -> Self {
        self.accepted = Some(accepted);
        self
    }

    /// Sets `Retry-After` (seconds).
    #[must_use]
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// A malformed request.
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(Kind::Malformed, detail)
    }

    /// The document sent.
    pub fn document(&self) -> ProblemDocument {
        ProblemDocument {
            problem_type: self.kind.type_uri(),
            title: self.kind.title().to_owned(),
            status: self.kind.status().as_u16(),
            detail: self.detail.clone(),
            errors: self.errors.clone(),
            accepted: self.accepted.clone(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.document()).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (self.kind.status(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.kind == Kind::Unauthorized {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"choreo\""));
        }
        response
    }
}
