//! A case's timeline, rebuilt from what the data directory keeps: the case store's events
//! (their causation makes the tree), the step journal's agent runs, the ledger's effects and
//! the notifier's outbox. The same value is printed as text or as JSON.

use std::collections::{HashMap, HashSet};

use choreo_consumers::journal::{CaseLog, Effect, Entry, StepRow, group_runs};
use choreo_consumers::observe::ToolOutcome;
use choreo_notifier::CaseNotification;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// The whole case.
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub case: String,
    pub data_dir: String,
    /// What every `at_ms` counts from: the case's first event (or, without events, its first step).
    pub started_at: Option<DateTime<Utc>>,
    /// Whether the store has a step journal (a store from before it has events only).
    pub journal: bool,
    /// Depth first along causation: each event, then the events that answer it.
    pub events: Vec<EventNode>,
    /// `None` when the data directory has no notifier store.
    pub notifications: Option<Vec<NotificationNode>>,
    pub ledger: Vec<Effect>,
    pub totals: Totals,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventNode {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub source: String,
    pub time: Option<DateTime<Utc>>,
    pub at_ms: Option<f64>,
    pub causation_id: Option<String>,
    /// How many causation links from the case's first event.
    pub depth: usize,
    /// Every agent's every delivery of it, in the order they began.
    pub runs: Vec<RunNode>,
}

/// One agent's handling of one delivery.
#[derive(Debug, Clone, Serialize)]
pub struct RunNode {
    pub agent: String,
    pub receive_count: u32,
    pub replay_name: Option<String>,
    pub at_ms: f64,
    pub duration_ms: f64,
    /// `done`, `failed`, `duplicate` (handled before: acknowledged, nothing run), or
    /// `unfinished` (in progress, or its process stopped mid-run).
    pub outcome: &'static str,
    pub model_turns: u32,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub model_ms: f64,
    pub steps: Vec<StepNode>,
}

/// What happened within a run.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepNode {
    ModelTurn {
        at_ms: f64,
        duration_ms: f64,
        turn: u32,
        input_tokens: u64,
        output_tokens: u64,
        stop_reason: String,
    },
    /// `suppressed`: the ledger had the effect already and answered it; nothing was done again.
    ToolCall {
        at_ms: f64,
        duration_ms: f64,
        tool: String,
        args: String,
        outcome: ToolOutcome,
        suppressed: bool,
    },
    Published {
        at_ms: f64,
        event_type: String,
        event_id: String,
    },
    NoCompletion {
        at_ms: f64,
        text: String,
    },
    /// `then`: `retried` (back to the inbox with backoff) or `dead-lettered`.
    Failed {
        at_ms: f64,
        code: String,
        message: String,
        retryable: bool,
        then: &'static str,
    },
}

