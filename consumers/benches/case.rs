//! The agents benchmark: the seeded support case end to end on a cold start (wall, model and
//! outside-the-model time), then many synthetic cases at once (throughput and latency). Prints
//! figures; fails only when a case does not complete, or completes wrongly (not one refund).
//!
//! `cargo bench -p choreo-consumers --bench case`. Env: `CHOREO_BENCH_RUNS` (cold runs, default
//! 5), `CHOREO_BENCH_CASES` (concurrent cases, default 1000), `CHOREO_BENCH_DIR` (where the data
//! directories go; default the system temp dir).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use choreo_backoffice::DataSet;
use choreo_bus::api::{ReceiveOptions, RuleSpec, Target};
use choreo_bus::{Bus, EmbeddedBus, Inboxes};
use choreo_consumers::local::{ARCHIVE, Local, Options, SupportRequest};
use choreo_consumers::observe::StepKind;
use chrono::{Days, NaiveDate};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::task::JoinSet;

/// The bench's own subscriber: a rule and an inbox that get every case's last event.
const ENDS: &str = "bench-case-ends";
/// How long one cold case may take before it counts as not completed.
const COLD_DEADLINE: Duration = Duration::from_secs(30);
/// How long all the concurrent cases may take.
const LOAD_DEADLINE: Duration = Duration::from_secs(300);

fn main() -> ExitCode {
    let runs = env_number("CHOREO_BENCH_RUNS", 5);
    let cases = env_number("CHOREO_BENCH_CASES", 1000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("start the tokio runtime");
    let mut failures = runtime.block_on(cold(runs));
    failures.extend(runtime.block_on(load(cases)));
    if failures.is_empty() {
        return ExitCode::SUCCESS;
    }
    for failure in &failures {
        eprintln!("FAIL: {failure}");
    }
    ExitCode::FAILURE
}

fn env_number(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| panic!("{name} must be a whole number, not `{text}`")),
        Err(_) => default,
    }
}

fn temp_dir() -> tempfile::TempDir {
    match std::env::var_os("CHOREO_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).expect("a temp dir in CHOREO_BENCH_DIR"),
        None => tempfile::tempdir().expect("a temp dir"),
    }
}

fn tomorrow() -> NaiveDate {
    let today = chrono::Utc::now().date_naive();
    today.checked_add_days(Days::new(1)).unwrap_or(today)
}

/// How a case ended, as the bench's subscriber saw it.
struct End {
    /// When the subscriber received the event.
    at: Instant,
    event_type: String,
    order_id: Option<String>,
}

/// Subscribes the bench to every `OrderSupportCompleted` and `CaseEscalated`, before any case.
async fn subscribe_ends(bus: &EmbeddedBus) {
    let pattern = r#"{"detail-type": ["OrderSupportCompleted", "CaseEscalated"]}"#;
    bus.put_rule(RuleSpec::new(ENDS, pattern)).await.expect("put the bench's rule");
    bus.put_targets(ENDS, vec![Target::new(ENDS, ENDS)]).await.expect("put the bench's target");
}

/// Receives case ends until `expected` cases have one or the deadline passes; answers them by
/// correlation id (a case answered twice keeps its first end and counts in `extra`).
async fn receive_ends(bus: Arc<EmbeddedBus>, expected: usize, deadline: Instant) -> (HashMap<String, End>, usize) {
    let mut ends = HashMap::with_capacity(expected);
    let mut extra = 0;
    let options = ReceiveOptions { wait_time: Duration::from_millis(500), ..ReceiveOptions::default() };
    while ends.len() < expected && Instant::now() < deadline {
        let messages = bus.receive(ENDS, options).await.expect("receive from the bench's inbox");
        let at = Instant::now();
        for message in messages {
            let delivery = message
                .event()
                .map_err(|e| e.to_string())
                .and_then(|d| d.into_delivery().map_err(|e| e.to_string()))
                .expect("a case end in EventBridge's shape");
            let envelope = delivery.envelope;
            let case = envelope.correlation_id().unwrap_or(envelope.id()).to_owned();
            let order_id = envelope.data().and_then(|d| d["order_id"].as_str()).map(str::to_owned);
            let end = End { at, event_type: envelope.event_type().to_owned(), order_id };
            match ends.entry(case) {
                Entry::Occupied(_) => extra += 1,
                Entry::Vacant(slot) => {
                    slot.insert(end);
                }
            }
            bus.ack(ENDS, &message.receipt).await.expect("ack a case end");
        }
    }
    (ends, extra)
}

