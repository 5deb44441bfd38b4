//! `choreo replay` and `choreo dlq` on the data of a real `choreo demo` run: what they print
//! for scripts, every refusal with its precise message and exit code 3 (and nothing moved), a
//! redrive to an agent that was removed, and a replay cancelled mid-way left consistent.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use choreo_bus::api::{Failure, ReceiveOptions, ReplaySpec, ReplayState};
use choreo_bus::{Bus, Config, EmbeddedBus, Inboxes};
use choreo_schemas::eventbridge::PutEventsEntry;
use choreo_tests::{Run, choreo, run_command};
use chrono::Utc;
use serde_json::Value;

/// A data directory where the demo ran the seeded case; answers it and the case id.
fn demo() -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = choreo().args(["demo", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "choreo demo failed: {}", String::from_utf8_lossy(&out.stderr));
    let data = dir.path().join("demo");
    let store = rusqlite::Connection::open(data.join("agents.db")).unwrap();
    let case: String = store.query_row("SELECT correlation_id FROM case_events LIMIT 1", [], |r| r.get(0)).unwrap();
    (dir, data, case)
}

fn ops(data: &Path, args: &[&str]) -> Run {
    run_command(choreo().args(args).arg("--data-dir").arg(data), b"")
}

async fn state(data: &Path) -> (Vec<String>, usize, Vec<(String, u64)>) {
    let bus = EmbeddedBus::open(Config::new(data)).unwrap();
    let replays = bus.list_replays().await.unwrap().into_iter().map(|r| r.name).collect();
    let rules = bus.list_rules().await.unwrap().len();
    let inboxes = bus.list_inboxes().await.unwrap().into_iter().map(|i| (i.name, i.visible + i.hidden)).collect();
    (replays, rules, inboxes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_precisely_and_moves_nothing() {
    let (_dir, data, case) = demo();
    let before = state(&data).await;
    let taken = ops(&data, &["replay", "start", "--agent", "payments", "--case", &case, "--name", "taken", "--json"]);
    assert_eq!(taken.code, Some(0), "{taken:?}");
    let after_one = state(&data).await;
    assert_eq!(after_one.0, ["taken"]);
    let cases: [(&[&str], &str); 12] = [
        (&["replay", "start", "--agent", "nobody", "--since", "1h"], "unknown agent `nobody` (agents: "),
        (&["replay", "start", "--rule", "nope", "--since", "1h"], "rule `nope` does not exist (rules: "),
        (
            &["replay", "start", "--agent", "payments", "--archive", "nope", "--since", "1h"],
            "archive `nope` does not exist",
        ),
        (&["replay", "start", "--agent", "payments", "--case", "no-such-case"], "unknown case `no-such-case`"),
        (
            &[
                "replay",
                "start",
                "--agent",
                "payments",
                "--from",
                "2099-01-01T00:00:00Z",
                "--to",
                "2099-01-02T00:00:00Z",
            ],
            "in the future",
        ),
        (
            &[
                "replay",
                "start",
                "--agent",
                "payments",
                "--from",
                "2026-01-02T00:00:00Z",
                "--to",
                "2026-01-01T00:00:00Z",
            ],
            "the window is reversed",
        ),
        (
            &["replay", "start", "--agent", "payments", "--case", &case, "--name", "taken"],
            "replay `taken` already exists",
        ),
        (&["replay", "start", "--agent", "payments"], "give the window's start"),
        (&["replay", "describe", "nope"], "replay `nope` does not exist"),
        (
            &["replay", "cancel", "taken"],
            "replay `taken` is COMPLETED; only a STARTING or RUNNING replay can be cancelled",
        ),
        (
            &["dlq", "show", "agent-payments-dlq/999"],
            "message `agent-payments-dlq/999` is not in inbox `agent-payments-dlq`",
        ),
        (&["dlq", "redrive", "--agent", "nobody"], "unknown agent `nobody`"),
    ];
    for (args, expected) in cases {
        let out = ops(&data, args);
        assert_eq!(out.code, Some(3), "{args:?}: {out:?}");
        assert!(out.stderr.contains(expected), "{args:?}: expected {expected:?} in {}", out.stderr);
    }
    assert_eq!(state(&data).await, after_one, "a refusal moved something");
    assert_eq!(before.1, after_one.1, "the case replay's temporary rule is gone");
    let empty = tempfile::tempdir().unwrap();
    let none = ops(empty.path(), &["replay", "list"]);
    assert_eq!(none.code, Some(3));
    assert!(none.stderr.contains("holds no bus"), "{none:?}");
    assert!(!empty.path().join("bus.db").exists(), "an operation created a bus");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_are_listed_and_described_for_scripts() {
    let (_dir, data, case) = demo();
    // What support would get: the request and the completions it waits for, each handled.
    let dry = ops(&data, &["replay", "start", "--agent", "support", "--case", &case, "--dry-run", "--json"]);
    let planned: Value = serde_json::from_str(&dry.stdout).unwrap();
    let types: Vec<&str> = planned["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(types.contains(&"OrderSupportPlaced") && types.contains(&"PaymentIssueResolved"), "{types:?}");
    assert!(!types.contains(&"SupportTriaged"), "support does not subscribe to its own completion: {types:?}");
    let deliveries = types.len();
    let text = ops(&data, &["replay", "start", "--agent", "support", "--case", &case, "--dry-run"]);
    assert!(text.stdout.contains(&format!("{deliveries} deliveries. Nothing was moved.")), "{}", text.stdout);
    assert_eq!(text.stdout.matches("handled already").count(), deliveries, "{}", text.stdout);

    let started = ops(&data, &["replay", "start", "--agent", "support", "--case", &case, "--name", "again", "--json"]);
    assert_eq!(started.code, Some(0), "{started:?}");
    let done: Value = serde_json::from_str(&started.stdout).unwrap();
    assert_eq!(done["State"], "COMPLETED");
    assert_eq!(done["Deliveries"], deliveries, "as the dry run said: {done}");
    let listed: Value = serde_json::from_str(&ops(&data, &["replay", "list", "--json"]).stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["ReplayName"], "again");
    assert_eq!(listed[0]["FilterArns"], serde_json::json!(["replay.again.0"]));
    let text = ops(&data, &["replay", "describe", "again"]);
    assert!(text.stdout.starts_with("replay again COMPLETED: "), "{}", text.stdout);
    assert!(text.stdout.contains("archive: choreo"), "{}", text.stdout);
    let inbox: Vec<String> = {
        let bus = EmbeddedBus::open(Config::new(&data)).unwrap();
        let messages = bus.peek("agent-support", None, 100).await.unwrap();
        messages.iter().filter_map(|m| m.event().unwrap().replay_name).collect()
    };
    assert_eq!(inbox, vec!["again".to_string(); deliveries], "support's inbox holds exactly the replayed events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_whose_agent_was_removed_is_not_redriven_and_stays() {
    let (_dir, data, _case) = demo();
    {
        let bus = EmbeddedBus::open(Config::new(&data)).unwrap();
        // Payments' triage event once more, failed for good, then the agent removed.
        let archived =
            bus.archived_events("choreo", chrono::DateTime::UNIX_EPOCH, Utc::now(), None, 1000).await.unwrap();
        let triaged: Value = archived
            .iter()
            .map(|e| serde_json::from_str::<Value>(&e.body).unwrap())
            .find(|e| e["detail-type"] == "SupportTriaged")
            .unwrap();
        let entry = PutEventsEntry {
            source: triaged["source"].as_str().unwrap().into(),
            detail_type: "SupportTriaged".into(),
            detail: triaged["detail"].to_string(),
            time: None,
            resources: Vec::new(),
            event_bus_name: None,
            trace_header: None,
        };
        assert_eq!(bus.put_events(vec![entry]).await.unwrap().failed_entry_count, 0);
        let got = bus.receive("agent-payments", ReceiveOptions::default()).await.unwrap();
        assert_eq!(got.len(), 1);
        bus.nack("agent-payments", &got[0].receipt, Failure::permanent("TOOL_BROKEN", "drill")).await.unwrap();
        bus.remove_targets("agent-payments", &["agent-payments".into()]).await.unwrap();
    }
    let listed = ops(&data, &["dlq", "list", "--agent", "payments"]);
    assert!(listed.stdout.contains("TOOL_BROKEN"), "{listed:?}");
    let out = ops(&data, &["dlq", "redrive", "--agent", "payments"]);
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(out.stderr.contains("no rule sends to inbox `agent-payments` any more"), "{}", out.stderr);
    assert!(out.stderr.contains("Nothing was moved"), "{}", out.stderr);
    let still: Value =
        serde_json::from_str(&ops(&data, &["dlq", "list", "--agent", "payments", "--json"]).stdout).unwrap();
    assert_eq!(still.as_array().unwrap().len(), 1, "the dead letter stays");
    let shown = ops(&data, &["dlq", "show", still[0]["message_id"].as_str().unwrap()]);
    assert!(shown.stdout.contains("error: TOOL_BROKEN drill"), "{}", shown.stdout);
    assert!(shown.stdout.contains("\"SupportTriaged\""), "{}", shown.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_cancelled_mid_way_stops_between_batches_with_what_it_sent_delivered_once() {
    let (_dir, data, _case) = demo();
    // One archived event per transaction, over many copies of the case's events: long enough
    // to be cancelled while it runs.
    let mut config = Config::new(&data);
    config.replay_batch = 1;
    let bus = EmbeddedBus::open(config).unwrap();
    let archived = bus.archived_events("choreo", chrono::DateTime::UNIX_EPOCH, Utc::now(), None, 1000).await.unwrap();
    let entries: Vec<PutEventsEntry> = archived
        .iter()
        .map(|e| serde_json::from_str::<Value>(&e.body).unwrap())
        .map(|e| PutEventsEntry {
            source: e["source"].as_str().unwrap().into(),
            detail_type: e["detail-type"].as_str().unwrap().into(),
            detail: e["detail"].to_string(),
            time: None,
            resources: Vec::new(),
            event_bus_name: None,
            trace_header: None,
        })
        .collect();
    for _ in 0..200 {
        for chunk in entries.chunks(10) {
            bus.put_events(chunk.to_vec()).await.unwrap();
        }
    }
    // Support's inbox: nothing consumes it once the demo has ended.
    let inbox = "agent-support";
    let waiting = |bus: &EmbeddedBus| {
        let bus = bus.clone();
        async move { bus.list_inboxes().await.unwrap().into_iter().find(|i| i.name == inbox).map_or(0, |i| i.visible) }
    };
    let before = waiting(&bus).await;
    let spec = ReplaySpec {
        name: "long".into(),
        archive: "choreo".into(),
        event_start_time: chrono::DateTime::UNIX_EPOCH,
        event_end_time: Utc::now(),
        rules: Some(BTreeSet::from(["agent-support".to_string()])),
        description: None,
    };
    let started = bus.start_replay(spec).await.unwrap();
    assert!(started.events_total > 1000, "{started:?}");
    // Cancelled once it is under way.
    while bus.describe_replay("long").await.unwrap().events_replayed == 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(bus.cancel_replay("long").await.unwrap(), ReplayState::Cancelling);
    bus.wait_replays().await.unwrap();
    let replay = bus.describe_replay("long").await.unwrap();
    assert_eq!(replay.state, ReplayState::Cancelled, "{replay:?}");
    assert!(0 < replay.events_replayed && replay.events_replayed < replay.events_total, "{replay:?}");
    let sent = waiting(&bus).await - before;
    assert_eq!(sent, replay.deliveries, "every delivery counted is in the inbox, once");
    let replayed = bus
        .peek(inbox, None, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.event().unwrap().replay_name.as_deref() == Some("long"))
        .count() as u64;
    assert_eq!(replayed, replay.deliveries, "the replayed messages are those counted");
    let out = ops(&data, &["replay", "describe", "long", "--json"]);
    let described: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(described["State"], "CANCELLED");
    assert_eq!(described["Deliveries"], replay.deliveries);
}
