//! The step journal: every step the runtime reports (see [`crate::observe`]) kept in
//! `<data-dir>/journal.db`, for `choreo trace` and for spans. Agents only queue a step; one
//! writer thread commits them in batches, off the agents' path.
//!
//! - [`writer`]: the writer thread; [`file`]: the journal's file, a run's steps of one commit
//!   in one row; [`read`]: a case's record, read-only, while agents run.
//! - [`spans`]: agent runs as OpenTelemetry spans; [`otlp`]: their export over OTLP/HTTP.

pub mod file;
pub mod otlp;
pub mod read;
pub mod spans;
mod writer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::observe::{PublishedTrace, Step, StepKind, ToolOutcome};
use crate::store::{Store, StoreError};

pub use read::{CaseEvent, CaseLog, Effect, ReadError, read_case};

/// Steps one transaction commits at most. Nobody waits on the journal's file but its thread:
/// the more steps a commit takes, the fewer pages of the case index it writes again (the
/// steps of a thousand cases at once land on as many pages of it, a few times each).
pub const BATCH: usize = 16_384;
/// How long the writer lets steps queue after the first before it commits them: what a
/// trace may lag behind the runs (a flush cuts it short).
pub const LINGER: Duration = Duration::from_millis(50);
/// Steps in a round past which the next round queues for [`LOADED_LINGER`]: under load a
/// commit takes a quarter second of steps, each page of the case index written fewer times.
pub const LOADED: usize = 1024;
/// How long a round lets steps queue after a busy one.
pub const LOADED_LINGER: Duration = Duration::from_millis(250);
/// Longest text kept of a tool's arguments, a model's text or a failure.
const SUMMARY: usize = 240;

/// What agents send the writer.
pub(crate) enum Message {
    Step(Box<Step>),
    /// Answered once every step sent before it is committed (and handed to the exporter).
    Flush(oneshot::Sender<()>),
}

/// Where steps are queued for the journal. Cheap to clone; the writer stops once every
/// clone is gone, after writing what was queued.
#[derive(Clone)]
pub struct Journal {
    sender: mpsc::Sender<Message>,
    writer: std::thread::Thread,
    flush_asked: Arc<AtomicBool>,
}

impl Journal {
    /// Starts the writer, on `journal.db` beside `store`'s file (created if needed). Spans of
    /// finished runs go to `exporter` when given; it needs a tokio runtime, on which its export
    /// task is spawned.
    pub fn open(store: &Store, exporter: Option<otlp::Exporter>) -> Result<Journal, StoreError> {
        let writer::Handle { sender, thread, flush_asked } = writer::spawn(store, exporter)?;
        Ok(Journal { sender, writer: thread, flush_asked })
    }

    /// Queues `step`; never blocks, and wakes nobody while the writer lingers. A step is
    /// dropped only when the writer has stopped.
    pub fn record(&self, step: Step) {
        let _ = self.sender.send(Message::Step(Box::new(step)));
    }

    /// Waits until every step recorded so far is committed (and handed to the exporter).
    pub async fn flush(&self) {
        let (done, committed) = oneshot::channel();
        self.flush_asked.store(true, Ordering::Release);
        if self.sender.send(Message::Flush(done)).is_ok() {
            self.writer.unpark();
            // An error means the writer stopped: there is nothing more to wait for.
            let _ = committed.await;
        }
    }
}

/// What the journal keeps of `step`, without what it does not keep (a tool's result, an
/// event's data), for when the full step goes to watchers too.
pub(crate) fn light(step: &Step) -> Step {
    let kind = match &step.kind {
        StepKind::ToolCall { tool, input, outcome, elapsed, .. } => StepKind::ToolCall {
            tool: tool.clone(),
            input: input.clone(),
            outcome: *outcome,
            result: serde_json::Value::Null,
            elapsed: *elapsed,
        },
        StepKind::Published { event_type, published_id, .. } => StepKind::Published {
            event_type: event_type.clone(),
            published_id: published_id.clone(),
            data: serde_json::Value::Null,
        },
        other => other.clone(),
    };
    Step { kind, ..step.clone_without_kind() }
}

