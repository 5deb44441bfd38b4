//! `choreo dlq list|show|redrive|purge`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, bail};
use choreo_bus::{Bus, BusError, Inboxes};
use choreo_replay::{DeadLetterEntry, Selection};
use serde_json::json;

use super::ledger::Agents;
use super::{time, write_json};
use crate::cli::{DlqCommand, DlqSelectArgs};
use crate::{Status, UsageError};

/// The command on `bus`: the data directory's (`local_cases`: its agents' case store is there
/// too, so `--case` is checked against it), or on AWS (where it is not: `--case` only narrows).
pub async fn run<B: Bus + Inboxes>(
    bus: &B,
    local_cases: bool,
    command: DlqCommand,
    data_dir: &Path,
    output: &mut dyn Write,
) -> anyhow::Result<Status> {
    match command {
        DlqCommand::List(args) => {
            let inboxes = match &args.agent {
                Some(agent) => agent_dead_letters(bus, agent).await?,
                None => Vec::new(),
            };
            if args.agent.is_none() {
                let all = choreo_replay::dead_letter_inboxes(&bus.list_rules().await?, &bus.list_inboxes().await?);
                if args.json {
                    write_json(output, &all)?;
                } else if all.is_empty() {
                    writeln!(output, "no dead-letter inboxes")?;
                } else {
                    writeln!(output, "{:<28} {:>8}  OLDEST", "INBOX", "MESSAGES")?;
                    for i in &all {
                        let oldest = i.oldest.map(time).unwrap_or_else(|| "-".into());
                        writeln!(output, "{:<28} {:>8}  {oldest}", i.name, i.visible + i.hidden)?;
                    }
                }
                return Ok(Status::Success);
            }
            let entries = choreo_replay::select(bus, &Selection { inboxes, ..Selection::default() }).await?;
            print_entries(output, &entries, args.json)?;
            Ok(Status::Success)
        }
        DlqCommand::Show(args) => {
            let selection = Selection { messages: vec![args.message.clone()], ..Selection::default() };
            let entry = choreo_replay::select(bus, &selection).await?.remove(0);
            if args.json {
                write_json(output, &entry)?;
            } else {
                show(output, &entry)?;
            }
            Ok(Status::Success)
        }
        DlqCommand::Redrive(args) => {
            let entries = selected(bus, &args, data_dir, local_cases).await?;
            let moved = choreo_replay::redrive(bus, bus, &entries).await?;
            if args.json {
                write_json(output, &moved)?;
            } else {
                for m in &moved {
                    writeln!(output, "redriven {} → {}", m.message_id, m.new_message_id)?;
                }
                writeln!(output, "{} message(s) redriven", moved.len())?;
            }
            Ok(Status::Success)
        }
        DlqCommand::Purge(args) => {
            let entries = selected(bus, &args.select, data_dir, local_cases).await?;
            if entries.is_empty() {
                writeln!(output, "nothing to purge")?;
                return Ok(Status::Success);
            }
            if !args.yes && !confirm(entries.len())? {
                writeln!(output, "nothing purged")?;
                return Ok(Status::CheckFailed);
            }
            let mut by_inbox: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
            for e in &entries {
                by_inbox.entry(e.inbox.as_str()).or_default().push(e.message_id.clone());
            }
            let mut purged = 0;
            for (inbox, ids) in by_inbox {
                purged += bus.delete_messages(inbox, &ids).await?;
            }
            if args.select.json {
                write_json(output, &json!({ "purged": purged }))?;
            } else {
                writeln!(output, "{purged} message(s) purged")?;
            }
            Ok(Status::Success)
        }
    }
}

