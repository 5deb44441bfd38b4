//! The replay benchmark (issue 7's speed item): replays archived events to one agent whose
//! effects are all in the ledger already, and prints how fast, with the proof that no effect
//! ran again. Fails only when the proof fails or the bench could not run. All on the embedded
//! bus, the real agents runtime and the offline model:
//! 1. Setup (not timed): the synthetic back office of `CASES` customers, each charged twice, and
//!    the real `payments` agent alone. `EVENTS_PER_CASE` distinct `SupportTriaged` events per
//!    case (`["duplicate_charge"]`, the customer as `app_user`, one correlationid per case),
//!    round by round, event times 1 ms apart in a window that ended before anything ran, are
//!    archived in `choreo` and handled live: the first of each case refunds, the others find it
//!    refunded; every completion lands in the ledger. Budgets are wide (a load, not a case).
//! 2. `payments`' `processed` rows are deleted, as after a crash after its runs, and the setup's
//!    writes checkpointed: a replay then enters the agent's run for every event.
//! 3. Timed, until the replay is COMPLETED, the inbox drained and every event back in
//!    `processed` (polled every 10 ms): the window replayed to `agent-payments` only. Each run
//!    is answered from the ledger (its recorded completion), no model turn, nothing put on the
//!    bus again. Proof: refunds and ledger rows unchanged, none left `started`, `suppressed`
//!    grown by exactly the attempts, no side-effecting call ending `Ok`, no hop or turn spent.
//! 4. Timed: the same window again, each event acknowledged as a duplicate (the dedupe path).
//!
//! `cargo bench -p choreo-replay --bench replay`. Env: `REPLAY_BENCH_CASES` (1000),
//! `REPLAY_BENCH_EVENTS_PER_CASE` (100), `REPLAY_BENCH_DIR` (the data's place; the temp dir).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use choreo_backoffice::DataSet;
use choreo_bus::api::{InboxSummary, Replay, ReplayState};
use choreo_bus::publisher::Publisher;
use choreo_bus::{Bus, EmbeddedBus, Inboxes};
use choreo_consumers::local::{ARCHIVE, Local, Options, default_agents_dir};
use choreo_consumers::observe::{Observer, StepKind, ToolOutcome};
use choreo_consumers::runner::ESCALATE_TOOL;
use choreo_consumers::tools::Registry;
use choreo_replay::{ReplayRequest, plan, start};
use choreo_schemas::Envelope;
use choreo_schemas::catalog::{IssueKind, SupportTriaged};
use choreo_schemas::envelope::{AuthType, Budget, EnvelopeBuilder};
use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

#[path = "replay/files.rs"]
mod files;
use files::Files;

/// The allocator `choreo serve` uses (see choreo/src/main.rs), so the figures are its figures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const AGENT: &str = "payments";
/// The agent's rule and its inbox (`agent-<name>`, see the runtime).
const RULE: &str = "agent-payments";
const INBOX: &str = "agent-payments";
const POLL: Duration = Duration::from_millis(10);
/// How long the live handling, and each replay, may take before the bench gives up.
const DEADLINE: Duration = Duration::from_secs(1800);
const TARGET: f64 = 10_000.0;

