//! `choreo replay start|describe|list|cancel`.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use choreo_bus::Bus;
use choreo_bus::api::{Replay, ReplayState};
use choreo_replay::{DryRun, ReplayRequest};
use chrono::Utc;
use serde_json::{Value, json};

use super::ledger::Agents;
use super::{time, write_json};
use crate::Status;
use crate::cli::{ReplayCommand, ReplayStartArgs};

const POLL: Duration = Duration::from_millis(50);

/// The command on `bus`: the data directory's, or (`aws`) EventBridge, which cannot list an
/// archive's events: a replay there is by time window, without `--case` or `--dry-run`.
pub async fn run<B: Bus>(
    bus: &B,
    aws: bool,
    command: ReplayCommand,
    data_dir: &Path,
    output: &mut dyn Write,
) -> anyhow::Result<Status> {
    let bus: &dyn Bus = bus;
    match command {
        ReplayCommand::Start(args) => {
            if aws && (args.case.is_some() || args.dry_run) {
                let what = if args.dry_run { "--dry-run" } else { "--case" };
                anyhow::bail!(
                    "{what} needs the embedded backend: EventBridge cannot list an archive's events (replay by time \
                     window on AWS: --from/--to or --since)"
                );
            }
            start(bus, &args, data_dir, output).await
        }
        ReplayCommand::Describe(args) => {
            choreo_replay::sweep(bus).await?;
            let replay = bus.describe_replay(&args.name).await?;
            print(output, &replay, args.json)?;
            Ok(Status::Success)
        }
        ReplayCommand::List(args) => {
            choreo_replay::sweep(bus).await?;
            let replays = bus.list_replays().await?;
            if args.json {
                write_json(output, &replays.iter().map(replay_json).collect::<Vec<_>>())?;
            } else if replays.is_empty() {
                writeln!(output, "no replays")?;
            } else {
                for r in &replays {
                    writeln!(output, "{}", summary(r))?;
                }
            }
            Ok(Status::Success)
        }
        ReplayCommand::Cancel(args) => {
            let state = bus.cancel_replay(&args.name).await?;
            let replay = choreo_replay::follow(bus, &args.name, POLL, None, |_| {}).await?;
            if args.json {
                write_json(
                    output,
                    &json!({ "name": args.name, "requested": state.as_str(), "replay": replay_json(&replay) }),
                )?;
            } else {
                writeln!(output, "{}", summary(&replay))?;
            }
            Ok(Status::Success)
        }
    }
}

