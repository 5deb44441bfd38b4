//! The `choreo` binary: parse the command line, run the command, exit with a code by outcome
//! (see `choreo::exit`). Every error is reported on one stderr line.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

/// mimalloc: the servers allocate and free many small JSON values per request, where glibc's
/// allocator spent a fifth of the ingest path's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = choreo::cli::Cli::parse();
    match choreo::run(cli) {
        Ok(status) => ExitCode::from(status.exit_code()),
        // The reader of our output stopped reading (`| head`): stop quietly, like other tools.
        Err(err) if choreo::is_broken_pipe(&err) => ExitCode::from(choreo::exit::OK),
        Err(err) => {
            // stderr may be closed too; there is nowhere left to report that.
            let _ = writeln!(std::io::stderr().lock(), "choreo: error: {err:#}");
            ExitCode::from(choreo::error_exit_code(&err))
        }
    }
}
