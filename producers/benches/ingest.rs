//! Ingest throughput, in one run on one machine:
//! (a) PutEvents through the `Publisher` directly on an embedded bus: N tasks each publishing
//!     batches of 10 events;
//! (b) the HTTP path: `POST /v1/events` in batched mode (10 events a request) through
//!     `axum::serve` on loopback, N keep-alive connections from a reqwest load generator, onto
//!     an identical embedded bus.
//! Prints both, and the HTTP path's share of the direct throughput. Exits non-zero only when
//! something failed.
//!
//! Scale with `INGEST_BENCH_BATCHES` (batches per path, default 6000), `INGEST_BENCH_CONCURRENCY`
//! (tasks / connections, default 16), `INGEST_BENCH_ROUNDS` (default 3; the paths alternate and
//! each keeps its best round) and `INGEST_BENCH_DURABILITY` (`full`, the default, or `normal`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use choreo_auth::{Issuer, Principal};
use choreo_bus::api::{RuleSpec, Target};
use choreo_bus::{Bus, Config, Durability, EmbeddedBus};
use choreo_producers::Publisher;
use choreo_producers::http::Ingest;
use choreo_schemas::Envelope;
use choreo_schemas::catalog::{Channel, OrderSupportPlaced};
use choreo_schemas::envelope::{AuthType, EnvelopeBuilder};

/// The allocator `choreo serve` uses (see choreo/src/main.rs), so the figures are its figures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 10;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn bus(dir: &std::path::Path, durability: Durability) -> Result<Arc<EmbeddedBus>, String> {
    let mut config = Config::new(dir);
    config.durability = durability;
    let bus = EmbeddedBus::open(config).map_err(|e| format!("bus: {e}"))?;
    bus.put_rule(RuleSpec::new("all", r#"{"detail-type": ["OrderSupportPlaced"]}"#))
        .await
        .map_err(|e| e.to_string())?;
    bus.put_targets("all", vec![Target::new("all", "all")]).await.map_err(|e| e.to_string())?;
    Ok(Arc::new(bus))
}

fn batch(run: &str, b: usize) -> Result<Vec<Envelope>, String> {
    (0..BATCH)
        .map(|i| {
            let data = OrderSupportPlaced {
                order_id: format!("o-{}", b * BATCH + i),
                message: "The parcel arrived damaged; please send a replacement.".into(),
                needed_by: None,
                channel: Channel::App,
            };
            EnvelopeBuilder::of("retail.backoffice", &data)
                .id(format!("{run}-{b}-{i}"))
                .subject(format!("orders/o-{}", b * BATCH + i))
                .auth(AuthType::AppUser, "c-1001")
                .build()
                .map_err(|e| e.to_string())
        })
        .collect()
}

struct Figures {
    seconds: f64,
    requests: usize,
    events: usize,
}

/// Runs `work(k)` for k in 0..batches on `concurrency` tasks.
async fn drive<F, Fut>(batches: usize, concurrency: usize, work: F) -> Result<f64, String>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let work = Arc::new(work);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (work, next) = (work.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= batches {
                        return Ok::<(), String>(());
                    }
                    work(k).await?;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(start.elapsed().as_secs_f64())
}

async fn direct(batches: usize, concurrency: usize, durability: Durability) -> Result<Figures, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let bus: Arc<dyn Bus> = bus(dir.path(), durability).await?;
    let publisher = Publisher::new(bus);
    let prepared: Arc<Vec<Vec<Envelope>>> =
        Arc::new((0..batches).map(|b| batch("direct", b)).collect::<Result<_, _>>()?);
    let seconds = drive(batches, concurrency, move |k| {
        let (publisher, prepared) = (publisher.clone(), prepared.clone());
        async move {
            let outcomes = publisher.publish(&prepared[k]).await.map_err(|e| e.to_string())?;
            match outcomes.iter().find(|o| !o.is_published()) {
                Some(o) => Err(format!("not published: {o:?}")),
                None => Ok(()),
            }
        }
    })
    .await?;
    Ok(Figures { seconds, requests: batches, events: batches * BATCH })
}

