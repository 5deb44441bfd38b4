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
    match verifier.verify(token).map_err(refuse)? {
        Principal::Customer(id) => Ok(Customer { id, exp: expiry(token) }),
        Principal::Service(name) => Err(Close::new(
            close_code::FORBIDDEN,
            format!("service {name:?} may not receive notifications; a customer token is needed"),
        )),
    }
}

/// The `exp` claim of a token whose signature has already verified.
fn expiry(token: &str) -> Option<u64> {
    let payload = base64url(token.split('.').nth(1)?)?;
    serde_json::from_slice::<serde_json::Value>(&payload).ok()?.get("exp")?.as_u64()
}

/// Decodes unpadded base64url (RFC 4648 §5), as JWTs are written.
fn base64url(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    }
    let text = text.trim_end_matches('=').as_bytes();
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_base64url() {
        assert_eq!(base64url("").unwrap(), b"");
        assert_eq!(base64url("Zg").unwrap(), b"f");
        assert_eq!(base64url("Zm8").unwrap(), b"fo");
        assert_eq!(base64url("Zm9v").unwrap(), b"foo");
        assert_eq!(base64url("Zm9vYg").unwrap(), b"foob");
        assert_eq!(base64url("-_8").unwrap(), [0xfb, 0xff]);
        assert_eq!(base64url("Zm9vYg==").unwrap(), b"foob");
        assert!(base64url("Z").is_none());
        assert!(base64url("Zm+v").is_none());
    }

    #[test]
    fn reads_exp_of_a_token() {
        // {"exp":1700000000,"sub":"c"}
        let token = "e30.eyJleHAiOjE3MDAwMDAwMDAsInN1YiI6ImMifQ.sig";
        assert_eq!(expiry(token), Some(1_700_000_000));
        assert_eq!(expiry("e30.e30.sig"), None);
        assert_eq!(expiry("nodots"), None);
    }
}
