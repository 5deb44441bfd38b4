//! The local issuer's routes: its public keys, and the web page's sign-in as a seeded customer.
//!
//! Local only: with `--jwks-url` (a production issuer) none of this is mounted, and customers
//! sign in wherever that issuer lives. The sign-in asks no password: on a developer's machine
//! it stands in for the identity provider, exactly like `choreo token issue`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use choreo_auth::{Issuer, Principal};
use choreo_backoffice::DataSet;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// How long a token from the page's sign-in lasts.
pub const SIGN_IN_TTL: Duration = Duration::from_secs(8 * 3600);

#[derive(Clone)]
struct LocalAuth {
    issuer: Arc<Issuer>,
    customers: Arc<Vec<Customer>>,
}

/// A seeded customer and their orders, as the sign-in lists them.
#[derive(Debug, Clone, Serialize)]
struct Customer {
    customer_id: String,
    name: String,
    orders: Vec<String>,
}

pub fn router(issuer: Arc<Issuer>) -> Router {
    let data = DataSet::seeded();
    let customers = data
        .customers
        .iter()
        .map(|c| Customer {
            customer_id: c.customer_id.clone(),
            name: c.name.clone(),
            orders: data.orders.iter().filter(|o| o.customer_id == c.customer_id).map(|o| o.order_id.clone()).collect(),
        })
        .collect();
    let state = LocalAuth { issuer, customers: Arc::new(customers) };
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/v1/local/customers", get(customers_list))
        .route("/v1/local/sign-in", post(sign_in))
        .with_state(state)
}

async fn jwks(State(state): State<LocalAuth>) -> impl IntoResponse {
    Json(state.issuer.jwks())
}

async fn customers_list(State(state): State<LocalAuth>) -> impl IntoResponse {
    Json(json!({ "customers": *state.customers }))
}

#[derive(Debug, Deserialize)]
struct SignIn {
    customer_id: String,
}

async fn sign_in(
    State(state): State<LocalAuth>,
    body: Result<Json<SignIn>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(e) => return problem(StatusCode::BAD_REQUEST, "malformed-request", "Malformed request", &e.body_text()),
    };
    let Some(customer) = state.customers.iter().find(|c| c.customer_id == request.customer_id) else {
        let detail = format!("no seeded customer {:?}", request.customer_id);
        return problem(StatusCode::NOT_FOUND, "unknown-customer", "Unknown customer", &detail);
    };
    match state.issuer.issue(&Principal::customer(&customer.customer_id), SIGN_IN_TTL) {
        Ok(token) => Json(json!({
            "token": token,
            "customer_id": customer.customer_id,
            "name": customer.name,
            "orders": customer.orders,
            "expires_in": SIGN_IN_TTL.as_secs(),
        }))
        .into_response(),
        Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, "issuer-failed", "Could not sign a token", &e.to_string()),
    }
}

fn problem(status: StatusCode, slug: &str, title: &str, detail: &str) -> Response {
    let body = json!({
        "type": format!("https://choreo.dev/problems/{slug}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    (status, [(header::CONTENT_TYPE, "application/problem+json")], body.to_string()).into_response()
}
