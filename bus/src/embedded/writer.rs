//! The writer thread: it owns the database connection, runs every call sent to it, and commits
//! all calls waiting at once in one transaction before answering any of them (group commit).
//! Between calls it advances active replays and sweeps expired archive entries.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::store::{Durability, Faults};
use super::{Names, Wakers, archive, replay, rules};
use crate::api::BusError;
use crate::clock::Clock;
use crate::pattern::Scratch;

/// Calls committed together at most.
const MAX_BATCH: usize = 512;
/// How often an idle writer looks for work from other processes (rule changes, replays).
const TICK: Duration = Duration::from_millis(250);
/// How often archives are swept for expired events.
const SWEEP_EVERY_MS: i64 = 60_000;

/// Answers a call once its batch has committed (`None`) or failed.
type Reply = Box<dyn FnOnce(Option<&BusError>) + Send>;
/// Runs a call in the batch's transaction (`None`: the batch failed before it ran).
type Run = Box<dyn FnOnce(Option<&mut Ctx<'_>>) -> Reply + Send>;

/// One call: run inside the writer's transaction, answered after the commit.
pub(crate) struct Job {
    durable: bool,
    run: Run,
}

impl Job {
    pub fn new<T: Send + 'static>(
        durable: bool,
        f: impl FnOnce(&mut Ctx<'_>) -> Result<T, BusError> + Send + 'static,
        answer: tokio::sync::oneshot::Sender<Result<T, BusError>>,
    ) -> Self {
        let run = move |ctx: Option<&mut Ctx<'_>>| -> Reply {
            let result = match ctx {
                Some(ctx) => {
                    let result = f(ctx);
                    if let Err(e @ (BusError::Storage { .. } | BusError::Internal(_))) = &result {
                        // The transaction may hold half of this call: none of the batch commits.
                        ctx.poison(e.clone());
                    }
                    result
                }
                None => Err(BusError::Closed),
            };
            Box::new(move |failed: Option<&BusError>| {
                let _ = answer.send(match failed {
                    Some(e) => Err(e.clone()),
                    None => result,
                });
            })
        };
        Self { durable, run: Box::new(run) }
    }
}

/// What the writer keeps between transactions.
pub(crate) struct State {
    pub names: Arc<Names>,
    pub clock: Arc<dyn Clock>,
    /// The compiled rules and archives, or `None` when they must be read again.
    pub routes: Option<rules::Routes>,
    /// The store's generation the routes were read at; another process bumps it too.
    pub generation: i64,
    pub scratch: Scratch,
    pub rng: fastrand::Rng,
    pub replays_active: bool,
    pub replay_batch: usize,
    durability: Durability,
    synchronous: Option<Durability>,
    last_sweep: i64,
}

impl State {
    pub fn new(names: Arc<Names>, clock: Arc<dyn Clock>, durability: Durability, replay_batch: usize) -> Self {
        Self {
            names,
            clock,
            routes: None,
            generation: -1,
            scratch: Scratch::new(),
            rng: fastrand::Rng::new(),
            replays_active: true, // until the store says otherwise
            replay_batch: replay_batch.max(1),
            durability,
            synchronous: None,
            last_sweep: i64::MIN,
        }
    }
}

/// What a call sees: the open transaction, the time of the batch, the writer's state.
pub(crate) struct Ctx<'a> {
    pub tx: &'a Transaction<'a>,
    pub now: i64,
    pub st: &'a mut State,
    pub faults: &'a Faults,
    /// Inboxes that got messages, woken after the commit.
    pub landed: Vec<String>,
    poisoned: Option<BusError>,
}

impl Ctx<'_> {
    pub fn poison(&mut self, e: BusError) {
        self.poisoned.get_or_insert(e);
    }

    /// SQLite's error as the caller's error.
    pub fn db(&self, e: rusqlite::Error) -> BusError {
        self.faults.map(e)
    }

    /// Marks rules, targets or archives changed: this process reloads them before the next
    /// event, and other processes on the same store see the generation move.
    pub fn changed(&mut self) -> Result<(), BusError> {
        self.tx.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'", []).map_err(|e| self.db(e))?;
        self.st.routes = None;
        self.st.generation = -1;
        Ok(())
    }

    pub fn routes(&mut self) -> Result<&rules::Routes, BusError> {
        if self.st.routes.is_none() {
            let routes = rules::load_routes(self)?;
            self.st.routes = Some(routes);
        }
        Ok(self.st.routes.as_ref().expect("just loaded"))
    }
}

