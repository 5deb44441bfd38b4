//! The envelope on EventBridge, both ways: a CloudEvent as a PutEvents entry, and a delivered
//! EventBridge event (ours, replayed, or an AWS service's) as a CloudEvent.

mod delivered;
mod put_events;

use serde_json::{Map, Value};

pub use delivered::{DeliveredEvent, Delivery, DeliveryMeta};
pub use put_events::PutEventsEntry;

use crate::envelope::{Envelope, EnvelopeError};

/// Why an EventBridge event or entry could not be mapped to or from a CloudEvent.
#[derive(Debug, thiserror::Error)]
pub enum EventBridgeError {
    #[error("`Detail` is not json: {source}")]
    DetailNotJson { detail: String, source: serde_json::Error },
    #[error("`detail` must be a json object, found {found}")]
    DetailNotObject { found: Value },
    #[error("the cloudevent under `detail` is invalid: {0}")]
    InvalidCloudEvent(#[from] EnvelopeError),
    #[error("source `{envelope}` disagrees with the cloudevent's source `{event}`")]
    SourceMismatch { envelope: String, event: String },
    #[error("detail-type `{envelope}` disagrees with the cloudevent's type `{event}`")]
    DetailTypeMismatch { envelope: String, event: String },
    #[error("the delivered event has no `{field}`")]
    MissingField { field: &'static str },
}

/// A `detail` holding a structured CloudEvent carries its `specversion`; anything else (an AWS
/// service event, a plain producer) is bare data.
fn is_cloud_event(detail: &Map<String, Value>) -> bool {
    detail.contains_key("specversion")
}

/// Reads the CloudEvent out of `detail` and checks it agrees with the EventBridge envelope
/// around it, so that rules matching on `source`/`detail-type` see what consumers get.
fn envelope_from_detail(
    detail: Map<String, Value>,
    source: &str,
    detail_type: &str,
) -> Result<Envelope, EventBridgeError> {
    let envelope = Envelope::from_json_value(Value::Object(detail))?;
    if envelope.source() != source {
        return Err(EventBridgeError::SourceMismatch {
            envelope: source.to_owned(),
            event: envelope.source().to_owned(),
        });
    }
    if envelope.event_type() != detail_type {
        return Err(EventBridgeError::DetailTypeMismatch {
            envelope: detail_type.to_owned(),
            event: envelope.event_type().to_owned(),
        });
    }
    Ok(envelope)
}
