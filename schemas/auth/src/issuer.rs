//! The local issuer: an Ed25519 key kept in the data directory, created on first use.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::{AUDIENCE, AuthError, Claims, LOCAL_ISSUER, Principal, Verifier, now_secs};

/// The file holding the local issuer's private key (PKCS#8 DER), mode 0600.
pub const KEY_FILE: &str = "issuer.key";

/// Signs tokens for local use.
pub struct Issuer {
    encoding: EncodingKey,
    kid: String,
    /// The public key, base64url (the JWK's `x`).
    x: String,
    path: PathBuf,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer").field("kid", &self.kid).field("path", &self.path).finish_non_exhaustive()
    }
}

impl Issuer {
    /// Opens the issuer key of `data_dir`, creating it (and the directory) when missing.
    pub fn open_or_create(data_dir: &Path) -> Result<Self, AuthError> {
        let path = data_dir.join(KEY_FILE);
        let der = match std::fs::read(&path) {
            Ok(der) => der,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_key(&path)?,
            Err(e) => return Err(AuthError::Store(format!("{}: {e}", path.display()))),
        };
        let pair = Ed25519KeyPair::from_pkcs8(&der)
            .map_err(|e| AuthError::Store(format!("{}: not an Ed25519 PKCS#8 key: {e}", path.display())))?;
        let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        // The key id is derived from the public key, so a rotated key gets a new id.
        let kid = format!("local-{}", &x[..16]);
        Ok(Self { encoding: EncodingKey::from_ed_der(&der), kid, x, path })
    }

    /// Signs a token for `principal`, valid for `ttl` from now.
    pub fn issue(&self, principal: &Principal, ttl: Duration) -> Result<String, AuthError> {
        let now = now_secs();
        self.issue_at(principal, now, now + ttl.as_secs())
    }

    /// Signs a token with explicit times (tests make expired tokens with it).
    pub fn issue_at(&self, principal: &Principal, iat: u64, exp: u64) -> Result<String, AuthError> {
        let claims = Claims {
            iss: LOCAL_ISSUER.into(),
            sub: principal.id().into(),
            aud: AUDIENCE.into(),
            exp,
            iat,
            jti: ulid::Ulid::generate().to_string(),
            kind: principal.kind().into(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(|e| AuthError::Store(e.to_string()))
    }

    /// The issuer's public keys as a JWKS document (served at `/.well-known/jwks.json`).
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{ "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": self.kid, "x": self.x }]
        })
    }

    /// A verifier trusting this issuer only.
    pub fn verifier(&self) -> Verifier {
        Verifier::from_jwks(&self.jwks().to_string(), LOCAL_ISSUER)
            .expect("the local issuer's own key set is well formed")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn create_key(path: &Path) -> Result<Vec<u8>, AuthError> {
    let store = |e: std::io::Error| AuthError::Store(format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(store)?;
    }
    let der = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|e| AuthError::Store(format!("generating a key: {e}")))?
        .as_ref()
        .to_vec();
    // Written whole under a temporary name, then renamed: a crash never leaves half a key, and
    // two processes creating at once end with one key that both then read.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(store)?;
        file.write_all(&der).and_then(|()| file.sync_all()).map_err(store)?;
    }
    match std::fs::hard_link(&tmp, path) {
        Ok(()) => {
            let _ = std::fs::remove_file(&tmp);
            Ok(der)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let _ = std::fs::remove_file(&tmp);
            std::fs::read(path).map_err(store)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(store(e))
        }
    }
}
