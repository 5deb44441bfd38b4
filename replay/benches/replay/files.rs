//! The replay bench's look into the data directory's SQLite files, beside the runtime: the
//! counters its proof compares before and after a replay.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use choreo_consumers::local::BACKOFFICE_FILE;
use choreo_consumers::store::STORE_FILE;
use rusqlite::Connection;

use super::AGENT;

/// The counters the proof compares before and after a replay, read from the databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub refunds: i64,
    pub ledger_rows: i64,
    pub started_rows: i64,
    pub suppressed: i64,
    /// Model turns and agent runs, summed over the cases (the budget's accounting).
    pub turns: i64,
    pub hops: i64,
}

/// Read-only (and one delete) access to the data directory's SQLite files, beside the runtime.
pub struct Files {
    agents: Connection,
    backoffice: Connection,
}

impl Files {
    pub fn open(data: &Path) -> Result<Self, String> {
        let open = |file: &str| {
            let conn = Connection::open(data.join(file)).map_err(|e| format!("open {file}: {e}"))?;
            conn.busy_timeout(Duration::from_secs(10)).map_err(|e| e.to_string())?;
            Ok::<_, String>(conn)
        };
        Ok(Self { agents: open(STORE_FILE)?, backoffice: open(BACKOFFICE_FILE)? })
    }

    fn one(conn: &Connection, sql: &str) -> Result<i64, String> {
        conn.query_row(sql, [], |r| r.get(0)).map_err(|e| format!("{sql}: {e}"))
    }

    pub fn processed(&self) -> Result<i64, String> {
        Self::one(&self.agents, "SELECT count(*) FROM processed WHERE agent = 'payments'")
    }

    /// Checkpoints the agents' store and the bus (`bus.db`): PASSIVE copies all it can.
    pub fn checkpoint(&self, data: &Path) -> Result<(), String> {
        let bus = Connection::open(data.join("bus.db")).map_err(|e| format!("open bus.db: {e}"))?;
        for conn in [&self.agents, &bus] {
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())).map_err(|e| format!("checkpoint: {e}"))?;
        }
        Ok(())
    }

    pub fn forget_processed(&self) -> Result<usize, String> {
        self.agents.execute("DELETE FROM processed WHERE agent = ?1", [AGENT]).map_err(|e| e.to_string())
    }

    pub fn counters(&self) -> Result<Counters, String> {
        Ok(Counters {
            refunds: Self::one(&self.backoffice, "SELECT count(*) FROM refunds")?,
            ledger_rows: Self::one(&self.agents, "SELECT count(*) FROM effects")?,
            started_rows: Self::one(&self.agents, "SELECT count(*) FROM effects WHERE state <> 'done'")?,
            suppressed: Self::one(&self.agents, "SELECT coalesce(sum(suppressed), 0) FROM effects")?,
            turns: Self::one(&self.agents, "SELECT coalesce(sum(turns), 0) FROM case_spend")?,
            hops: Self::one(&self.agents, "SELECT coalesce(sum(hops), 0) FROM case_spend")?,
        })
    }

    pub fn outcomes(&self) -> rusqlite::Result<BTreeMap<String, i64>> {
        let sql = "SELECT outcome, count(*) FROM processed WHERE agent = 'payments' GROUP BY outcome";
        self.agents.prepare(sql)?.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
    }
}
