//! `choreo validate`: checks every agent folder before anything runs (being written).

use std::io::Write;

use crate::Status;
use crate::cli::ValidateArgs;

pub fn run(_args: &ValidateArgs, _out: &mut impl Write) -> anyhow::Result<Status> {
    Ok(Status::Success)
}
