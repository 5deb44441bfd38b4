//! The embedded bus benchmark: durable PutEvents throughput with 1, 4 and 16 producers beside
//! a baseline of plain SQLite inserts of the same rows at the same durability; latency from
//! PutEvents returning to the event being received at 1,000 events/s; replay throughput of
//! 100,000 archived events to one rule. Prints figures; asserts nothing about speed.
//!
//! `cargo bench -p choreo-bus --bench bus`. Env: `CHOREO_BENCH_DIR` (where the data directories
//! go; default the system temp dir), `CHOREO_BENCH_SYNC` (`full`, the default, or `normal`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use choreo_bus::api::{ArchiveSpec, ReceiveOptions, ReplaySpec, RuleSpec, Target};
use choreo_bus::{Bus, Config, Durability, EmbeddedBus, Inboxes};
use choreo_schemas::eventbridge::PutEventsEntry;
use rusqlite::params;

const RULES: usize = 5;
const BATCH: usize = 10;

fn durability() -> Durability {
    match std::env::var("CHOREO_BENCH_SYNC").as_deref() {
        Ok("normal") => Durability::Normal,
        _ => Durability::Full,
    }
}

fn temp_dir() -> tempfile::TempDir {
    match std::env::var_os("CHOREO_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).expect("CHOREO_BENCH_DIR"),
        None => tempfile::tempdir().expect("temp dir"),
    }
}

fn config(dir: &Path) -> Config {
    let mut c = Config::new(dir);
    c.durability = durability();
    c
}

/// A ~1 KB Detail.
fn detail(n: u64) -> String {
    format!(
        r#"{{"specversion":"1.0","id":"01JDX{n:021}","source":"retail.support-api","type":"OrderSupportPlaced","customer":"c-{}","order":"o-{n}","text":"{}"}}"#,
        n % 1000,
        "I was charged twice and one item never arrived. ".repeat(19)
    )
}

fn entry(n: u64) -> PutEventsEntry {
    PutEventsEntry {
        source: "retail.support-api".into(),
        detail_type: format!("Type{}", n % RULES as u64),
        detail: detail(n),
        time: None,
        resources: Vec::new(),
        event_bus_name: None,
        trace_header: None,
    }
}