/// The dead-letter inboxes of agent `name`: its rule's targets', or the one it left behind.
async fn agent_dead_letters<B: Bus + Inboxes>(bus: &B, name: &str) -> anyhow::Result<Vec<String>> {
    let rule = format!("agent-{name}");
    match bus.describe_rule(&rule).await {
        Ok(rule) if !rule.targets.is_empty() => {
            return Ok(rule.targets.into_iter().map(|t| t.dead_letter_inbox).collect());
        }
        Ok(_) | Err(BusError::RuleNotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let left = format!("agent-{name}-dlq");
    let inboxes = bus.list_inboxes().await?;
    if inboxes.iter().any(|i| i.name == left) {
        return Ok(vec![left]);
    }
    let agents: Vec<String> =
        bus.list_rules().await?.into_iter().filter_map(|r| r.name.strip_prefix("agent-").map(str::to_owned)).collect();
    bail!(
        "unknown agent `{name}`: the bus has no rule `{rule}` and no inbox `{left}` (agents on the bus: {})",
        agents.join(", ")
    )
}

async fn selected<B: Bus + Inboxes>(
    bus: &B,
    args: &DlqSelectArgs,
    data_dir: &Path,
    local_cases: bool,
) -> anyhow::Result<Vec<DeadLetterEntry>> {
    let mut selection = Selection {
        messages: args.messages.clone(),
        case: args.case.clone(),
        code: args.code.clone(),
        ..Selection::default()
    };
    if let Some(agent) = &args.agent {
        selection.inboxes = agent_dead_letters(bus, agent).await?;
    }
    if args.all {
        let all = choreo_replay::dead_letter_inboxes(&bus.list_rules().await?, &bus.list_inboxes().await?);
        selection.inboxes = all.into_iter().map(|i| i.name).collect();
    }
    if let Some(case) = args.case.as_ref().filter(|_| local_cases) {
        // A case the agents never saw is a typo more likely than an empty selection.
        Agents::load(args.agents_dir.as_deref(), data_dir)?.case_start(case)?;
    }
    Ok(choreo_replay::select(bus, &selection).await?)
}

fn confirm(n: usize) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(UsageError(format!(
            "purge deletes {n} message(s) for good: confirm with --yes (there is no terminal to ask on)"
        ))
        .into());
    }
    eprint!("Delete {n} dead-lettered message(s) for good? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).context("cannot read the answer")?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn print_entries(output: &mut dyn Write, entries: &[DeadLetterEntry], json: bool) -> anyhow::Result<()> {
    if json {
        return write_json(output, &entries);
    }
    if entries.is_empty() {
        writeln!(output, "no dead letters")?;
        return Ok(());
    }
    writeln!(output, "{:<26} {:<24} {:<28} {:<16} {:>8}  AT", "MESSAGE", "EVENT", "CASE", "ERROR", "RETRIES")?;
    for e in entries {
        writeln!(
            output,
            "{:<26} {:<24} {:<28} {:<16} {:>8}  {}",
            e.message_id,
            e.event_type.as_deref().unwrap_or("-"),
            e.correlation_id.as_deref().unwrap_or("-"),
            e.error_code.as_deref().unwrap_or("-"),
            e.retry_attempts.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            time(e.dead_lettered_at)
        )?;
    }
    Ok(())
}

fn show(output: &mut dyn Write, e: &DeadLetterEntry) -> anyhow::Result<()> {
    writeln!(output, "message: {}", e.message_id)?;
    writeln!(output, "dead-lettered at: {}", time(e.dead_lettered_at))?;
    writeln!(
        output,
        "rule: {}  target: {}  from inbox: {}",
        e.rule,
        e.target,
        e.source_inbox.as_deref().unwrap_or("-")
    )?;
    writeln!(output, "error: {} {}", e.error_code.as_deref().unwrap_or("-"), e.error_message.as_deref().unwrap_or(""))?;
    let exhausted = e.exhausted_retry_condition.as_deref().unwrap_or("none (a permanent failure, not retried)");
    writeln!(output, "retry attempts: {}  exhausted: {exhausted}", e.retry_attempts.unwrap_or(0))?;
    writeln!(output, "event:")?;
    writeln!(output, "{}", serde_json::to_string_pretty(&e.event)?)?;
    Ok(())
}
