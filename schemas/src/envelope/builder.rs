//! The typed builder of [`Envelope`]: fresh ULID, time now, JSON data and the schema id by
//! default, and `caused_by` to carry a case from one event to the next.

use chrono::{DateTime, Utc};
use cloudevents::EventBuilderV10;
use cloudevents::event::{AttributesWriter, EventBuilder, EventBuilderError, ExtensionValue};
use serde_json::Value;
use ulid::Ulid;
use url::Url;

use super::{
    AUTH_ID, AUTH_TYPE, AuthType, BUDGET_HOPS, BUDGET_TOKENS, BUDGET_TURNS, CAUSATION_ID, CORRELATION_ID, Envelope,
    EnvelopeError, JSON_CONTENT_TYPE, TRACEPARENT,
};
use crate::catalog::{CatalogEvent, schema_id};

/// Builds an [`Envelope`]; errors are kept until [`EnvelopeBuilder::build`] reports them.
#[derive(Debug)]
#[must_use]
pub struct EnvelopeBuilder {
    id: Option<String>,
    source: String,
    event_type: String,
    subject: Option<String>,
    time: Option<DateTime<Utc>>,
    schema_version: Option<u32>,
    data: Option<Value>,
    extensions: Vec<(String, ExtensionValue)>,
    error: Option<EnvelopeError>,
}

impl EnvelopeBuilder {
    pub(super) fn new(source: impl Into<String>, event_type: impl Into<String>) -> Self {
        Self {
            id: None,
            source: source.into(),
            event_type: event_type.into(),
            subject: None,
            time: None,
            schema_version: Some(1),
            data: None,
            extensions: Vec::new(),
            error: None,
        }
    }

    /// An event of the catalog: its type, schema version and data come from `data`.
    pub fn of<T: CatalogEvent>(source: impl Into<String>, data: &T) -> Self {
        let mut builder = Self::new(source, T::NAME).schema_version(T::VERSION);
        match serde_json::to_value(data) {
            Ok(value) => builder.data = Some(value),
            Err(e) => builder.error = Some(EnvelopeError::Json(e)),
        }
        builder
    }

    /// Overrides the generated ULID, e.g. when the id is the idempotency key of a retry.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The entity, e.g. `orders/o-1001`.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Overrides "now", for an injected clock.
    pub fn time(mut self, time: DateTime<Utc>) -> Self {
        self.time = Some(time);
        self
    }

    /// The `dataschema` version; 1 unless said.
    pub fn schema_version(mut self, version: u32) -> Self {
        self.schema_version = Some(version);
        self
    }

    /// Leaves `dataschema` out, for events that have no schema in the catalog.
    pub fn without_data_schema(mut self) -> Self {
        self.schema_version = None;
        self
    }

    pub fn data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    pub fn correlation_id(self, id: impl Into<String>) -> Self {
        self.extension(CORRELATION_ID, id.into())
    }

    pub fn causation_id(self, id: impl Into<String>) -> Self {
        self.extension(CAUSATION_ID, id.into())
    }

    pub fn traceparent(self, traceparent: impl Into<String>) -> Self {
        self.extension(TRACEPARENT, traceparent.into())
    }

    /// Who the event acts for, e.g. `(AuthType::AppUser, "c-1001")`.
    pub fn auth(self, auth_type: AuthType, auth_id: impl Into<String>) -> Self {
        self.extension(AUTH_TYPE, auth_type.as_str()).extension(AUTH_ID, auth_id.into())
    }

    /// Any other extension; a later value for the same name replaces the earlier one.
    pub fn extension(mut self, name: impl Into<String>, value: impl Into<ExtensionValue>) -> Self {
        let name = name.into();
        self.extensions.retain(|(n, _)| *n != name);
        self.extensions.push((name, value.into()));
        self
    }

