//! The relay's side of the `outbox` table: its own connection to the back office's file, the
//! oldest pending row of each aggregate, and the columns only the relay writes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use rusqlite::{Connection, OpenFlags, params};

use super::{RelayError, UnrelayedRow};

/// One pending row: the oldest of its aggregate.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub seq: i64,
    pub aggregate: String,
    pub event: String,
}

/// What became of a row the relay handled.
#[derive(Debug, Clone)]
pub(crate) enum Mark {
    Relayed,
    Failed(String),
    Parked(String),
}

pub(crate) struct OutboxDb {
    conn: Connection,
    path: PathBuf,
}

impl OutboxDb {
    /// Opens an existing file (never creates one) and checks that it has the `outbox` table.
    pub fn open(path: &Path) -> Result<Self, RelayError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let storage = |e: rusqlite::Error| RelayError::Storage { path: path.to_path_buf(), detail: e.to_string() };
        if path.is_dir() {
            return Err(RelayError::Storage {
                path: path.to_path_buf(),
                detail: "is a directory, expected the back office's database file".to_owned(),
            });
        }
        let conn = Connection::open_with_flags(path, flags).map_err(storage)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(storage)?;
        conn.prepare(
            "SELECT seq, aggregate, event, created_at, relayed_at, parked_at, error, attempts FROM outbox LIMIT 0",
        )
        .map_err(|e| RelayError::NotAnOutbox { path: path.to_path_buf(), detail: e.to_string() })?;
        Ok(Self { conn, path: path.to_path_buf() })
    }

    fn fail(&self, e: rusqlite::Error) -> RelayError {
        RelayError::Storage { path: self.path.clone(), detail: e.to_string() }
    }

    /// SQLite's `data_version`: changes when another connection commits to the file.
    pub fn data_version(&self) -> Result<i64, RelayError> {
        self.conn.pragma_query_value(None, "data_version", |r| r.get(0)).map_err(|e| self.fail(e))
    }

    /// The oldest pending row of each aggregate not in `skip`, oldest first, at most `limit`.
    pub fn heads(&self, limit: usize, skip: &[String]) -> Result<Vec<Head>, RelayError> {
        let run = || -> rusqlite::Result<Vec<Head>> {
            // SQLite takes the bare column `event` from the row that holds min(seq).
            let mut stmt = self.conn.prepare_cached(
                "SELECT min(seq), aggregate, event FROM outbox WHERE relayed_at IS NULL AND parked_at IS NULL
                 GROUP BY aggregate ORDER BY 1 LIMIT ?1",
            )?;
            let wanted = i64::try_from(limit + skip.len()).unwrap_or(i64::MAX);
            let rows =
                stmt.query_map([wanted], |r| Ok(Head { seq: r.get(0)?, aggregate: r.get(1)?, event: r.get(2)? }))?;
            let mut heads = Vec::with_capacity(limit);
            for row in rows {
                let head = row?;
                if !skip.contains(&head.aggregate) {
                    heads.push(head);
                }
                if heads.len() == limit {
                    break;
                }
            }
            Ok(heads)
        };
        run().map_err(|e| self.fail(e))
    }

    /// Records what became of each row, in one transaction.
    pub fn mark(&mut self, marks: &[(i64, Mark)]) -> Result<(), RelayError> {
        if marks.is_empty() {
            return Ok(());
        }
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let run = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for (seq, mark) in marks {
                match mark {
                    Mark::Relayed => tx
                        .prepare_cached("UPDATE outbox SET relayed_at = ?1 WHERE seq = ?2 AND relayed_at IS NULL")?
                        .execute(params![now, seq])?,
                    Mark::Failed(error) => tx
                        .prepare_cached("UPDATE outbox SET attempts = attempts + 1, error = ?1 WHERE seq = ?2")?
                        .execute(params![error, seq])?,
                    Mark::Parked(error) => tx
                        .prepare_cached(
                            "UPDATE outbox SET parked_at = ?1, error = ?2 WHERE seq = ?3 AND relayed_at IS NULL",
                        )?
                        .execute(params![now, error, seq])?,
                };
            }
            tx.commit()
        };
        run(&mut self.conn).map_err(|e| self.fail(e))
    }

    /// Rows still to relay.
    pub fn pending(&self) -> Result<u64, RelayError> {
        self.conn
            .prepare_cached("SELECT count(*) FROM outbox WHERE relayed_at IS NULL AND parked_at IS NULL")
            .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(|e| self.fail(e))
    }

    /// Every parked row, oldest first, with the reason it was parked.
    pub fn parked(&self) -> Result<Vec<UnrelayedRow>, RelayError> {
        let run = || -> rusqlite::Result<Vec<UnrelayedRow>> {
            let mut stmt = self.conn.prepare_cached(
                "SELECT seq, aggregate, event, coalesce(error, '') FROM outbox WHERE parked_at IS NOT NULL ORDER BY seq",
            )?;
            let rows = stmt.query_map([], |r| {
                let event: String = r.get(2)?;
                Ok(UnrelayedRow { seq: r.get(0)?, aggregate: r.get(1)?, event_id: event_id(&event), reason: r.get(3)? })
            })?;
            rows.collect()
        };
        run().map_err(|e| self.fail(e))
    }

    /// Makes a parked row pending again; false if `seq` is not parked.
    pub fn requeue(&self, seq: i64) -> Result<bool, RelayError> {
        self.conn
            .prepare_cached("UPDATE outbox SET parked_at = NULL WHERE seq = ?1 AND parked_at IS NOT NULL")
            .and_then(|mut s| s.execute([seq]))
            .map(|n| n == 1)
            .map_err(|e| self.fail(e))
    }
}

/// The `id` of a stored event, if it is JSON with a string `id`.
pub(crate) fn event_id(event: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(event).ok()?;
    value.get("id")?.as_str().map(str::to_owned)
}
