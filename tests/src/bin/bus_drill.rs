//! The load the durability drill kills: producers putting events and consumers receiving and
//! acknowledging them on the embedded bus in a data directory, each printing a line only once
//! the bus has answered (`put <id>` after PutEvents returned, `ack <id>` after an ack returned, `acking <id>` before it).
//!
//!   bus_drill <data-dir>

use std::io::Write;
use std::time::Duration;

use choreo_bus::api::{ReceiveOptions, RetryPolicy, RuleSpec, Target};
use choreo_bus::{Bus, Config, EmbeddedBus, Inboxes};
use choreo_schemas::eventbridge::PutEventsEntry;

const PRODUCERS: usize = 3;
const CONSUMERS: usize = 2;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = std::env::args().nth(1).expect("usage: bus_drill <data-dir>");
    let bus = EmbeddedBus::open(Config::new(dir)).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2)
    });
    setup(&bus).await;
    let run = std::process::id();
    let mut tasks = Vec::new();
    for p in 0..PRODUCERS {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move { produce(bus, run, p).await }));
    }
    for _ in 0..CONSUMERS {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move { consume(bus).await }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn setup(bus: &EmbeddedBus) {
    let pattern = r#"{"detail-type": ["DrillEvent"]}"#;
    bus.put_rule(RuleSpec::new("drill", pattern)).await.expect("put_rule");
    let retry = RetryPolicy { maximum_retry_attempts: 185, ..RetryPolicy::default() };
    bus.put_targets("drill", vec![Target::new("inbox", "drill").with_retry_policy(retry)]).await.expect("put_targets");
}

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    // A line is written whole or not at all as far as the reader can tell: it only trusts
    // lines that end in a newline.
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}

async fn produce(bus: EmbeddedBus, run: u32, producer: usize) {
    for batch in 0u64.. {
        let entries: Vec<PutEventsEntry> = (0..10)
            .map(|i| PutEventsEntry {
                source: "drill.producer".into(),
                detail_type: "DrillEvent".into(),
                detail: format!(r#"{{"run":{run},"producer":{producer},"n":{}}}"#, batch * 10 + i),
                time: None,
                resources: Vec::new(),
                event_bus_name: None,
                trace_header: None,
            })
            .collect();
        match bus.put_events(entries).await {
            Ok(out) => {
                let lines: String =
                    out.entries.iter().filter_map(|e| e.event_id()).map(|id| format!("put {id}\n")).collect();
                say(lines);
            }
            Err(e) => eprintln!("put failed: {e}"),
        }
    }
}

async fn consume(bus: EmbeddedBus) {
    let options = ReceiveOptions {
        max_messages: 10,
        visibility_timeout: Duration::from_secs(5),
        wait_time: Duration::from_secs(1),
    };
    loop {
        let messages = match bus.receive("drill", options).await {
            Ok(m) => m,
            Err(e) => {
                eprintln!("receive failed: {e}");
                continue;
            }
        };
        for m in messages {
            let id = m.event().ok().and_then(|e| e.event.id).unwrap_or_default();
            // Said before acking too: a kill between the ack and its answer leaves an event
            // that is gone without an `ack` line, and the test must know it may be.
            say(format!("acking {id}\n"));
            if bus.ack("drill", &m.receipt).await.is_ok() {
                say(format!("ack {id}\n"));
            }
        }
    }
}
