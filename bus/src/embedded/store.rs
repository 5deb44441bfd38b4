//! The SQLite file under the data directory: opening it (and refusing one that is not ours),
//! its schema, and SQLite's errors turned into faults an operator can act on.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::api::{BusError, StorageFault};

/// `PRAGMA application_id` of a Choreo bus ("CHOR").
const APPLICATION_ID: i32 = 0x4348_4F52;
/// The schema this build writes and reads.
const SCHEMA_VERSION: i32 = 1;
const FILE_NAME: &str = "bus.db";

/// How hard each commit is pushed to disk. Both survive `kill -9` of the process (SQLite's WAL
/// is written before a commit returns); only `Full` also survives a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: every commit is fsynced.
    #[default]
    Full,
    /// `synchronous=NORMAL`: the WAL is fsynced at checkpoints only.
    Normal,
}

impl Durability {
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
}

const SCHEMA: &str = r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta VALUES ('generation', 0);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    ingested_ms INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE inboxes (name TEXT PRIMARY KEY, created_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    inbox TEXT NOT NULL,
    event_seq INTEGER NOT NULL,
    rule TEXT NOT NULL,
    target TEXT NOT NULL,
    visible_ms INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT,
    sent_ms INTEGER NOT NULL,
    ingested_ms INTEGER NOT NULL,
    policy TEXT,
    last_error TEXT,
    dead_letter TEXT
);
CREATE INDEX messages_ready ON messages (inbox, visible_ms, id);
CREATE INDEX messages_event ON messages (event_seq);
CREATE TABLE rules (
    name TEXT PRIMARY KEY,
    pattern TEXT NOT NULL,
    state TEXT NOT NULL,
    description TEXT,
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE targets (
    rule TEXT NOT NULL,
    id TEXT NOT NULL,
    inbox TEXT NOT NULL,
    dead_letter_inbox TEXT NOT NULL,
    policy TEXT NOT NULL,
    PRIMARY KEY (rule, id)
) WITHOUT ROWID;
CREATE TABLE archives (
    name TEXT PRIMARY KEY,
    pattern TEXT,
    retention_days INTEGER NOT NULL,
    description TEXT,
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE archived (
    archive TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    archived_ms INTEGER NOT NULL,
    PRIMARY KEY (archive, time_ms, seq)
) WITHOUT ROWID;
CREATE INDEX archived_age ON archived (archive, archived_ms);
CREATE INDEX archived_seq ON archived (seq);
CREATE TABLE replays (
    name TEXT PRIMARY KEY,
    archive TEXT NOT NULL,
    description TEXT,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    rules TEXT,
    state TEXT NOT NULL,
    reason TEXT,
    cursor_time INTEGER NOT NULL,
    cursor_seq INTEGER NOT NULL,
    last_replayed_ms INTEGER,
    total INTEGER NOT NULL,
    replayed INTEGER NOT NULL DEFAULT 0,
    deliveries INTEGER NOT NULL DEFAULT 0,
    started_ms INTEGER NOT NULL,
    ended_ms INTEGER
) WITHOUT ROWID;
"#;

/// WAL pages past which the writer checkpoints itself.
const WRITER_CHECKPOINT_PAGES: i64 = 16_384;
/// How often the checkpointer copies the WAL into the database. A page written again and
/// again (an inbox's last pages, its index) is copied once per round, not once per commit.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Copies committed WAL pages into the database file from its own connection, beside the
/// writer rather than inside its commits; stops when `stop` is dropped.
pub(crate) fn checkpointer(path: PathBuf, stop: std::sync::mpsc::Receiver<()>) {
    let Ok(conn) =
        Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
    else {
        return; // the writer's own checkpoints still bound the WAL
    };
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        // PASSIVE never waits for the writer; a failure here is retried on the next round.
        let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    }
}

/// Maps SQLite's errors on the store at `path` to [`BusError::Storage`].
#[derive(Debug, Clone)]
pub(crate) struct Faults {
    pub path: PathBuf,
}

impl Faults {
    pub fn map(&self, e: rusqlite::Error) -> BusError {
        let kind = match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StorageFault::Locked,
            Some(ErrorCode::DiskFull) => StorageFault::Full,
            Some(ErrorCode::DatabaseCorrupt) => StorageFault::Corrupt,
            Some(ErrorCode::NotADatabase) => StorageFault::Foreign,
            Some(ErrorCode::ReadOnly) => StorageFault::ReadOnly,
            Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => StorageFault::CannotOpen,
            Some(ErrorCode::SystemIoFailure) => StorageFault::Io,
            _ => return BusError::Internal(format!("{}: {e}", self.path.display())),
        };
        let detail = match kind {
            StorageFault::Locked => format!("{e}; another process holds the write lock (gave up waiting)"),
            StorageFault::Full => format!("{e}; free space or raise the storage limit, then retry"),
            _ => e.to_string(),
        };
        BusError::Storage { path: self.path.clone(), kind, detail }
    }

    pub fn fault(&self, kind: StorageFault, detail: impl Into<String>) -> BusError {
        BusError::Storage { path: self.path.clone(), kind, detail: detail.into() }
    }
}

