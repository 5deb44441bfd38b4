//! Bedrock Converse through aws-sdk-bedrockruntime: the request and answer mapped block by block,
//! JSON values carried as Smithy documents, SDK failures classified into [`ModelError`].

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::config::retry::RetryConfig;
use aws_sdk_bedrockruntime::config::timeout::TimeoutConfig;
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::converse::{ConverseError, ConverseOutput};
use aws_sdk_bedrockruntime::types as wire;
use aws_smithy_types::{Document, Number};
use serde_json::Value;

use crate::{
    ContentBlock, Message, Model, ModelError, ModelRequest, ModelResponse, Role, StopReason, ToolResultStatus, Usage,
    runtime_tool_name, wire_tool_name,
};

/// Attempts per call, the first included, unless [`BedrockModel::with_max_attempts`] says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// How long one attempt may take, answer included, unless [`BedrockModel::with_attempt_timeout`]
/// says otherwise: the SDK sets none, and a hung connection would hold the event forever.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(300);

/// A Bedrock model called through Converse.
///
/// The SDK retries throttling, 5xx answers and connection failures itself (standard mode,
/// exponential backoff with jitter) up to the configured attempts; only then does a call surface
/// as [`ModelError::Throttled`] or [`ModelError::Unavailable`], so callers retrying those again are
/// backing off at a second, slower level.
#[derive(Debug, Clone)]
pub struct BedrockModel {
    client: Client,
    model_id: String,
    retry: RetryConfig,
    attempt_timeout: Duration,
}

impl BedrockModel {
    /// A model on the client built from the standard AWS chains (env, profile, IMDS…), optionally
    /// pointed at another endpoint (a local AWS-compatible server).
    pub async fn from_env(model_id: impl Into<String>, endpoint_url: Option<String>) -> Result<Self, ModelError> {
        let model_id = model_id.into();
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(url) = endpoint_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ModelError::Config {
                    model: display_name(&model_id),
                    message: format!("endpoint url {url:?} is not an http(s) url"),
                });
            }
            loader = loader.endpoint_url(url);
        }
        Self::from_sdk_config(&loader.load().await, model_id)
    }

    /// A model on a client built from `config`; a config without a region is refused here rather
    /// than on the first call.
    pub fn from_sdk_config(config: &SdkConfig, model_id: impl Into<String>) -> Result<Self, ModelError> {
        let model_id = model_id.into();
        if config.region().is_none() {
            return Err(ModelError::Config {
                model: display_name(&model_id),
                message: "no AWS region: set AWS_REGION or a region in the AWS profile".to_owned(),
            });
        }
        Ok(Self::new(Client::new(config), model_id))
    }

    /// A model on a client built by the caller (tests, custom credentials).
    pub fn new(client: Client, model_id: impl Into<String>) -> Self {
        let retry = RetryConfig::standard().with_max_attempts(DEFAULT_MAX_ATTEMPTS);
        Self { client, model_id: model_id.into(), retry, attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT }
    }

    /// How many attempts the SDK makes per call, the first included (at least 1).
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.retry = self.retry.with_max_attempts(max_attempts.max(1));
        self
    }

    /// The SDK's first backoff between attempts (1 s by default); later ones grow exponentially.
    pub fn with_initial_backoff(mut self, backoff: Duration) -> Self {
        self.retry = self.retry.with_initial_backoff(backoff);
        self
    }

    /// How long one attempt may take before it is abandoned (and retried, attempts allowing).
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    pub fn model_id(&self) -> &str {
        &self.model_id
    }
}

fn display_name(model_id: &str) -> String {
    format!("bedrock:{model_id}")
}

#[async_trait]
impl Model for BedrockModel {
    fn name(&self) -> String {
        display_name(&self.model_id)
    }

