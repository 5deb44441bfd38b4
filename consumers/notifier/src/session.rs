//! `GET /v1/notifications`: one customer's WebSocket session. It sends the customer's
//! notifications after the resume point in order, then each new one when the store wakes it,
//! and records their acknowledgements.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::response::Response;
use axum::routing::get;
use futures_util::SinkExt;
use tokio::time::Instant;

use crate::protocol::{ClientFrame, Close, close_code, ready};
use crate::token::{self, Customer};
use crate::{Notifier, NotifierError, PATH};

/// How often the server pings.
const PING_EVERY: Duration = Duration::from_secs(20);
/// How long a client may stay silent (no frame, no pong) before it is closed.
const SILENCE: Duration = Duration::from_secs(60);
/// Notifications read from the store at once.
const PAGE: usize = 256;
/// How long to wait for the client's side of a closing handshake.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

pub(crate) fn router(notifier: Arc<Notifier>) -> Router {
    Router::new().route(PATH, get(connect)).with_state(notifier)
}

type Params = Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>;

async fn connect(
    State(notifier): State<Arc<Notifier>>,
    upgrade: WebSocketUpgrade,
    headers: HeaderMap,
    params: Params,
) -> Response {
    // Checked before the upgrade, answered after it: a browser sees a close code and reason,
    // never a bare failed handshake.
    let start = match params {
        Err(e) => Err(Close::protocol(format!("malformed query: {}", e.body_text()))),
        Ok(Query(params)) => {
            let header = headers.get(AUTHORIZATION).map(|v| v.to_str().unwrap_or(""));
            token::authenticate(&notifier.verifier, header, params.get("token").map(String::as_str))
                .and_then(|customer| Ok((customer, parse_after(params.get("after"))?)))
        }
    };
    upgrade
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "notifier: a WebSocket upgrade failed"))
        .on_upgrade(move |socket| run(notifier, socket, start))
}

fn parse_after(after: Option<&String>) -> Result<Option<u64>, Close> {
    match after.map(|a| a.trim()) {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| Close::protocol(format!("`after` must be a sequence number (0 or more), not {text:?}"))),
    }
}

async fn run(notifier: Arc<Notifier>, mut socket: WebSocket, start: Result<(Customer, Option<u64>), Close>) {
    let (customer, after) = match start {
        Ok(start) => start,
        Err(refusal) => return finish(socket, refusal).await,
    };
    let _live = Live::new(&notifier);
    let close = Session { notifier: &notifier, customer }.serve(&mut socket, after).await;
    match close {
        Some(close) => finish(socket, close).await,
        None => drain(socket).await,
    }
}

/// Counts a live session while it lives.
struct Live<'a>(&'a Notifier);

impl<'a> Live<'a> {
    fn new(notifier: &'a Notifier) -> Self {
        notifier.sessions.fetch_add(1, Ordering::Relaxed);
        Live(notifier)
    }
}

impl Drop for Live<'_> {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Session<'a> {
    notifier: &'a Notifier,
    customer: Customer,
}

/// Ends a session: `Some` closes it with that frame, `None` means the client is gone.
type End = Option<Close>;

fn store_failed(e: &NotifierError) -> Close {
    tracing::error!(error = %e, "notifier: the store failed under a session");
    Close::new(close_code::INTERNAL, "the notification store failed; reconnect later")
}

