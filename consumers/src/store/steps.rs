//! The step journal's rows, written on the store's own connection: the runtime's writes then
//! wait on the store's lock for one short transaction, never on SQLite's busy backoff.

use rusqlite::TransactionBehavior;

use super::{Store, StoreError};

/// A journal row ready to insert (its `detail` already serialized, off the store's lock).
pub(crate) struct StepInsert<'a> {
    pub correlation_id: &'a str,
    pub agent: &'a str,
    pub event_id: &'a str,
    pub kind: &'static str,
    pub started_us: i64,
    pub duration_us: i64,
    pub replay_name: Option<&'a str>,
    pub detail: String,
}

impl Store {
    /// Inserts `rows` in one transaction (the journal keeps them few: agents wait on the lock
    /// meanwhile); answers their row ids (the journal's `seq`), in order.
    pub(crate) fn insert_steps(&self, rows: &[StepInsert<'_>]) -> Result<Vec<i64>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| self.err(e))?;
        let mut seqs = Vec::with_capacity(rows.len());
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO steps (correlation_id, agent, event_id, kind, started_us, duration_us, replay_name, detail)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(|e| self.err(e))?;
            for row in rows {
                stmt.execute((
                    row.correlation_id,
                    row.agent,
                    row.event_id,
                    row.kind,
                    row.started_us,
                    row.duration_us,
                    row.replay_name,
                    &row.detail,
                ))
                .map_err(|e| self.err(e))?;
                seqs.push(tx.last_insert_rowid());
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(seqs)
    }
}
