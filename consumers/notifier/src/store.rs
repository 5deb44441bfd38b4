//! The durable outbox, `<data_dir>/notifier.db`: one writer thread owns the write connection
//! and commits whatever is waiting (inserts and acknowledgements) in one transaction (group
//! commit); readers use a small pool of connections on the blocking pool. A customer's live
//! sessions are woken once their notification is committed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use choreo_schemas::Envelope;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{Semaphore, oneshot};

use crate::fanout::Fanout;
use crate::{NotifierError, STORE_FILE, customer_of};

/// `PRAGMA application_id` of a notifier store ("CHNO").
const APPLICATION_ID: i32 = 0x4348_4E4F;
const SCHEMA_VERSION: i32 = 1;
/// The most jobs one transaction commits.
const GROUP: usize = 512;
/// Reads at once (each on its own connection).
const READERS: usize = 4;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS customers (
    customer TEXT PRIMARY KEY,
    head INTEGER NOT NULL,
    acked INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS notifications (
    customer TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    frame TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (customer, seq),
    UNIQUE (customer, event_id)
) WITHOUT ROWID;
"#;

/// A notification to write: its customer, its event id, and its frame without `type`/`seq`.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    customer: String,
    event_id: String,
    /// The frame's other fields, a JSON object's inside (`"id":…,"data":…}`, no opening brace).
    rest: String,
}

impl Pending {
    /// The notification of `envelope`, or `None` when it acts for no customer.
    pub fn of(envelope: &Envelope) -> Option<Pending> {
        let customer = customer_of(envelope)?;
        let time = envelope.time().copied().unwrap_or_else(chrono::Utc::now);
        let body = serde_json::json!({
            "id": envelope.id(),
            "case": envelope.correlation_id().unwrap_or(envelope.id()),
            "event": envelope.event_type(),
            "source": envelope.source(),
            "time": time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            "data": envelope.data().cloned().unwrap_or(serde_json::Value::Null),
        })
        .to_string();
        // `body` is a JSON object: `{` then the fields.
        let rest = body.get(1..).unwrap_or("}").to_owned();
        Some(Pending { customer: customer.to_owned(), event_id: envelope.id().to_owned(), rest })
    }

    pub fn customer(&self) -> &str {
        &self.customer
    }

    pub fn event_id(&self) -> &str {
        &self.event_id
    }

    pub fn frame(&self, seq: u64) -> String {
        let sep = if self.rest == "}" { "" } else { "," };
        format!(r#"{{"type":"notification","seq":{seq}{sep}{}"#, self.rest)
    }
}

type Reply<T> = oneshot::Sender<Result<T, NotifierError>>;

/// The writer's answer to a queued job.
pub(crate) struct Answer<T>(oneshot::Receiver<Result<T, NotifierError>>);

impl<T> std::future::IntoFuture for Answer<T>
where
    T: Send + 'static,
{
    type Output = Result<T, NotifierError>;
    type IntoFuture = std::pin::Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.0.await.map_err(|_| NotifierError::Closed)? })
    }
}

enum Job {
    Insert(Vec<Pending>, Reply<Vec<Option<u64>>>),
    Ack { customer: String, seq: u64, reply: Reply<()> },
}

pub(crate) struct Store {
    path: PathBuf,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    read_slots: Arc<Semaphore>,
}

impl Drop for Store {
    fn drop(&mut self) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = handle.join();
        }
    }
}

fn sqlite_error(path: &Path, e: rusqlite::Error) -> NotifierError {
    let retryable = matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::DiskFull | ErrorCode::SystemIoFailure)
    );
    let detail = match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => "not a database".to_owned(),
        Some(ErrorCode::DatabaseCorrupt) => "the database is corrupt".to_owned(),
        Some(ErrorCode::DiskFull) => "storage is full".to_owned(),
        Some(ErrorCode::ReadOnly) => "the database is read-only".to_owned(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => "the database is locked".to_owned(),
        _ => e.to_string(),
    };
    NotifierError::Store { path: path.to_owned(), detail, retryable }
}

fn connect(path: &Path) -> Result<Connection, NotifierError> {
    let conn = Connection::open(path).map_err(|e| sqlite_error(path, e))?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(|e| sqlite_error(path, e))?;
    conn.set_prepared_statement_cache_capacity(16);
    // Planned once: SQLite (built with STAT4) would otherwise prepare a cached statement
    // again whenever a bound value might change its plan.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(|e| sqlite_error(path, e))?;
    Ok(conn)
}

