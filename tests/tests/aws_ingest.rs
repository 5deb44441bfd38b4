//! The ingest API as a Lambda function (`choreo-ingest`) behind the real Lambda Runtime API of
//! `cargo lambda watch`, publishing on EventBridge (ministack): an HTTP API (payload 2.0)
//! support request with a customer's token is a 202 and its `OrderSupportPlaced` reaches a
//! rule's queue; its retry with the same `Idempotency-Key` is the same case, also when it
//! lands on another instance (the records in DynamoDB); a token of an issuer the function does
//! not trust is a 401 problem and nothing is put on the bus. The tokens' keys come from a JSON
//! Web Key Set served here over HTTP, as an identity provider's.

use std::time::Duration;

use choreo_auth::{Issuer, LOCAL_ISSUER, Principal};
use choreo_bus::api::{ReceiveOptions, RuleSpec, Target};
use choreo_bus::{AwsBus, AwsConfig, Bus, Inboxes};
use choreo_consumers::store::DynamoLedger;
use choreo_producers::Publisher;
use choreo_producers::http::Ingest;
use choreo_tests::lambda_watch::Watch;
use choreo_tests::ministack::Ministack;
use serde_json::{Value, json};

/// The table of the `Idempotency-Key` records (the template's ledger table).
const TABLE: &str = "choreo-ingest-records";

/// Serves `jwks` at `/.well-known/jwks.json` on a free loopback port; answers the URL.
async fn serve_jwks(jwks: Value) -> String {
    let app = axum::Router::new()
        .route("/.well-known/jwks.json", axum::routing::get(move || std::future::ready(axum::Json(jwks.clone()))));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// An HTTP API (payload format 2.0) request for `POST /v1/support-requests`.
fn support_request(token: &str, idempotency_key: &str) -> Value {
    let body = json!({"order_id": "o-1001", "message": "I was charged twice.", "needed_by": "2026-12-04"});
    json!({
        "version": "2.0",
        "routeKey": "ANY /v1/{proxy+}",
        "rawPath": "/v1/support-requests",
        "rawQueryString": "",
        "headers": {
            "authorization": format!("Bearer {token}"),
            "content-type": "application/json",
            "idempotency-key": idempotency_key,
            "host": "abc123.execute-api.us-east-1.amazonaws.com"
        },
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": "POST",
                "path": "/v1/support-requests",
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "curl/8.5.0"
            },
            "requestId": "ingest-1",
            "routeKey": "ANY /v1/{proxy+}",
            "stage": "$default",
            "time": "03/Dec/2026:10:00:00 +0000",
            "timeEpoch": 1796292000000_i64
        },
        "pathParameters": {"proxy": "support-requests"},
        "body": body.to_string(),
        "isBase64Encoded": false
    })
}

fn body(response: &Value) -> Value {
    serde_json::from_str(response["body"].as_str().expect("a text body")).expect("a JSON body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_function_puts_a_customers_request_on_eventbridge() {
    let Some(server) = Ministack::start() else { return };
    let bus = AwsBus::ensure_with(&server.sdk_config(), AwsConfig::new("choreo")).await.unwrap();
    bus.put_rule(RuleSpec::new("watch", r#"{"detail-type": ["OrderSupportPlaced"]}"#)).await.unwrap();
    bus.put_targets("watch", vec![Target::new("watch", "watch")]).await.unwrap();

    let keys = tempfile::tempdir().unwrap();
    let issuer = Issuer::open_or_create(keys.path()).unwrap();
    let jwks_url = serve_jwks(issuer.jwks()).await;
    let data = tempfile::tempdir().unwrap();
    DynamoLedger::new(&server.sdk_config(), TABLE).unwrap().ensure_table().await.unwrap();
    let Some(watch) = Watch::start(
        &[
            ("CHOREO_LEDGER_TABLE", TABLE.to_owned()),
            ("CHOREO_JWKS_URL", jwks_url),
            ("CHOREO_TOKEN_ISSUER", LOCAL_ISSUER.to_owned()),
            ("CHOREO_DATA_DIR", data.path().display().to_string()),
        ]
        .into_iter()
        .chain(server.aws_env())
        .collect::<Vec<_>>(),
    ) else {
        return;
    };
    let token = issuer.issue(&Principal::customer("c-1001"), Duration::from_secs(600)).unwrap();

    // Accepted, and the retry with the same Idempotency-Key is the same case.
    let first = watch.invoke("choreo-ingest", &support_request(&token, "ingest-key-1")).await;
    assert_eq!(first["statusCode"], 202, "{first}");
    let again = watch.invoke("choreo-ingest", &support_request(&token, "ingest-key-1")).await;
    assert_eq!(again["statusCode"], 202, "{again}");
    let (first, again) = (body(&first), body(&again));
    assert_eq!(first, again, "one case");
    let case = first["case_id"].as_str().expect("a case id").to_owned();

    // Another instance (its own data directory) with the same table: the same case.
    let elsewhere = tempfile::tempdir().unwrap();
    let publisher = Publisher::new(std::sync::Arc::new(
        AwsBus::connect_with(&server.sdk_config(), AwsConfig::new("choreo")).await.unwrap(),
    ));
    let other = Ingest::open(elsewhere.path(), publisher, issuer.verifier())
        .unwrap()
        .with_idempotency_table(&server.sdk_config(), TABLE);
    let request: lambda_http::request::LambdaRequest =
        serde_json::from_value(support_request(&token, "ingest-key-1")).unwrap();
    let there = choreo_producers::lambda::invoke(other.router(), request).await.unwrap();
    assert_eq!(there["statusCode"], 202, "{there}");
    assert_eq!(body(&there), first, "the same case on another instance");

    // A token from another issuer's key: refused, with a problem.
    let stranger = tempfile::tempdir().unwrap();
    let forged = Issuer::open_or_create(stranger.path())
        .unwrap()
        .issue(&Principal::customer("c-1001"), Duration::from_secs(600))
        .unwrap();
    let refused = watch.invoke("choreo-ingest", &support_request(&forged, "ingest-key-2")).await;
    assert_eq!(refused["statusCode"], 401, "{refused}");
    assert_eq!(refused["headers"]["content-type"], "application/problem+json", "{refused}");

    // On EventBridge: the one accepted request, as the customer's.
    let options = ReceiveOptions {
        max_messages: 10,
        wait_time: Duration::from_secs(1),
        visibility_timeout: Duration::from_secs(30),
    };
    let mut placed = Vec::new();
    for _ in 0..3 {
        for message in bus.receive("watch", options).await.unwrap() {
            placed.push(message.event().unwrap().to_delivery().unwrap().envelope);
            bus.ack("watch", &message.receipt).await.unwrap();
        }
    }
    assert_eq!(placed.len(), 1, "one event for one case: {placed:?}");
    assert_eq!(placed[0].id(), case);
    assert_eq!(placed[0].auth_id(), Some("c-1001"));
    assert_eq!(placed[0].data().unwrap()["order_id"], "o-1001");
}
