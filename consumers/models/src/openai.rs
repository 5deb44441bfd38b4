//! OpenAI-compatible chat completions (OpenAI, Ollama, vLLM, llama.cpp…): Converse blocks mapped to
//! chat messages and `tool_calls`, the answer mapped back, HTTP failures classified into [`ModelError`].

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    ContentBlock, Message, Model, ModelError, ModelRequest, ModelResponse, Role, StopReason, ToolResultStatus, ToolUse,
    Usage, runtime_tool_name, wire_tool_name,
};

/// How long one call may take, connection and answer included, unless [`OpenAiModel::with_timeout`]
/// says otherwise. Local models on a CPU are slow.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Longest excerpt of an error body kept in a [`ModelError`].
const BODY_EXCERPT: usize = 500;

/// A model behind an OpenAI-compatible chat-completions endpoint.
///
/// It makes one attempt per call: retrying [`ModelError::Throttled`] and
/// [`ModelError::Unavailable`] is the caller's.
#[derive(Debug, Clone)]
pub struct OpenAiModel {
    http: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<String>,
}

impl OpenAiModel {
    /// `base_url` is the API root, e.g. `http://localhost:11434/v1`; calls go to
    /// `{base_url}/chat/completions`, with `Authorization: Bearer {api_key}` when there is a key.
    pub fn new(base_url: &str, model: impl Into<String>, api_key: Option<String>) -> Result<Self, ModelError> {
        let model = model.into();
        let config_error = |message: String| ModelError::Config { model: display_name(&model), message };
        let base = reqwest::Url::parse(base_url).map_err(|e| config_error(format!("base url {base_url:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(config_error(format!("base url {base_url:?} is not an http(s) url")));
        }
        let url = format!("{}/chat/completions", base.as_str().trim_end_matches('/'));
        let http = client(DEFAULT_TIMEOUT).map_err(|e| config_error(format!("http client: {e}")))?;
        Ok(Self { http, url, model, api_key })
    }

    /// The same model with another per-call timeout.
    pub fn with_timeout(self, timeout: Duration) -> Result<Self, ModelError> {
        let http = client(timeout).map_err(|e| ModelError::Config {
            model: display_name(&self.model),
            message: format!("http client: {e}"),
        })?;
        Ok(Self { http, ..self })
    }

    /// Where the calls go.
    pub fn url(&self) -> &str {
        &self.url
    }
}

fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder().timeout(timeout).connect_timeout(timeout.min(Duration::from_secs(10))).build()
}

fn display_name(model: &str) -> String {
    format!("openai:{model}")
}

#[async_trait]
impl Model for OpenAiModel {
    fn name(&self) -> String {
        display_name(&self.model)
    }

    async fn converse(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError> {
        let name = self.name();
        let mut call = self.http.post(&self.url).json(&request_body(&self.model, request));
        if let Some(key) = &self.api_key {
            call = call.bearer_auth(key);
        }
        let unavailable = |e: reqwest::Error| ModelError::Unavailable { model: name.clone(), message: transport(&e) };
        let response = call.send().await.map_err(unavailable)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // A body cut short is a failed transfer, whatever the status said.
        let body = response.bytes().await.map_err(unavailable)?;
        if status.is_success() {
            return parse_response(&name, &body);
        }
        let message = error_message(&body);
        Err(if status == StatusCode::TOO_MANY_REQUESTS {
            ModelError::Throttled { model: name, message, retry_after }
        } else if status.is_server_error() {
            ModelError::Unavailable { model: name, message: format!("{}: {message}", status.as_u16()) }
        } else {
            ModelError::Rejected { model: name, status: status.as_u16().to_string(), message }
        })
    }
}

/// What went wrong sending a request, with the causes reqwest wraps (connection refused…).
fn transport(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut message = format!("{kind}: {err}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

/// The chat-completions request for `request`.
fn request_body(model: &str, request: &ModelRequest) -> Value {
    let mut messages = Vec::new();
    if !request.system.is_empty() {
        messages.push(json!({"role": "system", "content": request.system}));
    }
    for message in &request.messages {
        push_messages(&mut messages, message);
    }
    let mut body = json!({"model": model, "messages": messages, "max_tokens": request.max_tokens});
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|tool| {
                json!({"type": "function", "function": {
                    "name": wire_tool_name(&tool.name),
                    "description": tool.description,
                    "parameters": tool.input_schema,
                }})
            })
            .collect();
        body["tools"] = Value::Array(tools);
    }
    body
}

/// One Converse message as chat messages: its text and tool calls as one message, each tool result
/// as a `tool` message.
fn push_messages(out: &mut Vec<Value>, message: &Message) {
    let text = message.text();
    let tool_calls: Vec<Value> = message
        .tool_uses()
        .map(|tool_use| {
            json!({"id": tool_use.tool_use_id, "type": "function", "function": {
                "name": wire_tool_name(&tool_use.name),
                // Always valid JSON: servers that parse past arguments (Ollama) would refuse the
                // whole conversation over one malformed call kept as a string.
                "arguments": tool_use.input.to_string(),
            }})
        })
        .collect();
    let tool_messages: Vec<Value> = message
        .content
        .iter()
        .filter_map(|block| match block {
            ContentBlock::ToolResult(result) => {
                // Chat has no error flag on tool results: the model reads it from the content.
                let content = match result.status {
                    ToolResultStatus::Success => result.content.to_string(),
                    ToolResultStatus::Error => json!({"error": result.content}).to_string(),
                };
                Some(json!({"role": "tool", "tool_call_id": result.tool_use_id, "content": content}))
            }
            _ => None,
        })
        .collect();
    match message.role {
        Role::Assistant => {
            let mut assistant = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { Value::String(text) }});
            if !tool_calls.is_empty() {
                assistant["tool_calls"] = Value::Array(tool_calls);
            }
            out.push(assistant);
            out.extend(tool_messages);
        }
        Role::User => {
            // Tool messages must directly follow the assistant message that called the tools.
            out.extend(tool_messages);
            if !text.is_empty() {
                out.push(json!({"role": "user", "content": text}));
            }
        }
    }
}

