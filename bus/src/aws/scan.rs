//! Dead-letter queues looked at, redriven and purged on SQS. SQS cannot show a message
//! without receiving it, nor receive one by id, so these receive every message of the queue
//! (holding them hidden for [`HOLD`]), act on those chosen, and release the others at once
//! (visibility 0). Message ids here are `<inbox>/<SQS MessageId>`, as the embedded bus's are
//! `<inbox>/<number>`; messages come in the order they were sent.
//!
//! Only queues that no target consumes: a look at an agent's queue would count as a receive
//! toward its redrive policy's `maxReceiveCount` (and hide its messages from the agent).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry;

use super::AwsBus;
use super::errors::Call;
use super::queues::Queue;
use crate::api::*;

/// How long the messages of a scan stay hidden, at most, before they are released.
const HOLD: Duration = Duration::from_secs(60);
/// The most messages a scan takes.
const SCAN_MAX: usize = 10_000;

impl AwsBus {
    /// Every message of `inbox`, received and held, in the order they were sent.
    async fn hold_all(&self, inbox: &str, queue: &Queue) -> Result<Vec<Message>, BusError> {
        if queue.policy.is_some() {
            return Err(BusError::Unsupported {
                operation: format!(
                    "looking at the messages of `{inbox}`, which a target consumes (SQS counts a look as a receive \
                     toward its redrive policy)"
                ),
                backend: "AWS (SQS)".into(),
            });
        }
        // A long poll asks every SQS server; an empty one means none is left to receive.
        let options = ReceiveOptions { max_messages: 10, visibility_timeout: HOLD, wait_time: Duration::from_secs(1) };
        let mut held: Vec<Message> = Vec::new();
        let mut seen = HashSet::new();
        loop {
            let got = self.receive(inbox, options).await;
            let got = match got {
                Ok(got) => got,
                Err(e) => {
                    self.release(inbox, queue, &held).await;
                    return Err(e);
                }
            };
            if got.is_empty() {
                break;
            }
            held.extend(got.into_iter().filter(|m| seen.insert(m.message_id.clone())));
            if held.len() > SCAN_MAX {
                self.release(inbox, queue, &held).await;
                return Err(BusError::Unsupported {
                    operation: format!("looking through more than {SCAN_MAX} messages of `{inbox}`"),
                    backend: "AWS (SQS)".into(),
                });
            }
        }
        held.sort_by(|a, b| a.sent_at.cmp(&b.sent_at).then_with(|| a.message_id.cmp(&b.message_id)));
        for m in &mut held {
            m.message_id = format!("{inbox}/{}", m.message_id);
        }
        Ok(held)
    }

