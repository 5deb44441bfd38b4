//! The CloudEvents HTTP protocol binding 1.0.2, receiving side: the content mode from the
//! `Content-Type` (compared case-insensitively), structured and batched JSON, and binary mode
//! with its `ce-` headers (quoted strings unescaped, one round of strict percent-decoding).
//!
//! The event model is cloudevents-sdk's (every event is read by its deserializer, through
//! [`Envelope`]). Where the SDK's own HTTP binding (`cloudevents::binding::http::to_event`) falls
//! short of the spec, this module does the work itself:
//! - the SDK picks structured mode only for a `Content-Type` starting with the exact lowercase
//!   `application/cloudevents+json`; media types are case-insensitive (RFC 9110 §8.3.1);
//! - it has no batched mode;
//! - it neither unescapes quoted strings nor percent-decodes header values (§3.1.3.2), and
//!   refuses any header value that is not visible ASCII instead of requiring it encoded;
//! - it does not refuse a `ce-datacontenttype` header beside `Content-Type` (§3.1.1), nor
//!   attribute names outside `[a-z0-9]` (core spec), nor two `ce-` headers of one name;
//! - it reads binary data as bytes whatever the content type; here JSON data is JSON.

use axum::http::HeaderMap;
use choreo_schemas::Envelope;
use choreo_schemas::envelope::EnvelopeError;
use serde_json::{Map, Value};

use super::problem::{Kind, Problem, ProblemDetail};
use super::request::{is_json, media_type};

/// The media type of a structured CloudEvent in the JSON event format.
pub const STRUCTURED_JSON: &str = "application/cloudevents+json";
/// The media type of a batch of CloudEvents in the JSON batch format.
pub const BATCH_JSON: &str = "application/cloudevents-batch+json";

/// How the events of a request are carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One event, attributes and data in the body (`application/cloudevents+json`).
    Structured,
    /// A JSON array of structured events (`application/cloudevents-batch+json`).
    Batch,
    /// One event: attributes in `ce-` headers, data in the body.
    Binary,
}

/// The content mode of a request (§3): by the `Content-Type` prefix, binary otherwise.
pub fn mode(headers: &HeaderMap) -> Result<Mode, Problem> {
    let essence = media_type(headers);
    match essence.as_deref() {
        Some(BATCH_JSON) => Ok(Mode::Batch),
        Some(STRUCTURED_JSON) => Ok(Mode::Structured),
        Some(other) if other.starts_with("application/cloudevents") => Err(Problem::new(
            Kind::UnsupportedMediaType,
            format!("event format {other:?} is not supported; use {STRUCTURED_JSON} or {BATCH_JSON}"),
        )),
        _ if headers.keys().any(|name| name.as_str().starts_with("ce-")) => Ok(Mode::Binary),
        _ => Err(Problem::new(
            Kind::UnsupportedMediaType,
            format!(
                "not a CloudEvent: send {STRUCTURED_JSON}, {BATCH_JSON}, or binary mode with ce- headers \
                 (Content-Type was {})",
                essence.map_or_else(|| "absent".to_owned(), |e| format!("{e:?}"))
            ),
        )),
    }
}

/// The events of a request in `mode`, each checked against the spec; every fault found is
/// reported, with its batch index.
pub fn decode(mode: Mode, headers: &HeaderMap, body: &[u8]) -> Result<Vec<Envelope>, Problem> {
    match mode {
        Mode::Structured => {
            let value: Value = serde_json::from_slice(body).map_err(|e| not_json("the structured event", &e))?;
            structured(value, None).map(|e| vec![e]).map_err(|d| invalid_events(vec![d]))
        }
        Mode::Batch => batch(body),
        Mode::Binary => {
            // Choreo event data is JSON: another Content-Type is a media type this API does not take.
            if let Some(essence) = media_type(headers).filter(|m| !is_json(m)) {
                return Err(Problem::new(Kind::UnsupportedMediaType, format!("{NOT_JSON} (it was {essence:?})")));
            }
            binary(headers, body).map(|e| vec![e]).map_err(|d| invalid_events(vec![d]))
        }
    }
}

fn not_json(what: &str, e: &serde_json::Error) -> Problem {
    Problem::malformed(format!("{what} is not JSON: {e}")).with_error(ProblemDetail::at("", e.to_string()))
}

fn invalid_events(errors: Vec<ProblemDetail>) -> Problem {
    let detail = match errors.as_slice() {
        [one] => format!("not a valid CloudEvent: {}", one.reason),
        many => format!("{} events are not valid CloudEvents", many.len()),
    };
    Problem::malformed(detail).with_errors(errors)
}

