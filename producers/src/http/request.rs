//! What every route reads first: the caller (bearer token), the media type, and the body
//! within its limit — each refusal a problem document.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use choreo_auth::{AuthError, Principal, Verifier};

use super::problem::{Kind, Problem};

/// How long a verified token is taken without verifying it again (at most; never past its
/// `exp`). A key removed from the verifier's set stops the tokens it signed within this time.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(30);

const TOKEN_CACHE_ENTRIES: usize = 4096;

/// Tokens verified lately: a producer sends one token with many requests, and an Ed25519
/// verification per request is most of the API's own CPU time per batch.
#[derive(Default)]
pub(crate) struct TokenCache {
    entries: Mutex<HashMap<String, (Principal, Instant)>>,
}

impl TokenCache {
    fn verify(&self, verifier: &Verifier, token: &str) -> Result<Principal, AuthError> {
        let now = Instant::now();
        if let Ok(entries) = self.entries.lock()
            && let Some((principal, until)) = entries.get(token)
            && now < *until
        {
            return Ok(principal.clone());
        }
        let verified = verifier.verify_token(token)?;
        let principal = verified.principal;
        if let Some(left) = seconds_left(verified.expires_at) {
            // Whole seconds, less one: a cached token is never taken at or past its `exp`.
            let until = now + TOKEN_CACHE_TTL.min(Duration::from_secs(left.saturating_sub(1)));
            if let Ok(mut entries) = self.entries.lock() {
                if entries.len() >= TOKEN_CACHE_ENTRIES {
                    entries.retain(|_, (_, until)| now < *until);
                    if entries.len() >= TOKEN_CACHE_ENTRIES {
                        entries.clear();
                    }
                }
                entries.insert(token.to_owned(), (principal.clone(), until));
            }
        }
        Ok(principal)
    }
}

/// The seconds before a token's `exp`.
fn seconds_left(exp: u64) -> Option<u64> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    exp.checked_sub(now)
}

/// The caller named by the request's bearer token: 401 when missing or not valid.
pub(crate) fn principal(verifier: &Verifier, cache: &TokenCache, headers: &HeaderMap) -> Result<Principal, Problem> {
    let value = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| unauthorized(&AuthError::Malformed("not ascii".into())))?),
    };
    let token = choreo_auth::bearer(value).map_err(|e| unauthorized(&e))?;
    cache.verify(verifier, token).map_err(|e| unauthorized(&e))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn a_cached_token_is_kept_at_most_the_ttl_and_never_to_its_exp() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = choreo_auth::Issuer::open_or_create(dir.path()).unwrap();
        let verifier = issuer.verifier();
        let cache = TokenCache::default();
        let long = issuer.issue_at(&Principal::customer("c-1"), now(), now() + 3600).unwrap();
        let short = issuer.issue_at(&Principal::customer("c-2"), now(), now() + 1).unwrap();
        assert_eq!(cache.verify(&verifier, &long).unwrap(), Principal::customer("c-1"));
        assert_eq!(cache.verify(&verifier, &short).unwrap(), Principal::customer("c-2"));
        let entries = cache.entries.lock().unwrap();
        let now = Instant::now();
        let (_, long_until) = entries[&long];
        assert!(long_until > now && long_until <= now + TOKEN_CACHE_TTL);
        let (_, short_until) = entries[&short];
        assert!(short_until <= now, "a token within a second of its exp is verified every time");
        drop(entries);
        assert!(cache.verify(&verifier, "x.y.z").is_err());
    }
}
