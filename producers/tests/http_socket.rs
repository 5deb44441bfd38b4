//! The ingest API over a real socket: `axum::serve` on loopback, `reqwest` as the client.

mod http_harness;

use http_harness::{Harness, shipped};
use serde_json::{Value, json};

async fn serve(h: &Harness) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().merge(h.router.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn over_a_socket_one_key_is_one_case_and_events_in_every_mode_arrive() {
    let h = Harness::new().await;
    let base = serve(&h).await;
    let client = reqwest::Client::new();
    let customer = h.customer("c-1001");
    let body = json!({"order_id": "o-1001", "message": "Charged twice."});
    let mut answers = Vec::new();
    for _ in 0..2 {
        let response = client
            .post(format!("{base}/v1/support-requests"))
            .header("authorization", &customer)
            .header("idempotency-key", "socket-1")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        answers.push(response.json::<Value>().await.unwrap());
    }
    assert_eq!(answers[0], answers[1]);

    let service = h.service("backoffice");
    let binary = client
        .post(format!("{base}/v1/events"))
        .header("authorization", &service)
        .header("content-type", "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", "sock-bin")
        .header("ce-source", "retail%2Fbackoffice")
        .header("ce-type", "ParcelScanned")
        .header("ce-subject", "caf%C3%A9%20order")
        .body(r#"{"n": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(binary.status(), 202);
    let batch = client
        .post(format!("{base}/v1/events"))
        .header("authorization", &service)
        .header("content-type", "application/cloudevents-batch+json")
        .body(json!([shipped(1), shipped(2)]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(batch.status(), 202);
    assert_eq!(batch.json::<Value>().await.unwrap(), json!({"event_ids": ["evt-1", "evt-2"]}));

    let refused = client
        .post(format!("{base}/v1/events"))
        .header("authorization", &service)
        .header("content-type", "text/csv")
        .body("a,b")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 415);
    assert_eq!(refused.headers()["content-type"], "application/problem+json");
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["type"], "https://choreo.dev/problems/unsupported-media-type");

    let events = h.delivered().await;
    let ids: Vec<&str> = events.iter().map(|e| e.id()).collect();
    assert_eq!(ids, [answers[0]["event_id"].as_str().unwrap(), "sock-bin", "evt-1", "evt-2"]);
    assert_eq!(events[1].source(), "retail/backoffice");
    assert_eq!(events[1].subject(), Some("café order"));
}
