//! `choreo trace <case>`: the case's timeline. (Being built.)

use std::io::Write;
use std::path::Path;

use crate::Status;
use crate::cli::TraceArgs;

pub fn run(args: &TraceArgs, data_dir: &Path, output: &mut dyn Write) -> anyhow::Result<Status> {
    let _ = (args, data_dir, output);
    anyhow::bail!("choreo trace is being built")
}
