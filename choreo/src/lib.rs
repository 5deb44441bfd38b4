//! The `choreo` command: the command line ([`cli`]) and the commands behind it. `main.rs` only
//! parses the arguments, calls [`run`], and turns the outcome into an exit code ([`exit`]).
//!
//! ```
//! use choreo::pattern_cmd::check::{Answer, answer};
//! use choreo_bus::pattern::Scratch;
//!
//! let mut scratch = Scratch::new();
//! let line = br#"{"pattern": {"source": ["shop"]}, "event": {"source": "shop"}}"#;
//! assert!(matches!(answer(line, false, &mut scratch), Answer::Match));
//! ```

pub mod agents;
pub mod cli;
pub mod demo;
pub mod infra;
pub mod jwks;
pub mod ops;
pub mod pattern_cmd;
pub mod publish;
pub mod serve;
pub mod token;
pub mod trace;
pub mod validate;

use std::io::{self, BufReader, BufWriter, Write};

use anyhow::Context;

use crate::cli::{Cli, Command, InfraCommand, PatternCommand, TokenCommand};

/// Process exit codes, by kind of outcome.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The command ran, and what it checked did not hold (no match, a count mismatch).
    pub const CHECK_FAILED: u8 = 1;
    /// The command line is wrong (clap uses the same code for its own errors).
    pub const USAGE: u8 = 2;
    /// An input or output could not be read, written or understood.
    pub const BAD_INPUT: u8 = 3;
}

/// How a command that ran to the end came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    CheckFailed,
}

impl Status {
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Success => exit::OK,
            Status::CheckFailed => exit::CHECK_FAILED,
        }
    }
}

/// A command-line value that clap could not judge alone (for example a rule-set name that the
/// rules file does not have). Exits like a clap usage error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit code for an error that ended a command.
pub fn error_exit_code(err: &anyhow::Error) -> u8 {
    if err.is::<UsageError>() { exit::USAGE } else { exit::BAD_INPUT }
}

/// Whether an error comes from writing to a reader that went away (`choreo … | head`). That
/// reader asked for no more output, so it is not a failure worth reporting.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| cause.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe))
}

/// Runs `command` on this process's stdout, flushed at the end.
fn to_stdout(command: impl FnOnce(&mut io::StdoutLock<'static>) -> anyhow::Result<Status>) -> anyhow::Result<Status> {
    let mut output = io::stdout().lock();
    let status = command(&mut output)?;
    output.flush().context("cannot write to stdout")?;
    Ok(status)
}

/// Runs a parsed command line on this process's stdin, stdout and stderr.
pub fn run(cli: Cli) -> anyhow::Result<Status> {
    match cli.command {
        Command::Demo(args) => to_stdout(|out| demo::run(&args, &cli.data_dir, out)),
        Command::Publish(args) => to_stdout(|out| publish::run(&args, &cli.data_dir, out)),
        Command::Serve(args) => serve::run(&args, &cli.data_dir),
        Command::Token(TokenCommand::Issue(args)) => {
            to_stdout(|out| token::issue(&args, &cli.data_dir, out).map(|()| Status::Success))
        }
        Command::Validate(args) => to_stdout(|out| validate::run(&args, out)),
        Command::Replay(args) => to_stdout(|out| ops::replay(args, &cli.data_dir, out)),
        Command::Dlq(args) => to_stdout(|out| ops::dlq(args, &cli.data_dir, out)),
        Command::Trace(args) => to_stdout(|out| trace::run(&args, &cli.data_dir, out)),
        Command::Infra(InfraCommand::Synth(args)) => to_stdout(|out| infra::synth(&args, out)),
        Command::Pattern(PatternCommand::Check(args)) => {
            let mut input = BufReader::with_capacity(64 * 1024, io::stdin().lock());
            let mut output = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
            pattern_cmd::check::run(&args, &mut input, &mut output)?;
            Ok(Status::Success)
        }
        Command::Pattern(PatternCommand::Test(args)) => to_stdout(|out| pattern_cmd::test::run(&args, out)),
        Command::Pattern(PatternCommand::Bench(args)) => {
            let mut output = BufWriter::new(io::stdout().lock());
            let status =
                pattern_cmd::bench::run(&args, &mut output, pattern_cmd::bench::Progress::stderr_if_terminal())?;
            output.flush().context("cannot write to stdout")?;
            Ok(status)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_pipe_is_found_under_context() {
        let err = anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe)).context("cannot write to stdout");
        assert!(is_broken_pipe(&err));
        assert_eq!(error_exit_code(&err), exit::BAD_INPUT);
        let other = anyhow::Error::from(io::Error::from(io::ErrorKind::NotFound)).context("cannot read x");
        assert!(!is_broken_pipe(&other));
    }

    #[test]
    fn usage_errors_exit_2_even_with_context() {
        let err = anyhow::Error::from(UsageError("unknown set".into())).context("selecting sets");
        assert_eq!(error_exit_code(&err), exit::USAGE);
    }
}
