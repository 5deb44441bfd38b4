//! The event an EventBridge target receives (`version`, `id`, `detail-type`, …, `detail`, and
//! `replay-name` when replayed), and its mapping to and from the envelope.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{EventBridgeError, PutEventsEntry, envelope_from_detail, is_cloud_event};
use crate::envelope::Envelope;

/// A delivered EventBridge event. `aws_lambda_events` has no `replay-name`, which replays
/// depend on, so it is kept beside the Lambda type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Wire")]
pub struct DeliveredEvent {
    #[serde(flatten)]
    pub event: EventBridgeEvent<Value>,
    /// The replay that re-sent this event; absent on a first delivery.
    #[serde(rename = "replay-name", default, skip_serializing_if = "Option::is_none")]
    pub replay_name: Option<String>,
}

/// A delivered event as read: the fields of [`EventBridgeEvent`] and `replay-name` side by
/// side. Read through `flatten`, every event would be buffered whole, its detail included,
/// before its fields were read.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Wire {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    id: Option<String>,
    detail_type: String,
    source: String,
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    time: Option<DateTime<Utc>>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    resources: Option<Vec<String>>,
    detail: Value,
    #[serde(default)]
    replay_name: Option<String>,
}

impl From<Wire> for DeliveredEvent {
    fn from(w: Wire) -> Self {
        let mut event = EventBridgeEvent::<Value>::default();
        event.version = w.version;
        event.id = w.id;
        event.detail_type = w.detail_type;
        event.source = w.source;
        event.account = w.account;
        event.time = w.time;
        event.region = w.region;
        event.resources = w.resources;
        event.detail = w.detail;
        Self { event, replay_name: w.replay_name }
    }
}

/// What EventBridge adds when it delivers an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryMeta {
    /// EventBridge's own id, new on every delivery of a replay; not the CloudEvent id.
    pub id: String,
    pub account: String,
    pub region: String,
    pub replay_name: Option<String>,
}

/// A delivered event read back: the CloudEvent and how it was delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub envelope: Envelope,
    pub meta: DeliveryMeta,
}

impl DeliveredEvent {
    /// The event a target receives for `envelope`. Its `time` is the CloudEvent's (or now, as
    /// EventBridge does for an entry without `Time`), to the second as EventBridge writes it.
    pub fn from_envelope(envelope: &Envelope, meta: &DeliveryMeta) -> Self {
        let time = envelope.time().copied().unwrap_or_else(Utc::now);
        Self::assemble(envelope.source(), envelope.event_type(), time, Vec::new(), envelope.to_json_value(), meta)
    }

    /// The event a target receives for a PutEvents entry received at `received_at`.
    pub fn from_entry(
        entry: &PutEventsEntry,
        meta: &DeliveryMeta,
        received_at: DateTime<Utc>,
    ) -> Result<Self, EventBridgeError> {
        let detail = match entry.detail_value()? {
            detail @ Value::Object(_) => detail,
            other => return Err(EventBridgeError::DetailNotObject { found: other }),
        };
        Ok(Self::assemble(
            &entry.source,
            &entry.detail_type,
            entry.time.unwrap_or(received_at),
            entry.resources.clone(),
            detail,
            meta,
        ))
    }

    fn assemble(
        source: &str,
        detail_type: &str,
        time: DateTime<Utc>,
        resources: Vec<String>,
        detail: Value,
        meta: &DeliveryMeta,
    ) -> Self {
        let mut event = EventBridgeEvent::<Value>::default();
        event.version = Some("0".to_owned());
        event.id = Some(meta.id.clone());
        event.detail_type = detail_type.to_owned();
        event.source = source.to_owned();
        event.account = Some(meta.account.clone());
        event.time = Some(time.trunc_subsecs(0));
        event.region = Some(meta.region.clone());
        event.resources = Some(resources);
        event.detail = detail;
        Self { event, replay_name: meta.replay_name.clone() }
    }

    /// The CloudEvent and its delivery. A `detail` holding a structured CloudEvent is that
    /// event; any other `detail` becomes the data of a CloudEvent made from the EventBridge
    /// envelope (id, source, detail-type, time), as AWS's input transformer recipe does.
    pub fn to_delivery(&self) -> Result<Delivery, EventBridgeError> {
        self.clone().into_delivery()
    }

