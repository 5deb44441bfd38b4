//! `POST /v1/support-requests`: a customer asks for help with an order. The customer is the
//! bearer token's, never the body's; the answer names the case and its first event.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use choreo_schemas::Envelope;
use choreo_schemas::catalog::{self, CatalogEvent, Channel, OrderSupportPlaced, ValidationError};
use choreo_schemas::envelope::{AuthType, Budget, EnvelopeBuilder, new_traceparent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::Inner;
use super::idempotency::check_key;
use super::problem::{Kind, Problem, ProblemDetail, ProblemDocument};
use super::request::{customer, is_json, media_type, principal, read_body};

/// The event source of support requests.
pub const SOURCE: &str = "retail.support-api";

/// The header making a retried request answer the same case.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A customer's request (the body of `POST /v1/support-requests`). The customer comes from
/// the bearer token; a `customer_id` (or any other field) in the body is refused.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SupportRequest {
    /// The order the request is about, e.g. `o-1001`.
    #[schema(example = "o-1001")]
    pub order_id: String,
    /// The customer's message, in their own words (1 to 4000 characters).
    #[schema(example = "I was charged twice and one item never arrived.")]
    pub message: String,
    /// The date by which the customer needs the order (`YYYY-MM-DD`).
    #[schema(value_type = Option<String>, format = Date, example = "2026-12-02")]
    pub needed_by: Option<chrono::NaiveDate>,
}

/// The answer to a placed request: the case and its first event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SupportCase {
    /// The case: the `correlationid` of every event that follows from the request.
    pub case_id: String,
    /// The CloudEvent `id` of the `OrderSupportPlaced` event.
    pub event_id: String,
}

const FIELDS: [&str; 3] = ["order_id", "message", "needed_by"];

