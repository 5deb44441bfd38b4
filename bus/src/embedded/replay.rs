//! The replay engine: a replay walks its archive's events in a window of event times, in
//! order, and puts each again (a new `id`, `replay-name` set) to every rule or to the rules it
//! names only. The writer advances active replays a batch per transaction between calls, so a
//! replay survives a restart where it stopped, and can be cancelled between batches.

use std::collections::BTreeSet;

use chrono::DateTime;
use rusqlite::{OptionalExtension, params};

use super::rules::{Origin, check_description, check_name, deliver};
use super::writer::Ctx;
use super::{archive, body};
use crate::api::{BusError, MAX_ACTIVE_REPLAYS, Replay, ReplaySpec, ReplayState};

pub(crate) fn check(spec: &ReplaySpec) -> Result<(), BusError> {
    check_name("replay", &spec.name, 64)?;
    check_description(&spec.description)?;
    if spec.event_end_time < spec.event_start_time {
        return Err(BusError::invalid(
            "EventEndTime",
            format!("{} is before EventStartTime {}", spec.event_end_time, spec.event_start_time),
        ));
    }
    if let Some(rules) = &spec.rules
        && rules.is_empty()
    {
        return Err(BusError::invalid("FilterArns", "name at least one rule, or none to replay to every rule"));
    }
    Ok(())
}

pub(crate) fn start(ctx: &mut Ctx<'_>, spec: ReplaySpec) -> Result<Replay, BusError> {
    if !archive::exists(ctx, &spec.archive)? {
        return Err(BusError::ArchiveNotFound(spec.archive));
    }
    if let Some(rules) = &spec.rules {
        for rule in rules {
            let found = ctx
                .tx
                .query_row("SELECT 1 FROM rules WHERE name = ?1", [rule], |_| Ok(()))
                .optional()
                .map_err(|e| ctx.db(e))?;
            if found.is_none() {
                return Err(BusError::RuleNotFound(rule.clone()));
            }
        }
    }
    let taken = ctx
        .tx
        .query_row("SELECT 1 FROM replays WHERE name = ?1", [&spec.name], |_| Ok(()))
        .optional()
        .map_err(|e| ctx.db(e))?;
    if taken.is_some() {
        return Err(BusError::ReplayExists(spec.name));
    }
    let active: i64 = ctx
        .tx
        .query_row("SELECT count(*) FROM replays WHERE state IN ('STARTING', 'RUNNING', 'CANCELLING')", [], |r| {
            r.get(0)
        })
        .map_err(|e| ctx.db(e))?;
    if active as usize >= MAX_ACTIVE_REPLAYS {
        return Err(BusError::TooManyReplays { active: active as usize, limit: MAX_ACTIVE_REPLAYS });
    }
    let (start, end) = (spec.event_start_time.timestamp_millis(), spec.event_end_time.timestamp_millis());
    let total: i64 = ctx
        .tx
        .query_row(
            "SELECT count(*) FROM archived WHERE archive = ?1 AND time_ms BETWEEN ?2 AND ?3",
            params![spec.archive, start, end],
            |r| r.get(0),
        )
        .map_err(|e| ctx.db(e))?;
    let rules = spec.rules.as_ref().map(|r| serde_json::to_string(r).unwrap_or_default());
    ctx.tx
        .execute(
            "INSERT INTO replays (name, archive, description, start_ms, end_ms, rules, state, cursor_time, cursor_seq,
                                  total, started_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'STARTING', ?4, -1, ?7, ?8)",
            params![spec.name, spec.archive, spec.description, start, end, rules, total, ctx.now],
        )
        .map_err(|e| ctx.db(e))?;
    ctx.changed()?;
    ctx.st.replays_active = true;
    describe(ctx, &spec.name)
}

pub(crate) fn describe(ctx: &mut Ctx<'_>, name: &str) -> Result<Replay, BusError> {
    read(ctx, Some(name))?.into_iter().next().ok_or_else(|| BusError::ReplayNotFound(name.to_owned()))
}

