//! The inboxes, with SQS's semantics: receive hides a message for its visibility timeout under
//! a fresh receipt; ack deletes it; nack retries it after a backoff or dead-letters it with the
//! reason; a visibility timeout that runs out counts as a failed attempt.

use std::time::Duration;

use chrono::DateTime;
use rusqlite::{OptionalExtension, params};

use super::writer::Ctx;
use crate::api::{BusError, DeadLetter, ExhaustedCondition, Failure, Message, NackOutcome, Receipt, ReceiveOptions};
use crate::retry::{self, Next, StoredPolicy};

/// The failure recorded when a consumer held a message past its visibility timeout.
const TIMEOUT: &str = "TIMEOUT";

pub(super) struct Row {
    pub(super) id: i64,
    pub(super) event_seq: i64,
    pub(super) rule: String,
    pub(super) target: String,
    pub(super) receive_count: u32,
    pub(super) receipt: Option<String>,
    pub(super) sent_ms: i64,
    pub(super) ingested_ms: i64,
    pub(super) policy: Option<String>,
    pub(super) last_error: Option<String>,
    pub(super) dead_letter: Option<String>,
}

pub(super) const COLUMNS: &str =
    "id, event_seq, rule, target, receive_count, receipt, sent_ms, ingested_ms, policy, last_error, dead_letter";

pub(super) fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        id: r.get(0)?,
        event_seq: r.get(1)?,
        rule: r.get(2)?,
        target: r.get(3)?,
        receive_count: r.get(4)?,
        receipt: r.get(5)?,
        sent_ms: r.get(6)?,
        ingested_ms: r.get(7)?,
        policy: r.get(8)?,
        last_error: r.get(9)?,
        dead_letter: r.get(10)?,
    })
}

pub(super) fn known(ctx: &Ctx<'_>, inbox: &str) -> Result<(), BusError> {
    let found = ctx
        .tx
        .prepare_cached("SELECT 1 FROM inboxes WHERE name = ?1")
        .and_then(|mut s| s.query_row([inbox], |_| Ok(())).optional())
        .map_err(|e| ctx.db(e))?;
    found.ok_or_else(|| BusError::UnknownInbox(inbox.to_owned()))
}

fn policy(row: &Row) -> Result<Option<StoredPolicy>, BusError> {
    row.policy
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| BusError::Internal(format!("message {} has an unreadable retry policy: {e}", row.id)))
}

/// Receives up to `max_messages` visible messages; when there are none, also answers when the
/// next hidden one becomes visible, so a long poll knows when to look again.
pub(crate) fn receive(
    ctx: &mut Ctx<'_>,
    inbox: &str,
    options: ReceiveOptions,
) -> Result<(Vec<Message>, Option<i64>), BusError> {
    known(ctx, inbox)?;
    let hide_until = ctx.now.saturating_add(options.visibility_timeout.as_millis() as i64);
    let mut out = Vec::new();
    // Ids looked at in this call: with a zero visibility timeout a message handed out is
    // visible again at once, and must not be handed out twice in one receive.
    let mut seen = std::collections::HashSet::new();
    while out.len() < options.max_messages as usize {
        let rows: Vec<Row> = {
            let mut stmt = ctx
                .tx
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM messages WHERE inbox = ?1 AND visible_ms <= ?2 ORDER BY visible_ms, id LIMIT ?3"
                ))
                .map_err(|e| ctx.db(e))?;
            let want = options.max_messages as usize - out.len() + seen.len();
            stmt.query_map(params![inbox, ctx.now, want as i64], row)
                .and_then(|rows| rows.collect())
                .map_err(|e| ctx.db(e))?
        };
        let mut fresh = false;
        for r in rows {
            if !seen.insert(r.id) {
                continue;
            }
            fresh = true;
            if r.receipt.is_some() && timed_out(ctx, &r)? {
                continue; // dead-lettered
            }
            out.push(hand_out(ctx, inbox, r, hide_until)?);
            if out.len() == options.max_messages as usize {
                break;
            }
        }
        if !fresh {
            break;
        }
    }
    if !out.is_empty() {
        // Only a receive that found nothing waits for the next message to become visible.
        return Ok((out, None));
    }
    let next: Option<i64> = ctx
        .tx
        .prepare_cached("SELECT min(visible_ms) FROM messages WHERE inbox = ?1")
        .and_then(|mut s| s.query_row([inbox], |r| r.get(0)))
        .map_err(|e| ctx.db(e))?;
    Ok((out, next))
}

