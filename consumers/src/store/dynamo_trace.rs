//! A case's record in the ledger's DynamoDB table, for `choreo trace --backend aws`: the runs
//! each agent function copies under its case after an invocation (`sk` = `run#<instance>#<seq>`,
//! the steps as JSON), read back with the case's events (the case store, see
//! [`super::dynamo_cases`]) and the effects of each of its events (the ledger's partitions).

use std::collections::BTreeSet;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use chrono::{DateTime, Utc};

use super::dynamo::{Item, text, where_};
use super::dynamo_cases::number;
use super::{DynamoLedger, StoreError};
use crate::journal::file::Run;
use crate::journal::{CaseEvent, CaseLog, Effect, StepRow};

/// A case as the table holds it: its record, and the customers its events acted for.
pub struct AwsCase {
    pub log: CaseLog,
    pub customers: BTreeSet<String>,
}

impl DynamoLedger {
    /// Copies journal rows (the steps of runs) under their cases (`pk` = `case#<id>`), for
    /// `choreo trace --backend aws`: `instance` tells apart the rows of two instances that
    /// numbered theirs alike. Batches of 25, unprocessed items sent again.
    pub async fn put_runs(&self, instance: &str, runs: &[Run]) -> Result<(), StoreError> {
        for chunk in runs.chunks(25) {
            let mut requests = Vec::with_capacity(chunk.len());
            for run in chunk {
                let mut item = Item::from([
                    ("pk".to_owned(), AttributeValue::S(format!("case#{}", run.correlation_id))),
                    ("sk".to_owned(), AttributeValue::S(format!("run#{instance}#{:020}", run.seq))),
                    ("agent".to_owned(), AttributeValue::S(run.agent.clone())),
                    ("event_id".to_owned(), AttributeValue::S(run.event_id.clone())),
                    ("steps".to_owned(), AttributeValue::S(run.steps.clone())),
                ]);
                if let Some(replay) = &run.replay_name {
                    item.insert("replay_name".to_owned(), AttributeValue::S(replay.clone()));
                }
                let put =
                    PutRequest::builder().set_item(Some(item)).build().map_err(|e| self.error(e.to_string(), false))?;
                requests.push(WriteRequest::builder().put_request(put).build());
            }
            for _ in 0..5 {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(|e| self.fail("BatchWriteItem", e))?;
                requests = out.unprocessed_items.and_then(|mut u| u.remove(&self.table)).unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
            }
            if !requests.is_empty() {
                return Err(self.error(format!("{} run(s) left unprocessed by BatchWriteItem", requests.len()), true));
            }
        }
        Ok(())
    }

    /// The steps of case `case` that functions copied here, in the order they happened,
    /// numbered again (instances number theirs each on its own).
    pub async fn case_steps(&self, case: &str) -> Result<Vec<StepRow>, StoreError> {
        let items = self.case_items(case, "run#").await?;
        let mut runs: Vec<Vec<StepRow>> = items
            .iter()
            .filter_map(|item| {
                let run = Run {
                    seq: 0,
                    last: 0,
                    correlation_id: case.to_owned(),
                    agent: text(item, "agent")?.to_owned(),
                    event_id: text(item, "event_id")?.to_owned(),
                    replay_name: text(item, "replay_name").map(str::to_owned),
                    steps: text(item, "steps")?.to_owned(),
                };
                Some(run.step_rows())
            })
            .filter(|steps| !steps.is_empty())
            .collect();
        runs.sort_by_key(|steps| steps[0].started_us);
        let mut seq = 0;
        let mut steps = Vec::new();
        for mut row in runs.into_iter().flatten() {
            seq += 1;
            row.seq = seq;
            steps.push(row);
        }
        Ok(steps)
    }
}

impl DynamoLedger {
    /// Case `case`: its events, the runs copied here and its events' effects, and the customers
    /// it acted for; `None` when the table holds no event and no run of it.
    pub async fn case_log(&self, case: &str) -> Result<Option<AwsCase>, StoreError> {
        let items = self.case_event_items(case).await?;
        let mut customers = BTreeSet::new();
        let mut events = Vec::with_capacity(items.len());
        for (seq, item) in items.iter().enumerate() {
            let (Some(id), Some(event_type)) = (text(item, "event_id"), text(item, "type")) else { continue };
            customers.extend(text(item, "customer").map(str::to_owned));
            events.push(CaseEvent {
                id: id.to_owned(),
                event_type: event_type.to_owned(),
                source: text(item, "source").unwrap_or_default().to_owned(),
                causation_id: text(item, "causation_id").map(str::to_owned),
                time: text(item, "time")
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc)),
                seq: seq as i64 + 1,
            });
        }
        let steps = self.case_steps(case).await?;
        if events.is_empty() && steps.is_empty() {
            return Ok(None);
        }
        let mut effects = Vec::new();
        for event in &events {
            effects.extend(self.event_effects(&event.id).await?);
        }
        effects.sort_by_key(|(at, _)| *at);
        let log = CaseLog {
            case: case.to_owned(),
            store: where_(&self.table).into(),
            events,
            steps,
            effects: effects.into_iter().map(|(_, e)| e).collect(),
            journal: true,
        };
        Ok(Some(AwsCase { log, customers }))
    }

    /// The effects recorded for CloudEvent `event_id` (its partition), with when each began.
    async fn event_effects(&self, event_id: &str) -> Result<Vec<(i64, Effect)>, StoreError> {
        let items = self.event_items(event_id).await?;
        Ok(items
            .iter()
            .filter_map(|item: &Item| {
                // A run's end without completion is the ledger's, not an effect.
                if text(item, "tool") == Some(super::NO_COMPLETION) {
                    return None;
                }
                let effect = Effect {
                    agent: text(item, "agent")?.to_owned(),
                    event_id: event_id.to_owned(),
                    tool: text(item, "tool")?.to_owned(),
                    args: text(item, "args").unwrap_or("null").to_owned(),
                    state: text(item, "state").unwrap_or_default().to_owned(),
                    suppressed: u32::try_from(number(item, "suppressed")).unwrap_or(0),
                };
                Some((number(item, "started_at"), effect))
            })
            .collect())
    }
}
