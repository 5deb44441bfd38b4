//! The SQLite file: opening it (refusing one that is not ours), its schema, transactions with
//! errors that name the file, and loading a data set in one transaction.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, Transaction, TransactionBehavior, params};

use crate::data::DataSet;
use crate::error::{BackOfficeError, Fail, describe};

/// `PRAGMA application_id` of a Choreo back office ("BKOF").
const APPLICATION_ID: i32 = 0x424B_4F46;
/// The schema this build writes and reads. Version 1 (no outbox) is upgraded in place.
const SCHEMA_VERSION: i32 = 2;

const SCHEMA: &str = "
CREATE TABLE customers (
    customer_id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL) STRICT;
CREATE TABLE products (
    sku TEXT PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL,
    price_minor INTEGER NOT NULL CHECK (price_minor >= 0), currency TEXT NOT NULL,
    on_hand INTEGER NOT NULL CHECK (on_hand >= 0), restock_date TEXT) STRICT;
CREATE INDEX products_by_category ON products (category);
CREATE TABLE orders (
    order_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL REFERENCES customers (customer_id),
    placed_at TEXT NOT NULL, currency TEXT NOT NULL) STRICT;
CREATE TABLE order_items (
    order_id TEXT NOT NULL REFERENCES orders (order_id), line INTEGER NOT NULL,
    sku TEXT NOT NULL REFERENCES products (sku), quantity INTEGER NOT NULL CHECK (quantity > 0),
    unit_price_minor INTEGER NOT NULL CHECK (unit_price_minor >= 0), note TEXT,
    PRIMARY KEY (order_id, sku)) STRICT;
CREATE TABLE charges (
    charge_id TEXT PRIMARY KEY, order_id TEXT NOT NULL REFERENCES orders (order_id),
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0), currency TEXT NOT NULL,
    captured_at TEXT NOT NULL, payment_method TEXT NOT NULL) STRICT;
CREATE INDEX charges_by_order ON charges (order_id);
-- idempotency_key is UNIQUE: a replayed effect finds its first result instead of acting twice.
-- Seeded rows have no key (NULLs never collide).
CREATE TABLE refunds (
    refund_id TEXT PRIMARY KEY, charge_id TEXT NOT NULL REFERENCES charges (charge_id),
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0), currency TEXT NOT NULL,
    reason TEXT NOT NULL, created_at TEXT NOT NULL, idempotency_key TEXT UNIQUE) STRICT;
CREATE INDEX refunds_by_charge ON refunds (charge_id);
CREATE TABLE shipments (
    shipment_id TEXT PRIMARY KEY, order_id TEXT NOT NULL REFERENCES orders (order_id),
    sku TEXT NOT NULL REFERENCES products (sku), quantity INTEGER NOT NULL CHECK (quantity > 0),
    carrier TEXT NOT NULL, service_level TEXT NOT NULL, status TEXT NOT NULL,
    estimated_delivery TEXT NOT NULL, created_at TEXT NOT NULL, idempotency_key TEXT UNIQUE) STRICT;
CREATE INDEX shipments_by_order ON shipments (order_id, sku);
CREATE TABLE reservations (
    reservation_id TEXT PRIMARY KEY, order_id TEXT NOT NULL REFERENCES orders (order_id),
    sku TEXT NOT NULL REFERENCES products (sku), quantity INTEGER NOT NULL CHECK (quantity > 0),
    status TEXT NOT NULL CHECK (status IN ('active', 'fulfilled')), created_at TEXT NOT NULL,
    idempotency_key TEXT UNIQUE) STRICT;
CREATE INDEX reservations_by_sku ON reservations (sku, status);
-- Ids of new rows (rf-1, sh-1, rs-1) come from counters, so runs are reproducible.
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT;
INSERT INTO counters (name, value) VALUES ('rf', 0), ('sh', 0), ('rs', 0);
";

/// Version 2: the transactional outbox (see [`crate::outbox`] for the table's contract) and
/// idempotent charge captures. Applied to a new file after [`SCHEMA`], and to a version 1 file
/// in place, so that both end up the same.
const SCHEMA_V2: &str = concat!(
    include_str!("outbox.sql"),
    "
ALTER TABLE charges ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX charges_by_key ON charges (idempotency_key);
INSERT INTO counters (name, value) VALUES ('ch', 0);
"
);