    /// Continues `parent`'s case: its correlation id (or its id when it opened the case),
    /// trace, auth context and budget are carried over, and `causationid` is set to its id.
    pub fn caused_by(mut self, parent: &Envelope) -> Self {
        let correlation = parent.correlation_id().unwrap_or(parent.id()).to_owned();
        self = self.correlation_id(correlation).causation_id(parent.id());
        for name in [AUTH_TYPE, AUTH_ID, BUDGET_TURNS, BUDGET_TOKENS, BUDGET_HOPS] {
            if let Some(value) = parent.extension(name) {
                self = self.extension(name, value.clone());
            }
        }
        // The same trace, one hop further: the parent's trace id, a new span id.
        match parent.traceparent().and_then(child_traceparent) {
            Some(child) => self.traceparent(child),
            None => match parent.extension(TRACEPARENT) {
                Some(value) => self.extension(TRACEPARENT, value.clone()),
                None => self,
            },
        }
    }

    pub fn build(self) -> Result<Envelope, EnvelopeError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        if self.event_type.is_empty() {
            return Err(EnvelopeError::invalid("type", "", "must not be empty"));
        }
        let id = self.id.unwrap_or_else(|| Ulid::generate().to_string());
        let mut builder = EventBuilderV10::new()
            .id(id.as_str())
            .source(self.source)
            .ty(self.event_type.as_str())
            .time(self.time.unwrap_or_else(Utc::now));
        if let Some(subject) = self.subject {
            builder = builder.subject(subject);
        }
        if let Some(data) = self.data {
            builder = builder.data(JSON_CONTENT_TYPE, data);
        }
        let has_correlation = self.extensions.iter().any(|(n, _)| n == CORRELATION_ID);
        for (name, value) in self.extensions {
            builder = builder.extension(&name, value);
        }
        if !has_correlation {
            // The first event of a case names the case.
            builder = builder.extension(CORRELATION_ID, id);
        }
        let mut event = builder.build().map_err(from_sdk)?;
        if let Some(version) = self.schema_version {
            let schema = schema_id(&self.event_type, version);
            let url = Url::parse(&schema)
                .map_err(|_| EnvelopeError::invalid("dataschema", schema, "must be an absolute uri"))?;
            event.set_dataschema(Some(url));
        }
        Envelope::try_from(event)
    }
}

/// A new W3C `traceparent` (version 00, sampled): a fresh trace for a new case.
pub fn new_traceparent() -> String {
    let trace = Ulid::generate().0;
    let span = Ulid::generate().0 as u64;
    format!("00-{trace:032x}-{:016x}-01", span.max(1))
}

