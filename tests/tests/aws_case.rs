//! The seeded case end to end on the AWS backend: published through EventBridge (ministack, a
//! real AWS-compatible server), matched by the agents' rules, delivered to their SQS queues,
//! handled by the same agents runtime, their completions put back on EventBridge, until the
//! case is resolved with one refund. Observed as any subscriber would: a rule and a queue.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use choreo_bus::api::{ReceiveOptions, RuleSpec, Target};
use choreo_bus::{AwsBus, AwsConfig, Bus, Inboxes};
use choreo_consumers::local::{Local, Options, SupportRequest};
use choreo_schemas::Envelope;
use choreo_tests::agents::SEEDED_CASE_EVENTS;
use choreo_tests::ministack::Ministack;
use chrono::NaiveDate;

const DEADLINE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeded_case_is_resolved_through_eventbridge_and_sqs_with_one_refund() {
    let Some(server) = Ministack::start() else { return };
    let bus = AwsBus::ensure_with(&server.sdk_config(), AwsConfig::new("choreo-case")).await.expect("connect");
    let bus = Arc::new(bus);
    let dir = tempfile::tempdir().unwrap();
    let local = Local::start_on(Options::new(dir.path()), bus.clone()).await.expect("start on AWS");

    // Each agent's rule and queue are on EventBridge and SQS, as the manifests say.
    let rules: BTreeSet<String> = bus.list_rules().await.unwrap().into_iter().map(|r| r.name).collect();
    for agent in ["agent-support", "agent-payments", "agent-orders", "agent-inventory"] {
        assert!(rules.contains(agent), "{agent} in {rules:?}");
    }
    bus.put_rule(RuleSpec::new("watch", r#"{"detail": {"specversion": ["1.0"]}}"#)).await.unwrap();
    bus.put_targets("watch", vec![Target::new("watch", "watch")]).await.unwrap();

    let placed = local.submit(&SupportRequest::seeded(NaiveDate::from_ymd_opt(2026, 12, 3).unwrap())).await.unwrap();
    let case = placed.id().to_owned();
    let mut events: BTreeMap<String, Envelope> = BTreeMap::new();
    let started = tokio::time::Instant::now();
    while !events.values().any(|e| e.event_type() == "OrderSupportCompleted") {
        assert!(started.elapsed() < DEADLINE, "not resolved in {DEADLINE:?}: {:?}", types(&events));
        let options = ReceiveOptions {
            max_messages: 10,
            wait_time: Duration::from_secs(1),
            visibility_timeout: Duration::from_secs(30),
        };
        for message in bus.receive("watch", options).await.unwrap() {
            let envelope = message.event().unwrap().to_delivery().unwrap().envelope;
            bus.ack("watch", &message.receipt).await.unwrap();
            if envelope.correlation_id() == Some(case.as_str()) {
                events.insert(envelope.id().to_owned(), envelope);
            }
        }
    }
    let backoffice = local.services.backoffice.clone();
    local.shutdown().await;

    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for e in events.values() {
        *by_type.entry(e.event_type()).or_default() += 1;
    }
    // Exactly one of each: the request, the triage, the three agents' answers, the final one.
    let expected = SEEDED_CASE_EVENTS;
    assert_eq!(by_type, expected.into_iter().map(|t| (t, 1)).collect(), "the case's events");
    let refunds = backoffice.refunds("o-1001").unwrap();
    assert_eq!(refunds.len(), 1, "one refund of the duplicate charge: {refunds:?}");
    assert_eq!(refunds[0].charge_id, "ch-1001-b");
    // Every event of the case went through the agents' queues and nothing was left there.
    for inbox in bus.list_inboxes().await.unwrap() {
        if inbox.name.ends_with("-dlq") {
            assert_eq!(inbox.visible + inbox.hidden, 0, "dead letters in {}", inbox.name);
        }
    }
}

fn types(events: &BTreeMap<String, Envelope>) -> Vec<&str> {
    events.values().map(Envelope::event_type).collect()
}
