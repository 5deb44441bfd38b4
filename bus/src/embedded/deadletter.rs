//! An operator's hands on the inboxes: counts, a look at messages without receiving them,
//! redrive of dead letters to the inbox they came from, and deletion. Each call is all or
//! none: it runs in the writer's transaction, and an error rolls every part of it back.

use rusqlite::{OptionalExtension, params};

use super::inbox::{self, COLUMNS, Row, row};
use super::rules::{create_inbox, read_rules};
use super::writer::Ctx;
use crate::api::{BusError, DeadLetter, InboxSummary, Message, Receipt, Redriven, Target};
use crate::retry::StoredPolicy;

pub(crate) fn list_inboxes(ctx: &mut Ctx<'_>) -> Result<Vec<InboxSummary>, BusError> {
    let time = |ms: Option<i64>| ms.and_then(chrono::DateTime::from_timestamp_millis);
    ctx.tx
        .prepare_cached(
            "SELECT i.name,
                    (SELECT count(*) FROM messages m WHERE m.inbox = i.name AND m.visible_ms <= ?1),
                    (SELECT count(*) FROM messages m WHERE m.inbox = i.name AND m.visible_ms > ?1),
                    (SELECT min(sent_ms) FROM messages m WHERE m.inbox = i.name)
             FROM inboxes i ORDER BY i.name",
        )
        .and_then(|mut s| {
            s.query_map([ctx.now], |r| {
                Ok(InboxSummary {
                    name: r.get(0)?,
                    visible: r.get::<_, i64>(1)? as u64,
                    hidden: r.get::<_, i64>(2)? as u64,
                    oldest: time(r.get(3)?),
                })
            })
            .and_then(|rows| rows.collect())
        })
        .map_err(|e| ctx.db(e))
}

pub(crate) fn peek(ctx: &mut Ctx<'_>, name: &str, after: Option<&str>, limit: u32) -> Result<Vec<Message>, BusError> {
    inbox::known(ctx, name)?;
    let after = match after {
        None => 0,
        Some(id) => number(name, id)?,
    };
    let rows: Vec<Row> = ctx
        .tx
        .prepare_cached(&format!("SELECT {COLUMNS} FROM messages WHERE inbox = ?1 AND id > ?2 ORDER BY id LIMIT ?3"))
        .and_then(|mut s| s.query_map(params![name, after, limit], row).and_then(|rows| rows.collect()))
        .map_err(|e| ctx.db(e))?;
    rows.into_iter()
        .map(|r| {
            let count = r.receive_count;
            inbox::message(ctx, name, r, Receipt(String::new()), count)
        })
        .collect()
}

pub(crate) fn redrive(ctx: &mut Ctx<'_>, dead_letters: &str, ids: &[String]) -> Result<Vec<Redriven>, BusError> {
    inbox::known(ctx, dead_letters)?;
    let rules = read_rules(ctx, None)?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let r = held(ctx, dead_letters, id)?;
        let impossible = |reason: String| BusError::RedriveImpossible { message: id.clone(), reason };
        let reason: DeadLetter = match r.dead_letter.as_deref().map(serde_json::from_str) {
            Some(Ok(reason)) => reason,
            _ => return Err(impossible(format!("it is not a dead letter (inbox `{dead_letters}`)"))),
        };
        // The inbox it was dead-lettered from is the last part of the target's ARN.
        let source = reason.target_arn.rsplit(':').next().unwrap_or_default().to_owned();
        // Its own rule and target if they still exist, else any rule still sending there.
        let targets = rules.iter().flat_map(|rule| rule.targets.iter().map(move |t| (rule, t)));
        let candidates: Vec<_> = targets.filter(|(_, t)| t.inbox == source).collect();
        let Some((rule, target)) =
            candidates.iter().find(|(rule, t)| rule.name == r.rule && t.id == r.target).or(candidates.first())
        else {
            return Err(impossible(format!(
                "no rule targets inbox `{source}` any more (rule `{}` target `{}` is gone): its consumer was removed",
                r.rule, r.target
            )));
        };
        let policy = stored_policy(ctx, &rule.name, target)?;
        create_inbox(ctx, &source)?;
        ctx.tx
            .prepare_cached(
                "INSERT INTO messages (inbox, event_seq, rule, target, visible_ms, sent_ms, ingested_ms, policy)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?5, ?6)",
            )
            .and_then(|mut s| s.execute(params![source, r.event_seq, rule.name, target.id, ctx.now, policy]))
            .map_err(|e| ctx.db(e))?;
        let new_id = ctx.tx.last_insert_rowid();
        ctx.tx
            .prepare_cached("DELETE FROM messages WHERE id = ?1")
            .and_then(|mut s| s.execute([r.id]))
            .map_err(|e| ctx.db(e))?;
        ctx.landed.push(source.clone());
        out.push(Redriven {
            message_id: id.clone(),
            new_message_id: inbox::message_id(&source, new_id),
            inbox: source,
        });
    }
    Ok(out)
}

pub(crate) fn delete(ctx: &mut Ctx<'_>, name: &str, ids: &[String]) -> Result<u64, BusError> {
    inbox::known(ctx, name)?;
    for id in ids {
        let r = held(ctx, name, id)?;
        ctx.tx
            .prepare_cached("DELETE FROM messages WHERE id = ?1")
            .and_then(|mut s| s.execute([r.id]))
            .map_err(|e| ctx.db(e))?;
        super::rules::forget_if_unused(ctx, r.event_seq)?;
    }
    Ok(ids.len() as u64)
}

fn stored_policy(ctx: &Ctx<'_>, rule: &str, target: &Target) -> Result<String, BusError> {
    let stored = StoredPolicy::new(
        &target.retry_policy,
        &target.dead_letter_inbox,
        ctx.st.names.rule_arn(rule),
        ctx.st.names.inbox_arn(&target.inbox),
    );
    serde_json::to_string(&stored).map_err(|e| BusError::Internal(e.to_string()))
}

/// The number of message `id` (`<inbox>/<n>`), which must be of inbox `name`.
fn number(name: &str, id: &str) -> Result<i64, BusError> {
    match id.rsplit_once('/') {
        Some((inbox, n)) if inbox == name => n.parse().map_err(|_| not_found(name, id)),
        _ => Err(not_found(name, id)),
    }
}

fn not_found(inbox: &str, id: &str) -> BusError {
    BusError::MessageNotFound { inbox: inbox.to_owned(), message: id.to_owned() }
}

fn held(ctx: &Ctx<'_>, name: &str, id: &str) -> Result<Row, BusError> {
    let n = number(name, id)?;
    ctx.tx
        .prepare_cached(&format!("SELECT {COLUMNS} FROM messages WHERE id = ?1 AND inbox = ?2"))
        .and_then(|mut s| s.query_row(params![n, name], row).optional())
        .map_err(|e| ctx.db(e))?
        .ok_or_else(|| not_found(name, id))
}
