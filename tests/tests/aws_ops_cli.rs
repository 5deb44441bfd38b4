//! `choreo dlq` and `choreo replay` with `--backend aws`, against ministack's EventBridge and
//! SQS. Dead letters: the dead-letter queues listed with their counts, one agent's dead letters
//! with their reasons, one shown, redriven by id to the agent's queue, the rest purged; an
//! unknown agent and a bus that does not exist are precise errors with exit code 3, nothing
//! moved. Replays: a window of the archive replayed to one agent, followed to COMPLETED, listed
//! and described; `--case` and `--dry-run`, which need an archive's events listed (EventBridge
//! cannot), refused with the reason.

use choreo_bus::api::{ArchiveSpec, Failure, NackOutcome, RuleSpec, Target};
use choreo_bus::{AwsBus, AwsConfig, Bus, Inboxes};
use choreo_schemas::eventbridge::PutEventsEntry;
use choreo_tests::ministack::{Ministack, receive};
use choreo_tests::{Run, run_command};
use serde_json::{Value, json};

const BUS: &str = "choreo-dlq-cli";

fn dlq(server: &Ministack, args: &[&str]) -> Run {
    on_aws(server, "dlq", BUS, args)
}

/// `choreo <command> --backend aws --bus <bus> --endpoint-url <server> <args…>`.
fn on_aws(server: &Ministack, command: &str, bus: &str, args: &[&str]) -> Run {
    let mut cmd = choreo_tests::choreo();
    cmd.args([command, "--backend", "aws", "--bus", bus, "--endpoint-url", &server.endpoint]).args(args);
    for (k, v) in [("AWS_REGION", "us-east-1"), ("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test")] {
        cmd.env(k, v);
    }
    cmd.env_remove("AWS_PROFILE").env_remove("CHOREO_BUS").env_remove("CHOREO_QUEUE_PREFIX");
    run_command(&mut cmd, b"")
}

