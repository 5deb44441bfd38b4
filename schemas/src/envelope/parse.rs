//! Checks a structured CloudEvent attribute by attribute before the SDK reads it, so that a
//! bad event is refused with the attribute at fault rather than a bare serde message.

use chrono::DateTime;
use cloudevents::Event;
use cloudevents::event::{AttributesReader, AttributesWriter, Data, ExtensionValue, SpecVersion};
use serde_json::{Map, Value};
use url::Url;

use super::{AUTH_ID, AUTH_TYPE, AuthType, CAUSATION_ID, CORRELATION_ID, EnvelopeError, TRACEPARENT};

const STRING_EXTENSIONS: [&str; 5] = [CORRELATION_ID, CAUSATION_ID, TRACEPARENT, AUTH_TYPE, AUTH_ID];

/// What a JSON value is, for messages: `null`, `a boolean`, `a number`, `a string`, `an array`,
/// `an object`.
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(super) fn is_json_content_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

/// A JSON `null` attribute counts as absent, as the CloudEvents JSON format says.
fn present<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.get(name).filter(|v| !v.is_null())
}

fn required_string<'a>(map: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, EnvelopeError> {
    match present(map, name) {
        None => Err(EnvelopeError::MissingAttribute { attribute: name }),
        Some(Value::String(s)) if s.is_empty() => Err(EnvelopeError::invalid(name, s.as_str(), "must not be empty")),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(EnvelopeError::invalid(name, other.clone(), "must be a string")),
    }
}

fn optional_string<'a>(map: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, EnvelopeError> {
    match present(map, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(EnvelopeError::invalid(name, other.clone(), "must be a string")),
    }
}

pub(super) fn check_structured(map: &Map<String, Value>) -> Result<(), EnvelopeError> {
    let version = required_string(map, "specversion")?;
    if version != "1.0" {
        return Err(EnvelopeError::invalid("specversion", version, "only cloudevents 1.0 is supported"));
    }
    for name in ["id", "source", "type"] {
        required_string(map, name)?;
    }
    if let Some(ct) = optional_string(map, "datacontenttype")?
        && !is_json_content_type(ct)
    {
        return Err(EnvelopeError::invalid("datacontenttype", ct, "choreo event data is json"));
    }
    if let Some(schema) = optional_string(map, "dataschema")?
        && Url::parse(schema).is_err()
    {
        return Err(EnvelopeError::invalid("dataschema", schema, "must be an absolute uri"));
    }
    optional_string(map, "subject")?;
    if let Some(time) = optional_string(map, "time")?
        && DateTime::parse_from_rfc3339(time).is_err()
    {
        return Err(EnvelopeError::invalid("time", time, "must be an rfc 3339 timestamp"));
    }
    if let Some(b64) = present(map, "data_base64") {
        return Err(EnvelopeError::invalid("data_base64", b64.clone(), "choreo event data is json, not binary"));
    }
    for (name, value) in map {
        if is_context_attribute(name) || value.is_null() {
            continue;
        }
        check_extension_value(name, value)?;
    }
    Ok(())
}

