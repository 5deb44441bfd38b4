//! The agent loop: one event in, Converse-style turns (model → tool calls → results → …) until
//! the agent completes, escalates or ends its turn, within `max_turns` and the case's budget.

mod calls;
mod publish;

use std::sync::Arc;
use std::time::{Duration, Instant};

use choreo_backoffice::BackOffice;
use choreo_bus::{Bus, Clock};
use choreo_models::{ContentBlock, Message, Model, ModelRequest, Role, StopReason, ToolSpec};
use choreo_schemas::Envelope;
use choreo_schemas::catalog::EscalationReason;
use choreo_schemas::envelope::{AuthType, Budget};
use serde_json::Value;

use crate::manifest::Agent;
use crate::observe::{Observer, StepKind};
use crate::store::{Answer, CaseStore, ClaimMeta, Ledger, NO_COMPLETION, NoteKind, PriorRun, Store, StoreError};
use crate::tools::Registry;

pub use calls::{COMPLETE_PREFIX, ESCALATE_TOOL, completion_tool};
pub use publish::publish;

/// What an agent run needs: the bus to publish on, the stores, the tools and the model.
pub struct Services {
    pub bus: Arc<dyn Bus>,
    pub store: Arc<Store>,
    /// The effect ledger: the store itself (the embedded default), or a shared table (the
    /// AWS path: [`crate::store::DynamoLedger`]).
    pub ledger: Arc<dyn Ledger>,
    /// The case store (events, notes, spend): the store itself, or the shared table on AWS,
    /// where a case's agents run in many functions.
    pub cases: Arc<dyn CaseStore>,
    pub backoffice: Arc<BackOffice>,
    pub tools: Arc<Registry>,
    pub model: Arc<dyn Model>,
    pub clock: Arc<dyn Clock>,
    pub observer: Observer,
}

/// How a run ended, when it did not fail.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The agent published these completions.
    Completed(Vec<Envelope>),
    /// The case went to a human (`CaseEscalated`).
    Escalated(Option<Box<Envelope>>),
    /// The agent ended its turn without completing, saying why.
    NoCompletion(String),
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Completed(_) => "completed",
            Outcome::Escalated(_) => "escalated",
            Outcome::NoCompletion(_) => "no_completion",
        }
    }
}

/// A run that did not fail: how it ended, the time it waited on the model, and the ledger keys
/// that answered it in place of the model (each counts one suppression once the event is
/// settled, see [`crate::store::Store::finish`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Ran {
    pub outcome: Outcome,
    pub model_time: Duration,
    pub answered: Vec<String>,
}

/// Why a run failed: retried later, or dead-lettered with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RunError {
    pub code: String,
    pub message: String,
    pub retryable: bool,
}

impl RunError {
    pub fn retryable(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into(), retryable: true }
    }

    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into(), retryable: false }
    }
}

impl From<StoreError> for RunError {
    fn from(e: StoreError) -> Self {
        // The runtime's own store failing is never the event's fault: try again later.
        RunError { code: "STORE".into(), message: e.to_string(), retryable: true }
    }
}

/// One run of one agent on one event.
pub(crate) struct Run<'a> {
    pub services: &'a Services,
    pub agent: &'a Agent,
    pub event: &'a Envelope,
    pub correlation_id: String,
    pub budget: Budget,
    pub published: Vec<Envelope>,
    pub escalated: Option<Option<Box<Envelope>>>,
    pub model_time: Duration,
    /// The ledger keys of a finished run's completions that answered this one.
    pub answered: Vec<String>,
    completions_made: std::collections::HashMap<String, u32>,
}

impl<'a> Run<'a> {
    pub(crate) fn step(&self, kind: StepKind) {
        self.services.observer.emit(&self.correlation_id, self.agent.name(), self.event.id(), kind);
    }

    pub(crate) async fn note(&self, kind: NoteKind, detail: &str) -> Result<(), RunError> {
        let (case, event, agent) = (&self.correlation_id, self.event.id(), self.agent.name());
        Ok(self.services.cases.note(case, event, agent, kind, detail).await?)
    }

    /// The customer the event acts for: its `authid` when `authtype` is `app_user`.
    pub(crate) fn customer(&self) -> Option<&'a str> {
        match self.event.auth_type() {
            Some(AuthType::AppUser) => self.event.auth_id(),
            _ => None,
        }
    }
}