/// Why a case's end is wrong, if it is: escalated, about another order, or not one refund.
fn check_end(local: &Local, order_id: &str, end: &End) -> Option<String> {
    if end.event_type != "OrderSupportCompleted" {
        return Some(format!("{order_id}: ended with {} instead of OrderSupportCompleted", end.event_type));
    }
    if end.order_id.as_deref() != Some(order_id) {
        return Some(format!("{order_id}: completed for order {:?}", end.order_id));
    }
    match local.services.backoffice.refunds(order_id) {
        Ok(refunds) if refunds.len() == 1 => None,
        Ok(refunds) => Some(format!("{order_id}: {} refunds instead of 1", refunds.len())),
        Err(e) => Some(format!("{order_id}: read its refunds: {e}")),
    }
}

/// One cold run's figures.
struct ColdRun {
    start: Duration,
    wall: Duration,
    model: Duration,
}

async fn cold(runs: usize) -> Vec<String> {
    println!("one case, cold: the seeded case on a fresh data directory, {runs} run(s), offline model");
    let mut figures = Vec::with_capacity(runs);
    let mut failures = Vec::new();
    for run in 1..=runs {
        match cold_run().await {
            Ok(f) => {
                println!(
                    "case: cold #{run:<3} start {:>8}  wall {:>8}  model {:>8}  outside {:>8}",
                    ms(f.start),
                    ms(f.wall),
                    ms(f.model),
                    ms(f.wall.saturating_sub(f.model))
                );
                figures.push(f);
            }
            Err(failure) => {
                println!("case: cold #{run:<3} FAILED: {failure}");
                failures.push(format!("cold run {run}: {failure}"));
            }
        }
    }
    if !figures.is_empty() {
        let median_of = |f: fn(&ColdRun) -> Duration| median(figures.iter().map(f).collect());
        // Each column's own median: the outside time of the median run is not the median outside time.
        println!(
            "case: cold med  start {:>8}  wall {:>8}  model {:>8}  outside {:>8}   (target: whole case under 200 ms on the offline model)",
            ms(median_of(|f| f.start)),
            ms(median_of(|f| f.wall)),
            ms(median_of(|f| f.model)),
            ms(median_of(|f| f.wall.saturating_sub(f.model)))
        );
    }
    println!();
    failures
}

async fn cold_run() -> Result<ColdRun, String> {
    let dir = temp_dir();
    let started = Instant::now();
    let local = Local::start(Options::new(dir.path())).await.map_err(|e| format!("start: {e}"))?;
    let start = started.elapsed();
    subscribe_ends(&local.bus).await;
    let mut steps = local.services.observer.subscribe();

    let request = SupportRequest::seeded(tomorrow());
    let submitted = Instant::now();
    let placed = local.submit(&request).await.map_err(|e| format!("submit: {e}"))?;
    let case = placed.correlation_id().unwrap_or(placed.id()).to_owned();
    let (mut ends, extra) = receive_ends(local.bus.clone(), 1, submitted + COLD_DEADLINE).await;

    // Every model turn of the case happened before its last event was published, so the
    // observer holds them all by now.
    let mut model = Duration::ZERO;
    loop {
        match steps.try_recv() {
            Ok(step) if step.correlation_id == case => {
                if let StepKind::ModelTurn { elapsed, .. } = step.kind {
                    model += elapsed;
                }
            }
            Ok(_) | Err(TryRecvError::Lagged(_)) => {}
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
        }
    }
    let outcome = match ends.remove(&case) {
        None => Err(format!("{} did not complete within {} s", request.order_id, COLD_DEADLINE.as_secs())),
        Some(end) => match check_end(&local, &request.order_id, &end) {
            Some(wrong) => Err(wrong),
            None if extra > 0 => Err(format!("{}: completed {} times", request.order_id, extra + 1)),
            None => Ok(ColdRun { start, wall: end.at - submitted, model }),
        },
    };
    local.shutdown().await;
    outcome
}

/// A synthetic customer's request, shaped like the seeded case.
fn synthetic_request(i: usize, needed_by: NaiveDate) -> SupportRequest {
    SupportRequest {
        customer: format!("c-s{i:06}"),
        order_id: format!("o-s{i:06}"),
        message: "I was charged twice for my order, and only the headphones arrived: the speaker is missing. \
                  I need everything by tomorrow."
            .into(),
        ..SupportRequest::seeded(needed_by)
    }
}

