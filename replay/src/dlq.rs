//! Dead letters as an operator sees them: which inboxes hold them, a selection (by id, by
//! agent, case or error code), and redrive that checks every message can go back before any
//! moves.

use std::collections::{BTreeMap, BTreeSet};

use choreo_bus::api::{InboxSummary, Message, Redriven, Rule};
use choreo_bus::{Bus, BusError, Inboxes};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::ReplayError;

/// The dead-letter inboxes: those the rules' targets name, and any other `-dlq` inbox left
/// behind by a removed consumer.
pub fn dead_letter_inboxes(rules: &[Rule], inboxes: &[InboxSummary]) -> Vec<InboxSummary> {
    let named: BTreeSet<&str> =
        rules.iter().flat_map(|r| r.targets.iter().map(|t| t.dead_letter_inbox.as_str())).collect();
    inboxes.iter().filter(|i| named.contains(i.name.as_str()) || i.name.ends_with("-dlq")).cloned().collect()
}

/// Which dead letters: named messages, or every message of some dead-letter inboxes,
/// narrowed by case and error code.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub messages: Vec<String>,
    pub inboxes: Vec<String>,
    pub case: Option<String>,
    pub code: Option<String>,
}

/// A dead-lettered message and why it is there.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterEntry {
    pub message_id: String,
    pub inbox: String,
    pub rule: String,
    pub target: String,
    /// The inbox it was dead-lettered from: where a redrive sends it.
    pub source_inbox: Option<String>,
    /// When it entered the dead-letter inbox.
    pub dead_lettered_at: DateTime<Utc>,
    pub event_type: Option<String>,
    /// The CloudEvent id and case.
    pub event_id: Option<String>,
    pub correlation_id: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub retry_attempts: Option<u32>,
    pub exhausted_retry_condition: Option<String>,
    /// The delivered event.
    pub event: Value,
}

impl DeadLetterEntry {
    fn from_message(inbox: &str, m: &Message) -> Self {
        let event: Value = serde_json::from_str(&m.body).unwrap_or(Value::Null);
        let detail = &event["detail"];
        let text = |v: &Value| v.as_str().map(str::to_owned);
        let reason = m.dead_letter.as_ref();
        Self {
            message_id: m.message_id.clone(),
            inbox: inbox.to_owned(),
            rule: m.rule.clone(),
            target: m.target.clone(),
            source_inbox: reason.and_then(|r| r.target_arn.rsplit(':').next()).map(str::to_owned),
            dead_lettered_at: m.sent_at,
            event_type: text(&detail["type"]).or_else(|| text(&event["detail-type"])),
            event_id: text(&detail["id"]),
            correlation_id: text(&detail["correlationid"]),
            error_code: reason.map(|r| r.error_code.clone()),
            error_message: reason.map(|r| r.error_message.clone()),
            retry_attempts: reason.map(|r| r.retry_attempts),
            exhausted_retry_condition: reason.and_then(|r| r.exhausted_retry_condition).map(|c| format!("{c:?}")),
            event,
        }
    }
}

const PAGE: u32 = 100;

/// The dead letters `selection` names, in inbox and arrival order. A named message that is
/// not there is an error.
pub async fn select(inboxes: &dyn Inboxes, selection: &Selection) -> Result<Vec<DeadLetterEntry>, ReplayError> {
    let mut out = Vec::new();
    for id in &selection.messages {
        let Some((inbox, _)) = id.rsplit_once('/') else {
            return Err(ReplayError::Unknown(format!("message `{id}` is not a message id (<inbox>/<number>)")));
        };
        let found = inboxes.peek(inbox, previous(id).as_deref(), 1).await.map_err(|e| unknown_message(id, e))?;
        match found.into_iter().next() {
            Some(m) if m.message_id == *id => out.push(DeadLetterEntry::from_message(inbox, &m)),
            _ => return Err(ReplayError::Unknown(format!("message `{id}` is not in inbox `{inbox}`"))),
        }
    }
    for inbox in &selection.inboxes {
        let mut after: Option<String> = None;
        loop {
            let page = inboxes.peek(inbox, after.as_deref(), PAGE).await?;
            for m in &page {
                out.push(DeadLetterEntry::from_message(inbox, m));
            }
            match page.last() {
                Some(last) if page.len() == PAGE as usize => after = Some(last.message_id.clone()),
                _ => break,
            }
        }
    }
    out.retain(|e| {
        selection.case.as_ref().is_none_or(|c| e.correlation_id.as_ref() == Some(c))
            && selection.code.as_ref().is_none_or(|c| e.error_code.as_ref() == Some(c))
    });
    Ok(out)
}

/// Sends the entries back to the inboxes they were dead-lettered from. Checks first that a
/// rule still sends to each of those inboxes: if one cannot go back, nothing moves.
pub async fn redrive(
    bus: &dyn Bus,
    inboxes: &dyn Inboxes,
    entries: &[DeadLetterEntry],
) -> Result<Vec<Redriven>, ReplayError> {
    let rules = bus.list_rules().await?;
    let served: BTreeSet<&str> = rules.iter().flat_map(|r| r.targets.iter().map(|t| t.inbox.as_str())).collect();
    let mut by_inbox: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for e in entries {
        let source = e.source_inbox.as_deref().unwrap_or_default();
        if !served.contains(source) {
            return Err(ReplayError::Unknown(format!(
                "message `{}` cannot be redriven: no rule sends to inbox `{source}` any more (rule `{}` is gone or has \
                 no target): its agent was removed. Nothing was moved; purge it, or restore the agent",
                e.message_id, e.rule
            )));
        }
        by_inbox.entry(e.inbox.as_str()).or_default().push(e.message_id.clone());
    }
    let mut moved = Vec::new();
    for (inbox, ids) in by_inbox {
        moved.extend(inboxes.redrive(inbox, &ids).await?);
    }
    Ok(moved)
}

/// The message id just before `id` in its inbox, so that a peek after it finds `id` first.
fn previous(id: &str) -> Option<String> {
    let (inbox, n) = id.rsplit_once('/')?;
    let n: i64 = n.parse().ok()?;
    Some(format!("{inbox}/{}", n - 1))
}

fn unknown_message(id: &str, e: BusError) -> ReplayError {
    match e {
        BusError::UnknownInbox(inbox) => {
            ReplayError::Unknown(format!("message `{id}`: inbox `{inbox}` does not exist"))
        }
        BusError::MessageNotFound { .. } => ReplayError::Unknown(format!("message `{id}` does not exist")),
        e => e.into(),
    }
}
