//! BedrockModel against a real local HTTP server speaking the documented Converse REST shapes:
//! what goes on the wire, what comes back, and how each failure is classified and retried.

mod common;

use std::time::Duration;

use aws_sdk_bedrockruntime::config::{BehaviorVersion, Credentials, Region};
use choreo_models::{BedrockModel, ContentBlock, Model, ModelError, StopReason, ToolUse, Usage};
use common::{Reply, Server, closed_port_url, first_turn, list_charges_schema, second_turn, within};
use serde_json::json;

const MODEL_ID: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";
/// The model id as it appears in the REST path (`:` percent-encoded).
const CONVERSE_PATH: &str = "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse";
const THROTTLED: &str = "Too many requests, please wait before trying again.";

/// A model on a client with static credentials pointed at `url`, backing off 1 ms between attempts.
fn model(url: &str) -> BedrockModel {
    let config = aws_sdk_bedrockruntime::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKID", "SECRET", None, None, "test"))
        .endpoint_url(url)
        .build();
    BedrockModel::new(aws_sdk_bedrockruntime::Client::from_conf(config), MODEL_ID)
        .with_initial_backoff(Duration::from_millis(1))
}

/// A documented Converse answer.
fn converse_answer(content: serde_json::Value, stop_reason: &str) -> Reply {
    Reply::json(
        200,
        json!({
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop_reason,
            "usage": {"inputTokens": 412, "outputTokens": 37, "totalTokens": 449},
            "metrics": {"latencyMs": 812}
        }),
    )
}

/// A documented Converse error: the code in `x-amzn-ErrorType` (with the suffix the service
/// appends), the message in the body.
fn service_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(status, json!({ "message": message }))
        .header("x-amzn-errortype", &format!("{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"))
}

#[tokio::test]
async fn tool_use_answer_comes_back_with_runtime_tool_names() {
    let server = Server::start(vec![converse_answer(
        json!([
            {"text": "Let me look at the charges."},
            {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "payments__list_charges",
                         "input": {"customer_id": "c_1", "limit": 10}}}
        ]),
        "tool_use",
    )])
    .await;

    let response = within(model(&server.url).converse(&first_turn())).await.expect("a converse answer");

    assert_eq!(response.stop_reason, StopReason::ToolUse);
    assert_eq!(response.usage, Usage { input_tokens: 412, output_tokens: 37 });
    assert_eq!(response.message.text(), "Let me look at the charges.");
    let uses: Vec<&ToolUse> = response.message.tool_uses().collect();
    assert_eq!(
        uses,
        [&ToolUse {
            tool_use_id: "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q".to_owned(),
            name: "payments.list_charges".to_owned(),
            input: json!({"customer_id": "c_1", "limit": 10}),
        }]
    );
    let request = server.only_request();
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", CONVERSE_PATH));
    let auth = request.header("authorization").unwrap_or_default();
    assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKID/"), "not SigV4-signed: {auth:?}");
    assert!(auth.contains("/us-east-1/bedrock/aws4_request"), "{auth:?}");
}

#[tokio::test]
async fn end_turn_answer_is_one_text_block() {
    let server = Server::start(vec![converse_answer(json!([{"text": "Refunded ch_2."}]), "end_turn")]).await;

    let response = within(model(&server.url).converse(&first_turn())).await.expect("a converse answer");

    assert_eq!(response.message.content, [ContentBlock::Text("Refunded ch_2.".to_owned())]);
    assert_eq!(response.stop_reason, StopReason::EndTurn);
    assert_eq!(response.usage.total(), 449);
}

#[tokio::test]
async fn unknown_stop_reason_is_kept_by_name() {
    let server = Server::start(vec![converse_answer(json!([{"text": "…"}]), "model_context_window_exceeded")]).await;

    let response = within(model(&server.url).converse(&first_turn())).await.expect("a converse answer");

    assert_eq!(response.stop_reason, StopReason::Other("model_context_window_exceeded".to_owned()));
}

#[tokio::test]
async fn second_turn_sends_tool_results_system_and_tool_config_in_converse_shape() {
    let server = Server::start(vec![converse_answer(json!([{"text": "Charged once."}]), "end_turn")]).await;

    within(model(&server.url).converse(&second_turn())).await.expect("a converse answer");

    let body = server.only_request().json();
    assert_eq!(
        body,
        json!({
            "messages": [
                {"role": "user", "content": [{"text": "Customer c_1 says they were charged twice."}]},
                {"role": "assistant", "content": [
                    {"text": "Let me look at the charges."},
                    {"toolUse": {"toolUseId": "tooluse_1", "name": "payments__list_charges",
                                 "input": {"customer_id": "c_1", "limit": 10}}},
                    {"toolUse": {"toolUseId": "tooluse_2", "name": "payments__list_charges",
                                 "input": {"customer_id": "c_404"}}}
                ]},
                {"role": "user", "content": [
                    {"toolResult": {"toolUseId": "tooluse_1", "status": "success",
                                    "content": [{"json": {"charges": [{"id": "ch_1", "amount": 1250, "fee": -0.5}]}}]}},
                    {"toolResult": {"toolUseId": "tooluse_2", "status": "error",
                                    "content": [{"json": {"result": "no customer c_404"}}]}}
                ]}
            ],
            "system": [{"text": common::SYSTEM}],
            "inferenceConfig": {"maxTokens": 512},
            "toolConfig": {"tools": [{"toolSpec": {
                "name": "payments__list_charges",
                "description": "List a customer's charges.",
                "inputSchema": {"json": list_charges_schema()}
            }}]}
        })
    );
}

