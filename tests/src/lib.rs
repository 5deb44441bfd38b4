//! Helpers for the end-to-end tests of the `choreo` binary: build it once with cargo, run it
//! with piped stdin, and find the shared corpora beside the workspace.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

pub mod agents;
pub mod customer;
pub mod lambda_watch;
pub mod ministack;
pub mod served;

/// The `choreo` binary, built once per test process by `cargo build -p choreo --bin choreo`
/// (a no-op when it is fresh); its path comes from cargo's own JSON messages.
pub fn choreo_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(build_choreo)
}

fn build_choreo() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let out = Command::new(cargo)
        .args(["build", "-p", "choreo", "--bin", "choreo", "--message-format=json", "--manifest-path"])
        .arg(&manifest)
        .output()
        .expect("cannot run cargo to build choreo");
    assert!(out.status.success(), "cargo build -p choreo failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).expect("cargo's messages are UTF-8");
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "choreo")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported no executable for the choreo binary")
}

/// The outcome of one run of the binary.
#[derive(Debug)]
pub struct Run {
    /// The exit code; `None` if a signal ended the process.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// A `choreo` command with a clean environment for its own settings.
pub fn choreo() -> Command {
    let mut cmd = Command::new(choreo_bin());
    cmd.env_remove("CHOREO_DATA_DIR");
    cmd
}

/// Runs `choreo args…` with `stdin` piped in (from its own thread, so a large input and a large
/// output cannot block each other) and collects everything it printed.
pub fn run(args: &[&str], stdin: &[u8]) -> Run {
    run_command(choreo().args(args), stdin)
}

pub fn run_command(cmd: &mut Command, stdin: &[u8]) -> Run {
    let mut child =
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("cannot start choreo");
    let mut input = child.stdin.take().expect("stdin is piped");
    let out = std::thread::scope(|s| {
        s.spawn(move || {
            // The binary may stop reading early (a usage error): that is its answer, not ours.
            let _ = input.write_all(stdin);
        });
        child.wait_with_output().expect("cannot wait for choreo")
    });
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("choreo wrote non-UTF-8 to stdout"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Reads everything from `r` as text, for tests that hold the child's pipes themselves.
pub fn read_all(mut r: impl Read) -> String {
    let mut s = String::new();
    r.read_to_string(&mut s).expect("cannot read from choreo");
    s
}

/// The shared data directory (`/work/shared` beside the workspace), or `CHOREO_SHARED_DIR`.
/// Panics when it is missing: a test that needs it must fail, never skip.
pub fn shared_dir() -> PathBuf {
    let dir = std::env::var_os("CHOREO_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    assert!(
        dir.join("conformance").is_dir(),
        "shared data not found at {} (set CHOREO_SHARED_DIR to the folder holding conformance/ and bench/)",
        dir.display()
    );
    dir
}
