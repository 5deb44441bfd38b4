//! `POST /v1/support-requests` on a real embedded bus: the case and event ids, the customer
//! from the token, idempotent retries (also after a 503 and under concurrency), and each error
//! class with its status and problem type.

mod http_harness;

use http_harness::{Harness, post};
use serde_json::json;

const PATH: &str = "/v1/support-requests";

fn body() -> String {
    json!({"order_id": "o-1001", "message": "I was charged twice.", "needed_by": "2026-12-02"}).to_string()
}

fn request(auth: &str, key: Option<&str>, body: String) -> http::Request<axum::body::Body> {
    let mut headers = vec![("authorization", auth), ("content-type", "application/json")];
    if let Some(key) = key {
        headers.push(("idempotency-key", key));
    }
    post(PATH, &headers, body)
}

#[tokio::test]
async fn a_request_opens_a_case_acting_for_the_token_customer() {
    let h = Harness::new().await;
    let answer = h.send(request(&h.customer("c-1001"), None, body())).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    let (case_id, event_id) = (answer.body["case_id"].as_str().unwrap(), answer.body["event_id"].as_str().unwrap());
    let events = h.delivered().await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.id(), event_id);
    assert_eq!(event.correlation_id(), Some(case_id));
    assert_eq!(event.event_type(), "OrderSupportPlaced");
    assert_eq!(event.source(), "retail.support-api");
    assert_eq!(event.subject(), Some("orders/o-1001"));
    assert_eq!(event.auth_id(), Some("c-1001"));
    assert_eq!(event.auth_type().map(|t| t.as_str()), Some("app_user"));
    assert!(event.traceparent().is_some() && event.budget().is_some());
    assert_eq!(event.data().unwrap()["channel"], "web");
    assert_eq!(event.data().unwrap()["needed_by"], "2026-12-02");
}

#[tokio::test]
async fn the_same_request_twice_with_one_key_is_one_case() {
    let h = Harness::new().await;
    let first = h.send(request(&h.customer("c-1001"), Some("k-1"), body())).await;
    let second = h.send(request(&h.customer("c-1001"), Some("k-1"), body())).await;
    assert_eq!((first.status.as_u16(), second.status.as_u16()), (202, 202));
    assert_eq!(first.body, second.body);
    assert_eq!(second.headers["idempotent-replayed"], "true");
    let events = h.delivered().await;
    assert_eq!(events.len(), 1, "one event on the bus");
    assert_eq!(events[0].id(), first.body["event_id"]);
    // The key is the customer's: another customer's same key is another case.
    let other = h.send(request(&h.customer("c-2002"), Some("k-1"), body())).await;
    assert_eq!(other.status, 202);
    assert_ne!(other.body["case_id"], first.body["case_id"]);
}