impl Store {
    pub fn open(dir: &Path, fanout: Arc<Fanout>) -> Result<Store, NotifierError> {
        let path = dir.join(STORE_FILE);
        std::fs::create_dir_all(dir).map_err(|e| NotifierError::Store {
            path: dir.to_owned(),
            detail: format!("cannot create the data directory: {e}"),
            retryable: false,
        })?;
        let fail = |e| sqlite_error(&path, e);
        let conn = connect(&path)?;
        let app: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0)).map_err(fail)?;
        let version: i32 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(fail)?;
        let refuse =
            |detail: &str| NotifierError::Store { path: path.clone(), detail: detail.into(), retryable: false };
        if app != 0 && app != APPLICATION_ID {
            return Err(refuse("not a Choreo notifier store"));
        }
        if version > SCHEMA_VERSION {
            return Err(refuse("written by a newer Choreo"));
        }
        // Every commit is fsynced: a notification acknowledged on the bus must survive a power
        // loss. Commits are grouped, so the cost is shared.
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;").map_err(fail)?;
        conn.execute_batch(SCHEMA).map_err(fail)?;
        conn.pragma_update(None, "application_id", APPLICATION_ID).map_err(fail)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(fail)?;
        let (tx, rx) = mpsc::channel();
        let writer_path = path.clone();
        let handle = std::thread::Builder::new()
            .name("choreo-notifier-writer".into())
            .spawn(move || write_loop(conn, &writer_path, &rx, &fanout))
            .map_err(|e| refuse(&format!("cannot start the writer thread: {e}")))?;
        Ok(Store {
            path,
            jobs: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            readers: Arc::default(),
            read_slots: Arc::new(Semaphore::new(READERS)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues a job for the writer; the answer comes on the receiver once it is committed.
    fn submit<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<Answer<T>, NotifierError> {
        let (tx, rx) = oneshot::channel();
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let sender = jobs.as_ref().ok_or(NotifierError::Closed)?;
        sender.send(job(tx)).map_err(|_| NotifierError::Closed)?;
        Ok(Answer(rx))
    }

    /// Writes the notifications in one transaction; answers each one's sequence number, or
    /// `None` for a duplicate. The customers' sessions are woken once it is committed.
    pub async fn insert(&self, pending: Vec<Pending>) -> Result<Vec<Option<u64>>, NotifierError> {
        self.queue_insert(pending)?.await
    }

    /// Queues the insert now (so inserts queued one after the other commit in that order);
    /// the answer is awaited later.
    pub fn queue_insert(&self, pending: Vec<Pending>) -> Result<Answer<Vec<Option<u64>>>, NotifierError> {
        self.submit(|reply| Job::Insert(pending, reply))
    }

    /// Moves `customer`'s acknowledged number forward to `seq` (never back).
    pub async fn ack(&self, customer: &str, seq: u64) -> Result<(), NotifierError> {
        self.submit(|reply| Job::Ack { customer: customer.to_owned(), seq, reply })?.await
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, NotifierError> {
        let _permit = self.read_slots.acquire().await.map_err(|_| NotifierError::Closed)?;
        let (readers, path) = (self.readers.clone(), self.path.clone());
        let task = tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => connect(&path)?,
            };
            let result = f(&conn).map_err(|e| sqlite_error(&path, e));
            readers.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
            result
        });
        task.await.map_err(|e| NotifierError::Store {
            path: self.path.clone(),
            detail: format!("a read failed: {e}"),
            retryable: true,
        })?
    }

    /// The last sequence number given to `customer` and the last they acknowledged.
    pub async fn cursor(&self, customer: &str) -> Result<(u64, u64), NotifierError> {
        let customer = customer.to_owned();
        self.read(move |conn| {
            conn.prepare_cached("SELECT head, acked FROM customers WHERE customer = ?1")?
                .query_row([&customer], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)))
                .optional()
                .map(Option::unwrap_or_default)
        })
        .await
    }

    /// Up to `limit` frames of `customer` after `after`, in order.
    pub async fn after(&self, customer: &str, after: u64, limit: usize) -> Result<Vec<(u64, String)>, NotifierError> {
        let customer = customer.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, frame FROM notifications WHERE customer = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![customer, after as i64, limit as i64], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
            })?;
            rows.collect()
        })
        .await
    }
}

