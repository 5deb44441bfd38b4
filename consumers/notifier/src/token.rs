//! Who connects: the token (query `token` or `Authorization: Bearer`), verified, and its expiry.

use choreo_auth::{AuthError, Principal, Verifier};

use crate::protocol::{Close, close_code};

/// A connected customer and when their token expires (seconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Customer {
    pub id: String,
    pub exp: Option<u64>,
}

/// Verifies the token from the `Authorization` header, else from the query. A refusal is the
/// close frame to answer with: 4401 for a bad token, 4403 for a token that is not a customer's.
pub(crate) fn authenticate(
    verifier: &Verifier,
    header: Option<&str>,
    query_token: Option<&str>,
) -> Result<Customer, Close> {
    let refuse = |e: AuthError| Close::new(close_code::UNAUTHENTICATED, e.to_string());
    let token = match (header, query_token) {
        (Some(header), _) => choreo_auth::bearer(Some(header)).map_err(refuse)?,
        (None, Some(token)) if !token.trim().is_empty() => token.trim(),
        (None, _) => return Err(refuse(AuthError::Missing)),
    };
    let verified = verifier.verify_token(token).map_err(refuse)?;
    match verified.principal {
        Principal::Customer(id) => Ok(Customer { id, exp: Some(verified.expires_at) }),
        Principal::Service(name) => Err(Close::new(
            close_code::FORBIDDEN,
            format!("service {name:?} may not receive notifications; a customer token is needed"),
        )),
    }
}
