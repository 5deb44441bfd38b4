//! The OpenAPI 3.1 document of the ingest API, generated from the handlers and types
//! (utoipa), served at `GET /v1/openapi.json` and checked in as `producers/openapi.json`.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::events::{CloudEvent, EventsAccepted};
use super::problem::{ProblemDetail, ProblemDocument};
use super::support::{SupportCase, SupportRequest};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Choreo ingest API",
        description = "Support requests from customers and CloudEvents from existing systems, onto the Choreo bus. \
                       Errors are application/problem+json with a stable type https://choreo.dev/problems/<slug>.",
        version = "1"
    ),
    paths(super::support::place, super::events::publish, serve),
    components(schemas(SupportRequest, SupportCase, EventsAccepted, CloudEvent, ProblemDocument, ProblemDetail)),
    modifiers(&Bearer),
    tags((name = "ingest", description = "Events onto the bus"))
)]
struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".into());
        scheme.description = Some("A Choreo token: a customer's for support requests, a service's for events".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The OpenAPI document, pretty-printed, ending in a newline.
pub fn openapi_json() -> String {
    let doc = ApiDoc::openapi();
    doc.to_pretty_json().map(|json| json + "\n").unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}\n"))
}

/// Serves the OpenAPI document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    operation_id = "getOpenApi",
    tag = "ingest",
    responses((status = 200, description = "This document", content_type = "application/json"))
)]
pub(crate) async fn serve() -> Response {
    let mut response = openapi_json().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