async fn over_http(batches: usize, concurrency: usize, durability: Durability) -> Result<Figures, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let bus: Arc<dyn Bus> = bus(&dir.path().join("bus"), durability).await?;
    let issuer = Issuer::open_or_create(&dir.path().join("auth")).map_err(|e| e.to_string())?;
    let token = issuer.issue(&Principal::service("bench"), Duration::from_secs(3600)).map_err(|e| e.to_string())?;
    let ingest =
        Ingest::open(&dir.path().join("ingest"), Publisher::new(bus), issuer.verifier()).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let url = format!("http://{}/v1/events", listener.local_addr().map_err(|e| e.to_string())?);
    let server = tokio::spawn(axum::serve(listener, ingest.router()).into_future());
    let bodies: Arc<Vec<String>> = Arc::new(
        (0..batches)
            .map(|b| batch("http", b).map(|events| serde_json::to_string(&events).unwrap_or_default()))
            .collect::<Result<_, _>>()?,
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .http1_only()
        .build()
        .map_err(|e| e.to_string())?;
    let auth = format!("Bearer {token}");
    let seconds = drive(batches, concurrency, move |k| {
        let (client, bodies, url, auth) = (client.clone(), bodies.clone(), url.clone(), auth.clone());
        async move {
            let response = client
                .post(&url)
                .header("authorization", auth)
                .header("content-type", "application/cloudevents-batch+json")
                .body(bodies[k].clone())
                .send()
                .await
                .map_err(|e| format!("request: {e}"))?;
            let status = response.status();
            let text = response.text().await.map_err(|e| format!("response: {e}"))?;
            if status != 202 {
                return Err(format!("HTTP {status}: {text}"));
            }
            Ok(())
        }
    })
    .await?;
    server.abort();
    Ok(Figures { seconds, requests: batches, events: batches * BATCH })
}

fn best(kept: Option<Figures>, new: Figures) -> Figures {
    match kept {
        Some(kept) if kept.seconds <= new.seconds => kept,
        _ => new,
    }
}

fn main() {
    let batches = env("INGEST_BENCH_BATCHES", 6000);
    let concurrency = env("INGEST_BENCH_CONCURRENCY", 16).max(1);
    let durability = match std::env::var("INGEST_BENCH_DURABILITY").as_deref() {
        Ok("normal") => Durability::Normal,
        _ => Durability::Full,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ingest bench: runtime: {e}");
            std::process::exit(1);
        }
    };
    let rounds = env("INGEST_BENCH_ROUNDS", 3).max(1);
    // The paths alternate, round by round, and each keeps its best round: other work on the
    // machine then weighs on both alike.
    let result = runtime.block_on(async {
        let (mut direct, mut http): (Option<Figures>, Option<Figures>) = (None, None);
        for _ in 0..rounds {
            let d = self::direct(batches, concurrency, durability).await.map_err(|e| format!("direct: {e}"))?;
            let h = over_http(batches, concurrency, durability).await.map_err(|e| format!("http: {e}"))?;
            println!("  round: direct {:.2} s, HTTP {:.2} s", d.seconds, h.seconds);
            direct = Some(best(direct, d));
            http = Some(best(http, h));
        }
        match (direct, http) {
            (Some(d), Some(h)) => Ok::<_, String>((d, h)),
            _ => Err("no round ran".to_owned()),
        }
    });
    let (direct, http) = match result {
        Ok(figures) => figures,
        Err(e) => {
            eprintln!("ingest bench failed: {e}");
            std::process::exit(1);
        }
    };
    let rate = |f: &Figures| (f.requests as f64 / f.seconds, f.events as f64 / f.seconds);
    let (direct_calls, direct_events) = rate(&direct);
    let (http_requests, http_events) = rate(&http);
    println!(
        "ingest bench: {batches} batches of {BATCH} events per path and round, concurrency {concurrency}, \
         durability {durability:?}, best of {rounds} rounds"
    );
    println!(
        "  direct PutEvents (Publisher): {direct_calls:>9.0} calls/s    {direct_events:>9.0} events/s   ({:.2} s)",
        direct.seconds
    );
    println!(
        "  HTTP POST /v1/events (batch): {http_requests:>9.0} requests/s {http_events:>9.0} events/s   ({:.2} s)",
        http.seconds
    );
    println!("  HTTP / direct: {:.0}%", 100.0 * http_events / direct_events);
}
