//! A case run by the agents on the Bedrock Converse client (aws-sdk-bedrockruntime) against a
//! local HTTP server answering in Converse's documented shape: the tokens Bedrock reports are
//! recorded on the case, and a throttled answer is retried by the client.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_sdk_bedrockruntime::config::{BehaviorVersion, Credentials, Region};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use choreo_consumers::local::{Local, Options, SupportRequest};
use choreo_consumers::observe::StepKind;
use choreo_models::{BedrockModel, Model};
use chrono::NaiveDate;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

const MODEL_ID: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";

/// Converse: the first call throttled, then an end of turn without a completion, reporting
/// 412 tokens in and 37 out.
async fn converse(State(calls): State<Arc<AtomicUsize>>) -> axum::response::Response {
    if calls.fetch_add(1, Ordering::SeqCst) == 0 {
        let headers =
            [("x-amzn-errortype", "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/")];
        return (StatusCode::TOO_MANY_REQUESTS, headers, axum::Json(json!({"message": "Too many requests"})))
            .into_response();
    }
    axum::Json(json!({
        "output": {"message": {"role": "assistant", "content": [{"text": "A person should look at this one."}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 412, "outputTokens": 37, "totalTokens": 449},
        "metrics": {"latencyMs": 12}
    }))
    .into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bedrock_s_token_usage_is_recorded_on_the_case() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app =
        axum::Router::new().route("/model/{id}/converse", axum::routing::post(converse)).with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::new(dir.path());
    options.otlp = None;
    options.model_layer = Some(Box::new(move |_offline| {
        let config = aws_sdk_bedrockruntime::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("AKID", "SECRET", None, None, "test"))
            .endpoint_url(&url)
            .build();
        let model = BedrockModel::new(aws_sdk_bedrockruntime::Client::from_conf(config), MODEL_ID)
            .with_initial_backoff(Duration::from_millis(1));
        Arc::new(model) as Arc<dyn Model>
    }));
    let local = Local::start(options).await.unwrap();
    let mut steps = local.services.observer.subscribe();
    let placed = local.submit(&SupportRequest::seeded(NaiveDate::from_ymd_opt(2026, 12, 4).unwrap())).await.unwrap();
    let case = placed.id().to_owned();

    // Support's run: one model turn (after the throttle), no completion, done.
    let mut turns = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let step = match tokio::time::timeout_at(deadline, steps.recv()).await.expect("support's run ends in time") {
            Ok(step) => step,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => panic!("the runtime stopped"),
        };
        if step.correlation_id != case || step.agent != "support" {
            continue;
        }
        match step.kind {
            StepKind::ModelTurn { input_tokens, output_tokens, .. } => turns.push((input_tokens, output_tokens)),
            StepKind::Failed { code, message, .. } => panic!("support's run failed: {code}: {message}"),
            StepKind::Done { .. } => break,
            _ => {}
        }
    }
    assert_eq!(turns, [(412, 37)], "Bedrock's usage, as reported");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the throttled call retried once by the client");
    let spend = local.services.store.spend(&case).unwrap();
    assert_eq!((spend.turns, spend.tokens), (1, 449), "{spend:?}");
    local.shutdown().await;
}