/// A message whose receiver's visibility ran out: that attempt failed. Answers whether it was
/// dead-lettered.
fn timed_out(ctx: &mut Ctx<'_>, r: &Row) -> Result<bool, BusError> {
    let Some(p) = policy(r)? else { return Ok(false) };
    let condition = if r.receive_count >= p.max_attempts {
        Some(ExhaustedCondition::MaximumRetryAttempts)
    } else if ctx.now.saturating_sub(r.ingested_ms) > p.max_age_ms {
        Some(ExhaustedCondition::MaximumEventAgeInSeconds)
    } else {
        return Ok(false);
    };
    let failure = Failure::retryable(
        TIMEOUT,
        format!("the consumer did not acknowledge within the visibility timeout ({} receives)", r.receive_count),
    );
    dead_letter(ctx, r, &p, &failure, condition)?;
    Ok(true)
}

fn hand_out(ctx: &mut Ctx<'_>, inbox: &str, r: Row, hide_until: i64) -> Result<Message, BusError> {
    let count = r.receive_count + 1;
    let receipt = format!("{}.{}.{:016x}", r.id, count, ctx.st.rng.u64(..));
    ctx.tx
        .prepare_cached("UPDATE messages SET receive_count = ?2, receipt = ?3, visible_ms = ?4 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![r.id, count, receipt, hide_until]))
        .map_err(|e| ctx.db(e))?;
    message(ctx, inbox, r, Receipt(receipt), count)
}

/// The message a row stands for, as a receiver (or an operator peeking) sees it.
pub(super) fn message(
    ctx: &Ctx<'_>,
    inbox: &str,
    r: Row,
    receipt: Receipt,
    receive_count: u32,
) -> Result<Message, BusError> {
    let body: String = ctx
        .tx
        .prepare_cached("SELECT body FROM events WHERE seq = ?1")
        .and_then(|mut s| s.query_row([r.event_seq], |row| row.get(0)))
        .map_err(|e| ctx.db(e))?;
    let dead_letter = r
        .dead_letter
        .as_deref()
        .map(serde_json::from_str::<DeadLetter>)
        .transpose()
        .map_err(|e| BusError::Internal(format!("message {} has an unreadable dead-letter reason: {e}", r.id)))?;
    Ok(Message {
        message_id: message_id(inbox, r.id),
        receipt,
        body,
        receive_count,
        sent_at: DateTime::from_timestamp_millis(r.sent_ms).unwrap_or_default(),
        rule: r.rule,
        target: r.target,
        dead_letter,
    })
}

/// A message's id: its inbox and its number there.
pub(super) fn message_id(inbox: &str, id: i64) -> String {
    format!("{inbox}/{id}")
}

/// The message `receipt` stands for, if that receipt is still the current one.
fn held(ctx: &Ctx<'_>, inbox: &str, receipt: &Receipt) -> Result<Row, BusError> {
    let invalid = |reason: &str| BusError::InvalidReceipt {
        inbox: inbox.to_owned(),
        receipt: receipt.0.clone(),
        reason: reason.to_owned(),
    };
    let id: i64 = receipt
        .0
        .split('.')
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("it is not a receipt this bus gave out"))?;
    let found: Option<(String, Row)> = ctx
        .tx
        .prepare_cached(&format!("SELECT {COLUMNS}, inbox FROM messages WHERE id = ?1"))
        .and_then(|mut s| s.query_row([id], |r| Ok((r.get(11)?, row(r)?))).optional())
        .map_err(|e| ctx.db(e))?;
    match found {
        None => {
            known(ctx, inbox)?;
            Err(invalid("the message is no longer in the inbox (acknowledged or dead-lettered)"))
        }
        Some((other, _)) if other != inbox => {
            known(ctx, inbox)?;
            Err(invalid(&format!("the message is in inbox `{other}`")))
        }
        Some((_, r)) if r.receipt.as_deref() != Some(receipt.0.as_str()) => Err(invalid(
            "the message was received again after this receipt's visibility timeout ran out, or was retried",
        )),
        Some((_, r)) => Ok(r),
    }
}

pub(crate) fn ack(ctx: &mut Ctx<'_>, inbox: &str, receipt: &Receipt) -> Result<(), BusError> {
    let r = held(ctx, inbox, receipt)?;
    delete(ctx, &r)
}

