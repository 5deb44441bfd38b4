//! A model's tool calls, carried out: registry tools (side effects through the effect ledger,
//! scoped to the event's customer), the completion tools `complete.<Event>` and
//! `case.escalate`. What the model got wrong is told to it; what the system got wrong ends
//! the run.

use std::time::Instant;

use choreo_models::{ToolResult, ToolResultStatus, ToolSpec, ToolUse};
use choreo_schemas::catalog::{CaseEscalated, EscalationReason};
use choreo_schemas::{Envelope, EnvelopeBuilder};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Run, RunError, data_of, publish};
use crate::manifest::Agent;
use crate::observe::{StepKind, ToolOutcome};
use crate::store::{Answer, Claim, ClaimMeta, NoteKind, effect_key};
use crate::tools::{CaseSoFar, ToolContext, ToolError};

/// The tool every agent has to hand a case to a human.
pub const ESCALATE_TOOL: &str = "case.escalate";
pub const COMPLETE_PREFIX: &str = "complete.";

/// The completion tool of `event` for `agent`: its input schema is the event's data schema.
pub fn completion_tool(agent: &Agent, event: &str) -> Option<ToolSpec> {
    let mut schema = agent.event_schema(event)?;
    if let Some(map) = schema.as_object_mut() {
        map.remove("$schema");
        map.remove("$id");
    }
    Some(ToolSpec {
        name: format!("{COMPLETE_PREFIX}{event}"),
        description: format!("Publishes `{event}`, your completion, with this data. Ends your work on the event."),
        input_schema: schema,
    })
}

/// Why and what, when the model hands a case to a human.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Escalate {
    /// Why the case needs a human.
    reason: EscalationReason,
    /// What happened, for the human who takes the case.
    #[schemars(length(min = 1))]
    detail: String,
}

pub(super) fn escalate_spec() -> ToolSpec {
    let mut settings = schemars::generate::SchemaSettings::draft2020_12();
    settings.inline_subschemas = true;
    let mut schema = settings.into_generator().into_root_schema_for::<Escalate>();
    schema.remove("$schema");
    schema.remove("title");
    ToolSpec {
        name: ESCALATE_TOOL.into(),
        description: "Hands the case to a human with the reason; no agent works on it after.".into(),
        input_schema: schema.to_value(),
    }
}

fn error(message: impl std::fmt::Display) -> Value {
    json!({ "error": message.to_string() })
}

