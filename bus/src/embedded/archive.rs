//! Archives: the events matching an archive's pattern (every event without one), kept for its
//! retention (0 keeps them forever). Replayed events are never archived again.

use chrono::DateTime;
use rusqlite::{OptionalExtension, params};

use super::rules::{check_description, check_name, parse_pattern};
use super::writer::Ctx;
use crate::api::{Archive, ArchiveCursor, ArchiveSpec, ArchivedEvent, BusError};

const DAY_MS: i64 = 86_400_000;

pub(crate) fn check(spec: &ArchiveSpec) -> Result<(), BusError> {
    check_name("archive", &spec.name, 48)?;
    check_description(&spec.description)?;
    if let Some(p) = &spec.event_pattern {
        parse_pattern(&spec.name, p)?;
    }
    Ok(())
}

pub(crate) fn create(ctx: &mut Ctx<'_>, spec: ArchiveSpec) -> Result<String, BusError> {
    let n = ctx
        .tx
        .execute(
            "INSERT OR IGNORE INTO archives (name, pattern, retention_days, description, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![spec.name, spec.event_pattern, spec.retention_days, spec.description, ctx.now],
        )
        .map_err(|e| ctx.db(e))?;
    if n == 0 {
        return Err(BusError::ArchiveExists(spec.name));
    }
    ctx.changed()?;
    Ok(ctx.st.names.archive_arn(&spec.name))
}

/// Deletes an archive and what it kept; a replay reading it fails with that reason.
pub(crate) fn delete(ctx: &mut Ctx<'_>, name: &str) -> Result<(), BusError> {
    let n = ctx.tx.execute("DELETE FROM archives WHERE name = ?1", [name]).map_err(|e| ctx.db(e))?;
    if n == 0 {
        return Err(BusError::ArchiveNotFound(name.to_owned()));
    }
    drop_entries(ctx, "DELETE FROM archived WHERE archive = ?1 RETURNING seq", params![name])?;
    ctx.changed()
}

pub(crate) fn describe(ctx: &mut Ctx<'_>, name: &str) -> Result<Archive, BusError> {
    read(ctx, Some(name))?.into_iter().next().ok_or_else(|| BusError::ArchiveNotFound(name.to_owned()))
}

pub(crate) fn list(ctx: &mut Ctx<'_>) -> Result<Vec<Archive>, BusError> {
    read(ctx, None)
}

pub(crate) fn read(ctx: &Ctx<'_>, only: Option<&str>) -> Result<Vec<Archive>, BusError> {
    let db = |e| ctx.db(e);
    let mut stmt = ctx
        .tx
        .prepare_cached(
            "SELECT a.name, a.pattern, a.retention_days, a.description, a.created_ms,
                    (SELECT count(*) FROM archived x WHERE x.archive = a.name),
                    (SELECT coalesce(sum(length(e.body)), 0) FROM archived x JOIN events e ON e.seq = x.seq
                      WHERE x.archive = a.name)
             FROM archives a WHERE ?1 IS NULL OR a.name = ?1 ORDER BY a.name",
        )
        .map_err(db)?;
    stmt.query_map([only], |r| {
        let name: String = r.get(0)?;
        Ok(Archive {
            arn: ctx.st.names.archive_arn(&name),
            name,
            event_pattern: r.get(1)?,
            retention_days: r.get(2)?,
            description: r.get(3)?,
            state: "ENABLED".into(),
            creation_time: DateTime::from_timestamp_millis(r.get(4)?).unwrap_or_default(),
            event_count: r.get::<_, i64>(5)? as u64,
            size_bytes: r.get::<_, i64>(6)? as u64,
        })
    })
    .and_then(|rows| rows.collect())
    .map_err(db)
}

