//! The embedded bus's data directory under bad conditions: something else in it, a corrupt or
//! newer database, a lock held by another process, a full store. Each is a clear error, never
//! a panic, and nothing accepted before it is lost.

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::time::Duration;

use choreo_bus::api::{BusError, StorageFault};
use choreo_bus::{Bus, Config, EmbeddedBus, Inboxes, ManualClock};
use common::*;
use serde_json::json;

fn open_err(config: Config) -> BusError {
    match EmbeddedBus::open(config) {
        Ok(_) => panic!("the bus opened"),
        Err(e) => e,
    }
}

fn kind(e: &BusError) -> StorageFault {
    match e {
        BusError::Storage { kind, .. } => *kind,
        other => panic!("not a storage error: {other}"),
    }
}

#[test]
fn a_file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bus.db"), "name,amount\nc-1001,59.98\n").unwrap();
    let e = open_err(Config::new(dir.path()));
    assert_eq!(kind(&e), StorageFault::Foreign);
    let text = e.to_string();
    assert!(text.contains("bus.db") && text.contains("not a SQLite database"), "{text}");
    assert_eq!(std::fs::read_to_string(dir.path().join("bus.db")).unwrap(), "name,amount\nc-1001,59.98\n", "untouched");
}

#[test]
fn another_application_s_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let other = rusqlite::Connection::open(dir.path().join("bus.db")).unwrap();
    other.execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY)").unwrap();
    drop(other);
    let e = open_err(Config::new(dir.path()));
    assert_eq!(kind(&e), StorageFault::Foreign);
    assert!(e.to_string().contains("belongs to another application"), "{e}");
}

#[test]
fn a_database_from_a_newer_build_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(EmbeddedBus::open(Config::new(dir.path())).unwrap());
    let db = rusqlite::Connection::open(dir.path().join("bus.db")).unwrap();
    db.pragma_update(None, "user_version", 99).unwrap();
    drop(db);
    let e = open_err(Config::new(dir.path()));
    assert_eq!(kind(&e), StorageFault::Newer);
    assert!(e.to_string().contains("schema version 99; this build reads up to 1"), "{e}");
}

#[test]
fn a_data_directory_that_is_a_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data");
    std::fs::write(&file, "x").unwrap();
    let e = open_err(Config::new(&file));
    assert_eq!(kind(&e), StorageFault::CannotOpen);
    assert!(e.to_string().contains("is not a directory"), "{e}");
}

#[tokio::test]
async fn a_corrupt_database_gives_a_storage_error_not_a_panic() {
    let t = open();
    route(&t.bus, "payments", "SupportTriaged", policy(3, 3600)).await;
    put(&t.bus, "SupportTriaged", (0..200).map(|n| json!({"n": n, "pad": "x".repeat(500)}))).await;
    let TestBus { bus, clock, dir } = t;
    drop(bus); // closes the database and folds the WAL into it
    let path = dir.path().join("bus.db");
    let len = std::fs::metadata(&path).unwrap().len();
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(SeekFrom::Start(4096)).unwrap();
    f.write_all(&vec![0xA5; (len - 4096) as usize]).unwrap();
    drop(f);
    let outcome = match EmbeddedBus::open(config(dir.path(), &clock)) {
        Err(e) => e,
        Ok(bus) => bus.receive("payments", opts(10, 30)).await.unwrap_err(),
    };
    assert_eq!(kind(&outcome), StorageFault::Corrupt, "{outcome}");
    assert!(outcome.to_string().contains("bus.db"), "{outcome}");
}

#[tokio::test]
async fn a_lock_held_by_another_process_fails_the_call_clearly_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start_time());
    let mut cfg = config(dir.path(), &clock);
    cfg.busy_timeout = Duration::from_millis(50);
    let bus = EmbeddedBus::open(cfg).unwrap();
    route(&bus, "payments", "SupportTriaged", policy(3, 3600)).await;
    let before = put(&bus, "SupportTriaged", [json!({"n": 1})]).await;

    let other = rusqlite::Connection::open(dir.path().join("bus.db")).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let e = bus.put_events(vec![entry("SupportTriaged", json!({"n": 2}))]).await.unwrap_err();
    assert_eq!(kind(&e), StorageFault::Locked, "{e}");
    assert!(e.is_retryable());
    assert!(e.to_string().contains("locked by another process"), "{e}");
    other.execute_batch("COMMIT").unwrap();

    let after = put(&bus, "SupportTriaged", [json!({"n": 3})]).await;
    let got: Vec<String> = drain(&bus, "payments").await.iter().map(event_id).collect();
    assert_eq!(got, [before[0].clone(), after[0].clone()], "the refused put left nothing behind");
}

#[tokio::test]
async fn a_full_store_refuses_puts_clearly_and_keeps_every_accepted_event() {
    let t = open_with(|mut c| {
        c.storage_limit = Some(512 * 1024);
        c
    });
    route(&t.bus, "payments", "SupportTriaged", policy(3, 3600)).await;
    let mut accepted = Vec::new();
    let full = loop {
        match t.bus.put_events(vec![entry("SupportTriaged", json!({"pad": "x".repeat(4000)}))]).await {
            Ok(out) => accepted.push(out.entries[0].event_id().unwrap().to_owned()),
            Err(e) => break e,
        }
        assert!(accepted.len() < 1000, "the store never filled");
    };
    assert_eq!(kind(&full), StorageFault::Full, "{full}");
    assert!(full.to_string().contains("storage is full"), "{full}");
    assert!(accepted.len() > 50, "{}", accepted.len());
    let mut got = Vec::new();
    loop {
        let batch = t.bus.receive("payments", opts(10, 30)).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for m in batch {
            got.push(event_id(&m));
            t.bus.ack("payments", &m.receipt).await.unwrap();
        }
    }
    assert_eq!(got, accepted, "every accepted event, in order, none of the refused");
    // Acknowledged events free their space: puts work again.
    put(&t.bus, "SupportTriaged", [json!({"pad": "x".repeat(4000)})]).await;
}
