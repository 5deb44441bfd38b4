//! What every route reads first: the caller (bearer token), the media type, and the body
//! within its limit — each refusal a problem document.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use choreo_auth::{AuthError, Principal, Verifier};

use super::problem::{Kind, Problem};

/// The caller named by the request's bearer token: 401 when missing or not valid.
pub(crate) fn principal(verifier: &Verifier, headers: &HeaderMap) -> Result<Principal, Problem> {
    let value = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| unauthorized(&AuthError::Malformed("not ascii".into())))?),
    };
    let token = choreo_auth::bearer(value).map_err(|e| unauthorized(&e))?;
    verifier.verify(token).map_err(|e| unauthorized(&e))
}

fn unauthorized(error: &AuthError) -> Problem {
    Problem::new(Kind::Unauthorized, format!("{error} ({})", error.code()))
}

/// The customer id of a customer token; 403 for a service token.
pub(crate) fn customer(principal: Principal) -> Result<String, Problem> {
    match principal {
        Principal::Customer(id) => Ok(id),
        Principal::Service(name) => Err(Problem::new(
            Kind::Forbidden,
            format!("service {name:?} may not place support requests; they are placed with a customer token"),
        )),
    }
}

/// The service name of a service token; 403 for a customer token.
pub(crate) fn service(principal: Principal) -> Result<String, Problem> {
    match principal {
        Principal::Service(name) => Ok(name),
        Principal::Customer(id) => Err(Problem::new(
            Kind::Forbidden,
            format!("customer {id:?} may not publish events; /v1/events takes a service token"),
        )),
    }
}

/// A media type's essence (`type/subtype`), lowercased, without parameters; `None` when the
/// header is absent, not text, or has no `/`.
pub(crate) fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim();
    essence.contains('/').then(|| essence.to_ascii_lowercase())
}

/// Whether a media type essence is JSON (`application/json`, `text/json` or `*/*+json`).
pub(crate) fn is_json(essence: &str) -> bool {
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

/// Reads the body, refusing with 413 as soon as it is over `limit` bytes (by its
/// `Content-Length` when given, by what arrives otherwise).
pub(crate) async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Problem> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(length) = declared
        && length > limit as u64
    {
        return Err(too_large(Some(length)));
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // `to_bytes` fails for a body over the limit or one that broke off.
        match e.into_inner().downcast::<http_body_util::LengthLimitError>() {
            Ok(_) => too_large(None),
            Err(e) => Problem::malformed(format!("the request body could not be read: {e}")),
        }
    })
}

fn too_large(length: Option<u64>) -> Problem {
    let size = length.map(|n| format!(" ({n} bytes)")).unwrap_or_default();
    Problem::new(Kind::PayloadTooLarge, format!("the request body{size} is over the limit"))
}
