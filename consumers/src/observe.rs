//! What the runtime reports as it works, step by step, for timelines (`choreo demo`), tests
//! and benchmarks. Reporting never blocks an agent: a slow or absent listener misses steps.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::broadcast;

/// One step of the work on a case.
#[derive(Debug, Clone)]
pub struct Step {
    /// When it happened, on this process's monotonic clock.
    pub at: Instant,
    pub correlation_id: String,
    /// The agent, or empty for steps of no agent.
    pub agent: String,
    /// The CloudEvent the agent is handling.
    pub event_id: String,
    pub kind: StepKind,
}

/// What happened.
#[derive(Debug, Clone)]
pub enum StepKind {
    /// An agent took an event from its inbox.
    Received { event_type: String, receive_count: u32 },
    /// The event had been handled by this agent already: acknowledged, nothing run.
    Duplicate,
    /// A model call.
    ModelTurn { turn: u32, input_tokens: u64, output_tokens: u64, stop_reason: String, elapsed: Duration },
    /// A tool call and how it ended.
    ToolCall { tool: String, input: Value, outcome: ToolOutcome, result: Value, elapsed: Duration },
    /// An event the agent published (its completion or an escalation).
    Published { event_type: String, published_id: String, data: Value },
    /// The agent ended its turn without completing.
    NoCompletion { text: String },
    /// The run failed; `retryable` says whether the event goes back to the inbox.
    Failed { code: String, message: String, retryable: bool },
    /// The run finished and the event was acknowledged.
    Done { elapsed: Duration, model_time: Duration },
}

/// How a tool call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolOutcome {
    Ok,
    /// The effect ledger already had the result: nothing was done again.
    Suppressed,
    /// Refused: it named what the case's customer does not own.
    Refused,
    /// An error told to the model (bad input, unknown tool, not possible).
    Error,
}

impl ToolOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ToolOutcome::Ok => "ok",
            ToolOutcome::Suppressed => "suppressed",
            ToolOutcome::Refused => "refused",
            ToolOutcome::Error => "error",
        }
    }
}

/// Where steps go.
#[derive(Clone)]
pub struct Observer {
    sender: broadcast::Sender<Step>,
}

impl Default for Observer {
    fn default() -> Self {
        Self::new(16_384)
    }
}

impl Observer {
    pub fn new(capacity: usize) -> Self {
        Self { sender: broadcast::channel(capacity).0 }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Step> {
        self.sender.subscribe()
    }

    pub fn emit(&self, correlation_id: &str, agent: &str, event_id: &str, kind: StepKind) {
        if self.sender.receiver_count() == 0 {
            return;
        }
        let step = Step {
            at: Instant::now(),
            correlation_id: correlation_id.to_owned(),
            agent: agent.to_owned(),
            event_id: event_id.to_owned(),
            kind,
        };
        // No receiver is not an error: nobody is watching.
        let _ = self.sender.send(step);
    }
}
