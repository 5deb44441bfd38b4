//! The OpenAPI document: the checked-in `producers/openapi.json` is what the handlers and
//! types generate (golden; rewrite it with `UPDATE_GOLDEN=1`), and the router serves it.

mod http_harness;

use std::path::Path;

use choreo_producers::http::openapi_json;
use http_harness::Harness;
use serde_json::Value;

#[test]
fn checked_in_openapi_matches_the_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let generated = openapi_json();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(checked_in == generated, "{} is stale: rerun with UPDATE_GOLDEN=1", path.display());
}

#[test]
fn the_document_names_every_route_and_problem_shape() {
    let doc: Value = serde_json::from_str(&openapi_json()).unwrap();
    for (path, method) in [("/v1/support-requests", "post"), ("/v1/events", "post"), ("/v1/openapi.json", "get")] {
        assert!(doc["paths"][path][method].is_object(), "{path} {method}");
    }
    let events = &doc["paths"]["/v1/events"]["post"];
    for media in ["application/cloudevents+json", "application/cloudevents-batch+json", "application/json"] {
        assert!(events["requestBody"]["content"][media].is_object(), "{media}");
    }
    for status in ["202", "400", "401", "403", "413", "415", "422", "503"] {
        assert!(events["responses"][status].is_object(), "{status}");
    }
    assert!(events["responses"]["503"]["headers"]["Retry-After"].is_object());
    assert!(doc["components"]["schemas"]["ProblemDocument"].is_object());
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
}

#[tokio::test]
async fn the_router_serves_the_document() {
    let h = Harness::new().await;
    let request = http::Request::get("/v1/openapi.json").body(axum::body::Body::empty()).unwrap();
    let answer = h.send(request).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["content-type"], "application/json");
    assert_eq!(answer.body, serde_json::from_str::<Value>(&openapi_json()).unwrap());
}