fn main() -> ExitCode {
    let cases = env_number("REPLAY_BENCH_CASES", 1000);
    let per_case = env_number("REPLAY_BENCH_EVENTS_PER_CASE", 100);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("start the tokio runtime");
    match runtime.block_on(bench(cases, per_case)) {
        Ok(failures) if failures.is_empty() => ExitCode::SUCCESS,
        Ok(failures) => {
            for failure in &failures {
                eprintln!("FAIL: {failure}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("FAIL: the bench could not run: {e}");
            ExitCode::FAILURE
        }
    }
}

fn env_number(name: &str, default: usize) -> usize {
    let parse = |t: String| t.trim().parse().unwrap_or_else(|_| panic!("{name} must be a whole number, not `{t}`"));
    std::env::var(name).map_or(default, parse)
}

fn temp_dir() -> tempfile::TempDir {
    match std::env::var_os("REPLAY_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).expect("a temp dir in REPLAY_BENCH_DIR"),
        None => tempfile::tempdir().expect("a temp dir"),
    }
}

/// Copies a folder and what it holds.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// What the runtime's observer reported during a phase.
#[derive(Debug, Default)]
struct Tally {
    duplicates: u64,
    turns: u64,
    done: u64,
    failed: u64,
    /// Steps the observer dropped because this listener lagged.
    missed: u64,
    /// Tool calls by tool and outcome.
    tools: BTreeMap<(String, &'static str), u64>,
    /// Summed: runs (received to done, as the runtime times them), model turns, tool calls.
    run_time: Duration,
    model_time: Duration,
    tool_time: BTreeMap<String, Duration>,
}

impl Tally {
    fn add(&mut self, kind: StepKind) {
        match kind {
            StepKind::Duplicate => self.duplicates += 1,
            StepKind::ModelTurn { elapsed, .. } => {
                self.turns += 1;
                self.model_time += elapsed;
            }
            StepKind::ToolCall { tool, outcome, elapsed, .. } => {
                *self.tool_time.entry(tool.clone()).or_default() += elapsed;
                *self.tools.entry((tool, outcome.as_str())).or_default() += 1;
            }
            StepKind::Done { elapsed, .. } => {
                self.done += 1;
                self.run_time += elapsed;
            }
            StepKind::Failed { .. } => self.failed += 1,
            _ => {}
        }
    }

    /// Calls with `outcome` of tools that act on the world: registry tools marked so (through
    /// the ledger), completions and escalations.
    fn effects(&self, registry: &Registry, outcome: ToolOutcome) -> u64 {
        let acts =
            |t: &str| t.starts_with("complete.") || t == ESCALATE_TOOL || registry.get(t).is_some_and(|t| t.effect);
        self.tools.iter().filter(|((tool, o), _)| *o == outcome.as_str() && acts(tool)).map(|(_, n)| n).sum()
    }
}

/// Counts the observer's steps until told to stop, then what is still queued; `handled`
/// (events done or found duplicate) and `missed` are readable meanwhile, so that waiting
/// for the end does not have to ask the bus's writer thread all the time.
struct Listener {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Tally>,
    handled: Arc<AtomicU64>,
    missed: Arc<AtomicU64>,
}

impl Listener {
    fn start(observer: &Observer) -> Self {
        let mut steps = observer.subscribe();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let (handled, missed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (h, m) = (handled.clone(), missed.clone());
        let count = move |tally: &mut Tally, step: Result<StepKind, u64>| match step {
            Ok(kind) => {
                if matches!(kind, StepKind::Done { .. } | StepKind::Duplicate) {
                    h.fetch_add(1, Ordering::Relaxed);
                }
                tally.add(kind);
            }
            Err(n) => {
                m.fetch_add(n, Ordering::Relaxed);
                tally.missed += n;
            }
        };
        let task = tokio::spawn(async move {
            let mut tally = Tally::default();
            loop {
                tokio::select! {
                    biased;
                    step = steps.recv() => match step {
                        Ok(step) => count(&mut tally, Ok(step.kind)),
                        Err(RecvError::Lagged(n)) => count(&mut tally, Err(n)),
                        Err(RecvError::Closed) => return tally,
                    },
                    _ = &mut stopped => break,
                }
            }
            loop {
                match steps.try_recv() {
                    Ok(step) => count(&mut tally, Ok(step.kind)),
                    Err(TryRecvError::Lagged(n)) => count(&mut tally, Err(n)),
                    Err(TryRecvError::Empty | TryRecvError::Closed) => return tally,
                }
            }
        });
        Self { stop, task, handled, missed }
    }

    /// Events seen handled, plus steps missed (which may have been such events).
    fn progress(&self) -> u64 {
        self.handled.load(Ordering::Relaxed) + self.missed.load(Ordering::Relaxed)
    }

    async fn finish(self) -> Tally {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// The agent's inbox (messages waiting and in flight) and the dead letters.
async fn inboxes(bus: &EmbeddedBus) -> Result<(u64, u64), String> {
    let inboxes = bus.list_inboxes().await.map_err(|e| format!("list inboxes: {e}"))?;
    let rules = bus.list_rules().await.map_err(|e| format!("list rules: {e}"))?;
    let depth = |i: &InboxSummary| i.visible + i.hidden;
    let dead = choreo_replay::dead_letter_inboxes(&rules, &inboxes).iter().map(depth).sum();
    Ok((inboxes.iter().filter(|i| i.name == INBOX).map(depth).sum(), dead))
}

/// Waits until the inbox is empty and `expected` events of the agent are in `processed`. The
/// observer's count says when to start asking the databases, every `POLL`.
async fn drained(
    bus: &EmbeddedBus,
    files: &Files,
    listener: &Listener,
    expected: i64,
    since: Instant,
) -> Result<Duration, String> {
    loop {
        if listener.progress() >= expected as u64 && files.processed()? >= expected && inboxes(bus).await?.0 == 0 {
            return Ok(since.elapsed());
        }
        if since.elapsed() > DEADLINE {
            let ((depth, dead), processed) = (inboxes(bus).await?, files.processed()?);
            return Err(format!(
                "not drained in {} s: {depth} in the inbox, {processed} of {expected} processed, {dead} dead letters",
                DEADLINE.as_secs()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The `SupportTriaged` events: round by round across the cases, 1 ms apart from `start`.
fn triages(cases: usize, per_case: usize, start: DateTime<Utc>) -> Result<Vec<Envelope>, String> {
    // Room for every run and turn of the live handling and the replays of all the events.
    let budget = Budget { turns: 1_000_000, tokens: 1 << 40, hops: 1_000_000 };
    let mut events = Vec::with_capacity(cases * per_case);
    for round in 0..per_case {
        for case in 1..=cases {
            let order_id = format!("o-s{case:06}");
            let data = SupportTriaged {
                order_id: order_id.clone(),
                issues: vec![IssueKind::DuplicateCharge],
                summary: "The customer was charged twice for the order and wants the duplicate refunded.".into(),
                needed_by: None,
            };
            let at = start + TimeDelta::milliseconds(events.len() as i64);
            let event = EnvelopeBuilder::of("agents.support", &data)
                .id(format!("rb-{case:06}-{round:04}"))
                .subject(format!("orders/{order_id}"))
                .correlation_id(format!("case-s{case:06}"))
                .auth(AuthType::AppUser, format!("c-s{case:06}"))
                .budget(budget)
                .time(at)
                .build()
                .map_err(|e| format!("build a SupportTriaged: {e}"))?;
            events.push(event);
        }
    }
    Ok(events)
}

/// Publishes `events` from `PUBLISHERS` tasks, each taking every `PUBLISHERS`-th chunk, so
/// that the bus commits their calls together; fails on any event not published.
async fn publish(local: &Local, events: Vec<Envelope>) -> Result<(), String> {
    const PUBLISHERS: usize = 8;
    const CHUNK: usize = 100;
    let events = Arc::new(events);
    let mut tasks = JoinSet::new();
    for first in 0..PUBLISHERS {
        let (events, publisher) = (events.clone(), Publisher::new(local.bus.clone()));
        tasks.spawn(async move {
            for chunk in events.chunks(CHUNK).skip(first).step_by(PUBLISHERS) {
                let outcomes = publisher.publish(chunk).await.map_err(|e| format!("publish: {e}"))?;
                if let Some(bad) = outcomes.iter().find(|o| !o.is_published()) {
                    return Err(format!("publish: {bad:?}"));
                }
            }
            Ok(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| format!("a publisher task failed: {e}"))??;
    }
    Ok(())
}

/// One timed replay's figures.
struct Timed {
    /// Until the replay engine said COMPLETED.
    engine: Duration,
    /// Until the inbox was drained and every event processed.
    end_to_end: Duration,
    /// The process's CPU time over `end_to_end`.
    cpu: Duration,
    /// The replay as the bus described it when COMPLETED.
    replay: Replay,
    tally: Tally,
}

/// Replays the window to the agent's rule and waits until it is all handled.
async fn replay(
    local: &Local,
    files: &Files,
    name: &str,
    window: (DateTime<Utc>, DateTime<Utc>),
    expected: i64,
) -> Result<Timed, String> {
    let bus = local.bus.as_ref();
    let request = ReplayRequest {
        name: name.to_owned(),
        archive: ARCHIVE.to_owned(),
        rules: BTreeSet::from([RULE.to_owned()]),
        case: None,
        from: Some(window.0),
        to: Some(window.1),
        now: Utc::now(),
        description: Some("replay bench".into()),
    };
    let planned = plan(bus, request).await.map_err(|e| format!("plan {name}: {e}"))?;
    let listener = Listener::start(&local.services.observer);
    let (began, cpu_before) = (Instant::now(), process_cpu());
    start(bus, &planned).await.map_err(|e| format!("start {name}: {e}"))?;
    let (engine, described) = loop {
        let described = bus.describe_replay(name).await.map_err(|e| format!("describe {name}: {e}"))?;
        match described.state {
            ReplayState::Completed => break (began.elapsed(), described),
            ReplayState::Starting | ReplayState::Running => {}
            other => return Err(format!("replay {name} ended {other:?}: {:?}", described.state_reason)),
        }
        if began.elapsed() > DEADLINE {
            return Err(format!("replay {name} not completed within {} s", DEADLINE.as_secs()));
        }
        tokio::time::sleep(POLL).await;
    };
    let end_to_end = drained(local.bus.as_ref(), files, &listener, expected, began).await?;
    let cpu = process_cpu().saturating_sub(cpu_before);
    let tally = listener.finish().await;
    Ok(Timed { engine, end_to_end, cpu, replay: described, tally })
}

/// The CPU time of this process so far, all threads, user and system (Linux's
/// `/proc/self/stat`, in clock ticks of 10 ms): steadier than wall time on a shared machine.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which may hold spaces) start with the state.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks: u64 = fields.get(11..13).map(|f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn per_second(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(f64::EPSILON)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn print_timed(label: &str, t: &Timed, events: u64, slots: usize) {
    let (engine, end_to_end) = (per_second(t.replay.events_replayed, t.engine), per_second(events, t.end_to_end));
    let (replayed, total, deliveries) = (t.replay.events_replayed, t.replay.events_total, t.replay.deliveries);
    println!(
        "{label}: engine     {:>10}  {engine:>9.0} archived events/s ({replayed} of {total} in the window, {deliveries} deliveries)",
        secs(t.engine)
    );
    println!("{label}: end to end {:>10}  {end_to_end:>9.0} events/s through inbox and loop", secs(t.end_to_end));
    println!(
        "{label}: cpu        {:>10}  {:>9.3} ms per event, all threads ({:.2} cores busy on average)",
        secs(t.cpu),
        t.cpu.as_secs_f64() * 1000.0 / events as f64,
        t.cpu.as_secs_f64() / t.end_to_end.as_secs_f64().max(f64::EPSILON)
    );
    let t = &t.tally;
    let tools: Vec<String> = t.tools.iter().map(|((tool, outcome), n)| format!("{tool} {outcome} {n}")).collect();
    println!(
        "{label}: observer   done {}, duplicates {}, failed {}, model turns {}, tool calls {} [{}], steps missed {}",
        t.done,
        t.duplicates,
        t.failed,
        t.turns,
        t.tools.values().sum::<u64>(),
        tools.join(", "),
        t.missed
    );
    if t.done > 0 {
        let each = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1000.0 / t.done as f64);
        let tools: Vec<String> = t.tool_time.iter().map(|(tool, d)| format!("{tool} {}", each(*d))).collect();
        let slot_time = Duration::from_secs_f64(end_to_end.recip() * slots as f64 * t.done as f64);
        println!(
            "{label}: per run    {} run (model {}; {}) of {} per event in each of {slots} in flight",
            each(t.run_time),
            each(t.model_time),
            tools.join(", "),
            each(slot_time)
        );
    }
}

async fn bench(cases: usize, per_case: usize) -> Result<Vec<String>, String> {
    let events = (cases * per_case) as u64;
    let expected = events as i64;
    println!("replay bench: {events} events ({cases} cases x {per_case}) to `{AGENT}` alone, offline model");
    let dir = temp_dir();
    let (agents_dir, data) = (dir.path().join("agents"), dir.path().join("data"));
    copy_dir(&default_agents_dir().join(AGENT), &agents_dir.join(AGENT)).map_err(|e| format!("copy the agent: {e}"))?;

    let setup = Instant::now();
    let mut options = Options::new(&data);
    options.agents_dir = agents_dir;
    options.data_set = Some(DataSet::synthetic(cases));
    let local = Local::start(options).await.map_err(|e| format!("start: {e}"))?;
    let files = Files::open(&data)?;
    println!("setup: start       {:>10}  (back office of {cases} customers, agents: {AGENT})", secs(setup.elapsed()));

    // A window that ended a minute before now, so the completions (stamped when made) fall
    // after it.
    let span = TimeDelta::milliseconds(expected);
    let window_start = Utc::now() - span - TimeDelta::minutes(1);
    let window = (window_start, window_start + span);
    let triaged = triages(cases, per_case, window_start)?;
    let listener = Listener::start(&local.services.observer);
    let published = Instant::now();
    publish(&local, triaged).await?;
    let publish_time = published.elapsed();
    println!(
        "setup: publish     {:>10}  {:>9.0} events/s ({events} SupportTriaged, archived in `{ARCHIVE}`)",
        secs(publish_time),
        per_second(events, publish_time)
    );
    let live = drained(local.bus.as_ref(), &files, &listener, expected, published).await?;
    let live_tally = listener.finish().await;
    println!(
        "setup: live        {:>10}  {:>9.0} events/s from the first publish until all handled (effects acting)",
        secs(live),
        per_second(events, live)
    );
    println!(
        "setup: outcomes    {:?}; refunds made {}, refused {}",
        files.outcomes().map_err(|e| e.to_string())?,
        live_tally.tools.get(&("payments.refund_charge".to_owned(), "ok")).unwrap_or(&0),
        live_tally.tools.get(&("payments.refund_charge".to_owned(), "refused")).unwrap_or(&0)
    );
    let mut failures = Vec::new();
    let mut expect = |holds: bool, why: String| {
        if !holds {
            failures.push(why);
        }
    };
    let live_dead = inboxes(&local.bus).await?.1;
    expect(live_dead == 0, format!("{live_dead} dead letters after the live handling"));

    // Lost acknowledgements: every event runs the loop again when replayed.
    let forgotten = files.forget_processed()?;
    let before = files.counters()?;
    let archived =
        || async { local.bus.describe_archive(ARCHIVE).await.map(|a| a.event_count).map_err(|e| e.to_string()) };
    let archived_before = archived().await?;
    println!(
        "setup: forgotten   {forgotten:>10}  processed rows of `{AGENT}` deleted; before: {} refunds, {} ledger rows, {} suppressed",
        before.refunds, before.ledger_rows, before.suppressed
    );
    // The setup's writes copied into the database files before anything is timed, so that the
    // first replay does not pay for the setup's checkpoints.
    files.checkpoint(&data)?;
    println!("setup: total       {:>10}\n", secs(setup.elapsed()));

    let slots = local.agents.iter().map(choreo_consumers::consumer::max_in_flight).sum();
    let registry = Registry::standard();
    let looped = replay(&local, &files, "bench-loop", window, expected).await?;
    let after = files.counters()?;
    print_timed("loop", &looped, events, slots);
    let (suppressed, runs) = (after.suppressed - before.suppressed, after.hops - before.hops);
    let republished = archived().await? - archived_before;
    let turns = after.turns - before.turns;
    println!("loop: budget       model turns {turns}, agent runs {runs}; completions put again {republished}");
    let acted = looped.tally.effects(&registry, ToolOutcome::Ok);
    let answered = looped.tally.effects(&registry, ToolOutcome::Suppressed);
    println!(
        "loop: proof        refunds {} -> {}, ledger rows {} -> {}, unsettled rows {}, suppressed +{suppressed}; \
         effect attempts seen: {answered} answered by the ledger, {acted} acted",
        before.refunds, after.refunds, before.ledger_rows, after.ledger_rows, after.started_rows
    );
    expect(after.refunds == before.refunds, format!("refunds went from {} to {}", before.refunds, after.refunds));
    let rows = (before.ledger_rows, after.ledger_rows);
    expect(rows.0 == rows.1, format!("ledger rows went from {} to {}", rows.0, rows.1));
    expect(after.started_rows == 0, format!("{} ledger rows are not settled", after.started_rows));
    expect(acted == 0, format!("{acted} side-effecting tool calls acted"));
    expect(suppressed >= expected, format!("suppressed grew by {suppressed}, less than the {expected} events"));
    // Every run had finished: answered from the ledger, none runs the model or spends a hop.
    expect(turns == 0 && runs == 0, format!("{turns} model turns and {runs} hops spent on finished runs"));
    expect(republished == 0, format!("{republished} completions put on the bus again"));
    if looped.tally.missed == 0 {
        expect(suppressed as u64 == answered, format!("suppressed grew by {suppressed}, {answered} attempts seen"));
        let (done, duplicates) = (looped.tally.done, looped.tally.duplicates);
        expect(done == events, format!("the loop ran {done} times ({duplicates} duplicates) for {events} events"));
    } else {
        println!("loop: note         the observer missed {} steps: the ledger is the proof", looped.tally.missed);
    }
    println!();

    let deduped = replay(&local, &files, "bench-dedupe", window, expected).await?;
    let last = files.counters()?;
    print_timed("dedupe", &deduped, events, slots);
    println!(
        "dedupe: proof      refunds {}, ledger rows {}, suppressed +{}, model turns +{}, agent runs +{}",
        last.refunds,
        last.ledger_rows,
        last.suppressed - after.suppressed,
        last.turns - after.turns,
        last.hops - after.hops
    );
    let unchanged =
        (last.refunds, last.ledger_rows, last.suppressed) == (after.refunds, after.ledger_rows, after.suppressed);
    expect(unchanged, "the dedupe replay changed the ledger or the back office".into());
    let dead = inboxes(&local.bus).await?.1;
    expect(dead == live_dead, format!("{} dead letters during the replays", dead - live_dead));
    local.shutdown().await;
    println!();

    let rate = per_second(events, looped.end_to_end);
    let met = if rate >= TARGET { "met" } else { "NOT met" };
    println!("replay bench: loop {rate:.0} events/s (target {TARGET:.0}): {met}");
    println!(
        "replay bench: dedupe {:.0} events/s; whole bench {}",
        per_second(events, deduped.end_to_end),
        secs(setup.elapsed())
    );
    for failure in &failures {
        println!("replay bench: FAILED: {failure}");
    }
    Ok(failures)
}