/// One row of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRow {
    /// The order it was written in (a run's steps of one commit together, see
    /// [`file`]); 0 before it is written.
    pub seq: i64,
    pub correlation_id: String,
    pub agent: String,
    pub event_id: String,
    /// Wall clock, microseconds since the Unix epoch: when the step began.
    pub started_us: i64,
    /// How long it took; 0 for an instant (a receipt, a publication).
    pub duration_us: i64,
    /// The replay the event came from, on every step of a run on a replayed event.
    pub replay_name: Option<String>,
    pub entry: Entry,
}

impl StepRow {
    pub fn ended_us(&self) -> i64 {
        self.started_us + self.duration_us
    }

    /// Whether it ends a run: done, failed, or a duplicate acknowledged.
    pub fn ends_run(&self) -> bool {
        matches!(self.entry, Entry::Done { .. } | Entry::Failed { .. } | Entry::Duplicate)
    }
}

/// What a row records, by kind (the `kind` column; the rest is the `detail` JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    Received {
        event_type: String,
        receive_count: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        traceparent: Option<String>,
    },
    Duplicate,
    ModelTurn {
        turn: u32,
        input_tokens: u64,
        output_tokens: u64,
        stop_reason: String,
    },
    ToolCall {
        tool: String,
        outcome: ToolOutcome,
        /// The arguments as canonical JSON, cut to a summary.
        args: String,
    },
    Published {
        event_type: String,
        published_id: String,
    },
    NoCompletion {
        text: String,
    },
    Failed {
        code: String,
        message: String,
        retryable: bool,
    },
    Done {
        model_us: i64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        published: Vec<PublishedTrace>,
    },
}

impl Entry {
    pub fn kind(&self) -> &'static str {
        match self {
            Entry::Received { .. } => "received",
            Entry::Duplicate => "duplicate",
            Entry::ModelTurn { .. } => "model_turn",
            Entry::ToolCall { .. } => "tool_call",
            Entry::Published { .. } => "published",
            Entry::NoCompletion { .. } => "no_completion",
            Entry::Failed { .. } => "failed",
            Entry::Done { .. } => "done",
        }
    }
}

/// The row of `step`; the replay name is the writer's to fill (it knows the run).
pub(crate) fn row_of(step: Step) -> StepRow {
    let time = micros(step.time);
    let context = step.context.as_deref();
    let (entry, elapsed) = match step.kind {
        StepKind::Received { event_type, receive_count } => {
            let traceparent = context.and_then(|c| c.traceparent.clone());
            (Entry::Received { event_type, receive_count, traceparent }, Duration::ZERO)
        }
        StepKind::Duplicate => (Entry::Duplicate, Duration::ZERO),
        StepKind::ModelTurn { turn, input_tokens, output_tokens, stop_reason, elapsed } => {
            (Entry::ModelTurn { turn, input_tokens, output_tokens, stop_reason }, elapsed)
        }
        StepKind::ToolCall { tool, input, outcome, elapsed, .. } => {
            (Entry::ToolCall { tool, outcome, args: summary(&crate::store::canonical(&input)) }, elapsed)
        }
        StepKind::Published { event_type, published_id, .. } => {
            (Entry::Published { event_type, published_id }, Duration::ZERO)
        }
        StepKind::NoCompletion { text } => (Entry::NoCompletion { text: summary(&text) }, Duration::ZERO),
        StepKind::Failed { code, message, retryable } => {
            (Entry::Failed { code, message: summary(&message), retryable }, Duration::ZERO)
        }
        StepKind::Done { elapsed, model_time } => {
            let published = context.map(|c| c.published.clone()).unwrap_or_default();
            (Entry::Done { model_us: model_time.as_micros() as i64, published }, elapsed)
        }
    };
    let duration_us = elapsed.as_micros() as i64;
    StepRow {
        seq: 0,
        correlation_id: step.correlation_id,
        agent: step.agent,
        event_id: step.event_id,
        started_us: time - duration_us,
        duration_us,
        replay_name: context.and_then(|c| c.replay_name.clone()),
        entry,
    }
}

/// Microseconds since the Unix epoch.
pub fn micros(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(before) => -(before.duration().as_micros() as i64),
    }
}

/// The wall-clock time of `micros` since the Unix epoch.
pub fn system_time(micros: i64) -> SystemTime {
    if micros >= 0 {
        UNIX_EPOCH + Duration::from_micros(micros as u64)
    } else {
        UNIX_EPOCH - Duration::from_micros(micros.unsigned_abs())
    }
}