#[tokio::test]
async fn a_key_reused_for_another_body_is_refused() {
    let h = Harness::new().await;
    assert_eq!(h.send(request(&h.customer("c-1001"), Some("k-2"), body())).await.status, 202);
    let other = json!({"order_id": "o-1001", "message": "Something else."}).to_string();
    let answer = h.send(request(&h.customer("c-1001"), Some("k-2"), other)).await;
    assert_eq!(answer.status, 422);
    assert_eq!(answer.problem(), "idempotency-key-reused");
    assert_eq!(h.delivered().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_with_one_key_make_one_case() {
    let h = std::sync::Arc::new(Harness::new().await);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move { h.send(request(&h.customer("c-1001"), Some("k-race"), body())).await })
        })
        .collect();
    let mut cases = std::collections::BTreeSet::new();
    for task in tasks {
        let answer = task.await.unwrap();
        assert_eq!(answer.status, 202, "{answer:?}");
        cases.insert(answer.body["case_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(cases.len(), 1, "one case: {cases:?}");
    assert_eq!(h.delivered().await.len(), 1, "one event");
}

#[tokio::test]
async fn a_retry_after_503_publishes_the_same_event_once() {
    let h = Harness::new().await;
    h.set_down(true);
    let failed = h.send(request(&h.customer("c-1001"), Some("k-3"), body())).await;
    assert_eq!(failed.status, 503);
    assert_eq!(failed.problem(), "bus-unavailable");
    assert_eq!(failed.headers["retry-after"], "1");
    assert!(h.delivered().await.is_empty());
    h.set_down(false);
    let retried = h.send(request(&h.customer("c-1001"), Some("k-3"), body())).await;
    assert_eq!(retried.status, 202, "{retried:?}");
    let again = h.send(request(&h.customer("c-1001"), Some("k-3"), body())).await;
    assert_eq!(again.body, retried.body);
    let events = h.delivered().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id(), retried.body["event_id"]);
}

#[tokio::test]
async fn auth_errors_are_401_and_403_and_expired_tokens_are_refused() {
    let h = Harness::new().await;
    let missing = h.send(post(PATH, &[("content-type", "application/json")], body())).await;
    assert_eq!((missing.status.as_u16(), missing.problem()), (401, "unauthorized"));
    assert!(missing.headers["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    let forged = h.send(request("Bearer not.a.token", None, body())).await;
    assert_eq!((forged.status.as_u16(), forged.problem()), (401, "unauthorized"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let expired = h.issuer.issue_at(&choreo_auth::Principal::customer("c-1001"), now - 120, now - 60).unwrap();
    let late = h.send(request(&format!("Bearer {expired}"), None, body())).await;
    assert_eq!((late.status.as_u16(), late.problem()), (401, "unauthorized"));
    assert!(late.body["detail"].as_str().unwrap().contains("expired"), "{late:?}");
    let valid = h.customer("c-1001");
    assert_eq!(h.send(request(&valid, None, body())).await.status, 202);
    let service = h.send(request(&h.service("backoffice"), None, body())).await;
    assert_eq!((service.status.as_u16(), service.problem()), (403, "forbidden"));
    assert_eq!(h.delivered().await.len(), 1, "only the valid token's request");
}

#[tokio::test]
async fn bad_requests_are_400_413_415_and_422_as_problems() {
    let h = Harness::new().await;
    let auth = h.customer("c-1001");
    let bad_json = h.send(request(&auth, None, "{\"order_id\": ".into())).await;
    assert_eq!((bad_json.status.as_u16(), bad_json.problem()), (400, "malformed-request"));
    let not_object = h.send(request(&auth, None, "[1]".into())).await;
    assert_eq!((not_object.status.as_u16(), not_object.problem()), (400, "malformed-request"));
    let long_key = "k".repeat(256);
    let key = h.send(request(&auth, Some(&long_key), body())).await;
    assert_eq!((key.status.as_u16(), key.problem()), (400, "malformed-request"));
    let text = h.send(post(PATH, &[("authorization", &auth), ("content-type", "text/plain")], body())).await;
    assert_eq!((text.status.as_u16(), text.problem()), (415, "unsupported-media-type"));
    let none = h.send(post(PATH, &[("authorization", &auth)], body())).await;
    assert_eq!((none.status.as_u16(), none.problem()), (415, "unsupported-media-type"));
    let upper = h
        .send(post(PATH, &[("authorization", &auth), ("content-type", "Application/JSON; charset=UTF-8")], body()))
        .await;
    assert_eq!(upper.status, 202, "media types are case-insensitive: {upper:?}");
    let huge = json!({"order_id": "o-1001", "message": "x".repeat(2 << 20)}).to_string();
    let too_large = h.send(request(&auth, None, huge)).await;
    assert_eq!((too_large.status.as_u16(), too_large.problem()), (413, "payload-too-large"));
    let bad_order = h.send(request(&auth, None, json!({"order_id": "1001", "message": "hi"}).to_string())).await;
    assert_eq!((bad_order.status.as_u16(), bad_order.problem()), (422, "schema-violation"));
    assert_eq!(bad_order.errors(), [(None, "/order_id".to_owned())]);
    let bad_date = h
        .send(request(&auth, None, json!({"order_id": "o-1", "message": "hi", "needed_by": "soon"}).to_string()))
        .await;
    assert_eq!(bad_date.errors(), [(None, "/needed_by".to_owned())]);
    let spoof = json!({"order_id": "o-1001", "message": "hi", "customer_id": "c-2002"}).to_string();
    let spoofed = h.send(request(&auth, None, spoof)).await;
    assert_eq!((spoofed.status.as_u16(), spoofed.problem()), (422, "schema-violation"));
    assert_eq!(spoofed.errors(), [(None, "/customer_id".to_owned())]);
    assert_eq!(h.delivered().await.len(), 1, "only the valid request was published");
}