/// Each archive's name and pattern, for routing.
pub(crate) fn patterns(ctx: &Ctx<'_>) -> Result<Vec<(String, Option<String>)>, BusError> {
    ctx.tx
        .prepare_cached("SELECT name, pattern FROM archives ORDER BY name")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).and_then(|rows| rows.collect()))
        .map_err(|e| ctx.db(e))
}

/// Entries dropped per archive per sweep at most, so that a sweep never holds the writer long.
pub(crate) const SWEEP_CHUNK: u64 = 5_000;

/// Drops entries past their archive's retention, a chunk at a time; answers how many.
pub(crate) fn sweep(ctx: &mut Ctx<'_>) -> Result<u64, BusError> {
    let kept: Vec<(String, i64)> = ctx
        .tx
        .prepare_cached("SELECT name, retention_days FROM archives WHERE retention_days > 0")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).and_then(|rows| rows.collect()))
        .map_err(|e| ctx.db(e))?;
    let mut dropped = 0;
    for (name, days) in kept {
        let cutoff = ctx.now.saturating_sub(days.saturating_mul(DAY_MS));
        dropped += drop_entries(
            ctx,
            "DELETE FROM archived WHERE (archive, time_ms, seq) IN
               (SELECT archive, time_ms, seq FROM archived WHERE archive = ?1 AND archived_ms < ?2 LIMIT ?3)
             RETURNING seq",
            params![name, cutoff, SWEEP_CHUNK as i64],
        )?;
    }
    Ok(dropped)
}

/// Runs a `DELETE … RETURNING seq` on archive entries and forgets the events nothing else
/// keeps.
fn drop_entries(ctx: &Ctx<'_>, sql: &str, args: impl rusqlite::Params) -> Result<u64, BusError> {
    let seqs: Vec<i64> = ctx
        .tx
        .prepare_cached(sql)
        .and_then(|mut s| s.query_map(args, |r| r.get(0)).and_then(|rows| rows.collect()))
        .map_err(|e| ctx.db(e))?;
    for &seq in &seqs {
        super::rules::forget_if_unused(ctx, seq)?;
    }
    Ok(seqs.len() as u64)
}

/// Whether archive `name` exists.
pub(crate) fn exists(ctx: &Ctx<'_>, name: &str) -> Result<bool, BusError> {
    ctx.tx
        .prepare_cached("SELECT 1 FROM archives WHERE name = ?1")
        .and_then(|mut s| s.query_row([name], |_| Ok(())).optional())
        .map(|found| found.is_some())
        .map_err(|e| ctx.db(e))
}

/// A page of an archive's events in the window, in the order a replay walks them.
pub(crate) fn events(
    ctx: &mut Ctx<'_>,
    name: &str,
    (start_ms, end_ms): (i64, i64),
    after: Option<ArchiveCursor>,
    limit: u32,
) -> Result<Vec<ArchivedEvent>, BusError> {
    if !exists(ctx, name)? {
        return Err(BusError::ArchiveNotFound(name.to_owned()));
    }
    let after = after.unwrap_or(ArchiveCursor { time_ms: start_ms, seq: -1 });
    ctx.tx
        .prepare_cached(
            "SELECT a.time_ms, a.seq, e.body FROM archived a JOIN events e ON e.seq = a.seq
             WHERE a.archive = ?1 AND (a.time_ms, a.seq) > (?2, ?3) AND a.time_ms >= ?4 AND a.time_ms <= ?5
             ORDER BY a.time_ms, a.seq LIMIT ?6",
        )
        .and_then(|mut s| {
            s.query_map(params![name, after.time_ms, after.seq, start_ms, end_ms, limit], |r| {
                let (time_ms, seq) = (r.get(0)?, r.get(1)?);
                Ok(ArchivedEvent {
                    cursor: ArchiveCursor { time_ms, seq },
                    time: DateTime::from_timestamp_millis(time_ms).unwrap_or_default(),
                    body: r.get(2)?,
                })
            })
            .and_then(|rows| rows.collect())
        })
        .map_err(|e| ctx.db(e))
}
