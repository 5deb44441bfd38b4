//! The journal's own SQLite file, `<data-dir>/journal.db`, written by the journal's thread
//! alone on a connection of its own: its commits never wait on the agents' store, and never
//! make the store's readers drop their page caches (SQLite drops a reader's cache whenever the
//! file changed since its last read).
//!
//! A row holds the steps of one run that one commit wrote: a receipt, the calls and the end of
//! a run answered in a few milliseconds are one row, one entry of the case's index, where they
//! were three. Steps are numbered in the order written (`seq`); a row holds `seq..=last`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

use super::{Entry, StepRow};
use crate::store::{StoreError, open_checked};

/// The file name of the journal in a data directory.
pub const JOURNAL_FILE: &str = "journal.db";

/// Our `application_id` for the journal ("CHJN").
const APPLICATION_ID: i32 = 0x4348_4a4e;
const SCHEMA_VERSION: i32 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS steps (
    seq INTEGER PRIMARY KEY,
    last INTEGER NOT NULL,
    correlation_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    event_id TEXT NOT NULL,
    replay_name TEXT,
    steps TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS steps_by_case ON steps (correlation_id, seq);
";

/// A step as a row keeps it: when it began and how long it took, then its entry.
#[derive(Serialize)]
struct Stored<'a> {
    at: i64,
    us: i64,
    #[serde(flatten)]
    entry: &'a Entry,
}

#[derive(Deserialize)]
struct Read {
    at: i64,
    us: i64,
    #[serde(flatten)]
    entry: Entry,
}

/// The journal open for writing.
pub(super) struct File {
    conn: Connection,
    /// The `seq` of the next step written.
    next: i64,
    path: PathBuf,
}

impl File {
    /// Opens (creating if needed) `<dir>/journal.db`.
    pub fn open(dir: &Path) -> Result<File, StoreError> {
        let path = dir.join(JOURNAL_FILE);
        let fail = |e: rusqlite::Error| StoreError::of(&path, e);
        let conn = open_checked(&path, APPLICATION_ID, SCHEMA_VERSION, "a Choreo step journal", SCHEMA)?;
        let next: Option<i64> = conn.query_row("SELECT max(last) FROM steps", [], |r| r.get(0)).map_err(fail)?;
        Ok(File { conn, next: next.unwrap_or(0) + 1, path })
    }

    /// Writes `rows` in one transaction, the steps of each run in one row, and numbers them in
    /// the order written: a run's steps together, runs in the order their first step came.
    /// `rows` is left in that order, each with its `seq`.
    pub fn write(&mut self, rows: &mut Vec<StepRow>) -> Result<(), StoreError> {
        let mut index: HashMap<(&str, &str, &str, Option<&str>), usize> = HashMap::new();
        let places: Vec<usize> = rows
            .iter()
            .map(|r| {
                let key = (&*r.correlation_id, &*r.agent, &*r.event_id, r.replay_name.as_deref());
                let next = index.len();
                *index.entry(key).or_insert(next)
            })
            .collect();
        let mut runs: Vec<Vec<StepRow>> = (0..index.len()).map(|_| Vec::new()).collect();
        drop(index);
        for (row, place) in rows.drain(..).zip(places) {
            runs[place].push(row);
        }
        let mut seq = self.next;
        for row in runs.iter_mut().flatten() {
            row.seq = seq;
            seq += 1;
        }
        let written = self.insert(&runs);
        // Back in `rows`, numbered, written or not (a failed write numbers them again).
        rows.extend(runs.into_iter().flatten());
        written?;
        self.next = seq;
        Ok(())
    }