/// A `SupportTriaged` CloudEvent per case, as PutEvents entries.
fn triaged(cases: &[&str]) -> Vec<PutEventsEntry> {
    cases
        .iter()
        .map(|case| PutEventsEntry {
            source: "agents.support".into(),
            detail_type: "SupportTriaged".into(),
            detail: json!({"specversion": "1.0", "id": format!("ev-{case}"), "source": "agents.support",
                "type": "SupportTriaged", "correlationid": case, "data": {"order_id": "o-1001"}})
            .to_string(),
            time: None,
            resources: Vec::new(),
            event_bus_name: None,
            trace_header: None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_on_sqs_are_listed_shown_redriven_and_purged() {
    let Some(server) = Ministack::start() else { return };
    let bus = AwsBus::ensure_with(&server.sdk_config(), AwsConfig::new(BUS)).await.unwrap();
    bus.put_rule(RuleSpec::new("agent-payments", r#"{"detail-type": ["SupportTriaged"]}"#)).await.unwrap();
    bus.put_targets("agent-payments", vec![Target::new("agent-payments", "agent-payments")]).await.unwrap();
    bus.put_events(triaged(&["case-1", "case-2"])).await.unwrap();
    for m in receive(&bus, "agent-payments", 2).await {
        let failed =
            bus.nack("agent-payments", &m.receipt, Failure::permanent("TOOL_BROKEN", "refunds are down")).await;
        assert!(matches!(failed.unwrap(), NackOutcome::DeadLettered { .. }));
    }

    let out = dlq(&server, &["list"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.lines().any(|l| l.starts_with("agent-payments-dlq") && l.contains(" 2 ")), "{}", out.stdout);

    let out = dlq(&server, &["list", "--agent", "payments", "--json"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let listed: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed.iter().all(|e| e["error_code"] == "TOOL_BROKEN" && e["source_inbox"] == "agent-payments"),
        "{listed:?}"
    );
    let id = |case: &str| {
        listed.iter().find(|e| e["correlation_id"] == case).unwrap()["message_id"].as_str().unwrap().to_owned()
    };
    let (one, two) = (id("case-1"), id("case-2"));
    assert!(one.starts_with("agent-payments-dlq/"), "{one}");

    let out = dlq(&server, &["show", &one]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("TOOL_BROKEN") && out.stdout.contains("refunds are down"), "{}", out.stdout);

    // Redriven by id: back in the agent's queue; the other stays.
    let out = dlq(&server, &["redrive", &one, "--json"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let moved: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!((moved.len(), moved[0]["inbox"].as_str()), (1, Some("agent-payments")));
    let back = receive(&bus, "agent-payments", 1).await;
    assert_eq!(back[0].event().unwrap().to_delivery().unwrap().envelope.correlation_id(), Some("case-1"));
    bus.ack("agent-payments", &back[0].receipt).await.unwrap();

    // Bad input: precise, exit 3, nothing moved.
    let out = dlq(&server, &["redrive", "--agent", "refunds"]);
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    assert!(out.stderr.contains("unknown agent `refunds`"), "{}", out.stderr);
    let missing = "agent-payments-dlq/00000000-0000-0000-0000-000000000000";
    let out = dlq(&server, &["redrive", &two, missing]);
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    assert!(out.stderr.contains(missing), "{}", out.stderr);
    let mut cmd = choreo_tests::choreo();
    cmd.args(["dlq", "list", "--backend", "aws", "--bus", "no-such-bus", "--endpoint-url", &server.endpoint]);
    cmd.env("AWS_REGION", "us-east-1").env("AWS_ACCESS_KEY_ID", "test").env("AWS_SECRET_ACCESS_KEY", "test");
    let out = run_command(&mut cmd, b"");
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("no-such-bus") && out.stderr.contains("does not exist"), "{}", out.stderr);

    // Purged, after the confirmation asked with --yes.
    let out = dlq(&server, &["purge", "--all", "--yes"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("1 message(s) purged"), "{}", out.stdout);
    let out = dlq(&server, &["list", "--agent", "payments"]);
    assert!(out.stdout.contains("no dead letters"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_of_the_archive_is_replayed_to_one_agent_on_eventbridge() {
    let Some(server) = Ministack::start() else { return };
    let name = "choreo-replay-cli";
    let bus = AwsBus::ensure_with(&server.sdk_config(), AwsConfig::new(name)).await.unwrap();
    bus.put_rule(RuleSpec::new("agent-payments", r#"{"detail-type": ["SupportTriaged"]}"#)).await.unwrap();
    bus.put_targets("agent-payments", vec![Target::new("agent-payments", "agent-payments")]).await.unwrap();
    bus.create_archive(ArchiveSpec::new("choreo")).await.unwrap();
    bus.put_events(triaged(&["case-r1", "case-r2"])).await.unwrap();
    for m in receive(&bus, "agent-payments", 2).await {
        bus.ack("agent-payments", &m.receipt).await.unwrap();
    }

    let replay = |args: &[&str]| on_aws(&server, "replay", name, args);
    let out =
        replay(&["start", "--agent", "payments", "--since", "10m", "--name", "payments-again", "--timeout", "60"]);
    assert_eq!(out.code, Some(0), "stdout: {}\nstderr: {}", out.stdout, out.stderr);
    assert!(out.stdout.contains("replay payments-again started: archive choreo"), "{}", out.stdout);
    assert!(out.stdout.contains("COMPLETED"), "{}", out.stdout);
    let again = receive(&bus, "agent-payments", 2).await;
    assert!(again.iter().all(|m| m.event().unwrap().replay_name.as_deref() == Some("payments-again")));

    let out = replay(&["list", "--json"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let listed: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(listed.iter().map(|r| r["ReplayName"].as_str().unwrap()).collect::<Vec<_>>(), ["payments-again"]);
    assert_eq!(listed[0]["State"], "COMPLETED");
    let out = replay(&["describe", "payments-again"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("COMPLETED"), "{}", out.stdout);

    for refused in [["--case", "case-r1"], ["--dry-run", "--json"]] {
        let mut args = vec!["start", "--agent", "payments", "--since", "10m"];
        args.extend(refused);
        let out = replay(&args);
        assert_eq!(out.code, Some(3), "{}", out.stderr);
        assert!(out.stderr.contains("needs the embedded backend"), "{}", out.stderr);
    }
    let out = replay(&["start", "--agent", "refunds", "--since", "10m"]);
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    assert!(out.stderr.contains("unknown agent `refunds`"), "{}", out.stderr);
}
