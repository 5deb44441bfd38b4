//! The consumer loop of one agent: receive from its inbox, dedupe by CloudEvent `id`, run the
//! agent, then ack (done), nack retryable (retried with backoff) or nack permanent (dead
//! letter with the reason). A panic fails that event, never the process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use choreo_bus::Inboxes;
use choreo_bus::api::{Failure, Message, ReceiveOptions};
use choreo_schemas::Envelope;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::manifest::Agent;
use crate::observe::{PublishedTrace, StepContext, StepKind};
use crate::runner::{self, RunError, Services};
use crate::store::NoteKind;

/// How long a received event stays hidden while the agent works; extended while it runs.
const VISIBILITY: Duration = Duration::from_secs(60);
/// How long one receive waits for an event (long polling).
const WAIT: Duration = Duration::from_secs(2);
/// Most events one receive brings (SQS's limit).
const MAX_RECEIVE: u32 = 10;

/// Consumes `agent`'s inbox until `shutdown` turns true; events in flight then finish.
pub async fn consume(
    services: Arc<Services>,
    inboxes: Arc<dyn Inboxes>,
    agent: Arc<Agent>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Events in flight: the model slots (taken by the runs that call the model) and one
    // receive's worth more, so that events answered without the model pass the runs that wait.
    let slots = Arc::new(Semaphore::new(agent.manifest.concurrency + MAX_RECEIVE as usize));
    let mut running = JoinSet::new();
    let inbox = agent.inbox();
    while !*shutdown.borrow() {
        // Receive only as many events as there are free slots, so none waits hidden.
        let first = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let free = (slots.available_permits() + 1).min(MAX_RECEIVE as usize) as u32;
        let options = ReceiveOptions { max_messages: free, visibility_timeout: VISIBILITY, wait_time: WAIT };
        // Not raced against shutdown: a receive cut short could hide events until their
        // visibility runs out. It waits at most `WAIT`, and what it brings is handled.
        let messages = match inboxes.receive(&inbox, options).await {
            Ok(messages) => messages,
            Err(e) => {
                tracing::warn!(agent = agent.name(), error = %e, "receive failed; backing off");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut first = Some(first);
        for message in messages {
            let permit = match first.take() {
                Some(p) => p,
                None => match slots.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let (services, inboxes, agent) = (services.clone(), inboxes.clone(), agent.clone());
            running.spawn(async move {
                handle(&services, inboxes.as_ref(), &agent, message).await;
                drop(permit);
            });
        }
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}

/// Handles one message to its end: it is always acked or nacked (or, if this process dies,
/// redelivered after its visibility timeout).
pub async fn handle(services: &Arc<Services>, inboxes: &dyn Inboxes, agent: &Arc<Agent>, message: Message) {
    let inbox = agent.inbox();
    let (envelope, replay_name) = match message
        .event()
        .map_err(|e| e.to_string())
        .and_then(|d| d.to_delivery().map(|d| (d.envelope, d.meta.replay_name)).map_err(|e| e.to_string()))
    {
        Ok(delivered) => delivered,
        Err(reason) => {
            // Not a CloudEvent in EventBridge's shape: no retry can fix it.
            let failure = Failure::permanent("MALFORMED_EVENT", format!("message {}: {reason}", message.message_id));
            settle_nack(inboxes, &inbox, &message, failure).await;
            return;
        }
    };
    if choreo_schemas::catalog::lookup(envelope.event_type()).is_some()
        && let Err(e) = choreo_schemas::catalog::validate_envelope(&envelope)
    {
        // Data that breaks its event's schema: no retry can fix it; the reason goes with it.
        let failure = Failure::permanent("MALFORMED_EVENT", format!("event {}: {e}", envelope.id()));
        settle_nack(inboxes, &inbox, &message, failure).await;
        return;
    }
    let correlation = envelope.correlation_id().unwrap_or(envelope.id()).to_owned();
    let step = |kind| services.observer.emit(&correlation, agent.name(), envelope.id(), kind);
    // The trace context goes with the receipt: the journal's spans hang under the event's
    // `traceparent`, and a replayed event's run is marked with its replay.
    services.observer.emit_with(
        &correlation,
        agent.name(),
        envelope.id(),
        StepKind::Received { event_type: envelope.event_type().to_owned(), receive_count: message.receive_count },
        StepContext { traceparent: envelope.traceparent().map(str::to_owned), replay_name, published: Vec::new() },
    );
    match services.store.is_processed(agent.name(), envelope.id()) {
        Ok(true) => {
            step(StepKind::Duplicate);
            settle_ack(inboxes, &inbox, &message).await;
            return;
        }
        Ok(false) => {}
        Err(e) => {
            settle_nack(inboxes, &inbox, &message, Failure::retryable("STORE", e.to_string())).await;
            return;
        }
    }
    let started = Instant::now();
    let result = run_guarded(services.clone(), inboxes, &inbox, agent.clone(), &message, envelope.clone()).await;
    match result {
        Ok((outcome, model_time)) => {
            if let Err(e) = services.store.mark_processed(agent.name(), envelope.id(), &correlation, outcome.label()) {
                settle_nack(inboxes, &inbox, &message, Failure::retryable("STORE", e.to_string())).await;
                return;
            }
            let done = StepKind::Done { elapsed: started.elapsed(), model_time };
            let published = published_traces(&outcome);
            if published.is_empty() {
                step(done);
            } else {
                let context = StepContext { published, ..StepContext::default() };
                services.observer.emit_with(&correlation, agent.name(), envelope.id(), done, context);
            }
            settle_ack(inboxes, &inbox, &message).await;
        }
        Err(e) => {
            if !e.retryable {
                let detail = format!("{}: {}", e.code, e.message);
                let _ = services.store.note(&correlation, envelope.id(), agent.name(), NoteKind::Failed, &detail);
            }
            let failure = Failure { code: e.code.clone(), message: e.message.clone(), retryable: e.retryable };
            settle_nack(inboxes, &inbox, &message, failure).await;
            // Reported once the bus has the failure, so a watcher sees the retry scheduled.
            step(StepKind::Failed { code: e.code, message: e.message, retryable: e.retryable });
        }
    }
}

/// Runs the agent in its own task, so that a panic is caught as that event's failure, and
/// keeps the message hidden while it runs.
async fn run_guarded(
    services: Arc<Services>,
    inboxes: &dyn Inboxes,
    inbox: &str,
    agent: Arc<Agent>,
    message: &Message,
    envelope: Envelope,
) -> Result<(runner::Outcome, Duration), RunError> {
    let mut task = tokio::spawn(async move { runner::run(&services, &agent, &envelope).await });
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + VISIBILITY / 3, VISIBILITY / 3);
    loop {
        tokio::select! {
            joined = &mut task => {
                return match joined {
                    Ok(result) => result,
                    Err(e) if e.is_panic() => Err(RunError::permanent("AGENT_PANIC", panic_message(e.into_panic()))),
                    Err(e) => Err(RunError::retryable("AGENT_CANCELLED", e.to_string())),
                };
            }
            _ = heartbeat.tick() => {
                // Failing to extend only risks a redelivery, which is deduped.
                let _ = inboxes.extend_visibility(inbox, &message.receipt, VISIBILITY).await;
            }
        }
    }
}

/// The events a run published, with their `traceparent` (for the spans of the publications).
fn published_traces(outcome: &runner::Outcome) -> Vec<PublishedTrace> {
    let published: Vec<&Envelope> = match outcome {
        runner::Outcome::Completed(events) => events.iter().collect(),
        runner::Outcome::Escalated(Some(event)) => vec![event.as_ref()],
        runner::Outcome::Escalated(None) | runner::Outcome::NoCompletion(_) => Vec::new(),
    };
    published
        .into_iter()
        .filter_map(|e| Some(PublishedTrace { id: e.id().to_owned(), traceparent: e.traceparent()?.to_owned() }))
        .collect()
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".to_owned());
    format!("the agent panicked: {text}")
}

async fn settle_ack(inboxes: &dyn Inboxes, inbox: &str, message: &Message) {
    if let Err(e) = inboxes.ack(inbox, &message.receipt).await {
        // The message comes back after its visibility timeout and is deduped then.
        tracing::warn!(inbox, message = %message.message_id, error = %e, "ack failed");
    }
}

async fn settle_nack(inboxes: &dyn Inboxes, inbox: &str, message: &Message, failure: Failure) {
    if let Err(e) = inboxes.nack(inbox, &message.receipt, failure).await {
        // The message comes back after its visibility timeout: nothing is lost.
        tracing::warn!(inbox, message = %message.message_id, error = %e, "nack failed");
    }
}