pub(crate) fn list(ctx: &mut Ctx<'_>) -> Result<Vec<Replay>, BusError> {
    read(ctx, None)
}

fn read(ctx: &Ctx<'_>, only: Option<&str>) -> Result<Vec<Replay>, BusError> {
    let time = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap_or_default();
    ctx.tx
        .prepare_cached(
            "SELECT name, archive, description, state, reason, start_ms, end_ms, rules, last_replayed_ms, total,
                    replayed, deliveries, started_ms, ended_ms
             FROM replays WHERE ?1 IS NULL OR name = ?1 ORDER BY started_ms, name",
        )
        .and_then(|mut s| {
            s.query_map([only], |r| {
                let name: String = r.get(0)?;
                let state: String = r.get(3)?;
                let rules: Option<String> = r.get(7)?;
                Ok(Replay {
                    arn: ctx.st.names.replay_arn(&name),
                    name,
                    archive: r.get(1)?,
                    description: r.get(2)?,
                    state: ReplayState::parse(&state).unwrap_or(ReplayState::Failed),
                    state_reason: r.get(4)?,
                    event_start_time: time(r.get(5)?),
                    event_end_time: time(r.get(6)?),
                    rules: rules.and_then(|t| serde_json::from_str::<BTreeSet<String>>(&t).ok()),
                    event_last_replayed_time: r.get::<_, Option<i64>>(8)?.map(time),
                    events_total: r.get::<_, i64>(9)? as u64,
                    events_replayed: r.get::<_, i64>(10)? as u64,
                    deliveries: r.get::<_, i64>(11)? as u64,
                    replay_start_time: time(r.get(12)?),
                    replay_end_time: r.get::<_, Option<i64>>(13)?.map(time),
                })
            })
            .and_then(|rows| rows.collect())
        })
        .map_err(|e| ctx.db(e))
}

pub(crate) fn cancel(ctx: &mut Ctx<'_>, name: &str) -> Result<ReplayState, BusError> {
    let replay = describe(ctx, name)?;
    if !matches!(replay.state, ReplayState::Starting | ReplayState::Running) {
        return Err(BusError::ReplayNotCancellable { name: name.to_owned(), state: replay.state.to_string() });
    }
    ctx.tx.execute("UPDATE replays SET state = 'CANCELLING' WHERE name = ?1", [name]).map_err(|e| ctx.db(e))?;
    ctx.st.replays_active = true;
    Ok(ReplayState::Cancelling)
}

pub(crate) fn any_active(ctx: &mut Ctx<'_>) -> Result<bool, BusError> {
    ctx.tx
        .query_row("SELECT 1 FROM replays WHERE state IN ('STARTING', 'RUNNING', 'CANCELLING') LIMIT 1", [], |_| Ok(()))
        .optional()
        .map(|found| found.is_some())
        .map_err(|e| ctx.db(e))
}

struct Active {
    name: String,
    archive: String,
    state: ReplayState,
    end_ms: i64,
    rules: Option<BTreeSet<String>>,
    cursor: (i64, i64),
}

