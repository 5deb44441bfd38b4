//! The outbox relay against the real embedded bus and an outbox file made from the back office's
//! own DDL: each event relayed once with its type, subject and data; one row per order per
//! PutEvents call, so that order per order holds under partial failures; at least once with the
//! same ids across a lost answer or a relay dropped mid-call; unpublishable rows parked and
//! reported; a spawned relay woken by another connection's commit.

mod outbox_harness;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use choreo_producers::outbox::{Relay, RelayError};
use choreo_schemas::catalog::OrderShipped;
use outbox_harness::{
    Outbox, captured, delivered, delivered_waiting, faulty, ids_of, publisher, shipped, shipped_from,
};
use tokio::sync::Notify;

#[tokio::test]
async fn events_are_relayed_once_with_their_type_subject_and_data() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::create(dir.path());
    let bus = faulty(dir.path()).await;
    let written =
        [outbox.write_event("o-1001", captured("o-1001", 20_800)), outbox.write_event("o-1001", shipped("o-1001", 1))];
    let relay = Relay::open(&outbox.path, publisher(bus.clone())).unwrap();
    assert_eq!(relay.pending().unwrap(), 2);

    let report = relay.run_once().await.unwrap();
    assert_eq!(
        report.relayed.iter().map(|r| r.event_id.as_str()).collect::<Vec<_>>(),
        [written[0].id(), written[1].id()]
    );
    assert_eq!(report.batches, 2, "one row of an order per call: the second waits for the first");
    assert!(report.failed.is_empty() && report.parked.is_empty(), "{report:?}");
    let got = delivered(&bus).await;
    assert_eq!(got, written, "the same CloudEvents, attribute for attribute");
    assert_eq!(got[1].event_type(), "OrderShipped");
    assert_eq!(got[1].subject(), Some("orders/o-1001"));
    assert_eq!(got[1].data_as::<OrderShipped>().unwrap().shipment_id, "sh-1");
    assert_eq!((outbox.row(1).0, outbox.row(2).0), (true, true));

    let again = relay.run_once().await.unwrap();
    assert_eq!((again.batches, again.relayed.len()), (0, 0));
    assert!(delivered(&bus).await.is_empty(), "a relayed row is not sent again");
    assert_eq!(relay.pending().unwrap(), 0);
}

#[tokio::test]
async fn each_call_holds_one_row_per_order_and_at_most_ten_orders() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::create(dir.path());
    let bus = faulty(dir.path()).await;
    let orders: Vec<String> = (1..=12).map(|i| format!("o-{i}")).collect();
    let mut written = Vec::new();
    for n in 1..=3 {
        for order in &orders {
            written.push(outbox.write_event(order, shipped(order, n)));
        }
    }
    let report = Relay::open(&outbox.path, publisher(bus.clone())).unwrap().run_once().await.unwrap();
    assert_eq!(report.relayed.len(), 36);
    let calls = bus.calls.lock().unwrap().clone();
    for call in &calls {
        assert!(call.len() <= 10, "{call:?}");
        assert_eq!(call.iter().collect::<HashSet<_>>().len(), call.len(), "two rows of one order in {call:?}");
    }
    assert_eq!(calls[0], orders[..10].iter().map(|o| format!("orders/{o}")).collect::<Vec<_>>(), "oldest first");
    let got = delivered(&bus).await;
    assert_eq!(got.len(), 36);
    for order in &orders {
        assert_eq!(ids_of(&got, order), ids_of(&written, order), "{order}");
    }
}

#[tokio::test]
async fn a_failing_row_holds_back_only_its_own_orders_later_rows() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::create(dir.path());
    let bus = faulty(dir.path()).await;
    let mut written = Vec::new();
    for n in 1..=3 {
        for order in ["o-1", "o-2", "o-3", "o-4", "o-5"] {
            written.push(outbox.write_event(order, shipped(order, n)));
        }
    }
    bus.fail.lock().unwrap().insert("orders/o-3".into(), 2);
    let relay = Relay::open(&outbox.path, publisher(bus.clone())).unwrap();

    let first = relay.run_once().await.unwrap();
    assert_eq!(first.relayed.len(), 12, "every other order went through");
    assert_eq!(first.failed.len(), 1, "{first:?}");
    let failed = &first.failed[0];
    assert_eq!((failed.seq, failed.aggregate.as_str()), (3, "o-3"));
    assert_eq!(failed.event_id.as_deref(), Some(written[2].id()));
    assert!(failed.reason.contains("ThrottlingException"), "{}", failed.reason);
    let (relayed, parked, attempts, error) = outbox.row(3);
    assert_eq!((relayed, parked, attempts), (false, false, 1));
    assert!(error.unwrap().contains("Rate exceeded"));
    let got = delivered(&bus).await;
    assert!(ids_of(&got, "o-3").is_empty(), "o-3's later rows wait behind its first");
    assert_eq!(relay.pending().unwrap(), 3);

    let second = relay.run_once().await.unwrap();
    assert_eq!((second.relayed.len(), second.failed.len()), (0, 1));
    let third = relay.run_once().await.unwrap();
    assert_eq!(third.relayed.len(), 3);
    assert_eq!(outbox.row(3).2, 2, "two failed attempts recorded");
    let got = delivered(&bus).await;
    assert_eq!(ids_of(&got, "o-3"), ids_of(&written, "o-3"));
}

