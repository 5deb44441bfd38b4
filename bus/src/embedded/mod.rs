//! The embedded default: an in-process, durable event bus on SQLite that behaves like
//! EventBridge with SQS queues as targets. One writer thread owns the database and commits
//! whatever calls are waiting in one transaction (group commit); callers await their answer,
//! which comes only once their change is on disk.

mod archive;
mod body;
mod deadletter;
mod inbox;
mod put;
mod replay;
mod rules;
mod store;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use choreo_schemas::eventbridge::PutEventsEntry;
use tokio::sync::Notify;

use crate::api::*;
use crate::clock::{Clock, SystemClock};
pub use store::Durability;
use writer::{Ctx, Job};

/// The checks of a request that both backends make before calling anything, so that bad input
/// gets the same precise answer whatever runs the bus.
pub(crate) mod checks {
    pub(crate) use super::archive::check as archive;
    pub(crate) use super::put::check_entry as entry;
    pub(crate) use super::replay::check as replay;
    pub(crate) use super::rules::{check_rule as rule, check_targets as targets};
}

/// How an embedded bus runs: where its data lives and how it names itself.
#[derive(Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// The bus's name, as `EventBusName` and in ARNs.
    pub bus_name: String,
    /// The `account` and `region` of delivered events and ARNs.
    pub account: String,
    pub region: String,
    pub durability: Durability,
    /// How long a call waits for another process's lock on the database before it fails.
    pub busy_timeout: Duration,
    /// The most the database may grow to; beyond it puts fail with a "storage is full" error.
    pub storage_limit: Option<u64>,
    pub clock: Arc<dyn Clock>,
    /// Archived events replayed per transaction.
    pub replay_batch: usize,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            bus_name: "choreo".into(),
            account: "000000000000".into(),
            region: "us-east-1".into(),
            durability: Durability::Full,
            busy_timeout: Duration::from_secs(5),
            storage_limit: None,
            clock: Arc::new(SystemClock),
            replay_batch: 1000,
        }
    }

    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }
}

/// The names the bus gives itself and its resources.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    pub bus: String,
    pub account: String,
    pub region: String,
}

impl Names {
    pub fn bus_arn(&self) -> String {
        format!("arn:aws:events:{}:{}:event-bus/{}", self.region, self.account, self.bus)
    }
    pub fn rule_arn(&self, rule: &str) -> String {
        format!("arn:aws:events:{}:{}:rule/{}/{rule}", self.region, self.account, self.bus)
    }
    pub fn inbox_arn(&self, inbox: &str) -> String {
        format!("arn:aws:sqs:{}:{}:{inbox}", self.region, self.account)
    }
    pub fn archive_arn(&self, archive: &str) -> String {
        format!("arn:aws:events:{}:{}:archive/{archive}", self.region, self.account)
    }
    pub fn replay_arn(&self, replay: &str) -> String {
        format!("arn:aws:events:{}:{}:replay/{replay}", self.region, self.account)
    }
}

/// Wakes receivers long-polling an inbox when something lands in it.
#[derive(Default)]
pub(crate) struct Wakers(Mutex<HashMap<String, Arc<Notify>>>);

impl Wakers {
    fn get(&self, inbox: &str) -> Arc<Notify> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 1024 {
            // Forget inboxes nobody waits on (names of unknown inboxes among them).
            map.retain(|_, n| Arc::strong_count(n) > 1);
        }
        map.entry(inbox.to_owned()).or_default().clone()
    }

    pub fn wake(&self, inbox: &str) {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get(inbox) {
            n.notify_waiters();
        }
    }
}

/// The embedded bus. Clones share one bus; the last one dropped stops its writer after the
/// calls already sent are answered.
#[derive(Clone)]
pub struct EmbeddedBus {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    checkpoints: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
    wakers: Arc<Wakers>,
    names: Arc<Names>,
    clock: Arc<dyn Clock>,
    data_dir: PathBuf,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = handle.join();
        }
        if let Some((stop, handle)) = self.checkpoints.lock().unwrap_or_else(|p| p.into_inner()).take() {
            drop(stop);
            let _ = handle.join();
        }
    }
}

