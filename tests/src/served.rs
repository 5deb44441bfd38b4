//! `choreo serve` as a real process on a free port, for end-to-end tests over HTTP, WebSocket
//! and a browser.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::choreo;

/// A running `choreo serve`; killed when dropped, or stopped gracefully with [`Served::stop`].
pub struct Served {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// `127.0.0.1:<port>`.
    pub host: String,
    pub data_dir: PathBuf,
    lines: mpsc::Receiver<String>,
}

impl Served {
    /// Starts `choreo serve --addr 127.0.0.1:0` over `data_dir` and waits for its address line.
    pub fn start(data_dir: &Path) -> Self {
        let mut child = choreo()
            .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env_remove("CHOREO_MODEL")
            .env_remove("CHOREO_AGENTS_DIR")
            .env_remove("CHOREO_JWKS_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start choreo serve");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines.recv_timeout(Duration::from_secs(120)).expect("choreo serve printed no address line");
        let base = first
            .strip_prefix("choreo serve: listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from choreo serve: {first:?}"))
            .to_string();
        let host = base.trim_start_matches("http://").to_string();
        Self { child: Some(child), base, host, data_dir: data_dir.to_path_buf(), lines }
    }

    /// A token from the local issuer of the served data directory.
    pub fn token(&self, who: &[&str]) -> String {
        let out = choreo().args(["token", "issue"]).args(who).arg("--data-dir").arg(&self.data_dir).output().unwrap();
        assert!(out.status.success(), "choreo token issue failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    pub fn customer_token(&self, customer: &str) -> String {
        self.token(&["--customer", customer])
    }

    /// Sends SIGTERM and waits: the exit code and the lines printed after the address line.
    pub fn stop(mut self) -> (Option<i32>, Vec<String>) {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let exit = child.wait().expect("wait for choreo serve");
        // The reader thread ends at the pipe's end of file, once the process has exited.
        let lines: Vec<String> = self.lines.iter().collect();
        (exit.code(), lines)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