/// Places a support request: one `OrderSupportPlaced` event on the bus, opening a case.
#[utoipa::path(
    post,
    path = "/v1/support-requests",
    operation_id = "placeSupportRequest",
    tag = "ingest",
    request_body(content = SupportRequest, content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<String>, Header,
            description = "1 to 255 visible ASCII characters, scoped to the customer: the same key with the same body \
                           answers the same case and publishes nothing new; with another body it is a 422"),
    ),
    responses(
        (status = 202, description = "The case is open: its first event is on the bus", body = SupportCase),
        (status = 400, description = "Malformed body or Idempotency-Key", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer token", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 403, description = "Not a customer token", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 413, description = "Body over the limit", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = ProblemDocument, content_type = "application/problem+json"),
        (status = 422, description = "Breaks the OrderSupportPlaced schema (with the pointer), or the key was used for another body",
            body = ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "The bus is unavailable; retry (with the same key) after Retry-After", body = ProblemDocument,
            content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds"))),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn place(State(ingest): State<Arc<Inner>>, headers: HeaderMap, body: Body) -> Response {
    match place_request(&ingest, &headers, body).await {
        Ok((case, replayed)) => {
            let mut response = (StatusCode::ACCEPTED, Json(case)).into_response();
            if replayed {
                response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            }
            response
        }
        Err(problem) => problem.into_response(),
    }
}

async fn place_request(ingest: &Inner, headers: &HeaderMap, body: Body) -> Result<(SupportCase, bool), Problem> {
    let customer = customer(principal(&ingest.verifier, &ingest.tokens, headers)?)?;
    let key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(value) => Some(check_key(value.as_bytes()).map_err(Problem::malformed)?.to_owned()),
    };
    match media_type(headers) {
        Some(essence) if is_json(&essence) => {}
        other => {
            let found = other.map_or_else(|| "absent".to_owned(), |e| format!("{e:?}"));
            return Err(Problem::new(
                Kind::UnsupportedMediaType,
                format!("a support request is application/json; Content-Type was {found}"),
            ));
        }
    }
    let bytes = read_body(headers, body, ingest.max_request_bytes).await?;
    let request = parse(&bytes)?;
    let canonical = serde_json::to_string(&request).map_err(|e| internal(&e))?;
    let event = EnvelopeBuilder::of(SOURCE, &request)
        .subject(format!("orders/{}", request.order_id))
        .auth(AuthType::AppUser, &customer)
        .budget(Budget::default())
        .traceparent(new_traceparent())
        .build()
        .map_err(|e| internal(&e))?;
    let Some(key) = key else {
        ingest.publish(std::slice::from_ref(&event), false).await?;
        return Ok((case_of(&event), false));
    };
    // One request per key at a time: a second one waits, then finds the first one's record.
    let _guard = ingest.idempotency.lock(&customer, &key).lock().await;
    let record = ingest
        .idempotency
        .claim(&customer, &key, canonical.clone(), event.to_json_string())
        .await
        .map_err(|e| Problem::new(Kind::Internal, e))?;
    if record.request != canonical {
        return Err(Problem::new(
            Kind::IdempotencyKeyReused,
            format!("Idempotency-Key {key:?} was used for a different request; use a new key for a new request"),
        ));
    }
    let event = Envelope::from_json_str(&record.event).map_err(|e| internal(&e))?;
    if record.published {
        return Ok((case_of(&event), true));
    }
    // A first attempt that met a 503 left the event unpublished: send that same event again.
    ingest.publish(std::slice::from_ref(&event), false).await?;
    ingest.idempotency.mark_published(&customer, &key).await.map_err(|e| Problem::new(Kind::Internal, e))?;
    Ok((case_of(&event), false))
}

fn case_of(event: &Envelope) -> SupportCase {
    SupportCase { case_id: event.correlation_id().unwrap_or(event.id()).to_owned(), event_id: event.id().to_owned() }
}

fn internal(e: &dyn std::fmt::Display) -> Problem {
    Problem::new(Kind::Internal, format!("the support request could not be recorded: {e}"))
}

/// The request's data: the body's fields, checked against the `OrderSupportPlaced` schema.
fn parse(bytes: &[u8]) -> Result<OrderSupportPlaced, Problem> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        Problem::malformed(format!("the body is not JSON: {e}")).with_error(ProblemDetail::at("", e.to_string()))
    })?;
    let Value::Object(mut fields) = value else {
        return Err(Problem::malformed("the body must be a JSON object"));
    };
    if let Some(field) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        let reason = if field == "customer_id" || field == "customer" {
            "the customer comes from the bearer token, never from the body".to_owned()
        } else {
            format!("unknown field; a support request has {}", FIELDS.join(", "))
        };
        return Err(schema_violation(vec![ProblemDetail::at(format!("/{field}"), reason)]));
    }
    if fields.get("needed_by").is_some_and(Value::is_null) {
        fields.remove("needed_by");
    }
    fields.insert("channel".into(), serde_json::to_value(Channel::Web).map_err(|e| internal(&e))?);
    let data = Value::Object(fields);
    match catalog::validate(OrderSupportPlaced::NAME, &data) {
        Ok(()) => {}
        Err(ValidationError::Invalid { pointer, reason, .. }) => {
            return Err(schema_violation(vec![ProblemDetail::at(pointer, reason)]));
        }
        Err(other) => return Err(Problem::new(Kind::Internal, other.to_string())),
    }
    serde_json::from_value(data).map_err(|e| schema_violation(vec![ProblemDetail::at("", e.to_string())]))
}

fn schema_violation(errors: Vec<ProblemDetail>) -> Problem {
    let detail = match errors.first() {
        Some(e) => format!(
            "the support request breaks the {} schema at {:?}: {}",
            OrderSupportPlaced::NAME,
            e.pointer,
            e.reason
        ),
        None => format!("the support request breaks the {} schema", OrderSupportPlaced::NAME),
    };
    Problem::new(Kind::SchemaViolation, detail).with_errors(errors)
}
