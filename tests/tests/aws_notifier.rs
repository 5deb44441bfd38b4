//! The notifier on AWS: its WebSocket route handlers and its push handler, with the state in
//! DynamoDB and the events from the notifier's rule and queue on EventBridge and SQS
//! (ministack), posting to connections through aws-sdk-apigatewaymanagement against a local
//! server that answers as API Gateway's management API does (`POST`/`DELETE
//! /@connections/{id}`, 410 `GoneException` for a client gone).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::event::sqs::SqsEvent;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use choreo_auth::{Issuer, Principal};
use choreo_bus::{AwsBus, AwsConfig};
use choreo_consumers::store::{CaseStore, DynamoLedger};
use choreo_notifier::aws::AwsNotifier;
use choreo_notifier::aws::table::Table;
use choreo_schemas::Envelope;
use choreo_schemas::catalog::{PaymentIssueResolved, PaymentOutcome};
use choreo_schemas::envelope::{AuthType, EnvelopeBuilder};
use choreo_tests::ministack::{Ministack, receive};
use serde_json::{Value, json};

/// What the management API was asked: posts by connection, deletions.
#[derive(Default)]
struct Gateway {
    posts: BTreeMap<String, Vec<Value>>,
    deleted: BTreeSet<String>,
    gone: BTreeSet<String>,
}

type Shared = Arc<Mutex<Gateway>>;

