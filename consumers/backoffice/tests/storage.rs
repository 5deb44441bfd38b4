//! The database file: created once, reopened without duplicating the seed, a foreign file refused
//! with its path, a data set loaded all-or-nothing, and 1,000 synthetic cases loaded fast.

use std::time::{Duration, Instant};

use choreo_backoffice::{BackOffice, BackOfficeError, DataSet, SYNTHETIC_SPEAKER, ServiceLevel};
use chrono::NaiveDate;

fn storage_detail(result: Result<BackOffice, BackOfficeError>, path: &std::path::Path) -> String {
    match result {
        Err(BackOfficeError::Storage { path: at, detail }) => {
            assert_eq!(at, path);
            detail
        }
        other => panic!("expected a storage error, got {other:?}"),
    }
}

#[test]
fn reopening_a_seeded_file_does_not_duplicate_the_seed_and_keeps_effects() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("retail.db");
    let first = BackOffice::open_seeded(&path).unwrap();
    let refund = first.refund_charge("c-1001", "ch-1001-b", None, "duplicate charge", "k-1").unwrap();
    drop(first);
    let again = BackOffice::open_seeded(&path).unwrap();
    assert_eq!(again.list_charges("c-1001", "o-1001").unwrap().charges.len(), 2);
    assert_eq!(again.get_order("c-1001", "o-1001").unwrap().items.len(), 2);
    // The key survives the restart: a replay after a crash does not refund twice.
    assert_eq!(again.refund_charge("c-1001", "ch-1001-b", None, "duplicate charge", "k-1").unwrap(), refund);
    let next = again.refund_charge("c-1003", "ch-1003-b", None, "duplicate charge", "k-2").unwrap();
    assert_eq!(next.refund_id, "rf-2", "ids continue from the stored counter");
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_naming_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let text = "these are not the tables you are looking for, nor is this a database header";
    std::fs::write(&path, text).unwrap();
    let detail = storage_detail(BackOffice::open(&path), &path);
    assert!(detail.contains("not a SQLite database"), "{detail}");
    let err = BackOffice::open(&path).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "the file is left as it was");
}

#[test]
fn another_applications_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("CREATE TABLE notes (body TEXT); PRAGMA application_id = 1129811794;").unwrap();
    drop(other);
    let detail = storage_detail(BackOffice::open_seeded(&path), &path);
    assert!(detail.contains("another application"), "{detail}");
    let other = rusqlite::Connection::open(&path).unwrap();
    let tables: i64 = other.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0)).unwrap();
    assert_eq!(tables, 1);
}

#[test]
fn a_newer_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("retail.db");
    drop(BackOffice::open(&path).unwrap());
    rusqlite::Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
    let detail = storage_detail(BackOffice::open(&path), &path);
    assert!(detail.contains("schema version 99"), "{detail}");
}

#[test]
fn a_directory_is_refused_as_a_database_path() {
    let dir = tempfile::tempdir().unwrap();
    storage_detail(BackOffice::open(dir.path()), dir.path());
}

#[test]
fn loading_a_data_set_twice_is_refused_and_loads_nothing_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let office = BackOffice::open(&dir.path().join("retail.db")).unwrap();
    let mut data = DataSet::synthetic(2);
    office.load(&data).unwrap();
    // One new order beside one that already exists: the whole load is rolled back.
    data.customers.truncate(0);
    data.products.truncate(0);
    data.orders[0].order_id = "o-new".to_owned();
    let err = office.load(&data).unwrap_err();
    assert!(matches!(err, BackOfficeError::Invalid { field: "data_set", .. }), "{err}");
    assert!(matches!(office.get_order("c-s000001", "o-new"), Err(BackOfficeError::NotFound { .. })));
}

#[test]
fn synthetic_thousand_cases_load_quickly_and_each_looks_like_case_1() {
    let dir = tempfile::tempdir().unwrap();
    let office = BackOffice::open_seeded(&dir.path().join("retail.db")).unwrap();
    let data = DataSet::synthetic(1000);
    let started = Instant::now();
    office.load(&data).unwrap();
    let took = started.elapsed();
    // Generous for debug builds on a loaded CI machine; a release build takes a few milliseconds.
    assert!(took < Duration::from_secs(2), "loading 1,000 cases took {took:?}");

    for n in [1, 500, 1000] {
        let (customer, order) = (format!("c-s{n:06}"), format!("o-s{n:06}"));
        let charges = office.list_charges(&customer, &order).unwrap();
        assert_eq!(charges.charges.len(), 2);
        assert_eq!(charges.charges[1].duplicate_of.as_deref(), Some(charges.charges[0].charge_id.as_str()));
        let view = office.get_order(&customer, &order).unwrap();
        assert_eq!(view.items[1].missing, 1);
        assert!(view.items[1].note.is_some());
    }
    assert!(matches!(office.get_order("c-s000001", "o-s000002"), Err(BackOfficeError::NotOwned { .. })));
    assert_eq!(office.check_stock(SYNTHETIC_SPEAKER).unwrap().available, 1000);
    // The seeded cases are untouched by the synthetic ones.
    assert_eq!(office.find_alternatives("SKU-SPEAKER-04").unwrap()[0].sku, "SKU-SPEAKER-03");
}

#[test]
fn every_synthetic_case_can_ship_its_missing_speaker_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let office = BackOffice::open(&dir.path().join("retail.db")).unwrap();
    let n = 200;
    office.load(&DataSet::synthetic(n)).unwrap();
    let today = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
    std::thread::scope(|s| {
        for worker in 0..4 {
            let office = &office;
            s.spawn(move || {
                for i in (1 + worker..=n).step_by(4) {
                    let (customer, order) = (format!("c-s{i:06}"), format!("o-s{i:06}"));
                    office
                        .create_shipment(&customer, &order, SYNTHETIC_SPEAKER, 1, ServiceLevel::Express, today, &order)
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(office.check_stock(SYNTHETIC_SPEAKER).unwrap().on_hand, 0);
}

#[test]
fn a_change_the_database_refuses_for_good_is_rejected_not_retried_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("retail.db");
    let office = BackOffice::open_seeded(&path).unwrap();
    // A bad deployment: a trigger that refuses every refund (the failure drill's broken tool).
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER frozen BEFORE INSERT ON refunds BEGIN SELECT RAISE(ABORT, 'refunds are frozen'); END;",
    )
    .unwrap();
    match office.refund_charge("c-1001", "ch-1001-b", None, "duplicate charge", "k-1") {
        Err(BackOfficeError::Rejected { path: at, detail }) => {
            assert_eq!(at, path);
            assert!(detail.contains("refunds are frozen"), "{detail}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(office.list_charges("c-1001", "o-1001").unwrap().charges.iter().all(|c| c.refunded_minor == 0));
    conn.execute_batch("DROP TRIGGER frozen;").unwrap();
    assert!(office.refund_charge("c-1001", "ch-1001-b", None, "duplicate charge", "k-1").is_ok(), "fixed, it works");
}
