//! `choreo publish --file`: a file of CloudEvents onto the bus of a data directory; what cannot
//! go is named by its line, and what went is on the bus, in order, once.

use std::time::Duration;

use choreo_bus::api::{ReceiveOptions, RuleSpec, Target};
use choreo_bus::{Bus, Config, EmbeddedBus, Inboxes};
use choreo_schemas::Envelope;
use choreo_tests::run;
use serde_json::json;

fn scanned(i: usize) -> Envelope {
    Envelope::builder("retail.orders", "ParcelScanned")
        .without_data_schema()
        .data(json!({"order_id": format!("o-{i}")}))
        .build()
        .unwrap()
}

async fn subscribe(dir: &std::path::Path) {
    let bus = EmbeddedBus::open(Config::new(dir)).unwrap();
    bus.put_rule(RuleSpec::new("all", r#"{"source": [{"prefix": "retail."}]}"#)).await.unwrap();
    bus.put_targets("all", vec![Target::new("all", "all")]).await.unwrap();
}

async fn delivered(dir: &std::path::Path) -> Vec<String> {
    let bus = EmbeddedBus::open(Config::new(dir)).unwrap();
    let options = ReceiveOptions { max_messages: 10, wait_time: Duration::ZERO, ..Default::default() };
    let mut ids = Vec::new();
    loop {
        let got = bus.receive("all", options).await.unwrap();
        if got.is_empty() {
            return ids;
        }
        for m in got {
            ids.push(m.event().unwrap().to_delivery().unwrap().envelope.id().to_owned());
            bus.ack("all", &m.receipt).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_lines_are_published_in_order_and_bad_ones_named() {
    let dir = tempfile::tempdir().unwrap();
    subscribe(dir.path()).await;
    let bad_request = Envelope::builder("retail.support-api", "OrderSupportPlaced")
        .data(json!({"order_id": "1001", "message": "hi", "channel": "web"}))
        .build()
        .unwrap();
    let (a, b, c) = (scanned(1), scanned(2), scanned(3));
    let file = dir.path().join("events.jsonl");
    let text = [
        a.to_json_string(),
        "{\"specversion\": \"1.0\", \"id\": ".to_owned(),
        b.to_json_string(),
        bad_request.to_json_string(),
        String::new(),
        c.to_json_string(),
    ]
    .join("\n");
    std::fs::write(&file, text).unwrap();

    let out = run(&["--data-dir", dir.path().to_str().unwrap(), "publish", "--file", file.to_str().unwrap()], b"");
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    let lines = out.lines();
    assert!(lines[0].starts_with("line 2: not a CloudEvent"), "{}", out.stdout);
    assert!(lines[1].starts_with("line 4: refused:") && lines[1].contains("/order_id"), "{}", out.stdout);
    assert_eq!(lines[2], format!("published 3 of 5 events to {}", dir.path().display()));
    assert_eq!(delivered(dir.path()).await, [a.id(), b.id(), c.id()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_file_exits_zero_and_a_missing_one_three() {
    let dir = tempfile::tempdir().unwrap();
    subscribe(dir.path()).await;
    let events: Vec<_> = (0..25).map(scanned).collect();
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, events.iter().map(Envelope::to_json_string).collect::<Vec<_>>().join("\n")).unwrap();
    let out = run(&["--data-dir", dir.path().to_str().unwrap(), "publish", "--file", file.to_str().unwrap()], b"");
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert_eq!(delivered(dir.path()).await.len(), 25);

    let missing = run(&["--data-dir", dir.path().to_str().unwrap(), "publish", "--file", "/nonexistent.jsonl"], b"");
    assert_eq!(missing.code, Some(3));
    assert!(missing.stderr.contains("cannot read /nonexistent.jsonl"), "{}", missing.stderr);
}
