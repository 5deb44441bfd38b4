//! Archives and the replay engine on the embedded bus: what is kept and for how long, replays
//! to named rules only with new ids and `replay-name`, state and progress, cancel, restart.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use choreo_bus::api::{ArchiveSpec, BusError, ReplaySpec, ReplayState};
use choreo_bus::{Bus, EmbeddedBus, Inboxes};
use chrono::{DateTime, Utc};
use common::*;
use serde_json::json;

fn replay(name: &str, start: DateTime<Utc>, end: DateTime<Utc>, rules: Option<&[&str]>) -> ReplaySpec {
    ReplaySpec {
        name: name.into(),
        archive: "all".into(),
        event_start_time: start,
        event_end_time: end,
        rules: rules.map(|r| r.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>()),
        description: None,
    }
}

fn hour(h: i64) -> DateTime<Utc> {
    start_time() + chrono::Duration::hours(h)
}

async fn two_agents(bus: &EmbeddedBus) {
    route(bus, "payments", "SupportTriaged", policy(3, 3600)).await;
    route(bus, "orders", "SupportTriaged", policy(3, 3600)).await;
    bus.create_archive(ArchiveSpec::new("all")).await.unwrap();
}

#[tokio::test]
async fn an_archive_keeps_what_its_pattern_matches() {
    let t = open();
    two_agents(&t.bus).await;
    let mut refunds = ArchiveSpec::new("refunds");
    refunds.event_pattern = Some(json!({"detail": {"refund": [true]}}).to_string());
    t.bus.create_archive(refunds).await.unwrap();
    put(&t.bus, "SupportTriaged", [json!({"refund": true}), json!({"refund": false})]).await;
    put(&t.bus, "Unrouted", [json!({"refund": true})]).await;
    let all = t.bus.describe_archive("all").await.unwrap();
    assert_eq!(all.event_count, 3, "an archive without a pattern keeps every event, routed or not");
    assert!(all.size_bytes > 3 * 200, "{}", all.size_bytes);
    assert_eq!(t.bus.describe_archive("refunds").await.unwrap().event_count, 2);
    assert_eq!(t.bus.create_archive(ArchiveSpec::new("all")).await.unwrap_err(), BusError::ArchiveExists("all".into()));
    let mut bad = ArchiveSpec::new("bad");
    bad.event_pattern = Some("{\"detail\": 1}".into());
    assert!(matches!(t.bus.create_archive(bad).await.unwrap_err(), BusError::InvalidPattern { .. }));
    assert_eq!(t.bus.list_archives().await.unwrap().len(), 2);
}

#[tokio::test]
async fn archived_events_outlive_their_deliveries_and_expire_with_retention() {
    let t = open();
    route(&t.bus, "payments", "SupportTriaged", policy(3, 3600)).await;
    let mut week = ArchiveSpec::new("week");
    week.retention_days = 7;
    t.bus.create_archive(week).await.unwrap();
    t.bus.create_archive(ArchiveSpec::new("forever")).await.unwrap();
    put(&t.bus, "SupportTriaged", [json!({"n": 1})]).await;
    for m in drain(&t.bus, "payments").await {
        t.bus.ack("payments", &m.receipt).await.unwrap();
    }
    assert_eq!(t.bus.describe_archive("week").await.unwrap().event_count, 1, "acked, still archived");
    t.clock.advance(Duration::from_secs(6 * 86_400));
    put(&t.bus, "SupportTriaged", [json!({"n": 2})]).await;
    assert_eq!(t.bus.purge_expired().await.unwrap(), 0);
    t.clock.advance(Duration::from_secs(86_400 + 1));
    // The writer's own sweep (due every minute of the bus's clock) may get there first.
    assert!(t.bus.purge_expired().await.unwrap() <= 1);
    assert_eq!(t.bus.describe_archive("week").await.unwrap().event_count, 1);
    assert_eq!(t.bus.describe_archive("forever").await.unwrap().event_count, 2, "retention 0 keeps forever");
}