async fn load(cases: usize) -> Vec<String> {
    println!("{cases} concurrent cases: synthetic customers on one fresh data directory, offline model");
    if cases == 0 {
        return Vec::new();
    }
    let dir = temp_dir();
    let mut options = Options::new(dir.path());
    options.data_set = Some(DataSet::synthetic(cases));
    let started = Instant::now();
    let local = match Local::start(options).await {
        Ok(local) => Arc::new(local),
        Err(e) => return vec![format!("load: start: {e}")],
    };
    println!("load: start        {:>10}  (back office of {cases} customers)", ms(started.elapsed()));
    subscribe_ends(&local.bus).await;

    // Model time over every case, from the observer; it may miss steps under load (lagged).
    let mut steps = local.services.observer.subscribe();
    let model_time = tokio::spawn(async move {
        let (mut model, mut turns, mut missed) = (Duration::ZERO, 0u64, 0u64);
        loop {
            match steps.recv().await {
                Ok(step) => {
                    if let StepKind::ModelTurn { elapsed, .. } = step.kind {
                        model += elapsed;
                        turns += 1;
                    }
                }
                Err(RecvError::Lagged(n)) => missed += n,
                Err(RecvError::Closed) => return (model, turns, missed),
            }
        }
    });

    let needed_by = tomorrow();
    let begun = Instant::now();
    let deadline = begun + LOAD_DEADLINE;
    let ends = tokio::spawn(receive_ends(local.bus.clone(), cases, deadline));
    let mut submits = JoinSet::new();
    for i in 1..=cases {
        let local = local.clone();
        submits.spawn(async move {
            let request = synthetic_request(i, needed_by);
            let at = Instant::now();
            let placed = local.submit(&request).await.map_err(|e| format!("submit {}: {e}", request.order_id))?;
            Ok::<_, String>((placed.correlation_id().unwrap_or(placed.id()).to_owned(), request.order_id, at))
        });
    }
    let mut submitted = Vec::with_capacity(cases);
    let mut failures = Vec::new();
    while let Some(joined) = submits.join_next().await {
        match joined {
            Ok(Ok(case)) => submitted.push(case),
            Ok(Err(e)) => failures.push(e),
            Err(e) => failures.push(format!("a submit task failed: {e}")),
        }
    }
    let submit_time = begun.elapsed();
    let (mut ends, extra) = ends.await.expect("the case-end receiver finished");
    let wall = ends.values().map(|e| e.at).max().unwrap_or(begun) - begun;
    let events = local.bus.describe_archive(ARCHIVE).await.map(|a| a.event_count).unwrap_or(0);

    let mut latencies = Vec::with_capacity(submitted.len());
    let (mut missing, mut right) = (0, 0);
    for (case, order_id, at) in &submitted {
        match ends.remove(case) {
            None => missing += 1,
            Some(end) => {
                latencies.push(end.at - *at);
                match check_end(&local, order_id, &end) {
                    Some(wrong) => failures.push(wrong),
                    None => right += 1,
                }
            }
        }
    }
    let completed = latencies.len();
    if missing > 0 {
        failures.push(format!(
            "{completed} of {cases} cases completed within {} s; {missing} did not",
            LOAD_DEADLINE.as_secs()
        ));
    }
    if extra > 0 {
        failures.push(format!("{extra} case end(s) beyond one per case"));
    }

    let secs = wall.as_secs_f64().max(f64::EPSILON);
    latencies.sort_unstable();
    println!("load: cases        {completed:>10}  of {cases} submitted in {}", ms(submit_time));
    println!("load: wall         {:>10}  (first submit to last completion)", ms(wall));
    println!("load: cases/s      {:>10.1}", completed as f64 / secs);
    println!(
        "load: events/s     {:>10.1}  ({events} events published, {:.1} per case)",
        events as f64 / secs,
        events as f64 / cases as f64
    );
    println!(
        "load: latency      p50 {:>8}  p95 {:>8}  p99 {:>8}  max {:>8}",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 95.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    println!("load: right        {right:>10}  of {completed} completed (not escalated, its own order, one refund)");

    match Arc::try_unwrap(local) {
        Ok(local) => local.shutdown().await,
        Err(_) => failures.push("load: the system is still shared after every submit ended".into()),
    }
    // The observer closes with the system, which ends the model-time task.
    if let Ok(Ok((model, turns, missed))) = tokio::time::timeout(Duration::from_secs(5), model_time).await {
        let per_case = model.as_secs_f64() / cases as f64;
        println!(
            "load: model        {:>10}  summed over {turns} turns ({} per case; {missed} steps missed by the observer)",
            ms(model),
            ms(Duration::from_secs_f64(per_case))
        );
    }
    for failure in &failures {
        println!("load: FAILED: {failure}");
    }
    failures
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
