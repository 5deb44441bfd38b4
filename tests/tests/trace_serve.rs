//! `choreo trace` beside a running `choreo serve`: it reads the stores read-only while the
//! server writes them, and after a graceful stop the whole case is there, every run ended and
//! every notification the customer acknowledged marked so.

mod trace_common;

use choreo_tests::customer::{close, connect, submit, until_case_ends};
use choreo_tests::served::Served;
use std::time::{Duration, Instant};

use serde_json::Value;
use trace_common::trace;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_reads_a_case_while_choreo_serve_runs_and_all_of_it_after_the_stop() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path());
    let token = served.customer_token("c-1001");
    let mut socket = connect(&served, &token, None).await;
    let message = "I was charged twice, and only the headphones arrived. I need it all by tomorrow.";
    let (status, accepted) = submit(&served, &token, "trace-1", "o-1001", message).await;
    assert_eq!(status, 202, "{accepted}");
    let case = accepted["case_id"].as_str().expect("a case id").to_owned();
    let seen = until_case_ends(&mut socket, &case).await;

    // The server is running: its writers hold the stores, the trace only reads them. The
    // journal commits a run's steps within its linger (README: a running case's trace may lag
    // 50 ms), after the customer may have been told: the trace is read until the first run is
    // there, the whole of it after the stop below.
    let deadline = Instant::now() + Duration::from_secs(30);
    let live = loop {
        let live = trace(dir.path(), &[&case]);
        if live.code != Some(0) || live.stdout.contains("support ← delivery 1 · done") || Instant::now() > deadline {
            break live;
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    assert_eq!(live.code, Some(0), "{}", live.stderr);
    assert!(live.stdout.contains(&format!("● OrderSupportPlaced {case} · from retail.support-api")), "{}", live.stdout);
    assert!(live.stdout.contains("support ← delivery 1 · done"), "{}", live.stdout);
    assert!(live.stdout.contains("● SupportTriaged"), "{}", live.stdout);
    assert!(live.stdout.contains("c-1001 #1 "), "{}", live.stdout);

    close(socket).await;
    let (code, lines) = served.stop();
    assert_eq!(code, Some(0), "{lines:?}");

    let out = trace(dir.path(), &[&case, "--json"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    let runs: Vec<&Value> =
        doc["events"].as_array().unwrap().iter().flat_map(|e| e["runs"].as_array().unwrap()).collect();
    assert_eq!(runs.len(), 6, "{runs:#?}");
    assert!(runs.iter().all(|r| r["outcome"] == "done"), "{runs:#?}");
    let notifications = doc["notifications"].as_array().unwrap();
    assert_eq!(notifications.len(), seen.len());
    let seqs: Vec<u64> = notifications.iter().map(|n| n["seq"].as_u64().unwrap()).collect();
    let pushed: Vec<u64> = seen.iter().map(|n| n["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, pushed);
    assert!(notifications.iter().all(|n| n["acked"] == true), "{notifications:#?}");
}
