//! The consumer loop of one agent: receive from its inbox, dedupe by CloudEvent `id`, run the
//! agent, then ack (done), nack retryable (retried with backoff) or nack permanent (dead
//! letter with the reason). A panic fails that event, never the process.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use choreo_bus::Inboxes;
use choreo_bus::api::{Failure, MAX_RECEIVE, Message, ReceiveOptions};
use choreo_schemas::Envelope;

use futures_util::FutureExt;
use futures_util::future::join_all;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::manifest::Agent;
use crate::observe::{PublishedTrace, StepContext, StepKind};
use crate::runner::{self, RunError, Services};
use crate::store::{Finished, NoteKind, PriorRun, StoreError};

/// How long a received event stays hidden while the agent works; extended while it runs.
const VISIBILITY: Duration = Duration::from_secs(60);
/// How long one receive waits for an event (long polling).
const WAIT: Duration = Duration::from_secs(2);

/// Receives running at once per agent, like the pollers of Lambda's SQS event source: at least
/// [`MIN_POLLERS`] (while one waits on the bus, the other's messages are handled); one more each
/// time a receive comes back full, up to [`MAX_POLLERS`]; one fewer each time one comes back
/// empty. A backlog is drained by many receives at once; a quiet inbox costs two long polls.
const MIN_POLLERS: usize = 2;
const MAX_POLLERS: usize = 8;
/// Full receives per poller that may be in flight past the model slots: handled, or waiting to
/// be settled, while the next ones are received.
const RECEIVES_AHEAD: usize = 8;

/// A handled message on its way to be settled, with the slot it holds until then.
struct Handled {
    message: Message,
    verdict: Verdict,
    slot: OwnedSemaphorePermit,
}

/// What becomes of a message once handled.
pub(crate) enum Verdict {
    /// Acknowledged, after recording the run (none for a duplicate).
    Ack(Option<Finish>),
    /// Retried or dead-lettered; the step is reported once the bus has the failure.
    Nack(Failure, Option<Report>),
}

/// A run to record as processed, and its `Done` step, reported once it is.
pub(crate) struct Finish {
    outcome: &'static str,
    answered: Vec<String>,
    done: Report,
}

/// A step to report, with the ids it belongs to.
pub(crate) struct Report {
    correlation_id: String,
    event_id: String,
    kind: StepKind,
    context: StepContext,
}

/// Consumes `agent`'s inbox until `shutdown` turns true; events in flight then finish.
///
/// Pollers receive and hand each message to a task of its own; what the tasks decide goes to
/// one settler, which records the runs that ended at once (one transaction of the store) and
/// acknowledges at once what it may (`ack_batch`): a hundred events settle in a few trips.
pub async fn consume(
    services: Arc<Services>,
    inboxes: Arc<dyn Inboxes>,
    agent: Arc<Agent>,
    shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(max_in_flight(&agent)));
    let (settle_tx, settle_rx) = mpsc::unbounded_channel();
    let settler = tokio::spawn(settler(services.clone(), inboxes.clone(), agent.clone(), settle_rx));
    let (grow_tx, mut grow_rx) = mpsc::unbounded_channel();
    let poller = Poller {
        handles: Handles { services, inboxes, agent },
        slots,
        settle: settle_tx,
        grow: grow_tx,
        active: Arc::new(AtomicUsize::new(0)),
        shutdown,
    };
    let mut pollers = JoinSet::new();
    for _ in 0..MIN_POLLERS {
        poller.active.fetch_add(1, Ordering::AcqRel);
        pollers.spawn(poll(poller.clone()));
    }
    loop {
        tokio::select! {
            Some(()) = grow_rx.recv() => {
                // Counted when asked for (`Poller::grow`), so that full receives at once never
                // start more than `MAX_POLLERS`.
                pollers.spawn(poll(poller.clone()));
            }
            joined = pollers.join_next() => if joined.is_none() { break },
        }
    }
    drop(poller);
    // Every handler has sent its verdict (the pollers wait for theirs): the settler ends
    // once it has settled them.
    let _ = settler.await;
}