/// The SDK's event for a map [`check_structured`] accepted, made with the SDK's own setters and
/// read as its JSON format reads one: a `null` attribute is absent, `data` is JSON (`null`
/// included), and every other member that is not `null` is an extension. The SDK's
/// `Deserialize` copies the whole event, its data included, through `Value` three times over;
/// this moves each member once. A test holds the two equal.
pub(super) fn event_of(mut map: Map<String, Value>) -> Result<Event, EnvelopeError> {
    fn take(map: &mut Map<String, Value>, name: &'static str) -> Option<String> {
        match map.remove(name) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    }
    let rejected = |reason: &str| EnvelopeError::Rejected { reason: reason.to_owned() };
    map.remove("specversion");
    let mut event = Event::default();
    event.set_id(take(&mut map, "id").ok_or_else(|| rejected("missing field `id`"))?);
    event.set_source(take(&mut map, "source").ok_or_else(|| rejected("missing field `source`"))?);
    event.set_type(take(&mut map, "type").ok_or_else(|| rejected("missing field `type`"))?);
    event.set_datacontenttype(take(&mut map, "datacontenttype"));
    let schema = take(&mut map, "dataschema").map(|s| Url::parse(&s)).transpose();
    event.set_dataschema(schema.map_err(|e| rejected(&e.to_string()))?);
    event.set_subject(take(&mut map, "subject"));
    let time = take(&mut map, "time").map(|t| DateTime::parse_from_rfc3339(&t)).transpose();
    event.set_time(time.map_err(|e| rejected(&e.to_string()))?.map(|t| t.to_utc()));
    if let Some(data) = map.remove("data") {
        event.set_data_unchecked(Data::Json(data));
    }
    for (name, value) in map {
        let value = match value {
            Value::Null => continue,
            Value::String(s) => ExtensionValue::String(s),
            Value::Bool(b) => ExtensionValue::Boolean(b),
            Value::Number(n) if n.is_i64() => ExtensionValue::Integer(n.as_i64().unwrap_or_default()),
            other => {
                return Err(EnvelopeError::invalid(
                    &name,
                    other,
                    "an extension must be a string, a boolean or a 64-bit integer",
                ));
            }
        };
        event.set_extension(&name, value);
    }
    Ok(event)
}

fn is_context_attribute(name: &str) -> bool {
    matches!(
        name,
        "specversion"
            | "id"
            | "source"
            | "type"
            | "datacontenttype"
            | "dataschema"
            | "subject"
            | "time"
            | "data"
            | "data_base64"
    )
}

fn check_extension_value(name: &str, value: &Value) -> Result<(), EnvelopeError> {
    if STRING_EXTENSIONS.contains(&name) {
        let Value::String(s) = value else {
            return Err(EnvelopeError::invalid(name, value.clone(), "must be a string"));
        };
        return check_choreo_extension(name, s);
    }
    match value {
        Value::String(_) | Value::Bool(_) => Ok(()),
        Value::Number(n) if n.is_i64() => Ok(()),
        _ => Err(EnvelopeError::invalid(
            name,
            value.clone(),
            "an extension must be a string, a boolean or a 64-bit integer",
        )),
    }
}

fn check_choreo_extension(name: &str, value: &str) -> Result<(), EnvelopeError> {
    if name == AUTH_TYPE && value.parse::<AuthType>().is_err() {
        return Err(EnvelopeError::invalid(name, value, "not an authcontext authtype"));
    }
    Ok(())
}

