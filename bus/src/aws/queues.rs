//! SQS's side: inbox `x` is queue `<prefix>x`. A target's queue carries its Choreo policy in
//! its tags (`choreo:*`): the retry policy's attempts, event age and backoff, the dead-letter
//! inbox, the rule's ARN and the target's id, which `nack` needs and SQS does not keep.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
};
use chrono::DateTime;

use super::AwsBus;
use super::errors::{self, Call};
use super::policy::QueuePolicy;
use crate::api::*;
use crate::retry::{self, Next};

const MISSING: &[&str] = &["AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"];
/// How long a message's details are kept for its nack when it is never settled here.
const IN_FLIGHT_FOR: Duration = MAX_VISIBILITY;

/// A queue as looked up: where it is, and the policy of the target it serves (none for a
/// queue no target set up, a dead-letter queue among them).
#[derive(Debug, Clone)]
pub(super) struct Queue {
    pub url: String,
    pub arn: String,
    pub policy: Option<QueuePolicy>,
}

/// What a receive learnt of a message that its nack needs and its receipt does not say.
#[derive(Debug, Clone)]
pub(super) struct InFlight {
    body: String,
    receive_count: u32,
    sent_ms: i64,
    received: std::time::Instant,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Whole seconds, rounded up, as SQS takes them.
fn seconds(d: Duration) -> i32 {
    d.as_millis().div_ceil(1000).min(i32::MAX as u128) as i32
}

impl AwsBus {
    fn queue_name(&self, inbox: &str) -> String {
        format!("{}{inbox}", self.queue_prefix)
    }

    /// The inbox a queue of this bus stands for.
    pub(super) fn inbox_of<'a>(&self, queue_name: &'a str) -> &'a str {
        queue_name.strip_prefix(self.queue_prefix.as_str()).unwrap_or(queue_name)
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, HashMap<String, Queue>> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<String, InFlight>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The queue of `inbox`, looked up once.
    pub(super) async fn queue(&self, inbox: &str) -> Result<Queue, BusError> {
        if let Some(q) = self.cached().get(inbox) {
            return Ok(q.clone());
        }
        let name = self.queue_name(inbox);
        let call = Call::sqs("GetQueueUrl", &name);
        let url = match self.sqs.get_queue_url().queue_name(&name).send().await {
            Ok(out) => out.queue_url().map(str::to_owned).ok_or_else(|| call.odd("no QueueUrl"))?,
            Err(e) if errors::code(&e).is_some_and(|c| MISSING.contains(&c)) => {
                return Err(BusError::UnknownInbox(inbox.to_owned()));
            }
            Err(e) => return Err(call.fail(e)),
        };
        let queue = self.describe_queue(&name, url).await?;
        self.cached().insert(inbox.to_owned(), queue.clone());
        Ok(queue)
    }