/// Opens (creating if needed) the bus store in `dir`.
pub(crate) fn open(
    dir: &Path,
    durability: Durability,
    busy_timeout: Duration,
    storage_limit: Option<u64>,
) -> Result<(Connection, Faults), BusError> {
    let faults = Faults { path: dir.join(FILE_NAME) };
    if dir.exists() && !dir.is_dir() {
        return Err(faults.fault(StorageFault::CannotOpen, format!("{} is not a directory", dir.display())));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| faults.fault(StorageFault::CannotOpen, format!("cannot create {}: {e}", dir.display())))?;
    check_header(&faults)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(&faults.path, flags).map_err(|e| faults.map(e))?;
    conn.busy_timeout(busy_timeout).map_err(|e| faults.map(e))?;
    // Every statement of the writer stays prepared (there are more than the default 16).
    conn.set_prepared_statement_cache_capacity(128);
    // And stays planned: without the planner's stability guarantee SQLite (built with STAT4)
    // prepares a cached statement again whenever a bound value might change its plan.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(|e| faults.map(e))?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).map_err(|e| faults.map(e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(faults.fault(StorageFault::Io, format!("the file system refused WAL mode (got {mode})")));
    }
    conn.pragma_update(None, "synchronous", durability.pragma()).map_err(|e| faults.map(e))?;
    // Each call runs in a savepoint, whose journal (a copy of each page the call changes) would
    // spill to a temporary file past 64 KiB: in memory it never touches the disk.
    conn.pragma_update(None, "temp_store", "MEMORY").map_err(|e| faults.map(e))?;
    // The checkpointer thread keeps the WAL short; the writer checkpoints itself only as a
    // backstop, so that a checkpoint seldom stalls a commit.
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES).map_err(|e| faults.map(e))?;
    if let Some(bytes) = storage_limit {
        let page: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0)).map_err(|e| faults.map(e))?;
        let pages = (bytes as i64 / page.max(1)).max(1);
        conn.pragma_update(None, "max_page_count", pages).map_err(|e| faults.map(e))?;
    }
    init_or_check(&conn, &faults)?;
    Ok((conn, faults))
}

/// A file that does not start with SQLite's header is refused before SQLite touches it.
fn check_header(faults: &Faults) -> Result<(), BusError> {
    let mut file = match std::fs::File::open(&faults.path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(faults.fault(StorageFault::CannotOpen, e.to_string())),
    };
    let mut head = [0u8; 16];
    let mut read = 0;
    while read < head.len() {
        match file.read(&mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => return Err(faults.fault(StorageFault::Io, e.to_string())),
        }
    }
    if read == 0 {
        return Ok(());
    }
    if head[..read] != b"SQLite format 3\0"[..read] || read < 16 {
        return Err(faults.fault(
            StorageFault::Foreign,
            "the file is not a SQLite database; point --data-dir at a Choreo data directory or an empty one",
        ));
    }
    Ok(())
}

fn init_or_check(conn: &Connection, faults: &Faults) -> Result<(), BusError> {
    let app: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0)).map_err(|e| faults.map(e))?;
    let version: i32 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(|e| faults.map(e))?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema WHERE type = 'table'", [], |r| r.get(0))
        .map_err(|e| faults.map(e))?;
    if app == 0 && version == 0 && tables == 0 {
        let script = format!(
            "BEGIN IMMEDIATE; {SCHEMA} PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        );
        return conn.execute_batch(&script).map_err(|e| faults.map(e));
    }
    if app != APPLICATION_ID {
        return Err(faults.fault(
            StorageFault::Foreign,
            format!("the database belongs to another application (application_id {app:#x}, {tables} tables)"),
        ));
    }
    if version > SCHEMA_VERSION {
        return Err(faults
            .fault(StorageFault::Newer, format!("schema version {version}; this build reads up to {SCHEMA_VERSION}")));
    }
    Ok(())
}