    async fn converse(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError> {
        let name = self.name();
        let build_error = |e: aws_smithy_types::error::operation::BuildError| ModelError::Config {
            model: name.clone(),
            message: format!("building the converse request: {e}"),
        };
        let messages =
            request.messages.iter().map(to_wire_message).collect::<Result<Vec<_>, _>>().map_err(build_error)?;
        let mut call = self.client.converse().model_id(&self.model_id).set_messages(Some(messages)).inference_config(
            wire::InferenceConfiguration::builder()
                .max_tokens(i32::try_from(request.max_tokens).unwrap_or(i32::MAX))
                .build(),
        );
        // Converse refuses a blank system block, and a toolConfig without tools.
        if !request.system.trim().is_empty() {
            call = call.system(wire::SystemContentBlock::Text(request.system.clone()));
        }
        if !request.tools.is_empty() {
            call = call.tool_config(to_wire_tools(request).map_err(build_error)?);
        }
        // Per call, so the retry policy and timeout are this model's whatever client it was given;
        // the client's other timeouts (connect…) are kept.
        let timeouts =
            self.client.config().timeout_config().map_or_else(TimeoutConfig::builder, TimeoutConfig::to_builder);
        let config = aws_sdk_bedrockruntime::config::Builder::default()
            .retry_config(self.retry.clone())
            .timeout_config(timeouts.operation_attempt_timeout(self.attempt_timeout).build());
        match call.customize().config_override(config).send().await {
            Ok(output) => from_wire_output(&name, output),
            Err(err) => Err(classify(&name, err)),
        }
    }
}

fn to_wire_message(message: &Message) -> Result<wire::Message, aws_smithy_types::error::operation::BuildError> {
    let role = match message.role {
        Role::User => wire::ConversationRole::User,
        Role::Assistant => wire::ConversationRole::Assistant,
    };
    let mut builder = wire::Message::builder().role(role);
    for block in &message.content {
        builder = builder.content(match block {
            ContentBlock::Text(text) => wire::ContentBlock::Text(text.clone()),
            ContentBlock::ToolUse(tool_use) => wire::ContentBlock::ToolUse(
                wire::ToolUseBlock::builder()
                    .tool_use_id(&tool_use.tool_use_id)
                    .name(wire_tool_name(&tool_use.name))
                    .input(to_document(&tool_use.input))
                    .build()?,
            ),
            ContentBlock::ToolResult(result) => wire::ContentBlock::ToolResult(
                wire::ToolResultBlock::builder()
                    .tool_use_id(&result.tool_use_id)
                    .content(wire::ToolResultContentBlock::Json(tool_result_document(&result.content)))
                    .status(match result.status {
                        ToolResultStatus::Success => wire::ToolResultStatus::Success,
                        ToolResultStatus::Error => wire::ToolResultStatus::Error,
                    })
                    .build()?,
            ),
        });
    }
    builder.build()
}

fn to_wire_tools(
    request: &ModelRequest,
) -> Result<wire::ToolConfiguration, aws_smithy_types::error::operation::BuildError> {
    let mut builder = wire::ToolConfiguration::builder();
    for tool in &request.tools {
        builder = builder.tools(wire::Tool::ToolSpec(
            wire::ToolSpecification::builder()
                .name(wire_tool_name(&tool.name))
                .description(&tool.description)
                .input_schema(wire::ToolInputSchema::Json(to_document(&tool.input_schema)))
                .build()?,
        ));
    }
    builder.build()
}

fn from_wire_output(name: &str, output: ConverseOutput) -> Result<ModelResponse, ModelError> {
    let invalid = |message: String| ModelError::InvalidResponse { model: name.to_owned(), message };
    let Some(wire::ConverseOutput::Message(message)) = output.output else {
        return Err(invalid("the answer has no output message".to_owned()));
    };
    let role = match message.role {
        wire::ConversationRole::Assistant => Role::Assistant,
        wire::ConversationRole::User => Role::User,
        other => return Err(invalid(format!("unknown message role {:?}", other.as_str()))),
    };
    let content = message
        .content
        .into_iter()
        .filter_map(|block| match block {
            wire::ContentBlock::Text(text) => Some(ContentBlock::Text(text)),
            wire::ContentBlock::ToolUse(tool_use) => Some(ContentBlock::ToolUse(crate::ToolUse {
                tool_use_id: tool_use.tool_use_id,
                name: runtime_tool_name(&tool_use.name),
                input: to_value(&tool_use.input),
            })),
            // Reasoning, citations, images…: kinds the runtime does not act on.
            _ => None,
        })
        .collect();
    let usage = output.usage.map_or_else(Usage::default, |u| Usage {
        input_tokens: u64::try_from(u.input_tokens).unwrap_or(0),
        output_tokens: u64::try_from(u.output_tokens).unwrap_or(0),
    });
    Ok(ModelResponse { message: Message { role, content }, stop_reason: stop_reason(&output.stop_reason), usage })
}

fn stop_reason(reason: &wire::StopReason) -> StopReason {
    match reason {
        wire::StopReason::EndTurn => StopReason::EndTurn,
        wire::StopReason::ToolUse => StopReason::ToolUse,
        wire::StopReason::MaxTokens => StopReason::MaxTokens,
        wire::StopReason::StopSequence => StopReason::StopSequence,
        wire::StopReason::GuardrailIntervened => StopReason::GuardrailIntervened,
        wire::StopReason::ContentFiltered => StopReason::ContentFiltered,
        other => StopReason::Other(other.as_str().to_owned()),
    }
}

/// Classifies a failed call once the SDK has stopped retrying it.
fn classify(
    name: &str,
    err: SdkError<ConverseError, aws_sdk_bedrockruntime::config::http::HttpResponse>,
) -> ModelError {
    let model = name.to_owned();
    let service = match err {
        SdkError::ServiceError(service) => service,
        other => {
            let message = error_chain(&other);
            return match other {
                // A response arrived but could not be read as one (cut short, not HTTP).
                SdkError::ResponseError(_) => ModelError::InvalidResponse { model, message },
                // Nothing was sent: no credentials, a bad endpoint.
                SdkError::ConstructionFailure(_) => ModelError::Config { model, message },
                // Timeouts, refused or dropped connections.
                _ => ModelError::Unavailable { model, message },
            };
        }
    };
    let status = service.raw().status().as_u16();
    let retry_after =
        service.raw().headers().get("retry-after").and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
    let err = service.into_err();
    // A 2xx whose body did not parse as a Converse answer.
    if (200..300).contains(&status) {
        return ModelError::InvalidResponse { model, message: error_chain(&err) };
    }
    let code = err.code().unwrap_or_default().to_owned();
    let message = err.message().map_or_else(|| error_chain(&err), str::to_owned);
    match code.as_str() {
        "ThrottlingException" | "TooManyRequestsException" => ModelError::Throttled { model, message, retry_after },
        "ServiceUnavailableException"
        | "InternalServerException"
        | "ModelNotReadyException"
        | "ModelTimeoutException" => ModelError::Unavailable { model, message: format!("{status} {code}: {message}") },
        _ if status == 429 => ModelError::Throttled { model, message, retry_after },
        _ if status >= 500 => ModelError::Unavailable { model, message: format!("{status} {code}: {message}") },
        "" => ModelError::Rejected { model, status: status.to_string(), message },
        _ => ModelError::Rejected { model, status: format!("{status} {code}"), message },
    }
}

/// An error and its causes on one line (the SDK's own errors say little without their sources).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Wrappers often repeat their cause's text.
        if !message.ends_with(&cause_text) {
            message.push_str(": ");
            message.push_str(&cause_text);
        }
        source = cause.source();
    }
    message
}