/// What a committed job leaves to do: its answer, and the customers to wake.
enum Done {
    Insert(Reply<Vec<Option<u64>>>, Result<Vec<Option<u64>>, NotifierError>, Vec<(String, u64)>),
    Ack(Reply<()>, Result<(), NotifierError>),
}

impl Done {
    fn failed(job: Job, e: &NotifierError) -> Done {
        match job {
            Job::Insert(_, reply) => Done::Insert(reply, Err(e.clone()), Vec::new()),
            Job::Ack { reply, .. } => Done::Ack(reply, Err(e.clone())),
        }
    }

    /// The same job failed by a commit that did not happen.
    fn undone(self, e: &NotifierError) -> Done {
        match self {
            Done::Insert(reply, _, _) => Done::Insert(reply, Err(e.clone()), Vec::new()),
            Done::Ack(reply, _) => Done::Ack(reply, Err(e.clone())),
        }
    }
}

fn write_loop(mut conn: Connection, path: &Path, jobs: &mpsc::Receiver<Job>, fanout: &Fanout) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < GROUP {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        for done in commit(&mut conn, path, batch) {
            match done {
                Done::Insert(reply, result, wake) => {
                    for (customer, seq) in &wake {
                        fanout.wake(customer, *seq);
                    }
                    let _ = reply.send(result);
                }
                Done::Ack(reply, result) => {
                    let _ = reply.send(result);
                }
            }
        }
    }
}

/// Runs the jobs in one transaction, each in its own savepoint (one failing leaves the others).
fn commit(conn: &mut Connection, path: &Path, batch: Vec<Job>) -> Vec<Done> {
    let fail = |e| sqlite_error(path, e);
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let e = fail(e);
            return batch.into_iter().map(|job| Done::failed(job, &e)).collect();
        }
    };
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut done = Vec::with_capacity(batch.len());
    for job in batch {
        let outcome = tx.savepoint().map_err(fail).and_then(|sp| {
            let seqs = run(&sp, &job, now_ms).map_err(fail)?;
            sp.commit().map_err(fail)?;
            Ok(seqs)
        });
        done.push(match (job, outcome) {
            (Job::Insert(_, reply), Ok(seqs)) => {
                let wake = seqs.iter().filter_map(|(c, s)| s.map(|s| (c.clone(), s))).collect();
                Done::Insert(reply, Ok(seqs.into_iter().map(|(_, s)| s).collect()), wake)
            }
            (Job::Ack { reply, .. }, Ok(_)) => Done::Ack(reply, Ok(())),
            (job, Err(e)) => Done::failed(job, &e),
        });
    }
    match tx.commit() {
        Ok(()) => done,
        Err(e) => {
            let e = fail(e);
            done.into_iter().map(|d| d.undone(&e)).collect()
        }
    }
}

/// One job's statements; an insert answers each notification's customer and new sequence
/// number (`None` for a duplicate).
fn run(conn: &Connection, job: &Job, now_ms: i64) -> rusqlite::Result<Vec<(String, Option<u64>)>> {
    match job {
        Job::Insert(pending, _) => {
            pending.iter().map(|p| Ok((p.customer.clone(), insert_one(conn, p, now_ms)?))).collect()
        }
        Job::Ack { customer, seq, .. } => {
            conn.prepare_cached("UPDATE customers SET acked = MAX(acked, ?2) WHERE customer = ?1 AND ?2 <= head")?
                .execute(params![customer, *seq as i64])?;
            Ok(Vec::new())
        }
    }
}

fn insert_one(conn: &Connection, p: &Pending, now_ms: i64) -> rusqlite::Result<Option<u64>> {
    let seen = conn
        .prepare_cached("SELECT seq FROM notifications WHERE customer = ?1 AND event_id = ?2")?
        .query_row([&p.customer, &p.event_id], |r| r.get::<_, i64>(0))
        .optional()?;
    if seen.is_some() {
        return Ok(None);
    }
    let seq: i64 = conn
        .prepare_cached(
            "INSERT INTO customers (customer, head, acked) VALUES (?1, 1, 0)
             ON CONFLICT (customer) DO UPDATE SET head = head + 1 RETURNING head",
        )?
        .query_row([&p.customer], |r| r.get(0))?;
    let seq = seq as u64;
    conn.prepare_cached(
        "INSERT INTO notifications (customer, seq, event_id, frame, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![p.customer, seq as i64, p.event_id, p.frame(seq), now_ms])?;
    Ok(Some(seq))
}
