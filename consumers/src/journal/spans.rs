//! Agent runs as OpenTelemetry spans. A run's span is a child of the span in the received
//! event's `traceparent`, so every span of a case is in the case's trace, across the bus and
//! across replays; model turns, tool calls and publications are its children, and a
//! publication's span id is the one in the published event's `traceparent`, so the next
//! agent's run hangs under it. Span ids are derived from the journal, so exporting a run live
//! and again from `choreo trace` gives the same spans.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use super::{CaseLog, Entry, StepRow, group_runs, system_time};
use crate::observe::ToolOutcome;

/// The instrumentation scope of every span.
pub const SCOPE: &str = "choreo";

/// A parsed W3C `traceparent`: its trace id and span id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
}

impl TraceParent {
    /// `version-traceid-spanid-flags`, ids in lowercase or uppercase hex, neither all zero.
    pub fn parse(text: &str) -> Option<TraceParent> {
        let mut parts = text.trim().split('-');
        let (_version, trace, span, _flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || trace.len() != 32 || span.len() != 16 {
            return None;
        }
        let trace_id = TraceId::from_hex(trace).ok().filter(|t| *t != TraceId::INVALID)?;
        let span_id = SpanId::from_hex(span).ok().filter(|s| *s != SpanId::INVALID)?;
        Some(TraceParent { trace_id, span_id })
    }
}

/// The spans of one run (rows of one agent on one event, from its receipt; see
/// [`super::Runs`]). A received event without a usable `traceparent` gets the case's derived
/// trace id ([`case_trace_id`]) and a root run span.
pub fn run_spans(rows: &[StepRow]) -> Vec<SpanData> {
    let Some(first) = rows.first() else { return Vec::new() };
    let received = rows.iter().find_map(|r| match &r.entry {
        Entry::Received { event_type, receive_count, traceparent } => {
            Some((event_type.as_str(), *receive_count, traceparent.as_deref().and_then(TraceParent::parse)))
        }
        _ => None,
    });
    let (event_type, receive_count, parent) = received.unwrap_or(("", 0, None));
    let trace_id = parent.map(|p| p.trace_id).unwrap_or_else(|| case_trace_id(&first.correlation_id));
    let run_id = span_id(&[&first.agent, &first.event_id, &first.started_us.to_string()]);
    let last = rows.last().unwrap_or(first);
    let published: HashMap<&str, SpanId> = rows
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::Done { published, .. } => Some(published),
            _ => None,
        })
        .flatten()
        .filter_map(|p| Some((p.id.as_str(), TraceParent::parse(&p.traceparent)?.span_id)))
        .collect();

    let mut attributes = vec![
        KeyValue::new("choreo.agent", first.agent.clone()),
        KeyValue::new("choreo.case", first.correlation_id.clone()),
        KeyValue::new("cloudevents.event_id", first.event_id.clone()),
        KeyValue::new("cloudevents.event_type", event_type.to_owned()),
        KeyValue::new("choreo.receive_count", i64::from(receive_count)),
    ];
    if let Some(replay) = &first.replay_name {
        attributes.push(KeyValue::new("choreo.replay_name", replay.clone()));
    }
    let (mut turns, mut input, mut output, mut suppressed) = (0i64, 0i64, 0i64, 0i64);
    let mut status = Status::Unset;
    let mut outcome = "unfinished";
    let mut children = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let child = |name: String, kind: SpanKind, attributes: Vec<KeyValue>| Child {
            id: span_id(&[&run_id.to_string(), &index.to_string()]),
            name,
            kind,
            row,
            attributes,
            status: Status::Unset,
        };
        match &row.entry {
            Entry::ModelTurn { turn, input_tokens, output_tokens, stop_reason } => {
                turns += 1;
                input += *input_tokens as i64;
                output += *output_tokens as i64;
                children.push(child(
                    format!("model turn {turn}"),
                    SpanKind::Client,
                    vec![
                        KeyValue::new("gen_ai.usage.input_tokens", *input_tokens as i64),
                        KeyValue::new("gen_ai.usage.output_tokens", *output_tokens as i64),
                        KeyValue::new("choreo.turn", i64::from(*turn)),
                        KeyValue::new("choreo.stop_reason", stop_reason.clone()),
                    ],
                ));
            }
            Entry::ToolCall { tool, outcome, args, .. } => {
                let is_suppressed = *outcome == ToolOutcome::Suppressed;
                suppressed += i64::from(is_suppressed);
                let mut span = child(
                    format!("tool {tool}"),
                    SpanKind::Internal,
                    vec![
                        KeyValue::new("choreo.tool", tool.clone()),
                        KeyValue::new("choreo.tool.outcome", outcome.as_str()),
                        KeyValue::new("choreo.tool.args", args.clone()),
                        KeyValue::new("choreo.ledger.suppressed", is_suppressed),
                    ],
                );
                if *outcome == ToolOutcome::Error {
                    span.status = Status::error("the tool call failed");
                }
                children.push(span);
            }
            Entry::Published { event_type, published_id } => {
                let mut span = child(
                    format!("publish {event_type}"),
                    SpanKind::Producer,
                    vec![
                        KeyValue::new("cloudevents.event_id", published_id.clone()),
                        KeyValue::new("cloudevents.event_type", event_type.clone()),
                    ],
                );
                // The next agent's run is a child of the span its event's traceparent names.
                if let Some(id) = published.get(published_id.as_str()) {
                    span.id = *id;
                }
                children.push(span);
            }
            Entry::Failed { code, message, retryable } => {
                outcome = "failed";
                attributes.push(KeyValue::new("choreo.failure.code", code.clone()));
                attributes.push(KeyValue::new("choreo.failure.retryable", *retryable));
                status = Status::error(format!("{code}: {message}"));
            }
            Entry::Duplicate => outcome = "duplicate",
            Entry::Done { .. } => outcome = "done",
            Entry::NoCompletion { .. } | Entry::Received { .. } => {}
        }
    }
    attributes.extend([
        KeyValue::new("choreo.outcome", outcome),
        KeyValue::new("choreo.model_turns", turns),
        KeyValue::new("gen_ai.usage.input_tokens", input),
        KeyValue::new("gen_ai.usage.output_tokens", output),
        KeyValue::new("choreo.ledger.suppressed", suppressed),
    ]);
    let context = |id| SpanContext::new(trace_id, id, TraceFlags::SAMPLED, false, TraceState::default());
    let scope = InstrumentationScope::builder(SCOPE).with_version(env!("CARGO_PKG_VERSION")).build();
    let mut spans = Vec::with_capacity(children.len() + 1);
    spans.push(SpanData {
        span_context: context(run_id),
        parent_span_id: parent.map(|p| p.span_id).unwrap_or(SpanId::INVALID),
        parent_span_is_remote: parent.is_some(),
        span_kind: SpanKind::Consumer,
        name: Cow::Owned(format!("{} {}", first.agent, if event_type.is_empty() { "run" } else { event_type })),
        start_time: system_time(first.started_us),
        end_time: system_time(last.ended_us().max(first.started_us)),
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    });
    for child in children {
        spans.push(SpanData {
            span_context: context(child.id),
            parent_span_id: run_id,
            parent_span_is_remote: false,
            span_kind: child.kind,
            name: Cow::Owned(child.name),
            start_time: system_time(child.row.started_us),
            end_time: system_time(child.row.ended_us()),
            attributes: child.attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: child.status,
            instrumentation_scope: scope.clone(),
        });
    }
    spans
}