#[tokio::test]
async fn order_per_order_holds_across_many_orders_under_partial_failures() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::create(dir.path());
    let bus = faulty(dir.path()).await;
    let orders: Vec<String> = (1..=25).map(|i| format!("o-{i}")).collect();
    let mut written = Vec::new();
    for n in 1..=4 {
        for (i, order) in orders.iter().enumerate() {
            // An uneven interleaving: some orders get their events in bursts.
            if n == 4 && i % 2 == 0 {
                continue;
            }
            written.push(
                outbox.write_event(order, if n % 2 == 0 { captured(order, i64::from(n)) } else { shipped(order, n) }),
            );
        }
    }
    for (i, order) in orders.iter().enumerate() {
        // Every third order fails some of its entries: 1, 2 or 3 of them.
        if i % 3 == 0 {
            bus.fail.lock().unwrap().insert(format!("orders/{order}"), 1 + (i as u32 % 3));
        }
    }
    let relay = Relay::open(&outbox.path, publisher(bus.clone())).unwrap();
    let mut runs = 0;
    let mut relayed = 0;
    while relay.pending().unwrap() > 0 {
        runs += 1;
        assert!(runs <= 10, "still {} pending after 10 runs", relay.pending().unwrap());
        relayed += relay.run_once().await.unwrap().relayed.len();
    }
    assert!(runs > 1, "the injected failures took more than one run");
    assert_eq!(relayed, written.len());
    let got = delivered(&bus).await;
    assert_eq!(got.len(), written.len(), "each event exactly once: no answer was lost");
    for order in &orders {
        assert_eq!(ids_of(&got, order), ids_of(&written, order), "{order}");
    }
}

#[tokio::test]
async fn a_lost_answer_sends_the_same_ids_again_at_least_once() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::create(dir.path());
    let bus = faulty(dir.path()).await;
    let written = [outbox.write_event("o-1", shipped("o-1", 1)), outbox.write_event("o-2", captured("o-2", 5))];
    bus.lose_answers.store(1, Ordering::SeqCst);
    let relay = Relay::open(&outbox.path, publisher(bus.clone())).unwrap();

    let err = relay.run_once().await.unwrap_err();
    let RelayError::Unavailable { report, .. } = &err else { panic!("{err}") };
    assert!(report.relayed.is_empty(), "nothing is marked relayed without the bus's answer");
    assert_eq!(report.failed.len(), 2);
    assert_eq!(relay.pending().unwrap(), 2);
    assert_eq!(delivered(&bus).await.len(), 2, "yet the bus had accepted them");

    let report = relay.run_once().await.unwrap();
    assert_eq!(report.relayed.len(), 2);
    let again: Vec<String> = delivered(&bus).await.iter().map(|e| e.id().to_owned()).collect();
    assert_eq!(again, [written[0].id(), written[1].id()], "published again with the ids fixed at write time");
}

#[tokio::test]
async fn a_relay_dropped_mid_call_leaves_its_rows_for_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::create(dir.path());
    let bus = faulty(dir.path()).await;
    let accepted = Arc::new(Notify::new());
    *bus.hang.lock().unwrap() = Some(accepted.clone());
    let written = [outbox.write_event("o-1", shipped("o-1", 1)), outbox.write_event("o-1", shipped("o-1", 2))];
    let relay = Relay::open(&outbox.path, publisher(bus.clone())).unwrap();
    tokio::select! {
        report = relay.run_once() => panic!("the hanging bus answered: {report:?}"),
        () = accepted.notified() => {}
    }
    // The run is dropped between the bus accepting the first row and the relay marking it.
    drop(relay);
    let first = delivered(&bus).await;
    assert_eq!(first.iter().map(|e| e.id()).collect::<Vec<_>>(), [written[0].id()]);
    assert!(!outbox.row(1).0, "not marked relayed");

    *bus.hang.lock().unwrap() = None;
    let next = Relay::open(&outbox.path, publisher(bus.clone())).unwrap();
    let report = next.run_once().await.unwrap();
    let ids: Vec<&str> = report.relayed.iter().map(|r| r.event_id.as_str()).collect();
    assert_eq!(ids, [written[0].id(), written[1].id()]);
    let second: Vec<String> = delivered(&bus).await.iter().map(|e| e.id().to_owned()).collect();
    assert_eq!(second, ids, "the first row again, with the same id, then the second: at least once, in order");
}