impl EmbeddedBus {
    /// Opens the bus in `config.data_dir`, creating it when new. A directory holding something
    /// else, a corrupt database or one written by a newer build is refused with the reason.
    pub fn open(config: Config) -> Result<Self, BusError> {
        let (conn, faults) =
            store::open(&config.data_dir, config.durability, config.busy_timeout, config.storage_limit)?;
        let (stop, stopped) = mpsc::channel();
        let db_path = faults.path.clone();
        let checkpoints = std::thread::Builder::new()
            .name("choreo-bus-checkpoint".into())
            .spawn(move || store::checkpointer(db_path, stopped))
            .map_err(|e| BusError::Internal(format!("cannot start the bus checkpointer: {e}")))?;
        let names = Arc::new(Names { bus: config.bus_name.clone(), account: config.account, region: config.region });
        let wakers = Arc::new(Wakers::default());
        let (tx, rx) = mpsc::channel();
        let state = writer::State::new(names.clone(), config.clock.clone(), config.durability, config.replay_batch);
        let writer_wakers = wakers.clone();
        let handle = std::thread::Builder::new()
            .name("choreo-bus-writer".into())
            .spawn(move || writer::run(conn, faults, rx, state, writer_wakers))
            .map_err(|e| BusError::Internal(format!("cannot start the bus writer: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                jobs: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(handle)),
                checkpoints: Mutex::new(Some((stop, checkpoints))),
                wakers,
                names,
                clock: config.clock,
                data_dir: config.data_dir,
            }),
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// The bus's ARN.
    pub fn arn(&self) -> String {
        self.inner.names.bus_arn()
    }

    /// Drops archived events past their archive's retention, now rather than at the next
    /// periodic sweep; answers how many were dropped.
    pub async fn purge_expired(&self) -> Result<u64, BusError> {
        self.call(true, archive::sweep).await
    }

    /// Waits until every active replay has finished (for tools and tests).
    pub async fn wait_replays(&self) -> Result<(), BusError> {
        loop {
            let active = self.call(false, replay::any_active).await?;
            if !active {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Sends `f` to the writer and awaits its answer, given only once the transaction that ran
    /// it has committed. `durable` calls are fsynced (at the bus's durability); the others
    /// (receives, acks, reads) may ride on a cheaper commit, since losing them loses no event:
    /// a receive or an ack lost with the machine's power (a process crash loses neither)
    /// brings the message back once more, and consumers dedupe by CloudEvent id.
    async fn call<T: Send + 'static>(
        &self,
        durable: bool,
        f: impl FnOnce(&mut Ctx<'_>) -> Result<T, BusError> + Send + 'static,
    ) -> Result<T, BusError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = Job::new(durable, f, tx);
        {
            let jobs = self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner());
            let sender = jobs.as_ref().ok_or(BusError::Closed)?;
            sender.send(job).map_err(|_| BusError::Closed)?;
        }
        rx.await.map_err(|_| BusError::Internal("the bus writer dropped a call (it panicked)".into()))?
    }
}

#[async_trait]
impl Bus for EmbeddedBus {
    async fn put_events(&self, entries: Vec<PutEventsEntry>) -> Result<PutEventsOutput, BusError> {
        let now = self.inner.clock.now_ms();
        let (answers, ready) = put::prepare(&entries, &self.inner.names, now)?;
        if ready.is_empty() {
            return Ok(put::output(answers));
        }
        let accepted = self.call(true, move |ctx| put::store(ctx, ready)).await?;
        Ok(put::output(put::merge(answers, accepted)))
    }

    async fn put_rule(&self, rule: RuleSpec) -> Result<String, BusError> {
        rules::check_rule(&rule)?;
        self.call(true, move |ctx| rules::put_rule(ctx, rule)).await
    }

    async fn delete_rule(&self, name: &str) -> Result<(), BusError> {
        let name = name.to_owned();
        self.call(true, move |ctx| rules::delete_rule(ctx, &name)).await
    }

    async fn set_rule_state(&self, name: &str, state: RuleState) -> Result<(), BusError> {
        let name = name.to_owned();
        self.call(true, move |ctx| rules::set_state(ctx, &name, state)).await
    }

    async fn describe_rule(&self, name: &str) -> Result<Rule, BusError> {
        let name = name.to_owned();
        self.call(false, move |ctx| rules::describe(ctx, &name)).await
    }

    async fn list_rules(&self) -> Result<Vec<Rule>, BusError> {
        self.call(false, rules::list).await
    }

    async fn put_targets(&self, rule: &str, targets: Vec<Target>) -> Result<(), BusError> {
        rules::check_targets(&targets)?;
        let rule = rule.to_owned();
        self.call(true, move |ctx| rules::put_targets(ctx, &rule, targets)).await
    }

    async fn remove_targets(&self, rule: &str, ids: &[String]) -> Result<(), BusError> {
        let (rule, ids) = (rule.to_owned(), ids.to_vec());
        self.call(true, move |ctx| rules::remove_targets(ctx, &rule, &ids)).await
    }

    async fn create_archive(&self, archive: ArchiveSpec) -> Result<String, BusError> {
        archive::check(&archive)?;
        self.call(true, move |ctx| archive::create(ctx, archive)).await
    }

    async fn delete_archive(&self, name: &str) -> Result<(), BusError> {
        let name = name.to_owned();
        self.call(true, move |ctx| archive::delete(ctx, &name)).await
    }

    async fn describe_archive(&self, name: &str) -> Result<Archive, BusError> {
        let name = name.to_owned();
        self.call(false, move |ctx| archive::describe(ctx, &name)).await
    }

    async fn list_archives(&self) -> Result<Vec<Archive>, BusError> {
        self.call(false, archive::list).await
    }

    async fn start_replay(&self, spec: ReplaySpec) -> Result<Replay, BusError> {
        replay::check(&spec)?;
        self.call(true, move |ctx| replay::start(ctx, spec)).await
    }

    async fn describe_replay(&self, name: &str) -> Result<Replay, BusError> {
        let name = name.to_owned();
        self.call(false, move |ctx| replay::describe(ctx, &name)).await
    }

    async fn cancel_replay(&self, name: &str) -> Result<ReplayState, BusError> {
        let name = name.to_owned();
        self.call(true, move |ctx| replay::cancel(ctx, &name)).await
    }

    async fn list_replays(&self) -> Result<Vec<Replay>, BusError> {
        self.call(false, replay::list).await
    }

    async fn archived_events(
        &self,
        archive: &str,
        start: chrono::DateTime<chrono::Utc>,
        end: chrono::DateTime<chrono::Utc>,
        after: Option<ArchiveCursor>,
        limit: u32,
    ) -> Result<Vec<ArchivedEvent>, BusError> {
        let name = archive.to_owned();
        let window = (start.timestamp_millis(), end.timestamp_millis());
        self.call(false, move |ctx| archive::events(ctx, &name, window, after, limit)).await
    }
}

#[async_trait]
impl Inboxes for EmbeddedBus {
    async fn create_inbox(&self, name: &str) -> Result<(), BusError> {
        rules::check_inbox_name("inbox", name)?;
        let name = name.to_owned();
        self.call(true, move |ctx| rules::create_inbox(ctx, &name)).await
    }

    async fn receive(&self, inbox: &str, options: ReceiveOptions) -> Result<Vec<Message>, BusError> {
        options.validate()?;
        let deadline = tokio::time::Instant::now() + options.wait_time;
        let waker = self.inner.wakers.get(inbox);
        loop {
            // Registered before looking, so a message landing in between still wakes us.
            let landed = waker.notified();
            tokio::pin!(landed);
            landed.as_mut().enable();
            let name = inbox.to_owned();
            let (messages, next_visible) = self.call(false, move |ctx| inbox::receive(ctx, &name, options)).await?;
            let now = tokio::time::Instant::now();
            if !messages.is_empty() || now >= deadline {
                return Ok(messages);
            }
            // Also look again when a hidden message becomes visible, and at least once a
            // second for messages put by another process on the same data directory.
            let mut until = deadline.min(now + Duration::from_secs(1));
            if let Some(at) = next_visible {
                let wait = u64::try_from(at - self.inner.clock.now_ms()).unwrap_or(0);
                until = until.min(now + Duration::from_millis(wait));
            }
            tokio::select! {
                () = &mut landed => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }

    async fn ack(&self, inbox: &str, receipt: &Receipt) -> Result<(), BusError> {
        let (name, receipt) = (inbox.to_owned(), receipt.clone());
        self.call(false, move |ctx| inbox::ack(ctx, &name, &receipt)).await
    }

    async fn ack_batch(&self, inbox: &str, receipts: &[Receipt]) -> Result<Vec<Result<(), BusError>>, BusError> {
        crate::api::check_batch("ack", receipts.len())?;
        let (name, receipts) = (inbox.to_owned(), receipts.to_vec());
        self.call(false, move |ctx| inbox::ack_batch(ctx, &name, &receipts)).await
    }

    async fn nack(&self, inbox: &str, receipt: &Receipt, failure: Failure) -> Result<NackOutcome, BusError> {
        let (name, receipt) = (inbox.to_owned(), receipt.clone());
        self.call(true, move |ctx| inbox::nack(ctx, &name, &receipt, failure)).await
    }

    async fn extend_visibility(&self, inbox: &str, receipt: &Receipt, timeout: Duration) -> Result<(), BusError> {
        if timeout > MAX_VISIBILITY {
            return Err(BusError::invalid(
                "VisibilityTimeout",
                format!("{timeout:?} is longer than {MAX_VISIBILITY:?}"),
            ));
        }
        let (name, receipt) = (inbox.to_owned(), receipt.clone());
        self.call(false, move |ctx| inbox::extend(ctx, &name, &receipt, timeout)).await
    }

    async fn list_inboxes(&self) -> Result<Vec<InboxSummary>, BusError> {
        self.call(false, deadletter::list_inboxes).await
    }

    async fn peek(&self, inbox: &str, after: Option<&str>, limit: u32) -> Result<Vec<Message>, BusError> {
        let (name, after) = (inbox.to_owned(), after.map(str::to_owned));
        self.call(false, move |ctx| deadletter::peek(ctx, &name, after.as_deref(), limit)).await
    }

    async fn redrive(&self, dead_letter_inbox: &str, message_ids: &[String]) -> Result<Vec<Redriven>, BusError> {
        let (name, ids) = (dead_letter_inbox.to_owned(), message_ids.to_vec());
        self.call(true, move |ctx| deadletter::redrive(ctx, &name, &ids)).await
    }

    async fn delete_messages(&self, inbox: &str, message_ids: &[String]) -> Result<u64, BusError> {
        let (name, ids) = (inbox.to_owned(), message_ids.to_vec());
        self.call(true, move |ctx| deadletter::delete(ctx, &name, &ids)).await
    }
}
