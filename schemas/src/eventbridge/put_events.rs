//! A PutEvents request entry with EventBridge's own field names, and its mapping to and from
//! the envelope: `Detail` is the whole structured CloudEvent.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::{EventBridgeError, envelope_from_detail, is_cloud_event};
use crate::envelope::Envelope;

/// One entry of a PutEvents request (`PutEventsRequestEntry`), as sent on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutEventsEntry {
    pub source: String,
    pub detail_type: String,
    /// A JSON object, as a string.
    pub detail: String,
    /// EventBridge uses the time of the call when this is absent.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "time")]
    pub time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub resources: Vec<String>,
    /// The bus, by name or ARN; the default bus when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_bus_name: Option<String>,
    /// An AWS X-Ray trace header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_header: Option<String>,
}

impl PutEventsEntry {
    /// The entry carrying `envelope`: `Source` = source, `DetailType` = type, `Time` = time,
    /// `Detail` = the structured CloudEvent.
    pub fn from_envelope(envelope: &Envelope) -> Self {
        Self {
            source: envelope.source().to_owned(),
            detail_type: envelope.event_type().to_owned(),
            detail: envelope.to_json_string(),
            time: envelope.time().copied(),
            resources: Vec::new(),
            event_bus_name: None,
            trace_header: None,
        }
    }

    /// The same entry, for the bus called `name`.
    #[must_use]
    pub fn with_event_bus_name(mut self, name: impl Into<String>) -> Self {
        self.event_bus_name = Some(name.into());
        self
    }

    /// The CloudEvent in `Detail`, checked against `Source` and `DetailType`.
    pub fn to_envelope(&self) -> Result<Envelope, EventBridgeError> {
        match self.detail_value()? {
            Value::Object(detail) if is_cloud_event(&detail) => {
                envelope_from_detail(detail, &self.source, &self.detail_type)
            }
            Value::Object(_) => {
                Err(EventBridgeError::InvalidCloudEvent(crate::envelope::EnvelopeError::MissingAttribute {
                    attribute: "specversion",
                }))
            }
            other => Err(EventBridgeError::DetailNotObject { found: other }),
        }
    }

    /// `Detail` read as JSON; EventBridge refuses an entry whose `Detail` is not an object.
    pub fn detail_value(&self) -> Result<Value, EventBridgeError> {
        serde_json::from_str(&self.detail)
            .map_err(|source| EventBridgeError::DetailNotJson { detail: self.detail.clone(), source })
    }

    /// The size EventBridge counts against its 256 KiB entry limit: 14 bytes for `Time`, and the
    /// UTF-8 length of `Source`, `DetailType`, `Detail` and each resource.
    pub fn size(&self) -> usize {
        let time = if self.time.is_some() { 14 } else { 0 };
        time + self.source.len()
            + self.detail_type.len()
            + self.detail.len()
            + self.resources.iter().map(String::len).sum::<usize>()
    }
}

/// `Time` as RFC 3339, or as epoch seconds, the AWS JSON protocol's timestamp.
fn time<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Text(DateTime<Utc>),
        Epoch(f64),
    }
    match Option::<Wire>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Wire::Text(time)) => Ok(Some(time)),
        Some(Wire::Epoch(seconds)) => {
            let millis = (seconds * 1000.0).round();
            // The range check keeps the cast below from saturating silently.
            if !millis.is_finite() || millis.abs() > 8.0e15 {
                return Err(serde::de::Error::custom(format!("`Time` {seconds} is out of range")));
            }
            DateTime::from_timestamp_millis(millis as i64)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("`Time` {seconds} is out of range")))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::envelope::AuthType;

    fn envelope() -> Envelope {
        Envelope::builder("agents.support", "SupportTriaged")
            .subject("orders/o-1001")
            .data(json!({"order_id": "o-1001", "issues": ["duplicate_charge"], "summary": "x"}))
            .auth(AuthType::AppUser, "c-1001")
            .extension("tenant", "retail")
            .build()
            .unwrap()
    }

    #[test]
    fn entry_carries_source_type_time_and_the_whole_event() {
        let e = envelope();
        let entry = PutEventsEntry::from_envelope(&e);
        assert_eq!(entry.source, "agents.support");
        assert_eq!(entry.detail_type, "SupportTriaged");
        assert_eq!(entry.time.as_ref(), e.time());
        assert!(entry.resources.is_empty());
        assert_eq!(entry.detail_value().unwrap(), e.to_json_value());
        let wire = serde_json::to_value(&entry).unwrap();
        assert!(wire["Detail"].is_string());
        assert_eq!(wire["DetailType"], "SupportTriaged");
        assert!(wire.get("EventBusName").is_none());
    }

    #[test]
    fn envelope_survives_the_entry() {
        let e = envelope();
        let entry = PutEventsEntry::from_envelope(&e).with_event_bus_name("choreo");
        let wire = serde_json::to_string(&entry).unwrap();
        let back: PutEventsEntry = serde_json::from_str(&wire).unwrap();
        assert_eq!(back, entry);
        assert_eq!(back.to_envelope().unwrap(), e);
    }

    #[test]
    fn disagreeing_source_or_detail_type_is_refused() {
        let mut entry = PutEventsEntry::from_envelope(&envelope());
        entry.source = "agents.payments".into();
        assert!(matches!(entry.to_envelope(), Err(EventBridgeError::SourceMismatch { .. })));
        let mut entry = PutEventsEntry::from_envelope(&envelope());
        entry.detail_type = "CaseEscalated".into();
        assert!(matches!(entry.to_envelope(), Err(EventBridgeError::DetailTypeMismatch { .. })));
    }

    #[test]
    fn detail_that_is_not_a_cloud_event_object_is_refused() {
        let mut entry = PutEventsEntry::from_envelope(&envelope());
        for (detail, expect) in [("[1]", "must be a json object"), ("{", "is not json"), ("{}", "specversion")] {
            entry.detail = detail.into();
            let message = entry.to_envelope().unwrap_err().to_string();
            assert!(message.contains(expect), "{detail}: {message}");
        }
    }

    #[test]
    fn time_reads_rfc3339_and_epoch_seconds() {
        let base = json!({"Source": "s", "DetailType": "t", "Detail": "{}"});
        let mut rfc = base.clone();
        rfc["Time"] = json!("2024-11-29T10:15:00Z");
        let mut epoch = base.clone();
        epoch["Time"] = json!(1_732_875_300);
        let a: PutEventsEntry = serde_json::from_value(rfc).unwrap();
        let b: PutEventsEntry = serde_json::from_value(epoch).unwrap();
        assert_eq!(a.time, b.time);
        let none: PutEventsEntry = serde_json::from_value(base).unwrap();
        assert_eq!(none.time, None);
        assert_eq!(none.size(), 1 + 1 + 2);
        assert_eq!(a.size(), 14 + 1 + 1 + 2);
    }
}