#[tokio::test]
async fn unpublishable_rows_are_parked_and_reported_without_holding_back_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::create(dir.path());
    let bus = faulty(dir.path()).await;
    let garbage = outbox.write("o-1", "not json at all");
    let after_garbage = outbox.write_event("o-1", shipped("o-1", 1));
    let mut unknown = shipped("o-2", 1).to_json_value();
    unknown["type"] = "OrderTeleported".into();
    unknown.as_object_mut().unwrap().remove("dataschema");
    let unknown = outbox.write("o-2", &unknown.to_string());
    let mut invalid = captured("o-3", 5).to_json_value();
    invalid["data"]["order_id"] = "1001".into();
    let invalid = outbox.write("o-3", &invalid.to_string());
    // A catalog event the bus refuses for good: `aws.` sources are AWS's own.
    let spoofed = outbox.write("o-4", &shipped_from("aws.ec2", "o-4", 1).to_json_string());
    let relay = Relay::open(&outbox.path, publisher(bus.clone())).unwrap();

    let report = relay.run_once().await.unwrap();
    assert_eq!(report.relayed.iter().map(|r| r.event_id.as_str()).collect::<Vec<_>>(), [after_garbage.id()]);
    let parked: Vec<i64> = report.parked.iter().map(|p| p.seq).collect();
    assert_eq!(parked.iter().copied().collect::<HashSet<_>>(), HashSet::from([garbage, unknown, invalid, spoofed]));
    let reason = |seq: i64| report.parked.iter().find(|p| p.seq == seq).unwrap().reason.clone();
    assert!(reason(garbage).contains("not a structured CloudEvent"), "{}", reason(garbage));
    assert!(reason(unknown).contains("no event type `OrderTeleported`"), "{}", reason(unknown));
    assert!(reason(invalid).contains("/order_id"), "{}", reason(invalid));
    assert!(reason(spoofed).contains("NotAuthorizedForSourceException"), "{}", reason(spoofed));
    assert_eq!(report.parked.iter().find(|p| p.seq == garbage).unwrap().event_id, None);
    let (relayed, is_parked, _, error) = outbox.row(invalid);
    assert!(!relayed && is_parked && error.unwrap().contains("/order_id"));

    let again = relay.run_once().await.unwrap();
    assert!(again.parked.is_empty() && again.relayed.is_empty(), "parked rows are not retried: {again:?}");
    assert_eq!(relay.parked().unwrap().iter().map(|p| p.seq).collect::<Vec<_>>(), [garbage, unknown, invalid, spoofed]);
    assert_eq!(relay.pending().unwrap(), 0);
    assert_eq!(delivered(&bus).await.len(), 1, "only the valid event reached the bus");

    // An operator may requeue a parked row; still unpublishable, it is parked again.
    assert!(relay.requeue(invalid).unwrap());
    assert!(!relay.requeue(after_garbage_seq(&outbox)).unwrap(), "a relayed row is not parked");
    assert_eq!(relay.run_once().await.unwrap().parked.len(), 1);
}

fn after_garbage_seq(outbox: &Outbox) -> i64 {
    assert!(outbox.row(2).0);
    2
}

#[tokio::test]
async fn a_spawned_relay_wakes_on_another_connections_commit_and_shuts_down() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::create(dir.path());
    let bus = faulty(dir.path()).await;
    let first = outbox.write_event("o-1", shipped("o-1", 1));
    bus.fail.lock().unwrap().insert("orders/o-2".into(), 1);
    let relay = Relay::open(&outbox.path, publisher(bus.clone()))
        .unwrap()
        .with_retry_interval(Duration::from_millis(20))
        .spawn(Duration::from_millis(10));
    let got = delivered_waiting(&bus, Duration::from_secs(10)).await;
    assert_eq!(got.iter().map(|e| e.id()).collect::<Vec<_>>(), [first.id()]);

    // Written after the relay went idle: it notices the commit, fails once, retries.
    let second = outbox.write_event("o-2", captured("o-2", 7));
    let got = delivered_waiting(&bus, Duration::from_secs(10)).await;
    assert_eq!(got.iter().map(|e| e.id()).collect::<Vec<_>>(), [second.id()]);
    let totals = relay.shutdown().await;
    assert_eq!((totals.relayed, totals.failed), (2, 1), "{totals:?}");
    assert!(totals.runs >= 3, "{totals:?}");
}

#[tokio::test]
async fn a_file_without_an_outbox_is_refused_and_a_missing_one_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let bus = faulty(dir.path()).await;
    let missing = dir.path().join("missing.db");
    let err = Relay::open(&missing, publisher(bus.clone())).unwrap_err();
    assert!(matches!(&err, RelayError::Storage { path, .. } if *path == missing), "{err}");
    assert!(!missing.exists());
    let other = dir.path().join("other.db");
    rusqlite::Connection::open(&other).unwrap().execute_batch("CREATE TABLE notes (body TEXT);").unwrap();
    let err = Relay::open(&other, publisher(bus)).unwrap_err();
    assert!(matches!(err, RelayError::NotAnOutbox { .. }), "{err}");
    assert!(err.to_string().contains("other.db"), "{err}");
}