async fn five_rules(bus: &EmbeddedBus) {
    for r in 0..RULES {
        let name = format!("agent{r}");
        bus.put_rule(RuleSpec::new(&name, format!(r#"{{"detail-type":["Type{r}"]}}"#))).await.unwrap();
        bus.put_targets(&name, vec![Target::new("inbox", &name)]).await.unwrap();
    }
}

/// Events/s of `producers` tasks putting 10-entry batches, `total` events in all.
async fn put_throughput(producers: usize, total: u64) -> f64 {
    let dir = temp_dir();
    let bus = EmbeddedBus::open(config(dir.path())).unwrap();
    five_rules(&bus).await;
    let per = total / producers as u64 / BATCH as u64;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..producers as u64 {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            for b in 0..per {
                let base = (p * per + b) * BATCH as u64;
                let entries = (base..base + BATCH as u64).map(entry).collect();
                let out = bus.put_events(entries).await.unwrap();
                assert_eq!(out.failed_entry_count, 0);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (per * producers as u64 * BATCH as u64) as f64 / start.elapsed().as_secs_f64()
}

/// Plain SQLite: the same rows (an event and its message) in the bus's own tables, one
/// transaction per 10-entry batch, one connection, the same synchronous setting.
async fn baseline(total: u64) -> f64 {
    let dir = temp_dir();
    drop(EmbeddedBus::open(config(dir.path())).unwrap()); // the same schema and indexes
    let mut db = rusqlite::Connection::open(dir.path().join("bus.db")).unwrap();
    db.pragma_update(None, "journal_mode", "WAL").unwrap();
    db.pragma_update(None, "synchronous", if durability() == Durability::Full { "FULL" } else { "NORMAL" }).unwrap();
    let policy = format!(
        r#"{{"max_attempts":186,"max_age_ms":86400000,"base_ms":1000,"cap_ms":300000,"dead_letter_inbox":"agent0-dlq","rule_arn":"{}","target_arn":"{}"}}"#,
        "arn:aws:events:us-east-1:000000000000:rule/choreo/agent0", "arn:aws:sqs:us-east-1:000000000000:agent0"
    );
    let start = Instant::now();
    for b in 0..total / BATCH as u64 {
        let tx = db.transaction().unwrap();
        for n in b * BATCH as u64..(b + 1) * BATCH as u64 {
            let id = uuid::Uuid::new_v4().to_string();
            let body = format!(
                r#"{{"version":"0","id":"{id}","detail-type":"Type{}","source":"retail.support-api","account":"000000000000","time":"2024-11-29T10:00:00Z","region":"us-east-1","resources":[],"detail":{}}}"#,
                n % RULES as u64,
                detail(n)
            );
            let now = 1_732_874_400_000i64 + n as i64;
            tx.prepare_cached("INSERT INTO events (id, time_ms, ingested_ms, body) VALUES (?1, ?2, ?3, ?4)")
                .unwrap()
                .execute(params![id, now, now, body])
                .unwrap();
            let seq = tx.last_insert_rowid();
            let inbox = format!("agent{}", n % RULES as u64);
            tx.prepare_cached(
                "INSERT INTO messages (inbox, event_seq, rule, target, visible_ms, sent_ms, ingested_ms, policy)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7)",
            )
            .unwrap()
            .execute(params![inbox, seq, inbox, "inbox", now, now, policy])
            .unwrap();
        }
        tx.commit().unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Put one event a millisecond for `seconds`; a consumer long-polls and acks. Answers the
/// sorted delays from PutEvents returning to the event coming out of receive.
async fn latency(seconds: u64) -> Vec<Duration> {
    let dir = temp_dir();
    let bus = EmbeddedBus::open(config(dir.path())).unwrap();
    five_rules(&bus).await;
    let returned: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let total = seconds * 1000;
    // Acks go through their own task, so that receiving never waits on them.
    let (acks, mut to_ack) = tokio::sync::mpsc::unbounded_channel::<choreo_bus::api::Receipt>();
    let acker = {
        let bus = bus.clone();
        tokio::spawn(async move {
            while let Some(receipt) = to_ack.recv().await {
                bus.ack("agent0", &receipt).await.unwrap();
            }
        })
    };
    let consumer = {
        let (bus, returned) = (bus.clone(), returned.clone());
        tokio::spawn(async move {
            let options = ReceiveOptions {
                max_messages: 10,
                visibility_timeout: Duration::from_secs(30),
                wait_time: Duration::from_secs(5),
            };
            let mut delays = Vec::with_capacity(total as usize);
            let mut early = Vec::new();
            while (delays.len() as u64) < total {
                let got = bus.receive("agent0", options).await.unwrap();
                let at = Instant::now();
                for m in &got {
                    let id = m.event().unwrap().event.id.unwrap();
                    match returned.lock().unwrap().get(&id) {
                        Some(put) => delays.push(at.saturating_duration_since(*put)),
                        // Received before its put returned: the delay is below zero; count it as none.
                        None => early.push(id),
                    }
                }
                delays.extend(early.drain(..).map(|_| Duration::ZERO));
                for m in got {
                    acks.send(m.receipt).unwrap();
                }
            }
            delays
        })
    };
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for n in 0..total {
        tick.tick().await;
        let mut e = entry(n);
        e.detail_type = "Type0".into();
        let out = bus.put_events(vec![e]).await.unwrap();
        let at = Instant::now();
        returned.lock().unwrap().insert(out.entries[0].event_id().unwrap().to_owned(), at);
    }
    let mut delays = consumer.await.unwrap();
    acker.await.unwrap();
    delays.sort();
    delays
}

/// Replays `total` archived events to one rule: answers events/s and the deliveries made.
async fn replay(total: u64) -> (f64, u64) {
    let dir = temp_dir();
    let bus = EmbeddedBus::open(config(dir.path())).unwrap();
    bus.create_archive(ArchiveSpec::new("all")).await.unwrap();
    let from = chrono::Utc::now() - chrono::Duration::hours(1);
    let mut tasks = Vec::new();
    for p in 0..4u64 {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            for b in 0..total / 4 / BATCH as u64 {
                let base = (p * total / 4) + b * BATCH as u64;
                bus.put_events((base..base + BATCH as u64).map(entry).collect()).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    bus.put_rule(RuleSpec::new("fixed", r#"{"source":["retail.support-api"]}"#)).await.unwrap();
    bus.put_targets("fixed", vec![Target::new("inbox", "fixed")]).await.unwrap();
    let spec = ReplaySpec {
        name: "bench".into(),
        archive: "all".into(),
        event_start_time: from,
        event_end_time: chrono::Utc::now() + chrono::Duration::hours(1),
        rules: Some(["fixed".to_owned()].into()),
        description: None,
    };
    let start = Instant::now();
    bus.start_replay(spec).await.unwrap();
    bus.wait_replays().await.unwrap();
    let elapsed = start.elapsed();
    let r = bus.describe_replay("bench").await.unwrap();
    assert_eq!(r.events_replayed, total, "{r:?}");
    (r.events_replayed as f64 / elapsed.as_secs_f64(), r.deliveries)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sync = if durability() == Durability::Full { "FULL" } else { "NORMAL" };
    println!(
        "embedded bus benchmark: SQLite WAL, synchronous={sync}, data in {}",
        temp_dir().path().parent().unwrap().display()
    );
    // `cargo bench --bench bus -- latency` runs only the parts named.
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let run = |part: &str| only.is_empty() || only.iter().any(|o| o == part);
    if run("put") {
        put_figures().await;
    }
    if run("latency") {
        latency_figures().await;
    }
    if run("replay") {
        replay_figures().await;
    }
}

async fn put_figures() {
    let total = 40_000;
    let base = baseline(total).await;
    println!("\nPutEvents, 10-entry batches, 5 rules, ~1.2 KB events ({total} events per run)");
    println!("  {:<44} {:>10.0} events/s", "baseline: plain SQLite, 1 commit per batch", base);
    for producers in [1, 4, 16] {
        let eps = put_throughput(producers, total).await;
        println!(
            "  {:<44} {:>10.0} events/s  {:>5.0}% of baseline",
            format!("bus, {producers} producer(s)"),
            eps,
            eps / base * 100.0
        );
    }
}

async fn latency_figures() {
    let delays = latency(5).await;
    println!(
        "\nPutEvents return -> received from a long-polling inbox, 1,000 events/s for 5 s ({} events)",
        delays.len()
    );
    println!(
        "  p50 {:.3} ms   p99 {:.3} ms   max {:.3} ms",
        percentile(&delays, 0.50).as_secs_f64() * 1e3,
        percentile(&delays, 0.99).as_secs_f64() * 1e3,
        delays.last().unwrap().as_secs_f64() * 1e3
    );
}

async fn replay_figures() {
    let n = 100_000;
    let (eps, deliveries) = replay(n).await;
    println!("\nReplay of {n} archived events to one rule");
    println!("  {eps:.0} events/s ({deliveries} deliveries)");
}
