//! The ingest API in AWS Lambda, behind API Gateway (REST API v1 proxy or HTTP API v2): the
//! same [`axum::Router`], unchanged, under `lambda_http`.
//!
//! One thing sits between the two: `lambda_http` puts the API Gateway stage in front of the
//! path (`/prod/v1/events`, as the client's URL had it), which the router's routes do not
//! carry; the request is routed on the path API Gateway matched instead (its raw path, without
//! the stage), so the router serves the same routes in every stage.
//!
//! ```no_run
//! # async fn main_(ingest: choreo_producers::http::Ingest) -> Result<(), lambda_http::Error> {
//! choreo_producers::lambda::run(ingest.router()).await
//! # }
//! ```

use axum::Router;
use http::Uri;
use http::uri::PathAndQuery;
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Context, LambdaEvent, Request, RequestExt, Service};
use tower::ServiceExt;

/// Serves `router` to the Lambda runtime until it stops: API Gateway events in, their
/// response shape out (`lambda_http::run`, with the stage taken off the path).
pub async fn run(router: Router) -> Result<(), lambda_http::Error> {
    lambda_http::run(router.map_request(without_stage)).await
}

/// One invocation, as [`run`] makes it: the API Gateway `request` through `router`, the answer
/// in the response shape of the request's origin, as the JSON Lambda returns to API Gateway.
/// For tests and local tools; the Lambda context is a default one.
pub async fn invoke(router: Router, request: LambdaRequest) -> serde_json::Result<serde_json::Value> {
    let mut adapter = Adapter::from(router.map_request(without_stage));
    let event = LambdaEvent::new(request, Context::default());
    let response = match adapter.call(event).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    serde_json::to_value(response)
}

/// The request with its path replaced by API Gateway's raw path (no stage), query kept.
fn without_stage(mut request: Request) -> Request {
    let raw = request.extensions().raw_http_path();
    if raw.is_empty() || raw == request.uri().path() {
        return request;
    }
    let path_and_query = match request.uri().query() {
        Some(query) => format!("{raw}?{query}"),
        None => raw.to_owned(),
    };
    let mut parts = request.uri().clone().into_parts();
    if let Ok(pq) = path_and_query.parse::<PathAndQuery>() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
    request
}