pub(crate) fn run(mut conn: Connection, faults: Faults, rx: Receiver<Job>, mut st: State, wakers: Arc<Wakers>) {
    loop {
        let wait = if st.replays_active { Duration::ZERO } else { TICK };
        let mut jobs = Vec::new();
        match rx.recv_timeout(wait) {
            Ok(job) => jobs.push(job),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let now = st.clock.now_ms();
        let sweep = now.saturating_sub(st.last_sweep) >= SWEEP_EVERY_MS;
        if jobs.is_empty() && !sweep && !st.replays_active && !changed_elsewhere(&conn, &st) {
            continue;
        }
        batch(&mut conn, &faults, &mut st, jobs, now, sweep, &wakers);
    }
}

/// Whether another process moved the store's generation (a rule changed, a replay started).
fn changed_elsewhere(conn: &Connection, st: &State) -> bool {
    conn.query_row("SELECT value FROM meta WHERE key = 'generation'", [], |r| r.get::<_, i64>(0))
        .map(|g| g != st.generation)
        .unwrap_or(false)
}

fn batch(
    conn: &mut Connection,
    faults: &Faults,
    st: &mut State,
    jobs: Vec<Job>,
    now: i64,
    sweep: bool,
    wakers: &Wakers,
) {
    let background = sweep || st.replays_active;
    let level = if background || jobs.iter().any(|j| j.durable) { st.durability } else { Durability::Normal };
    if st.synchronous != Some(level) {
        match conn.pragma_update(None, "synchronous", level.pragma()) {
            Ok(()) => st.synchronous = Some(level),
            Err(e) => return fail_all(jobs, &faults.map(e), st),
        }
    }
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return fail_all(jobs, &faults.map(e), st),
    };
    let mut ctx = Ctx { tx: &tx, now, st, faults, landed: Vec::new(), poisoned: None };
    if let Err(e) = refresh(&mut ctx) {
        ctx.poison(e);
    }
    let mut replies = Vec::with_capacity(jobs.len());
    for job in jobs {
        if ctx.poisoned.is_some() {
            replies.push((job.run)(None));
            continue;
        }
        match catch_unwind(AssertUnwindSafe(|| (job.run)(Some(&mut ctx)))) {
            Ok(reply) => replies.push(reply),
            Err(_) => ctx.poison(BusError::Internal("a bus call panicked; its batch was rolled back".into())),
        }
    }
    if ctx.poisoned.is_none()
        && ctx.st.replays_active
        && let Err(e) = replay::step(&mut ctx)
    {
        ctx.poison(e);
    }
    if ctx.poisoned.is_none() && sweep {
        match archive::sweep(&mut ctx) {
            Ok(_) => ctx.st.last_sweep = now,
            Err(e) => ctx.poison(e),
        }
    }
    let landed = std::mem::take(&mut ctx.landed);
    let failure = match ctx.poisoned.take() {
        Some(e) => Some(e),
        None => tx.commit().err().map(|e| faults.map(e)),
    };
    match failure {
        None => {
            for reply in replies {
                reply(None);
            }
            for inbox in dedup(landed) {
                wakers.wake(&inbox);
            }
        }
        Some(e) => {
            // Rolled back: what was cached from inside the transaction may be wrong.
            st.routes = None;
            st.generation = -1;
            st.replays_active = true;
            for reply in replies {
                reply(Some(&e));
            }
        }
    }
}

fn fail_all(jobs: Vec<Job>, e: &BusError, st: &mut State) {
    st.synchronous = None;
    for job in jobs {
        (job.run)(None)(Some(e));
    }
}

/// Reloads what another process (or a rolled-back batch) may have changed.
fn refresh(ctx: &mut Ctx<'_>) -> Result<(), BusError> {
    let generation: i64 =
        ctx.tx.query_row("SELECT value FROM meta WHERE key = 'generation'", [], |r| r.get(0)).map_err(|e| ctx.db(e))?;
    if generation != ctx.st.generation {
        ctx.st.routes = None;
        ctx.st.replays_active = replay::any_active(ctx)?;
        ctx.st.generation = generation;
    }
    Ok(())
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    v.sort_unstable();
    v.dedup();
    v
}
