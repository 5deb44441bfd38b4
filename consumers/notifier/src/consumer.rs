//! The consumer loop on the inbox `notifier`: receive (long polling), write each event's
//! notification durably (one transaction per batch, batches committed in the inbox's order),
//! then acknowledge; the next batch is received while one is written and acknowledged.
//! Events for no customer are acknowledged and skipped; a message that is not an EventBridge
//! event carrying a CloudEvent is dead-lettered with the reason, never dropped silently.

use std::sync::Arc;
use std::time::Duration;

use choreo_bus::Inboxes;
use choreo_bus::api::{Failure, Message, ReceiveOptions};
use choreo_schemas::Envelope;
use futures_util::future::join_all;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::store::{Answer, Pending};
use crate::{INBOX, Notifier, NotifierError};

/// How long a received message stays hidden before it comes back (written and acknowledged
/// well within it).
const VISIBILITY: Duration = Duration::from_secs(30);
/// How long one receive waits for a message; also the longest a shutdown waits for it.
const WAIT: Duration = Duration::from_secs(1);
/// Batches whose acknowledgements may be in flight while the next one is received.
const SETTLING: usize = 8;

/// The running consumer loop of the notifier.
pub struct Consumer {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("stopping", &*self.stop.borrow()).finish_non_exhaustive()
    }
}

impl Consumer {
    pub(crate) fn spawn(notifier: Arc<Notifier>, inboxes: Arc<dyn Inboxes>) -> Consumer {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(consume(notifier, inboxes, stopped));
        Consumer { stop, task }
    }

    /// Stops receiving; what was received is written and settled first. Messages it could not
    /// settle return to the inbox when their visibility timeout runs out.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "notifier: the consumer loop ended abnormally");
        }
    }
}

async fn consume(notifier: Arc<Notifier>, inboxes: Arc<dyn Inboxes>, mut stop: watch::Receiver<bool>) {
    let options = ReceiveOptions { max_messages: 10, visibility_timeout: VISIBILITY, wait_time: WAIT };
    let slots = Arc::new(Semaphore::new(SETTLING));
    let mut settling = JoinSet::new();
    while !*stop.borrow_and_update() {
        // Not raced against the stop: a receive cut short could hide messages until their
        // visibility runs out. It waits at most `WAIT`, and what it brings is handled.
        let messages = match inboxes.receive(INBOX, options).await {
            Ok(messages) => messages,
            Err(e) => {
                tracing::warn!(inbox = INBOX, error = %e, "notifier: receive failed; backing off");
                tokio::select! {
                    _ = stop.changed() => {}
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        // The batch's insert is queued now, so batches commit in the inbox's order; its
        // answer is awaited, and the messages settled, while the next batch is received.
        let batch = prepare(&notifier, messages);
        let Ok(permit) = slots.clone().acquire_owned().await else { break };
        let inboxes = inboxes.clone();
        settling.spawn(async move {
            let settle = batch.written().await;
            join_all(settle.into_iter().map(|(message, outcome)| settle_one(inboxes.as_ref(), message, outcome))).await;
            drop(permit);
        });
        while settling.try_join_next().is_some() {}
    }
    while settling.join_next().await.is_some() {}
}

/// What to do with a received message once its batch is written.
enum Outcome {
    Ack,
    Nack(Failure),
}

/// A received batch: what to settle at once, and the messages whose notifications are being
/// written.
struct Batch {
    settle: Vec<(Message, Outcome)>,
    written: Vec<(Message, String)>,
    insert: Option<Result<Answer<Vec<Option<u64>>>, NotifierError>>,
}

/// Reads the batch's events and queues their notifications in one transaction.
fn prepare(notifier: &Notifier, messages: Vec<Message>) -> Batch {
    let mut settle = Vec::with_capacity(messages.len());
    let mut written = Vec::new();
    let mut pending = Vec::new();
    for message in messages {
        let envelope = match read(&message) {
            Ok(envelope) => envelope,
            Err(reason) => {
                tracing::warn!(message = %message.message_id, reason, "notifier: malformed message; dead-lettering it");
                let failure =
                    Failure::permanent("MALFORMED_EVENT", format!("message {}: {reason}", message.message_id));
                settle.push((message, Outcome::Nack(failure)));
                continue;
            }
        };
        match Pending::of(&envelope) {
            Some(p) => {
                pending.push(p);
                written.push((message, envelope.id().to_owned()));
            }
            None => {
                tracing::info!(
                    event = envelope.id(),
                    event_type = envelope.event_type(),
                    "notifier: not for a customer (no authtype app_user with an authid); skipped"
                );
                settle.push((message, Outcome::Ack));
            }
        }
    }
    let insert = (!pending.is_empty()).then(|| notifier.queue_insert(pending));
    Batch { settle, written, insert }
}

impl Batch {
    /// Waits for the batch's notifications to be committed; answers how to settle each message.
    async fn written(self) -> Vec<(Message, Outcome)> {
        let Batch { mut settle, written, insert } = self;
        let result = match insert {
            None => return settle,
            Some(Ok(answer)) => answer.await,
            Some(Err(e)) => Err(e),
        };
        match result {
            Ok(seqs) => {
                for ((message, event), seq) in written.into_iter().zip(seqs) {
                    match seq {
                        Some(seq) => tracing::debug!(event, seq, "notifier: notification written"),
                        None => tracing::debug!(event, "notifier: already notified; duplicate skipped"),
                    }
                    settle.push((message, Outcome::Ack));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "notifier: cannot write notifications; they will be retried");
                for (message, _) in written {
                    settle.push((message, Outcome::Nack(Failure::retryable("STORE", e.to_string()))));
                }
            }
        }
        settle
    }
}

/// The CloudEvent of a delivered EventBridge event, or why there is none.
fn read(message: &Message) -> Result<Envelope, String> {
    let delivered = message.event().map_err(|e| format!("not an EventBridge event: {e}"))?;
    delivered.into_delivery().map(|d| d.envelope).map_err(|e| e.to_string())
}

async fn settle_one(inboxes: &dyn Inboxes, message: Message, outcome: Outcome) {
    let result = match outcome {
        Outcome::Ack => inboxes.ack(INBOX, &message.receipt).await,
        Outcome::Nack(failure) => inboxes.nack(INBOX, &message.receipt, failure).await.map(|_| ()),
    };
    if let Err(e) = result {
        // The message comes back after its visibility timeout, and is deduped then.
        tracing::warn!(message = %message.message_id, error = %e, "notifier: settling a message failed");
    }
}
