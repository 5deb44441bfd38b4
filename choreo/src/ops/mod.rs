//! `choreo replay` and `choreo dlq`. (Being built.)

use std::io::Write;
use std::path::Path;

use crate::Status;
use crate::cli::{DlqCommand, ReplayCommand};

pub fn replay(command: ReplayCommand, data_dir: &Path, output: &mut dyn Write) -> anyhow::Result<Status> {
    let _ = (command, data_dir, output);
    anyhow::bail!("choreo replay is being built")
}

pub fn dlq(command: DlqCommand, data_dir: &Path, output: &mut dyn Write) -> anyhow::Result<Status> {
    let _ = (command, data_dir, output);
    anyhow::bail!("choreo dlq is being built")
}
