//! Tokens from the local issuer, and every way one is refused.

use std::time::Duration;

use choreo_auth::{AuthError, Issuer, Principal, Verifier};

fn issuer() -> (tempfile::TempDir, Issuer) {
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::open_or_create(dir.path()).unwrap();
    (dir, issuer)
}

#[test]
fn customer_and_service_tokens_verify() {
    let (_dir, issuer) = issuer();
    let verifier = issuer.verifier();
    let hour = Duration::from_secs(3600);
    let customer = issuer.issue(&Principal::customer("c-1001"), hour).unwrap();
    let service = issuer.issue(&Principal::service("backoffice"), hour).unwrap();
    assert_eq!(verifier.verify(&customer), Ok(Principal::customer("c-1001")));
    assert_eq!(verifier.verify(&service), Ok(Principal::service("backoffice")));
    let at = issuer.issue_at(&Principal::customer("c-1"), 1_000, 4_000_000_000).unwrap();
    assert_eq!(verifier.verify_token(&at).unwrap().expires_at, 4_000_000_000);
}

#[test]
fn the_key_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let token = Issuer::open_or_create(dir.path())
        .unwrap()
        .issue(&Principal::customer("c-1"), Duration::from_secs(60))
        .unwrap();
    let again = Issuer::open_or_create(dir.path()).unwrap();
    assert_eq!(again.verifier().verify(&token), Ok(Principal::customer("c-1")));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(again.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the private key is readable by others: {mode:o}");
    }
}

#[test]
fn expired_token_is_refused() {
    let (_dir, issuer) = issuer();
    let token = issuer.issue_at(&Principal::customer("c-1001"), 1_000, 2_000).unwrap();
    assert_eq!(issuer.verifier().verify(&token), Err(AuthError::Expired));
}

#[test]
fn token_of_another_issuer_key_is_refused() {
    let (_a, mine) = issuer();
    let (_b, other) = issuer();
    let token = other.issue(&Principal::customer("c-1001"), Duration::from_secs(60)).unwrap();
    assert!(matches!(mine.verifier().verify(&token), Err(AuthError::UnknownKey(_))));
}

#[test]
fn forged_token_is_refused() {
    let (_a, mine) = issuer();
    let (_b, other) = issuer();
    // Another key's signature under this issuer's key id: the signature does not verify.
    let genuine = mine.issue(&Principal::customer("c-1001"), Duration::from_secs(60)).unwrap();
    let forged_sig = other.issue(&Principal::customer("c-1001"), Duration::from_secs(60)).unwrap();
    let (head_and_claims, _) = genuine.rsplit_once('.').unwrap();
    let (_, sig) = forged_sig.rsplit_once('.').unwrap();
    let forged = format!("{head_and_claims}.{sig}");
    assert_eq!(mine.verifier().verify(&forged), Err(AuthError::BadSignature));

    // A customer id changed in the claims: the signature no longer matches.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = genuine.split('.').collect();
    let claims = String::from_utf8(b64.decode(parts[1]).unwrap()).unwrap().replace("c-1001", "c-1002");
    let tampered = format!("{}.{}.{}", parts[0], b64.encode(claims), parts[2]);
    assert_eq!(mine.verifier().verify(&tampered), Err(AuthError::BadSignature));
}

#[test]
fn garbage_and_wrong_issuer_are_refused() {
    let (_dir, issuer) = issuer();
    assert!(matches!(issuer.verifier().verify("not-a-token"), Err(AuthError::Malformed(_))));
    let token = issuer.issue(&Principal::customer("c-1001"), Duration::from_secs(60)).unwrap();
    let elsewhere = Verifier::from_jwks(&issuer.jwks().to_string(), "https://login.example.com/").unwrap();
    assert_eq!(elsewhere.verify(&token), Err(AuthError::Issuer("choreo-local".into())));
}

#[test]
fn rotated_key_set_drops_old_tokens() {
    let (_a, old) = issuer();
    let (_b, new) = issuer();
    let verifier = old.verifier();
    let token = old.issue(&Principal::customer("c-1001"), Duration::from_secs(60)).unwrap();
    assert!(verifier.verify(&token).is_ok());
    verifier.replace_keys(&new.jwks().to_string()).unwrap();
    assert!(matches!(verifier.verify(&token), Err(AuthError::UnknownKey(_))));
    assert!(matches!(Verifier::from_jwks(r#"{"keys":[]}"#, "x"), Err(AuthError::KeySet(_))));
    assert!(matches!(Verifier::from_jwks("{", "x"), Err(AuthError::KeySet(_))));
}