/// `text` cut to [`SUMMARY`] characters, with an ellipsis when cut.
fn summary(text: &str) -> String {
    match text.char_indices().nth(SUMMARY) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

/// Groups rows into agent runs: from a receipt to what ends it (done, failed, duplicate),
/// per agent and event. Rows come in the order they were written.
#[derive(Default)]
pub struct Runs {
    open: std::collections::HashMap<(String, String), Vec<StepRow>>,
}

impl Runs {
    /// Adds `row`; answers the run it ends, if it ends one. A receipt while a run of the
    /// same agent and event is open (its process died mid-run) answers that run, unended.
    pub fn push(&mut self, row: StepRow) -> Option<Vec<StepRow>> {
        let key = (row.agent.clone(), row.event_id.clone());
        if matches!(row.entry, Entry::Received { .. }) {
            // A receipt never ends a run, so this answers at most the interrupted one.
            return self.open.insert(key, vec![row]);
        }
        let ends = row.ends_run();
        let run = self.open.entry(key).or_default();
        run.push(row);
        if !ends {
            return None;
        }
        let key = run.last().map(|r| (r.agent.clone(), r.event_id.clone())).unwrap_or_default();
        self.open.remove(&key)
    }

    /// The runs not ended (in progress, or cut short when their process died).
    pub fn into_open(self) -> Vec<Vec<StepRow>> {
        let mut runs: Vec<_> = self.open.into_values().collect();
        runs.sort_by_key(|r| r.first().map(|row| row.seq).unwrap_or_default());
        runs
    }
}

/// Every run in `rows` (written order), ended or not, in the order they began.
pub fn group_runs(rows: &[StepRow]) -> Vec<Vec<StepRow>> {
    let mut runs = Runs::default();
    let mut all: Vec<Vec<StepRow>> = rows.iter().filter_map(|row| runs.push(row.clone())).collect();
    all.extend(runs.into_open());
    all.sort_by_key(|r| r.first().map(|row| (row.started_us, row.seq)).unwrap_or_default());
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{Observer, StepContext};
    use crate::store::Store;

    const TRACE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn row(seq: i64, agent: &str, event: &str, entry: Entry) -> StepRow {
        StepRow {
            seq,
            correlation_id: "case".into(),
            agent: agent.into(),
            event_id: event.into(),
            started_us: seq * 1000,
            duration_us: 0,
            replay_name: None,
            entry,
        }
    }

    fn received(count: u32) -> Entry {
        Entry::Received { event_type: "SupportTriaged".into(), receive_count: count, traceparent: None }
    }

    #[tokio::test]
    async fn a_flush_makes_every_step_readable_and_the_replay_name_covers_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let observer = Observer::default().with_journal(Journal::open(&store, None).unwrap());
        let context =
            StepContext { traceparent: Some(TRACE.into()), replay_name: Some("fix-1".into()), published: Vec::new() };
        let kind = StepKind::Received { event_type: "SupportTriaged".into(), receive_count: 1 };
        observer.emit_with("case", "payments", "e1", kind, context);
        let turn = StepKind::ModelTurn {
            turn: 1,
            input_tokens: 500,
            output_tokens: 40,
            stop_reason: "ToolUse".into(),
            elapsed: Duration::from_millis(3),
        };
        observer.emit("case", "payments", "e1", turn);
        let refund = StepKind::ToolCall {
            tool: "payments.refund_charge".into(),
            input: serde_json::json!({"reason": "duplicate", "charge_id": "ch-1"}),
            outcome: ToolOutcome::Suppressed,
            result: serde_json::json!({"refund_id": "rf-1"}),
            elapsed: Duration::from_millis(1),
        };
        observer.emit("case", "payments", "e1", refund);
        let published = vec![PublishedTrace { id: "e2".into(), traceparent: TRACE.into() }];
        let done = StepKind::Done { elapsed: Duration::from_millis(9), model_time: Duration::from_millis(3) };
        observer.emit_with("case", "payments", "e1", done, StepContext { published, ..StepContext::default() });
        observer.emit("other", "orders", "e9", StepKind::Duplicate);
        // Read at once, within the writer's linger (50 ms) on any usual machine: it is the
        // flush that commits them.
        observer.flush().await;

        let log = read_case(dir.path(), "case").unwrap();
        assert!(log.journal);
        let kinds: Vec<&str> = log.steps.iter().map(|s| s.entry.kind()).collect();
        assert_eq!(kinds, ["received", "model_turn", "tool_call", "done"]);
        assert!(log.steps.iter().all(|s| s.replay_name.as_deref() == Some("fix-1")), "{:#?}", log.steps);
        assert!(log.steps.windows(2).all(|w| w[0].seq < w[1].seq));
        assert_eq!(log.steps[1].duration_us, 3000);
        match &log.steps[2].entry {
            Entry::ToolCall { outcome, args, .. } => {
                assert_eq!(*outcome, ToolOutcome::Suppressed);
                assert_eq!(args, r#"{"charge_id":"ch-1","reason":"duplicate"}"#);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&log.steps[3].entry, Entry::Done { published, model_us: 3000 } if published.len() == 1));
        assert_eq!(read_case(dir.path(), "other").unwrap().steps.len(), 1);
    }

    #[tokio::test]
    async fn an_older_stores_steps_are_read_before_the_journals_and_no_journal_is_said() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let event = choreo_schemas::Envelope::builder("retail.support-api", "OrderSupportPlaced").build().unwrap();
        store.record_event(&event).unwrap();
        let none = read_case(dir.path(), event.id()).unwrap();
        assert!(!none.journal && none.steps.is_empty() && none.events.len() == 1);
        // A store written before the journal had its own file: its steps in `agents.db`.
        let conn = rusqlite::Connection::open(dir.path().join(crate::store::STORE_FILE)).unwrap();
        conn.execute_batch(
            "CREATE TABLE steps (seq INTEGER PRIMARY KEY, correlation_id TEXT NOT NULL, agent TEXT NOT NULL,
             event_id TEXT NOT NULL, kind TEXT NOT NULL, started_us INTEGER NOT NULL, duration_us INTEGER NOT NULL,
             replay_name TEXT, detail TEXT NOT NULL)",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO steps VALUES (7, ?1, 'support', ?1, 'received', 1000, 0, NULL, ?2)",
            (event.id(), r#"{"kind":"received","event_type":"OrderSupportPlaced","receive_count":1}"#),
        )
        .unwrap();
        drop(conn);
        let older = read_case(dir.path(), event.id()).unwrap();
        assert!(older.journal);
        assert_eq!(older.steps.len(), 1);
        assert_eq!((older.steps[0].seq, older.steps[0].agent.as_str()), (7, "support"));

        let observer = Observer::default().with_journal(Journal::open(&store, None).unwrap());
        observer.emit(event.id(), "support", event.id(), StepKind::Duplicate);
        observer.flush().await;
        let both = read_case(dir.path(), event.id()).unwrap();
        let kinds: Vec<&str> = both.steps.iter().map(|s| s.entry.kind()).collect();
        assert_eq!(kinds, ["received", "duplicate"]);
        let unknown = read_case(dir.path(), "nope").unwrap_err().to_string();
        assert!(unknown.contains("case `nope` not found in") && unknown.contains("agents.db"), "{unknown}");
    }

    #[test]
    fn runs_end_at_done_failed_or_duplicate_and_a_new_receipt_cuts_an_interrupted_one() {
        let rows = vec![
            row(1, "payments", "e1", received(1)),
            row(2, "orders", "e1", received(1)),
            row(3, "payments", "e1", Entry::Failed { code: "X".into(), message: "m".into(), retryable: true }),
            row(4, "payments", "e1", received(2)),
            row(5, "orders", "e1", received(2)),
            row(6, "payments", "e1", Entry::Done { model_us: 0, published: Vec::new() }),
            row(7, "orders", "e1", Entry::Duplicate),
            row(8, "support", "e2", received(1)),
        ];
        let runs = group_runs(&rows);
        let shape: Vec<Vec<i64>> = runs.iter().map(|r| r.iter().map(|s| s.seq).collect()).collect();
        assert_eq!(shape, [vec![1, 3], vec![2], vec![4, 6], vec![5, 7], vec![8]]);
    }

    #[test]
    fn summaries_are_cut_on_a_character_boundary() {
        let long = "é".repeat(SUMMARY + 5);
        let cut = summary(&long);
        assert_eq!(cut.chars().count(), SUMMARY + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(summary("short"), "short");
    }
}
