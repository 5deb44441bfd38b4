//! The durability drill: a real child process puts and acknowledges events on the embedded bus
//! and is killed with SIGKILL in the middle of it, three times over on one data directory.
//! Afterwards every put the bus answered is there exactly once, and nothing acknowledged
//! comes back.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use choreo_bus::api::ReceiveOptions;
use choreo_bus::{Clock, Config, EmbeddedBus, Inboxes, ManualClock, SystemClock};

/// One life of the load: runs it until it has answered `puts` puts and `acks` acks, kills it,
/// and answers every complete line it wrote.
fn run_until_killed(dir: &std::path::Path, puts: usize, acks: usize) -> Vec<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bus_drill"))
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bus_drill");
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let (mut lines, mut seen_puts, mut seen_acks) = (Vec::new(), 0, 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut line = String::new();
    while seen_puts < puts || seen_acks < acks {
        line.clear();
        let n = reader.read_line(&mut line).unwrap();
        if n == 0 || Instant::now() > deadline {
            let _ = child.kill();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("bus_drill stopped early or stalled after {seen_puts} puts, {seen_acks} acks: {err}");
        }
        if line.starts_with("put ") {
            seen_puts += 1;
        } else if line.starts_with("ack ") {
            seen_acks += 1;
        }
        lines.push(line.clone());
    }
    child.kill().expect("SIGKILL bus_drill"); // std's kill is SIGKILL on Unix
    child.wait().unwrap();
    // What it wrote before dying is still in the pipe.
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    lines.extend(rest.split_inclusive('\n').map(str::to_owned));
    lines.into_iter().filter(|l| l.ends_with('\n')).map(|l| l.trim_end().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_puts_survive_sigkill_exactly_once_and_acked_deliveries_never_return() {
    let dir = tempfile::tempdir().unwrap();
    let mut put = BTreeSet::new();
    let mut acked = BTreeSet::new();
    let mut acking = BTreeSet::new();
    for (puts, acks) in [(300, 100), (700, 250), (1200, 400)] {
        for line in run_until_killed(dir.path(), puts, acks) {
            match line.split_once(' ') {
                Some(("put", id)) => assert!(put.insert(id.to_owned()), "the bus gave out id {id} twice"),
                Some(("ack", id)) => {
                    acked.insert(id.to_owned());
                }
                Some(("acking", id)) => {
                    acking.insert(id.to_owned());
                }
                _ => panic!("unexpected line {line:?}"),
            }
        }
    }
    // Reopen after the last kill, an hour later: whatever the dead consumers held is visible.
    let clock = ManualClock::new(SystemClock.now() + chrono::Duration::hours(1));
    let bus = EmbeddedBus::open(Config::new(dir.path()).with_clock(clock)).unwrap();
    let mut remaining: BTreeMap<String, usize> = BTreeMap::new();
    let options =
        ReceiveOptions { max_messages: 10, visibility_timeout: Duration::from_secs(3600), wait_time: Duration::ZERO };
    loop {
        let got = bus.receive("drill", options).await.unwrap();
        if got.is_empty() {
            break;
        }
        for m in got {
            *remaining.entry(m.event().unwrap().event.id.unwrap()).or_default() += 1;
            bus.ack("drill", &m.receipt).await.unwrap();
        }
    }
    assert!(put.len() >= 2200 && acked.len() >= 750, "{} puts, {} acks", put.len(), acked.len());
    let twice: Vec<_> = remaining.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "events stored more than once: {twice:?}");
    let returned: Vec<_> = remaining.keys().filter(|id| acked.contains(*id)).collect();
    assert!(returned.is_empty(), "{} acknowledged deliveries came back: {returned:?}", returned.len());
    // An event may be gone without an `ack` line only if a consumer was acking it when killed.
    let lost: Vec<_> = put.iter().filter(|id| !acking.contains(*id) && !remaining.contains_key(*id)).collect();
    assert!(lost.is_empty(), "{} acknowledged puts were lost: {lost:?}", lost.len());
    let cut_short = acking.iter().filter(|id| !acked.contains(*id) && !remaining.contains_key(*id)).count();
    // Each of the 2 consumers of bus_drill acks one message at a time: at most one each per kill.
    assert!(cut_short <= 3 * 2, "{cut_short} acks cut short by 3 kills of 2 sequential consumers");
    eprintln!(
        "drill: {} puts answered, {} acks answered, {} left in the inbox after 3 kills",
        put.len(),
        acked.len(),
        remaining.len()
    );
}
