//! A case's notifications, read from `notifier.db` on a read-only connection (for
//! `choreo trace`, while `choreo serve` may be writing).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, params};
use serde::Serialize;

use crate::{NotifierError, STORE_FILE};

/// A notification of a case, as the durable outbox has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseNotification {
    pub customer: String,
    /// The customer's sequence number.
    pub seq: u64,
    pub event_id: String,
    pub event_type: String,
    /// When the notifier stored it (milliseconds since the Unix epoch); it is pushed to every
    /// live session of the customer from then on, and on their next connection otherwise.
    pub created_ms: i64,
    /// Whether the customer acknowledged it (their acknowledged number reached it).
    pub acked: bool,
}

/// The notifications of case `case` (its correlation id) in `<data_dir>/notifier.db`, in the
/// order they were stored; `None` when there is no notifier store there.
pub fn case_notifications(data_dir: &Path, case: &str) -> Result<Option<Vec<CaseNotification>>, NotifierError> {
    let path = data_dir.join(STORE_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let fail =
        |e: rusqlite::Error| NotifierError::Store { path: path.clone(), detail: e.to_string(), retryable: false };
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(fail)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
    // The frame names the case; a scan is fine for an operator's look at one case.
    let mut stmt = conn
        .prepare(
            "SELECT n.customer, n.seq, n.event_id, json_extract(n.frame, '$.event'), n.created_ms, n.seq <= c.acked
             FROM notifications n JOIN customers c ON c.customer = n.customer
             WHERE json_extract(n.frame, '$.case') = ?1
             ORDER BY n.created_ms, n.customer, n.seq",
        )
        .map_err(fail)?;
    let rows = stmt
        .query_map(params![case], |r| {
            Ok(CaseNotification {
                customer: r.get(0)?,
                seq: r.get::<_, i64>(1)? as u64,
                event_id: r.get(2)?,
                event_type: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                created_ms: r.get(4)?,
                acked: r.get(5)?,
            })
        })
        .map_err(fail)?;
    rows.collect::<Result<Vec<_>, _>>().map(Some).map_err(fail)
}