#[tokio::test]
async fn a_replay_goes_to_the_named_rules_only_with_new_ids_and_its_name() {
    let t = open();
    two_agents(&t.bus).await;
    let mut originals = Vec::new();
    for h in 0..4 {
        let mut e = entry("SupportTriaged", json!({"n": h}));
        e.time = Some(hour(h));
        let out = t.bus.put_events(vec![e]).await.unwrap();
        originals.push(out.entries[0].event_id().unwrap().to_owned());
    }
    for inbox in ["payments", "orders"] {
        for m in drain(&t.bus, inbox).await {
            t.bus.ack(inbox, &m.receipt).await.unwrap();
        }
    }
    let started = t.bus.start_replay(replay("fix-payments", hour(1), hour(2), Some(&["payments"]))).await.unwrap();
    assert_eq!(started.state, ReplayState::Starting);
    assert_eq!(started.events_total, 2, "the window holds both its ends");
    assert_eq!(started.arn, "arn:aws:events:us-east-1:000000000000:replay/fix-payments");
    t.bus.wait_replays().await.unwrap();
    let done = t.bus.describe_replay("fix-payments").await.unwrap();
    assert_eq!(done.state, ReplayState::Completed);
    assert_eq!((done.events_replayed, done.deliveries), (2, 2));
    assert_eq!(done.event_last_replayed_time, Some(hour(2)));
    assert!(done.replay_end_time.is_some());

    assert!(drain(&t.bus, "orders").await.is_empty(), "orders was not named");
    let got = drain(&t.bus, "payments").await;
    let ns: Vec<i64> = got.iter().map(|m| detail(m)["n"].as_i64().unwrap()).collect();
    assert_eq!(ns, [1, 2]);
    for m in &got {
        let event = m.event().unwrap();
        assert_eq!(event.replay_name.as_deref(), Some("fix-payments"));
        assert!(!originals.contains(event.event.id.as_ref().unwrap()), "a replayed event has a new id");
        assert_eq!(event.event.time.unwrap(), hour(detail(m)["n"].as_i64().unwrap()), "and its original time");
    }
    assert_eq!(t.bus.describe_archive("all").await.unwrap().event_count, 4, "replays are not archived again");
}

#[tokio::test]
async fn a_rule_can_refuse_replayed_events() {
    let t = open();
    two_agents(&t.bus).await;
    let live_only = json!({"detail-type": ["SupportTriaged"], "replay-name": [{"exists": false}]}).to_string();
    t.bus.put_rule(choreo_bus::api::RuleSpec::new("orders", live_only)).await.unwrap();
    put(&t.bus, "SupportTriaged", [json!({})]).await;
    drain(&t.bus, "orders").await;
    t.bus.start_replay(replay("again", hour(-1), hour(1), None)).await.unwrap();
    t.bus.wait_replays().await.unwrap();
    assert_eq!(drain(&t.bus, "orders").await.len(), 0);
    let payments = drain(&t.bus, "payments").await;
    assert_eq!(payments.len(), 2, "the original and the replay");
}

#[tokio::test]
async fn a_replay_can_be_cancelled_while_it_runs() {
    let t = open_with(|mut c| {
        c.replay_batch = 1;
        c
    });
    two_agents(&t.bus).await;
    put(&t.bus, "SupportTriaged", (0..2000).map(|n| json!({"n": n}))).await;
    t.bus.start_replay(replay("long", hour(-1), hour(1), Some(&["orders"]))).await.unwrap();
    assert_eq!(t.bus.cancel_replay("long").await.unwrap(), ReplayState::Cancelling);
    t.bus.wait_replays().await.unwrap();
    let r = t.bus.describe_replay("long").await.unwrap();
    assert_eq!(r.state, ReplayState::Cancelled);
    assert!(r.events_replayed < 2000, "stopped part way: {}", r.events_replayed);
    assert_eq!(r.state_reason.as_deref(), Some("cancelled by request"));
    let err = t.bus.cancel_replay("long").await.unwrap_err();
    assert_eq!(err.to_string(), "replay `long` is CANCELLED; only a STARTING or RUNNING replay can be cancelled");
}

#[tokio::test]
async fn a_replay_fails_with_the_reason_when_its_archive_goes() {
    let t = open_with(|mut c| {
        c.replay_batch = 1;
        c
    });
    two_agents(&t.bus).await;
    put(&t.bus, "SupportTriaged", (0..2000).map(|n| json!({"n": n}))).await;
    t.bus.start_replay(replay("orphan", hour(-1), hour(1), Some(&["orders"]))).await.unwrap();
    t.bus.delete_archive("all").await.unwrap();
    t.bus.wait_replays().await.unwrap();
    let r = t.bus.describe_replay("orphan").await.unwrap();
    assert_eq!(r.state, ReplayState::Failed);
    assert_eq!(r.state_reason.as_deref(), Some("archive `all` was deleted during the replay"));
}