async fn start(
    bus: &dyn Bus,
    args: &ReplayStartArgs,
    data_dir: &Path,
    output: &mut dyn Write,
) -> anyhow::Result<Status> {
    let agents = Agents::load(args.agents_dir.as_deref(), data_dir)?;
    let now = Utc::now();
    let (rules, base): (BTreeSet<String>, String) = match &args.agent {
        Some(name) => (BTreeSet::from([agents.get(name)?.rule_name()]), name.clone()),
        None => (args.rules.iter().cloned().collect(), "rules".into()),
    };
    let case = match &args.case {
        Some(case) => Some((case.clone(), agents.case_start(case)?)),
        None => None,
    };
    let from = args.from.or(args.since.map(|d| now - chrono::Duration::from_std(d).unwrap_or_default()));
    let name = args.name.clone().unwrap_or_else(|| format!("{base}-{}", now.format("%Y%m%d-%H%M%S-%3f")));
    let request = ReplayRequest {
        name,
        archive: args.archive.clone(),
        rules,
        case,
        from,
        to: args.to,
        now,
        description: Some(format!(
            "choreo replay start{}",
            args.case.as_ref().map(|c| format!(" --case {c}")).unwrap_or_default()
        )),
    };
    choreo_replay::sweep(bus).await?;
    let plan = choreo_replay::plan(bus, request).await?;
    if args.dry_run {
        let dry = choreo_replay::dry_run(bus, &plan, &agents).await?;
        if args.json {
            write_json(output, &dry)?;
        } else {
            print_dry_run(output, &dry)?;
        }
        return Ok(Status::Success);
    }
    let started = choreo_replay::start(bus, &plan).await?;
    if !args.json {
        let rules: Vec<&str> = plan.destinations.iter().map(|d| d.rule.name.as_str()).collect();
        writeln!(
            output,
            "replay {} started: archive {}, events {} .. {}, to {}{}",
            started.name,
            started.archive,
            time(started.event_start_time),
            time(started.event_end_time),
            rules.join(", "),
            plan.case.as_ref().map(|c| format!(", case {c}")).unwrap_or_default()
        )?;
        output.flush()?;
    }
    if args.detach {
        if args.json {
            write_json(output, &replay_json(&started))?;
        }
        return Ok(Status::Success);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    let mut progress = Progress::new(args.json);
    let last = choreo_replay::follow(bus, &started.name, POLL, Some(deadline), |r| progress.show(r)).await?;
    progress.finish();
    if args.json {
        write_json(output, &replay_json(&last))?;
    } else {
        writeln!(output, "{}", summary(&last))?;
        if last.state.is_active() {
            writeln!(
                output,
                "still {} after {} s; follow it with `choreo replay describe {}`",
                last.state, args.timeout, last.name
            )?;
        }
    }
    Ok(if last.state == ReplayState::Completed { Status::Success } else { Status::CheckFailed })
}

/// A bar on a terminal; otherwise a plain line on stderr when the count moves, at most once a second.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
    last: Option<(std::time::Instant, u64)>,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(0);
            if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events {msg}") {
                bar.set_style(style);
            }
            bar
        });
        Self { bar, quiet, last: None }
    }

    fn show(&mut self, r: &Replay) {
        if let Some(bar) = &self.bar {
            bar.set_length(r.events_total);
            bar.set_position(r.events_replayed);
            bar.set_message(format!("{} deliveries, {}", r.deliveries, r.state));
            return;
        }
        if self.quiet {
            return;
        }
        let due = self.last.is_none_or(|(at, n)| n != r.events_replayed && at.elapsed() >= Duration::from_secs(1));
        if due || !r.state.is_active() && self.last.is_some_and(|(_, n)| n != r.events_replayed) {
            eprintln!(
                "replay {}: {} {}/{} events, {} deliveries",
                r.name, r.state, r.events_replayed, r.events_total, r.deliveries
            );
            self.last = Some((std::time::Instant::now(), r.events_replayed));
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

fn summary(r: &Replay) -> String {
    let took = r
        .replay_end_time
        .map(|end| (end - r.replay_start_time).num_milliseconds())
        .map(|ms| format!(" in {:.1} s", ms as f64 / 1000.0));
    let reason = r.state_reason.as_ref().map(|s| format!(" ({s})")).unwrap_or_default();
    format!(
        "replay {} {}{reason}: {}/{} events, {} deliveries{}",
        r.name,
        r.state,
        r.events_replayed,
        r.events_total,
        r.deliveries,
        took.unwrap_or_default()
    )
}

fn print(output: &mut dyn Write, r: &Replay, json: bool) -> anyhow::Result<()> {
    if json {
        return write_json(output, &replay_json(r));
    }
    writeln!(output, "{}", summary(r))?;
    writeln!(output, "  archive: {}", r.archive)?;
    writeln!(output, "  window: {} .. {}", time(r.event_start_time), time(r.event_end_time))?;
    let rules = r.rules.as_ref().map(|s| s.iter().cloned().collect::<Vec<_>>().join(", "));
    writeln!(output, "  rules: {}", rules.unwrap_or_else(|| "every rule".into()))?;
    if let Some(d) = &r.description {
        writeln!(output, "  description: {d}")?;
    }
    if let Some(t) = r.event_last_replayed_time {
        writeln!(output, "  last event replayed: {}", time(t))?;
    }
    writeln!(output, "  started: {}", time(r.replay_start_time))?;
    if let Some(t) = r.replay_end_time {
        writeln!(output, "  ended: {}", time(t))?;
    }
    Ok(())
}

/// A replay as `--json` prints it: DescribeReplay's fields.
pub(crate) fn replay_json(r: &Replay) -> Value {
    json!({
        "ReplayName": r.name,
        "ReplayArn": r.arn,
        "EventSourceArn": r.archive,
        "Description": r.description,
        "State": r.state.as_str(),
        "StateReason": r.state_reason,
        "EventStartTime": time(r.event_start_time),
        "EventEndTime": time(r.event_end_time),
        "FilterArns": r.rules,
        "EventLastReplayedTime": r.event_last_replayed_time.map(time),
        "ReplayStartTime": time(r.replay_start_time),
        "ReplayEndTime": r.replay_end_time.map(time),
        "EventsTotal": r.events_total,
        "EventsReplayed": r.events_replayed,
        "Deliveries": r.deliveries,
    })
}

fn print_dry_run(output: &mut dyn Write, dry: &DryRun) -> anyhow::Result<()> {
    writeln!(
        output,
        "dry run of replay {}: archive {}, events {} .. {}, to {}{}",
        dry.replay,
        dry.archive,
        time(dry.event_start_time),
        time(dry.event_end_time),
        dry.rules.join(", "),
        dry.case.as_ref().map(|c| format!(", case {c}")).unwrap_or_default()
    )?;
    writeln!(
        output,
        "{} archived events in the window; {} would be replayed, {} deliveries. Nothing was moved.",
        dry.scanned,
        dry.events.len(),
        dry.deliveries()
    )?;
    for e in &dry.events {
        writeln!(output)?;
        let case = e.correlation_id.as_deref().map(|c| format!("  case {c}")).unwrap_or_default();
        writeln!(output, "{}  {}  {}{case}", time(e.time), e.event_type, e.id)?;
        for d in &e.deliveries {
            let who = d
                .agent
                .as_deref()
                .map(|a| format!("{a} ({})", d.rule))
                .unwrap_or_else(|| format!("{} (inbox {})", d.rule, d.inbox));
            match &d.handled {
                Some(outcome) => {
                    writeln!(output, "  → {who}: handled already ({outcome}); acknowledged without running")?
                }
                None => {
                    let acts = if d.may_act.is_empty() {
                        "no side-effecting tools".into()
                    } else {
                        format!("may act: {}", d.may_act.join(", "))
                    };
                    writeln!(output, "  → {who}: runs; {acts}")?;
                }
            }
            for effect in &d.suppressed {
                writeln!(output, "      ledger answers, not done again: {} {}", effect.tool, effect.args)?;
            }
            for effect in &d.in_doubt {
                writeln!(
                    output,
                    "      in doubt (started, never settled), retried under the same key: {} {}",
                    effect.tool, effect.args
                )?;
            }
        }
    }
    Ok(())
}
