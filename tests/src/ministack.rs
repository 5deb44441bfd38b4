//! A real AWS-compatible server for the AWS path's tests: ministack (PyPI), started on a free
//! loopback port for one test and stopped when dropped. `.ci/test` installs it in a virtualenv
//! and names it in `CHOREO_MINISTACK`; otherwise `ministack` is looked for on the `PATH`.
//!
//! Where it is not installed, a test run under CI fails (a test that skips itself there would
//! hide the AWS path); a developer's plain `cargo test` says so on stderr and skips.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use choreo_bus::Inboxes;
use choreo_bus::api::{Message, ReceiveOptions};

/// How long the server may take to say it is ready.
const STARTUP: Duration = Duration::from_secs(60);

/// The region the tests use; ministack answers in any.
pub const REGION: &str = "us-east-1";

pub struct Ministack {
    child: Child,
    pub endpoint: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// The server's executable, if installed.
fn executable() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHOREO_MINISTACK") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("ministack")).find(|p| p.is_file())
}

impl Ministack {
    /// Starts a server, or answers `None` (after saying why) where none is installed and this
    /// is not CI.
    pub fn start() -> Option<Ministack> {
        let Some(exe) = executable() else {
            let why = "ministack is not installed: `bash .ci/test` installs it (or `pip install ministack`, \
                       or set CHOREO_MINISTACK to its path)";
            if std::env::var_os("CI").is_some() {
                panic!("{why}");
            }
            eprintln!("SKIPPED (not CI): {why}");
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let dir = tempfile::tempdir().expect("a temp dir for the server");
        let log = dir.path().join("ministack.log");
        let out = std::fs::File::create(&log).expect("the server's log file");
        let child = Command::new(&exe)
            .env("GATEWAY_PORT", port.to_string())
            .env("BIND_HOST", "127.0.0.1")
            .env("LOG_LEVEL", "WARNING")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("the log file again"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        let mut server = Ministack { child, endpoint: format!("http://127.0.0.1:{port}"), log, _dir: dir };
        server.wait_ready(port);
        Some(server)
    }

    /// Asks the health endpoint until it answers 200, the process still running.
    fn wait_ready(&mut self, port: u16) {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("ministack exited ({status}) before it was ready:\n{}", self.log_text());
            }
            if health(port) {
                return;
            }
            assert!(started.elapsed() < STARTUP, "ministack not ready in {STARTUP:?}:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the server wrote so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An SDK configuration for this server: its endpoint, a region, static test credentials.
    pub fn sdk_config(&self) -> SdkConfig {
        Self::sdk_config_for(&self.endpoint, Region::new(REGION))
    }

    /// An SDK configuration for a server at `endpoint` (running or not), with static test
    /// credentials.
    pub fn sdk_config_for(endpoint: &str, region: Region) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(region)
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "test",
                "test",
                None,
                None,
                "choreo-tests",
            )))
            .endpoint_url(endpoint)
            .build()
    }
}

impl Ministack {
    /// The environment a child process (a Lambda function, the `choreo` binary) needs to
    /// reach this server: its endpoint, a region, static test credentials.
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ]
    }
}

/// Receives `n` messages of `inbox`, long-polling for up to 30 s (a real server delivers when
/// it delivers), hidden for a minute; fails the test with fewer.
pub async fn receive(inboxes: &dyn Inboxes, inbox: &str, n: usize) -> Vec<Message> {
    let options = ReceiveOptions {
        max_messages: 10,
        wait_time: Duration::from_secs(1),
        visibility_timeout: Duration::from_secs(60),
    };
    let mut got = Vec::new();
    let started = Instant::now();
    while got.len() < n && started.elapsed() < Duration::from_secs(30) {
        got.extend(inboxes.receive(inbox, options).await.unwrap());
    }
    assert_eq!(got.len(), n, "{inbox}: messages received");
    got
}

impl Drop for Ministack {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn health(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /_ministack/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = [0u8; 16];
    matches!(stream.read(&mut answer), Ok(n) if answer[..n].starts_with(b"HTTP/1.1 200"))
}
