//! Notifier benchmark: many concurrent WebSocket clients on loopback, each a distinct customer
//! receiving its own notifications over the whole path (put on a real embedded bus → rule
//! `notifier` → inbox → consumer → store → socket). Prints publish→delivery p50/p99/max,
//! throughput, cross-customer deliveries and losses; exits non-zero on any cross-customer
//! delivery or loss.
//!
//! `cargo bench -p choreo-notifier --bench notifier`; scale with
//! `CHOREO_NOTIFIER_CLIENTS` (5000), `CHOREO_NOTIFIER_PER_CLIENT` (2 notifications each),
//! `CHOREO_NOTIFIER_RATE` (events published per second, 0 = as fast as the bus takes them;
//! default 2000) and `CHOREO_NOTIFIER_PUBLISHERS` (concurrent PutEvents callers, 4).
//! `CHOREO_NOTIFIER_DIRECT=1` skips the bus (events go to `Notifier::notify`), to tell the
//! notifier's own cost from the bus's.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use choreo_auth::{Issuer, Principal};
use choreo_bus::{Bus, Config, EmbeddedBus};
use choreo_notifier::Notifier;
use choreo_schemas::Envelope;
use choreo_schemas::envelope::AuthType;
use choreo_schemas::eventbridge::PutEventsEntry;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What one client saw.
#[derive(Default)]
struct Seen {
    latencies_us: Vec<u64>,
    cross: usize,
    duplicates: usize,
    distinct: usize,
}

fn main() {
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    let failed = runtime.block_on(run());
    std::process::exit(i32::from(failed));
}

