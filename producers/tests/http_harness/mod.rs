//! What the ingest API tests share: a real embedded bus in a temporary directory (behind a
//! switch that can take it down), a local token issuer, the router, and reading back what
//! reached the bus.
#![allow(dead_code)]

#[path = "../common/faulty.rs"]
mod faulty;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use choreo_auth::{Issuer, Principal};
use choreo_bus::api::*;
use choreo_bus::{Bus, Config, EmbeddedBus, Inboxes};
use choreo_producers::http::Ingest;
use choreo_producers::{Publisher, RetryPolicy};
use choreo_schemas::Envelope;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub use faulty::{Faulty, Key};

/// An ingest API on a fresh bus whose rule `all` sends every CloudEvent to the inbox `all`.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub bus: Arc<Faulty>,
    pub issuer: Issuer,
    pub ingest: Ingest,
    pub router: Router,
}

impl Harness {
    pub async fn new() -> Self {
        Self::with(|ingest| ingest).await
    }

    /// A harness whose `Ingest` is set up by `configure`.
    pub async fn with(configure: impl FnOnce(Ingest) -> Ingest) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let inner = EmbeddedBus::open(Config::new(dir.path().join("bus"))).unwrap();
        inner.put_rule(RuleSpec::new("all", r#"{"detail": {"specversion": ["1.0"]}}"#)).await.unwrap();
        inner.put_targets("all", vec![Target::new("all", "all")]).await.unwrap();
        let bus = Arc::new(Faulty::new(inner, Key::Id));
        let fast = RetryPolicy {
            max_attempts: 2,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
        };
        let publisher = Publisher::new(bus.clone()).with_retry(fast);
        let issuer = Issuer::open_or_create(&dir.path().join("auth")).unwrap();
        let ingest = configure(Ingest::open(&dir.path().join("ingest"), publisher, issuer.verifier()).unwrap());
        let router = ingest.router();
        Self { dir, bus, issuer, ingest, router }
    }

    pub fn token(&self, principal: &Principal) -> String {
        self.issuer.issue(principal, Duration::from_secs(600)).unwrap()
    }

    pub fn customer(&self, id: &str) -> String {
        format!("Bearer {}", self.token(&Principal::customer(id)))
    }

    pub fn service(&self, name: &str) -> String {
        format!("Bearer {}", self.token(&Principal::service(name)))
    }

    pub fn set_down(&self, down: bool) {
        self.bus.down.store(down, Ordering::SeqCst);
    }

    /// Sends a request through the router.
    pub async fn send(&self, request: Request<Body>) -> Answer {
        answer(self.router.clone().oneshot(request).await.unwrap()).await
    }

    /// Every CloudEvent the bus delivered to the inbox so far, in order; each acknowledged.
    pub async fn delivered(&self) -> Vec<Envelope> {
        let mut events = Vec::new();
        loop {
            let options = ReceiveOptions { max_messages: 10, wait_time: Duration::ZERO, ..Default::default() };
            let got = self.bus.inner.receive("all", options).await.unwrap();
            if got.is_empty() {
                return events;
            }
            for m in got {
                events.push(m.event().unwrap().to_delivery().unwrap().envelope);
                self.bus.inner.ack("all", &m.receipt).await.unwrap();
            }
        }
    }
}

/// A response, read.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The slug of a problem document's `type`, after checking the document's shape.
    pub fn problem(&self) -> &str {
        assert_eq!(self.headers["content-type"], "application/problem+json", "{self:?}");
        assert_eq!(self.body["status"], self.status.as_u16(), "{self:?}");
        assert!(self.body["title"].is_string() && self.body["detail"].is_string(), "{self:?}");
        let ty = self.body["type"].as_str().unwrap();
        ty.strip_prefix("https://choreo.dev/problems/").unwrap()
    }

    /// The problem's `errors`, as (index, pointer) pairs.
    pub fn errors(&self) -> Vec<(Option<u64>, String)> {
        let errors = self.body["errors"].as_array().cloned().unwrap_or_default();
        errors.iter().map(|e| (e["index"].as_u64(), e["pointer"].as_str().unwrap().to_owned())).collect()
    }
}

pub async fn answer(response: http::Response<Body>) -> Answer {
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    Answer { status: parts.status, headers: parts.headers, body }
}

/// A POST with these headers and body.
pub fn post(path: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Request<Body> {
    let mut request = Request::post(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(body.into()).unwrap()
}

/// A structured `OrderShipped`-like event unknown to the catalog, numbered `i`.
pub fn shipped(i: usize) -> Value {
    serde_json::json!({
        "specversion": "1.0", "id": format!("evt-{i}"), "source": "retail.backoffice", "type": "ParcelScanned",
        "subject": format!("orders/o-{i}"), "time": "2026-01-05T10:00:00Z",
        "datacontenttype": "application/json", "data": {"order_id": format!("o-{i}"), "seq": i}
    })
}

/// A structured `OrderSupportPlaced` (in the catalog), valid.
pub fn placed(i: usize) -> Value {
    serde_json::json!({
        "specversion": "1.0", "id": format!("placed-{i}"), "source": "retail.backoffice", "type": "OrderSupportPlaced",
        "datacontenttype": "application/json", "dataschema": "urn:choreo:schema:OrderSupportPlaced:1",
        "authtype": "app_user", "authid": "c-1001",
        "data": {"order_id": format!("o-{}", 1000 + i), "message": "Where is my parcel?", "channel": "phone"}
    })
}
