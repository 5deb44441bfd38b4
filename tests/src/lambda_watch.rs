//! `cargo lambda watch` (PyPI: cargo-lambda): the real Lambda Runtime API, offline, running
//! this workspace's function binaries on demand (built at their first invocation). `.ci/test`
//! installs it and names it in `CHOREO_CARGO_LAMBDA`; otherwise `cargo-lambda` is looked for
//! on the `PATH`. Where it is not installed, a run under CI fails; a plain `cargo test` skips,
//! saying so.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A running `cargo lambda watch`, stopped when dropped.
pub struct Watch {
    child: Child,
    port: u16,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cargo_lambda() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHOREO_CARGO_LAMBDA") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("cargo-lambda")).find(|p| p.is_file())
}

impl Watch {
    /// Starts `cargo lambda watch` on a free loopback port for the `choreo` package's function
    /// binaries, with `env` set for them; `None` (after saying why) where it is not installed
    /// and this is not CI.
    pub fn start(env: &[(&str, String)]) -> Option<Watch> {
        let Some(exe) = cargo_lambda() else {
            let why = "cargo-lambda is not installed: `bash .ci/test` installs it (or `pip install cargo-lambda`)";
            assert!(std::env::var_os("CI").is_none(), "{why}");
            eprintln!("SKIPPED (not CI): {why}");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../choreo/Cargo.toml");
        let mut command = Command::new(exe);
        command.args(["lambda", "watch", "--ignore-changes", "--invoke-address", "127.0.0.1", "--invoke-port"]);
        command.arg(port.to_string()).arg("--manifest-path").arg(manifest);
        for (k, v) in env {
            command.arg("--env-var").arg(format!("{k}={v}"));
        }
        let child = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().unwrap();
        Some(Watch { child, port })
    }

    /// Invokes `function` (a binary's name) through the Runtime API with `event`, waiting for
    /// the server to be up; answers what the function returned.
    pub async fn invoke(&self, function: &str, event: &Value) -> Value {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(600)).build().unwrap();
        let url = format!("http://127.0.0.1:{}/2015-03-31/functions/{function}/invocations", self.port);
        let started = std::time::Instant::now();
        loop {
            match client.post(&url).json(event).send().await {
                Ok(answer) => {
                    let status = answer.status();
                    let body = answer.text().await.unwrap();
                    assert!(status.is_success(), "the invocation of {function} failed: {status}: {body}");
                    return serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
                }
                // Not listening yet.
                Err(e) if e.is_connect() && started.elapsed() < Duration::from_secs(120) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("cannot invoke {function}: {e}"),
            }
        }
    }
}