async fn run() -> bool {
    let clients = env("CHOREO_NOTIFIER_CLIENTS", 5000) as usize;
    let per_client = env("CHOREO_NOTIFIER_PER_CLIENT", 2) as usize;
    let rate = env("CHOREO_NOTIFIER_RATE", 2000);
    let publishers = env("CHOREO_NOTIFIER_PUBLISHERS", 4).max(1) as usize;
    // For profiling: hand the events to `Notifier::notify` instead of the bus.
    let direct = env("CHOREO_NOTIFIER_DIRECT", 0) == 1;
    let total = clients * per_client;
    println!(
        "notifier bench: {clients} clients x {per_client} notifications = {total} events, rate {}, {publishers} publishers",
        if rate == 0 { "unlimited".to_owned() } else { format!("{rate}/s") }
    );
    if direct {
        println!("DIRECT: events go to Notifier::notify, not through the bus");
    }

    let dir = tempfile::tempdir().expect("a temporary directory");
    let issuer = Issuer::open_or_create(dir.path()).expect("the issuer");
    let notifier = Notifier::open(dir.path(), issuer.verifier()).expect("the notifier");
    let bus = EmbeddedBus::open(Config::new(dir.path().join("bus"))).expect("the bus");
    choreo_notifier::install(&bus).await.expect("the rule");
    let consumer = notifier.spawn(Arc::new(bus.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let addr = listener.local_addr().expect("its address");
    let router = notifier.router();
    tokio::spawn(async move { axum::serve(listener, router).await });

    // Connect every client (a few hundred handshakes at a time) and wait for its hello.
    let origin = Instant::now();
    let (stop_tx, stop) = watch::channel(false);
    let done = Arc::new(AtomicUsize::new(0));
    let all_done = Arc::new(tokio::sync::Notify::new());
    let connecting = Arc::new(Semaphore::new(256));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    for i in 0..clients {
        let customer = format!("c-{i:05}");
        let token = issuer.issue(&Principal::customer(&customer), Duration::from_secs(3600)).expect("a token");
        let url = format!("ws://{addr}/v1/notifications?token={token}");
        let (connecting, ready_tx, done, all_done, mut stop) =
            (connecting.clone(), ready_tx.clone(), done.clone(), all_done.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let permit = connecting.acquire_owned().await.expect("the connection gate");
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("a WebSocket");
            drop(permit);
            let mut seen = Seen::default();
            let mut seqs = HashSet::new();
            let mut complete = false;
            loop {
                let frame = tokio::select! {
                    frame = ws.next() => frame,
                    _ = stop.changed() => break,
                };
                let Some(Ok(Message::Text(text))) = frame else {
                    if matches!(frame, Some(Ok(Message::Ping(_) | Message::Pong(_)))) {
                        continue;
                    }
                    break;
                };
                let at = origin.elapsed().as_micros() as u64;
                let frame: Value = serde_json::from_str(text.as_str()).expect("a JSON frame");
                match frame["type"].as_str() {
                    Some("ready") => {
                        let _ = ready_tx.send(());
                    }
                    Some("notification") => {
                        let seq = frame["seq"].as_u64().unwrap_or(0);
                        if frame["data"]["customer"].as_str() != Some(customer.as_str()) {
                            seen.cross += 1;
                            continue;
                        }
                        if !seqs.insert(seq) {
                            seen.duplicates += 1;
                            continue;
                        }
                        let sent = frame["data"]["sent_us"].as_u64().unwrap_or(at);
                        seen.latencies_us.push(at.saturating_sub(sent));
                        let _ = ws.send(Message::text(format!(r#"{{"type":"ack","seq":{seq}}}"#))).await;
                        if seqs.len() == per_client && !complete {
                            complete = true;
                            if done.fetch_add(1, Ordering::SeqCst) + 1 == clients {
                                all_done.notify_one();
                            }
                        }
                    }
                    _ => {}
                }
            }
            seen.distinct = seqs.len();
            let _ = ws.close(None).await;
            seen
        }));
    }
    drop(ready_tx);
    for _ in 0..clients {
        if ready_rx.recv().await.is_none() {
            break;
        }
    }
    println!("connected {clients} clients in {:.2?} ({} live sessions)", started.elapsed(), notifier.live_sessions());

    // Publish: round r gives every customer its r-th notification, in batches of 10.
    let publish_started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut putters = Vec::new();
    for _ in 0..publishers {
        let (bus, next, origin, notifier) = (bus.clone(), next.clone(), origin, notifier.clone());
        putters.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(10, Ordering::SeqCst);
                if first >= total {
                    break;
                }
                if rate > 0 {
                    // Paced: event k is due at k / rate seconds.
                    let due = publish_started + Duration::from_secs_f64(first as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let sent_us = origin.elapsed().as_micros() as u64;
                let events: Vec<Envelope> = (first..(first + 10).min(total))
                    .map(|k| {
                        let (round, customer) = (k / clients, format!("c-{:05}", k % clients));
                        Envelope::builder("agents.payments", "PaymentIssueResolved")
                            .data(json!({"customer": customer, "round": round, "sent_us": sent_us}))
                            .auth(AuthType::AppUser, customer)
                            .build()
                            .expect("an event")
                    })
                    .collect();
                if direct {
                    for event in &events {
                        notifier.notify(event).await.expect("notify");
                    }
                    continue;
                }
                let entries = events.iter().map(PutEventsEntry::from_envelope).collect();
                let out = bus.put_events(entries).await.expect("PutEvents");
                assert_eq!(out.failed_entry_count, 0, "entries refused: {out:?}");
            }
        }));
    }
    for putter in putters {
        putter.await.expect("a publisher");
    }
    let published_in = publish_started.elapsed();
    let finished = tokio::time::timeout(Duration::from_secs(120), all_done.notified()).await.is_ok()
        || done.load(Ordering::SeqCst) == clients;
    let delivered_in = publish_started.elapsed();
    if !finished {
        println!("timed out waiting for deliveries: {} of {clients} clients complete", done.load(Ordering::SeqCst));
    }
    let _ = stop_tx.send(true);

    let mut latencies = Vec::with_capacity(total);
    let (mut cross, mut duplicates, mut lost) = (0, 0, 0);
    for task in tasks {
        let seen = task.await.expect("a client");
        cross += seen.cross;
        duplicates += seen.duplicates;
        lost += per_client.saturating_sub(seen.distinct);
        latencies.extend(seen.latencies_us);
    }
    consumer.shutdown().await;
    notifier.close_sessions();

    latencies.sort_unstable();
    let pct = |p: f64| latencies.get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied();
    let ms = |us: Option<u64>| us.map_or("-".to_owned(), |us| format!("{:.2} ms", us as f64 / 1000.0));
    println!("published {total} events in {published_in:.2?} ({:.0}/s)", total as f64 / published_in.as_secs_f64());
    println!(
        "delivered {} notifications in {delivered_in:.2?} ({:.0}/s end to end)",
        latencies.len(),
        latencies.len() as f64 / delivered_in.as_secs_f64()
    );
    println!(
        "publish→delivery latency: p50 {}  p90 {}  p99 {}  max {}",
        ms(pct(0.50)),
        ms(pct(0.90)),
        ms(pct(0.99)),
        ms(latencies.last().copied())
    );
    println!("cross-customer deliveries: {cross}   duplicates: {duplicates}   losses: {lost}");
    let p99_ok = pct(0.99).is_some_and(|p| p <= 50_000);
    println!("target p99 <= 50 ms: {}", if p99_ok { "met" } else { "MISSED" });
    cross > 0 || lost > 0 || duplicates > 0
}