#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<ChatUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCall>>,
}

#[derive(Deserialize)]
struct ToolCall {
    #[serde(default)]
    id: String,
    function: FunctionCall,
}

#[derive(Deserialize)]
struct FunctionCall {
    name: String,
    /// A JSON text per the spec; some servers send the object itself.
    #[serde(default)]
    arguments: Value,
}

#[derive(Deserialize)]
struct ChatUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

fn parse_response(name: &str, body: &[u8]) -> Result<ModelResponse, ModelError> {
    let invalid = |message: String| ModelError::InvalidResponse { model: name.to_owned(), message };
    let response: ChatResponse =
        serde_json::from_slice(body).map_err(|e| invalid(format!("not a chat completion ({e}): {}", excerpt(body))))?;
    let Some(choice) = response.choices.into_iter().next() else {
        return Err(invalid("the answer has no choices".to_owned()));
    };
    let mut content = Vec::new();
    if let Some(text) = choice.message.content.filter(|t| !t.is_empty()) {
        content.push(ContentBlock::Text(text));
    }
    let tool_calls = choice.message.tool_calls.unwrap_or_default();
    let has_tool_calls = !tool_calls.is_empty();
    for (index, call) in tool_calls.into_iter().enumerate() {
        content.push(ContentBlock::ToolUse(ToolUse {
            // Some servers leave ids out; the next turn still needs one to answer with.
            tool_use_id: if call.id.is_empty() { format!("call_{index}") } else { call.id },
            name: runtime_tool_name(&call.function.name),
            input: arguments(call.function.arguments),
        }));
    }
    let stop_reason = match choice.finish_reason.as_deref() {
        // Some servers (Ollama) say "stop" even when the model called tools.
        Some("stop") | None if has_tool_calls => StopReason::ToolUse,
        Some("stop") => StopReason::EndTurn,
        Some("tool_calls" | "function_call") => StopReason::ToolUse,
        Some("length") => StopReason::MaxTokens,
        Some("content_filter") => StopReason::ContentFiltered,
        Some(other) => StopReason::Other(other.to_owned()),
        None => StopReason::Other("none".to_owned()),
    };
    let usage = response
        .usage
        .map_or_else(Usage::default, |u| Usage { input_tokens: u.prompt_tokens, output_tokens: u.completion_tokens });
    Ok(ModelResponse { message: Message { role: Role::Assistant, content }, stop_reason, usage })
}

/// A call's input from its `arguments`: the parsed JSON, or the text itself as a JSON string when it
/// does not parse, so the runtime can tell the model its call was malformed instead of failing it.
fn arguments(arguments: Value) -> Value {
    match arguments {
        Value::String(text) if text.trim().is_empty() => json!({}),
        Value::String(text) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        Value::Null => json!({}),
        other => other,
    }
}

/// The `error.message` of an OpenAI error body, else an excerpt of the body.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| match &v["error"] {
            Value::Object(error) => error.get("message").and_then(Value::as_str).map(str::to_owned),
            // Some servers send `{"error": "text"}`.
            Value::String(message) => Some(message.clone()),
            _ => None,
        })
        .unwrap_or_else(|| excerpt(body))
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    match text.char_indices().nth(BODY_EXCERPT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_arguments_are_kept_as_a_string() {
        assert_eq!(arguments(json!("{\"a\": 1")), json!("{\"a\": 1"));
        assert_eq!(arguments(json!("{\"a\": 1}")), json!({"a": 1}));
        assert_eq!(arguments(json!({"a": 1})), json!({"a": 1}));
        assert_eq!(arguments(json!("")), json!({}));
    }

    #[test]
    fn error_messages_come_from_the_body_or_its_excerpt() {
        assert_eq!(error_message(br#"{"error":{"message":"bad model","type":"invalid_request_error"}}"#), "bad model");
        assert_eq!(error_message(br#"{"error":"model not found"}"#), "model not found");
        assert_eq!(error_message(b"<html>nope</html>"), "<html>nope</html>");
        assert_eq!(excerpt("é".repeat(600).as_bytes()).chars().count(), BODY_EXCERPT + 1);
    }

    #[test]
    fn a_base_url_that_is_not_http_is_a_config_error() {
        assert!(matches!(OpenAiModel::new("localhost:11434", "m", None), Err(ModelError::Config { .. })));
        assert!(matches!(OpenAiModel::new("ftp://host/v1", "m", None), Err(ModelError::Config { .. })));
        let model = OpenAiModel::new("http://localhost:11434/v1/", "m", None).map_err(|e| e.to_string());
        assert_eq!(model.as_ref().map(OpenAiModel::url), Ok("http://localhost:11434/v1/chat/completions"));
    }

    #[test]
    fn tool_calls_with_finish_reason_stop_are_tool_use() {
        let body = json!({"choices": [{"message": {"role": "assistant", "content": null, "tool_calls": [
            {"function": {"name": "case__get_case", "arguments": "{}"}}]}, "finish_reason": "stop"}]});
        let response = parse_response("m", body.to_string().as_bytes()).expect("a chat completion");
        assert_eq!(response.stop_reason, StopReason::ToolUse);
        let uses: Vec<&ToolUse> = response.message.tool_uses().collect();
        assert_eq!(uses[0].name, "case.get_case");
        assert_eq!(uses[0].tool_use_id, "call_0");
    }
}
