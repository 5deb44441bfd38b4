//! `choreo replay` and `choreo dlq`: the operations commands over the bus of the data
//! directory, and the agents' store for what the ledger would answer.

mod dlq;
mod ledger;
mod replay;

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use choreo_bus::{AwsBus, AwsConfig, Config, EmbeddedBus};

use crate::Status;
use crate::cli::{Backend, BackendArgs, DlqArgs, ReplayArgs};

pub use ledger::Agents;

pub fn replay(args: ReplayArgs, data_dir: &Path, output: &mut dyn Write) -> anyhow::Result<Status> {
    runtime()?.block_on(async {
        match args.backend.backend {
            Backend::Embedded => replay::run(&open_bus(data_dir)?, false, args.command, data_dir, output).await,
            Backend::Aws => replay::run(&aws_bus(&args.backend).await?, true, args.command, data_dir, output).await,
        }
    })
}

pub fn dlq(args: DlqArgs, data_dir: &Path, output: &mut dyn Write) -> anyhow::Result<Status> {
    runtime()?.block_on(async {
        match args.backend.backend {
            Backend::Embedded => dlq::run(&open_bus(data_dir)?, true, args.command, data_dir, output).await,
            Backend::Aws => {
                let bus = aws_bus(&args.backend).await?;
                dlq::run(&bus, false, args.command, data_dir, output).await
            }
        }
    })
}

/// The bus on EventBridge and SQS, which must exist already: operations never create one.
pub(crate) async fn aws_bus(backend: &BackendArgs) -> anyhow::Result<AwsBus> {
    let mut config = AwsConfig::new(&backend.bus_name);
    if let Some(prefix) = &backend.queue_prefix {
        config = config.with_queue_prefix(prefix);
    }
    if let Some(url) = &backend.endpoint_url {
        config = config.with_endpoint_url(url);
    }
    AwsBus::connect(config).await.with_context(|| format!("cannot reach the event bus `{}` on AWS", backend.bus_name))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
}

/// The bus of the data directory, which must exist already: operations never create one.
pub(crate) fn open_bus(data_dir: &Path) -> anyhow::Result<EmbeddedBus> {
    if !data_dir.join("bus.db").exists() {
        anyhow::bail!(
            "{} holds no bus (bus.db): run `choreo serve` or `choreo demo` on it first, or pass --data-dir",
            data_dir.display()
        );
    }
    EmbeddedBus::open(Config::new(data_dir)).with_context(|| format!("cannot open the bus in {}", data_dir.display()))
}

/// Writes `value` as pretty JSON and a newline.
pub(crate) fn write_json(output: &mut dyn Write, value: &impl serde::Serialize) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *output, value).context("cannot write to stdout")?;
    writeln!(output).context("cannot write to stdout")
}

pub(crate) fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
