//! An agent as a Lambda function fed by its SQS queue (the event source mapping, with
//! `ReportBatchItemFailures`): each record of a batch is judged as the consumer loop judges a
//! received message, the runs are recorded together, and only the records left for a retry are
//! reported back, so that SQS redelivers those alone.
//!
//! A retryable failure is nacked first (its visibility set to the backoff), then reported; a
//! permanent one, or one whose retries are spent, is dead-lettered here with its reason and
//! reported done. A successful record is acknowledged here too (the mapping's own delete of it
//! is then a no-op).

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use choreo_bus::Inboxes;
use choreo_bus::api::{MAX_RECEIVE, Message, NackOutcome, Receipt};
use chrono::DateTime;
use futures_util::future::join_all;

use crate::consumer::{judge, record, report, settle_acks};
use crate::manifest::Agent;
use crate::runner::Services;

/// A batch's records as messages of the agent's inbox. A record without its id or receipt
/// handle can be neither settled nor retried by id: it is left out, said in the log, and comes
/// back after its visibility timeout.
pub fn messages(agent: &Agent, event: SqsEvent) -> Vec<Message> {
    let mut messages = Vec::with_capacity(event.records.len());
    for record in event.records {
        let (Some(id), Some(receipt)) = (record.message_id, record.receipt_handle) else {
            tracing::warn!(agent = agent.name(), "an SQS record without its messageId or receiptHandle");
            continue;
        };
        let number = |k: &str| record.attributes.get(k).and_then(|v| v.parse::<i64>().ok());
        messages.push(Message {
            message_id: id,
            receipt: Receipt(receipt),
            body: record.body.unwrap_or_default(),
            receive_count: number("ApproximateReceiveCount").map_or(1, |n| n.max(1) as u32),
            sent_at: number("SentTimestamp").and_then(DateTime::from_timestamp_millis).unwrap_or_default(),
            rule: agent.rule_name(),
            target: agent.inbox(),
            dead_letter: None,
        });
    }
    messages
}

/// Handles one batch; answers the records to retry.
pub async fn handle_sqs(
    services: &Arc<Services>,
    inboxes: &dyn Inboxes,
    agent: &Arc<Agent>,
    event: SqsEvent,
) -> SqsBatchResponse {
    let retry = handle_batch(services, inboxes, agent, messages(agent, event)).await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = retry
        .into_iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}

/// Judges `messages` together, records their runs in one transaction, settles each; answers
/// the ids of those left for a retry.
pub async fn handle_batch(
    services: &Arc<Services>,
    inboxes: &dyn Inboxes,
    agent: &Arc<Agent>,
    messages: Vec<Message>,
) -> Vec<String> {
    let inbox = agent.inbox();
    for message in &messages {
        inboxes.adopt(&inbox, message);
    }
    let verdicts = join_all(messages.iter().map(|m| judge(services, inboxes, agent, m))).await;
    let settled = record(services, agent, messages.into_iter().zip(verdicts).collect());
    for chunk in settled.acks.chunks(MAX_RECEIVE as usize) {
        settle_acks(inboxes, &inbox, chunk).await;
    }
    let mut retry = Vec::new();
    for (message, failure, step) in settled.nacks {
        match inboxes.nack(&inbox, &message.receipt, failure).await {
            Ok(NackOutcome::DeadLettered { .. }) => {}
            Ok(NackOutcome::RetryAt(_)) => retry.push(message.message_id),
            Err(e) => {
                tracing::warn!(inbox, message = %message.message_id, error = %e, "nack failed; left to SQS");
                retry.push(message.message_id);
            }
        }
        if let Some(step) = step {
            report(services, agent, step);
        }
    }
    retry
}