    /// Inserts a row per run, in one transaction.
    fn insert(&mut self, runs: &[Vec<StepRow>]) -> Result<(), StoreError> {
        let fail = |e: rusqlite::Error| StoreError::of(&self.path, e);
        // Serialized before the transaction: it holds the file's write lock.
        let details: Vec<String> = runs
            .iter()
            .map(|run| {
                let stored: Vec<Stored<'_>> =
                    run.iter().map(|r| Stored { at: r.started_us, us: r.duration_us, entry: &r.entry }).collect();
                serde_json::to_string(&stored).unwrap_or_else(|_| "[]".to_owned())
            })
            .collect();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(fail)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO steps (seq, last, correlation_id, agent, event_id, replay_name, steps)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(fail)?;
            for (run, detail) in runs.iter().zip(&details) {
                let (first, last) = (&run[0], &run[run.len() - 1]);
                insert
                    .execute((
                        first.seq,
                        last.seq,
                        &first.correlation_id,
                        &first.agent,
                        &first.event_id,
                        &first.replay_name,
                        detail,
                    ))
                    .map_err(fail)?;
            }
        }
        tx.commit().map_err(fail)
    }
}

/// The steps of case `case` in `<dir>/journal.db`, in the order written; `None` when there is
/// no journal there.
pub fn read(dir: &Path, case: &str) -> Result<Option<Vec<StepRow>>, StoreError> {
    let path = dir.join(JOURNAL_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let fail = |e: rusqlite::Error| StoreError::of(&path, e);
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(fail)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
    let app: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0)).map_err(fail)?;
    if app != APPLICATION_ID {
        return Err(StoreError { path, detail: "not a Choreo step journal".into(), retryable: false });
    }
    let exists = conn
        .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'steps'", [], |_| Ok(()))
        .optional()
        .map_err(fail)?;
    if exists.is_none() {
        return Ok(Some(Vec::new()));
    }
    let mut stmt = conn
        .prepare("SELECT seq, agent, event_id, replay_name, steps FROM steps WHERE correlation_id = ?1 ORDER BY seq")
        .map_err(fail)?;
    let rows = stmt
        .query_map([case], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get(3)?, r.get::<_, String>(4)?))
        })
        .map_err(fail)?;
    let mut steps = Vec::new();
    for row in rows {
        let (seq, agent, event_id, replay_name, detail): (i64, String, String, Option<String>, String) =
            row.map_err(fail)?;
        let run = Run { seq, last: 0, correlation_id: case.to_owned(), agent, event_id, replay_name, steps: detail };
        steps.extend(run.step_rows());
    }
    Ok(Some(steps))
}

/// One row of the journal: the steps of one run that one commit wrote, as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub seq: i64,
    pub last: i64,
    pub correlation_id: String,
    pub agent: String,
    pub event_id: String,
    pub replay_name: Option<String>,
    /// The steps, as the journal keeps them (`[{"at":…,"us":…,"kind":…},…]`).
    pub steps: String,
}

impl Run {
    /// The row's steps, numbered from its `seq`; a step this version cannot read (a newer
    /// kind) is skipped, the others keep their number.
    pub fn step_rows(&self) -> Vec<StepRow> {
        let stored: Vec<serde_json::Value> = serde_json::from_str(&self.steps).unwrap_or_default();
        stored
            .into_iter()
            .enumerate()
            .filter_map(|(i, value)| {
                let Read { at, us, entry } = serde_json::from_value(value).ok()?;
                Some(StepRow {
                    seq: self.seq + i as i64,
                    correlation_id: self.correlation_id.clone(),
                    agent: self.agent.clone(),
                    event_id: self.event_id.clone(),
                    started_us: at,
                    duration_us: us,
                    replay_name: self.replay_name.clone(),
                    entry,
                })
            })
            .collect()
    }
}

