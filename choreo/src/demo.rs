//! `choreo demo`: the seeded support case end to end on the embedded default, in one process,
//! on a fresh data directory, with its timeline printed as the agents work.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use choreo_consumers::local::{Local, Options, SupportRequest};
use choreo_consumers::observe::{Step, StepKind, ToolOutcome};
use choreo_schemas::catalog::OrderSupportCompleted;
use chrono::Days;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use crate::Status;
use crate::cli::{DemoArgs, DemoCase};

/// How the case ended.
enum End {
    Completed(Value),
    Escalated(Value),
}

pub fn run(args: &DemoArgs, data_dir: &Path, out: &mut impl Write) -> anyhow::Result<Status> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("start the runtime")?;
    runtime.block_on(demo(args, data_dir, out))
}

async fn demo(args: &DemoArgs, data_dir: &Path, out: &mut impl Write) -> anyhow::Result<Status> {
    let dir = data_dir.join("demo");
    // A fresh directory each time, so the story starts from the seeded data set.
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clear {}", dir.display()))?;
    }
    let mut options = Options::new(&dir);
    options.model = args.model.clone();
    if let Some(agents) = &args.agents_dir {
        options.agents_dir = agents.clone();
    }
    let local = Local::start(options).await.context("start the agents")?;
    let today = chrono::Utc::now().date_naive();
    let tomorrow = today.checked_add_days(Days::new(1)).unwrap_or(today);
    let request = request_for(args.case, tomorrow);

    writeln!(out, "Choreo demo: {}", describe(args.case))?;
    writeln!(
        out,
        "customer {}, order {} · model {} · agents: {} · data: {}\n",
        request.customer,
        request.order_id,
        args.model,
        local.agents.iter().map(|a| a.name()).collect::<Vec<_>>().join(", "),
        dir.display()
    )?;

    let shipped_before: Vec<String> = local
        .services
        .backoffice
        .shipments(&request.order_id)
        .map(|s| s.into_iter().map(|s| s.shipment_id).collect())
        .unwrap_or_default();
    let mut steps = local.services.observer.subscribe();
    let started = Instant::now();
    let placed = local.submit(&request).await.context("publish the support request")?;
    let case = placed.correlation_id().unwrap_or(placed.id()).to_owned();
    writeln!(out, "{}  {:<9} → {} {}", stamp(Duration::ZERO), "customer", placed.event_type(), short(placed.id()))?;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    let mut turns: HashMap<(String, String), (u32, u64)> = HashMap::new();
    let mut model_time = Duration::ZERO;
    let end = loop {
        let step = match tokio::time::timeout_at(deadline, steps.recv()).await {
            Err(_) => break None,
            Ok(Err(RecvError::Lagged(_))) => continue,
            Ok(Err(RecvError::Closed)) => break None,
            Ok(Ok(step)) if step.correlation_id != case => continue,
            Ok(Ok(step)) => step,
        };
        if let StepKind::ModelTurn { input_tokens, output_tokens, elapsed, .. } = &step.kind {
            let entry = turns.entry((step.agent.clone(), step.event_id.clone())).or_default();
            entry.0 += 1;
            entry.1 += input_tokens + output_tokens;
            model_time += *elapsed;
        }
        print_step(out, &step, started, &turns)?;
        if let StepKind::Published { event_type, data, .. } = &step.kind {
            match event_type.as_str() {
                "OrderSupportCompleted" => break Some(End::Completed(data.clone())),
                "CaseEscalated" => break Some(End::Escalated(data.clone())),
                _ => {}
            }
        }
    };
    let wall = started.elapsed();
    let backoffice = local.services.backoffice.clone();
    local.shutdown().await;

    let status = match end {
        None => {
            writeln!(out, "\nThe case did not finish within {} s.", args.timeout)?;
            return Ok(Status::CheckFailed);
        }
        Some(End::Escalated(data)) => {
            writeln!(
                out,
                "\nThe case went to a human ({}): {}",
                data["reason"],
                data["detail"].as_str().unwrap_or("")
            )?;
            if matches!(args.case, DemoCase::NotYours) { Status::Success } else { Status::CheckFailed }
        }
        Some(End::Completed(data)) => {
            let answer: OrderSupportCompleted = serde_json::from_value(data).context("read the answer")?;
            writeln!(out, "\nThe customer's answer:\n")?;
            for line in wrap(&answer.answer, 88) {
                writeln!(out, "  {line}")?;
            }
            writeln!(out)?;
            for action in &answer.actions {
                writeln!(out, "  - {}: {}", action.agent, action.description)?;
            }
            Status::Success
        }
    };
    let refunds: Vec<String> =
        backoffice.refunds(&request.order_id).map(|r| r.into_iter().map(|r| r.refund_id).collect()).unwrap_or_default();
    let shipments: Vec<String> = backoffice
        .shipments(&request.order_id)
        .map(|s| s.into_iter().map(|s| s.shipment_id).filter(|id| !shipped_before.contains(id)).collect())
        .unwrap_or_default();
    writeln!(
        out,
        "\nCase {case}: {} from request to answer ({} in the model, {} in the bus, loop and tools).",
        ms(wall),
        ms(model_time),
        ms(wall.saturating_sub(model_time)),
    )?;
    writeln!(
        out,
        "Back office, order {}: refunds [{}], new shipments [{}].",
        request.order_id,
        refunds.join(", "),
        shipments.join(", ")
    )?;
    Ok(status)
}