impl Run<'_> {
    /// Carries out one tool call and says how it went, for the model.
    pub(super) async fn call(&mut self, tool_use: &ToolUse) -> Result<ToolResult, RunError> {
        let started = Instant::now();
        let (outcome, result) = if let Some(event_type) = tool_use.name.strip_prefix(COMPLETE_PREFIX) {
            self.complete(event_type, &tool_use.input).await?
        } else if tool_use.name == ESCALATE_TOOL {
            self.escalate_call(&tool_use.input).await?
        } else {
            self.call_registry(tool_use).await?
        };
        self.step(StepKind::ToolCall {
            tool: tool_use.name.clone(),
            input: tool_use.input.clone(),
            outcome,
            result: result.clone(),
            elapsed: started.elapsed(),
        });
        let status = match outcome {
            ToolOutcome::Ok | ToolOutcome::Suppressed => ToolResultStatus::Success,
            ToolOutcome::Refused | ToolOutcome::Error => ToolResultStatus::Error,
        };
        Ok(ToolResult { tool_use_id: tool_use.tool_use_id.clone(), content: result, status })
    }

    async fn invalid(&self, message: String) -> Result<(ToolOutcome, Value), RunError> {
        self.note(NoteKind::InvalidCall, &message).await?;
        Ok((ToolOutcome::Error, error(message)))
    }

    async fn call_registry(&mut self, tool_use: &ToolUse) -> Result<(ToolOutcome, Value), RunError> {
        let name = tool_use.name.as_str();
        let tool = match self.services.tools.get(name) {
            Some(tool) if self.agent.manifest.tools.iter().any(|t| t == name) => tool,
            _ => {
                let mut yours = self.agent.manifest.tools.clone();
                yours.extend(self.agent.manifest.completes_with.iter().map(|e| format!("{COMPLETE_PREFIX}{e}")));
                yours.push(ESCALATE_TOOL.into());
                return self.invalid(format!("unknown tool `{name}`; your tools are: {}", yours.join(", "))).await;
            }
        };
        let key = effect_key(self.event.id(), name, &tool_use.input);
        let case = match tool.reads_case {
            true => Some(CaseSoFar {
                events: self.services.cases.case_events(&self.correlation_id).await?,
                notes: self.services.cases.notes(&self.correlation_id).await?,
            }),
            false => None,
        };
        let ctx = ToolContext {
            agent: self.agent.name(),
            event: self.event,
            correlation_id: &self.correlation_id,
            customer: self.customer(),
            idempotency_key: &key,
            today: self.services.clock.now().date_naive(),
            backoffice: &self.services.backoffice,
            case: case.as_ref(),
        };
        let outcome = if tool.effect {
            let meta = ClaimMeta {
                agent: self.agent.name(),
                event_id: self.event.id(),
                correlation_id: &self.correlation_id,
                tool: name,
                args: &tool_use.input,
            };
            match self.services.ledger.claim(&key, &meta).await? {
                Claim::Done(recorded) => return Ok((ToolOutcome::Suppressed, recorded)),
                // Unsettled: a crash between the effect and its record, or a run acting right
                // now. The key travels downstream as the idempotency key, so acting again under
                // it returns the first effect's result instead of acting twice.
                Claim::Fresh | Claim::InDoubt { .. } => {}
            }
            let outcome = tool.call(&ctx, tool_use.input.clone());
            match &outcome {
                Ok(result) => self.services.ledger.settle(&key, &meta, result).await?,
                // Nothing was done: a retry may act.
                Err(_) => self.services.ledger.release(&key, &meta).await?,
            }
            outcome
        } else {
            tool.call(&ctx, tool_use.input.clone())
        };
        match outcome {
            Ok(result) => Ok((ToolOutcome::Ok, result)),
            Err(ToolError::Refused(reason)) => {
                let detail = format!("{name} refused: {reason}");
                self.note(NoteKind::Refused, &detail).await?;
                Ok((ToolOutcome::Refused, error(detail)))
            }
            Err(e @ ToolError::Invalid(_)) => self.invalid(format!("{name}: {e}")).await,
            Err(e @ ToolError::Failed(_)) => Ok((ToolOutcome::Error, error(format!("{name}: {e}")))),
            Err(ToolError::Unavailable(reason)) => {
                Err(RunError::retryable("TOOL_UNAVAILABLE", format!("{name}: {reason}")))
            }
            Err(ToolError::Broken(reason)) => Err(RunError::permanent("TOOL_BROKEN", format!("{name}: {reason}"))),
        }
    }

    async fn complete(&mut self, event_type: &str, data: &Value) -> Result<(ToolOutcome, Value), RunError> {
        if !self.agent.manifest.completes_with.iter().any(|e| e == event_type) {
            return self
                .invalid(format!(
                    "`{COMPLETE_PREFIX}{event_type}` is not yours; you complete with {}",
                    self.agent.manifest.completes_with.join(", ")
                ))
                .await;
        }
        if let Err(e) = self.agent.validate_event(event_type, data) {
            return self.invalid(format!("{COMPLETE_PREFIX}{event_type}: {e}")).await;
        }
        let key = if self.agent.manifest.once_per_case.iter().any(|e| e == event_type) {
            format!("{}|{COMPLETE_PREFIX}{event_type}", self.correlation_id)
        } else {
            let n = self.completions_made.entry(event_type.to_owned()).or_default();
            *n += 1;
            format!("{}|{COMPLETE_PREFIX}{event_type}|{n}", self.event.id())
        };
        let builder = self.event.follow_up(self.agent.source(), event_type).data(data.clone());
        let envelope = self.build(builder, data)?;
        match self.publish_once(&key, envelope, &format!("{COMPLETE_PREFIX}{event_type}")).await? {
            (true, envelope) => {
                self.publish(&envelope).await?;
                let result = json!({ "published": envelope.id(), "type": event_type });
                self.published.push(envelope);
                Ok((ToolOutcome::Ok, result))
            }
            (false, envelope) => {
                // Answered already, by this event's earlier delivery or, once per case, by
                // another event (nothing to do).
                if self.unpublished_answer(&envelope).await? {
                    self.publish(&envelope).await?;
                }
                let result = json!({ "already_published": envelope.id(), "type": event_type });
                self.published.push(envelope);
                Ok((ToolOutcome::Suppressed, result))
            }
        }
    }

    async fn escalate_call(&mut self, input: &Value) -> Result<(ToolOutcome, Value), RunError> {
        let escalate: Escalate = match serde_json::from_value(input.clone()) {
            Ok(e) => e,
            Err(e) => return self.invalid(format!("{ESCALATE_TOOL}: invalid input: {e}")).await,
        };
        let key = format!("{}|{ESCALATE_TOOL}", self.event.id());
        self.escalate(escalate.reason, &escalate.detail, &key).await?;
        let id = self.escalated.as_ref().and_then(|e| e.as_ref().map(|e| e.id().to_owned()));
        Ok((ToolOutcome::Ok, json!({ "escalated": id })))
    }

    /// Publishes `CaseEscalated` once under `key` and ends the run as escalated.
    pub(super) async fn escalate(
        &mut self,
        reason: EscalationReason,
        detail: &str,
        key: &str,
    ) -> Result<super::Outcome, RunError> {
        let order_id = data_of(self.event)["order_id"].as_str().filter(|id| id.starts_with("o-")).map(str::to_owned);
        let data =
            CaseEscalated { order_id, reason, detail: detail.to_owned(), escalated_by: self.agent.name().into() };
        let data = serde_json::to_value(&data).map_err(|e| RunError::permanent("INTERNAL", e.to_string()))?;
        let builder = self.event.follow_up(self.agent.source(), "CaseEscalated").data(data.clone());
        let envelope = self.build(builder, &data)?;
        self.note(NoteKind::Escalated, detail).await?;
        let (fresh, envelope) = self.publish_once(key, envelope, ESCALATE_TOOL).await?;
        if fresh || self.unpublished_answer(&envelope).await? {
            self.publish(&envelope).await?;
        }
        let published = fresh.then(|| Box::new(envelope));
        self.escalated = Some(published.clone());
        Ok(super::Outcome::Escalated(published))
    }

    fn build(&self, builder: EnvelopeBuilder, data: &Value) -> Result<Envelope, RunError> {
        let subject = self
            .event
            .subject()
            .map(str::to_owned)
            .or_else(|| data["order_id"].as_str().map(|id| format!("orders/{id}")));
        let builder = match subject {
            Some(subject) => builder.subject(subject),
            None => builder,
        };
        builder.time(self.services.clock.now()).build().map_err(|e| RunError::permanent("INVALID_EVENT", e.to_string()))
    }

    /// Records `envelope` under `key` unless an envelope is there already: answers whether
    /// this call recorded it, and the envelope to use.
    async fn publish_once(&self, key: &str, envelope: Envelope, tool: &str) -> Result<(bool, Envelope), RunError> {
        let meta = ClaimMeta {
            agent: self.agent.name(),
            event_id: self.event.id(),
            correlation_id: &self.correlation_id,
            tool,
            args: &Value::Null,
        };
        match self.services.ledger.record_once(key, &meta, &envelope.to_json_value()).await? {
            None => Ok((true, envelope)),
            Some(recorded) => {
                let recorded = Envelope::from_json_value(recorded)
                    .map_err(|e| RunError::permanent("LEDGER", format!("the ledger's record under `{key}`: {e}")))?;
                Ok((false, recorded))
            }
        }
    }

    /// A delivery of an event this agent finished before (its completion or escalation is in
    /// the ledger; only the acknowledgement was lost): answered from the ledger, the model not
    /// asked again. Asked again, a model may answer otherwise, and its calls would then act
    /// under new keys; answered from the ledger, a finished run's effects stay what they were.
    pub(super) async fn answered_by_ledger(
        &mut self,
        answers: Vec<Answer>,
    ) -> Result<Option<super::Outcome>, RunError> {
        if answers.is_empty() {
            return Ok(None);
        }
        let (mut completed, mut escalated) = (Vec::new(), None);
        for Answer { key, tool, recorded, in_case } in answers {
            self.answered.push(key);
            let envelope = Envelope::from_json_value(recorded).map_err(|e| {
                RunError::permanent("LEDGER", format!("the ledger's `{tool}` for event {}: {e}", self.event.id()))
            })?;
            // `unpublished_answer`, with the case's record read along with the ledger's.
            if self.answers_this_event(&envelope) && !in_case {
                self.publish(&envelope).await?;
            }
            let result = json!({ "already_published": envelope.id(), "type": envelope.event_type() });
            let (input, elapsed) = (data_of(&envelope), std::time::Duration::ZERO);
            self.step(StepKind::ToolCall {
                tool: tool.clone(),
                input,
                outcome: ToolOutcome::Suppressed,
                result,
                elapsed,
            });
            if tool == ESCALATE_TOOL {
                escalated = Some(Box::new(envelope));
            } else {
                completed.push(envelope);
            }
        }
        Ok(Some(match escalated {
            Some(envelope) => super::Outcome::Escalated(Some(envelope)),
            None => super::Outcome::Completed(completed),
        }))
    }

    /// Whether `envelope`, recorded in the ledger by an earlier delivery of this event, may
    /// never have reached the bus (that delivery stopped between the record and the put): it
    /// is put again then (same id: consumers dedupe). One the case store holds was accepted
    /// already (it is recorded after the bus accepted it), so a replay puts nothing twice.
    async fn unpublished_answer(&self, envelope: &Envelope) -> Result<bool, RunError> {
        if !self.answers_this_event(envelope) {
            return Ok(false);
        }
        let case = envelope.correlation_id().unwrap_or(envelope.id());
        Ok(!self.services.cases.has_event(case, envelope.id()).await?)
    }

    /// Whether `envelope` was caused by this run's event (only such an answer is ever put
    /// again; one caused by another event was that event's to put).
    fn answers_this_event(&self, envelope: &Envelope) -> bool {
        envelope.causation_id() == Some(self.event.id())
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), RunError> {
        publish(self.services.bus.as_ref(), envelope).await?;
        self.services.cases.record_event(envelope).await?;
        self.step(StepKind::Published {
            event_type: envelope.event_type().to_owned(),
            published_id: envelope.id().to_owned(),
            data: data_of(envelope),
        });
        Ok(())
    }
}
