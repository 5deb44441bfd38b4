//! The ingest API in AWS Lambda, behind API Gateway (REST API v1 proxy or HTTP API v2): the
//! same [`axum::Router`], unchanged, under `lambda_http`.
//!
//! ```no_run
//! # async fn main_(ingest: choreo_producers::http::Ingest) -> Result<(), lambda_http::Error> {
//! choreo_producers::lambda::run(ingest.router()).await
//! # }
//! ```

use axum::Router;
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Context, LambdaEvent, Service};

/// Serves `router` to the Lambda runtime until it stops; API Gateway events in, their
/// response shape out (what `lambda_http::run` does).
pub async fn run(router: Router) -> Result<(), lambda_http::Error> {
    lambda_http::run(router).await
}

/// One invocation, as the runtime would make it: the API Gateway `request` through `router`,
/// the answer in the response shape of the request's origin (serialize it for the JSON API
/// Gateway reads). For tests and local tools; `context` is a default one.
pub async fn invoke(router: Router, request: LambdaRequest) -> serde_json::Result<serde_json::Value> {
    let mut adapter = Adapter::from(router);
    let event = LambdaEvent::new(request, Context::default());
    let response = match adapter.call(event).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    serde_json::to_value(response)
}
