//! The writer thread: it owns the database connection, runs every call sent to it, and commits
//! all calls waiting at once in one transaction before answering any of them (group commit).
//! Between calls it advances active replays and sweeps expired archive entries.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::store::{Durability, Faults};
use super::{Names, Wakers, archive, replay, rules};
use crate::api::{BusError, StorageFault};
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
                Some(ctx) => ctx.in_savepoint(f),
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
    /// Replays whose batch failed with a fault that rolled the transaction back: marked FAILED,
    /// with the reason, by the next round.
    pub replay_failures: Vec<(String, String)>,
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
    /// After a failed batch, background work waits until then rather than spin on the fault.
    pub background_pause: Instant,
    durability: Durability,
    synchronous: Option<Durability>,
    last_sweep: i64,
}

impl State {
    pub fn new(names: Arc<Names>, clock: Arc<dyn Clock>, durability: Durability, replay_batch: usize) -> Self {
        Self {
            replay_failures: Vec::new(),
            names,
            clock,
            routes: None,
            generation: -1,
            scratch: Scratch::new(),
            rng: fastrand::Rng::new(),
            replays_active: true, // until the store says otherwise
            replay_batch: replay_batch.max(1),
            background_pause: Instant::now(),
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

    /// Runs `f` so that it takes effect whole or not at all: a call that fails leaves nothing
    /// behind, and the rest of its batch still commits. Only a fault that may have damaged the
    /// transaction itself fails the whole batch.
    pub fn in_savepoint<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, BusError>) -> Result<T, BusError> {
        // Prepared once: a savepoint per call is on the writer's hottest path.
        if let Err(e) = self.tx.prepare_cached("SAVEPOINT call").and_then(|mut s| s.execute([])) {
            let e = self.db(e);
            self.poison(e.clone());
            return Err(e);
        }
        let result = f(self);
        if self.tx.is_autocommit() {
            // SQLite rolled the whole transaction back (a full disk, an i/o error): nothing of
            // the batch stands.
            let e = match &result {
                Err(e) => e.clone(),
                Ok(_) => BusError::Internal("the transaction ended inside a call".into()),
            };
            self.poison(e.clone());
            return Err(e);
        }
        let ended = if result.is_ok() {
            self.tx.prepare_cached("RELEASE call").and_then(|mut s| s.execute([])).map(|_| ())
        } else {
            self.tx.execute_batch("ROLLBACK TO call; RELEASE call")
        };
        if let Err(e) = ended {
            self.poison(self.db(e));
        }
        if let Err(e @ (BusError::Internal(_) | BusError::Storage { .. })) = &result
            && !matches!(e, BusError::Storage { kind: StorageFault::Full, .. })
        {
            self.poison(e.clone());
        }
        result
    }

    /// SQLite's error as the caller's error.
    pub fn db(&self, e: rusqlite::Error) -> BusError {
        self.faults.map(e)
    }

    /// Marks rules, targets or archives changed: this process reloads them before the next
    /// event, and other processes on the same store see the generation move.
    pub fn changed(&mut self) -> Result<(), BusError> {
        let generation = self
            .tx
            .query_row("UPDATE meta SET value = value + 1 WHERE key = 'generation' RETURNING value", [], |r| r.get(0))
            .map_err(|e| self.db(e))?;
        self.st.routes = None;
        self.st.generation = generation;
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
        let busy = st.replays_active && Instant::now() >= st.background_pause;
        let wait = if busy { Duration::ZERO } else { TICK };
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
        if !jobs.is_empty() {
            calls(&mut conn, &faults, &mut st, jobs, &wakers);
        }
        let now = st.clock.now_ms();
        let sweep = now.saturating_sub(st.last_sweep) >= SWEEP_EVERY_MS;
        let replays = st.replays_active || changed_elsewhere(&conn, &st);
        if (replays && Instant::now() >= st.background_pause) || sweep {
            background(&mut conn, &faults, &mut st, sweep, &wakers);
        }
    }
}

/// Whether another process moved the store's generation (a rule changed, a replay started).
fn changed_elsewhere(conn: &Connection, st: &State) -> bool {
    conn.query_row("SELECT value FROM meta WHERE key = 'generation'", [], |r| r.get::<_, i64>(0))
        .map(|g| g != st.generation)
        .unwrap_or(false)
}

/// Sets how hard the next commit is pushed to disk, and opens its transaction.
fn begin<'c>(
    conn: &'c mut Connection,
    faults: &Faults,
    st: &mut State,
    durable: bool,
) -> Result<Transaction<'c>, BusError> {
    let level = if durable { st.durability } else { Durability::Normal };
    if st.synchronous != Some(level) {
        st.synchronous = None;
        conn.pragma_update(None, "synchronous", level.pragma()).map_err(|e| faults.map(e))?;
        st.synchronous = Some(level);
    }
    conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| faults.map(e))
}

/// Runs the waiting calls in one transaction and answers them once it has committed.
fn calls(conn: &mut Connection, faults: &Faults, st: &mut State, jobs: Vec<Job>, wakers: &Wakers) {
    let durable = jobs.iter().any(|j| j.durable);
    let tx = match begin(conn, faults, st, durable) {
        Ok(tx) => tx,
        Err(e) => return fail_all(jobs, &e, st),
    };
    let now = st.clock.now_ms();
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
            forget(st);
            for reply in replies {
                reply(Some(&e));
            }
        }
    }
}

/// Work nobody waits on, in a transaction of its own so that its faults never fail a call:
/// a batch of every active replay, and the archive sweep when due.
///
/// Not fsynced: the batch's deliveries and the replay's cursor commit together, so a power
/// loss takes back both and the replay puts that batch again (each event with its CloudEvent
/// `id`, which consumers dedupe); a sweep lost is swept again. An fsync here would stall
/// every call queued behind it, for nothing that could be lost.
fn background(conn: &mut Connection, faults: &Faults, st: &mut State, sweep: bool, wakers: &Wakers) {
    let Ok(tx) = begin(conn, faults, st, false) else {
        st.background_pause = Instant::now() + TICK;
        return;
    };
    let now = st.clock.now_ms();
    let mut ctx = Ctx { tx: &tx, now, st, faults, landed: Vec::new(), poisoned: None };
    let mut outcome =
        refresh(&mut ctx).and_then(|()| if ctx.st.replays_active { replay::step(&mut ctx) } else { Ok(()) });
    let mut swept_all = true;
    if outcome.is_ok() && sweep {
        match ctx.in_savepoint(archive::sweep) {
            Ok(dropped) => swept_all = dropped < archive::SWEEP_CHUNK,
            Err(e) => outcome = Err(e),
        }
    }
    if let Some(e) = ctx.poisoned.take() {
        outcome = Err(e);
    }
    let landed = std::mem::take(&mut ctx.landed);
    match outcome.and_then(|()| tx.commit().map_err(|e| faults.map(e))) {
        Ok(()) => {
            if sweep && swept_all {
                st.last_sweep = now;
            }
            for inbox in dedup(landed) {
                wakers.wake(&inbox);
            }
        }
        Err(_) => {
            // Tried again after a pause; a replay that cannot go on was noted in
            // `replay_failures` and is marked FAILED by the next round.
            forget(st);
            st.background_pause = Instant::now() + TICK;
            if sweep {
                st.last_sweep = now;
            }
        }
    }
}

/// After a rollback, what was cached from inside the transaction may be wrong.
fn forget(st: &mut State) {
    st.routes = None;
    st.generation = -1;
    st.replays_active = false; // the next round asks the store again
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