/// Acks each receipt that is still current; a stale one is refused alone. A receipt's refusal
/// comes before any write, so no savepoint per ack is needed (each would copy the pages it
/// changes once more); a storage fault fails the whole call.
pub(crate) fn ack_batch(
    ctx: &mut Ctx<'_>,
    inbox: &str,
    receipts: &[Receipt],
) -> Result<Vec<Result<(), BusError>>, BusError> {
    known(ctx, inbox)?;
    let mut answers = Vec::with_capacity(receipts.len());
    for receipt in receipts {
        match held(ctx, inbox, receipt) {
            Ok(r) => {
                delete(ctx, &r)?;
                answers.push(Ok(()));
            }
            Err(e @ BusError::InvalidReceipt { .. }) => answers.push(Err(e)),
            Err(e) => return Err(e),
        }
    }
    Ok(answers)
}

fn delete(ctx: &Ctx<'_>, r: &Row) -> Result<(), BusError> {
    ctx.tx
        .prepare_cached("DELETE FROM messages WHERE id = ?1")
        .and_then(|mut s| s.execute([r.id]))
        .map_err(|e| ctx.db(e))?;
    super::rules::forget_if_unused(ctx, r.event_seq)
}

pub(crate) fn nack(
    ctx: &mut Ctx<'_>,
    inbox: &str,
    receipt: &Receipt,
    failure: Failure,
) -> Result<NackOutcome, BusError> {
    let r = held(ctx, inbox, receipt)?;
    let at = match policy(&r)? {
        // A dead-letter inbox's own messages are retried, never dead-lettered again.
        None => ctx.now + retry::dead_letter_backoff(r.receive_count, &mut ctx.st.rng),
        Some(p) => {
            match retry::after_failure(&p, r.receive_count, r.ingested_ms, ctx.now, failure.retryable, &mut ctx.st.rng)
            {
                Next::RetryAt(at) => at,
                Next::DeadLetter(condition) => {
                    dead_letter(ctx, &r, &p, &failure, condition)?;
                    return Ok(NackOutcome::DeadLettered { inbox: p.dead_letter_inbox });
                }
            }
        }
    };
    let last_error = serde_json::to_string(&failure).map_err(|e| BusError::Internal(e.to_string()))?;
    ctx.tx
        .prepare_cached("UPDATE messages SET receipt = NULL, visible_ms = ?2, last_error = ?3 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![r.id, at, last_error]))
        .map_err(|e| ctx.db(e))?;
    Ok(NackOutcome::RetryAt(DateTime::from_timestamp_millis(at).unwrap_or_default()))
}

pub(crate) fn extend(ctx: &mut Ctx<'_>, inbox: &str, receipt: &Receipt, timeout: Duration) -> Result<(), BusError> {
    let r = held(ctx, inbox, receipt)?;
    let until = ctx.now.saturating_add(timeout.as_millis() as i64);
    ctx.tx
        .prepare_cached("UPDATE messages SET visible_ms = ?2 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![r.id, until]))
        .map_err(|e| ctx.db(e))?;
    Ok(())
}

/// Moves a message to its target's dead-letter inbox with EventBridge's reason attributes.
fn dead_letter(
    ctx: &mut Ctx<'_>,
    r: &Row,
    p: &StoredPolicy,
    failure: &Failure,
    condition: Option<ExhaustedCondition>,
) -> Result<(), BusError> {
    let reason = DeadLetter {
        rule_arn: p.rule_arn.clone(),
        target_arn: p.target_arn.clone(),
        error_code: failure.code.clone(),
        error_message: failure.message.clone(),
        exhausted_retry_condition: condition,
        retry_attempts: r.receive_count.saturating_sub(1),
    };
    let reason = serde_json::to_string(&reason).map_err(|e| BusError::Internal(e.to_string()))?;
    super::rules::create_inbox(ctx, &p.dead_letter_inbox)?;
    ctx.tx
        .prepare_cached(
            "INSERT INTO messages (inbox, event_seq, rule, target, visible_ms, sent_ms, ingested_ms, last_error, dead_letter)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8)",
        )
        .and_then(|mut s| {
            s.execute(params![
                p.dead_letter_inbox,
                r.event_seq,
                r.rule,
                r.target,
                ctx.now,
                r.ingested_ms,
                r.last_error,
                reason
            ])
        })
        .map_err(|e| ctx.db(e))?;
    ctx.tx
        .prepare_cached("DELETE FROM messages WHERE id = ?1")
        .and_then(|mut s| s.execute([r.id]))
        .map_err(|e| ctx.db(e))?;
    ctx.landed.push(p.dead_letter_inbox.clone());
    Ok(())
}