#[tokio::test]
async fn a_replay_resumes_after_a_restart_and_delivers_each_event_once() {
    let t = open_with(|mut c| {
        c.replay_batch = 7;
        c
    });
    two_agents(&t.bus).await;
    put(&t.bus, "SupportTriaged", (0..500).map(|n| json!({"n": n}))).await;
    for m in drain(&t.bus, "orders").await {
        t.bus.ack("orders", &m.receipt).await.unwrap();
    }
    t.bus.start_replay(replay("resume", hour(-1), hour(1), Some(&["orders"]))).await.unwrap();
    let TestBus { bus, clock, dir } = t;
    drop(bus); // the writer stops between batches, part way through
    let bus = EmbeddedBus::open(config(dir.path(), &clock).tap_batch(7)).unwrap();
    bus.wait_replays().await.unwrap();
    let r = bus.describe_replay("resume").await.unwrap();
    assert_eq!((r.state, r.events_replayed, r.deliveries), (ReplayState::Completed, 500, 500));
    clock.advance(Duration::from_secs(60));
    let got = drain(&bus, "orders").await;
    let ns: BTreeSet<i64> = got.iter().map(|m| detail(m)["n"].as_i64().unwrap()).collect();
    assert_eq!(got.len(), 500, "each archived event replayed once across the restart");
    assert_eq!(ns.len(), 500);
}

#[tokio::test]
async fn replay_requests_are_checked() {
    let t = open();
    two_agents(&t.bus).await;
    let mut spec = replay("r", hour(0), hour(1), None);
    spec.archive = "nope".into();
    assert_eq!(t.bus.start_replay(spec).await.unwrap_err(), BusError::ArchiveNotFound("nope".into()));
    let spec = replay("r", hour(0), hour(1), Some(&["ghost"]));
    assert_eq!(t.bus.start_replay(spec).await.unwrap_err(), BusError::RuleNotFound("ghost".into()));
    let err = t.bus.start_replay(replay("r", hour(1), hour(0), None)).await.unwrap_err();
    assert!(err.to_string().starts_with("invalid EventEndTime:"), "{err}");
    let err = t.bus.start_replay(replay("bad name!", hour(0), hour(1), None)).await.unwrap_err();
    assert!(err.to_string().contains("replay name `bad name!`"), "{err}");
    t.bus.start_replay(replay("r", hour(0), hour(1), None)).await.unwrap();
    assert_eq!(
        t.bus.start_replay(replay("r", hour(0), hour(1), None)).await.unwrap_err(),
        BusError::ReplayExists("r".into())
    );
    assert_eq!(t.bus.describe_replay("zz").await.unwrap_err(), BusError::ReplayNotFound("zz".into()));
    t.bus.wait_replays().await.unwrap();
    assert_eq!(t.bus.list_replays().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_replay_that_fills_the_store_fails_alone_and_the_bus_keeps_working() {
    let t = open_with(|mut c| {
        c.storage_limit = Some(1024 * 1024);
        c.replay_batch = 50;
        c
    });
    route(&t.bus, "payments", "SupportTriaged", policy(3, 3600)).await;
    t.bus.create_archive(ArchiveSpec::new("all")).await.unwrap();
    // Fill about half the store with archived events nobody routes.
    let mut n = 0;
    while t.bus.describe_archive("all").await.unwrap().size_bytes < 400 * 1024 {
        put(&t.bus, "Unrouted", (0..10).map(|i| json!({"n": n * 10 + i, "pad": "x".repeat(3000)}))).await;
        n += 1;
    }
    put(&t.bus, "SupportTriaged", [json!({"live": true})]).await;
    t.bus.put_rule(choreo_bus::api::RuleSpec::new("everything", r#"{"source":["retail.test"]}"#)).await.unwrap();
    t.bus.put_targets("everything", vec![choreo_bus::api::Target::new("inbox", "everything")]).await.unwrap();
    t.bus.start_replay(replay("flood", hour(-1), hour(1), Some(&["everything"]))).await.unwrap();
    t.bus.wait_replays().await.unwrap();
    let r = t.bus.describe_replay("flood").await.unwrap();
    assert_eq!(r.state, ReplayState::Failed, "{r:?}");
    assert!(r.state_reason.as_deref().unwrap_or_default().contains("storage is full"), "{r:?}");
    // The calls that free space still work.
    let got = t.bus.receive("payments", opts(10, 30)).await.unwrap();
    assert_eq!(got.len(), 1);
    t.bus.ack("payments", &got[0].receipt).await.unwrap();
}
