//! One agent as an AWS Lambda function, fed by its SQS queue through an event source mapping
//! with `ReportBatchItemFailures` (`choreo infra synth` makes the function, its queue and the
//! mapping). Configured by the environment:
//!
//! - `CHOREO_AGENT`: the agent's name (its folder under `CHOREO_AGENTS_DIR`);
//! - `CHOREO_BUS`: the event bus (default `choreo`); `CHOREO_QUEUE_PREFIX` before queue names;
//! - `CHOREO_MODEL`: `bedrock:<model-id>` (the template's), `offline`, or `openai:<url>#<model>`;
//! - `CHOREO_LEDGER_TABLE`: the DynamoDB table of the effect ledger and the case store (the
//!   template's `LedgerTable`), shared by every instance of every agent; without it, both are
//!   the instance's own store (fine on one instance, as under `cargo lambda watch`);
//! - `CHOREO_DATA_DIR` (default `/tmp/choreo`): the instance's record of the runs it handled,
//!   its step journal, and the reference back office;
//! - `CHOREO_AGENTS_DIR`: the agent folders, by default those built into the binary (see
//!   [`choreo::agents`]);
//! - the standard AWS settings (region, credentials, `AWS_ENDPOINT_URL` for a local server).
//!
//! A missing or unknown agent, a bus that does not exist or a model that cannot be reached
//! fail the function's start (its init), with the reason in its log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use choreo_bus::{AwsBus, AwsConfig};
use choreo_consumers::local::{Local, Options};
use choreo_consumers::runner::Services;
use choreo_consumers::store::DynamoLedger;
use lambda_runtime::{Error, LambdaEvent, service_fn};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let name = env("CHOREO_AGENT").ok_or("CHOREO_AGENT is not set: name the agent this function runs")?;
    let mut config = AwsConfig::new(env("CHOREO_BUS").unwrap_or_else(|| "choreo".into()));
    if let Some(prefix) = env("CHOREO_QUEUE_PREFIX") {
        config = config.with_queue_prefix(prefix);
    }
    let bus = Arc::new(AwsBus::connect(config).await.map_err(|e| format!("the bus: {e}"))?);
    let mut options = Options::new(env("CHOREO_DATA_DIR").map_or_else(|| PathBuf::from("/tmp/choreo"), PathBuf::from));
    options.agents_dir = choreo::agents::dir().map_err(|e| format!("the agent folders: {e:#}"))?;
    if let Some(model) = env("CHOREO_MODEL") {
        options.model = model.parse().map_err(|e| format!("CHOREO_MODEL: {e}"))?;
    }
    let data_dir = options.data_dir.clone();
    let mut shared = None;
    if let Some(table) = env("CHOREO_LEDGER_TABLE") {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
        let ledger = Arc::new(DynamoLedger::new(&sdk, table).map_err(|e| format!("the ledger: {e}"))?);
        options.ledger = Some(ledger.clone());
        options.cases = Some(ledger.clone());
        shared = Some(ledger);
    }
    // The deployment made the rules and queues; messages come from the event source mapping.
    options.consume = false;
    options.subscribe = false;
    let local = Local::start_on(options, bus.clone()).await.map_err(|e| format!("the agents: {e}"))?;
    let agent = local.agents.iter().find(|a| a.name() == name).cloned().map(Arc::new).ok_or_else(|| {
        let known: Vec<&str> = local.agents.iter().map(|a| a.name()).collect();
        format!("CHOREO_AGENT `{name}` is not an agent folder here (there are: {})", known.join(", "))
    })?;
    let services = local.services.clone();
    let copied = Arc::new(tokio::sync::Mutex::new(0_i64));
    // This instance, among those of every agent: its start in nanoseconds and its process.
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let instance = format!("{:x}-{}", started.as_nanos(), std::process::id());
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let (services, bus, agent) = (services.clone(), bus.clone(), agent.clone());
        let (shared, copied, data_dir, instance) = (shared.clone(), copied.clone(), data_dir.clone(), instance.clone());
        async move {
            let response: SqsBatchResponse =
                choreo_consumers::lambda::handle_sqs(&services, bus.as_ref(), &agent, event.payload).await;
            if let Some(ledger) = shared {
                copy_runs(&services, &ledger, &data_dir, &instance, &copied).await;
            }
            Ok::<_, Error>(response)
        }
    }))
    .await
}

/// Copies the invocation's steps (the journal's new rows) under their cases in the ledger's
/// table, for `choreo trace --backend aws`, before Lambda freezes the instance. A failure is
/// logged and tried again after the next invocation: the trace lags, nothing else does.
async fn copy_runs(
    services: &Services,
    ledger: &DynamoLedger,
    data_dir: &Path,
    instance: &str,
    copied: &tokio::sync::Mutex<i64>,
) {
    services.observer.flush().await;
    let mut copied = copied.lock().await;
    let runs = match choreo_consumers::journal::file::runs_after(data_dir, *copied) {
        Ok(runs) => runs,
        Err(e) => return tracing::warn!(error = %e, "the journal's new rows could not be read"),
    };
    let Some(last) = runs.iter().map(|r| r.last).max() else { return };
    match ledger.put_runs(instance, &runs).await {
        Ok(()) => *copied = last,
        Err(e) => tracing::warn!(error = %e, "the runs could not be copied for the trace"),
    }
}