impl StepNode {
    pub fn at_ms(&self) -> f64 {
        match self {
            StepNode::ModelTurn { at_ms, .. }
            | StepNode::ToolCall { at_ms, .. }
            | StepNode::Published { at_ms, .. }
            | StepNode::NoCompletion { at_ms, .. }
            | StepNode::Failed { at_ms, .. } => *at_ms,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct NotificationNode {
    pub customer: String,
    pub seq: u64,
    pub event_id: String,
    pub event_type: String,
    /// When the notifier stored it for the customer.
    pub at_ms: f64,
    pub acked: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub events: usize,
    pub runs: usize,
    pub duplicates: usize,
    pub replayed_runs: usize,
    pub model_turns: u32,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub tokens: u64,
    pub tool_calls: usize,
    pub suppressed: usize,
    pub failures: usize,
    pub notifications: usize,
    pub model_ms: f64,
    /// From the first event to the last thing recorded (step, event or notification).
    pub wall_ms: f64,
}

/// Builds the timeline of `log` (and the case's notifications, when there is a notifier store).
pub fn build(log: &CaseLog, notifications: Option<Vec<CaseNotification>>, data_dir: &str) -> Timeline {
    let first_event = log.events.iter().filter_map(|e| e.time).min().map(|t| t.timestamp_micros());
    let first_step = log.steps.iter().map(|s| s.started_us).min();
    let origin = first_event.or(first_step).unwrap_or_default();
    let at = |us: i64| (us - origin) as f64 / 1000.0;
    let mut totals = Totals::default();
    let mut last = origin;

    let mut nodes: Vec<EventNode> = log
        .events
        .iter()
        .map(|e| EventNode {
            id: e.id.clone(),
            event_type: e.event_type.clone(),
            source: e.source.clone(),
            time: e.time,
            at_ms: e.time.map(|t| at(t.timestamp_micros())),
            causation_id: e.causation_id.clone(),
            depth: 0,
            runs: Vec::new(),
        })
        .collect();
    let mut index: HashMap<String, usize> = nodes.iter().enumerate().map(|(i, n)| (n.id.clone(), i)).collect();
    for time in log.events.iter().filter_map(|e| e.time) {
        last = last.max(time.timestamp_micros());
    }

    for rows in group_runs(&log.steps) {
        let Some(first) = rows.first() else { continue };
        // An event the case store lacks (its record failed, or the case is still running)
        // still gets its place, from what the journal says of it.
        if !index.contains_key(&first.event_id) {
            let event_type = rows.iter().find_map(|r| match &r.entry {
                Entry::Received { event_type, .. } => Some(event_type.clone()),
                _ => None,
            });
            index.insert(first.event_id.clone(), nodes.len());
            nodes.push(EventNode {
                id: first.event_id.clone(),
                event_type: event_type.unwrap_or_default(),
                source: String::new(),
                time: None,
                at_ms: None,
                causation_id: None,
                depth: 0,
                runs: Vec::new(),
            });
        }
        for row in &rows {
            last = last.max(row.ended_us());
            if let Entry::Published { event_type, published_id } = &row.entry
                && !index.contains_key(published_id)
            {
                index.insert(published_id.clone(), nodes.len());
                nodes.push(EventNode {
                    id: published_id.clone(),
                    event_type: event_type.clone(),
                    source: format!("agents.{}", row.agent),
                    time: None,
                    at_ms: Some(at(row.started_us)),
                    causation_id: Some(row.event_id.clone()),
                    depth: 0,
                    runs: Vec::new(),
                });
            }
        }
        let run = run_node(&rows, &at, &mut totals);
        if let Some(&i) = index.get(&first.event_id) {
            nodes[i].runs.push(run);
        }
    }

    let notifications = notifications.map(|list| {
        list.into_iter()
            .map(|n| {
                last = last.max(n.created_ms * 1000);
                NotificationNode {
                    customer: n.customer,
                    seq: n.seq,
                    event_id: n.event_id,
                    event_type: n.event_type,
                    at_ms: at(n.created_ms * 1000),
                    acked: n.acked,
                }
            })
            .collect::<Vec<_>>()
    });

    let events = causal_order(nodes);
    totals.events = events.len();
    totals.notifications = notifications.as_ref().map_or(0, Vec::len);
    totals.tokens = totals.input_tokens + totals.output_tokens;
    totals.wall_ms = at(last);
    Timeline {
        case: log.case.clone(),
        data_dir: data_dir.to_owned(),
        started_at: DateTime::from_timestamp_micros(origin).filter(|_| first_event.or(first_step).is_some()),
        journal: log.journal,
        events,
        notifications,
        ledger: log.effects.clone(),
        totals,
    }
}

fn run_node(rows: &[StepRow], at: &impl Fn(i64) -> f64, totals: &mut Totals) -> RunNode {
    let first = &rows[0];
    let last = rows.last().unwrap_or(first);
    let mut run = RunNode {
        agent: first.agent.clone(),
        receive_count: 0,
        replay_name: first.replay_name.clone(),
        at_ms: at(first.started_us),
        duration_ms: (last.ended_us() - first.started_us) as f64 / 1000.0,
        outcome: "unfinished",
        model_turns: 0,
        input_tokens: 0,
        output_tokens: 0,
        model_ms: 0.0,
        steps: Vec::new(),
    };
    for row in rows {
        let (at_ms, duration_ms) = (at(row.started_us), row.duration_us as f64 / 1000.0);
        let step = match &row.entry {
            Entry::Received { receive_count, .. } => {
                run.receive_count = *receive_count;
                None
            }
            Entry::Duplicate => {
                run.outcome = "duplicate";
                None
            }
            Entry::Done { model_us, .. } => {
                run.outcome = "done";
                run.model_ms = *model_us as f64 / 1000.0;
                None
            }
            Entry::ModelTurn { turn, input_tokens, output_tokens, stop_reason } => {
                run.model_turns += 1;
                run.input_tokens += input_tokens;
                run.output_tokens += output_tokens;
                Some(StepNode::ModelTurn {
                    at_ms,
                    duration_ms,
                    turn: *turn,
                    input_tokens: *input_tokens,
                    output_tokens: *output_tokens,
                    stop_reason: stop_reason.clone(),
                })
            }
            Entry::ToolCall { tool, outcome, args, .. } => {
                totals.tool_calls += 1;
                let suppressed = *outcome == ToolOutcome::Suppressed;
                totals.suppressed += usize::from(suppressed);
                Some(StepNode::ToolCall {
                    at_ms,
                    duration_ms,
                    tool: tool.clone(),
                    args: args.clone(),
                    outcome: *outcome,
                    suppressed,
                })
            }
            Entry::Published { event_type, published_id } => {
                Some(StepNode::Published { at_ms, event_type: event_type.clone(), event_id: published_id.clone() })
            }
            Entry::NoCompletion { text } => Some(StepNode::NoCompletion { at_ms, text: text.clone() }),
            Entry::Failed { code, message, retryable } => {
                run.outcome = "failed";
                totals.failures += 1;
                Some(StepNode::Failed {
                    at_ms,
                    code: code.clone(),
                    message: message.clone(),
                    retryable: *retryable,
                    then: if *retryable { "retried" } else { "dead-lettered" },
                })
            }
        };
        run.steps.extend(step);
    }
    // By when each began: a completion's publication happens within its tool call, whose step
    // is reported when the call ends.
    run.steps.sort_by(|a, b| a.at_ms().total_cmp(&b.at_ms()));
    totals.runs += 1;
    totals.duplicates += usize::from(run.outcome == "duplicate");
    totals.replayed_runs += usize::from(run.replay_name.is_some());
    totals.model_turns += run.model_turns;
    totals.input_tokens += run.input_tokens;
    totals.output_tokens += run.output_tokens;
    totals.model_ms += run.model_ms;
    run
}

/// Orders events depth first along causation: a root (no cause in the case), then what
/// answers it, each level by time then by the order the case store got them.
fn causal_order(nodes: Vec<EventNode>) -> Vec<EventNode> {
    let ids: HashSet<String> = nodes.iter().map(|n| n.id.clone()).collect();
    let mut children: HashMap<Option<String>, Vec<usize>> = HashMap::new();
    for (i, node) in nodes.iter().enumerate() {
        let parent = node.causation_id.clone().filter(|c| ids.contains(c) && *c != node.id);
        children.entry(parent).or_default().push(i);
    }
    let key = |n: &EventNode| n.at_ms.or_else(|| n.runs.first().map(|r| r.at_ms)).unwrap_or(f64::MAX);
    for list in children.values_mut() {
        list.sort_by(|a, b| key(&nodes[*a]).total_cmp(&key(&nodes[*b])).then(a.cmp(b)));
    }
    let mut order = Vec::with_capacity(nodes.len());
    let mut seen = vec![false; nodes.len()];
    let mut stack: Vec<(usize, usize)> =
        children.get(&None).map(|roots| roots.iter().rev().map(|&i| (i, 0)).collect()).unwrap_or_default();
    while let Some((i, depth)) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        order.push((i, depth));
        if let Some(kids) = children.get(&Some(nodes[i].id.clone())) {
            stack.extend(kids.iter().rev().map(|&k| (k, depth + 1)));
        }
    }
    // A causation cycle (never written by Choreo) leaves events unreached: list them as roots.
    order.extend((0..nodes.len()).filter(|&i| !seen[i]).map(|i| (i, 0)));
    let mut slots: Vec<Option<EventNode>> = nodes.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|(i, depth)| {
            let mut node = slots[i].take()?;
            node.depth = depth;
            Some(node)
        })
        .collect()
}
