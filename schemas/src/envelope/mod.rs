//! The CloudEvents 1.0 envelope every Choreo event travels in (JSON structured mode), with
//! Choreo's extensions: the case (`correlationid`), the cause, the trace and the auth context.

mod budget;
mod builder;
mod parse;

pub use parse::kind_of;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use cloudevents::Event;
use cloudevents::event::{AttributesReader, Data, ExtensionValue};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use url::Url;

pub use budget::{BUDGET_HOPS, BUDGET_TOKENS, BUDGET_TURNS, Budget};
pub use builder::{EnvelopeBuilder, child_traceparent, new_traceparent};

/// Extension: the case, the same on every event that follows from one request.
pub const CORRELATION_ID: &str = "correlationid";
/// Extension: the `id` of the event this one answers.
pub const CAUSATION_ID: &str = "causationid";
/// Extension: W3C trace context (CloudEvents distributed tracing extension).
pub const TRACEPARENT: &str = "traceparent";
/// Extension: the kind of principal the event acts for (CloudEvents authcontext extension).
pub const AUTH_TYPE: &str = "authtype";
/// Extension: the principal the event acts for, e.g. the customer id `c-1001`.
pub const AUTH_ID: &str = "authid";

/// The only content type of Choreo event data.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// Why an envelope could not be built or parsed; each variant names the attribute at fault.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("invalid json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("a structured cloudevent must be a json object, found {found}")]
    NotAnObject { found: &'static str },
    #[error("missing required attribute `{attribute}`")]
    MissingAttribute { attribute: &'static str },
    #[error("invalid attribute `{attribute}` ({value}): {reason}")]
    InvalidAttribute { attribute: String, value: Value, reason: &'static str },
    #[error("data of `{event_type}` does not match its rust type: {source}")]
    DataType { event_type: String, source: serde_json::Error },
    #[error("the event is of type `{found}`, not `{expected}`")]
    WrongType { expected: &'static str, found: String },
    #[error("the cloudevents sdk rejected the event: {reason}")]
    Rejected { reason: String },
}

impl EnvelopeError {
    pub(crate) fn invalid(attribute: &str, value: impl Into<Value>, reason: &'static str) -> Self {
        Self::InvalidAttribute { attribute: attribute.to_owned(), value: value.into(), reason }
    }
}

/// Who an event acts for: the `authtype` values of the CloudEvents authcontext extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    AppUser,
    User,
    ServiceAccount,
    ApiKey,
    System,
    Unauthenticated,
    Unknown,
}

impl AuthType {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AppUser => "app_user",
            Self::User => "user",
            Self::ServiceAccount => "service_account",
            Self::ApiKey => "api_key",
            Self::System => "system",
            Self::Unauthenticated => "unauthenticated",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for AuthType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The value was not one of the authcontext extension's `authtype` values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown authtype `{0}`")]
pub struct UnknownAuthType(pub String);

impl FromStr for AuthType {
    type Err = UnknownAuthType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::AppUser,
            Self::User,
            Self::ServiceAccount,
            Self::ApiKey,
            Self::System,
            Self::Unauthenticated,
            Self::Unknown,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
        .ok_or_else(|| UnknownAuthType(s.to_owned()))
    }
}

/// A CloudEvents 1.0 event whose data, if any, is JSON.
///
/// Invariants, checked wherever an `Envelope` is made: spec version 1.0, JSON data, and the
/// Choreo extensions (when present) are strings, `authtype` one of [`AuthType`]. Any other
/// extension is kept as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    event: Event,
}

impl Envelope {
    /// Starts a new event: id = a fresh ULID, time = now, JSON data, `dataschema` =
    /// `urn:choreo:schema:<event_type>:1`, `correlationid` = its own id unless set.
    pub fn builder(source: impl Into<String>, event_type: impl Into<String>) -> EnvelopeBuilder {
        EnvelopeBuilder::new(source, event_type)
    }

    /// Starts the event that answers `self`: same case, trace and auth context, caused by `self`.
    pub fn follow_up(&self, source: impl Into<String>, event_type: impl Into<String>) -> EnvelopeBuilder {
        EnvelopeBuilder::new(source, event_type).caused_by(self)
    }

    /// Parses a structured-mode CloudEvent.
    pub fn from_json_str(json: &str) -> Result<Self, EnvelopeError> {
        Self::from_json_value(serde_json::from_str(json)?)
    }

    /// Parses a structured-mode CloudEvent already read as JSON.
    pub fn from_json_value(value: Value) -> Result<Self, EnvelopeError> {
        let Value::Object(map) = value else {
            return Err(EnvelopeError::NotAnObject { found: parse::kind_of(&value) });
        };
        parse::check_structured(&map)?;
        Self::try_from(parse::event_of(map)?)
    }

    /// The structured-mode JSON of the event.
    ///
    /// Written here rather than through the SDK's `Serialize` so that it cannot fail and its
    /// extensions come out in a stable order; a test checks that the SDK reads it back equal.
    pub fn to_json_value(&self) -> Value {
        let e = &self.event;
        let mut map = Map::new();
        map.insert("specversion".into(), "1.0".into());
        map.insert("id".into(), e.id().into());
        map.insert("source".into(), e.source().as_str().into());
        map.insert("type".into(), e.ty().into());
        if let Some(ct) = e.datacontenttype() {
            map.insert("datacontenttype".into(), ct.into());
        }
        if let Some(schema) = e.dataschema() {
            map.insert("dataschema".into(), schema.as_str().into());
        }
        if let Some(subject) = e.subject() {
            map.insert("subject".into(), subject.into());
        }
        if let Some(time) = e.time() {
            map.insert("time".into(), time.to_rfc3339_opts(SecondsFormat::AutoSi, true).into());
        }
        if let Some(data) = self.data() {
            map.insert("data".into(), data.clone());
        }
        let mut extensions: Vec<_> = e.iter_extensions().collect();
        extensions.sort_by_key(|(name, _)| *name);
        for (name, value) in extensions {
            let value = match value {
                ExtensionValue::String(s) => Value::from(s.as_str()),
                ExtensionValue::Boolean(b) => Value::from(*b),
                ExtensionValue::Integer(i) => Value::from(*i),
            };
            map.insert(name.to_owned(), value);
        }
        Value::Object(map)
    }

    /// The structured-mode JSON of the event, compact.
    pub fn to_json_string(&self) -> String {
        self.to_json_value().to_string()
    }

    pub fn id(&self) -> &str {
        self.event.id()
    }

    pub fn source(&self) -> &str {
        self.event.source().as_str()
    }

    /// The CloudEvent `type`: the event name, e.g. `SupportTriaged`.
    pub fn event_type(&self) -> &str {
        self.event.ty()
    }

    pub fn subject(&self) -> Option<&str> {
        self.event.subject()
    }

    pub fn time(&self) -> Option<&DateTime<Utc>> {
        self.event.time()
    }

    pub fn data_content_type(&self) -> Option<&str> {
        self.event.datacontenttype()
    }

    pub fn data_schema(&self) -> Option<&Url> {
        self.event.dataschema()
    }

    pub fn data(&self) -> Option<&Value> {
        match self.event.data() {
            Some(Data::Json(value)) => Some(value),
            _ => None,
        }
    }

    /// The data as a catalog event, checking that the envelope is of that type.
    pub fn data_as<T: crate::catalog::CatalogEvent>(&self) -> Result<T, EnvelopeError> {
        if self.event_type() != T::NAME {
            return Err(EnvelopeError::WrongType { expected: T::NAME, found: self.event_type().to_owned() });
        }
        let data = self.data().cloned().unwrap_or(Value::Null);
        serde_json::from_value(data)
            .map_err(|source| EnvelopeError::DataType { event_type: T::NAME.to_owned(), source })
    }

    pub fn correlation_id(&self) -> Option<&str> {
        self.string_extension(CORRELATION_ID)
    }

    pub fn causation_id(&self) -> Option<&str> {
        self.string_extension(CAUSATION_ID)
    }

    pub fn traceparent(&self) -> Option<&str> {
        self.string_extension(TRACEPARENT)
    }

    pub fn auth_type(&self) -> Option<AuthType> {
        // Checked on construction, so a value that does not parse cannot be here.
        self.string_extension(AUTH_TYPE).and_then(|s| s.parse().ok())
    }

    pub fn auth_id(&self) -> Option<&str> {
        self.string_extension(AUTH_ID)
    }

    /// Any extension, Choreo's or not.
    pub fn extension(&self, name: &str) -> Option<&ExtensionValue> {
        self.event.extension(name)
    }

    pub fn extensions(&self) -> impl Iterator<Item = (&str, &ExtensionValue)> {
        self.event.iter_extensions()
    }

    pub fn as_event(&self) -> &Event {
        &self.event
    }

    pub fn into_event(self) -> Event {
        self.event
    }

    fn string_extension(&self, name: &str) -> Option<&str> {
        match self.event.extension(name) {
            Some(ExtensionValue::String(s)) => Some(s),
            _ => None,
        }
    }
}

impl TryFrom<Event> for Envelope {
    type Error = EnvelopeError;

    fn try_from(event: Event) -> Result<Self, Self::Error> {
        parse::check_event(&event)?;
        Ok(Self { event })
    }
}

impl From<Envelope> for Event {
    fn from(envelope: Envelope) -> Self {
        envelope.event
    }
}

impl Serialize for Envelope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json_value().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_json_value(value).map_err(serde::de::Error::custom)
    }
}