fn print_step(
    out: &mut impl Write,
    step: &Step,
    started: Instant,
    turns: &HashMap<(String, String), (u32, u64)>,
) -> std::io::Result<()> {
    let at = stamp(step.at.saturating_duration_since(started));
    let agent = &step.agent;
    match &step.kind {
        StepKind::Received { event_type, receive_count } => {
            let again = if *receive_count > 1 { format!(" (delivery {receive_count})") } else { String::new() };
            writeln!(out, "{at}  {agent:<9} ← {event_type} {}{again}", short(&step.event_id))
        }
        StepKind::ToolCall { tool, input, outcome, result, elapsed } => {
            if tool.starts_with("complete.") || tool == "case.escalate" {
                return Ok(());
            }
            let note = match outcome {
                ToolOutcome::Ok => String::new(),
                ToolOutcome::Suppressed => "  (ledger: already done, not repeated)".into(),
                ToolOutcome::Refused | ToolOutcome::Error => {
                    format!("  {}: {}", outcome.as_str(), result["error"].as_str().unwrap_or_default())
                }
            };
            writeln!(out, "{at}  {agent:<9}   {tool} {} {}{note}", compact(input), ms(*elapsed))
        }
        StepKind::Published { event_type, published_id, data } => {
            let line = format!("{at}  {agent:<9} → {event_type} {} {}", short(published_id), gist(event_type, data));
            writeln!(out, "{}", line.trim_end())
        }
        StepKind::NoCompletion { text } => writeln!(out, "{at}  {agent:<9}   (no completion) {text}"),
        StepKind::Failed { code, message, retryable } => {
            let then = if *retryable { "will retry" } else { "dead-lettered" };
            writeln!(out, "{at}  {agent:<9} ✗ {code}: {message} ({then})")
        }
        StepKind::Duplicate => writeln!(out, "{at}  {agent:<9}   already handled: acknowledged, nothing run"),
        StepKind::Done { elapsed, .. } => {
            let (n, tokens) = turns.get(&(step.agent.clone(), step.event_id.clone())).copied().unwrap_or_default();
            writeln!(out, "{at}  {agent:<9} ✓ done in {} · {n} model turn(s) · {tokens} tokens", ms(*elapsed))
        }
        StepKind::ModelTurn { .. } => Ok(()),
    }
}

/// What a published event says, in a few words.
fn gist(event_type: &str, data: &Value) -> String {
    match event_type {
        "SupportTriaged" => format!("issues {}", compact(&data["issues"])),
        "PaymentIssueResolved" => format!(
            "{} · {} refund(s)",
            data["outcome"].as_str().unwrap_or("?"),
            data["refunds"].as_array().map_or(0, Vec::len)
        ),
        "InventoryChecked" => format!(
            "{} {}",
            data["sku"].as_str().unwrap_or("?"),
            if data["available"] == true {
                "in stock".to_owned()
            } else {
                format!("out of stock, alternative {}", data["alternative"]["sku"].as_str().unwrap_or("none"))
            }
        ),
        "FulfilmentIssueResolved" => {
            let shipments = data["shipments"].as_array().cloned().unwrap_or_default();
            let first = shipments
                .first()
                .map(|s| {
                    format!(
                        " · {} {} arriving {}",
                        s["carrier"].as_str().unwrap_or(""),
                        s["service_level"].as_str().unwrap_or(""),
                        s["estimated_delivery"].as_str().unwrap_or("")
                    )
                })
                .unwrap_or_default();
            format!("{}{first}", data["outcome"].as_str().unwrap_or("?"))
        }
        "CaseEscalated" => format!("reason {}", data["reason"].as_str().unwrap_or("?")),
        _ => String::new(),
    }
}

fn request_for(case: DemoCase, tomorrow: chrono::NaiveDate) -> SupportRequest {
    let mut request = SupportRequest::seeded(tomorrow);
    let (customer, order, message, needed_by) = match case {
        DemoCase::Seeded => return request,
        DemoCase::MissingItem => ("c-1002", "o-1002", "My smartwatch came but the charger is missing.", None),
        DemoCase::DoubleCharge => ("c-1003", "o-1003", "My card shows two charges for one order.", None),
        DemoCase::OutOfStock => {
            ("c-1004", "o-1004", "The outdoor speaker never arrived. I need it tomorrow.", Some(tomorrow))
        }
        DemoCase::NotYours => ("c-1001", "o-1005", "Where is my charger? (order o-1005)", None),
    };
    request.customer = customer.into();
    request.order_id = order.into();
    request.message = message.into();
    request.needed_by = needed_by;
    request
}

fn describe(case: DemoCase) -> &'static str {
    match case {
        DemoCase::Seeded => "charged twice, one of two items missing, needed tomorrow",
        DemoCase::MissingItem => "one item missing",
        DemoCase::DoubleCharge => "charged twice",
        DemoCase::OutOfStock => "missing item out of stock, needed tomorrow",
        DemoCase::NotYours => "a request about another customer's order",
    }
}

fn stamp(d: Duration) -> String {
    format!("{:>9}", format!("+{:.1} ms", d.as_secs_f64() * 1000.0))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn short(id: &str) -> String {
    id.chars().take(10).collect::<String>() + "…"
}

fn compact(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 80 { text.chars().take(79).collect::<String>() + "…" } else { text }
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.is_empty() => line.push_str(word),
            Some(line) if line.len() + 1 + word.len() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_owned()),
        }
    }
    lines
}
