//! `POST /v1/events`: CloudEvents over HTTP from existing systems, with a service token. Every
//! event of a request is checked (the spec, its size, its schema in the catalog) before any is
//! published: a request is all or nothing on validation.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use choreo_schemas::Envelope;
use choreo_schemas::catalog::{self, ValidationError};
use choreo_schemas::eventbridge::PutEventsEntry;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::binding::{self, Mode};
use super::problem::{Kind, Problem, ProblemDetail, ProblemDocument};
use super::request::{principal, read_body, service};
use super::{Inner, MAX_EVENT_BYTES};

/// The answer to published events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EventsAccepted {
    /// The CloudEvent `id` of each event, in request order; all are on the bus.
    pub event_ids: Vec<String>,
}

/// Publishes CloudEvents: one in structured or binary mode, or a batch.
#[utoipa::path(
    post,
    path = "/v1/events",
    operation_id = "publishEvents",
    tag = "ingest",
    request_body(
        description = "Structured mode (application/cloudevents+json), batched mode (application/cloudevents-batch+json, \
                       a JSON array, may be empty) or binary mode (ce- headers, percent-encoded as the HTTP binding \
                       1.0.2 says, with a JSON body). Media types are compared case-insensitively.",
        content(
            (CloudEvent = "application/cloudevents+json"),
            (Vec<CloudEvent> = "application/cloudevents-batch+json"),
            (serde_json::Value = "application/json"),
        )
    ),
    responses(
        (status = 202, description = "Every event is on the bus", body = EventsAccepted),
        (status = 400, description = "Not valid CloudEvents (each fault with its pointer and batch index)", body = ProblemDocument,
            content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer token", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "Not a service token", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 413, description = "Body over 1 MiB, or an event over 256 KiB", body = ProblemDocument,
            content_type = "application/problem+json"),
        (status = 415, description = "Not a CloudEvents content mode, or data that is not JSON", body = ProblemDocument,
            content_type = "application/problem+json"),
        (status = 422, description = "Data breaks its catalog schema (schema-violation, nothing published), or the bus \
                                      refused events for good (events-refused, the accepted ones listed)", body = ProblemDocument,
            content_type = "application/problem+json"),
        (status = 503, description = "The bus is unavailable; send the same events again after Retry-After", body = ProblemDocument,
            content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds"))),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn publish(State(ingest): State<Arc<Inner>>, headers: HeaderMap, body: Body) -> Response {
    match publish_request(&ingest, &headers, body).await {
        Ok(event_ids) => (StatusCode::ACCEPTED, Json(EventsAccepted { event_ids })).into_response(),
        Err(problem) => problem.into_response(),
    }
}

async fn publish_request(ingest: &Inner, headers: &HeaderMap, body: Body) -> Result<Vec<String>, Problem> {
    service(principal(&ingest.verifier, &ingest.tokens, headers)?)?;
    let mode = binding::mode(headers)?;
    let bytes = read_body(headers, body, ingest.max_request_bytes).await?;
    let events = binding::decode(mode, headers, &bytes)?;
    let batch = mode == Mode::Batch;
    if !surely_small(mode, bytes.len()) {
        check_sizes(&events, batch)?;
    }
    check_schemas(&events, batch)?;
    if events.is_empty() {
        return Ok(Vec::new());
    }
    ingest.publish(&events, batch).await
}

/// Whether no event read from a body of `body_len` bytes can be over the event limit, so that
/// measuring each is needless: an event's PutEvents size is its source, type and compact JSON
/// (plus 14 bytes for the time), and compact JSON is at most ~6 times its text (`1e20` is
/// written `100000000000000000000.0`). Binary-mode attributes come in headers: always measured.
fn surely_small(mode: Mode, body_len: usize) -> bool {
    mode != Mode::Binary && body_len.saturating_mul(8).saturating_add(64) <= MAX_EVENT_BYTES
}

fn index(batch: bool, i: usize) -> Option<usize> {
    batch.then_some(i)
}

/// 413 for any event over the PutEvents entry limit, counted as EventBridge counts it.
fn check_sizes(events: &[Envelope], batch: bool) -> Result<(), Problem> {
    let errors: Vec<ProblemDetail> = events
        .iter()
        .enumerate()
        .filter_map(|(i, event)| {
            let size = PutEventsEntry::from_envelope(event).size();
            (size > MAX_EVENT_BYTES).then(|| {
                let reason = format!("the event is {size} bytes as a PutEvents entry; the limit is {MAX_EVENT_BYTES}");
                ProblemDetail::at("", reason).in_event(index(batch, i))
            })
        })
        .collect();
    if errors.is_empty() {
        return Ok(());
    }
    let detail =
        format!("{} event(s) over the {MAX_EVENT_BYTES}-byte event limit; nothing was published", errors.len());
    Err(Problem::new(Kind::PayloadTooLarge, detail).with_errors(errors))
}

/// 422 for any event of the catalog whose data breaks its schema; events of types the catalog
/// does not know are published as they are (the publisher's rule).
fn check_schemas(events: &[Envelope], batch: bool) -> Result<(), Problem> {
    let mut errors = Vec::new();
    for (i, event) in events.iter().enumerate() {
        if catalog::lookup(event.event_type()).is_none() {
            continue;
        }
        let (pointer, reason) = match catalog::validate_envelope(event) {
            Ok(()) => continue,
            Err(ValidationError::Invalid { pointer, reason, .. }) => (format!("/data{pointer}"), reason),
            Err(e @ ValidationError::MissingData { .. }) => ("/data".to_owned(), e.to_string()),
            Err(e @ ValidationError::DataSchemaMismatch { .. }) => ("/dataschema".to_owned(), e.to_string()),
            Err(e) => (String::new(), e.to_string()),
        };
        errors.push(ProblemDetail::at(pointer, reason).in_event(index(batch, i)));
    }
    if errors.is_empty() {
        return Ok(());
    }
    let detail = match errors.as_slice() {
        [one] => format!("{} at {:?}; nothing was published", one.reason, one.pointer),
        many => format!("{} events break their schema; nothing was published", many.len()),
    };
    Err(Problem::new(Kind::SchemaViolation, detail).with_errors(errors))
}

/// A CloudEvent in the JSON event format (for the OpenAPI document).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct CloudEvent {
    /// `1.0`.
    specversion: String,
    /// Unique per source; consumers ignore an id they have seen.
    id: String,
    /// A URI-reference naming the producer, e.g. `retail.backoffice`.
    source: String,
    /// The event type, e.g. `OrderShipped`; catalog types are checked against their schema.
    #[serde(rename = "type")]
    event_type: String,
    /// The entity, e.g. `orders/o-1001`.
    subject: Option<String>,
    /// RFC 3339.
    time: Option<String>,
    /// A JSON media type.
    datacontenttype: Option<String>,
    /// For catalog types, `urn:choreo:schema:<type>:<version>`.
    dataschema: Option<String>,
    /// The event data (JSON).
    #[schema(value_type = Object)]
    data: Option<serde_json::Value>,
}