/// A tool result as a `json` block: Converse refuses a `json` that is not an object, so any other
/// value travels as `{"result": value}`.
fn tool_result_document(content: &Value) -> Document {
    match content {
        Value::Object(_) => to_document(content),
        other => to_document(&serde_json::json!({ "result": other })),
    }
}

/// A JSON value as a Smithy document (integers stay integers, other numbers become floats).
pub(crate) fn to_document(value: &Value) -> Document {
    match value {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Document::Number(Number::PosInt(u))
            } else if let Some(i) = n.as_i64() {
                Document::Number(Number::NegInt(i))
            } else {
                n.as_f64().map_or(Document::Null, |f| Document::Number(Number::Float(f)))
            }
        }
        Value::String(s) => Document::String(s.clone()),
        Value::Array(items) => Document::Array(items.iter().map(to_document).collect()),
        Value::Object(map) => {
            Document::Object(map.iter().map(|(k, v)| (k.clone(), to_document(v))).collect::<HashMap<_, _>>())
        }
    }
}

/// A Smithy document as a JSON value; non-finite floats, which JSON cannot carry, become null.
pub(crate) fn to_value(document: &Document) -> Value {
    match document {
        Document::Null => Value::Null,
        Document::Bool(b) => Value::Bool(*b),
        Document::Number(Number::PosInt(u)) => Value::from(*u),
        Document::Number(Number::NegInt(i)) => Value::from(*i),
        Document::Number(Number::Float(f)) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Document::String(s) => Value::String(s.clone()),
        Document::Array(items) => Value::Array(items.iter().map(to_value).collect()),
        Document::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), to_value(v))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_values_round_trip_through_documents() {
        let value = json!({
            "amount": 1250, "delta": -3, "rate": 0.25, "big": u64::MAX, "ok": true, "none": null,
            "ids": ["ch_1", "ch_2"], "nested": {"deep": [{"x": 1.5}]}
        });
        let document = to_document(&value);
        assert_eq!(to_value(&document), value);
        let Document::Object(map) = &document else { panic!("not an object: {document:?}") };
        assert_eq!(map["amount"], Document::Number(Number::PosInt(1250)));
        assert_eq!(map["delta"], Document::Number(Number::NegInt(-3)));
        assert_eq!(map["rate"], Document::Number(Number::Float(0.25)));
    }

    #[test]
    fn non_finite_floats_become_null() {
        assert_eq!(to_value(&Document::Number(Number::Float(f64::NAN))), Value::Null);
    }

    #[test]
    fn a_config_without_region_is_a_config_error() {
        let config = SdkConfig::builder().behavior_version(BehaviorVersion::latest()).build();
        let err = BedrockModel::from_sdk_config(&config, "m").map(|_| ()).unwrap_err();
        assert!(matches!(&err, ModelError::Config { message, .. } if message.contains("region")), "{err}");
    }

    #[test]
    fn unknown_stop_reasons_keep_their_name() {
        assert_eq!(
            stop_reason(&wire::StopReason::from("malformed_tool_use")),
            StopReason::Other("malformed_tool_use".into())
        );
        assert_eq!(stop_reason(&wire::StopReason::from("tool_use")), StopReason::ToolUse);
    }
}