/// The invariants of [`super::Envelope`], for an event however it was made.
pub(super) fn check_event(event: &Event) -> Result<(), EnvelopeError> {
    if event.specversion() != SpecVersion::V10 {
        let version = event.specversion().to_string();
        return Err(EnvelopeError::invalid("specversion", version, "only cloudevents 1.0 is supported"));
    }
    if let Some(ct) = event.datacontenttype()
        && !is_json_content_type(ct)
    {
        return Err(EnvelopeError::invalid("datacontenttype", ct, "choreo event data is json"));
    }
    match event.data() {
        None | Some(Data::Json(_)) => {}
        Some(Data::String(s)) => {
            return Err(EnvelopeError::invalid("data", s.as_str(), "choreo event data is json"));
        }
        Some(Data::Binary(_)) => {
            return Err(EnvelopeError::invalid("data_base64", Value::Null, "choreo event data is json, not binary"));
        }
    }
    for name in STRING_EXTENSIONS {
        match event.extension(name) {
            None => {}
            Some(ExtensionValue::String(s)) => check_choreo_extension(name, s)?,
            Some(other) => {
                return Err(EnvelopeError::invalid(name, other.to_string(), "must be a string"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::envelope::{Envelope, EnvelopeError};

    fn valid() -> serde_json::Value {
        json!({
            "specversion": "1.0", "id": "01JDQ5X8Y7Z6W5V4T3S2R1Q0PN", "source": "retail.support-api",
            "type": "OrderSupportPlaced", "time": "2024-11-29T10:15:00Z",
            "datacontenttype": "application/json", "data": {"order_id": "o-1001"},
            "correlationid": "01JDQ5X8Y7Z6W5V4T3S2R1Q0PN", "authtype": "app_user", "authid": "c-1001"
        })
    }

    fn rejected_attribute(patch: serde_json::Value) -> String {
        let mut event = valid();
        for (k, v) in patch.as_object().unwrap() {
            event[k] = v.clone();
        }
        match Envelope::from_json_value(event) {
            Err(EnvelopeError::InvalidAttribute { attribute, .. }) => attribute,
            Err(EnvelopeError::MissingAttribute { attribute }) => attribute.to_owned(),
            other => panic!("expected an attribute error, got {other:?}"),
        }
    }

    #[test]
    fn valid_event_parses() {
        Envelope::from_json_value(valid()).unwrap();
    }

    #[test]
    fn each_bad_attribute_is_named() {
        let cases = [
            (json!({"specversion": "0.3"}), "specversion"),
            (json!({"id": null}), "id"),
            (json!({"id": 7}), "id"),
            (json!({"source": ""}), "source"),
            (json!({"type": ["x"]}), "type"),
            (json!({"time": "yesterday"}), "time"),
            (json!({"dataschema": "not a uri"}), "dataschema"),
            (json!({"datacontenttype": "text/plain"}), "datacontenttype"),
            (json!({"subject": false}), "subject"),
            (json!({"data_base64": "AAAA"}), "data_base64"),
            (json!({"correlationid": 12}), "correlationid"),
            (json!({"authtype": "wizard"}), "authtype"),
            (json!({"sampled": 0.5}), "sampled"),
            (json!({"nested": {"a": 1}}), "nested"),
        ];
        for (patch, attribute) in cases {
            assert_eq!(rejected_attribute(patch.clone()), attribute, "patch {patch}");
        }
    }

    #[test]
    fn missing_specversion_is_named() {
        let mut event = valid();
        event.as_object_mut().unwrap().remove("specversion");
        let err = Envelope::from_json_value(event).unwrap_err();
        assert_eq!(err.to_string(), "missing required attribute `specversion`");
    }

    #[test]
    fn message_carries_the_value_at_fault() {
        let mut event = valid();
        event["time"] = json!("yesterday");
        let err = Envelope::from_json_value(event).unwrap_err();
        assert_eq!(err.to_string(), "invalid attribute `time` (\"yesterday\"): must be an rfc 3339 timestamp");
    }

    #[test]
    fn non_object_and_bad_json_are_refused() {
        assert!(matches!(Envelope::from_json_value(json!([1])), Err(EnvelopeError::NotAnObject { found: "an array" })));
        assert!(matches!(Envelope::from_json_str("{"), Err(EnvelopeError::Json(_))));
    }

    /// The SDK's own reading of a structured event, through its `Deserialize`.
    fn read_by_the_sdk(event: &serde_json::Value) -> cloudevents::Event {
        serde_json::from_value(event.clone()).unwrap()
    }

    #[test]
    fn events_are_made_as_the_sdk_reads_them() {
        let mut full = valid();
        let extra = json!({
            "subject": "o-1001", "dataschema": "urn:choreo:schema:OrderSupportPlaced:1",
            "time": "2024-11-29T10:15:00.123+02:00", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "sampled": true, "attempt": 3, "note": "x", "gone": null
        });
        for (k, v) in extra.as_object().unwrap() {
            full[k] = v.clone();
        }
        let mut bare = valid();
        for name in ["time", "datacontenttype", "data", "authtype", "authid", "correlationid"] {
            bare.as_object_mut().unwrap().remove(name);
        }
        let mut null_data = valid();
        null_data["data"] = json!(null);
        null_data["subject"] = json!(null);
        for event in [valid(), full, bare, null_data] {
            let made = Envelope::from_json_value(event.clone()).unwrap();
            assert_eq!(cloudevents::Event::from(made), read_by_the_sdk(&event), "{event}");
        }
    }

    #[test]
    fn json_content_types_with_parameters_are_json() {
        for ct in ["application/json; charset=utf-8", "application/cloudevents+json", "text/json"] {
            assert!(super::is_json_content_type(ct), "{ct}");
        }
    }
}
