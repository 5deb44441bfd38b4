//! OpenAiModel against a real local HTTP server speaking the documented chat-completions shapes:
//! what goes on the wire, what comes back, and how each failure is classified.

mod common;

use std::time::Duration;

use choreo_models::{ContentBlock, Model, ModelError, OpenAiModel, StopReason, ToolUse, Usage};
use common::{Reply, Server, closed_port_url, first_turn, list_charges_schema, second_turn, within};
use serde_json::{Value, json};

const MODEL: &str = "qwen2.5:7b";

fn model(url: &str) -> OpenAiModel {
    OpenAiModel::new(&format!("{url}/v1"), MODEL, Some("sk-test".to_owned())).expect("a valid base url")
}

/// A documented chat completion with one choice.
fn completion(message: Value, finish_reason: &str) -> Reply {
    Reply::json(
        200,
        json!({
            "id": "chatcmpl-abc123",
            "object": "chat.completion",
            "created": 1_741_569_952,
            "model": MODEL,
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": 82, "completion_tokens": 17, "total_tokens": 99}
        }),
    )
}

fn tool_call(arguments: &str) -> Value {
    json!({
        "role": "assistant",
        "content": null,
        "tool_calls": [{"id": "call_Xq3T", "type": "function",
                        "function": {"name": "payments__list_charges", "arguments": arguments}}]
    })
}

/// A documented error body.
fn api_error(status: u16, message: &str) -> Reply {
    Reply::json(
        status,
        json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}}),
    )
}