async fn post(State(g): State<Shared>, Path(id): Path<String>, body: String) -> axum::response::Response {
    let mut g = g.lock().unwrap();
    if g.gone.contains(&id) {
        let headers = [("x-amzn-ErrorType", "GoneException"), ("content-type", "application/json")];
        return (StatusCode::GONE, headers, r#"{"message":"the connection is gone"}"#).into_response();
    }
    g.posts.entry(id).or_default().push(serde_json::from_str(&body).expect("a JSON frame"));
    StatusCode::OK.into_response()
}

async fn delete(State(g): State<Shared>, Path(id): Path<String>) -> StatusCode {
    g.lock().unwrap().deleted.insert(id);
    StatusCode::NO_CONTENT
}

/// Starts the management API; answers its stage URL and what it records.
async fn gateway() -> (String, Shared) {
    let shared = Shared::default();
    let app = axum::Router::new()
        .route("/live/@connections/{id}", axum::routing::post(post).delete(delete))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/live", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, shared)
}

fn route(
    key: &str,
    connection: &str,
    query: Value,
    headers: Value,
    body: Option<String>,
) -> ApiGatewayWebsocketProxyRequest {
    serde_json::from_value(json!({
        "headers": headers,
        "queryStringParameters": query,
        "requestContext": {
            "routeKey": key,
            "connectionId": connection,
            "eventType": key.trim_start_matches('$').to_uppercase(),
            "stage": "live",
            "apiId": "abc123",
            "connectedAt": 1796292000000_i64,
            "requestTimeEpoch": 1796292000000_i64
        },
        "body": body,
        "isBase64Encoded": false
    }))
    .expect("a WebSocket route event")
}

fn status(r: &ApiGatewayProxyResponse) -> i64 {
    r.status_code
}

fn resolved(customer: &str) -> Envelope {
    let data = PaymentIssueResolved {
        order_id: "o-1001".into(),
        outcome: PaymentOutcome::NoDuplicateFound,
        refunds: Vec::new(),
        summary: "Every charge matched a payment.".into(),
    };
    EnvelopeBuilder::of("agents.payments", &data)
        .correlation_id(format!("case-{customer}"))
        .auth(AuthType::AppUser, customer)
        .build()
        .unwrap()
}

/// The notifier queue's messages, as the event source mapping hands them to the function.
async fn batch(bus: &AwsBus, n: usize) -> SqsEvent {
    let got = receive(bus, choreo_notifier::INBOX, n).await;
    let records: Vec<Value> = got
        .iter()
        .map(|m| json!({"messageId": m.message_id, "receiptHandle": m.receipt.0, "body": m.body, "eventSource": "aws:sqs"}))
        .collect();
    serde_json::from_value(json!({"Records": records})).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_get_their_own_notifications_through_api_gateway_once_and_in_order() {
    let Some(server) = Ministack::start() else { return };
    let sdk = server.sdk_config();
    let table = Table::new(&sdk, "choreo-connections").unwrap();
    table.ensure().await.unwrap();
    let (endpoint, gw) = gateway().await;
    let keys = tempfile::tempdir().unwrap();
    let issuer = Issuer::open_or_create(keys.path()).unwrap();
    let token = |p: Principal| issuer.issue(&p, Duration::from_secs(600)).unwrap();
    let notifier = AwsNotifier::new(table).with_verifier(issuer.verifier()).with_endpoint(&sdk, &endpoint);

    // $connect: customers by query token or header; a service token, a forged one and none
    // are refused at the handshake.
    let connect = |id: &str, query: Value, headers: Value| route("$connect", id, query, headers, None);
    for (id, query) in [
        ("conn-a", json!({"token": token(Principal::customer("c-1001"))})),
        ("conn-gone", json!({"token": token(Principal::customer("c-1001"))})),
    ] {
        assert_eq!(status(&notifier.socket(connect(id, query, json!({}))).await), 200, "{id}");
    }
    let bearer = format!("Bearer {}", token(Principal::customer("c-1002")));
    assert_eq!(status(&notifier.socket(connect("conn-b", json!({}), json!({"authorization": bearer}))).await), 200);
    let service =
        notifier.socket(connect("conn-s", json!({"token": token(Principal::service("backoffice"))}), json!({}))).await;
    assert_eq!(status(&service), 403);
    let stranger = tempfile::tempdir().unwrap();
    let forged = Issuer::open_or_create(stranger.path())
        .unwrap()
        .issue(&Principal::customer("c-1001"), Duration::from_secs(600))
        .unwrap();
    assert_eq!(status(&notifier.socket(connect("conn-f", json!({"token": forged}), json!({}))).await), 401);
    assert_eq!(status(&notifier.socket(connect("conn-n", json!({}), json!({}))).await), 401);
    assert!(notifier.table().connection("conn-s").await.unwrap().is_none());

    // Events from the notifier's rule and queue: one for each customer.
    let bus = AwsBus::ensure_with(&sdk, AwsConfig::new("choreo")).await.unwrap();
    choreo_notifier::install(&bus).await.unwrap();
    let (for_a, for_b) = (resolved("c-1001"), resolved("c-1002"));
    for event in [&for_a, &for_b] {
        choreo_consumers::runner::publish(&bus, event).await.unwrap();
    }
    gw.lock().unwrap().gone.insert("conn-gone".into());
    let records = batch(&bus, 2).await;
    let response = notifier.push(records.clone()).await;
    assert!(response.batch_item_failures.is_empty());

    let frames = |id: &str| gw.lock().unwrap().posts.get(id).cloned().unwrap_or_default();
    let (a, b) = (frames("conn-a"), frames("conn-b"));
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (a[0]["type"].as_str(), a[0]["seq"].as_u64(), a[0]["id"].as_str()),
        (Some("notification"), Some(1), Some(for_a.id()))
    );
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(b[0]["id"], for_b.id(), "each customer only their own");
    assert_eq!(b[0]["seq"], 1);
    // The connection that answered 410 is forgotten.
    assert!(notifier.table().connection("conn-gone").await.unwrap().is_none());
    assert_eq!(
        notifier.table().connections_of("c-1001").await.unwrap().iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        ["conn-a"]
    );

    // The same records again (a redelivery, a replay): no second notification.
    assert!(notifier.push(records).await.batch_item_failures.is_empty());
    assert_eq!(frames("conn-a").len(), 1);
    assert_eq!(notifier.table().cursor("c-1001").await.unwrap().1, 0, "nothing acknowledged yet");

    // A new connection says hello: ready, then what it has not acknowledged.
    let hello = |id: &str| route("$default", id, json!({}), json!({}), Some(r#"{"type":"hello"}"#.to_owned()));
    let c_token = json!({"token": token(Principal::customer("c-1001"))});
    assert_eq!(status(&notifier.socket(connect("conn-c", c_token.clone(), json!({}))).await), 200);
    assert_eq!(status(&notifier.socket(hello("conn-c")).await), 200);
    let c = frames("conn-c");
    assert_eq!(c.iter().map(|f| f["type"].as_str().unwrap()).collect::<Vec<_>>(), ["ready", "notification"]);
    assert_eq!((c[0]["customer"].as_str(), c[0]["after"].as_u64()), (Some("c-1001"), Some(0)));
    assert_eq!(c[1]["id"], for_a.id());

    // Acknowledged, a later hello sends nothing more; an ack beyond the last is a protocol
    // error: said, and the connection closed and forgotten.
    let ack = |id: &str, seq: u64| {
        route("$default", id, json!({}), json!({}), Some(format!(r#"{{"type":"ack","seq":{seq}}}"#)))
    };
    assert_eq!(status(&notifier.socket(ack("conn-c", 1)).await), 200);
    assert_eq!(notifier.table().cursor("c-1001").await.unwrap(), (1, 1));

    // `choreo trace --backend aws` finds the case's notifications under the customer its
    // events act for (the case store in the ledger's table, as the agent functions keep it),
    // and only that customer's.
    let cases = DynamoLedger::new(&sdk, "choreo-ledger").unwrap();
    cases.ensure_table().await.unwrap();
    CaseStore::add_event(&cases, &for_a).await.unwrap();
    let mut cmd = choreo_tests::choreo();
    cmd.args(["trace", "case-c-1001", "--backend", "aws", "--ledger-table", "choreo-ledger"]);
    cmd.args(["--connections-table", "choreo-connections", "--endpoint-url", &server.endpoint]);
    for (k, v) in server.aws_env() {
        cmd.env(k, v);
    }
    let out = choreo_tests::run_command(cmd.env_remove("AWS_PROFILE"), b"");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let shown = format!("c-1001 #1 PaymentIssueResolved {} · stored for delivery · acknowledged", for_a.id());
    assert!(out.stdout.contains("Notifications (1)") && out.stdout.contains(&shown), "{shown:?} in:\n{}", out.stdout);
    assert!(!out.stdout.contains(for_b.id()), "{}", out.stdout);
    assert_eq!(status(&notifier.socket(connect("conn-d", c_token, json!({}))).await), 200);
    notifier.socket(hello("conn-d")).await;
    let d = frames("conn-d");
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["after"], 1);
    notifier.socket(ack("conn-d", 5)).await;
    let said = frames("conn-d");
    assert_eq!((said[1]["type"].as_str(), said[1]["code"].as_u64()), (Some("close"), Some(1002)), "{said:?}");
    assert!(said[1]["reason"].as_str().unwrap().contains("ack 5 is beyond the last notification sent (1)"));
    assert!(gw.lock().unwrap().deleted.contains("conn-d"));
    assert!(notifier.table().connection("conn-d").await.unwrap().is_none());

    // $disconnect forgets the connection.
    notifier.socket(route("$disconnect", "conn-b", json!({}), json!({}), None)).await;
    assert!(notifier.table().connection("conn-b").await.unwrap().is_none());
    assert!(notifier.table().connections_of("c-1002").await.unwrap().is_empty());
}

/// The `choreo-notifier` binary in its `socket` role behind the real Lambda Runtime API of
/// `cargo lambda watch`: a WebSocket `$connect` with a customer's token is recorded in the
/// table, one with a service token is a 403, and `$disconnect` forgets the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_function_runs_behind_the_lambda_runtime_api() {
    let Some(server) = Ministack::start() else { return };
    let sdk = server.sdk_config();
    let table = Table::new(&sdk, "choreo-connections-watched").unwrap();
    table.ensure().await.unwrap();
    let (endpoint, _gw) = gateway().await;
    let keys = tempfile::tempdir().unwrap();
    let issuer = Issuer::open_or_create(keys.path()).unwrap();
    let jwks = issuer.jwks();
    let app = axum::Router::new()
        .route("/jwks.json", axum::routing::get(move || std::future::ready(axum::Json(jwks.clone()))));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let Some(watch) = choreo_tests::lambda_watch::Watch::start(
        &[
            ("CHOREO_NOTIFIER_ROLE", "socket".to_owned()),
            ("CHOREO_CONNECTIONS_TABLE", "choreo-connections-watched".to_owned()),
            ("CHOREO_WEBSOCKET_ENDPOINT", endpoint),
            ("CHOREO_JWKS_URL", jwks_url),
            ("CHOREO_TOKEN_ISSUER", choreo_auth::LOCAL_ISSUER.to_owned()),
        ]
        .into_iter()
        .chain(server.aws_env())
        .collect::<Vec<_>>(),
    ) else {
        return;
    };
    let token = |p: Principal| issuer.issue(&p, Duration::from_secs(600)).unwrap();
    let event = |key: &str, id: &str, query: Value| {
        serde_json::to_value(route(key, id, query, json!({}), None)).expect("the event as JSON")
    };
    let answer = watch
        .invoke("choreo-notifier", &event("$connect", "conn-w", json!({"token": token(Principal::customer("c-1001"))})))
        .await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let connection = table.connection("conn-w").await.unwrap().expect("recorded");
    assert_eq!(connection.customer, "c-1001");
    let answer = watch
        .invoke(
            "choreo-notifier",
            &event("$connect", "conn-s", json!({"token": token(Principal::service("backoffice"))})),
        )
        .await;
    assert_eq!(answer["statusCode"], 403, "{answer}");
    let answer = watch.invoke("choreo-notifier", &event("$disconnect", "conn-w", json!({}))).await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    assert!(table.connection("conn-w").await.unwrap().is_none());
}
