//! A case's record, read on read-only connections: its events (case store) and its effects
//! (ledger) from `agents.db`, its steps from `journal.db` (and from `agents.db`'s own `steps`
//! table, where a store written before the journal had its file keeps them). Safe while
//! `choreo serve` writes (WAL).

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use super::{Entry, StepRow};
use crate::store::{STORE_FILE, StoreError};

/// Why a case could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("no agents store at {}: no agent has run with this data directory", .0.display())]
    NoStore(PathBuf),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("case `{case}` not found in {}: no event or step of it", .path.display())]
    UnknownCase { case: String, path: PathBuf },
}

/// An event of the case, as the case store has it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseEvent {
    pub id: String,
    pub event_type: String,
    pub source: String,
    pub causation_id: Option<String>,
    pub time: Option<DateTime<Utc>>,
    /// The order the case store got it in.
    pub seq: i64,
}

/// An effect of the case in the ledger.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Effect {
    pub agent: String,
    pub event_id: String,
    pub tool: String,
    /// Canonical JSON.
    pub args: String,
    pub state: String,
    /// How many later calls got the recorded result instead of acting again.
    pub suppressed: u32,
}

/// Everything `agents.db` knows of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseLog {
    pub case: String,
    pub store: PathBuf,
    pub events: Vec<CaseEvent>,
    /// In the order written (an older store's steps first).
    pub steps: Vec<StepRow>,
    pub effects: Vec<Effect>,
    /// Whether there is a step journal at all (a store written before it existed has none).
    pub journal: bool,
}

/// Reads case `case` from `<data_dir>/agents.db` and `<data_dir>/journal.db`.
pub fn read_case(data_dir: &Path, case: &str) -> Result<CaseLog, ReadError> {
    let path = data_dir.join(STORE_FILE);
    if !path.is_file() {
        return Err(ReadError::NoStore(path));
    }
    let fail = |e: rusqlite::Error| StoreError { path: path.clone(), detail: e.to_string(), retryable: false };
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(fail)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
    let app: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0)).map_err(fail)?;
    if app != crate::store::APPLICATION_ID {
        return Err(StoreError { path, detail: "not a Choreo agents store".into(), retryable: false }.into());
    }
    // One read transaction: events and effects as of one moment.
    conn.execute_batch("BEGIN").map_err(fail)?;
    let has = |table: &str| -> rusqlite::Result<bool> {
        conn.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")?.exists([table])
    };
    let older = has("steps").map_err(fail)?;
    let events = events(&conn, case).map_err(fail)?;
    let mut steps = if older { older_steps(&conn, case).map_err(fail)? } else { Vec::new() };
    let effects = effects(&conn, case).map_err(fail)?;
    conn.execute_batch("COMMIT").map_err(fail)?;
    // Outside the store's transaction: a step written meanwhile may name an event not read.
    let written = super::file::read(data_dir, case)?;
    let journal = older || written.is_some();
    steps.extend(written.unwrap_or_default());
    if events.is_empty() && steps.is_empty() {
        return Err(ReadError::UnknownCase { case: case.to_owned(), path });
    }
    Ok(CaseLog { case: case.to_owned(), store: path, events, steps, effects, journal })
}

fn events(conn: &Connection, case: &str) -> rusqlite::Result<Vec<CaseEvent>> {
    let mut stmt = conn.prepare(
        "SELECT event_id, type, source, causation_id, time, seq FROM case_events
         WHERE correlation_id = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([case], |r| {
        let time: Option<String> = r.get(4)?;
        Ok(CaseEvent {
            id: r.get(0)?,
            event_type: r.get(1)?,
            source: r.get(2)?,
            causation_id: r.get(3)?,
            time: time.and_then(|t| DateTime::parse_from_rfc3339(&t).ok()).map(|t| t.with_timezone(&Utc)),
            seq: r.get(5)?,
        })
    })?;
    rows.collect()
}

/// Steps a store written before the journal had its own file keeps in its `steps` table.
fn older_steps(conn: &Connection, case: &str) -> rusqlite::Result<Vec<StepRow>> {
    let mut stmt = conn.prepare(
        "SELECT seq, agent, event_id, started_us, duration_us, replay_name, detail FROM steps
         WHERE correlation_id = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([case], |r| {
        let detail: String = r.get(6)?;
        // A row this version cannot read (a newer kind) is kept as what it is not: skipped.
        let entry: Option<Entry> = serde_json::from_str(&detail).ok();
        Ok(entry.map(|entry| StepRow {
            seq: r.get(0).unwrap_or_default(),
            correlation_id: case.to_owned(),
            agent: r.get(1).unwrap_or_default(),
            event_id: r.get(2).unwrap_or_default(),
            started_us: r.get(3).unwrap_or_default(),
            duration_us: r.get(4).unwrap_or_default(),
            replay_name: r.get(5).unwrap_or_default(),
            entry,
        }))
    })?;
    rows.filter_map(Result::transpose).collect()
}

fn effects(conn: &Connection, case: &str) -> rusqlite::Result<Vec<Effect>> {
    let mut stmt = conn.prepare(
        "SELECT agent, event_id, tool, args, state, suppressed FROM effects
         WHERE correlation_id = ?1 ORDER BY started_at, rowid",
    )?;
    let rows = stmt.query_map([case], |r| {
        Ok(Effect {
            agent: r.get(0)?,
            event_id: r.get(1)?,
            tool: r.get(2)?,
            args: r.get(3)?,
            state: r.get(4)?,
            suppressed: r.get(5)?,
        })
    })?;
    rows.collect()
}
