//! Who is calling. Every request to the ingest API and every notifier connection carries a
//! bearer token (a JWT) naming a [`Principal`]: a customer (whose events and notifications are
//! theirs alone) or a service (a producer publishing from an existing system).
//!
//! Tokens are verified against a JSON Web Key Set ([`Verifier`]). Locally the keys come from
//! the [`Issuer`] kept in the data directory (Ed25519, created on first use; `choreo token
//! issue` signs with it); in production from the configured issuer's JWKS document. One code
//! path checks both: signature, algorithm, issuer, audience, expiry and the token's kind.
//!
//! ```
//! use std::time::Duration;
//! use choreo_auth::{Issuer, Principal};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let issuer = Issuer::open_or_create(dir.path()).unwrap();
//! let token = issuer.issue(&Principal::customer("c-1001"), Duration::from_secs(3600)).unwrap();
//! let who = issuer.verifier().verify(&token).unwrap();
//! assert_eq!(who, Principal::customer("c-1001"));
//! ```

mod issuer;
mod verifier;

use std::fmt;

pub use issuer::Issuer;
pub use verifier::{Verified, Verifier};

/// The audience every Choreo token is issued for.
pub const AUDIENCE: &str = "choreo";
/// The issuer name of the local issuer.
pub const LOCAL_ISSUER: &str = "choreo-local";

/// Who a token speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// A customer of the retail app (the envelope's `authtype` `app_user`).
    Customer(String),
    /// A producer: an existing system publishing events (`authtype` `service_account`).
    Service(String),
}

impl Principal {
    pub fn customer(id: impl Into<String>) -> Self {
        Self::Customer(id.into())
    }

    pub fn service(name: impl Into<String>) -> Self {
        Self::Service(name.into())
    }

    /// The customer id or the service name.
    pub fn id(&self) -> &str {
        match self {
            Self::Customer(id) | Self::Service(id) => id,
        }
    }

    /// The kind, as written in the token's `kind` claim.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Customer(_) => "customer",
            Self::Service(_) => "service",
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.id())
    }
}

/// The claims of a Choreo token.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    /// Seconds since the epoch.
    pub exp: u64,
    pub iat: u64,
    pub jti: String,
    /// `customer` or `service`.
    pub kind: String,
}

/// Why a token was refused. The messages are what a client is told (a WebSocket close reason
/// is at most 123 bytes: these stay well under).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token signed with an unknown key {0:?}")]
    UnknownKey(String),
    #[error("token algorithm {0} is not accepted")]
    Algorithm(String),
    #[error("token issuer {0:?} is not trusted")]
    Issuer(String),
    #[error("token audience is not {AUDIENCE:?}")]
    Audience,
    #[error("token kind {0:?} is neither customer nor service")]
    Kind(String),
    #[error("key set: {0}")]
    KeySet(String),
    #[error("issuer key store: {0}")]
    Store(String),
}

impl AuthError {
    /// A stable short code (`expired`, `bad_signature`, ...), for problem types and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed(_) => "malformed",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::BadSignature => "bad_signature",
            Self::UnknownKey(_) => "unknown_key",
            Self::Algorithm(_) => "algorithm",
            Self::Issuer(_) => "issuer",
            Self::Audience => "audience",
            Self::Kind(_) => "kind",
            Self::KeySet(_) => "key_set",
            Self::Store(_) => "store",
        }
    }
}

/// Reads the token out of an `Authorization: Bearer <token>` header value.
pub fn bearer(header: Option<&str>) -> Result<&str, AuthError> {
    let value = header.ok_or(AuthError::Missing)?.trim();
    let (scheme, token) =
        value.split_once(' ').ok_or_else(|| AuthError::Malformed("expected `Bearer <token>`".into()))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed(format!("scheme {scheme:?} is not Bearer")));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(token)
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header() {
        assert_eq!(bearer(Some("Bearer abc")), Ok("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Ok("abc"));
        assert_eq!(bearer(None), Err(AuthError::Missing));
        assert_eq!(bearer(Some("Bearer ")), Err(AuthError::Malformed("expected `Bearer <token>`".into())));
        assert!(matches!(bearer(Some("Basic abc")), Err(AuthError::Malformed(_))));
    }
}