struct Child<'a> {
    id: SpanId,
    name: String,
    kind: SpanKind,
    row: &'a StepRow,
    attributes: Vec<KeyValue>,
    status: Status,
}

/// Every span of a case: each run's, and, for an event that no span published (the case's
/// first, put by the ingest API or a producer), a span for its publication, so the trace has
/// its root.
pub fn case_spans(log: &CaseLog) -> Vec<SpanData> {
    let mut spans: Vec<SpanData> = group_runs(&log.steps).iter().flat_map(|run| run_spans(run)).collect();
    let known: HashSet<SpanId> = spans.iter().map(|s| s.span_context.span_id()).collect();
    let mut rooted = HashSet::new();
    for row in &log.steps {
        let Entry::Received { event_type, traceparent: Some(traceparent), .. } = &row.entry else { continue };
        let Some(parent) = TraceParent::parse(traceparent) else { continue };
        if known.contains(&parent.span_id) || !rooted.insert(parent.span_id) {
            continue;
        }
        let event = log.events.iter().find(|e| e.id == row.event_id);
        let time = event.and_then(|e| e.time).map(std::time::SystemTime::from).unwrap_or(system_time(row.started_us));
        let mut attributes = vec![
            KeyValue::new("choreo.case", log.case.clone()),
            KeyValue::new("cloudevents.event_id", row.event_id.clone()),
            KeyValue::new("cloudevents.event_type", event_type.clone()),
        ];
        if let Some(event) = event {
            attributes.push(KeyValue::new("cloudevents.event_source", event.source.clone()));
        }
        spans.push(SpanData {
            span_context: SpanContext::new(
                parent.trace_id,
                parent.span_id,
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Producer,
            name: Cow::Owned(format!("publish {event_type}")),
            start_time: time,
            end_time: time,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::builder(SCOPE).with_version(env!("CARGO_PKG_VERSION")).build(),
        });
    }
    spans
}

/// The trace id for a case whose events carry no `traceparent`: derived from its id.
pub fn case_trace_id(case: &str) -> TraceId {
    let high = fnv1a(0xcbf2_9ce4_8422_2325, case.as_bytes());
    let low = fnv1a(high ^ 0x9e37_79b9_7f4a_7c15, case.as_bytes());
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&high.to_be_bytes());
    bytes[8..].copy_from_slice(&low.max(1).to_be_bytes());
    TraceId::from_bytes(bytes)
}

