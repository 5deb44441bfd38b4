//! `choreo trace <case>`: the case's timeline rebuilt from the data directory (read only, so
//! while `choreo serve` runs): events along causation, each agent's runs with their model
//! turns, tool calls (those the ledger suppressed marked), completions and failures, then the
//! notifications, with timings and totals; `--json` for scripts; and, with an OTLP endpoint,
//! the case's spans exported.

mod text;
pub mod timeline;

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use choreo_consumers::journal::otlp::{Endpoint, Exporter};
use choreo_consumers::journal::{self, CaseLog, ReadError};
use choreo_consumers::store::DynamoLedger;
use choreo_notifier::CaseNotification;
use choreo_notifier::aws::table::Table;

use crate::Status;
use crate::cli::{Backend, TraceArgs};

pub fn run(args: &TraceArgs, data_dir: &Path, output: &mut dyn Write) -> anyhow::Result<Status> {
    let (log, notifications, source) = if args.backend == Backend::Aws {
        aws_case(args)?
    } else {
        let log = match journal::read_case(data_dir, &args.case) {
            Ok(log) => log,
            Err(e @ (ReadError::UnknownCase { .. } | ReadError::NoStore(_))) => {
                anyhow::bail!("{e} (data directory {})", data_dir.display())
            }
            Err(e) => return Err(e).context(format!("read case `{}`", args.case)),
        };
        let notifications = choreo_notifier::case_notifications(data_dir, &args.case)
            .with_context(|| format!("read the notifications of case `{}`", args.case))?;
        (log, notifications, data_dir.display().to_string())
    };
    let timeline = timeline::build(&log, notifications, &source);
    if args.json {
        // Rendered first, so that a reader gone away (`| head`) is an I/O error, told apart.
        let json = serde_json::to_string_pretty(&timeline).context("render the timeline")?;
        writeln!(output, "{json}").context("write the timeline")?;
    } else {
        text::write(output, &timeline).context("write the timeline")?;
    }

    let endpoint = args.otlp_endpoint.clone().map(Endpoint::Base).or_else(Endpoint::from_env);
    if let Some(endpoint) = endpoint {
        let spans = journal::spans::case_spans(&log);
        let count = spans.len();
        let trace = spans.first().map(|s| s.span_context.trace_id().to_string()).unwrap_or_default();
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().context("start the runtime")?;
        let url = runtime.block_on(async {
            let exporter = Exporter::new(&endpoint)?;
            exporter.export(spans).await?;
            anyhow::Ok(exporter.url().to_owned())
        })?;
        let note = format!("Exported {count} span(s) of trace {trace} to {url}");
        // The JSON document stays alone on stdout.
        if args.json {
            eprintln!("{note}");
        } else {
            writeln!(output, "\n{note}").context("write the timeline")?;
        }
    }
    Ok(Status::Success)
}

/// The case from the AWS deployment's tables: its events, the runs the agent functions copied
/// after each invocation (model turns, tool calls, suppressed ones marked, completions) and its
/// events' effects, from the ledger's table; its notifications from the notifier's table, when
/// named.
fn aws_case(args: &TraceArgs) -> anyhow::Result<(CaseLog, Option<Vec<CaseNotification>>, String)> {
    let table =
        args.ledger_table.clone().context("--ledger-table (or CHOREO_LEDGER_TABLE) names the ledger's table")?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("start the runtime")?;
    let source = format!("DynamoDB table `{table}`");
    let (case, notifications) = runtime.block_on(async {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(url) = &args.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let sdk = loader.load().await;
        let Some(case) = DynamoLedger::new(&sdk, &table)?.case_log(&args.case).await? else {
            anyhow::bail!("case `{}` not found in {source}: no event or agent run of it is there", args.case)
        };
        let Some(connections) = &args.connections_table else { return Ok((case, None)) };
        let notifier = Table::new(&sdk, connections)?;
        let mut notifications = Vec::new();
        for customer in &case.customers {
            notifications.extend(notifier.case_notifications(customer, &args.case).await?);
        }
        notifications.sort_by_key(|n| (n.created_ms, n.customer.clone(), n.seq));
        anyhow::Ok((case, Some(notifications)))
    })?;
    Ok((case.log, notifications, source))
}
