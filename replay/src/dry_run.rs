//! What a replay would do, without doing it: the archived events its destinations would
//! receive and, for each agent, whether it handled the event already (it then acknowledges it
//! without running) and which effects the ledger would answer instead of acting again.

use choreo_bus::Bus;
use choreo_bus::api::ArchiveCursor;
use choreo_bus::pattern::{MachineBuilder, Pattern, Scratch};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::{Plan, ReplayError};

/// The agents' side, as a dry run needs it: what the runtime's store knows.
pub trait LedgerView {
    /// The agent that consumes `inbox`, if one does.
    fn agent_of_inbox(&self, inbox: &str) -> Option<String>;
    /// How `agent` ended its handling of CloudEvent `event_id`, if it handled it.
    fn handled(&self, agent: &str, event_id: &str) -> Result<Option<String>, String>;
    /// The ledger's records of `agent` for CloudEvent `event_id`.
    fn effects(&self, agent: &str, event_id: &str) -> Result<Vec<RecordedEffect>, String>;
    /// The side-effecting tools `agent` may call.
    fn effect_tools(&self, agent: &str) -> Vec<String>;
}

/// One record of the effect ledger.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedEffect {
    pub tool: String,
    pub args: Value,
    /// Settled: its result is recorded. Unsettled means in doubt (a crash mid-effect).
    pub done: bool,
    pub result: Option<Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    pub replay: String,
    pub archive: String,
    pub event_start_time: DateTime<Utc>,
    pub event_end_time: DateTime<Utc>,
    pub rules: Vec<String>,
    pub case: Option<String>,
    /// Archived events looked at in the window.
    pub scanned: u64,
    /// Those the destinations would receive.
    pub events: Vec<DryRunEvent>,
}

impl DryRun {
    /// Deliveries the replay would make.
    pub fn deliveries(&self) -> usize {
        self.events.iter().map(|e| e.deliveries.len()).sum()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DryRunEvent {
    pub time: DateTime<Utc>,
    /// The CloudEvent's id (kept by the replay; EventBridge's own id is new).
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub correlation_id: Option<String>,
    pub deliveries: Vec<DryRunDelivery>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DryRunDelivery {
    pub rule: String,
    pub inbox: String,
    pub agent: Option<String>,
    /// The agent handled this event already, and how: it acknowledges the replay unrun.
    pub handled: Option<String>,
    /// Effects the ledger holds for this event: answered from the ledger, not done again.
    pub suppressed: Vec<RecordedEffect>,
    /// Effects started and never settled: reported, and retried only under the same key.
    pub in_doubt: Vec<RecordedEffect>,
    /// Side-effecting tools the agent may still call on this event (when it runs).
    pub may_act: Vec<String>,
}

const PAGE: u32 = 1000;

/// Walks the plan's window of the archive as the replay would, and says what would happen.
pub async fn dry_run(bus: &dyn Bus, plan: &Plan, ledger: &dyn LedgerView) -> Result<DryRun, ReplayError> {
    let mut builder = MachineBuilder::new();
    for d in &plan.destinations {
        let (name, pattern) = d.replayed_rule();
        let parsed = Pattern::parse(pattern)
            .map_err(|e| ReplayError::Invalid(format!("rule `{name}` has a pattern the bus would not take: {e}")))?;
        builder.add_rule(name, parsed);
    }
    let machine = builder.build();
    let mut scratch = Scratch::new();
    let spec = &plan.spec;
    let mut out = DryRun {
        replay: spec.name.clone(),
        archive: spec.archive.clone(),
        event_start_time: spec.event_start_time,
        event_end_time: spec.event_end_time,
        rules: plan.destinations.iter().map(|d| d.rule.name.clone()).collect(),
        case: plan.case.clone(),
        scanned: 0,
        events: Vec::new(),
    };
    let mut cursor: Option<ArchiveCursor> = None;
    loop {
        let page = bus.archived_events(&spec.archive, spec.event_start_time, spec.event_end_time, cursor, PAGE).await?;
        for archived in &page {
            out.scanned += 1;
            let replayed = as_replayed(&archived.body, &spec.name);
            let hits = machine
                .matches(replayed.as_bytes(), &mut scratch)
                .map_err(|e| ReplayError::Invalid(format!("an archived event cannot be matched: {e}")))?;
            if hits.is_empty() {
                continue;
            }
            let hit_rules: Vec<usize> = hits.iter().map(|&h| h as usize).collect();
            let event: Value = serde_json::from_str(&archived.body)
                .map_err(|e| ReplayError::Invalid(format!("an archived event is not JSON: {e}")))?;
            let detail = &event["detail"];
            let id = detail["id"].as_str().unwrap_or_default().to_owned();
            let mut deliveries = Vec::new();
            for n in hit_rules {
                let destination = &plan.destinations[n];
                for target in &destination.rule.targets {
                    deliveries.push(delivery(ledger, &destination.rule.name, &target.inbox, &id)?);
                }
            }
            out.events.push(DryRunEvent {
                time: archived.time,
                id,
                event_type: detail["type"].as_str().or(event["detail-type"].as_str()).unwrap_or_default().to_owned(),
                correlation_id: detail["correlationid"].as_str().map(str::to_owned),
                deliveries,
            });
        }
        match page.last() {
            Some(last) if page.len() == PAGE as usize => cursor = Some(last.cursor),
            _ => return Ok(out),
        }
    }
}

fn delivery(ledger: &dyn LedgerView, rule: &str, inbox: &str, event_id: &str) -> Result<DryRunDelivery, ReplayError> {
    let agent = ledger.agent_of_inbox(inbox);
    let mut d = DryRunDelivery {
        rule: rule.to_owned(),
        inbox: inbox.to_owned(),
        agent: agent.clone(),
        handled: None,
        suppressed: Vec::new(),
        in_doubt: Vec::new(),
        may_act: Vec::new(),
    };
    let Some(agent) = agent else { return Ok(d) };
    let store = |e: String| ReplayError::Invalid(format!("the agents' store: {e}"));
    d.handled = ledger.handled(&agent, event_id).map_err(store)?;
    let (done, doubt): (Vec<_>, Vec<_>) =
        ledger.effects(&agent, event_id).map_err(store)?.into_iter().partition(|e| e.done);
    d.suppressed = done;
    d.in_doubt = doubt;
    if d.handled.is_none() {
        d.may_act = ledger.effect_tools(&agent);
    }
    Ok(d)
}

/// The event as the replay delivers it, for matching: `replay-name` added.
fn as_replayed(body: &str, replay: &str) -> String {
    let trimmed = body.trim_end();
    let inner = trimmed.strip_suffix('}').unwrap_or(trimmed);
    format!("{inner},\"replay-name\":{}}}", Value::String(replay.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replayed_shape_adds_replay_name_and_stays_json() {
        let body = r#"{"version":"0","id":"x","detail":{"id":"e1"}}"#;
        let replayed: Value = serde_json::from_str(&as_replayed(body, "fix \"1\"")).unwrap();
        assert_eq!(replayed["replay-name"], "fix \"1\"");
        assert_eq!(replayed["detail"]["id"], "e1");
    }
}