/// Advances every active replay by one batch. A replay whose batch fails (the store is full, an
/// event cannot be routed) is rolled back to where it was and marked FAILED with the reason;
/// the other replays and the calls of the same transaction go on.
pub(crate) fn step(ctx: &mut Ctx<'_>) -> Result<(), BusError> {
    for (name, reason) in std::mem::take(&mut ctx.st.replay_failures) {
        finish(ctx, &name, ReplayState::Failed, Some(&reason))?;
    }
    let active: Vec<Active> = ctx
        .tx
        .prepare_cached(
            "SELECT name, archive, state, end_ms, rules, cursor_time, cursor_seq FROM replays
             WHERE state IN ('STARTING', 'RUNNING', 'CANCELLING') ORDER BY started_ms, name",
        )
        .and_then(|mut s| {
            s.query_map([], |r| {
                let state: String = r.get(2)?;
                let rules: Option<String> = r.get(4)?;
                Ok(Active {
                    name: r.get(0)?,
                    archive: r.get(1)?,
                    state: ReplayState::parse(&state).unwrap_or(ReplayState::Failed),
                    end_ms: r.get(3)?,
                    rules: rules.and_then(|t| serde_json::from_str(&t).ok()),
                    cursor: (r.get(5)?, r.get(6)?),
                })
            })
            .and_then(|rows| rows.collect())
        })
        .map_err(|e| ctx.db(e))?;
    ctx.st.replays_active = !active.is_empty();
    for replay in active {
        let name = replay.name.clone();
        if let Err(e) = ctx.in_savepoint(|ctx| advance(ctx, replay)) {
            if ctx.tx.is_autocommit() {
                // The transaction is gone: the next round records the failure.
                ctx.st.replay_failures.push((name, e.to_string()));
                return Err(e);
            }
            ctx.in_savepoint(|ctx| finish(ctx, &name, ReplayState::Failed, Some(&e.to_string())))?;
        }
    }
    Ok(())
}

fn finish(ctx: &Ctx<'_>, name: &str, state: ReplayState, reason: Option<&str>) -> Result<(), BusError> {
    ctx.tx
        .execute(
            "UPDATE replays SET state = ?2, reason = ?3, ended_ms = ?4 WHERE name = ?1",
            params![name, state.as_str(), reason, ctx.now],
        )
        .map_err(|e| ctx.db(e))?;
    Ok(())
}

fn advance(ctx: &mut Ctx<'_>, replay: Active) -> Result<(), BusError> {
    if replay.state == ReplayState::Cancelling {
        return finish(ctx, &replay.name, ReplayState::Cancelled, Some("cancelled by request"));
    }
    if !archive::exists(ctx, &replay.archive)? {
        let reason = format!("archive `{}` was deleted during the replay", replay.archive);
        return finish(ctx, &replay.name, ReplayState::Failed, Some(&reason));
    }
    let limit = ctx.st.replay_batch;
    let batch: Vec<(i64, i64, String)> = ctx
        .tx
        .prepare_cached(
            "SELECT a.time_ms, a.seq, e.body FROM archived a JOIN events e ON e.seq = a.seq
             WHERE a.archive = ?1 AND (a.time_ms, a.seq) > (?2, ?3) AND a.time_ms <= ?4
             ORDER BY a.time_ms, a.seq LIMIT ?5",
        )
        .and_then(|mut s| {
            s.query_map(params![replay.archive, replay.cursor.0, replay.cursor.1, replay.end_ms, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .and_then(|rows| rows.collect())
        })
        .map_err(|e| ctx.db(e))?;
    let mut deliveries = 0u64;
    let mut cursor = replay.cursor;
    for (time_ms, seq, stored) in &batch {
        let id = uuid::Uuid::new_v4().to_string();
        let Some(again) = body::replayed(stored, &id, &replay.name) else {
            let reason = format!("archived event {seq} is not in the bus's delivered-event format");
            return finish(ctx, &replay.name, ReplayState::Failed, Some(&reason));
        };
        deliveries += deliver(ctx, &again, *time_ms, ctx.now, &id, Origin::Replay(replay.rules.as_ref()))?;
        cursor = (*time_ms, *seq);
    }
    let last = batch.last().map(|(t, _, _)| *t);
    ctx.tx
        .execute(
            "UPDATE replays SET state = 'RUNNING', cursor_time = ?2, cursor_seq = ?3,
                    last_replayed_ms = coalesce(?4, last_replayed_ms), replayed = replayed + ?5,
                    deliveries = deliveries + ?6
             WHERE name = ?1",
            params![replay.name, cursor.0, cursor.1, last, batch.len() as i64, deliveries as i64],
        )
        .map_err(|e| ctx.db(e))?;
    if batch.len() < limit {
        finish(ctx, &replay.name, ReplayState::Completed, None)?;
    }
    Ok(())
}
