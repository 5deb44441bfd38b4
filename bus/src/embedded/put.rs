//! PutEvents: each entry checked on the caller's thread (EventBridge's limits, one answer per
//! entry), then the valid ones routed and stored by the writer in one transaction.

use choreo_schemas::eventbridge::PutEventsEntry;
use chrono::{DateTime, Utc};

use super::writer::Ctx;
use super::{Names, body};
use crate::api::{
    BusError, EntryResult, ErrorCode, MAX_DETAIL_TYPE_CHARS, MAX_ENTRIES, MAX_ENTRY_BYTES, PutEventsOutput,
};
use crate::json;
use crate::pattern::MAX_EVENT_DEPTH;

/// An entry that passed its checks, as it will be delivered.
pub(crate) struct Ready {
    pub index: usize,
    pub id: String,
    pub time_ms: i64,
    pub ingested_ms: i64,
    pub body: String,
}

/// Checks every entry: answers the refused ones at their index, and the accepted ones ready to
/// store.
pub(crate) fn prepare(
    entries: &[PutEventsEntry],
    names: &Names,
    now_ms: i64,
) -> Result<(Vec<Option<EntryResult>>, Vec<Ready>), BusError> {
    if entries.is_empty() {
        return Err(BusError::invalid("Entries", "at least one entry is required"));
    }
    if entries.len() > MAX_ENTRIES {
        return Err(BusError::TooManyEntries { count: entries.len(), limit: MAX_ENTRIES });
    }
    let now = DateTime::<Utc>::from_timestamp_millis(now_ms).unwrap_or_default();
    let mut answers = vec![None; entries.len()];
    let mut ready = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        match check_entry(index, entry, &names.bus, &names.bus_arn()) {
            Err((error_code, error_message)) => {
                answers[index] = Some(EntryResult::Failed { error_code, error_message });
            }
            Ok(()) => {
                let id = uuid::Uuid::new_v4().to_string();
                let time = entry.time.unwrap_or(now);
                let body =
                    body::build(names, &id, &entry.source, &entry.detail_type, time, &entry.resources, &entry.detail);
                ready.push(Ready { index, id, time_ms: time.timestamp_millis(), ingested_ms: now_ms, body });
            }
        }
    }
    Ok((answers, ready))
}

/// EventBridge's checks of one entry for the bus `bus` (`bus_arn`); the message names the
/// entry, the field and the limit.
pub(crate) fn check_entry(i: usize, e: &PutEventsEntry, bus: &str, bus_arn: &str) -> Result<(), (ErrorCode, String)> {
    let invalid = |m: String| Err((ErrorCode::InvalidArgument, format!("Entries[{i}].{m}")));
    if e.source.is_empty() {
        return invalid("Source is required".into());
    }
    if e.source.starts_with("aws.") {
        return Err((
            ErrorCode::NotAuthorizedForSourceException,
            format!("Entries[{i}].Source `{}`: sources starting with `aws.` are reserved for AWS services", e.source),
        ));
    }
    if e.detail_type.is_empty() {
        return invalid("DetailType is required".into());
    }
    let chars = e.detail_type.chars().count();
    if chars > MAX_DETAIL_TYPE_CHARS {
        return invalid(format!("DetailType is {chars} characters long; the limit is {MAX_DETAIL_TYPE_CHARS}"));
    }
    if let Some(named) = &e.event_bus_name
        && named != bus
        && named != bus_arn
    {
        return invalid(format!("EventBusName: event bus `{named}` does not exist; this bus is `{bus}`"));
    }
    if let Some(r) = e.resources.iter().position(String::is_empty) {
        return invalid(format!("Resources[{r}] is empty"));
    }
    let size = e.size();
    if size > MAX_ENTRY_BYTES {
        return invalid(format!(
            "size is {size} bytes (Time 14 + Source + DetailType + Detail + Resources, in UTF-8); the limit is {MAX_ENTRY_BYTES}"
        ));
    }
    if e.detail.trim().is_empty() {
        return invalid("Detail is required (a JSON object; `{}` for none)".into());
    }
    let malformed = |m: String| Err((ErrorCode::MalformedDetail, format!("Entries[{i}].Detail {m}")));
    // The delivered event wraps Detail in one more level.
    if let Err(err) = json::check(e.detail.as_bytes(), MAX_EVENT_DEPTH - 1) {
        return malformed(format!("is not valid JSON at byte {}: {}", err.offset, err.reason));
    }
    match e.detail.trim_start().as_bytes().first() {
        Some(b'{') => Ok(()),
        Some(b'[') => malformed("must be a JSON object, got an array".into()),
        Some(b'"') => malformed("must be a JSON object, got a string".into()),
        _ => malformed("must be a JSON object, got a scalar".into()),
    }
}

/// Routes and stores the accepted entries; answers their ids.
pub(crate) fn store(ctx: &mut Ctx<'_>, ready: Vec<Ready>) -> Result<Vec<(usize, String)>, BusError> {
    let mut accepted = Vec::with_capacity(ready.len());
    for event in ready {
        super::rules::deliver(
            ctx,
            &event.body,
            event.time_ms,
            event.ingested_ms,
            &event.id,
            super::rules::Origin::Put,
        )?;
        accepted.push((event.index, event.id));
    }
    Ok(accepted)
}

pub(crate) fn merge(mut answers: Vec<Option<EntryResult>>, accepted: Vec<(usize, String)>) -> Vec<Option<EntryResult>> {
    for (index, event_id) in accepted {
        answers[index] = Some(EntryResult::Accepted { event_id });
    }
    answers
}

pub(crate) fn output(answers: Vec<Option<EntryResult>>) -> PutEventsOutput {
    let entries: Vec<EntryResult> = answers
        .into_iter()
        .map(|a| {
            a.unwrap_or(EntryResult::Failed {
                error_code: ErrorCode::InternalFailure,
                error_message: "the entry was not answered".into(),
            })
        })
        .collect();
    let failed_entry_count = entries.iter().filter(|e| matches!(e, EntryResult::Failed { .. })).count();
    PutEventsOutput { failed_entry_count, entries }
}