/// Runs `agent` on `event` to its end. The caller acknowledges the event on `Ok`, retries it
/// on a retryable error and dead-letters it on a permanent one.
pub async fn run(services: &Services, agent: &Agent, event: &Envelope) -> Result<Ran, RunError> {
    let prior = services.store.prior_run(agent.name(), event)?;
    run_after(services, agent, event, prior).await
}

/// [`run`], given what an earlier delivery of `event` left (read with the dedupe, see
/// [`crate::store::Store::unless_processed`]).
pub async fn run_after(services: &Services, agent: &Agent, event: &Envelope, prior: PriorRun) -> Result<Ran, RunError> {
    let correlation_id = event.correlation_id().unwrap_or(event.id()).to_owned();
    let mut run = Run {
        services,
        agent,
        event,
        correlation_id,
        budget: event.budget().unwrap_or_default(),
        published: Vec::new(),
        escalated: None,
        model_time: Duration::ZERO,
        answered: Vec::new(),
        completions_made: Default::default(),
    };
    if !prior.in_case {
        services.cases.add_event(event).await?;
    }
    // A ledger shared beyond this store (other instances of the agent) says what any earlier
    // delivery recorded; this store knows only its own.
    let answers = match services.ledger.recorded(agent.name(), event.id()).await? {
        None => prior.answers,
        Some(recorded) => {
            let (ended, recorded): (Vec<_>, Vec<_>) = recorded.into_iter().partition(|r| r.tool == NO_COMPLETION);
            if let (Some(ended), true) = (ended.last(), recorded.is_empty()) {
                // An earlier delivery (on another instance) ended its turn without completing:
                // this one is a duplicate, answered with that, the model not asked again.
                run.step(StepKind::Duplicate);
                let text = ended.envelope["text"].as_str().unwrap_or_default().to_owned();
                return Ok(run.ran(Outcome::NoCompletion(text)));
            }
            let mut answers = Vec::with_capacity(recorded.len());
            for r in recorded {
                let case = r.envelope["correlationid"].as_str().or(r.envelope["id"].as_str());
                let in_case = match (case, r.envelope["id"].as_str()) {
                    (Some(case), Some(id)) => services.cases.has_event(case, id).await?,
                    _ => false,
                };
                answers.push(Answer { key: r.key, tool: r.tool, recorded: r.envelope, in_case });
            }
            answers
        }
    };
    if let Some(outcome) = run.answered_by_ledger(answers).await? {
        return Ok(run.ran(outcome));
    }
    // Held until the run ends: `concurrency` bounds the agent's runs that call the model.
    let _slot = agent.model_slots.acquire().await.map_err(|e| RunError::retryable("AGENT_STOPPED", e.to_string()))?;
    if let Err(exhausted) = services.cases.debit_hop(&run.correlation_id, &run.budget).await? {
        let outcome = run.budget_exhausted(&exhausted.to_string()).await?;
        return Ok(run.ran(outcome));
    }
    let outcome = run.converse().await?;
    if let Outcome::NoCompletion(text) = &outcome {
        let meta = ClaimMeta {
            agent: agent.name(),
            event_id: event.id(),
            correlation_id: &run.correlation_id,
            tool: NO_COMPLETION,
            args: &Value::Null,
        };
        services.ledger.ended_without_completion(&meta, text).await?;
    }
    Ok(run.ran(outcome))
}