impl Session<'_> {
    async fn serve(&self, socket: &mut WebSocket, after: Option<u64>) -> End {
        let (notifier, id) = (self.notifier, self.customer.id.as_str());
        let mut closing = notifier.closing.subscribe();
        if *closing.borrow_and_update() {
            return Some(Close::new(close_code::GOING_AWAY, "going away"));
        }
        // Subscribed before reading, so a notification committed in between still wakes us.
        let mut wake = notifier.fanout.subscribe(id);
        let (head, acked) = match notifier.store.cursor(id).await {
            Ok(cursor) => cursor,
            Err(e) => return Some(store_failed(&e)),
        };
        let after = match after {
            None => acked,
            Some(after) if after <= head => after,
            Some(after) => {
                return Some(Close::protocol(format!("`after` {after} is beyond the last notification ({head})")));
            }
        };
        if socket.send(Message::Text(ready(id, after).into())).await.is_err() {
            return None;
        }
        let expiry = tokio::time::sleep(until_expiry(self.customer.exp));
        tokio::pin!(expiry);
        let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        let mut heard = Instant::now();
        let (mut sent, mut acked) = (after, acked);
        let mut dirty = true;
        loop {
            if dirty {
                dirty = false;
                match self.send_after(socket, sent).await {
                    Ok(last) => sent = last,
                    Err(end) => return end,
                }
            }
            tokio::select! {
                biased;
                _ = closing.changed() => return Some(Close::new(close_code::GOING_AWAY, "going away")),
                () = &mut expiry => return Some(Close::new(close_code::UNAUTHENTICATED, "token expired")),
                () = wake.changed() => dirty = true,
                frame = socket.recv() => {
                    heard = Instant::now();
                    let text = match frame {
                        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(Message::Binary(_))) => {
                            return Some(Close::new(close_code::UNSUPPORTED, "binary frames are not accepted; send JSON text"));
                        }
                        Some(Ok(Message::Text(text))) => text,
                    };
                    let seq = match ClientFrame::parse(&text) {
                        Ok(ClientFrame::Ack { seq }) => seq,
                        Ok(ClientFrame::Hello) => continue,
                        Err(close) => return Some(close),
                    };
                    if seq > sent {
                        return Some(Close::protocol(format!("ack {seq} is beyond the last notification sent ({sent})")));
                    }
                    if seq > acked {
                        if let Err(e) = notifier.store.ack(id, seq).await {
                            return Some(store_failed(&e));
                        }
                        acked = seq;
                    }
                }
                _ = ping.tick() => {
                    if heard.elapsed() >= SILENCE {
                        return Some(Close::new(close_code::TIMEOUT, format!("nothing heard for {}s", SILENCE.as_secs())));
                    }
                    if socket.send(Message::Ping(Default::default())).await.is_err() {
                        return None;
                    }
                }
            }
        }
    }

    /// Sends every notification after `sent`, in order; answers the last sequence number sent.
    async fn send_after(&self, socket: &mut WebSocket, mut sent: u64) -> Result<u64, End> {
        loop {
            let page =
                self.notifier.store.after(&self.customer.id, sent, PAGE).await.map_err(|e| Some(store_failed(&e)))?;
            let full = page.len() == PAGE;
            if page.is_empty() {
                return Ok(sent);
            }
            for (seq, frame) in page {
                socket.feed(Message::Text(frame.into())).await.map_err(|_| None)?;
                sent = seq;
            }
            socket.flush().await.map_err(|_| None)?;
            if !full {
                return Ok(sent);
            }
        }
    }
}

fn until_expiry(exp: Option<u64>) -> Duration {
    let Some(exp) = exp else {
        // No `exp` (the verifier requires one): never.
        return Duration::from_secs(100 * 365 * 86_400);
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    // Valid through the second `exp` (no leeway, as the verifier): expired once it has passed.
    Duration::from_secs(exp + 1).saturating_sub(now)
}

/// Sends the close frame and waits (a little) for the client's, so it reads the reason.
async fn finish(mut socket: WebSocket, close: Close) {
    let frame = CloseFrame { code: close.code, reason: close.reason.into() };
    if socket.send(Message::Close(Some(frame))).await.is_ok() {
        drain(socket).await;
    }
}

/// Reads until the connection ends, which also answers a client's close frame.
async fn drain(mut socket: WebSocket) {
    let _ = tokio::time::timeout(CLOSE_WAIT, async { while let Some(Ok(_)) = socket.recv().await {} }).await;
}