/// Events of `agent` in flight at most, from their receipt until they are settled: its model
/// slots (taken by the runs that call the model), and [`RECEIVES_AHEAD`] full receives for each
/// poller there may be, so that events answered without the model (duplicates, runs answered
/// from the ledger) pass the runs that wait for a slot, and the bus is never waited on.
pub fn max_in_flight(agent: &Agent) -> usize {
    agent.manifest.concurrency + MAX_POLLERS * RECEIVES_AHEAD * MAX_RECEIVE as usize
}

#[derive(Clone)]
struct Handles {
    services: Arc<Services>,
    inboxes: Arc<dyn Inboxes>,
    agent: Arc<Agent>,
}

/// What each poller of an agent holds.
#[derive(Clone)]
struct Poller {
    handles: Handles,
    slots: Arc<Semaphore>,
    settle: mpsc::UnboundedSender<Handled>,
    /// Asks [`consume`] for one more poller.
    grow: mpsc::UnboundedSender<()>,
    /// Pollers running, and those asked for.
    active: Arc<AtomicUsize>,
    shutdown: watch::Receiver<bool>,
}

impl Poller {
    /// After a full receive: one more poller, unless there are [`MAX_POLLERS`].
    fn grow(&self) {
        let more =
            self.active.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < MAX_POLLERS).then_some(n + 1));
        if more.is_ok() && self.grow.send(()).is_err() {
            self.active.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// After an empty receive: whether this poller ends, leaving at least [`MIN_POLLERS`].
    fn shrink(&self) -> bool {
        self.active.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n > MIN_POLLERS).then_some(n - 1)).is_ok()
    }
}