    /// [`Self::to_delivery`], moving the detail into the envelope rather than copying it.
    pub fn into_delivery(self) -> Result<Delivery, EventBridgeError> {
        let event = self.event;
        let meta = DeliveryMeta {
            id: event.id.ok_or(EventBridgeError::MissingField { field: "id" })?,
            account: event.account.ok_or(EventBridgeError::MissingField { field: "account" })?,
            region: event.region.ok_or(EventBridgeError::MissingField { field: "region" })?,
            replay_name: self.replay_name,
        };
        let detail = match event.detail {
            Value::Object(detail) => detail,
            other => return Err(EventBridgeError::DetailNotObject { found: other }),
        };
        let envelope = if is_cloud_event(&detail) {
            envelope_from_detail(detail, &event.source, &event.detail_type)?
        } else {
            Envelope::from_foreign(&meta.id, &event.source, &event.detail_type, event.time, Value::Object(detail))?
        };
        Ok(Delivery { envelope, meta })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::envelope::AuthType;

    fn meta(replay: Option<&str>) -> DeliveryMeta {
        DeliveryMeta {
            id: "6a7e8feb-b491-4cf7-a9f1-bf3703467718".into(),
            account: "123456789012".into(),
            region: "eu-west-1".into(),
            replay_name: replay.map(str::to_owned),
        }
    }

    fn envelope() -> Envelope {
        Envelope::builder("agents.payments", "PaymentIssueResolved")
            .data(json!({"order_id": "o-1001"}))
            .auth(AuthType::AppUser, "c-1001")
            .extension("region", "eu-west-1")
            .build()
            .unwrap()
    }

    #[test]
    fn delivered_shape_is_eventbridge_s() {
        let e = envelope();
        let wire = serde_json::to_value(DeliveredEvent::from_envelope(&e, &meta(None))).unwrap();
        let mut keys: Vec<_> = wire.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        let expected = ["account", "detail", "detail-type", "id", "region", "resources", "source", "time", "version"];
        assert_eq!(keys, expected);
        assert_eq!(wire["version"], "0");
        assert_eq!(wire["detail"], e.to_json_value());
        let time = wire["time"].as_str().unwrap();
        assert!(time.ends_with('Z') && !time.contains('.'), "{time}");
    }

    #[test]
    fn envelope_and_replay_name_survive_delivery() {
        let e = envelope();
        for replay in [None, Some("replay-2024-11-29")] {
            let delivered = DeliveredEvent::from_envelope(&e, &meta(replay));
            let wire = serde_json::to_string(&delivered).unwrap();
            let back: DeliveredEvent = serde_json::from_str(&wire).unwrap();
            assert_eq!(back, delivered);
            let delivery = back.to_delivery().unwrap();
            assert_eq!(delivery.envelope, e);
            assert_eq!(delivery.meta, meta(replay));
        }
    }

    #[test]
    fn aws_service_event_becomes_a_cloud_event_of_its_envelope() {
        let delivered: DeliveredEvent = serde_json::from_value(json!({
            "version": "0", "id": "7bf73129-1428-4cd3-a780-95db273d1602",
            "detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2",
            "account": "123456789012", "time": "2015-11-11T21:29:54Z", "region": "us-east-1",
            "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],
            "detail": {"instance-id": "i-abcd1111", "state": "pending"}
        }))
        .unwrap();
        let Delivery { envelope, meta } = delivered.to_delivery().unwrap();
        assert_eq!(envelope.id(), "7bf73129-1428-4cd3-a780-95db273d1602");
        assert_eq!(envelope.source(), "aws.ec2");
        assert_eq!(envelope.event_type(), "EC2 Instance State-change Notification");
        assert_eq!(envelope.time().unwrap().to_rfc3339(), "2015-11-11T21:29:54+00:00");
        assert_eq!(envelope.data(), Some(&json!({"instance-id": "i-abcd1111", "state": "pending"})));
        assert_eq!(envelope.data_schema(), None);
        assert_eq!(meta.region, "us-east-1");
        assert_eq!(meta.replay_name, None);
    }

    #[test]
    fn entry_delivers_with_its_resources_and_the_receipt_time_when_untimed() {
        let mut entry = PutEventsEntry::from_envelope(&envelope());
        entry.time = None;
        entry.resources = vec!["arn:aws:s3:::bucket".into()];
        let received = DateTime::parse_from_rfc3339("2024-11-29T10:15:00.750Z").unwrap().to_utc();
        let delivered = DeliveredEvent::from_entry(&entry, &meta(None), received).unwrap();
        assert_eq!(delivered.event.time.unwrap().to_rfc3339(), "2024-11-29T10:15:00+00:00");
        assert_eq!(delivered.event.resources, Some(entry.resources.clone()));
        entry.detail = "\"text\"".into();
        assert!(matches!(
            DeliveredEvent::from_entry(&entry, &meta(None), received),
            Err(EventBridgeError::DetailNotObject { .. })
        ));
    }

    #[test]
    fn missing_delivery_fields_and_disagreeing_envelopes_are_refused() {
        let mut delivered = DeliveredEvent::from_envelope(&envelope(), &meta(None));
        delivered.event.detail_type = "SupportTriaged".into();
        assert!(matches!(delivered.to_delivery(), Err(EventBridgeError::DetailTypeMismatch { .. })));
        delivered.event.account = None;
        assert!(matches!(delivered.to_delivery(), Err(EventBridgeError::MissingField { field: "account" })));
    }
}