/// The `traceparent` of a child span: the same version, trace id and flags, a new span id.
/// `None` when `parent` is not a well-formed traceparent.
pub fn child_traceparent(parent: &str) -> Option<String> {
    let mut parts = parent.split('-');
    let (version, trace, _span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if parts.next().is_some() || !hex(version, 2) || !hex(trace, 32) || !hex(flags, 2) {
        return None;
    }
    let span = (Ulid::generate().0 as u64).max(1);
    Some(format!("{version}-{trace}-{span:016x}-{flags}"))
}

impl Envelope {
    /// A CloudEvent for data that came without one (an AWS service event, a plain producer):
    /// exactly the attributes given, nothing made up.
    pub(crate) fn from_foreign(
        id: &str,
        source: &str,
        event_type: &str,
        time: Option<DateTime<Utc>>,
        data: Value,
    ) -> Result<Self, EnvelopeError> {
        let mut builder = EventBuilderV10::new().id(id).source(source).ty(event_type).data(JSON_CONTENT_TYPE, data);
        if let Some(time) = time {
            builder = builder.time(time);
        }
        Self::try_from(builder.build().map_err(from_sdk)?)
    }
}

fn from_sdk(error: EventBuilderError) -> EnvelopeError {
    match error {
        EventBuilderError::MissingRequiredAttribute { attribute_name } => {
            EnvelopeError::MissingAttribute { attribute: attribute_name }
        }
        EventBuilderError::ParseTimeError { attribute_name, source } => {
            EnvelopeError::invalid(attribute_name, source.to_string(), "must be an rfc 3339 timestamp")
        }
        EventBuilderError::ParseUrlError { attribute_name, source } => {
            EnvelopeError::invalid(attribute_name, source.to_string(), "must be an absolute uri")
        }
        EventBuilderError::InvalidUriRefError { attribute_name } => {
            EnvelopeError::invalid(attribute_name, "", "must be a non-empty uri-reference")
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use cloudevents::event::ExtensionValue;
    use serde_json::json;

    use crate::envelope::{AuthType, Envelope, EnvelopeError};

    const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn placed() -> Envelope {
        Envelope::builder("retail.support-api", "OrderSupportPlaced")
            .subject("orders/o-1001")
            .data(json!({"order_id": "o-1001"}))
            .traceparent(TRACE)
            .auth(AuthType::AppUser, "c-1001")
            .build()
            .unwrap()
    }

    #[test]
    fn defaults_are_a_ulid_now_json_and_the_schema_id() {
        let before = chrono::Utc::now();
        let e = placed();
        assert!(ulid::Ulid::from_string(e.id()).is_ok(), "{}", e.id());
        assert!(*e.time().unwrap() >= before);
        assert_eq!(e.data_content_type(), Some("application/json"));
        assert_eq!(e.data_schema().unwrap().as_str(), "urn:choreo:schema:OrderSupportPlaced:1");
        assert_eq!(e.subject(), Some("orders/o-1001"));
        assert_eq!(e.auth_type(), Some(AuthType::AppUser));
        assert_eq!(e.auth_id(), Some("c-1001"));
        assert_eq!(e.traceparent(), Some(TRACE));
        assert_eq!(e.causation_id(), None);
    }

    #[test]
    fn traceparents_are_w3c_shaped_and_malformed_parents_pass_through() {
        let fresh = super::new_traceparent();
        assert_eq!(fresh.len(), 55, "{fresh}");
        assert!(fresh.starts_with("00-") && fresh.ends_with("-01"));
        assert_eq!(super::child_traceparent("not-a-trace"), None);
        let odd = Envelope::builder("s", "T").traceparent("odd").build().unwrap();
        assert_eq!(odd.follow_up("s", "U").build().unwrap().traceparent(), Some("odd"));
    }

    #[test]
    fn first_event_of_a_case_names_the_case() {
        let e = placed();
        assert_eq!(e.correlation_id(), Some(e.id()));
    }

    #[test]
    fn follow_up_carries_case_trace_and_auth() {
        let parent = placed();
        let child =
            parent.follow_up("agents.support", "SupportTriaged").data(json!({"order_id": "o-1001"})).build().unwrap();
        assert_ne!(child.id(), parent.id());
        assert_eq!(child.causation_id(), Some(parent.id()));
        assert_eq!(child.correlation_id(), parent.correlation_id());
        // The same trace (id and flags), a new span for the new hop.
        let trace = child.traceparent().unwrap();
        assert_eq!(&trace[..36], &TRACE[..36]);
        assert_eq!(&trace[52..], "-01");
        assert_ne!(trace, TRACE);
        assert_eq!(trace.len(), TRACE.len());
        assert_eq!(child.auth_type(), Some(AuthType::AppUser));
        assert_eq!(child.auth_id(), Some("c-1001"));
        let grandchild = child.follow_up("agents.payments", "PaymentIssueResolved").build().unwrap();
        assert_eq!(grandchild.correlation_id(), parent.correlation_id());
        assert_eq!(grandchild.causation_id(), Some(child.id()));
    }

    #[test]
    fn explicit_id_time_and_extensions_are_kept() {
        let time = chrono::Utc.with_ymd_and_hms(2024, 11, 29, 10, 15, 0).unwrap();
        let e = Envelope::builder("retail.support-api", "OrderSupportPlaced")
            .id("01JDQ5X8Y7Z6W5V4T3S2R1Q0PN")
            .time(time)
            .extension("region", "eu-west-1")
            .extension("priority", 3_i64)
            .without_data_schema()
            .build()
            .unwrap();
        assert_eq!(e.id(), "01JDQ5X8Y7Z6W5V4T3S2R1Q0PN");
        assert_eq!(e.time(), Some(&time));
        assert_eq!(e.data_schema(), None);
        assert_eq!(e.extension("priority"), Some(&ExtensionValue::Integer(3)));
    }

    #[test]
    fn bad_builder_input_names_the_attribute() {
        let err = Envelope::builder("", "X").build().unwrap_err();
        assert!(matches!(err, EnvelopeError::InvalidAttribute { ref attribute, .. } if attribute == "source"), "{err}");
        let err = Envelope::builder("s", "").build().unwrap_err();
        assert!(matches!(err, EnvelopeError::InvalidAttribute { ref attribute, .. } if attribute == "type"), "{err}");
    }
}