/// The retail back office in one SQLite file. `Send + Sync`: calls are serialised on one
/// connection, and every effect runs in its own immediate transaction.
#[derive(Debug)]
pub struct BackOffice {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl BackOffice {
    /// Opens the file at `path`, creating it and its schema if absent. Refuses a file that is not
    /// SQLite, belongs to another application, or has a schema newer than this build.
    pub fn open(path: &Path) -> Result<Self, BackOfficeError> {
        let fail = |detail: String| BackOfficeError::Storage { path: path.to_path_buf(), detail };
        let sql = |e: rusqlite::Error| fail(describe(&e));
        if path.is_dir() {
            return Err(fail("is a directory, expected a database file".to_owned()));
        }
        let mut conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
        // Every statement of the back office stays prepared (more than the default 16).
        conn.set_prepared_statement_cache_capacity(64);
        // Planned once too: SQLite (built with STAT4) would otherwise prepare a cached
        // statement again whenever a bound value might change its plan.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(sql)?;
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).map_err(sql)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(fail(format!("the file system refused WAL mode (got {mode})")));
        }
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", true).map_err(sql)?;
        init_or_check(&mut conn, path).map_err(|e| match e {
            Fail::Sql(e) => fail(describe(&e)),
            Fail::Api(e) => e,
        })?;
        Ok(BackOffice { conn: Mutex::new(conn), path: path.to_path_buf() })
    }

    /// Opens `path` and loads [`DataSet::seeded`] if it holds no customers yet; reopening a seeded
    /// file changes nothing.
    pub fn open_seeded(path: &Path) -> Result<Self, BackOfficeError> {
        let office = Self::open(path)?;
        office.write(|tx| {
            let customers: i64 = tx.prepare_cached("SELECT count(*) FROM customers")?.query_row([], |r| r.get(0))?;
            if customers == 0 {
                insert_data(tx, &DataSet::seeded())?;
            }
            Ok(())
        })?;
        Ok(office)
    }

    /// Loads `data` in one transaction: all of it or, on any error, none of it. Ids already
    /// present (loading the same data twice) are refused as `Invalid { field: "data_set" }`.
    pub fn load(&self, data: &DataSet) -> Result<(), BackOfficeError> {
        self.write(|tx| {
            insert_data(tx, data).map_err(|e| match e {
                Fail::Sql(e) if e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
                    Fail::Api(BackOfficeError::Invalid { field: "data_set", reason: e.to_string() })
                }
                other => other,
            })
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic mid-call dropped its transaction, which rolled back: the connection is sound.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn finish<T>(&self, result: Result<T, Fail>) -> Result<T, BackOfficeError> {
        result.map_err(|e| match e {
            Fail::Sql(e) => BackOfficeError::from_sqlite(&self.path, &e, describe(&e)),
            Fail::Api(e) => e,
        })
    }

    /// Runs `f` in a read transaction, so that one answer comes from one snapshot.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, Fail>) -> Result<T, BackOfficeError> {
        let mut conn = self.lock();
        let result = (|| {
            let tx = conn.transaction()?;
            let out = f(&tx)?;
            tx.finish()?;
            Ok(out)
        })();
        self.finish(result)
    }

    /// Runs `f` in an immediate write transaction, committed only if `f` succeeds.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T, Fail>) -> Result<T, BackOfficeError> {
        let mut conn = self.lock();
        let result = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })();
        self.finish(result)
    }
}

/// Creates the schema in an empty file, or checks that the file is a back office this build reads.
fn init_or_check(conn: &mut Connection, path: &Path) -> Result<(), Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let app: i32 = tx.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let version: i32 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let tables: i64 =
        tx.prepare_cached("SELECT count(*) FROM sqlite_schema WHERE type = 'table'")?.query_row([], |r| r.get(0))?;
    let refuse = |detail: String| Err(Fail::Api(BackOfficeError::Storage { path: path.to_path_buf(), detail }));
    if app == 0 && version == 0 && tables == 0 {
        tx.execute_batch(SCHEMA)?;
        tx.execute_batch(SCHEMA_V2)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()?;
        return Ok(());
    }
    if app != APPLICATION_ID {
        return refuse(format!(
            "the database belongs to another application (application_id {app:#x}, {tables} tables), not a back office"
        ));
    }
    if version == 1 {
        tx.execute_batch(SCHEMA_V2)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()?;
        return Ok(());
    }
    if version != SCHEMA_VERSION {
        return refuse(format!("schema version {version}; this build reads version {SCHEMA_VERSION}"));
    }
    Ok(())
}