#[tokio::test]
async fn tool_calls_come_back_as_tool_uses_with_runtime_names() {
    let server =
        Server::start(vec![completion(tool_call(r#"{"customer_id": "c_1", "limit": 10}"#), "tool_calls")]).await;

    let response = within(model(&server.url).converse(&first_turn())).await.expect("a chat completion");

    assert_eq!(
        response.message.content,
        [ContentBlock::ToolUse(ToolUse {
            tool_use_id: "call_Xq3T".to_owned(),
            name: "payments.list_charges".to_owned(),
            input: json!({"customer_id": "c_1", "limit": 10}),
        })]
    );
    assert_eq!(response.stop_reason, StopReason::ToolUse);
    assert_eq!(response.usage, Usage { input_tokens: 82, output_tokens: 17 });
    let request = server.only_request();
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/v1/chat/completions"));
    assert_eq!(request.header("authorization"), Some("Bearer sk-test"));
}

#[tokio::test]
async fn end_turn_answer_is_one_text_block_and_absent_usage_counts_zero() {
    let mut reply = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Refunded ch_2."}, "finish_reason": "stop"}]
    });
    let server = Server::start(vec![Reply::json(200, reply.take())]).await;

    let response = within(model(&server.url).converse(&first_turn())).await.expect("a chat completion");

    assert_eq!(response.message.content, [ContentBlock::Text("Refunded ch_2.".to_owned())]);
    assert_eq!(response.stop_reason, StopReason::EndTurn);
    assert_eq!(response.usage, Usage::default());
}

#[tokio::test]
async fn finish_reasons_map_to_stop_reasons() {
    for (finish, expected) in [
        ("length", StopReason::MaxTokens),
        ("content_filter", StopReason::ContentFiltered),
        ("something_new", StopReason::Other("something_new".to_owned())),
    ] {
        let server = Server::start(vec![completion(json!({"role": "assistant", "content": "…"}), finish)]).await;

        let response = within(model(&server.url).converse(&first_turn())).await.expect("a chat completion");

        assert_eq!(response.stop_reason, expected, "{finish}");
    }
}

#[tokio::test]
async fn second_turn_sends_tool_messages_system_prompt_and_tools() {
    let server =
        Server::start(vec![completion(json!({"role": "assistant", "content": "Charged once."}), "stop")]).await;

    within(model(&server.url).converse(&second_turn())).await.expect("a chat completion");

    let body = decode_json_texts(server.only_request().json());
    assert_eq!(
        body,
        json!({
            "model": MODEL,
            "max_tokens": 512,
            "messages": [
                {"role": "system", "content": common::SYSTEM},
                {"role": "user", "content": "Customer c_1 says they were charged twice."},
                {"role": "assistant", "content": "Let me look at the charges.", "tool_calls": [
                    {"id": "tooluse_1", "type": "function",
                     "function": {"name": "payments__list_charges", "arguments": {"customer_id": "c_1", "limit": 10}}},
                    {"id": "tooluse_2", "type": "function",
                     "function": {"name": "payments__list_charges", "arguments": {"customer_id": "c_404"}}}
                ]},
                {"role": "tool", "tool_call_id": "tooluse_1",
                 "content": {"charges": [{"id": "ch_1", "amount": 1250, "fee": -0.5}]}},
                {"role": "tool", "tool_call_id": "tooluse_2", "content": {"error": "no customer c_404"}}
            ],
            "tools": [{"type": "function", "function": {
                "name": "payments__list_charges",
                "description": "List a customer's charges.",
                "parameters": list_charges_schema()
            }}]
        })
    );
}

/// `body` with the JSON texts the chat format nests (tool call arguments, tool message contents)
/// decoded, so the comparison does not hang on key order; fails the test if one is not a JSON text.
fn decode_json_texts(mut body: Value) -> Value {
    let decode = |text: &mut Value| {
        let raw = text.as_str().unwrap_or_else(|| panic!("not a JSON text: {text}"));
        *text = serde_json::from_str(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
    };
    for message in body["messages"].as_array_mut().into_iter().flatten() {
        if message["role"] == "tool" {
            decode(&mut message["content"]);
        }
        for call in message.get_mut("tool_calls").and_then(Value::as_array_mut).into_iter().flatten() {
            decode(&mut call["function"]["arguments"]);
        }
    }
    body
}

#[tokio::test]
async fn malformed_tool_arguments_are_kept_as_a_string() {
    let truncated = r#"{"customer_id": "c_1", "lim"#;
    let server = Server::start(vec![completion(tool_call(truncated), "tool_calls")]).await;

    let response = within(model(&server.url).converse(&first_turn())).await.expect("the call is not failed");

    let uses: Vec<&ToolUse> = response.message.tool_uses().collect();
    assert_eq!(uses.len(), 1);
    assert_eq!(uses[0].name, "payments.list_charges");
    assert_eq!(uses[0].input, Value::String(truncated.to_owned()));
}

#[tokio::test]
async fn throttling_is_throttled_with_the_retry_after() {
    let server =
        Server::start(vec![api_error(429, "Rate limit reached for requests").header("retry-after", "7")]).await;

    let err = within(model(&server.url).converse(&first_turn())).await.expect_err("throttled");

    assert_eq!(
        err,
        ModelError::Throttled {
            model: format!("openai:{MODEL}"),
            message: "Rate limit reached for requests".to_owned(),
            retry_after: Some(Duration::from_secs(7)),
        }
    );
    assert_eq!(server.requests().len(), 1, "the client does not retry by itself");
}

#[tokio::test]
async fn bad_request_is_rejected_with_the_error_message() {
    let message = "Invalid schema for function 'payments__list_charges'";
    let server = Server::start(vec![api_error(400, message)]).await;

    let err = within(model(&server.url).converse(&first_turn())).await.expect_err("rejected");

    assert_eq!(
        err,
        ModelError::Rejected {
            model: format!("openai:{MODEL}"),
            status: "400".to_owned(),
            message: message.to_owned()
        }
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn server_errors_are_unavailable() {
    for status in [500, 503] {
        let server = Server::start(vec![api_error(status, "The server had an error")]).await;

        let err = within(model(&server.url).converse(&first_turn())).await.expect_err("unavailable");

        assert!(
            matches!(&err, ModelError::Unavailable { message, .. } if message == &format!("{status}: The server had an error")),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn garbage_body_is_an_invalid_response() {
    for body in ["<html>ok</html>", r#"{"choices": []}"#, r#"{"choices": [{"message": "hi"}]}"#] {
        let server = Server::start(vec![Reply::raw(200, body).header("content-type", "application/json")]).await;

        let err = within(model(&server.url).converse(&first_turn())).await.expect_err("invalid");

        assert!(matches!(err, ModelError::InvalidResponse { .. }), "{body}: {err:?}");
    }
}

#[tokio::test]
async fn connection_refused_is_unavailable() {
    let url = closed_port_url().await;

    let err = within(model(&url).converse(&first_turn())).await.expect_err("unavailable");

    assert!(matches!(&err, ModelError::Unavailable { message, .. } if message.contains("connect")), "{err:?}");
}

#[tokio::test]
async fn a_server_that_never_answers_is_unavailable_after_the_timeout() {
    let server = Server::start(vec![Reply::hang()]).await;
    let model = model(&server.url).with_timeout(Duration::from_millis(200)).expect("a client");

    let err = within(model.converse(&first_turn())).await.expect_err("timed out");

    assert!(matches!(&err, ModelError::Unavailable { message, .. } if message.contains("timed out")), "{err:?}");
}

#[tokio::test]
async fn no_api_key_sends_no_authorization() {
    let server = Server::start(vec![completion(json!({"role": "assistant", "content": "hi"}), "stop")]).await;
    let model = OpenAiModel::new(&format!("{}/v1", server.url), MODEL, None).expect("a valid base url");

    within(model.converse(&first_turn())).await.expect("a chat completion");

    assert_eq!(server.only_request().header("authorization"), None);
}
