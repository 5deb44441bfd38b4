//! A customer of `choreo serve`, as the end-to-end tests play one: requests over HTTP and
//! notifications over the WebSocket, acknowledged.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::served::Served;

/// Generous: a debug build on two busy cores; a case takes well under a second when idle.
pub const WAIT: Duration = Duration::from_secs(60);

pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(served: &Served, token: &str, after: Option<u64>) -> Socket {
    let mut url = format!("ws://{}/v1/notifications?token={token}", served.host);
    if let Some(after) = after {
        url.push_str(&format!("&after={after}"));
    }
    let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("connect to the notifier");
    socket
}

/// The next notification frame (other frames, like a hello, are passed over).
pub async fn next_notification(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("no notification within the wait")
            .expect("the socket closed")
            .expect("a WebSocket error");
        if let Message::Text(text) = frame {
            let value: Value = serde_json::from_str(&text).expect("a JSON frame");
            if value["type"] == "notification" {
                return value;
            }
        }
    }
}

/// Closes with the WebSocket handshake and waits for the server's side: every frame sent
/// before (acks included) has then been handled.
pub async fn close(mut socket: Socket) {
    socket.close(None).await.expect("close");
    while let Some(Ok(_)) = tokio::time::timeout(WAIT, socket.next()).await.expect("the server did not close") {}
}

pub async fn ack(socket: &mut Socket, seq: u64) {
    socket.send(Message::text(json!({"type": "ack", "seq": seq}).to_string())).await.expect("send the ack");
}

/// Notifications of one case until its last one (completed or escalated), acknowledging each.
pub async fn until_case_ends(socket: &mut Socket, case: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let n = next_notification(socket).await;
        assert_eq!(n["case"], case, "a notification of another case: {n}");
        ack(socket, n["seq"].as_u64().unwrap()).await;
        let last = n["event"] == "OrderSupportCompleted" || n["event"] == "CaseEscalated";
        seen.push(n);
        if last {
            return seen;
        }
    }
}

pub async fn submit(served: &Served, token: &str, key: &str, order: &str, message: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/support-requests", served.base))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&json!({"order_id": order, "message": message, "needed_by": "2030-01-02"}))
        .send()
        .await
        .expect("POST /v1/support-requests");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON answer"))
}

pub fn seqs(notifications: &[Value]) -> Vec<u64> {
    notifications.iter().map(|n| n["seq"].as_u64().unwrap()).collect()
}

pub fn events(notifications: &[Value]) -> Vec<&str> {
    notifications.iter().map(|n| n["event"].as_str().unwrap()).collect()
}
