//! Helpers: a notifier served on a loopback port, real WebSocket clients, tokens and events.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use choreo_auth::{Issuer, Principal};
use choreo_notifier::Notifier;
use choreo_schemas::Envelope;
use choreo_schemas::envelope::AuthType;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a test waits for a frame it expects.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Served {
    pub dir: tempfile::TempDir,
    pub issuer: Issuer,
    pub notifier: Arc<Notifier>,
    pub addr: SocketAddr,
}

/// A notifier on a fresh data directory, its router served on 127.0.0.1.
pub async fn serve() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::open_or_create(dir.path()).unwrap();
    let notifier = Notifier::open(dir.path(), issuer.verifier()).unwrap();
    let addr = serve_router(notifier.router()).await;
    Served { dir, issuer, notifier, addr }
}

pub async fn serve_router(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

impl Served {
    pub fn token(&self, customer: &str) -> String {
        self.issuer.issue(&Principal::customer(customer), Duration::from_secs(3600)).unwrap()
    }

    /// Connects as `customer` (token in the query), with `extra` query parameters.
    pub async fn connect(&self, customer: &str, extra: &str) -> Ws {
        self.connect_query(&format!("token={}{extra}", self.token(customer))).await
    }

    pub async fn connect_query(&self, query: &str) -> Ws {
        let url = format!("ws://{}/v1/notifications?{query}", self.addr);
        tokio_tungstenite::connect_async(url).await.unwrap().0
    }

    /// Connects as `customer` and reads the hello; answers the socket and its `after`.
    pub async fn connect_ready(&self, customer: &str, extra: &str) -> (Ws, u64) {
        let mut ws = self.connect(customer, extra).await;
        let ready = next(&mut ws).await;
        assert_eq!(ready["type"], "ready", "{ready}");
        assert_eq!(ready["customer"], customer);
        let after = ready["after"].as_u64().unwrap();
        (ws, after)
    }

    pub async fn connect_with_header(&self, authorization: &str) -> Ws {
        let url = format!("ws://{}/v1/notifications", self.addr);
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert("authorization", authorization.parse().unwrap());
        tokio_tungstenite::connect_async(request).await.unwrap().0
    }
}

/// The next text frame as JSON (pings skipped); fails on a close or after [`WAIT`].
pub async fn next(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next()).await.expect("no frame in time");
        match message.expect("the connection ended").expect("a WebSocket error") {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// The next notification; checks its shape.
pub async fn notification(ws: &mut Ws) -> Value {
    let frame = next(ws).await;
    assert_eq!(frame["type"], "notification", "{frame}");
    for field in ["seq", "id", "case", "event", "source", "time", "data"] {
        assert!(frame.get(field).is_some(), "no `{field}` in {frame}");
    }
    frame
}

/// The close frame the server ends with: its code and reason.
pub async fn closed(ws: &mut Ws) -> (u16, String) {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next()).await.expect("no close in time");
        match message {
            Some(Ok(Message::Close(Some(frame)))) => return (u16::from(frame.code), frame.reason.as_str().to_owned()),
            Some(Ok(Message::Close(None))) => panic!("closed without a code"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(other)) => panic!("expected a close, got {other:?}"),
            Some(Err(e)) => panic!("expected a close, got the error {e}"),
            None => panic!("the connection ended without a close frame"),
        }
    }
}

pub async fn ack(ws: &mut Ws, seq: u64) {
    ws.send(Message::text(json!({"type": "ack", "seq": seq}).to_string())).await.unwrap();
}

/// Closes from the client side and waits for the server's answer: everything sent before
/// (acks) has been handled once this returns.
pub async fn hang_up(mut ws: Ws) {
    ws.close(None).await.unwrap();
    tokio::time::timeout(WAIT, async { while let Some(Ok(_)) = ws.next().await {} }).await.expect("no close answer");
}

/// An agent's completion acting for `customer`.
pub fn completion(customer: &str, event_type: &str, data: Value) -> Envelope {
    let source = match event_type {
        "PaymentIssueResolved" => "agents.payments",
        "InventoryChecked" => "agents.inventory",
        "FulfilmentIssueResolved" => "agents.orders",
        _ => "agents.support",
    };
    Envelope::builder(source, event_type).data(data).auth(AuthType::AppUser, customer).build().unwrap()
}

/// Encodes unpadded base64url, to forge tokens.
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let mut acc = [0u8; 3];
        acc[..chunk.len()].copy_from_slice(chunk);
        let n = u32::from_be_bytes([0, acc[0], acc[1], acc[2]]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}