impl Run<'_> {
    fn ran(self, outcome: Outcome) -> Ran {
        Ran { outcome, model_time: self.model_time, answered: self.answered }
    }

    async fn converse(&mut self) -> Result<Outcome, RunError> {
        let tools = self.tool_specs();
        let request_base = ModelRequest {
            agent: self.agent.name().to_owned(),
            system: self.system_prompt(),
            messages: vec![Message::user_text(self.first_message())],
            tools,
            max_tokens: self.agent.manifest.max_tokens,
        };
        let mut request = request_base;
        for turn in 1..=self.agent.manifest.max_turns {
            if let Err(exhausted) = self.services.cases.debit_turn(&self.correlation_id, &self.budget).await? {
                return self.budget_exhausted(&exhausted.to_string()).await;
            }
            let started = Instant::now();
            let response = self.services.model.converse(&request).await;
            let elapsed = started.elapsed();
            self.model_time += elapsed;
            let response = response.map_err(|e| RunError {
                code: e.code().to_owned(),
                message: e.to_string(),
                retryable: e.is_retryable(),
            })?;
            self.services.cases.add_tokens(&self.correlation_id, response.usage.total()).await?;
            self.step(StepKind::ModelTurn {
                turn,
                input_tokens: response.usage.input_tokens,
                output_tokens: response.usage.output_tokens,
                stop_reason: format!("{:?}", response.stop_reason),
                elapsed,
            });
            let message = response.message;
            let uses: Vec<_> = message.tool_uses().cloned().collect();
            request.messages.push(Message { role: Role::Assistant, content: message.content.clone() });
            if !uses.is_empty() {
                let mut results = Vec::with_capacity(uses.len());
                for tool_use in &uses {
                    results.push(ContentBlock::ToolResult(self.call(tool_use).await?));
                }
                request.messages.push(Message { role: Role::User, content: results });
                // Completing (or escalating) is the agent's last act: no further model call.
                if let Some(escalated) = self.escalated.take() {
                    return Ok(Outcome::Escalated(escalated));
                }
                if !self.published.is_empty() {
                    return Ok(Outcome::Completed(std::mem::take(&mut self.published)));
                }
                continue;
            }
            match response.stop_reason {
                StopReason::EndTurn | StopReason::StopSequence => {
                    let text = message.text();
                    self.note(NoteKind::NoCompletion, &text).await?;
                    self.step(StepKind::NoCompletion { text: text.clone() });
                    return Ok(Outcome::NoCompletion(text));
                }
                StopReason::MaxTokens => {
                    request.messages.push(Message::user_text(
                        "Your answer was cut off at the token limit. Answer briefly: call a tool, or complete.",
                    ));
                }
                StopReason::ToolUse => {
                    // Said it would call a tool and called none: tell it, as with any bad call.
                    let detail = "the answer stopped for tool use but holds no tool call";
                    self.note(NoteKind::InvalidCall, detail).await?;
                    request.messages.push(Message::user_text(
                        "Your last answer stopped for tool use but held no tool call. Call one of your tools, \
                         or `complete.<Event>` when your part is done.",
                    ));
                }
                other => {
                    return Err(RunError::permanent(
                        "MODEL_STOPPED",
                        format!("the model stopped with {other:?} and no tool call"),
                    ));
                }
            }
        }
        let detail = format!(
            "agent `{}` used its {} turns on event {} without completing",
            self.agent.name(),
            self.agent.manifest.max_turns,
            self.event.id()
        );
        self.escalate(EscalationReason::AgentFailed, &detail, &format!("{}|max_turns", self.event.id())).await
    }

    async fn budget_exhausted(&mut self, detail: &str) -> Result<Outcome, RunError> {
        self.note(NoteKind::BudgetExhausted, detail).await?;
        // Once per case, whichever agent hits the limit first.
        let key = format!("{}|budget_exhausted", self.correlation_id);
        self.escalate(EscalationReason::BudgetExhausted, detail, &key).await
    }

    fn tool_specs(&self) -> Vec<ToolSpec> {
        let mut specs: Vec<ToolSpec> = self
            .agent
            .manifest
            .tools
            .iter()
            .filter_map(|name| self.services.tools.get(name))
            .map(|t| ToolSpec {
                name: t.name.to_owned(),
                description: t.description.to_owned(),
                input_schema: t.input_schema.clone(),
            })
            .collect();
        specs.extend(self.agent.manifest.completes_with.iter().filter_map(|e| completion_tool(self.agent, e)));
        specs.push(calls::escalate_spec());
        specs
    }

    fn system_prompt(&self) -> String {
        let completions: Vec<String> =
            self.agent.manifest.completes_with.iter().map(|e| format!("`complete.{e}`")).collect();
        format!(
            "{}\n\n---\nYou are the `{}` agent of a retail support team. You receive one event at a time, as JSON, \
             and act only through your tools, for the customer the event acts for. When your part is done, call \
             {} with the event's data (it is checked against its schema). If you cannot do your part, call \
             `{ESCALATE_TOOL}` to hand the case to a human. If there is nothing for you to do yet, end your turn \
             and say why.",
            self.agent.prompt.trim(),
            self.agent.name(),
            completions.join(" or "),
        )
    }

    fn first_message(&self) -> String {
        let today = self.services.clock.now().date_naive();
        format!(
            "Today is {today}. Event `{}` on case `{}`:\n```json\n{}\n```",
            self.event.event_type(),
            self.correlation_id,
            serde_json::to_string_pretty(&self.event.to_json_value()).unwrap_or_default()
        )
    }
}

/// The data of an event, or `null`.
pub(crate) fn data_of(envelope: &Envelope) -> Value {
    envelope.data().cloned().unwrap_or(Value::Null)
}

/// What a panic of an agent's run said, for its dead letter's reason.
pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".to_owned());
    format!("the agent panicked: {text}")
}