    async fn describe_queue(&self, name: &str, url: String) -> Result<Queue, BusError> {
        let call = Call::sqs("GetQueueAttributes", name);
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| call.fail(e))?;
        let arn = out
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .ok_or_else(|| call.odd("no QueueArn"))?;
        let call = Call::sqs("ListQueueTags", name);
        let tags = self.sqs.list_queue_tags().queue_url(&url).send().await.map_err(|e| call.fail(e))?;
        let policy = tags.tags().and_then(QueuePolicy::from_tags);
        Ok(Queue { url, arn, policy })
    }

    /// Creates the queue of `inbox` if there is none; with `target` (its policy and its
    /// dead-letter queue's ARN), also sets its redrive policy, tags and access policy.
    pub(super) async fn ensure_queue(
        &self,
        inbox: &str,
        target: Option<(&QueuePolicy, &str)>,
    ) -> Result<Queue, BusError> {
        let name = self.queue_name(inbox);
        check_queue_name(&name)?;
        let mut queue = match self.queue(inbox).await {
            Ok(q) => q,
            Err(BusError::UnknownInbox(_)) => {
                let call = Call::sqs("CreateQueue", &name);
                let out = self.sqs.create_queue().queue_name(&name).send().await.map_err(|e| call.fail(e))?;
                let url = out.queue_url().map(str::to_owned).ok_or_else(|| call.odd("no QueueUrl"))?;
                self.describe_queue(&name, url).await?
            }
            Err(e) => return Err(e),
        };
        // EventBridge may send to the queue: its target's rule, or (a dead-letter queue) any
        // rule of this bus.
        let source = match target {
            Some((policy, _)) => policy.rule_arn.clone(),
            None => self.rule_arn("*"),
        };
        let mut attributes = HashMap::from([(QueueAttributeName::Policy, access_policy(&queue.arn, &source))]);
        if let Some((policy, dead_letter_arn)) = target {
            let redrive = serde_json::json!({
                "deadLetterTargetArn": dead_letter_arn,
                // SQS's backstop for a consumer that never settles (crashed, or its
                // visibility ran out): nack dead-letters with the reason before that.
                "maxReceiveCount": policy.max_attempts.clamp(1, 1000),
            });
            attributes.insert(QueueAttributeName::RedrivePolicy, redrive.to_string());
            let call = Call::sqs("TagQueue", &name);
            let tagged = self.sqs.tag_queue().queue_url(&queue.url).set_tags(Some(policy.tags())).send().await;
            tagged.map_err(|e| call.fail(e))?;
            queue.policy = Some(policy.clone());
        }
        let call = Call::sqs("SetQueueAttributes", &name);
        let set = self.sqs.set_queue_attributes().queue_url(&queue.url).set_attributes(Some(attributes)).send().await;
        set.map_err(|e| call.fail(e))?;
        self.cached().insert(inbox.to_owned(), queue.clone());
        Ok(queue)
    }

    pub(super) async fn delete(&self, queue: &Queue, inbox: &str, receipt: &Receipt) -> Result<(), BusError> {
        self.in_flight().remove(&receipt.0);
        let call = Call::sqs("DeleteMessage", inbox);
        let deleted = self.sqs.delete_message().queue_url(&queue.url).receipt_handle(&receipt.0).send().await;
        deleted.map(drop).map_err(|e| receipt_error(&call, inbox, receipt, e))
    }

    async fn hide(&self, queue: &Queue, inbox: &str, receipt: &Receipt, timeout: Duration) -> Result<(), BusError> {
        let call = Call::sqs("ChangeMessageVisibility", inbox);
        let changed = self
            .sqs
            .change_message_visibility()
            .queue_url(&queue.url)
            .receipt_handle(&receipt.0)
            .visibility_timeout(seconds(timeout.min(MAX_VISIBILITY)))
            .send()
            .await;
        changed.map(drop).map_err(|e| receipt_error(&call, inbox, receipt, e))
    }

    /// Sends the message to the dead-letter inbox with EventBridge's reason attributes, then
    /// deletes it here: a crash in between leaves it in both (at least once).
    async fn dead_letter(
        &self,
        queue: &Queue,
        inbox: &str,
        receipt: &Receipt,
        body: &str,
        dead_letter_inbox: &str,
        reason: &DeadLetter,
    ) -> Result<(), BusError> {
        let dead = self.queue(dead_letter_inbox).await?;
        let text = |v: &str| MessageAttributeValue::builder().data_type("String").string_value(v).build();
        let retries = reason.retry_attempts.to_string();
        let mut attributes = vec![
            ("RULE_ARN", text(&reason.rule_arn)),
            ("TARGET_ARN", text(&reason.target_arn)),
            ("ERROR_CODE", text(&reason.error_code)),
            ("ERROR_MESSAGE", text(&reason.error_message)),
            ("RETRY_ATTEMPTS", text(&retries)),
        ];
        if let Some(c) = reason.exhausted_retry_condition {
            let c = match c {
                ExhaustedCondition::MaximumRetryAttempts => "MaximumRetryAttempts",
                ExhaustedCondition::MaximumEventAgeInSeconds => "MaximumEventAgeInSeconds",
            };
            attributes.push(("EXHAUSTED_RETRY_CONDITION", text(c)));
        }
        let mut send = self.sqs.send_message().queue_url(&dead.url).message_body(body);
        for (name, value) in attributes {
            let value = value.map_err(|e| BusError::Internal(format!("a dead letter's attribute {name}: {e}")))?;
            send = send.message_attributes(name, value);
        }
        let call = Call::sqs("SendMessage", dead_letter_inbox);
        send.send().await.map_err(|e| call.fail(e))?;
        self.delete(queue, inbox, receipt).await
    }
}