    /// Makes `messages` visible again at once; a message that cannot be released comes back
    /// when its hold ends.
    async fn release(&self, inbox: &str, queue: &Queue, messages: &[Message]) {
        for chunk in messages.chunks(10) {
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&m.receipt.0)
                        .visibility_timeout(0)
                        .build()
                        .ok()
                })
                .collect();
            let released = self
                .sqs
                .change_message_visibility_batch()
                .queue_url(&queue.url)
                .set_entries(Some(entries))
                .send()
                .await;
            if let Err(e) = released {
                let e = Call::sqs("ChangeMessageVisibilityBatch", inbox).fail(e);
                tracing::warn!(%inbox, error = %e, "messages not released: they come back when their hold ends");
            }
        }
    }

    /// Holds every message of `inbox`, then splits out those named (`<inbox>/<id>` or the SQS
    /// id alone); if one is not there, releases everything and says which.
    async fn hold_chosen(
        &self,
        inbox: &str,
        queue: &Queue,
        ids: &[String],
    ) -> Result<(Vec<Message>, Vec<Message>), BusError> {
        let held = self.hold_all(inbox, queue).await?;
        let prefix = format!("{inbox}/");
        let wanted: Vec<String> =
            ids.iter().map(|id| if id.starts_with(&prefix) { id.clone() } else { format!("{prefix}{id}") }).collect();
        let present: HashSet<&str> = held.iter().map(|m| m.message_id.as_str()).collect();
        if let Some(missing) = wanted.iter().find(|id| !present.contains(id.as_str())) {
            let missing = missing.clone();
            self.release(inbox, queue, &held).await;
            return Err(BusError::MessageNotFound { inbox: inbox.to_owned(), message: missing });
        }
        let wanted: HashSet<&str> = wanted.iter().map(String::as_str).collect();
        Ok(held.into_iter().partition(|m| wanted.contains(m.message_id.as_str())))
    }

    pub(super) async fn peek_queue(
        &self,
        inbox: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Message>, BusError> {
        let queue = self.queue(inbox).await?;
        let held = self.hold_all(inbox, &queue).await?;
        self.release(inbox, &queue, &held).await;
        let start = match after {
            Some(after) => held.iter().position(|m| m.message_id == after).map_or(held.len(), |i| i + 1),
            None => 0,
        };
        Ok(held.into_iter().skip(start).take(limit as usize).collect())
    }

    pub(super) async fn redrive_queue(&self, dead_letters: &str, ids: &[String]) -> Result<Vec<Redriven>, BusError> {
        let queue = self.queue(dead_letters).await?;
        let (chosen, others) = self.hold_chosen(dead_letters, &queue, ids).await?;
        // Where each goes: the queue its reason names, else the one this dead-letter queue
        // serves by name. Every one must exist before any moves.
        let mut sources: HashMap<String, Queue> = HashMap::new();
        let mut plan = Vec::with_capacity(chosen.len());
        for m in &chosen {
            let source = match &m.dead_letter {
                Some(d) if !d.target_arn.is_empty() => {
                    self.inbox_of(d.target_arn.rsplit(':').next().unwrap_or_default()).to_owned()
                }
                _ => dead_letters.strip_suffix("-dlq").unwrap_or(dead_letters).to_owned(),
            };
            if !sources.contains_key(&source) {
                match self.queue(&source).await {
                    Ok(q) => {
                        sources.insert(source.clone(), q);
                    }
                    Err(e) => {
                        self.release(dead_letters, &queue, &chosen).await;
                        self.release(dead_letters, &queue, &others).await;
                        return Err(match e {
                            BusError::UnknownInbox(_) => BusError::RedriveImpossible {
                                message: m.message_id.clone(),
                                reason: format!("the inbox it came from, `{source}`, does not exist any more"),
                            },
                            e => e,
                        });
                    }
                }
            }
            plan.push((m, source));
        }
        self.release(dead_letters, &queue, &others).await;
        let mut moved = Vec::with_capacity(plan.len());
        for (m, source) in plan {
            let to = &sources[&source];
            let call = Call::sqs("SendMessage", &source);
            let sent = self.sqs.send_message().queue_url(&to.url).message_body(&m.body).send().await;
            let sent = sent.map_err(|e| call.fail(e))?;
            // Sent, then deleted here: a failure in between leaves it in both (at least once).
            self.delete(&queue, dead_letters, &m.receipt).await?;
            let new_id = sent.message_id().unwrap_or_default();
            moved.push(Redriven {
                message_id: m.message_id.clone(),
                inbox: source.clone(),
                new_message_id: format!("{source}/{new_id}"),
            });
        }
        Ok(moved)
    }

    pub(super) async fn delete_from_queue(&self, inbox: &str, ids: &[String]) -> Result<u64, BusError> {
        let queue = self.queue(inbox).await?;
        let (chosen, others) = self.hold_chosen(inbox, &queue, ids).await?;
        self.release(inbox, &queue, &others).await;
        for m in &chosen {
            self.delete(&queue, inbox, &m.receipt).await?;
        }
        Ok(chosen.len() as u64)
    }
}