fn batch(body: &[u8]) -> Result<Vec<Envelope>, Problem> {
    let items: Vec<Value> = serde_json::from_slice(body).map_err(|e| {
        Problem::malformed(format!("a batch must be a JSON array of events: {e}"))
            .with_error(ProblemDetail::at("", e.to_string()))
    })?;
    let mut events = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match structured(item, Some(i)) {
            Ok(event) => events.push(event),
            Err(detail) => errors.push(detail),
        }
    }
    // §3.3.2: every event of a batch has the same specversion; only 1.0 is read at all, so an
    // event of another version is already refused above.
    if errors.is_empty() { Ok(events) } else { Err(invalid_events(errors)) }
}

/// One structured event (JSON event format), checked beyond what the SDK checks.
fn structured(value: Value, index: Option<usize>) -> Result<Envelope, ProblemDetail> {
    let Value::Object(map) = value else {
        let reason = format!("an event must be a JSON object, found {}", choreo_schemas::envelope::kind_of(&value));
        return Err(ProblemDetail::at("", reason).in_event(index));
    };
    check_attributes(&map).map_err(|d| d.in_event(index))?;
    Envelope::from_json_value(Value::Object(map)).map_err(|e| envelope_error(&e).in_event(index))
}

/// The spec's rules the SDK leaves unchecked: attribute names, `data` beside `data_base64`,
/// `source` a URI-reference.
fn check_attributes(map: &Map<String, Value>) -> Result<(), ProblemDetail> {
    for name in map.keys() {
        if name != "data" && name != "data_base64" && !is_attribute_name(name) {
            return Err(ProblemDetail::at(
                pointer(name),
                format!("attribute name {name:?}: names must consist of lower-case letters a-z and digits 0-9"),
            ));
        }
    }
    if map.contains_key("data") && map.contains_key("data_base64") {
        return Err(ProblemDetail::at("/data_base64", "an event has `data` or `data_base64`, never both"));
    }
    if let Some(Value::String(source)) = map.get("source")
        && let Some(bad) = source.chars().find(|c| !is_uri_char(*c))
    {
        return Err(ProblemDetail::at(
            "/source",
            format!("source {source:?} is not a URI-reference: {bad:?} must be percent-encoded"),
        ));
    }
    Ok(())
}

fn is_attribute_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A character that may appear in a URI-reference (RFC 3986: unreserved, reserved, `%`).
fn is_uri_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(c)
}

/// A JSON pointer to a top-level member (RFC 6901 escaping).
fn pointer(name: &str) -> String {
    format!("/{}", name.replace('~', "~0").replace('/', "~1"))
}

/// Where the SDK or the envelope found a fault, as a detail.
fn envelope_error(error: &EnvelopeError) -> ProblemDetail {
    let at = match error {
        EnvelopeError::MissingAttribute { attribute } => pointer(attribute),
        EnvelopeError::InvalidAttribute { attribute, .. } => pointer(attribute),
        EnvelopeError::DataType { .. } => "/data".to_owned(),
        _ => String::new(),
    };
    ProblemDetail::at(at, error.to_string())
}

/// One binary-mode event: `ce-` headers are its attributes, `Content-Type` its
/// `datacontenttype`, the body its data.
fn binary(headers: &HeaderMap, body: &[u8]) -> Result<Envelope, ProblemDetail> {
    let mut map = Map::new();
    for (name, value) in headers {
        let Some(attribute) = name.as_str().strip_prefix("ce-") else { continue };
        let at = || pointer(attribute);
        if !is_attribute_name(attribute) {
            return Err(ProblemDetail::at(
                at(),
                format!("header {name}: attribute names consist of lower-case letters a-z and digits 0-9"),
            ));
        }
        if attribute == "datacontenttype" || attribute == "data" {
            return Err(ProblemDetail::at(
                at(),
                format!("header {name} must not be sent: in binary mode the data is the body, its type Content-Type"),
            ));
        }
        if headers.get_all(name).iter().nth(1).is_some() {
            return Err(ProblemDetail::at(at(), format!("header {name} is given more than once")));
        }
        let decoded = decode_header_value(value.as_bytes())
            .map_err(|reason| ProblemDetail::at(at(), format!("header {name}: {reason}")))?;
        map.insert(attribute.to_owned(), Value::String(decoded));
    }
    if !map.contains_key("specversion") {
        return Err(ProblemDetail::at("/specversion", "binary mode requires the ce-specversion header"));
    }
    let content_type = match headers.get(axum::http::header::CONTENT_TYPE) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| ProblemDetail::at("/datacontenttype", "Content-Type is not ASCII"))?),
    };
    if let Some(ct) = content_type {
        map.insert("datacontenttype".into(), Value::String(ct.to_owned()));
    }
    if !body.is_empty() {
        if content_type.is_none() {
            return Err(ProblemDetail::at("/datacontenttype", format!("the body has no Content-Type; {NOT_JSON}")));
        }
        let data = serde_json::from_slice(body)
            .map_err(|e| ProblemDetail::at("/data", format!("the body is not the JSON its Content-Type says: {e}")))?;
        map.insert("data".into(), data);
    }
    check_attributes(&map)?;
    Envelope::from_json_value(Value::Object(map)).map_err(|e| envelope_error(&e))
}

