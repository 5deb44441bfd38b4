//! The AWS backend (`AwsBus`: EventBridge + SQS through the AWS SDK) against a real
//! AWS-compatible server, ministack, started for each test. The same assertions run on the
//! embedded bus where they are about behaviour both must share (`both`), so the two backends
//! are held to one contract. Where the server lacks a feature, the test says so on stderr and
//! asserts what the server does instead, rather than skipping quietly.

use std::collections::BTreeSet;
use std::time::Duration;

use choreo_bus::api::{
    ArchiveSpec, EntryResult, ErrorCode, ExhaustedCondition, Failure, Message, NackOutcome, ReceiveOptions, ReplaySpec,
    ReplayState, RetryPolicy, RuleSpec, RuleState, Target,
};
use choreo_bus::{AwsBus, AwsConfig, Bus, BusError, Config, EmbeddedBus, Inboxes};
use choreo_schemas::eventbridge::{DeliveredEvent, PutEventsEntry};
use choreo_tests::ministack::Ministack;
use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};

/// A bus on a fresh server, named after the test.
async fn aws(server: &Ministack, name: &str) -> AwsBus {
    let config = AwsConfig::new(format!("choreo-{name}"));
    AwsBus::ensure_with(&server.sdk_config(), config).await.expect("connect to ministack")
}

fn embedded() -> (EmbeddedBus, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (EmbeddedBus::open(Config::new(dir.path())).unwrap(), dir)
}

fn entry(detail_type: &str, detail: Value) -> PutEventsEntry {
    PutEventsEntry {
        source: "retail.test".into(),
        detail_type: detail_type.into(),
        detail: detail.to_string(),
        time: None,
        resources: Vec::new(),
        event_bus_name: None,
        trace_header: None,
    }
}

fn policy(retries: u32) -> RetryPolicy {
    RetryPolicy {
        maximum_retry_attempts: retries,
        maximum_event_age: Duration::from_secs(3600),
        backoff_base: Duration::from_secs(1),
        backoff_cap: Duration::from_secs(2),
    }
}

/// A rule `name` for events of `detail_type`, delivering to the inbox `name`.
async fn route(bus: &dyn Bus, name: &str, detail_type: &str, retry: RetryPolicy) {
    let pattern = json!({"detail-type": [detail_type]}).to_string();
    bus.put_rule(RuleSpec::new(name, pattern)).await.unwrap();
    bus.put_targets(name, vec![Target::new("inbox", name).with_retry_policy(retry)]).await.unwrap();
}

/// Receives until `n` messages came or `patience` ran out, long-polling: a real server
/// delivers when it delivers.
async fn receive(inboxes: &dyn Inboxes, inbox: &str, n: usize, patience: Duration) -> Vec<Message> {
    let options = ReceiveOptions {
        max_messages: 10,
        visibility_timeout: Duration::from_secs(30),
        wait_time: Duration::from_secs(1),
    };
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    while got.len() < n && started.elapsed() < patience {
        got.extend(inboxes.receive(inbox, options).await.unwrap());
    }
    got
}

/// The per-entry answers and the delivered shape, on both backends.
async fn entries_and_delivery(bus: &dyn Bus, inboxes: &dyn Inboxes) {
    route(bus, "orders", "OrderPlaced", policy(3)).await;
    let mut bad_source = entry("OrderPlaced", json!({}));
    bad_source.source = "aws.s3".into();
    let out = bus
        .put_events(vec![
            entry("OrderPlaced", json!({"order": "o-1"})),
            entry("OrderPlaced", json!(["not", "an", "object"])),
            bad_source,
            entry("", json!({})),
        ])
        .await
        .unwrap();
    assert_eq!(out.failed_entry_count, 3, "{out:?}");
    let code = |i: usize| match &out.entries[i] {
        EntryResult::Failed { error_code, error_message } => (*error_code, error_message.clone()),
        other => panic!("entry {i} was accepted: {other:?}"),
    };
    assert!(out.entries[0].event_id().is_some());
    assert_eq!(code(1).0, ErrorCode::MalformedDetail);
    assert!(code(1).1.contains("Entries[1].Detail must be a JSON object, got an array"), "{}", code(1).1);
    assert_eq!(code(2).0, ErrorCode::NotAuthorizedForSourceException);
    assert_eq!(code(3).0, ErrorCode::InvalidArgument);
    assert!(code(3).1.contains("DetailType is required"), "{}", code(3).1);

    let got = receive(inboxes, "orders", 1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1, "the one valid entry is delivered once");
    let delivered: DeliveredEvent = got[0].event().expect("an EventBridge event");
    assert_eq!(delivered.event.detail_type, "OrderPlaced");
    assert_eq!(delivered.event.source, "retail.test");
    assert_eq!(delivered.event.detail, json!({"order": "o-1"}));
    assert_eq!(delivered.replay_name, None);
    assert_eq!(got[0].receive_count, 1);
    inboxes.ack("orders", &got[0].receipt).await.unwrap();
    let options =
        ReceiveOptions { max_messages: 10, visibility_timeout: Duration::from_secs(30), wait_time: Duration::ZERO };
    assert!(inboxes.receive("orders", options).await.unwrap().is_empty(), "an acked message is gone");
}