#[async_trait]
impl Inboxes for AwsBus {
    async fn create_inbox(&self, name: &str) -> Result<(), BusError> {
        self.ensure_queue(name, None).await.map(drop)
    }

    async fn receive(&self, inbox: &str, options: ReceiveOptions) -> Result<Vec<Message>, BusError> {
        options.validate()?;
        let queue = self.queue(inbox).await?;
        let call = Call::sqs("ReceiveMessage", inbox);
        let out = self
            .sqs
            .receive_message()
            .queue_url(&queue.url)
            .max_number_of_messages(options.max_messages as i32)
            .visibility_timeout(seconds(options.visibility_timeout))
            .wait_time_seconds(seconds(options.wait_time))
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| call.fail(e))?;
        let mut messages = Vec::with_capacity(out.messages().len());
        let now = std::time::Instant::now();
        let mut in_flight = self.in_flight();
        in_flight.retain(|_, m| now.duration_since(m.received) < IN_FLIGHT_FOR);
        for m in out.messages() {
            let (Some(id), Some(receipt)) = (m.message_id(), m.receipt_handle()) else {
                return Err(call.odd("a message without its id or receipt handle"));
            };
            let system = |k: MessageSystemAttributeName| m.attributes().and_then(|a| a.get(&k)).cloned();
            let receive_count =
                system(MessageSystemAttributeName::ApproximateReceiveCount).and_then(|c| c.parse().ok()).unwrap_or(1);
            let sent_ms =
                system(MessageSystemAttributeName::SentTimestamp).and_then(|t| t.parse().ok()).unwrap_or_else(now_ms);
            let dead_letter = m.message_attributes().and_then(dead_letter_of);
            let (rule, target) = match (&dead_letter, &queue.policy) {
                (Some(d), _) => (name_after(&d.rule_arn, '/'), name_after(&d.target_arn, ':')),
                (None, Some(p)) => (p.rule_name().to_owned(), p.target_id.clone()),
                (None, None) => (String::new(), String::new()),
            };
            let body = m.body().unwrap_or_default().to_owned();
            in_flight
                .insert(receipt.to_owned(), InFlight { body: body.clone(), receive_count, sent_ms, received: now });
            messages.push(Message {
                message_id: id.to_owned(),
                receipt: Receipt(receipt.to_owned()),
                body,
                receive_count,
                sent_at: DateTime::from_timestamp_millis(sent_ms).unwrap_or_default(),
                rule,
                target,
                dead_letter,
            });
        }
        Ok(messages)
    }

    async fn ack(&self, inbox: &str, receipt: &Receipt) -> Result<(), BusError> {
        let queue = self.queue(inbox).await?;
        self.delete(&queue, inbox, receipt).await
    }

    async fn ack_batch(&self, inbox: &str, receipts: &[Receipt]) -> Result<Vec<Result<(), BusError>>, BusError> {
        check_batch("ack", receipts.len())?;
        let queue = self.queue(inbox).await?;
        let entries = receipts
            .iter()
            .enumerate()
            .map(|(i, r)| DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(&r.0).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BusError::Internal(format!("a DeleteMessageBatch entry: {e}")))?;
        let call = Call::sqs("DeleteMessageBatch", inbox);
        let out = self
            .sqs
            .delete_message_batch()
            .queue_url(&queue.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| call.fail(e))?;
        let mut answers: Vec<Result<(), BusError>> = vec![Ok(()); receipts.len()];
        for f in out.failed() {
            if let Some(i) = f.id().parse::<usize>().ok().filter(|&i| i < receipts.len()) {
                answers[i] = Err(BusError::InvalidReceipt {
                    inbox: inbox.to_owned(),
                    receipt: receipts[i].0.clone(),
                    reason: format!("{}: {}", f.code(), f.message().unwrap_or_default()),
                });
            }
        }
        let mut in_flight = self.in_flight();
        for (r, a) in receipts.iter().zip(&answers) {
            if a.is_ok() {
                in_flight.remove(&r.0);
            }
        }
        Ok(answers)
    }

    async fn nack(&self, inbox: &str, receipt: &Receipt, failure: Failure) -> Result<NackOutcome, BusError> {
        let queue = self.queue(inbox).await?;
        let held = self.in_flight().get(&receipt.0).cloned();
        let now = now_ms();
        let mut rng = fastrand::Rng::new();
        let (Some(policy), Some(held)) = (&queue.policy, held) else {
            // A dead-letter queue's message (retried, never dead-lettered again), or one this
            // process did not receive: back off; the queue's redrive policy is the backstop.
            let attempts = self.in_flight().get(&receipt.0).map_or(1, |m| m.receive_count);
            let at = now + retry::dead_letter_backoff(attempts, &mut rng);
            self.hide(&queue, inbox, receipt, Duration::from_millis((at - now).max(0) as u64)).await?;
            return Ok(NackOutcome::RetryAt(DateTime::from_timestamp_millis(at).unwrap_or_default()));
        };
        let stored = policy.stored(&queue.arn);
        match retry::after_failure(&stored, held.receive_count, held.sent_ms, now, failure.retryable, &mut rng) {
            Next::RetryAt(at) => {
                self.hide(&queue, inbox, receipt, Duration::from_millis((at - now).max(0) as u64)).await?;
                self.in_flight().remove(&receipt.0);
                Ok(NackOutcome::RetryAt(DateTime::from_timestamp_millis(at).unwrap_or_default()))
            }
            Next::DeadLetter(condition) => {
                let reason = DeadLetter {
                    rule_arn: stored.rule_arn,
                    target_arn: stored.target_arn,
                    error_code: failure.code,
                    error_message: failure.message,
                    exhausted_retry_condition: condition,
                    retry_attempts: held.receive_count.saturating_sub(1),
                };
                let dead = stored.dead_letter_inbox;
                self.dead_letter(&queue, inbox, receipt, &held.body, &dead, &reason).await?;
                Ok(NackOutcome::DeadLettered { inbox: dead })
            }
        }
    }

    fn adopt(&self, _inbox: &str, message: &Message) {
        let held = InFlight {
            body: message.body.clone(),
            receive_count: message.receive_count,
            sent_ms: message.sent_at.timestamp_millis(),
            received: std::time::Instant::now(),
        };
        self.in_flight().insert(message.receipt.0.clone(), held);
    }

    async fn extend_visibility(&self, inbox: &str, receipt: &Receipt, timeout: Duration) -> Result<(), BusError> {
        if timeout > MAX_VISIBILITY {
            return Err(BusError::invalid(
                "VisibilityTimeout",
                format!("{timeout:?} is longer than {MAX_VISIBILITY:?}"),
            ));
        }
        let queue = self.queue(inbox).await?;
        self.hide(&queue, inbox, receipt, timeout).await
    }

    async fn list_inboxes(&self) -> Result<Vec<InboxSummary>, BusError> {
        let call = Call::sqs("ListQueues", &self.queue_prefix);
        let mut urls = Vec::new();
        let mut token = None;
        loop {
            let mut list = self.sqs.list_queues().set_next_token(token);
            if !self.queue_prefix.is_empty() {
                list = list.queue_name_prefix(&self.queue_prefix);
            }
            let out = list.send().await.map_err(|e| call.fail(e))?;
            urls.extend(out.queue_urls().iter().cloned());
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        let mut inboxes = Vec::with_capacity(urls.len());
        for url in urls {
            let name = url.rsplit('/').next().unwrap_or_default().to_owned();
            let call = Call::sqs("GetQueueAttributes", &name);
            let out = self
                .sqs
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
                .send()
                .await;
            let out = match out {
                Ok(out) => out,
                // Deleted since it was listed.
                Err(e) if errors::code(&e).is_some_and(|c| MISSING.contains(&c)) => continue,
                Err(e) => return Err(call.fail(e)),
            };
            let count = |k: QueueAttributeName| {
                out.attributes().and_then(|a| a.get(&k)).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            };
            inboxes.push(InboxSummary {
                name: self.inbox_of(&name).to_owned(),
                visible: count(QueueAttributeName::ApproximateNumberOfMessages),
                hidden: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                    + count(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
                // SQS says how old its oldest message is only through CloudWatch.
                oldest: None,
            });
        }
        inboxes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(inboxes)
    }

    async fn peek(&self, inbox: &str, after: Option<&str>, limit: u32) -> Result<Vec<Message>, BusError> {
        self.peek_queue(inbox, after, limit).await
    }

    async fn redrive(&self, dead_letter_inbox: &str, message_ids: &[String]) -> Result<Vec<Redriven>, BusError> {
        self.redrive_queue(dead_letter_inbox, message_ids).await
    }

    async fn delete_messages(&self, inbox: &str, message_ids: &[String]) -> Result<u64, BusError> {
        self.delete_from_queue(inbox, message_ids).await
    }
}

/// The reason EventBridge (or a nack here) put on a dead letter, from its attributes.
fn dead_letter_of(attributes: &HashMap<String, MessageAttributeValue>) -> Option<DeadLetter> {
    let text = |k: &str| attributes.get(k).and_then(|v| v.string_value()).map(str::to_owned);
    let condition = match text("EXHAUSTED_RETRY_CONDITION").as_deref() {
        Some("MaximumRetryAttempts") => Some(ExhaustedCondition::MaximumRetryAttempts),
        Some("MaximumEventAgeInSeconds") => Some(ExhaustedCondition::MaximumEventAgeInSeconds),
        _ => None,
    };
    Some(DeadLetter {
        error_code: text("ERROR_CODE")?,
        rule_arn: text("RULE_ARN").unwrap_or_default(),
        target_arn: text("TARGET_ARN").unwrap_or_default(),
        error_message: text("ERROR_MESSAGE").unwrap_or_default(),
        exhausted_retry_condition: condition,
        retry_attempts: text("RETRY_ATTEMPTS").and_then(|n| n.parse().ok()).unwrap_or(0),
    })
}

fn name_after(arn: &str, separator: char) -> String {
    arn.rsplit(separator).next().unwrap_or_default().to_owned()
}

/// Lets EventBridge send to `queue` from rules matching `source` (an ARN, `*` allowed).
fn access_policy(queue: &str, source: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "choreo-eventbridge",
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue,
            "Condition": {"ArnLike": {"aws:SourceArn": source}},
        }],
    })
    .to_string()
}

/// SQS's rule for a queue's name: 1 to 80 of `[A-Za-z0-9_-]`.
fn check_queue_name(name: &str) -> Result<(), BusError> {
    let fine = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if name.is_empty() || name.len() > 80 || !name.chars().all(fine) {
        return Err(BusError::invalid(
            "QueueName",
            format!("`{name}` is not a queue name: 1 to 80 characters of letters, digits, `-` and `_`"),
        ));
    }
    Ok(())
}

fn receipt_error<E: errors::ServiceError>(
    call: &Call<'_>,
    inbox: &str,
    receipt: &Receipt,
    e: errors::Failed<E>,
) -> BusError {
    match errors::code(&e) {
        Some(code @ ("ReceiptHandleIsInvalid" | "InvalidParameterValue" | "MessageNotInflight")) => {
            BusError::InvalidReceipt {
                inbox: inbox.to_owned(),
                receipt: receipt.0.clone(),
                reason: format!("{code}: {}", errors::message(&e).unwrap_or("")),
            }
        }
        Some(c) if MISSING.contains(&c) => BusError::UnknownInbox(inbox.to_owned()),
        _ => call.fail(e),
    }
}