/// Why binary data that is not JSON is refused (a 415).
pub(crate) const NOT_JSON: &str = "event data must be JSON: send Content-Type application/json (or another JSON type)";

/// A binary-mode header value as the attribute's string (§3.1.3.2): a double-quoted string is
/// unescaped first, then one round of percent-decoding; the bytes must be UTF-8.
pub fn decode_header_value(raw: &[u8]) -> Result<String, String> {
    let unquoted = match raw {
        [b'"', inner @ ..] => unquote(inner)?,
        _ => raw.to_vec(),
    };
    let mut bytes = Vec::with_capacity(unquoted.len());
    let mut i = 0;
    while i < unquoted.len() {
        match unquoted[i] {
            b'%' => {
                let hex = unquoted.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                let byte = hex
                    .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                let byte =
                    byte.ok_or_else(|| format!("`%` at byte {i} does not start a percent-encoded byte (`%XY`)"))?;
                bytes.push(byte);
                i += 3;
            }
            b @ 0x20..=0x7e => {
                bytes.push(b);
                i += 1;
            }
            b => return Err(format!("byte 0x{b:02x} at {i} must be percent-encoded")),
        }
    }
    String::from_utf8(bytes).map_err(|e| format!("the percent-decoded value is not valid UTF-8: {e}"))
}

/// The content of a quoted-string (RFC 9110 §5.6.4) after its opening quote: backslash escapes
/// undone, and nothing may follow the closing quote.
fn unquote(inner: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(inner.len());
    let mut bytes = inner.iter().copied();
    while let Some(b) = bytes.next() {
        match b {
            b'\\' => out.push(bytes.next().ok_or("a quoted string ends in a lone backslash")?),
            b'"' if bytes.next().is_none() => return Ok(out),
            b'"' => return Err("text follows the closing quote of a quoted string".into()),
            other => out.push(other),
        }
    }
    Err("a quoted string is not closed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_unquoted_then_percent_decoded_once() {
        let decode = |s: &str| decode_header_value(s.as_bytes());
        assert_eq!(decode("Euro%20%E2%82%AC%20%F0%9F%98%80").unwrap(), "Euro € 😀");
        assert_eq!(decode("%e2%82%ac").unwrap(), "€", "lower-case hex is accepted");
        assert_eq!(decode("%61bc").unwrap(), "abc", "needless encoding is accepted");
        assert_eq!(decode("100%2525").unwrap(), "100%25", "one round only");
        assert_eq!(decode(r#""say \"hi\" now""#).unwrap(), r#"say "hi" now"#);
        assert_eq!(decode(r#""a%20b""#).unwrap(), "a b");
        assert!(decode("%C0%A0").unwrap_err().contains("UTF-8"), "overlong encodings are refused");
        assert!(decode("50%").is_err());
        assert!(decode("%zz").is_err());
        assert!(decode("\"open").is_err());
        assert!(decode("\"a\"b").is_err());
        assert!(decode_header_value("caf\u{e9}".as_bytes()).unwrap_err().contains("percent-encoded"));
    }

    #[test]
    fn attribute_names_and_sources_follow_the_spec() {
        assert!(is_attribute_name("traceparent"));
        assert!(is_attribute_name("x1"));
        assert!(!is_attribute_name("myExt"));
        assert!(!is_attribute_name("my-ext"));
        assert!(!is_attribute_name(""));
        assert!(is_uri_char('/') && is_uri_char('%') && !is_uri_char(' ') && !is_uri_char('é'));
    }
}
