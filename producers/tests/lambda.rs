//! The ingest router under `lambda_http`: API Gateway REST (v1 proxy) and HTTP API (v2)
//! request fixtures, read with aws-lambda-events, through the same router onto the bus, and
//! the answers back in API Gateway's response shapes.

mod http_harness;

use aws_lambda_events::apigw::{
    ApiGatewayProxyRequest, ApiGatewayProxyResponse, ApiGatewayV2httpRequest, ApiGatewayV2httpResponse,
};
use aws_lambda_events::encodings::Body;
use choreo_producers::lambda;
use http_harness::Harness;
use lambda_http::request::LambdaRequest;
use serde_json::{Value, json};

/// A fixture with the token put in.
fn fixture(name: &str, token: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read_to_string(path).unwrap().replace("__TOKEN__", token)
}

fn body_json(body: Option<Body>) -> Value {
    match body {
        Some(Body::Text(text)) => serde_json::from_str(&text).unwrap(),
        other => panic!("expected a text body, got {other:?}"),
    }
}

#[tokio::test]
async fn a_rest_api_request_places_a_support_request_once() {
    let h = Harness::new().await;
    let token = h.token(&choreo_auth::Principal::customer("c-1001"));
    let request: ApiGatewayProxyRequest =
        serde_json::from_str(&fixture("apigw_rest_support_request.json", &token)).unwrap();
    assert_eq!(request.request_context.stage.as_deref(), Some("prod"));
    let mut answers = Vec::new();
    for _ in 0..2 {
        let raw = lambda::invoke(h.router.clone(), LambdaRequest::ApiGatewayV1(request.clone())).await.unwrap();
        let response: ApiGatewayProxyResponse = serde_json::from_value(raw).unwrap();
        assert_eq!(response.status_code, 202, "{response:?}");
        assert!(!response.is_base64_encoded);
        assert_eq!(response.multi_value_headers["content-type"], "application/json");
        answers.push(body_json(response.body));
    }
    assert_eq!(answers[0], answers[1], "the fixture's Idempotency-Key makes the retry one case");
    let events = h.delivered().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id(), answers[0]["event_id"]);
    assert_eq!(events[0].auth_id(), Some("c-1001"));
    assert_eq!(events[0].data().unwrap()["needed_by"], "2026-12-02");
}

#[tokio::test]
async fn an_http_api_request_publishes_a_batch_and_problems_keep_their_shape() {
    let h = Harness::new().await;
    let token = h.token(&choreo_auth::Principal::service("backoffice"));
    let request: ApiGatewayV2httpRequest =
        serde_json::from_str(&fixture("apigw_http_events_batch.json", &token)).unwrap();
    let raw = lambda::invoke(h.router.clone(), LambdaRequest::ApiGatewayV2(request.clone())).await.unwrap();
    let response: ApiGatewayV2httpResponse = serde_json::from_value(raw).unwrap();
    assert_eq!(response.status_code, 202, "{response:?}");
    assert_eq!(body_json(response.body), json!({"event_ids": ["lambda-evt-1", "lambda-evt-2"]}));
    let ids: Vec<String> = h.delivered().await.iter().map(|e| e.id().to_owned()).collect();
    assert_eq!(ids, ["lambda-evt-1", "lambda-evt-2"]);

    // The same request with a customer's token: a 403 problem, in the v2 response shape.
    let customer = h.token(&choreo_auth::Principal::customer("c-1001"));
    let mut forbidden = request;
    forbidden.headers.insert("authorization", format!("Bearer {customer}").parse().unwrap());
    let raw = lambda::invoke(h.router.clone(), LambdaRequest::ApiGatewayV2(forbidden)).await.unwrap();
    let response: ApiGatewayV2httpResponse = serde_json::from_value(raw).unwrap();
    assert_eq!(response.status_code, 403);
    assert_eq!(response.headers["content-type"], "application/problem+json");
    assert_eq!(body_json(response.body)["type"], "https://choreo.dev/problems/forbidden");
    assert!(h.delivered().await.is_empty());
}