/// One receive loop: it receives only when it can take a full receive, so that each trip to
/// the bus brings as many events as it may (one at a time would make the bus the limit).
async fn poll(poller: Poller) {
    let Poller { handles, slots, settle, mut shutdown, .. } = poller.clone();
    let mut running = JoinSet::new();
    let inbox = handles.agent.inbox();
    while !*shutdown.borrow() {
        let mut permits = tokio::select! {
            permits = slots.clone().acquire_many_owned(MAX_RECEIVE) => match permits { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let options = ReceiveOptions { max_messages: MAX_RECEIVE, visibility_timeout: VISIBILITY, wait_time: WAIT };
        // Not raced against shutdown: a receive cut short could hide events until their
        // visibility runs out. It waits at most `WAIT`, and what it brings is handled.
        let messages = match handles.inboxes.receive(&inbox, options).await {
            Ok(messages) => messages,
            Err(e) => {
                tracing::warn!(agent = handles.agent.name(), error = %e, "receive failed; backing off");
                drop(permits);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let received = messages.len();
        let Handles { services, agent, .. } = &handles;
        // Each event admitted (or refused at once), then the dedupe and prior-run reads of all
        // those no other run holds, in one read transaction.
        let mut admitted = Vec::with_capacity(received);
        for message in messages {
            // One slot per event, held until it is settled; the unused ones go back below.
            let Some(slot) = permits.split(1) else { break };
            match admit(services, agent, &message) {
                // The settler ends only after every sender is gone: it is there.
                Err(failure) => drop(settle.send(Handled { message, verdict: Verdict::Nack(failure, None), slot })),
                Ok(event) => {
                    let alone = agent.in_progress.enter_now(event.envelope.id());
                    admitted.push((message, slot, event, alone));
                }
            }
        }
        drop(permits);
        let free: Vec<&Envelope> =
            admitted.iter().filter(|(.., alone)| alone.is_some()).map(|(_, _, event, _)| &event.envelope).collect();
        let mut reads = match services.store.unless_processed_all(agent.name(), &free) {
            Ok(priors) => priors.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => free.iter().map(|_| Err(e.clone())).collect(),
        }
        .into_iter();
        for (message, slot, event, alone) in admitted {
            // One read per event held (`unless_processed_all` answers each).
            let read = alone.and_then(|alone| Some((alone, reads.next()?)));
            let (handles, settle) = (handles.clone(), settle.clone());
            running.spawn(async move {
                let Handles { services, inboxes, agent } = &handles;
                let verdict = match read {
                    Some((alone, read)) => {
                        decide(services, inboxes.as_ref(), agent, &message, event, alone, read).await
                    }
                    // Another run holds this event: this one waits for it.
                    None => wait_then_decide(services, inboxes.as_ref(), agent, &message, event).await,
                };
                let _ = settle.send(Handled { message, verdict, slot });
            });
        }
        while running.try_join_next().is_some() {}
        if received == MAX_RECEIVE as usize {
            poller.grow();
        } else if received == 0 && poller.shrink() {
            break;
        }
    }
    while running.join_next().await.is_some() {}
}

/// The CloudEvent ids an agent's runs are on, each with a lock that a run holds from its
/// dedupe to its end: deliveries of one event run one after the other in this process.
#[derive(Debug, Default)]
pub(crate) struct InProgress(Arc<std::sync::Mutex<Runs>>);

type Runs = HashMap<Arc<str>, Arc<tokio::sync::Mutex<()>>>;

impl InProgress {
    /// Waits until no other run of this agent is on `event_id`, then holds it until dropped.
    async fn enter(&self, event_id: &str) -> Alone {
        let (event_id, lock) = self.lock_of(event_id);
        let held = lock.lock_owned().await;
        Alone { runs: self.0.clone(), event_id, held: Some(held) }
    }

    /// Holds `event_id` if no other run of this agent is on it, without waiting.
    fn enter_now(&self, event_id: &str) -> Option<Alone> {
        let (event_id, lock) = self.lock_of(event_id);
        let held = lock.try_lock_owned().ok()?;
        Some(Alone { runs: self.0.clone(), event_id, held: Some(held) })
    }

    /// The event's lock (made if there is none), and the id it is kept under.
    fn lock_of(&self, event_id: &str) -> (Arc<str>, Arc<tokio::sync::Mutex<()>>) {
        let mut runs = lock(&self.0);
        match runs.get_key_value(event_id) {
            Some((id, lock)) => (id.clone(), lock.clone()),
            None => {
                let (id, lock): (Arc<str>, _) = (event_id.into(), Arc::default());
                runs.insert(id.clone(), Arc::clone(&lock));
                (id, lock)
            }
        }
    }
}

fn lock(runs: &std::sync::Mutex<Runs>) -> std::sync::MutexGuard<'_, Runs> {
    runs.lock().unwrap_or_else(|p| p.into_inner())
}

/// A run's hold on its event (see [`InProgress::enter`]).
struct Alone {
    runs: Arc<std::sync::Mutex<Runs>>,
    event_id: Arc<str>,
    held: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Alone {
    fn drop(&mut self) {
        drop(self.held.take());
        let mut map = lock(&self.runs);
        // Gone once nobody holds or waits for it (the map's is the only reference left).
        if map.get(&*self.event_id).is_some_and(|lock| Arc::strong_count(lock) == 1) {
            map.remove(&self.event_id);
        }
    }
}

/// Settles what the handlers decided, all that waits at once, until every handler is gone.
/// The runs are recorded here, one batch after the other (one transaction each); their
/// acknowledgements go on in tasks of their own, so that the next batch is recorded while the
/// bus commits the last one's: the bus's latency bounds no batch's throughput. Under load (the
/// last batch held a full receive or more), a batch waits up to [`SETTLE_LINGER`] to fill:
/// fewer, larger transactions, each writing the store's pages once for many events.
async fn settler(
    services: Arc<Services>,
    inboxes: Arc<dyn Inboxes>,
    agent: Arc<Agent>,
    mut handled: mpsc::UnboundedReceiver<Handled>,
) {
    let mut batch = Vec::new();
    let mut delivering = JoinSet::new();
    let mut loaded = false;
    while handled.recv_many(&mut batch, SETTLE_MAX).await > 0 {
        if loaded {
            let deadline = tokio::time::Instant::now() + SETTLE_LINGER;
            while batch.len() < SETTLE_MAX {
                let room = SETTLE_MAX - batch.len();
                tokio::select! {
                    n = handled.recv_many(&mut batch, room) => if n == 0 { break },
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
        loaded = batch.len() >= MAX_RECEIVE as usize;
        let (verdicts, slots): (Vec<_>, Vec<_>) = batch.drain(..).map(|h| ((h.message, h.verdict), h.slot)).unzip();
        let settled = record(&services, &agent, verdicts);
        let (services, inboxes, agent) = (services.clone(), inboxes.clone(), agent.clone());
        delivering.spawn(async move {
            deliver(&services, inboxes.as_ref(), &agent, settled).await;
            // The slots go back once the bus has the answers: that bounds what is in flight.
            drop(slots);
        });
        while delivering.try_join_next().is_some() {}
    }
    while delivering.join_next().await.is_some() {}
}

/// Most messages settled together.
const SETTLE_MAX: usize = 256;
/// How long a batch waits to fill under load.
const SETTLE_LINGER: Duration = Duration::from_millis(5);

/// Handles one message to its end: it is always acked or nacked (or, if this process dies,
/// redelivered after its visibility timeout).
pub async fn handle(services: &Arc<Services>, inboxes: &dyn Inboxes, agent: &Arc<Agent>, message: Message) {
    let verdict = judge(services, inboxes, agent, &message).await;
    settle(services, inboxes, agent, vec![(message, verdict)]).await;
}

/// Records the runs that ended (one transaction), reports them done, then acknowledges in
/// batches and reports the failures to the bus. A run that cannot be recorded is retried.
async fn settle(services: &Services, inboxes: &dyn Inboxes, agent: &Agent, batch: Vec<(Message, Verdict)>) {
    let settled = record(services, agent, batch);
    deliver(services, inboxes, agent, settled).await;
}

/// What the bus is to be told of a batch: the messages to acknowledge, and the failures
/// (with the step each reports once the bus has it).
pub(crate) struct Settled {
    pub(crate) acks: Vec<Message>,
    pub(crate) nacks: Vec<(Message, Failure, Option<Report>)>,
}

/// Records the runs of `batch` that ended, in one transaction of the store, and reports them
/// done; a run that cannot be recorded is to be retried.
pub(crate) fn record(services: &Services, agent: &Agent, batch: Vec<(Message, Verdict)>) -> Settled {
    let finished: Vec<Finished<'_>> = batch
        .iter()
        .filter_map(|(_, verdict)| match verdict {
            Verdict::Ack(Some(f)) => Some(Finished {
                event_id: &f.done.event_id,
                correlation_id: &f.done.correlation_id,
                outcome: f.outcome,
                answered: &f.answered,
            }),
            _ => None,
        })
        .collect();
    let recorded = services.store.finish(agent.name(), &finished).map_err(|e| e.to_string());
    drop(finished);
    let mut settled = Settled { acks: Vec::with_capacity(batch.len()), nacks: Vec::new() };
    for (message, verdict) in batch {
        match verdict {
            Verdict::Ack(None) => settled.acks.push(message),
            Verdict::Ack(Some(finish)) => match &recorded {
                Ok(()) => {
                    report(services, agent, finish.done);
                    settled.acks.push(message);
                }
                Err(e) => settled.nacks.push((message, Failure::retryable("STORE", e.clone()), None)),
            },
            Verdict::Nack(failure, step) => settled.nacks.push((message, failure, step)),
        }
    }
    settled
}

/// Acknowledges in batches (`ack_batch`) and reports the failures to the bus, all at once.
async fn deliver(services: &Services, inboxes: &dyn Inboxes, agent: &Agent, settled: Settled) {
    let inbox = agent.inbox();
    let acked = settled.acks.chunks(MAX_RECEIVE as usize).map(|chunk| settle_acks(inboxes, &inbox, chunk));
    let nacked = settled.nacks.into_iter().map(|(message, failure, step)| {
        let inbox = &inbox;
        async move {
            settle_nack(inboxes, inbox, &message, failure).await;
            // Reported once the bus has the failure, so a watcher sees the retry scheduled.
            if let Some(step) = step {
                report(services, agent, step);
            }
        }
    });
    futures_util::future::join(join_all(acked), join_all(nacked)).await;
}

pub(crate) fn report(services: &Services, agent: &Agent, step: Report) {
    services.observer.emit_with(&step.correlation_id, agent.name(), &step.event_id, step.kind, step.context);
}

/// Decides what becomes of one message: runs the agent on it unless it is malformed or
/// already handled. Nothing is settled here.
pub(crate) async fn judge(
    services: &Arc<Services>,
    inboxes: &dyn Inboxes,
    agent: &Arc<Agent>,
    message: &Message,
) -> Verdict {
    match admit(services, agent, message) {
        Ok(event) => wait_then_decide(services, inboxes, agent, message, event).await,
        Err(failure) => Verdict::Nack(failure, None),
    }
}

/// Holds the event, first waiting for any other run on it to end, then reads and decides.
async fn wait_then_decide(
    services: &Arc<Services>,
    inboxes: &dyn Inboxes,
    agent: &Arc<Agent>,
    message: &Message,
    event: Admitted,
) -> Verdict {
    // Another delivery of this event being run here (two replays at once, a redelivery while
    // the first still runs): this one waits for that run to end, then finds its answer in
    // the ledger. Two runs at once could each act on what the other changed.
    let alone = agent.in_progress.enter(event.envelope.id()).await;
    let read = services.store.unless_processed(agent.name(), &event.envelope);
    decide(services, inboxes, agent, message, event, alone, read).await
}

/// A well-formed event, its receipt reported.
struct Admitted {
    envelope: Envelope,
    correlation: String,
}

/// Reads a message's event and reports its receipt; a malformed one is refused for good (the
/// failure to dead-letter it with).
fn admit(services: &Services, agent: &Agent, message: &Message) -> Result<Admitted, Failure> {
    let (envelope, replay_name) = match message
        .event()
        .map_err(|e| e.to_string())
        .and_then(|d| d.into_delivery().map(|d| (d.envelope, d.meta.replay_name)).map_err(|e| e.to_string()))
    {
        Ok(delivered) => delivered,
        Err(reason) => {
            // Not a CloudEvent in EventBridge's shape: no retry can fix it.
            let failure = Failure::permanent("MALFORMED_EVENT", format!("message {}: {reason}", message.message_id));
            return Err(failure);
        }
    };
    if choreo_schemas::catalog::lookup(envelope.event_type()).is_some()
        && let Err(e) = choreo_schemas::catalog::validate_envelope(&envelope)
    {
        // Data that breaks its event's schema: no retry can fix it; the reason goes with it.
        let failure = Failure::permanent("MALFORMED_EVENT", format!("event {}: {e}", envelope.id()));
        return Err(failure);
    }
    let correlation = envelope.correlation_id().unwrap_or(envelope.id()).to_owned();
    // The trace context goes with the receipt: the journal's spans hang under the event's
    // `traceparent`, and a replayed event's run is marked with its replay.
    services.observer.emit_with(
        &correlation,
        agent.name(),
        envelope.id(),
        StepKind::Received { event_type: envelope.event_type().to_owned(), receive_count: message.receive_count },
        StepContext { traceparent: envelope.traceparent().map(str::to_owned), replay_name, published: Vec::new() },
    );
    Ok(Admitted { envelope, correlation })
}

/// Runs the agent on an admitted event, unless the read (made while holding the event,
/// `_alone`) found it handled already.
async fn decide(
    services: &Arc<Services>,
    inboxes: &dyn Inboxes,
    agent: &Arc<Agent>,
    message: &Message,
    event: Admitted,
    _alone: Alone,
    read: Result<Option<PriorRun>, StoreError>,
) -> Verdict {
    let Admitted { envelope, correlation } = event;
    let step = |kind| services.observer.emit(&correlation, agent.name(), envelope.id(), kind);
    let prior = match read {
        Ok(Some(prior)) => prior,
        Ok(None) => {
            step(StepKind::Duplicate);
            return Verdict::Ack(None);
        }
        Err(e) => return Verdict::Nack(Failure::retryable("STORE", e.to_string()), None),
    };
    let started = Instant::now();
    let inbox = agent.inbox();
    let event_id = envelope.id().to_owned();
    let result = run_guarded(services.clone(), inboxes, &inbox, agent.clone(), message, envelope, prior).await;
    let report =
        |kind, context| Report { correlation_id: correlation.clone(), event_id: event_id.clone(), kind, context };
    match result {
        Ok(ran) => {
            let done = StepKind::Done { elapsed: started.elapsed(), model_time: ran.model_time };
            let context = StepContext { published: published_traces(&ran.outcome), ..StepContext::default() };
            Verdict::Ack(Some(Finish {
                outcome: ran.outcome.label(),
                answered: ran.answered,
                done: report(done, context),
            }))
        }
        Err(e) => {
            if !e.retryable {
                let detail = format!("{}: {}", e.code, e.message);
                let _ = services.cases.note(&correlation, &event_id, agent.name(), NoteKind::Failed, &detail).await;
            }
            let failure = Failure { code: e.code.clone(), message: e.message.clone(), retryable: e.retryable };
            let failed = StepKind::Failed { code: e.code, message: e.message, retryable: e.retryable };
            Verdict::Nack(failure, Some(report(failed, StepContext::default())))
        }
    }
}

/// Runs the agent, catching a panic as that event's failure, and keeps the message hidden
/// while it runs.
async fn run_guarded(
    services: Arc<Services>,
    inboxes: &dyn Inboxes,
    inbox: &str,
    agent: Arc<Agent>,
    message: &Message,
    envelope: Envelope,
    prior: PriorRun,
) -> Result<runner::Ran, RunError> {
    // Caught where it is polled, in this task: no task of its own per run.
    let run = AssertUnwindSafe(async move { runner::run_after(&services, &agent, &envelope, prior).await });
    let mut run = std::pin::pin!(run.catch_unwind());
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + VISIBILITY / 3, VISIBILITY / 3);
    loop {
        tokio::select! {
            ended = &mut run => {
                return ended.unwrap_or_else(|panic| Err(RunError::permanent("AGENT_PANIC", crate::runner::panic_message(panic))));
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

pub(crate) async fn settle_acks(inboxes: &dyn Inboxes, inbox: &str, messages: &[Message]) {
    let receipts: Vec<_> = messages.iter().map(|m| m.receipt.clone()).collect();
    // A message whose ack failed comes back after its visibility timeout and is deduped then.
    match inboxes.ack_batch(inbox, &receipts).await {
        Ok(answers) => {
            for (message, answer) in messages.iter().zip(answers) {
                if let Err(e) = answer {
                    tracing::warn!(inbox, message = %message.message_id, error = %e, "ack failed");
                }
            }
        }
        Err(e) => tracing::warn!(inbox, messages = messages.len(), error = %e, "ack failed"),
    }
}

async fn settle_nack(inboxes: &dyn Inboxes, inbox: &str, message: &Message, failure: Failure) {
    if let Err(e) = inboxes.nack(inbox, &message.receipt, failure).await {
        // The message comes back after its visibility timeout: nothing is lost.
        tracing::warn!(inbox, message = %message.message_id, error = %e, "nack failed");
    }
}
