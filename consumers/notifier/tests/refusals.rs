//! Who may not connect, and what ends a connection: each with its close code and reason.

mod common;

use std::time::Duration;

use choreo_auth::{Issuer, Principal};
use choreo_notifier::close_code;
use common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn a_missing_token_is_refused() {
    let s = serve().await;
    let mut ws = s.connect_query("").await;
    assert_eq!(closed(&mut ws).await, (4401, "missing bearer token".to_owned()));
    let mut ws = s.connect_query("token=").await;
    assert_eq!(closed(&mut ws).await, (4401, "missing bearer token".to_owned()));
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let s = serve().await;
    let token = s.issuer.issue_at(&Principal::customer("c-1"), now() - 120, now() - 60).unwrap();
    let mut ws = s.connect_query(&format!("token={token}")).await;
    assert_eq!(closed(&mut ws).await, (close_code::UNAUTHENTICATED, "token expired".to_owned()));
}

#[tokio::test]
async fn a_forged_token_is_refused() {
    let s = serve().await;
    // c-1's token with its payload rewritten to say c-2: the signature no longer verifies.
    let token = s.token("c-1");
    let parts: Vec<&str> = token.split('.').collect();
    let claims = json!({"iss": "choreo-local", "sub": "c-2", "aud": "choreo", "exp": now() + 3600,
                        "iat": now(), "jti": "x", "kind": "customer"});
    let forged = format!("{}.{}.{}", parts[0], base64url(claims.to_string().as_bytes()), parts[2]);
    let mut ws = s.connect_query(&format!("token={forged}")).await;
    assert_eq!(closed(&mut ws).await, (4401, "token signature does not verify".to_owned()));
    // Garbage is malformed; another issuer's key is unknown.
    let mut ws = s.connect_query("token=not.a.jwt").await;
    let (code, reason) = closed(&mut ws).await;
    assert_eq!(code, 4401);
    assert!(reason.starts_with("malformed token"), "{reason}");
    let elsewhere = tempfile::tempdir().unwrap();
    let other = Issuer::open_or_create(elsewhere.path()).unwrap();
    let token = other.issue(&Principal::customer("c-1"), Duration::from_secs(60)).unwrap();
    let mut ws = s.connect_query(&format!("token={token}")).await;
    let (code, reason) = closed(&mut ws).await;
    assert_eq!(code, 4401);
    assert!(reason.starts_with("token signed with an unknown key"), "{reason}");
}

#[tokio::test]
async fn a_service_token_is_forbidden() {
    let s = serve().await;
    let token = s.issuer.issue(&Principal::service("billing"), Duration::from_secs(60)).unwrap();
    let mut ws = s.connect_query(&format!("token={token}")).await;
    let (code, reason) = closed(&mut ws).await;
    assert_eq!(code, close_code::FORBIDDEN);
    assert!(reason.contains("a customer token is needed"), "{reason}");
}

#[tokio::test]
async fn a_bearer_header_is_accepted_too() {
    let s = serve().await;
    let mut ws = s.connect_with_header(&format!("Bearer {}", s.token("c-7"))).await;
    let ready = next(&mut ws).await;
    assert_eq!((ready["type"].as_str(), ready["customer"].as_str()), (Some("ready"), Some("c-7")));
    let mut ws = s.connect_with_header("Basic abc").await;
    let (code, reason) = closed(&mut ws).await;
    assert_eq!(code, 4401);
    assert_eq!(reason, "malformed token: scheme \"Basic\" is not Bearer");
}

#[tokio::test]
async fn a_token_that_expires_during_the_connection_closes_it() {
    let s = serve().await;
    let token = s.issuer.issue_at(&Principal::customer("c-1"), now(), now() + 2).unwrap();
    let mut ws = s.connect_query(&format!("token={token}")).await;
    assert_eq!(next(&mut ws).await["type"], "ready");
    assert_eq!(closed(&mut ws).await, (4401, "token expired".to_owned()));
}

#[tokio::test]
async fn an_ack_beyond_what_was_sent_is_a_protocol_error() {
    let s = serve().await;
    s.notifier.notify(&completion("c-1", "SupportTriaged", json!({}))).await.unwrap();
    let (mut ws, _) = s.connect_ready("c-1", "").await;
    assert_eq!(notification(&mut ws).await["seq"], 1);
    ack(&mut ws, 2).await;
    assert_eq!(closed(&mut ws).await, (1002, "ack 2 is beyond the last notification sent (1)".to_owned()));
    assert_eq!(s.notifier.cursor("c-1").await.unwrap(), (1, 0));
}

#[tokio::test]
async fn malformed_frames_close_with_the_reason() {
    let s = serve().await;
    let cases = [
        (Message::text("hello"), 1002, "malformed frame: expected value"),
        (Message::text(r#"{"type":"subscribe"}"#), 1002, "malformed frame: unknown variant `subscribe`"),
        (Message::text(r#"{"type":"ack","seq":"1"}"#), 1002, "malformed frame: invalid type"),
        (Message::binary(vec![1, 2, 3]), 1003, "binary frames are not accepted"),
    ];
    for (frame, code, reason) in cases {
        let (mut ws, _) = s.connect_ready("c-1", "").await;
        ws.send(frame).await.unwrap();
        let (got_code, got_reason) = closed(&mut ws).await;
        assert_eq!(got_code, code);
        assert!(got_reason.starts_with(reason), "{got_reason:?} does not start with {reason:?}");
    }
}

#[tokio::test]
async fn a_bad_after_is_a_protocol_error() {
    let s = serve().await;
    let mut ws = s.connect("c-1", "&after=abc").await;
    let (code, reason) = closed(&mut ws).await;
    assert_eq!((code, reason.as_str()), (1002, "`after` must be a sequence number (0 or more), not \"abc\""));
    let mut ws = s.connect("c-1", "&after=5").await;
    assert_eq!(closed(&mut ws).await, (1002, "`after` 5 is beyond the last notification (0)".to_owned()));
}

#[tokio::test]
async fn closing_the_sessions_says_going_away() {
    let s = serve().await;
    let (mut a, _) = s.connect_ready("c-1", "").await;
    let (mut b, _) = s.connect_ready("c-2", "").await;
    s.notifier.close_sessions();
    assert_eq!(closed(&mut a).await, (1001, "going away".to_owned()));
    assert_eq!(closed(&mut b).await, (1001, "going away".to_owned()));
    let mut late = s.connect("c-3", "").await;
    assert_eq!(closed(&mut late).await, (1001, "going away".to_owned()));
}

#[tokio::test]
async fn a_plain_http_request_is_not_upgraded() {
    let s = serve().await;
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(b"GET /v1/notifications HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
}

#[tokio::test]
async fn a_server_shutting_down_gracefully_closes_its_sessions_going_away() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::open_or_create(dir.path()).unwrap();
    let notifier = choreo_notifier::Notifier::open(dir.path(), issuer.verifier()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sessions = notifier.clone();
    let server = tokio::spawn(
        axum::serve(listener, notifier.router())
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
                sessions.close_sessions();
            })
            .into_future(),
    );
    let token = issuer.issue(&Principal::customer("c-1"), Duration::from_secs(60)).unwrap();
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/v1/notifications?token={token}")).await.unwrap();
    assert_eq!(next(&mut ws).await["type"], "ready");
    stop.send(()).unwrap();
    assert_eq!(closed(&mut ws).await, (1001, "going away".to_owned()));
    tokio::time::timeout(WAIT, server).await.expect("the server did not stop").unwrap().unwrap();
}