/// A span id derived from `parts` (FNV-1a: stable across builds, unlike std's hasher).
fn span_id(parts: &[&str]) -> SpanId {
    let mut hash = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        hash = fnv1a(hash, part.as_bytes());
        hash = fnv1a(hash, &[0x1f]);
    }
    SpanId::from_bytes(hash.max(1).to_be_bytes())
}

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::PublishedTrace;

    const RECEIVED: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const PUBLISHED: &str = "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01";

    fn row(seq: i64, entry: Entry) -> StepRow {
        StepRow {
            seq,
            correlation_id: "case".into(),
            agent: "payments".into(),
            event_id: "e1".into(),
            started_us: 1_000_000 + seq * 1000,
            duration_us: 500,
            replay_name: Some("fix-1".into()),
            entry,
        }
    }

    fn rows() -> Vec<StepRow> {
        vec![
            row(
                1,
                Entry::Received {
                    event_type: "SupportTriaged".into(),
                    receive_count: 2,
                    traceparent: Some(RECEIVED.into()),
                },
            ),
            row(2, Entry::ModelTurn { turn: 1, input_tokens: 10, output_tokens: 5, stop_reason: "ToolUse".into() }),
            row(
                3,
                Entry::ToolCall {
                    tool: "payments.refund_charge".into(),
                    outcome: ToolOutcome::Suppressed,
                    args: "{}".into(),
                },
            ),
            row(4, Entry::Published { event_type: "PaymentIssueResolved".into(), published_id: "e2".into() }),
            row(
                5,
                Entry::Done {
                    model_us: 500,
                    published: vec![PublishedTrace { id: "e2".into(), traceparent: PUBLISHED.into() }],
                },
            ),
        ]
    }

    fn value<'a>(span: &'a SpanData, key: &str) -> Option<&'a opentelemetry::Value> {
        span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| &kv.value)
    }

    #[test]
    fn a_run_hangs_under_its_event_and_its_publication_carries_the_published_span_id() {
        let spans = run_spans(&rows());
        let received = TraceParent::parse(RECEIVED).unwrap();
        assert_eq!(spans.len(), 4);
        let (run, children) = spans.split_first().unwrap();
        assert!(spans.iter().all(|s| s.span_context.trace_id() == received.trace_id));
        assert_eq!(run.parent_span_id, received.span_id);
        assert_eq!(run.span_kind, SpanKind::Consumer);
        assert_eq!(value(run, "choreo.replay_name").map(|v| v.as_str().into_owned()).as_deref(), Some("fix-1"));
        assert_eq!(value(run, "choreo.ledger.suppressed"), Some(&opentelemetry::Value::I64(1)));
        assert!(children.iter().all(|c| c.parent_span_id == run.span_context.span_id()));
        let publish = children.iter().find(|c| c.name == "publish PaymentIssueResolved").unwrap();
        assert_eq!(publish.span_context.span_id(), TraceParent::parse(PUBLISHED).unwrap().span_id);
        let tool = children.iter().find(|c| c.name == "tool payments.refund_charge").unwrap();
        assert_eq!(value(tool, "choreo.ledger.suppressed"), Some(&opentelemetry::Value::Bool(true)));
        // The same rows give the same spans: live and after-the-fact exports agree.
        assert_eq!(run_spans(&rows()), spans);
    }

    #[test]
    fn a_case_gets_a_root_span_for_the_event_no_run_published() {
        let log = CaseLog {
            case: "case".into(),
            store: "agents.db".into(),
            events: Vec::new(),
            steps: rows(),
            effects: Vec::new(),
            journal: true,
        };
        let spans = case_spans(&log);
        let root = spans.iter().find(|s| s.parent_span_id == SpanId::INVALID).unwrap();
        assert_eq!(root.span_context.span_id(), TraceParent::parse(RECEIVED).unwrap().span_id);
        assert_eq!(root.name, "publish SupportTriaged");
        assert_eq!(spans.len(), 5);
    }

    #[test]
    fn traceparents_must_be_w3c_shaped_with_ids_not_zero() {
        assert!(TraceParent::parse(RECEIVED).is_some());
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333g-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
        assert_ne!(case_trace_id("a"), case_trace_id("b"));
        assert_ne!(case_trace_id("a"), TraceId::INVALID);
    }
}
