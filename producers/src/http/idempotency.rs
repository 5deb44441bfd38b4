//! Idempotency records of support requests, in `<data_dir>/ingest.db` (SQLite, WAL): per
//! customer and `Idempotency-Key`, the request as first received and the event made for it,
//! and whether the bus has accepted that event yet.
//!
//! Requests with one key are serialized in this process (a lock per key stripe), so two at once
//! make one case and publish once. Across processes sharing the file, the record still holds
//! one event per key; at worst both publish that same event id, which consumers dedupe.

use std::hash::{BuildHasher, RandomState};
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

/// The longest `Idempotency-Key` taken.
pub const MAX_KEY_LEN: usize = 255;

const STRIPES: usize = 64;

/// What the store has for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// The request as first received (canonical JSON).
    pub request: String,
    /// The structured CloudEvent made for it.
    pub event: String,
    /// Whether the bus accepted the event.
    pub published: bool,
}

/// The store and the per-key locks.
pub(crate) struct Idempotency {
    db: Arc<Mutex<Connection>>,
    /// Where the records are instead of `db`: a table every instance shares.
    table: Option<super::dynamo::TableRecords>,
    locks: Vec<tokio::sync::Mutex<()>>,
    hasher: RandomState,
}

/// A failure of the store.
#[derive(Debug, thiserror::Error)]
#[error("idempotency store {path}: {source}")]
pub struct StoreError {
    path: String,
    #[source]
    source: rusqlite::Error,
}

impl Idempotency {
    /// Opens (or creates) `<data_dir>/ingest.db`.
    pub(crate) fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join("ingest.db");
        let error = |source| StoreError { path: path.display().to_string(), source };
        let db = Connection::open(&path).map_err(error)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS support_requests (
                 customer TEXT NOT NULL,
                 idempotency_key TEXT NOT NULL,
                 request TEXT NOT NULL,
                 event TEXT NOT NULL,
                 published INTEGER NOT NULL DEFAULT 0,
                 created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
                 PRIMARY KEY (customer, idempotency_key)
             ) WITHOUT ROWID;",
        )
        .map_err(error)?;
        Ok(Self {
            db: Arc::new(Mutex::new(db)),
            table: None,
            locks: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            hasher: RandomState::new(),
        })
    }

    /// Keeps the records in `table` (DynamoDB) instead of the file.
    pub(crate) fn set_table(&mut self, table: super::dynamo::TableRecords) {
        self.table = Some(table);
    }

    /// The lock of a key's stripe: hold it from [`Idempotency::claim`] until the outcome is
    /// recorded.
    pub(crate) fn lock(&self, customer: &str, key: &str) -> &tokio::sync::Mutex<()> {
        let stripe = self.hasher.hash_one((customer, key)) as usize % STRIPES;
        &self.locks[stripe]
    }

    /// Records `request` and `event` for the key unless it has a record; answers the record the
    /// key has now (the new one or the earlier one).
    pub(crate) async fn claim(
        &self,
        customer: &str,
        key: &str,
        request: String,
        event: String,
    ) -> Result<Record, String> {
        if let Some(table) = &self.table {
            return table.claim(customer, key, request, event).await;
        }
        let (customer, key) = (customer.to_owned(), key.to_owned());
        self.blocking(move |db| {
            let tx = db.transaction()?;
            tx.execute(
                "INSERT OR IGNORE INTO support_requests (customer, idempotency_key, request, event) VALUES (?1, ?2, ?3, ?4)",
                params![customer, key, request, event],
            )?;
            let record = tx
                .query_row(
                    "SELECT request, event, published FROM support_requests WHERE customer = ?1 AND idempotency_key = ?2",
                    params![customer, key],
                    |row| Ok(Record { request: row.get(0)?, event: row.get(1)?, published: row.get(2)? }),
                )
                .optional()?;
            tx.commit()?;
            record.ok_or(rusqlite::Error::QueryReturnedNoRows)
        })
        .await
    }

    /// Marks the key's event accepted by the bus.
    pub(crate) async fn mark_published(&self, customer: &str, key: &str) -> Result<(), String> {
        if let Some(table) = &self.table {
            return table.mark_published(customer, key).await;
        }
        let (customer, key) = (customer.to_owned(), key.to_owned());
        self.blocking(move |db| {
            db.execute(
                "UPDATE support_requests SET published = 1 WHERE customer = ?1 AND idempotency_key = ?2",
                params![customer, key],
            )
            .map(drop)
        })
        .await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, String> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            let mut db = db.lock().map_err(|_| "the idempotency store lock is poisoned".to_owned())?;
            f(&mut db).map_err(|e| format!("idempotency store: {e}"))
        })
        .await
        .map_err(|e| format!("idempotency store task: {e}"))?
    }
}

/// Checks an `Idempotency-Key` value: 1 to 255 visible ASCII characters.
pub(crate) fn check_key(key: &[u8]) -> Result<&str, String> {
    if key.is_empty() {
        return Err("Idempotency-Key is empty".into());
    }
    if key.len() > MAX_KEY_LEN {
        return Err(format!("Idempotency-Key is {} characters; at most {MAX_KEY_LEN} are taken", key.len()));
    }
    match std::str::from_utf8(key) {
        Ok(s) if s.bytes().all(|b| b.is_ascii_graphic()) => Ok(s),
        _ => Err("Idempotency-Key must be visible ASCII characters".into()),
    }
}
