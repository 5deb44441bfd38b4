//! The model an agent talks to, behind one trait with Converse semantics: messages of content
//! blocks (text, toolUse, toolResult), tool specs with JSON Schemas, stop reasons, token usage.
//! Bedrock Converse, OpenAI-compatible chat endpoints and the offline model all speak it.
//!
//! ```
//! use choreo_models::{Message, Model, ModelRequest, ModelSpec, OfflineModel};
//!
//! # async fn demo(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
//! assert_eq!("bedrock:amazon.nova-lite-v1:0".parse::<ModelSpec>()?.to_string(), "bedrock:amazon.nova-lite-v1:0");
//! std::fs::write(dir.join("offline.toml"), "[[rule]]\ntext = 'Hello from {{ event.data.who }}'\n")?;
//! let mut model = OfflineModel::new();
//! model.load_script("greeter", &dir.join("offline.toml"))?;
//! let request = ModelRequest {
//!     agent: "greeter".into(),
//!     system: "Greet.".into(),
//!     messages: vec![Message::user_text("```json\n{\"data\": {\"who\": \"c-1001\"}}\n```")],
//!     tools: vec![],
//!     max_tokens: 100,
//! };
//! assert_eq!(model.converse(&request).await?.message.text(), "Hello from c-1001");
//! # Ok(())
//! # }
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(demo(tempfile::tempdir().unwrap().path())).unwrap();
//! ```

mod bedrock;
mod offline;
mod openai;
mod spec;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use bedrock::BedrockModel;
pub use offline::{OfflineModel, OfflineScriptError, SCRIPT_FILE};
pub use openai::OpenAiModel;
pub use spec::{ModelSpec, ModelSpecError};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<ContentBlock>,
}

impl Message {
    pub fn user_text(text: impl Into<String>) -> Self {
        Self { role: Role::User, content: vec![ContentBlock::Text(text.into())] }
    }

    /// The tool uses this message asks for, in order.
    pub fn tool_uses(&self) -> impl Iterator<Item = &ToolUse> {
        self.content.iter().filter_map(|b| match b {
            ContentBlock::ToolUse(u) => Some(u),
            _ => None,
        })
    }

    /// The text blocks of this message, joined by newlines.
    pub fn text(&self) -> String {
        let texts: Vec<&str> = self
            .content
            .iter()
            .filter_map(|b| match b {
                ContentBlock::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        texts.join("\n")
    }
}

/// A block of a message (Converse's `ContentBlock`, the kinds agents use).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ContentBlock {
    Text(String),
    ToolUse(ToolUse),
    ToolResult(ToolResult),
}

/// The model asks for a tool to be called. `name` is the runtime's name (`payments.refund_charge`);
/// clients translate it to and from the wire with [`wire_tool_name`] and [`runtime_tool_name`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolUse {
    pub tool_use_id: String,
    pub name: String,
    pub input: Value,
}

/// The answer to a [`ToolUse`], sent back in the next user message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolResult {
    pub tool_use_id: String,
    /// JSON content (Converse's `json` block).
    pub content: Value,
    pub status: ToolResultStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolResultStatus {
    Success,
    Error,
}

/// A tool the model may call: its runtime name, what it does, and its input's JSON Schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub input_schema: Value,
}

/// One model call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRequest {
    /// The agent asking (the offline model reads its script by it; others may log it).
    pub agent: String,
    pub system: String,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    /// Upper bound on the tokens of the answer.
    pub max_tokens: u32,
}

/// Why the model stopped (Converse's `stopReason`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndTurn,
    ToolUse,
    MaxTokens,
    StopSequence,
    GuardrailIntervened,
    ContentFiltered,
    /// A reason this runtime does not know, as the service named it.
    Other(String),
}

/// Tokens spent by one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

/// The model's answer: one assistant message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelResponse {
    pub message: Message,
    pub stop_reason: StopReason,
    pub usage: Usage,
}

/// Why a model call failed, classified where it is made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The service asked us to slow down; try again after `retry_after` if it said.
    #[error("{model}: throttled: {message}")]
    Throttled { model: String, message: String, retry_after: Option<Duration> },
    /// The service is down, timed out or answered 5xx; trying again may work.
    #[error("{model}: unavailable: {message}")]
    Unavailable { model: String, message: String },
    /// The service refused the request (bad request, access denied, unknown model): trying
    /// again will not help.
    #[error("{model}: refused the request ({status}): {message}")]
    Rejected { model: String, status: String, message: String },
    /// The answer could not be understood (not the documented shape).
    #[error("{model}: invalid response: {message}")]
    InvalidResponse { model: String, message: String },
    /// The model is misconfigured here (missing script, bad endpoint url, no region).
    #[error("{model}: {message}")]
    Config { model: String, message: String },
}

impl ModelError {
    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ModelError::Throttled { .. } | ModelError::Unavailable { .. })
    }

    /// A stable short code for dead letters and the case timeline.
    pub fn code(&self) -> &'static str {
        match self {
            ModelError::Throttled { .. } => "MODEL_THROTTLED",
            ModelError::Unavailable { .. } => "MODEL_UNAVAILABLE",
            ModelError::Rejected { .. } => "MODEL_REJECTED",
            ModelError::InvalidResponse { .. } => "MODEL_INVALID_RESPONSE",
            ModelError::Config { .. } => "MODEL_CONFIG",
        }
    }
}

/// A model: one Converse-shaped call.
#[async_trait]
pub trait Model: Send + Sync {
    /// How the model is named in logs and errors, e.g. `offline`, `bedrock:anthropic.claude…`.
    fn name(&self) -> String;

    async fn converse(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError>;
}

/// Bedrock and OpenAI tool names must match `^[a-zA-Z0-9_-]{1,64}$`: the runtime's dots
/// travel as `__`.
pub fn wire_tool_name(name: &str) -> String {
    name.replace('.', "__")
}

/// The runtime's name of a tool named `wire` on the wire.
pub fn runtime_tool_name(wire: &str) -> String {
    wire.replace("__", ".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_round_trip_through_the_wire_alphabet() {
        for name in ["payments.refund_charge", "complete.PaymentIssueResolved", "case.get_case"] {
            let wire = wire_tool_name(name);
            assert!(wire.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'), "{wire}");
            assert_eq!(runtime_tool_name(&wire), name);
        }
    }

    #[test]
    fn only_throttling_and_outages_are_retryable() {
        let m = "m".to_owned();
        assert!(ModelError::Throttled { model: m.clone(), message: String::new(), retry_after: None }.is_retryable());
        assert!(ModelError::Unavailable { model: m.clone(), message: String::new() }.is_retryable());
        assert!(
            !ModelError::Rejected { model: m.clone(), status: "400".into(), message: String::new() }.is_retryable()
        );
        assert!(!ModelError::InvalidResponse { model: m, message: String::new() }.is_retryable());
    }
}