/// The rows of `<dir>/journal.db` written after step `after` (every case), in order: what a
/// Lambda function copies to the shared table after an invocation.
pub fn runs_after(dir: &Path, after: i64) -> Result<Vec<Run>, StoreError> {
    let path = dir.join(JOURNAL_FILE);
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let fail = |e: rusqlite::Error| StoreError::of(&path, e);
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(fail)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
    let mut stmt = conn
        .prepare(
            "SELECT seq, last, correlation_id, agent, event_id, replay_name, steps FROM steps WHERE seq > ?1 ORDER BY seq",
        )
        .map_err(fail)?;
    let rows = stmt
        .query_map([after], |r| {
            Ok(Run {
                seq: r.get(0)?,
                last: r.get(1)?,
                correlation_id: r.get(2)?,
                agent: r.get(3)?,
                event_id: r.get(4)?,
                replay_name: r.get(5)?,
                steps: r.get(6)?,
            })
        })
        .map_err(fail)?;
    rows.collect::<Result<_, _>>().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(case: &str, agent: &str, event: &str, at: i64, entry: Entry) -> StepRow {
        StepRow {
            seq: 0,
            correlation_id: case.into(),
            agent: agent.into(),
            event_id: event.into(),
            started_us: at,
            duration_us: 5,
            replay_name: None,
            entry,
        }
    }

    fn received() -> Entry {
        Entry::Received { event_type: "SupportTriaged".into(), receive_count: 1, traceparent: None }
    }

    fn done() -> Entry {
        Entry::Done { model_us: 0, published: Vec::new() }
    }

    #[test]
    fn a_commit_keeps_each_runs_steps_in_one_row_numbered_in_the_order_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = File::open(dir.path()).unwrap();
        let mut rows = vec![
            step("c1", "payments", "e1", 10, received()),
            step("c1", "orders", "e1", 11, received()),
            step("c2", "payments", "e2", 12, received()),
            step("c1", "payments", "e1", 13, done()),
            step("c1", "orders", "e1", 14, Entry::Duplicate),
        ];
        file.write(&mut rows).unwrap();
        let order: Vec<(i64, &str, &str)> = rows.iter().map(|r| (r.seq, r.agent.as_str(), r.entry.kind())).collect();
        assert_eq!(
            order,
            [
                (1, "payments", "received"),
                (2, "payments", "done"),
                (3, "orders", "received"),
                (4, "orders", "duplicate"),
                (5, "payments", "received")
            ]
        );
        let conn = Connection::open(dir.path().join(JOURNAL_FILE)).unwrap();
        let count: i64 = conn.query_row("SELECT count(*) FROM steps", [], |r| r.get(0)).unwrap();
        assert_eq!(count, 3, "one row per run");
        drop(file);

        // Reopened, the numbering goes on after the last step.
        let mut file = File::open(dir.path()).unwrap();
        let mut more = vec![step("c1", "payments", "e3", 20, received())];
        file.write(&mut more).unwrap();
        assert_eq!(more[0].seq, 6);

        let c1 = read(dir.path(), "c1").unwrap().unwrap();
        let read_back: Vec<(i64, &str, &str, i64)> =
            c1.iter().map(|r| (r.seq, r.event_id.as_str(), r.entry.kind(), r.started_us)).collect();
        assert_eq!(
            read_back,
            [
                (1, "e1", "received", 10),
                (2, "e1", "done", 13),
                (3, "e1", "received", 11),
                (4, "e1", "duplicate", 14),
                (6, "e3", "received", 20)
            ]
        );
        assert!(c1.iter().all(|r| r.duration_us == 5 && r.correlation_id == "c1"));
        assert_eq!(read(dir.path(), "c2").unwrap().unwrap().len(), 1);
        assert!(read(&dir.path().join("elsewhere"), "c1").unwrap().is_none());
    }

    #[test]
    fn another_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join(JOURNAL_FILE)).unwrap();
        conn.pragma_update(None, "application_id", 42).unwrap();
        drop(conn);
        let err = File::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("journal.db") && err.contains("not a Choreo step journal"), "{err}");
        let err = read(dir.path(), "c1").unwrap_err().to_string();
        assert!(err.contains("not a Choreo step journal"), "{err}");
    }
}
