//! The journal's writer thread. It wakes for the first step after a quiet spell, lets steps
//! queue for [`LINGER`] (agents' sends then wake nobody; [`LOADED_LINGER`] after a round of
//! [`LOADED`] steps or more), and commits what queued in transactions of at most [`BATCH`]
//! steps to the journal's file; a flush cuts the wait.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use super::file::File;
use super::otlp::{self, Exporter};
use super::{BATCH, Entry, LINGER, LOADED, LOADED_LINGER, Message, StepRow, row_of};
use crate::store::{Store, StoreError};

/// Attempts at committing one transaction before its steps are given up (logged).
const ATTEMPTS: u32 = 5;
/// How often, at most, the store's WAL is checkpointed from this thread.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// What agents hold to reach the writer.
pub(super) struct Handle {
    pub sender: mpsc::Sender<Message>,
    pub thread: std::thread::Thread,
    /// Set by a flush, so the writer stops lingering.
    pub flush_asked: Arc<AtomicBool>,
}

/// Starts the writer thread (and the exporter's task on the current tokio runtime), with the
/// journal's file beside `store`'s.
pub(super) fn spawn(store: &Store, exporter: Option<Exporter>) -> Result<Handle, StoreError> {
    let path = store.path().to_owned();
    let file = File::open(path.parent().unwrap_or(std::path::Path::new(".")))?;
    let export = exporter.and_then(otlp::spawn_live);
    let (sender, receiver) = mpsc::channel();
    let flush_asked = Arc::new(AtomicBool::new(false));
    // A connection to the store, for its checkpoints only (see `Writer::checkpoint`); none is
    // no harm.
    let checkpoints =
        Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .inspect_err(
                |e| tracing::warn!(store = %path.display(), error = %e, "no checkpoint connection for the journal"),
            )
            .ok();
    let writer = Writer {
        file,
        export,
        replays: HashMap::new(),
        flush_asked: flush_asked.clone(),
        checkpoints,
        checkpointed: Instant::now(),
    };
    let thread =
        std::thread::Builder::new().name("choreo-journal".into()).spawn(move || writer.run(&receiver)).map_err(
            |e| StoreError { path, detail: format!("cannot start the journal's writer thread: {e}"), retryable: false },
        )?;
    Ok(Handle { sender, thread: thread.thread().clone(), flush_asked })
}

struct Writer {
    file: File,
    export: Option<tokio::sync::mpsc::UnboundedSender<otlp::LiveMessage>>,
    /// The replay name of each run in progress, by agent and event: only its receipt says.
    replays: HashMap<(String, String), String>,
    flush_asked: Arc<AtomicBool>,
    checkpoints: Option<Connection>,
    checkpointed: Instant,
}

impl Writer {
    fn run(mut self, receiver: &mpsc::Receiver<Message>) {
        let mut rows = Vec::with_capacity(BATCH);
        // Steps the last round wrote: a busy round lets the next one queue longer.
        let mut written = 0;
        // Ends when every sender is gone, after writing what they sent.
        while let Ok(first) = receiver.recv() {
            if matches!(first, Message::Step(_)) {
                let linger = if written >= LOADED { LOADED_LINGER } else { LINGER };
                let deadline = Instant::now() + linger;
                while !self.flush_asked.load(Ordering::Acquire) {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    std::thread::park_timeout(deadline - now);
                }
            }
            // Cleared before the drain: a flush asked from now on finds its message below or
            // starts the next round at once.
            self.flush_asked.store(false, Ordering::Release);
            let mut next = Some(first);
            written = 0;
            while let Some(message) = next.take() {
                match message {
                    Message::Step(step) => {
                        written += 1;
                        rows.push(self.fill(row_of(*step)));
                        if rows.len() >= BATCH {
                            self.commit(&mut rows);
                        }
                    }
                    Message::Flush(done) => {
                        self.commit(&mut rows);
                        self.flushed(done);
                    }
                }
                next = receiver.try_recv().ok();
            }
            self.commit(&mut rows);
            self.checkpoint();
        }
    }

    /// Copies the store's WAL into its database from this thread, after a round: a
    /// checkpoint SQLite runs inside a commit would hold the store's lock (every agent
    /// waiting) for its copy and fsync. PASSIVE never waits. (The journal's own file is
    /// checkpointed by its commits, on this thread.)
    /// At most once per [`CHECKPOINT_EVERY`]: a page the agents write again and again (a
    /// table's last page) is then copied once, not once per round.
    fn checkpoint(&mut self) {
        if self.checkpointed.elapsed() < CHECKPOINT_EVERY {
            return;
        }
        self.checkpointed = Instant::now();
        if let Some(conn) = &self.checkpoints {
            let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        }
    }

    /// Carries the run's replay name from its receipt to its other steps.
    fn fill(&mut self, mut row: StepRow) -> StepRow {
        if let Entry::Received { .. } = row.entry {
            let key = (row.agent.clone(), row.event_id.clone());
            match &row.replay_name {
                Some(name) => self.replays.insert(key, name.clone()),
                None => self.replays.remove(&key),
            };
        } else if !self.replays.is_empty() {
            let key = (row.agent.clone(), row.event_id.clone());
            row.replay_name = if row.ends_run() { self.replays.remove(&key) } else { self.replays.get(&key).cloned() };
        }
        row
    }

    /// Answers `done` once the exporter, if any, has what was committed before it.
    fn flushed(&self, done: oneshot::Sender<()>) {
        let Some(export) = &self.export else {
            let _ = done.send(());
            return;
        };
        if let Err(tokio::sync::mpsc::error::SendError(otlp::LiveMessage::Flush(done))) =
            export.send(otlp::LiveMessage::Flush(done))
        {
            let _ = done.send(());
        }
    }

    /// Commits `rows` (emptying it) and hands them to the exporter.
    fn commit(&mut self, rows: &mut Vec<StepRow>) {
        if rows.is_empty() {
            return;
        }
        let mut wait = Duration::from_millis(20);
        let mut written = false;
        for attempt in 1..=ATTEMPTS {
            match self.file.write(rows) {
                Ok(()) => {
                    written = true;
                    break;
                }
                Err(e) if attempt < ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "journal commit failed; retrying");
                    std::thread::sleep(wait);
                    wait *= 2;
                }
                Err(e) => tracing::error!(error = %e, steps = rows.len(), "journal commit failed; steps lost"),
            }
        }
        match (written, &self.export) {
            (true, Some(export)) => {
                let _ = export.send(otlp::LiveMessage::Rows(std::mem::take(rows)));
            }
            _ => rows.clear(),
        }
    }
}