#[tokio::test]
async fn entries_are_answered_one_by_one_and_delivered_in_eventbridge_s_shape() {
    let (local, _dir) = embedded();
    entries_and_delivery(&local, &local).await;
    let Some(server) = Ministack::start() else { return };
    let bus = aws(&server, "entries").await;
    entries_and_delivery(&bus, &bus).await;
}

/// Rules and targets: read back as written, disabled and enabled, deleted only without targets.
async fn rules_round_trip(bus: &dyn Bus, inboxes: &dyn Inboxes) {
    let pattern = json!({"detail-type": ["SupportTriaged"], "detail": {"data": {"issues": ["duplicate_charge"]}}});
    let mut spec = RuleSpec::new("agent-payments", pattern.to_string());
    spec.description = Some("payments' subscription".into());
    bus.put_rule(spec).await.unwrap();
    let target = Target::new("payments", "agent-payments").with_retry_policy(policy(4));
    bus.put_targets("agent-payments", vec![target.clone()]).await.unwrap();

    let rule = bus.describe_rule("agent-payments").await.unwrap();
    assert_eq!(serde_json::from_str::<Value>(&rule.event_pattern).unwrap(), pattern);
    assert_eq!(rule.state, RuleState::Enabled);
    assert_eq!(rule.description.as_deref(), Some("payments' subscription"));
    assert_eq!(rule.targets, vec![target], "the target, its retry policy and dead-letter inbox read back");
    assert!(rule.arn.ends_with("/agent-payments"), "{}", rule.arn);
    assert_eq!(bus.list_rules().await.unwrap().iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["agent-payments"]);

    let triaged = || entry("SupportTriaged", json!({"data": {"issues": ["duplicate_charge"]}}));
    bus.disable_rule("agent-payments").await.unwrap();
    bus.put_events(vec![triaged()]).await.unwrap();
    bus.enable_rule("agent-payments").await.unwrap();
    let put = bus.put_events(vec![triaged()]).await.unwrap();
    let got = receive(inboxes, "agent-payments", 2, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1, "only the event put while the rule was enabled");
    assert_eq!(got[0].event().unwrap().event.id.as_deref(), put.entries[0].event_id());

    match bus.delete_rule("agent-payments").await {
        Err(BusError::RuleHasTargets { rule, targets: 1 }) => assert_eq!(rule, "agent-payments"),
        other => panic!("a rule with a target was deleted: {other:?}"),
    }
    bus.remove_targets("agent-payments", &["payments".into()]).await.unwrap();
    bus.delete_rule("agent-payments").await.unwrap();
    assert!(
        matches!(bus.describe_rule("agent-payments").await, Err(BusError::RuleNotFound(r)) if r == "agent-payments")
    );
    let invalid = bus.put_rule(RuleSpec::new("bad", r#"{"detail-type": "not-an-array"}"#)).await;
    assert!(matches!(invalid, Err(BusError::InvalidPattern { .. })), "{invalid:?}");
}

#[tokio::test]
async fn rules_and_targets_read_back_as_written() {
    let (local, _dir) = embedded();
    rules_round_trip(&local, &local).await;
    assert!(matches!(local.enable_rule("nope").await, Err(BusError::RuleNotFound(_))));
    let Some(server) = Ministack::start() else { return };
    let bus = aws(&server, "rules").await;
    rules_round_trip(&bus, &bus).await;
    // EventBridge answers ResourceNotFoundException (made `RuleNotFound`); ministack enables a
    // missing rule without a word (a gap of that server), so what it did is reported.
    match bus.enable_rule("nope").await {
        Err(BusError::RuleNotFound(rule)) => assert_eq!(rule, "nope"),
        Ok(()) => eprintln!("ministack enabled a rule that does not exist without an error (known gap)"),
        Err(other) => panic!("enabling a missing rule: {other}"),
    }
}

#[tokio::test]
async fn a_nack_backs_off_then_dead_letters_with_eventbridge_s_reason() {
    let Some(server) = Ministack::start() else { return };
    let bus = aws(&server, "nack").await;
    route(&bus, "agent-orders", "OrderPlaced", policy(1)).await;
    bus.put_events(vec![entry("OrderPlaced", json!({"order": "o-1"})), entry("OrderPlaced", json!({"order": "o-2"}))])
        .await
        .unwrap();
    let got = receive(&bus, "agent-orders", 2, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 2);
    let (first, second) = (&got[0], &got[1]);

    // A permanent failure: dead-lettered at once, no retry condition.
    let bad = Failure::permanent("MALFORMED_EVENT", "no order id");
    let outcome = bus.nack("agent-orders", &second.receipt, bad).await.unwrap();
    assert_eq!(outcome, NackOutcome::DeadLettered { inbox: "agent-orders-dlq".into() });

    // A retryable one: back after the backoff (1 to 2 s), received a second time, then dead-
    // lettered as its retries are spent.
    let outcome = bus.nack("agent-orders", &first.receipt, Failure::retryable("TOOL", "the tool timed out")).await;
    let NackOutcome::RetryAt(at) = outcome.unwrap() else { panic!("the first failure is retried") };
    assert!(at > Utc::now() - TimeDelta::seconds(1) && at <= Utc::now() + TimeDelta::seconds(3), "{at}");
    let again = receive(&bus, "agent-orders", 1, Duration::from_secs(20)).await;
    assert_eq!(again.len(), 1, "the message came back after its backoff");
    assert_eq!(again[0].message_id, first.message_id);
    assert_eq!(again[0].receive_count, 2);
    let outcome = bus.nack("agent-orders", &again[0].receipt, Failure::retryable("TOOL", "timed out again")).await;
    assert_eq!(outcome.unwrap(), NackOutcome::DeadLettered { inbox: "agent-orders-dlq".into() });

    let dead = receive(&bus, "agent-orders-dlq", 2, Duration::from_secs(20)).await;
    assert_eq!(dead.len(), 2);
    let reason = |order: &str| {
        let m = dead.iter().find(|m| m.event().unwrap().event.detail["order"] == order).expect("its dead letter");
        (m.dead_letter.clone().expect("the reason"), m.rule.clone(), m.target.clone())
    };
    let (permanent, rule, target) = reason("o-2");
    assert_eq!((permanent.error_code.as_str(), permanent.error_message.as_str()), ("MALFORMED_EVENT", "no order id"));
    assert_eq!((permanent.exhausted_retry_condition, permanent.retry_attempts), (None, 0));
    assert_eq!(permanent.rule_arn, bus.rule_arn("agent-orders"));
    assert!(permanent.target_arn.ends_with(":agent-orders"), "{}", permanent.target_arn);
    assert_eq!((rule.as_str(), target.as_str()), ("agent-orders", "agent-orders"));
    let (spent, ..) = reason("o-1");
    assert_eq!(spent.error_code, "TOOL");
    assert_eq!(spent.exhausted_retry_condition, Some(ExhaustedCondition::MaximumRetryAttempts));
    assert_eq!(spent.retry_attempts, 1);

    let inboxes = bus.list_inboxes().await.unwrap();
    let names: Vec<&str> = inboxes.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["agent-orders", "agent-orders-dlq"]);
    assert_eq!((inboxes[0].visible, inboxes[0].hidden), (0, 0), "nothing left in the inbox");
}

#[tokio::test]
async fn an_archive_keeps_events_and_a_replay_re_sends_them_marked() {
    let Some(server) = Ministack::start() else { return };
    let bus = aws(&server, "replay").await;
    route(&bus, "agent-payments", "SupportTriaged", policy(3)).await;
    route(&bus, "agent-orders", "SupportTriaged", policy(3)).await;
    bus.create_archive(ArchiveSpec::new("choreo-replay-archive")).await.unwrap();
    assert!(matches!(
        bus.create_archive(ArchiveSpec::new("choreo-replay-archive")).await,
        Err(BusError::ArchiveExists(a)) if a == "choreo-replay-archive"
    ));
    let before = Utc::now() - TimeDelta::seconds(5);
    bus.put_events(vec![entry("SupportTriaged", json!({"n": 1})), entry("SupportTriaged", json!({"n": 2}))])
        .await
        .unwrap();
    for inbox in ["agent-payments", "agent-orders"] {
        let live = receive(&bus, inbox, 2, Duration::from_secs(20)).await;
        assert_eq!(live.len(), 2, "{inbox}: live deliveries");
        for m in &live {
            bus.ack(inbox, &m.receipt).await.unwrap();
        }
    }
    let archive = bus.describe_archive("choreo-replay-archive").await.unwrap();
    assert_eq!(archive.event_count, 2);
    assert_eq!(
        archive.arn,
        format!("{}:archive/choreo-replay-archive", bus.arn().rsplit_once(":event-bus/").unwrap().0)
    );

    let spec = ReplaySpec {
        name: "to-payments".into(),
        archive: "choreo-replay-archive".into(),
        event_start_time: before,
        event_end_time: Utc::now() + TimeDelta::seconds(5),
        rules: Some(BTreeSet::from(["agent-payments".to_owned()])),
        description: Some("payments missed these".into()),
    };
    let started = bus.start_replay(spec.clone()).await.unwrap();
    assert_eq!(started.rules, spec.rules, "FilterArns name the rule");
    assert_eq!(started.archive, "choreo-replay-archive");
    assert!(matches!(bus.start_replay(spec).await, Err(BusError::ReplayExists(r)) if r == "to-payments"));
    let replayed = receive(&bus, "agent-payments", 2, Duration::from_secs(20)).await;
    assert_eq!(replayed.len(), 2, "the rule named got the window again");
    for m in &replayed {
        assert_eq!(m.event().unwrap().replay_name.as_deref(), Some("to-payments"));
    }
    let described = bus.describe_replay("to-payments").await.unwrap();
    assert!(matches!(described.state, ReplayState::Running | ReplayState::Completed), "{:?}", described.state);
    assert!(matches!(bus.describe_replay("nope").await, Err(BusError::ReplayNotFound(_))));

    // EventBridge sends a replay to the rules of FilterArns only; ministack ignores FilterArns
    // (a known gap of that server): what the other rule got is reported, not relied on.
    let others = receive(&bus, "agent-orders", 2, Duration::from_secs(2)).await;
    if others.is_empty() {
        eprintln!("ministack honoured FilterArns: agent-orders got no replayed event");
    } else {
        eprintln!("ministack ignored FilterArns (known gap): agent-orders got {} replayed events too", others.len());
        assert!(others.iter().all(|m| m.event().unwrap().replay_name.as_deref() == Some("to-payments")));
    }
}

#[tokio::test]
async fn bad_input_and_missing_parts_get_precise_errors() {
    let Some(server) = Ministack::start() else { return };
    let bus = aws(&server, "bad").await;
    let options = ReceiveOptions::default();
    assert!(
        matches!(bus.receive("no-such-inbox", options).await, Err(BusError::UnknownInbox(i)) if i == "no-such-inbox")
    );
    assert!(matches!(bus.describe_archive("no-such-archive").await, Err(BusError::ArchiveNotFound(_))));
    let eleven = (0..11).map(|i| entry("X", json!({"i": i}))).collect();
    assert!(matches!(bus.put_events(eleven).await, Err(BusError::TooManyEntries { count: 11, limit: 10 })));
    let too_many = (0..6).map(|i| Target::new(format!("t{i}"), format!("inbox-{i}"))).collect();
    bus.put_rule(RuleSpec::new("wide", r#"{"source": ["x"]}"#)).await.unwrap();
    assert!(matches!(bus.put_targets("wide", too_many).await, Err(BusError::TooManyTargets { count: 6, .. })));
    // A rule EventBridge would reject: refused before the call, naming the rule, as on the
    // embedded bus; nothing is created.
    let rejected = bus.put_rule(RuleSpec::new("bad-rule", r#"{"source": [{"prefix": 1}]}"#)).await;
    assert!(matches!(&rejected, Err(BusError::InvalidPattern { rule, .. }) if rule == "bad-rule"), "{rejected:?}");
    assert!(bus.list_rules().await.unwrap().iter().all(|r| r.name != "bad-rule"));
    let bad_name = bus.create_inbox("no spaces allowed").await;
    assert!(matches!(&bad_name, Err(BusError::InvalidArgument { field, .. }) if field == "QueueName"), "{bad_name:?}");

    // A bus that does not exist: said when connecting, not at the first call.
    let missing = AwsBus::connect_with(&server.sdk_config(), AwsConfig::new("never-created")).await;
    let Err(BusError::Config(why)) = missing else { panic!("connected to a missing bus: {missing:?}") };
    assert!(why.contains("event bus `never-created` does not exist"), "{why}");

    // No region: refused before any call.
    let no_region = aws_config::SdkConfig::builder().behavior_version(aws_config::BehaviorVersion::latest()).build();
    let refused = AwsBus::connect_with(&no_region, AwsConfig::new("x")).await;
    assert!(matches!(&refused, Err(BusError::Config(why)) if why.contains("no AWS region")), "{refused:?}");

    // No credentials: refused at connect, not retried, saying so.
    let anonymous = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&server.endpoint)
        .build();
    let refused = AwsBus::connect_with(&anonymous, AwsConfig::new("choreo-bad")).await;
    let Err(e) = refused else { panic!("connected without credentials") };
    eprintln!("without credentials: {e}");
    assert!(!e.is_retryable(), "{e}");
    assert!(e.to_string().contains("NoCredentials: no usable AWS credentials"), "{e}");

    // The endpoint down: a retryable error naming the call and the resource.
    let endpoint = server.endpoint.clone();
    drop(server);
    let down = bus.put_events(vec![entry("X", json!({}))]).await;
    let Err(e @ BusError::Service(_)) = down else { panic!("a put to a stopped server: {down:?}") };
    assert!(e.is_retryable(), "{e}");
    assert!(e.to_string().starts_with("EventBridge PutEvents `choreo-bad`"), "{e} ({endpoint})");
}

/// Dead letters looked at, redriven by id and purged, on both backends: what `choreo dlq`
/// does. SQS cannot show a message without receiving it: the AWS backend receives them all
/// and releases what it does not act on.
async fn dead_letter_tools(bus: &dyn Bus, inboxes: &dyn Inboxes) {
    route(bus, "agent-pay", "PaymentDue", policy(0)).await;
    let events: Vec<PutEventsEntry> =
        (1..=3).map(|i| entry("PaymentDue", json!({"order": format!("o-{i}")}))).collect();
    bus.put_events(events).await.unwrap();
    let mut got = receive(inboxes, "agent-pay", 3, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 3);
    got.sort_by_key(|m| m.event().unwrap().event.detail["order"].as_str().unwrap().to_owned());
    for m in &got {
        let nack = inboxes.nack("agent-pay", &m.receipt, Failure::permanent("TOOL_BROKEN", "the tool is broken")).await;
        assert!(matches!(nack.unwrap(), NackOutcome::DeadLettered { .. }));
    }
    let order = |m: &Message| m.event().unwrap().event.detail["order"].as_str().unwrap().to_owned();

    // Looked at, twice, in the order they came: nothing about them changes.
    let dlq = "agent-pay-dlq";
    let seen = inboxes.peek(dlq, None, 10).await.unwrap();
    assert_eq!(seen.iter().map(order).collect::<BTreeSet<_>>(), ["o-1", "o-2", "o-3"].map(String::from).into());
    assert!(seen.windows(2).all(|w| w[0].sent_at <= w[1].sent_at), "in the order they came");
    assert!(seen.iter().all(|m| m.message_id.starts_with("agent-pay-dlq/")), "{:?}", seen[0].message_id);
    assert!(seen.iter().all(|m| m.dead_letter.as_ref().is_some_and(|d| d.error_code == "TOOL_BROKEN")));
    let again = inboxes.peek(dlq, None, 10).await.unwrap();
    let ids = |ms: &[Message]| ms.iter().map(|m| m.message_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&again), ids(&seen));
    let page = inboxes.peek(dlq, Some(&seen[0].message_id), 1).await.unwrap();
    assert_eq!(ids(&page), [seen[1].message_id.clone()]);

    // One redriven by id: back in the inbox it came from, with its event.
    let moved = inboxes.redrive(dlq, std::slice::from_ref(&seen[0].message_id)).await.unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!((moved[0].message_id.as_str(), moved[0].inbox.as_str()), (seen[0].message_id.as_str(), "agent-pay"));
    let back = receive(inboxes, "agent-pay", 1, Duration::from_secs(20)).await;
    assert_eq!(back.iter().map(order).collect::<Vec<_>>(), [order(&seen[0])]);
    assert_eq!(back[0].event().unwrap().event, seen[0].event().unwrap().event);
    inboxes.ack("agent-pay", &back[0].receipt).await.unwrap();

    // A message that is not there: named, and nothing moved.
    let missing = format!("{dlq}/no-such-message");
    let err = inboxes.redrive(dlq, &[seen[1].message_id.clone(), missing.clone()]).await.unwrap_err();
    assert!(matches!(&err, BusError::MessageNotFound { message, .. } if *message == missing), "{err}");
    assert_eq!(ids(&inboxes.peek(dlq, None, 10).await.unwrap()), ids(&seen[1..]));

    // Purged by id.
    assert_eq!(inboxes.delete_messages(dlq, std::slice::from_ref(&seen[1].message_id)).await.unwrap(), 1);
    assert_eq!(ids(&inboxes.peek(dlq, None, 10).await.unwrap()), [seen[2].message_id.clone()]);
}

#[tokio::test]
async fn dead_letters_are_looked_at_redriven_and_purged_by_id() {
    let (embedded, _dir) = embedded();
    dead_letter_tools(&embedded, &embedded).await;
    let Some(server) = Ministack::start() else { return };
    let bus = aws(&server, "dead-letters").await;
    dead_letter_tools(&bus, &bus).await;
    // SQS counts a look as a receive: an inbox a target consumes is not looked at.
    let err = bus.peek("agent-pay", None, 10).await.unwrap_err();
    assert!(
        matches!(&err, BusError::Unsupported { operation, .. } if operation.contains("which a target consumes")),
        "{err}"
    );
}

/// An event whose target queue was deleted: EventBridge cannot deliver it, retries as the
/// target's policy says (none here), then sends it to the target's dead-letter queue
/// (`DeadLetterConfig`). Where the server drops it instead, the test says so.
#[tokio::test]
async fn an_event_to_a_deleted_queue_goes_to_the_targets_dead_letters_or_the_gap_is_said() {
    let Some(server) = Ministack::start() else { return };
    let bus = aws(&server, "gone").await;
    route(&bus, "gone", "Gone", policy(0)).await;
    let sqs = aws_sdk_sqs::Client::new(&server.sdk_config());
    let url = sqs.get_queue_url().queue_name("gone").send().await.unwrap();
    sqs.delete_queue().queue_url(url.queue_url().unwrap()).send().await.unwrap();

    let put = bus.put_events(vec![entry("Gone", json!({"n": 1}))]).await.unwrap();
    assert_eq!(put.failed_entry_count, 0, "EventBridge accepts the entry: delivery is its own business");
    let dead = receive(&bus, "gone-dlq", 1, Duration::from_secs(5)).await;
    match dead.as_slice() {
        [] => eprintln!("ministack dropped an event to a deleted queue without dead-lettering it (known gap)"),
        [message] => {
            let event = message.event().unwrap();
            assert_eq!(event.event.detail_type, "Gone");
            eprintln!("ministack dead-lettered an event to a deleted queue, as EventBridge does (honoured)");
        }
        more => panic!("one event put, {} dead letters", more.len()),
    }
}
