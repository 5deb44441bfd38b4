//! The timeline as text: one line per event, agent run and step, indented along causation,
//! each with its offset from the case's first event.

use std::io::{self, Write};

use choreo_consumers::observe::ToolOutcome;
use chrono::SecondsFormat;

use super::timeline::{EventNode, RunNode, StepNode, Timeline};

pub fn write(out: &mut dyn Write, t: &Timeline) -> io::Result<()> {
    let started = t.started_at.map(|s| s.to_rfc3339_opts(SecondsFormat::Millis, true)).unwrap_or_default();
    writeln!(out, "Case {} · data: {} · first event {started}", t.case, t.data_dir)?;
    if !t.journal {
        writeln!(out, "(this store has no step journal: it was written before one was kept; events only)")?;
    }
    writeln!(out)?;
    for event in &t.events {
        write_event(out, event)?;
    }
    if let Some(notifications) = &t.notifications {
        writeln!(out, "\nNotifications ({})", notifications.len())?;
        for n in notifications {
            let acked = if n.acked { "acknowledged" } else { "not acknowledged yet" };
            writeln!(
                out,
                "{}  {} #{} {} {} · stored for delivery · {acked}",
                stamp(Some(n.at_ms)),
                n.customer,
                n.seq,
                n.event_type,
                n.event_id
            )?;
        }
    }
    if !t.ledger.is_empty() {
        writeln!(out, "\nLedger (effects of the case)")?;
        for e in &t.ledger {
            let again = match e.suppressed {
                0 => String::new(),
                n => format!(" · suppressed {n}× (answered from the ledger, not done again)"),
            };
            // A completion's key is the event itself: its arguments are not kept.
            let args = if e.args == "null" { String::new() } else { format!(" {}", e.args) };
            writeln!(out, "  {}{args} · {} · by {} on {}{again}", e.tool, e.state, e.agent, e.event_id)?;
        }
    }
    let s = &t.totals;
    writeln!(out, "\nTotals")?;
    writeln!(
        out,
        "  {} events · {} agent runs ({} duplicate, {} on a replay) · {} failure(s) · {} notification(s)",
        s.events, s.runs, s.duplicates, s.replayed_runs, s.failures, s.notifications
    )?;
    writeln!(
        out,
        "  {} model turns · {} tokens ({} in, {} out) · {} tool calls ({} suppressed by the ledger)",
        s.model_turns, s.tokens, s.input_tokens, s.output_tokens, s.tool_calls, s.suppressed
    )?;
    writeln!(out, "  wall {} from the first event · {} in the model", ms(s.wall_ms), ms(s.model_ms))
}

fn write_event(out: &mut dyn Write, e: &EventNode) -> io::Result<()> {
    let pad = "  ".repeat(e.depth);
    let time = e.time.map(|t| format!(" · {}", t.to_rfc3339_opts(SecondsFormat::Millis, true))).unwrap_or_default();
    let source = if e.source.is_empty() { String::new() } else { format!(" · from {}", e.source) };
    let cause = match (&e.causation_id, e.depth) {
        (Some(c), 0) => format!(" · answers {c} (not in this case)"),
        _ => String::new(),
    };
    writeln!(out, "{}  {pad}● {} {}{source}{time}{cause}", stamp(e.at_ms), e.event_type, e.id)?;
    if e.runs.is_empty() {
        writeln!(out, "{}  {pad}    (no agent run)", stamp(None))?;
    }
    for run in &e.runs {
        write_run(out, run, &pad)?;
    }
    Ok(())
}

fn write_run(out: &mut dyn Write, r: &RunNode, pad: &str) -> io::Result<()> {
    let replay = r.replay_name.as_ref().map(|n| format!("REPLAY {n} · ")).unwrap_or_default();
    let how = match r.outcome {
        "duplicate" => "duplicate: handled before, acknowledged, nothing run".to_owned(),
        "done" => format!(
            "done in {} · {} model turn(s) · {} tokens",
            ms(r.duration_ms),
            r.model_turns,
            r.input_tokens + r.output_tokens
        ),
        "failed" => format!("failed after {}", ms(r.duration_ms)),
        _ => format!("unfinished after {} (in progress, or its process stopped)", ms(r.duration_ms)),
    };
    writeln!(out, "{}  {pad}  {} ← {replay}delivery {} · {how}", stamp(Some(r.at_ms)), r.agent, r.receive_count)?;
    for step in &r.steps {
        let line = match step {
            StepNode::ModelTurn { turn, input_tokens, output_tokens, stop_reason, duration_ms, .. } => format!(
                "model turn {turn} · {} tokens ({input_tokens} in, {output_tokens} out) · {stop_reason} · {}",
                input_tokens + output_tokens,
                ms(*duration_ms)
            ),
            StepNode::ToolCall { tool, args, outcome, duration_ms, .. } => {
                let how = match outcome {
                    ToolOutcome::Suppressed => "SUPPRESSED by the ledger (already done, not repeated)",
                    ToolOutcome::Refused => "REFUSED (not the customer's)",
                    ToolOutcome::Error => "error",
                    ToolOutcome::Ok => "ok",
                };
                format!("tool {tool} {args} · {how} · {}", ms(*duration_ms))
            }
            StepNode::Published { event_type, event_id, .. } => format!("→ {event_type} {event_id}"),
            StepNode::NoCompletion { text, .. } => format!("(no completion) {text}"),
            StepNode::Failed { code, message, then, .. } => format!("✗ {code}, {then}: {message}"),
        };
        writeln!(out, "{}  {pad}      {line}", stamp(Some(step.at_ms())))?;
    }
    Ok(())
}

fn stamp(at_ms: Option<f64>) -> String {
    match at_ms {
        Some(at) => format!("{:>+11.1} ms", at),
        None => " ".repeat(14),
    }
}

fn ms(value: f64) -> String {
    format!("{value:.1} ms")
}
