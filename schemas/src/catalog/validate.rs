//! Validation of incoming event data against the catalog's schemas, reporting the first
//! failure as a JSON pointer and a reason.

use serde_json::Value;

use super::{EventSchema, lookup};
use crate::envelope::Envelope;

/// Why event data was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("unknown event type `{event_type}`")]
    UnknownEventType { event_type: String },
    #[error("`{event_type}` data is invalid at {}: {reason}", show_pointer(.pointer))]
    Invalid { event_type: String, pointer: String, reason: String },
    #[error("`{event_type}` event has no data")]
    MissingData { event_type: String },
    #[error("`{event_type}` event names data schema `{found}`, the catalog has `{expected}`")]
    DataSchemaMismatch { event_type: String, expected: String, found: String },
    #[error("the schema of `{event_type}` does not compile: {reason}")]
    Schema { event_type: String, reason: String },
}

fn show_pointer(pointer: &str) -> String {
    if pointer.is_empty() { "the root".to_owned() } else { format!("`{pointer}`") }
}

impl EventSchema {
    /// Checks `data` against this event's schema; the error is the first failure found.
    pub fn validate(&self, data: &Value) -> Result<(), ValidationError> {
        let validator = self
            .validator
            .get_or_init(|| {
                jsonschema::options().should_validate_formats(true).build(&self.schema).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|reason| ValidationError::Schema { event_type: self.name.to_owned(), reason: reason.clone() })?;
        match validator.iter_errors(data).next() {
            None => Ok(()),
            Some(error) => Err(ValidationError::Invalid {
                event_type: self.name.to_owned(),
                pointer: error.instance_path().as_str().to_owned(),
                reason: reason(&self.schema, &error),
            }),
        }
    }
}

/// The validator's message, except for an enum of documented variants: schemars writes it as
/// a `oneOf` of `const`s, whose bare "not valid under any of the schemas" hides the choices.
fn reason(schema: &Value, error: &jsonschema::ValidationError<'_>) -> String {
    let choices = error
        .absolute_keyword_location()
        .and_then(|uri| uri.fragment())
        .filter(|_| matches!(error.kind().keyword(), "oneOf" | "anyOf"))
        .and_then(|fragment| schema.pointer(fragment.as_str()))
        .and_then(Value::as_array)
        .and_then(|branches| branches.iter().map(|b| b.get("const")).collect::<Option<Vec<_>>>());
    match choices {
        Some(choices) => {
            let choices: Vec<String> = choices.iter().map(|c| c.to_string()).collect();
            format!("{} is not one of {}", error.instance(), choices.join(", "))
        }
        None => error.to_string(),
    }
}

/// Checks `data` against the schema of `event_type`.
pub fn validate(event_type: &str, data: &Value) -> Result<(), ValidationError> {
    lookup(event_type)
        .ok_or_else(|| ValidationError::UnknownEventType { event_type: event_type.to_owned() })?
        .validate(data)
}

/// Checks an envelope's data against the schema of its `type`, and its `dataschema`, if
/// given, against the catalog's.
pub fn validate_envelope(envelope: &Envelope) -> Result<(), ValidationError> {
    let event_type = envelope.event_type();
    let schema =
        lookup(event_type).ok_or_else(|| ValidationError::UnknownEventType { event_type: event_type.to_owned() })?;
    if let Some(found) = envelope.data_schema()
        && found.as_str() != schema.schema_id()
    {
        return Err(ValidationError::DataSchemaMismatch {
            event_type: event_type.to_owned(),
            expected: schema.schema_id().to_owned(),
            found: found.to_string(),
        });
    }
    let data = envelope.data().ok_or_else(|| ValidationError::MissingData { event_type: event_type.to_owned() })?;
    schema.validate(data)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn triaged() -> Value {
        json!({"order_id": "o-1001", "issues": ["duplicate_charge"], "summary": "charged twice"})
    }

    fn invalid(event_type: &str, data: &Value) -> (String, String) {
        match validate(event_type, data) {
            Err(ValidationError::Invalid { pointer, reason, .. }) => (pointer, reason),
            other => panic!("expected invalid data, got {other:?}"),
        }
    }

    #[test]
    fn unknown_issue_kind_points_at_the_item() {
        let mut data = triaged();
        data["issues"] = json!(["lost_in_space"]);
        let (pointer, reason) = invalid("SupportTriaged", &data);
        assert_eq!(pointer, "/issues/0");
        assert!(reason.starts_with(r#""lost_in_space" is not one of "duplicate_charge", "missing_item""#), "{reason}");
    }

    #[test]
    fn missing_required_field_points_at_the_object() {
        let mut data = triaged();
        data.as_object_mut().unwrap().remove("summary");
        let (pointer, reason) = invalid("SupportTriaged", &data);
        assert_eq!(pointer, "");
        assert!(reason.contains("summary"), "{reason}");
        let message = validate("SupportTriaged", &data).unwrap_err().to_string();
        assert!(message.starts_with("`SupportTriaged` data is invalid at the root: "), "{message}");
    }

    #[test]
    fn order_id_pattern_unknown_fields_and_dates_are_checked() {
        let (pointer, _) = invalid("SupportTriaged", &json!({"order_id": "1001", "issues": ["other"], "summary": "x"}));
        assert_eq!(pointer, "/order_id");
        let mut data = triaged();
        data["customer_id"] = json!("c-1001");
        let (pointer, reason) = invalid("SupportTriaged", &data);
        assert_eq!(pointer, "");
        assert!(reason.contains("customer_id"), "{reason}");
        let mut data = triaged();
        data["needed_by"] = json!("tomorrow");
        assert_eq!(invalid("SupportTriaged", &data).0, "/needed_by");
    }

    #[test]
    fn duplicate_issues_are_refused() {
        let mut data = triaged();
        data["issues"] = json!(["duplicate_charge", "duplicate_charge"]);
        assert_eq!(invalid("SupportTriaged", &data).0, "/issues");
    }

    #[test]
    fn unknown_event_type_is_its_own_error() {
        assert_eq!(
            validate("OrderTeleported", &json!({})),
            Err(ValidationError::UnknownEventType { event_type: "OrderTeleported".into() })
        );
    }

    #[test]
    fn envelope_data_and_schema_are_checked() {
        let ok = Envelope::builder("agents.support", "SupportTriaged").data(triaged()).build().unwrap();
        validate_envelope(&ok).unwrap();
        let no_data = Envelope::builder("agents.support", "SupportTriaged").build().unwrap();
        assert!(matches!(validate_envelope(&no_data), Err(ValidationError::MissingData { .. })));
        let v2 =
            Envelope::builder("agents.support", "SupportTriaged").schema_version(2).data(triaged()).build().unwrap();
        assert!(matches!(validate_envelope(&v2), Err(ValidationError::DataSchemaMismatch { .. })));
        let bad = Envelope::builder("agents.support", "SupportTriaged").data(json!({})).build().unwrap();
        assert!(matches!(validate_envelope(&bad), Err(ValidationError::Invalid { .. })));
    }
}
