//! The runtime's own state in one SQLite file (`<data-dir>/agents.db`): the effect ledger,
//! the case store (events, notes, spend) and which events each agent has handled. (The step
//! journal has a file of its own, see [`crate::journal`]; stores written before it hold their
//! steps in a `steps` table here, still read by `choreo trace`.)

mod cases;
mod dynamo;
mod dynamo_cases;
mod dynamo_trace;
mod effects;
mod ledger;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

pub use cases::{CaseEvent, CaseNote, CaseStore, Exhausted, NoteKind, Spend};
pub use dynamo::DynamoLedger;
pub use dynamo_trace::AwsCase;
pub use effects::{Ledger, NO_COMPLETION, Recorded};
pub use ledger::{Answer, Claim, ClaimMeta, EffectRecord, EffectState, PriorRun, canonical, effect_key};

/// The file name of the store in a data directory.
pub const STORE_FILE: &str = "agents.db";

/// The WAL's size, in pages, at which a commit checkpoints it itself (SQLite's default: 1000).
const BACKSTOP_CHECKPOINT_PAGES: i64 = 16_384;

/// Our `application_id`, so that another application's database is not taken for ours.
pub(crate) const APPLICATION_ID: i32 = 0x4348_4147; // "CHAG"
/// Tables added since are created `IF NOT EXISTS` on open and ignored by older code, so adding
/// one keeps the version: an older binary still opens it.
const SCHEMA_VERSION: i32 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS effects (
    key TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    event_id TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    args TEXT NOT NULL,
    state TEXT NOT NULL,
    result TEXT,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    suppressed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS effects_by_case ON effects (correlation_id);
CREATE INDEX IF NOT EXISTS effects_by_event ON effects (event_id);
CREATE TABLE IF NOT EXISTS processed (
    agent TEXT NOT NULL,
    event_id TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (agent, event_id)
);
CREATE TABLE IF NOT EXISTS case_events (
    correlation_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    source TEXT NOT NULL,
    causation_id TEXT,
    time TEXT,
    data TEXT NOT NULL,
    PRIMARY KEY (correlation_id, event_id)
);
CREATE TABLE IF NOT EXISTS case_notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    correlation_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS case_notes_by_case ON case_notes (correlation_id);
CREATE TABLE IF NOT EXISTS case_spend (
    correlation_id TEXT PRIMARY KEY,
    turns INTEGER NOT NULL DEFAULT 0,
    tokens INTEGER NOT NULL DEFAULT 0,
    hops INTEGER NOT NULL DEFAULT 0
);
";

/// Why the store failed; it names the file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {detail}", path.display())]
pub struct StoreError {
    pub path: PathBuf,
    pub detail: String,
    /// A locked or busy database: trying again later may work.
    pub retryable: bool,
}

/// Connections that only read: WAL lets them read beside the writer, so agents that look
/// something up never queue behind a write.
const READERS: usize = 4;

/// The runtime's state. Calls are short SQLite statements: writes on one connection behind a
/// lock, reads on a few others.
pub struct Store {
    conn: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: std::sync::atomic::AtomicUsize,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) `<dir>/agents.db`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(STORE_FILE);
        let fail = |e: rusqlite::Error| StoreError::of(&path, e);
        std::fs::create_dir_all(dir).map_err(|e| StoreError {
            path: dir.to_owned(),
            detail: format!("cannot create the data directory: {e}"),
            retryable: false,
        })?;
        let conn = open_checked(&path, APPLICATION_ID, SCHEMA_VERSION, "a Choreo agents store", SCHEMA)?;
        conn.set_prepared_statement_cache_capacity(64);
        // Planned once: SQLite (built with STAT4) would otherwise prepare a cached statement
        // again whenever a bound value might change its plan, on every call of the hot ones.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(fail)?;
        // The journal's thread checkpoints passively after each round (see `journal::writer`);
        // a checkpoint inside a commit here would fsync with the store's lock held, every agent
        // waiting. This is the backstop, should the journal's checkpoints fall behind.
        conn.pragma_update(None, "wal_autocheckpoint", BACKSTOP_CHECKPOINT_PAGES).map_err(fail)?;
        let readers =
            (0..READERS).map(|_| open_reader(&path).map(Mutex::new)).collect::<Result<_, _>>().map_err(fail)?;
        Ok(Self { conn: Mutex::new(conn), readers, next_reader: Default::default(), path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (each call is a statement or
        // a transaction), so a poisoned lock is safe to take.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection for reads: a free one if any, else the next in turn. It sees every write
    /// committed before the read began.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        for reader in &self.readers {
            if let Ok(conn) = reader.try_lock() {
                return conn;
            }
        }
        let turn = self.next_reader.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.readers.len();
        self.readers[turn].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in one read transaction on a reader: one look at the WAL for all its reads.
    /// Its `BEGIN` and `COMMIT` are prepared once (rusqlite's `transaction()` prepares them
    /// on every call).
    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let conn = self.reader();
        let statement = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map(|_| ());
        statement("BEGIN").map_err(|e| self.err(e))?;
        let result = f(&conn);
        if statement("COMMIT").is_err() && !conn.is_autocommit() {
            // A read transaction left open would hold its snapshot (and the WAL) forever.
            let _ = conn.execute_batch("ROLLBACK");
        }
        result.map_err(|e| self.err(e))
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        StoreError::of(&self.path, e)
    }

    /// Whether `agent` has already handled the CloudEvent `event_id`.
    pub fn is_processed(&self, agent: &str, event_id: &str) -> Result<bool, StoreError> {
        processed_in(&self.reader(), agent, event_id).map_err(|e| self.err(e))
    }

    /// Records events `agent` has handled, in one transaction: each as processed (with how it
    /// ended), and one suppression more on each ledger row that answered it in place of the
    /// model (see [`Store::prior_run`]).
    pub fn finish(&self, agent: &str, handled: &[Finished<'_>]) -> Result<(), StoreError> {
        if handled.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut processed = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO processed (agent, event_id, correlation_id, outcome, at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(|e| self.err(e))?;
            let mut answered = tx
                .prepare_cached("UPDATE effects SET suppressed = suppressed + 1 WHERE key = ?1")
                .map_err(|e| self.err(e))?;
            let at = now_ms();
            for h in handled {
                processed.execute((agent, h.event_id, h.correlation_id, h.outcome, at)).map_err(|e| self.err(e))?;
                for key in h.answered {
                    answered.execute([key]).map_err(|e| self.err(e))?;
                }
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }
}

/// Whether `agent` has handled CloudEvent `event_id`, read on `conn`.
fn processed_in(conn: &Connection, agent: &str, event_id: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM processed WHERE agent = ?1 AND event_id = ?2")?.exists((agent, event_id))
}

/// One event an agent has handled, for [`Store::finish`].
#[derive(Debug, Clone, Copy)]
pub struct Finished<'a> {
    pub event_id: &'a str,
    pub correlation_id: &'a str,
    /// How the run ended (`completed`, `escalated`, `no_completion`).
    pub outcome: &'a str,
    /// The ledger keys that answered the run in place of the model.
    pub answered: &'a [String],
}

/// Opens (creating if needed) the SQLite file at `path` for writing, in WAL mode with
/// `synchronous=NORMAL` (a process crash, `kill -9` included, loses nothing committed, with no
/// fsync per commit), after checking that it is `what` (its `application_id`, or a new file)
/// and not written by a newer Choreo (its `user_version`); then creates what of `schema` is not
/// there yet and stamps both.
pub(crate) fn open_checked(
    path: &Path,
    app_id: i32,
    version: i32,
    what: &str,
    schema: &str,
) -> Result<Connection, StoreError> {
    let fail = |e: rusqlite::Error| StoreError::of(path, e);
    let refuse = |detail: String| StoreError { path: path.to_owned(), detail, retryable: false };
    let conn = Connection::open(path).map_err(fail)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
    let found: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0)).map_err(fail)?;
    let written: i32 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(fail)?;
    if found != 0 && found != app_id {
        return Err(refuse(format!("not {what}")));
    }
    if written > version {
        return Err(refuse("written by a newer Choreo".into()));
    }
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;").map_err(fail)?;
    conn.execute_batch(schema).map_err(fail)?;
    conn.pragma_update(None, "application_id", app_id).map_err(fail)?;
    conn.pragma_update(None, "user_version", version).map_err(fail)?;
    Ok(conn)
}

fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(32);
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.pragma_update(None, "query_only", true)?;
    // No memory mapping: with writes in between, SQLite unmaps the file at the start of a
    // read (a TLB shootdown on every core) and faults its pages in again, which cost more
    // than the read calls it saves.
    Ok(conn)
}

impl StoreError {
    pub(crate) fn of(path: &Path, e: rusqlite::Error) -> Self {
        let retryable = matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        StoreError { path: path.to_owned(), detail: e.to_string(), retryable }
    }
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processed_events_are_remembered_per_agent_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            assert!(!store.is_processed("payments", "e1").unwrap());
            let handled = Finished { event_id: "e1", correlation_id: "c1", outcome: "completed", answered: &[] };
            store.finish("payments", &[handled]).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert!(store.is_processed("payments", "e1").unwrap());
        assert!(!store.is_processed("orders", "e1").unwrap());
    }

    #[test]
    fn another_applications_database_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join(STORE_FILE)).unwrap();
        conn.pragma_update(None, "application_id", 42).unwrap();
        drop(conn);
        let err = Store::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("agents.db") && err.contains("not a Choreo agents store"), "{err}");
    }
}
