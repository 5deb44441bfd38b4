//! What the runtime reports as it works, step by step, for timelines (`choreo demo`), tests
//! and benchmarks, and to the durable step journal ([`crate::journal`]). Reporting never
//! blocks an agent: a slow or absent listener misses steps; the journal queues them.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::journal::Journal;

/// One step of the work on a case.
#[derive(Debug, Clone)]
pub struct Step {
    /// When it happened, on this process's monotonic clock.
    pub at: Instant,
    /// When it happened, on the wall clock (the journal's and the spans' time).
    pub time: SystemTime,
    pub correlation_id: String,
    /// The agent, or empty for steps of no agent.
    pub agent: String,
    /// The CloudEvent the agent is handling.
    pub event_id: String,
    pub kind: StepKind,
    /// Trace context: on `Received`, the delivery's; on `Done`, what the run published.
    pub context: Option<Arc<StepContext>>,
}

impl Step {
    /// The same step with an empty kind placeholder (`Duplicate`), to rebuild with another.
    pub(crate) fn clone_without_kind(&self) -> Step {
        Step {
            at: self.at,
            time: self.time,
            correlation_id: self.correlation_id.clone(),
            agent: self.agent.clone(),
            event_id: self.event_id.clone(),
            kind: StepKind::Duplicate,
            context: self.context.clone(),
        }
    }
}

/// What a step carries for tracing beyond its kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepContext {
    /// `Received`: the event's `traceparent`, the parent of the agent's span.
    pub traceparent: Option<String>,
    /// `Received`: the replay that re-sent the event (EventBridge's `replay-name`).
    pub replay_name: Option<String>,
    /// `Done`: the events the run published (or found already published in the ledger).
    pub published: Vec<PublishedTrace>,
}

/// A published event and its `traceparent`, whose span id is the span of its publishing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedTrace {
    pub id: String,
    pub traceparent: String,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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

/// Where steps go: to whoever subscribed (lossy, for live timelines) and, when one is
/// attached, to the journal (queued, never dropped; written off the agents' path).
#[derive(Clone)]
pub struct Observer {
    sender: broadcast::Sender<Step>,
    journal: Option<Journal>,
}

impl Default for Observer {
    fn default() -> Self {
        Self::new(16_384)
    }
}

impl Observer {
    pub fn new(capacity: usize) -> Self {
        Self { sender: broadcast::channel(capacity).0, journal: None }
    }

    /// Also records every step in `journal`.
    pub fn with_journal(mut self, journal: Journal) -> Self {
        self.journal = Some(journal);
        self
    }

    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Step> {
        self.sender.subscribe()
    }

    pub fn emit(&self, correlation_id: &str, agent: &str, event_id: &str, kind: StepKind) {
        self.emit_step(correlation_id, agent, event_id, kind, None);
    }

    /// A step with its trace context (see [`StepContext`]).
    pub fn emit_with(&self, correlation_id: &str, agent: &str, event_id: &str, kind: StepKind, context: StepContext) {
        self.emit_step(correlation_id, agent, event_id, kind, Some(Arc::new(context)));
    }

    fn emit_step(
        &self,
        correlation_id: &str,
        agent: &str,
        event_id: &str,
        kind: StepKind,
        context: Option<Arc<StepContext>>,
    ) {
        let watched = self.sender.receiver_count() > 0;
        if !watched && self.journal.is_none() {
            return;
        }
        let step = Step {
            at: Instant::now(),
            time: SystemTime::now(),
            correlation_id: correlation_id.to_owned(),
            agent: agent.to_owned(),
            event_id: event_id.to_owned(),
            kind,
            context,
        };
        match &self.journal {
            Some(journal) if watched => {
                journal.record(crate::journal::light(&step));
                // No receiver is not an error: nobody is watching.
                let _ = self.sender.send(step);
            }
            Some(journal) => journal.record(step),
            None => {
                let _ = self.sender.send(step);
            }
        }
    }

    /// Waits until every step emitted so far is in the journal (and handed to the span
    /// exporter, when there is one). Immediate without a journal.
    pub async fn flush(&self) {
        if let Some(journal) = &self.journal {
            journal.flush().await;
        }
    }
}
