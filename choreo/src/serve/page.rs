//! The customer web page: three static files compiled into the binary, served with a strict
//! content security policy (no inline script, nothing from elsewhere).

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX: &str = include_str!("web/index.html");
const SCRIPT: &str = include_str!("web/app.js");
const STYLE: &str = include_str!("web/app.css");
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn router() -> Router {
    Router::new()
        .route("/", get(|| serve("text/html; charset=utf-8", INDEX)))
        .route("/app.js", get(|| serve("text/javascript; charset=utf-8", SCRIPT)))
        .route("/app.css", get(|| serve("text/css; charset=utf-8", STYLE)))
}

async fn serve(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}
