//! `choreo publish --file events.jsonl`: pushes a file of CloudEvents onto the bus of the data
//! directory through the publisher (catalog checks, batches, retries of failed entries), with a
//! progress bar on a terminal, and names every line that did not make it.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use choreo_bus::{Config, EmbeddedBus};
use choreo_producers::{Outcome, PublishError, Publisher};
use choreo_schemas::Envelope;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::Status;
use crate::cli::PublishArgs;

/// Events handed to the publisher at once (it packs them into PutEvents calls of 10).
const CHUNK: usize = 500;

pub fn run(args: &PublishArgs, data_dir: &Path, out: &mut impl Write) -> anyhow::Result<Status> {
    let text: Box<dyn BufRead> = if args.file.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
        Box::new(std::io::BufReader::new(file))
    };
    // Every line is read first, so a file that breaks off midway publishes nothing.
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {} at line {}", args.file.display(), n + 1))?;
        if !line.trim().is_empty() {
            lines.push((n + 1, line));
        }
    }
    let mut problems: Vec<String> = Vec::new();
    let mut events: Vec<(usize, Envelope)> = Vec::new();
    for (n, line) in lines {
        match Envelope::from_json_str(&line) {
            Ok(event) => events.push((n, event)),
            Err(e) => problems.push(format!("line {n}: not a CloudEvent: {e}")),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("start the runtime")?;
    let bus = Arc::new(EmbeddedBus::open(Config::new(data_dir)).context("open the bus")?);
    let publisher = Publisher::new(bus);
    let bar = progress(events.len() as u64);
    let mut published = 0;
    for chunk in events.chunks(CHUNK) {
        let batch: Vec<Envelope> = chunk.iter().map(|(_, e)| e.clone()).collect();
        let outcomes = match runtime.block_on(publisher.publish(&batch)) {
            Ok(outcomes) => outcomes,
            Err(PublishError::Unavailable { outcomes, .. }) => outcomes,
        };
        for ((n, event), outcome) in chunk.iter().zip(outcomes) {
            match outcome {
                Outcome::Published { .. } => published += 1,
                Outcome::Refused { reason } => problems.push(format!("line {n}: refused: {reason}")),
                Outcome::Failed { code, message, attempts } => problems.push(format!(
                    "line {n}: event {} failed at the bus after {attempts} attempt(s): {code}: {message}",
                    event.id()
                )),
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    problems.sort_by_key(|p| p.split(':').next().and_then(|l| l.trim_start_matches("line ").parse::<usize>().ok()));
    for problem in &problems {
        writeln!(out, "{problem}")?;
    }
    let total = published + problems.len();
    writeln!(out, "published {published} of {total} events to {}", data_dir.display())?;
    Ok(if problems.is_empty() { Status::Success } else { Status::CheckFailed })
}

/// A progress bar on stderr when it is a terminal; nothing otherwise.
fn progress(len: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} events ({per_sec}, {eta} left)") {
        bar.set_style(style);
    }
    bar
}
