//! Checks tokens against a JSON Web Key Set.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::{AUDIENCE, AuthError, Claims, Principal};

/// A token that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub principal: Principal,
    /// Its `exp`: seconds since the epoch.
    pub expires_at: u64,
}

/// Verifies bearer tokens: the signature with a key of the set (chosen by `kid`), the
/// algorithm the key declares, the issuer, the audience `choreo`, `exp` and `nbf` (no leeway:
/// an expired token is expired), and the `kind` claim. Cheap to clone; a refreshed key set is
/// seen by every clone.
#[derive(Clone)]
pub struct Verifier {
    issuer: Arc<str>,
    keys: Arc<RwLock<HashMap<String, (DecodingKey, Algorithm)>>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<String> = self.keys.read().map(|k| k.keys().cloned().collect()).unwrap_or_default();
        f.debug_struct("Verifier").field("issuer", &self.issuer).field("kids", &kids).finish()
    }
}

impl Verifier {
    /// A verifier trusting the keys of a JWKS document, for tokens whose `iss` is `issuer`.
    pub fn from_jwks(jwks: &str, issuer: &str) -> Result<Self, AuthError> {
        let verifier = Self { issuer: issuer.into(), keys: Arc::default() };
        verifier.replace_keys(jwks)?;
        Ok(verifier)
    }

    /// Replaces the key set (a rotation at the issuer): tokens signed with a removed key are
    /// refused from now on.
    pub fn replace_keys(&self, jwks: &str) -> Result<(), AuthError> {
        let set: JwkSet = serde_json::from_str(jwks).map_err(|e| AuthError::KeySet(e.to_string()))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let kid = jwk.common.key_id.clone().ok_or_else(|| AuthError::KeySet("a key has no `kid`".into()))?;
            let algorithm = match jwk.common.key_algorithm {
                Some(alg) => Algorithm::try_from(alg)
                    .map_err(|_| AuthError::KeySet(format!("key {kid:?}: algorithm {alg:?} is not for signatures")))?,
                None => default_algorithm(&jwk.algorithm)
                    .ok_or_else(|| AuthError::KeySet(format!("key {kid:?} has no `alg`")))?,
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| AuthError::KeySet(format!("key {kid:?}: {e}")))?;
            keys.insert(kid, (key, algorithm));
        }
        if keys.is_empty() {
            return Err(AuthError::KeySet("the key set has no keys".into()));
        }
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        Ok(())
    }

    /// The principal a token speaks for, or why it is refused.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_token(token).map(|verified| verified.principal)
    }

    /// [`Verifier::verify`], with the token's expiry: for callers that keep a connection or a
    /// cached answer no longer than the token lives.
    pub fn verify_token(&self, token: &str) -> Result<Verified, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        let kid = header.kid.ok_or_else(|| AuthError::Malformed("the token header has no `kid`".into()))?;
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let (key, algorithm) = keys.get(&kid).ok_or(AuthError::UnknownKey(kid))?;
        if header.alg != *algorithm {
            return Err(AuthError::Algorithm(format!("{:?}", header.alg)));
        }
        let mut validation = Validation::new(*algorithm);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[&*self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::InvalidIssuer => AuthError::Issuer(issuer_of(token)),
            ErrorKind::InvalidAudience => AuthError::Audience,
            ErrorKind::InvalidAlgorithm => AuthError::Algorithm(format!("{:?}", header.alg)),
            _ => AuthError::Malformed(e.to_string()),
        })?;
        let claims = data.claims;
        if claims.sub.is_empty() {
            return Err(AuthError::Malformed("empty `sub`".into()));
        }
        let principal = match claims.kind.as_str() {
            "customer" => Principal::Customer(claims.sub),
            "service" => Principal::Service(claims.sub),
            other => return Err(AuthError::Kind(other.into())),
        };
        Ok(Verified { principal, expires_at: claims.exp })
    }
}

fn default_algorithm(params: &jsonwebtoken::jwk::AlgorithmParameters) -> Option<Algorithm> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
    match params {
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Some(Algorithm::EdDSA),
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Some(Algorithm::ES256),
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P384 => Some(Algorithm::ES384),
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        _ => None,
    }
}

/// The `iss` of a token whose signature already verified, for the error message.
fn issuer_of(token: &str) -> String {
    use base64::Engine;
    token
        .split('.')
        .nth(1)
        .and_then(|p| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("iss").and_then(|i| i.as_str()).map(String::from))
        .unwrap_or_default()
}