fn insert_data(tx: &Transaction<'_>, data: &DataSet) -> Result<(), Fail> {
    let mut customer = tx.prepare_cached("INSERT INTO customers (customer_id, name, email) VALUES (?1, ?2, ?3)")?;
    for c in &data.customers {
        customer.execute(params![c.customer_id, c.name, c.email])?;
    }
    let mut product = tx.prepare_cached(
        "INSERT INTO products (sku, name, category, price_minor, currency, on_hand, restock_date)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for p in &data.products {
        let restock = p.restock_date.map(|d| d.to_string());
        product.execute(params![p.sku, p.name, p.category, p.price_minor, p.currency, p.on_hand, restock])?;
    }
    let mut order =
        tx.prepare_cached("INSERT INTO orders (order_id, customer_id, placed_at, currency) VALUES (?1, ?2, ?3, ?4)")?;
    let mut item = tx.prepare_cached(
        "INSERT INTO order_items (order_id, line, sku, quantity, unit_price_minor, note) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut charge = tx.prepare_cached(
        "INSERT INTO charges (charge_id, order_id, amount_minor, currency, captured_at, payment_method)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut refund = tx.prepare_cached(
        "INSERT INTO refunds (refund_id, charge_id, amount_minor, currency, reason, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut shipment = tx.prepare_cached(
        "INSERT INTO shipments (shipment_id, order_id, sku, quantity, carrier, service_level, status,
                                estimated_delivery, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for o in &data.orders {
        order.execute(params![o.order_id, o.customer_id, timestamp(o.placed_at), o.currency])?;
        for (line, i) in o.items.iter().enumerate() {
            item.execute(params![o.order_id, line as i64, i.sku, i.quantity, i.unit_price_minor, i.note])?;
        }
        for c in &o.charges {
            charge.execute(params![
                c.charge_id,
                o.order_id,
                c.amount_minor,
                o.currency,
                timestamp(c.captured_at),
                c.payment_method
            ])?;
            for r in &c.refunds {
                refund.execute(params![
                    r.refund_id,
                    c.charge_id,
                    r.amount_minor,
                    o.currency,
                    r.reason,
                    timestamp(r.created_at)
                ])?;
            }
        }
        for s in &o.shipments {
            shipment.execute(params![
                s.shipment_id,
                o.order_id,
                s.sku,
                s.quantity,
                s.carrier,
                s.service_level.as_str(),
                s.status,
                s.estimated_delivery.to_string(),
                timestamp(s.created_at)
            ])?;
        }
    }
    Ok(())
}

/// How instants are stored: RFC 3339 in UTC to the second, which sorts as text.
pub(crate) fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Reads back a stored instant; a malformed one is a storage fault, not a panic.
pub(crate) fn parse_timestamp(text: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).map_err(|e| corrupt(Box::new(e)))
}

/// Reads back a stored date (`YYYY-MM-DD`).
pub(crate) fn parse_date(text: &str) -> rusqlite::Result<NaiveDate> {
    text.parse::<NaiveDate>().map_err(|e| corrupt(Box::new(e)))
}

fn corrupt(e: Box<dyn std::error::Error + Send + Sync>) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e)
}

/// The next id `<prefix>-<n>` not yet in `table`; a loaded data set may already use some.
pub(crate) fn next_id(tx: &Transaction<'_>, prefix: &str, table: &str, column: &str) -> Result<String, Fail> {
    loop {
        let n: i64 = tx
            .prepare_cached("UPDATE counters SET value = value + 1 WHERE name = ?1 RETURNING value")?
            .query_row([prefix], |r| r.get(0))?;
        let id = format!("{prefix}-{n}");
        let taken: bool = tx
            .prepare_cached(&format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE {column} = ?1)"))?
            .query_row([&id], |r| r.get(0))?;
        if !taken {
            return Ok(id);
        }
    }
}