#[tokio::test]
async fn throttling_is_retried_by_the_sdk_then_surfaces_as_throttled() {
    let server = Server::start(vec![service_error(429, "ThrottlingException", THROTTLED)]).await;

    let err = within(model(&server.url).converse(&first_turn())).await.expect_err("throttled");

    assert_eq!(
        err,
        ModelError::Throttled {
            model: format!("bedrock:{MODEL_ID}"),
            message: THROTTLED.to_owned(),
            retry_after: None
        }
    );
    assert_eq!(server.requests().len(), 3, "the default is 3 attempts");
}

#[tokio::test]
async fn throttling_code_on_a_400_is_throttled_after_the_configured_attempts() {
    let server = Server::start(vec![service_error(400, "ThrottlingException", THROTTLED)]).await;

    let err = within(model(&server.url).with_max_attempts(5).converse(&first_turn())).await.expect_err("throttled");

    assert!(matches!(&err, ModelError::Throttled { message, .. } if message == THROTTLED), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(server.requests().len(), 5);
}

#[tokio::test]
async fn a_throttle_then_an_answer_is_retried_transparently() {
    let server = Server::start(vec![
        service_error(429, "ThrottlingException", THROTTLED),
        converse_answer(json!([{"text": "Done."}]), "end_turn"),
    ])
    .await;

    let response = within(model(&server.url).converse(&first_turn())).await.expect("answered on the retry");

    assert_eq!(response.message.text(), "Done.");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn refusals_are_rejected_with_the_service_code_and_message_and_not_retried() {
    for (status, code) in [
        (400, "ValidationException"),
        (403, "AccessDeniedException"),
        (404, "ResourceNotFoundException"),
        (424, "ModelErrorException"),
    ] {
        let message = format!("{code}: the request was refused");
        let server = Server::start(vec![service_error(status, code, &message)]).await;

        let err = within(model(&server.url).converse(&first_turn())).await.expect_err("rejected");

        assert_eq!(
            err,
            ModelError::Rejected { model: format!("bedrock:{MODEL_ID}"), status: format!("{status} {code}"), message }
        );
        assert_eq!(server.requests().len(), 1, "{code} must not be retried");
    }
}

#[tokio::test]
async fn server_errors_are_unavailable_after_the_sdk_retries() {
    for (status, code) in [(500, "InternalServerException"), (503, "ServiceUnavailableException")] {
        let server = Server::start(vec![service_error(status, code, "try again later")]).await;

        let err = within(model(&server.url).converse(&first_turn())).await.expect_err("unavailable");

        assert!(
            matches!(&err, ModelError::Unavailable { message, .. } if message.contains(code) && message.contains("try again later")),
            "{err:?}"
        );
        assert_eq!(server.requests().len(), 3, "{code} is retried");
    }
}

#[tokio::test]
async fn model_timeout_is_unavailable() {
    let server = Server::start(vec![service_error(408, "ModelTimeoutException", "model timed out")]).await;

    let err = within(model(&server.url).converse(&first_turn())).await.expect_err("unavailable");

    assert!(matches!(err, ModelError::Unavailable { .. }), "{err:?}");
}

#[tokio::test]
async fn garbage_body_is_an_invalid_response() {
    for body in ["<html>502 Bad Gateway</html>", r#"{"output": {}}"#] {
        let server = Server::start(vec![Reply::raw(200, body).header("content-type", "application/json")]).await;

        let err = within(model(&server.url).converse(&first_turn())).await.expect_err("invalid");

        assert!(matches!(err, ModelError::InvalidResponse { .. }), "{body}: {err:?}");
        assert!(!err.is_retryable());
    }
}

#[tokio::test]
async fn connection_refused_is_unavailable() {
    let url = closed_port_url().await;

    let err = within(model(&url).converse(&first_turn())).await.expect_err("unavailable");

    assert!(matches!(err, ModelError::Unavailable { .. }), "{err:?}");
}

#[tokio::test]
async fn a_server_that_never_answers_is_unavailable_after_the_attempt_timeouts() {
    let server = Server::start(vec![Reply::hang()]).await;
    let model = model(&server.url).with_attempt_timeout(Duration::from_millis(200)).with_max_attempts(2);

    let err = within(model.converse(&first_turn())).await.expect_err("timed out");

    assert!(matches!(&err, ModelError::Unavailable { message, .. } if message.contains("timeout")), "{err:?}");
    assert_eq!(server.requests().len(), 2, "a timed-out attempt is retried");
}
