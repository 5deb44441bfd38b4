//! Helpers for the embedded bus tests: a bus on a fresh directory with a clock the test moves.

#![allow(dead_code)]

use std::time::Duration;

use choreo_bus::api::{Message, ReceiveOptions, RetryPolicy, RuleSpec, Target};
use choreo_bus::{Bus, Config, EmbeddedBus, Inboxes, ManualClock};
use choreo_schemas::eventbridge::PutEventsEntry;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub struct TestBus {
    pub bus: EmbeddedBus,
    pub clock: ManualClock,
    pub dir: tempfile::TempDir,
}

impl TestBus {
    pub fn clock_now(&self) -> DateTime<Utc> {
        use choreo_bus::Clock;
        self.clock.now()
    }
}

pub fn start_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-11-29T10:00:00Z").unwrap().to_utc()
}

pub fn config(dir: &std::path::Path, clock: &ManualClock) -> Config {
    Config::new(dir).with_clock(clock.clone())
}

pub trait Tune {
    fn tap_batch(self, n: usize) -> Self;
}

impl Tune for Config {
    fn tap_batch(mut self, n: usize) -> Self {
        self.replay_batch = n;
        self
    }
}

pub fn open() -> TestBus {
    open_with(|c| c)
}

pub fn open_with(tune: impl FnOnce(Config) -> Config) -> TestBus {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start_time());
    let bus = EmbeddedBus::open(tune(config(dir.path(), &clock))).unwrap();
    TestBus { bus, clock, dir }
}

/// An entry with `detail` as its Detail.
pub fn entry(detail_type: &str, detail: Value) -> PutEventsEntry {
    PutEventsEntry {
        source: "retail.test".into(),
        detail_type: detail_type.into(),
        detail: detail.to_string(),
        time: None,
        resources: Vec::new(),
        event_bus_name: None,
        trace_header: None,
    }
}

pub fn policy(retries: u32, age_s: u64) -> RetryPolicy {
    RetryPolicy {
        maximum_retry_attempts: retries,
        maximum_event_age: Duration::from_secs(age_s),
        backoff_base: Duration::from_secs(1),
        backoff_cap: Duration::from_secs(60),
    }
}

/// A rule `name` for events of `detail_type`, delivering to the inbox `name`.
pub async fn route(bus: &EmbeddedBus, name: &str, detail_type: &str, retry: RetryPolicy) {
    let pattern = json!({"detail-type": [detail_type]}).to_string();
    bus.put_rule(RuleSpec::new(name, pattern)).await.unwrap();
    bus.put_targets(name, vec![Target::new("inbox", name).with_retry_policy(retry)]).await.unwrap();
}

/// Puts one event per detail, answering their event ids.
pub async fn put(bus: &EmbeddedBus, detail_type: &str, details: impl IntoIterator<Item = Value>) -> Vec<String> {
    let mut ids = Vec::new();
    let details: Vec<Value> = details.into_iter().collect();
    for chunk in details.chunks(10) {
        let out = bus.put_events(chunk.iter().map(|d| entry(detail_type, d.clone())).collect()).await.unwrap();
        assert_eq!(out.failed_entry_count, 0, "{out:?}");
        ids.extend(out.entries.iter().map(|e| e.event_id().unwrap().to_owned()));
    }
    ids
}

pub fn opts(max: u32, visibility_s: u64) -> ReceiveOptions {
    ReceiveOptions {
        max_messages: max,
        visibility_timeout: Duration::from_secs(visibility_s),
        wait_time: Duration::ZERO,
    }
}

/// Receives everything visible now (visibility 30 s).
pub async fn drain(bus: &EmbeddedBus, inbox: &str) -> Vec<Message> {
    let mut all = Vec::new();
    loop {
        let got = bus.receive(inbox, opts(10, 30)).await.unwrap();
        if got.is_empty() {
            return all;
        }
        all.extend(got);
    }
}

pub fn event_id(m: &Message) -> String {
    m.event().unwrap().event.id.unwrap()
}

pub fn detail(m: &Message) -> Value {
    m.event().unwrap().event.detail
}
