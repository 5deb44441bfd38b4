//! The case store on the AWS path. Its contract, the same assertions on the agents' store
//! (SQLite, the embedded default) and on the ledger's DynamoDB table (ministack, a real
//! AWS-compatible server): events once and in order, notes, and one budget that racing debits
//! cannot overspend. Then the seeded case with every agent's batches handed, in turn, to three
//! instances that share nothing but the table (each its own data directory, store and back
//! office), as Lambda spreads a queue's batches: `support` joins over completions other
//! instances recorded, the case is resolved with one refund, and the table's spend counts every
//! model turn of every instance; and a turn that ended without completing is not run again
//! when its event is delivered to another instance.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use choreo_bus::api::{ReceiveOptions, RuleSpec, Target};
use choreo_bus::{AwsBus, AwsConfig, Bus, Inboxes};
use choreo_consumers::local::{Local, Options, SupportRequest};
use choreo_consumers::store::{CaseStore, DynamoLedger, Ledger, NoteKind, Spend, Store};
use choreo_schemas::Envelope;
use choreo_schemas::envelope::{AuthType, Budget};
use choreo_tests::agents::{Counted, SEEDED_CASE_EVENTS};
use choreo_tests::ministack::Ministack;
use chrono::NaiveDate;
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(120);

/// What every case store does, whatever keeps it.
async fn contract(cases: Arc<dyn CaseStore>) {
    let name = cases.name();
    let placed = Envelope::builder("retail", "OrderSupportPlaced").data(json!({"order_id": "o-1"})).build().unwrap();
    let triaged = placed.follow_up("agents.support", "SupportTriaged").data(json!({"issues": ["x"]})).build().unwrap();
    let resolved = triaged.follow_up("agents.payments", "PaymentIssueResolved").build().unwrap();
    let case = placed.id();

    // Each event joins its case once, however often it is added, in the order first added.
    cases.add_event(&placed).await.unwrap();
    cases.record_event(&triaged).await.unwrap();
    cases.add_event(&placed).await.unwrap();
    cases.record_event(&triaged).await.unwrap();
    cases.add_event(&resolved).await.unwrap();
    let events = cases.case_events(case).await.unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["OrderSupportPlaced", "SupportTriaged", "PaymentIssueResolved"], "{name}");
    assert_eq!(events[1].causation_id.as_deref(), Some(case), "{name}");
    assert_eq!(events[1].data, json!({"issues": ["x"]}), "{name}");
    assert_eq!(events[0].time, placed.time().map(|t| t.to_rfc3339()), "{name}");
    assert!(cases.has_event(case, triaged.id()).await.unwrap(), "{name}");
    assert!(!cases.has_event(case, "no-such-event").await.unwrap(), "{name}");
    assert!(!cases.has_event("another-case", triaged.id()).await.unwrap(), "{name}");
    assert!(cases.case_events("another-case").await.unwrap().is_empty(), "{name}");

    // Notes keep their kind and order.
    cases.note(case, triaged.id(), "payments", NoteKind::Refused, "charge ch-9 is not the customer's").await.unwrap();
    cases.note(case, triaged.id(), "payments", NoteKind::Escalated, "a human looks").await.unwrap();
    let notes = cases.notes(case).await.unwrap();
    assert_eq!(notes.iter().map(|n| n.kind).collect::<Vec<_>>(), [NoteKind::Refused, NoteKind::Escalated], "{name}");
    assert_eq!(notes[0].detail, "charge ch-9 is not the customer's");
    assert_eq!((notes[0].agent.as_str(), notes[0].event_id.as_str()), ("payments", triaged.id()));

    // The budget: debited until a limit is reached, the limit named.
    let budget = Budget { turns: 2, tokens: 1000, hops: 1 };
    assert_eq!(cases.spend("b").await.unwrap(), Spend::default(), "{name}");
    assert_eq!(cases.debit_hop("b", &budget).await.unwrap().unwrap().hops, 1, "{name}");
    assert_eq!(cases.debit_hop("b", &budget).await.unwrap().unwrap_err().limit, "hops", "{name}");
    assert!(cases.debit_turn("b", &budget).await.unwrap().is_ok());
    cases.add_tokens("b", 400).await.unwrap();
    assert!(cases.debit_turn("b", &budget).await.unwrap().is_ok());
    let exhausted = cases.debit_turn("b", &budget).await.unwrap().unwrap_err();
    assert_eq!(exhausted.limit, "turns", "{name}");
    assert_eq!(exhausted.spent, Spend { turns: 2, tokens: 400, hops: 1 }, "{name}");
    cases.add_tokens("t", 1000).await.unwrap();
    assert_eq!(cases.debit_turn("t", &budget).await.unwrap().unwrap_err().limit, "tokens", "{name}");
    assert_eq!(cases.spend("t").await.unwrap(), Spend { turns: 0, tokens: 1000, hops: 0 }, "{name}");

    // Eight runs race for five turns: five get one, three are told the budget is spent.
    let budget = Budget { turns: 5, tokens: 1_000_000, hops: 10 };
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let cases = cases.clone();
            tokio::spawn(async move { cases.debit_turn("race", &budget).await.unwrap().is_ok() })
        })
        .collect();
    let mut granted = 0;
    for racer in racers {
        granted += usize::from(racer.await.unwrap());
    }
    assert_eq!(granted, 5, "{name}: exactly the budget's turns are granted");
    assert_eq!(cases.spend("race").await.unwrap().turns, 5, "{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_keeps_the_case_stores_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(Arc::new(Store::open(dir.path()).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamodb_table_keeps_the_case_stores_contract() {
    let Some(server) = Ministack::start() else { return };
    let table = DynamoLedger::new(&server.sdk_config(), "choreo-ledger").unwrap();
    table.ensure_table().await.unwrap();
    contract(Arc::new(table)).await;
}

/// `n` instances of the agents sharing only `table` (their own data directories: stores and
/// back offices), their model calls counted into `calls`; the first puts the rules and queues,
/// as the deployment would; none consumes (the test hands them batches, as Lambda would).
async fn instances(
    n: usize,
    table: &Arc<DynamoLedger>,
    bus: &Arc<AwsBus>,
    calls: &Arc<AtomicUsize>,
) -> (Vec<Local<AwsBus>>, Vec<tempfile::TempDir>) {
    let dirs: Vec<_> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut instances = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let mut options = Options::new(dir.path());
        options.ledger = Some(table.clone() as Arc<dyn Ledger>);
        options.cases = Some(table.clone() as Arc<dyn CaseStore>);
        (options.subscribe, options.consume) = (i == 0, false);
        options.model_layer = Some(Counted::layer(calls.clone()));
        instances.push(Local::start_on(options, bus.clone()).await.expect("an instance"));
    }
    (instances, dirs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_spread_over_instances_that_share_the_table_is_resolved_once() {
    let Some(server) = Ministack::start() else { return };
    let table = Arc::new(DynamoLedger::new(&server.sdk_config(), "choreo-ledger").unwrap());
    table.ensure_table().await.unwrap();
    let bus = Arc::new(AwsBus::ensure_with(&server.sdk_config(), AwsConfig::new("choreo-spread")).await.unwrap());
    let calls = Arc::new(AtomicUsize::new(0));
    let (instances, _dirs) = instances(3, &table, &bus, &calls).await;
    bus.put_rule(RuleSpec::new("watch", r#"{"detail": {"specversion": ["1.0"]}}"#)).await.unwrap();
    bus.put_targets("watch", vec![Target::new("watch", "watch")]).await.unwrap();

    let placed =
        instances[0].submit(&SupportRequest::seeded(NaiveDate::from_ymd_opt(2026, 12, 3).unwrap())).await.unwrap();
    let case = placed.id().to_owned();
    let options = ReceiveOptions {
        max_messages: 10,
        wait_time: Duration::from_millis(200),
        visibility_timeout: Duration::from_secs(60),
    };
    let mut events: BTreeMap<String, Envelope> = BTreeMap::new();
    let (mut next, mut batches) = (0_usize, BTreeMap::<(String, usize), usize>::new());
    let started = tokio::time::Instant::now();
    while !events.values().any(|e| e.event_type() == "OrderSupportCompleted") {
        let seen: Vec<&str> = events.values().map(Envelope::event_type).collect();
        assert!(started.elapsed() < DEADLINE, "not resolved in {DEADLINE:?}: {seen:?}");
        for name in ["support", "payments", "orders", "inventory"] {
            let inbox = format!("agent-{name}");
            let batch = bus.receive(&inbox, options).await.unwrap();
            if batch.is_empty() {
                continue;
            }
            // Each batch to the next instance, as Lambda hands batches to whichever is free.
            let at = &instances[next % instances.len()];
            *batches.entry((name.to_owned(), next % instances.len())).or_default() += 1;
            next += 1;
            let agent = Arc::new(at.agents.iter().find(|a| a.name() == name).unwrap().clone());
            let retry = choreo_consumers::lambda::handle_batch(&at.services, bus.as_ref(), &agent, batch).await;
            assert!(retry.is_empty(), "{name}: records left for a retry: {retry:?}");
        }
        for message in bus.receive("watch", options).await.unwrap() {
            let envelope = message.event().unwrap().to_delivery().unwrap().envelope;
            bus.ack("watch", &message.receipt).await.unwrap();
            if envelope.correlation_id() == Some(case.as_str()) {
                events.insert(envelope.id().to_owned(), envelope);
            }
        }
    }

    // `support` ran on more than one instance: its answer joined over what others recorded.
    let support_instances = batches.keys().filter(|(name, _)| name == "support").count();
    assert!(support_instances > 1, "support's batches went to one instance only: {batches:?}");
    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for e in events.values() {
        *by_type.entry(e.event_type()).or_default() += 1;
    }
    let expected = SEEDED_CASE_EVENTS;
    assert_eq!(by_type, expected.into_iter().map(|t| (t, 1)).collect(), "the case's events");
    // One refund over all the instances' back offices.
    let mut refunds = Vec::new();
    for instance in &instances {
        refunds.extend(instance.services.backoffice.refunds("o-1001").unwrap());
    }
    assert_eq!(refunds.len(), 1, "one refund of the duplicate charge: {refunds:?}");
    // The table holds the whole case, whichever instance recorded which part.
    let recorded: Vec<String> = table.case_events(&case).await.unwrap().into_iter().map(|e| e.event_type).collect();
    assert_eq!(recorded.len(), expected.len(), "{recorded:?}");
    let spend = table.spend(&case).await.unwrap();
    assert_eq!(spend.turns as usize, calls.load(Ordering::SeqCst), "every instance's model turns, on the one case");
    assert!(spend.hops >= 4 && spend.tokens > 0, "{spend:?}");
    for instance in instances {
        instance.shutdown().await;
    }
}

/// `support` given a payment's resolution while the missing item is not resolved yet ends its
/// turn without completing. The same event delivered again, to another instance (SQS after a
/// timeout, a replay), is a duplicate there: answered from the table, its model not asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_that_ended_without_completing_is_not_run_again_on_another_instance() {
    let Some(server) = Ministack::start() else { return };
    let table = Arc::new(DynamoLedger::new(&server.sdk_config(), "choreo-ledger").unwrap());
    table.ensure_table().await.unwrap();
    let bus = Arc::new(AwsBus::ensure_with(&server.sdk_config(), AwsConfig::new("choreo-waits")).await.unwrap());
    let calls = Arc::new(AtomicUsize::new(0));
    let (instances, _dirs) = instances(2, &table, &bus, &calls).await;

    // The case so far, as the other agents' functions recorded it.
    let placed = Envelope::builder("retail.support-api", "OrderSupportPlaced")
        .auth(AuthType::AppUser, "c-1001")
        .data(json!({"order_id": "o-1001", "message": "Charged twice, the speaker never came.", "channel": "web"}))
        .build()
        .unwrap();
    let triaged = placed
        .follow_up("agents.support", "SupportTriaged")
        .data(json!({"order_id": "o-1001", "issues": ["duplicate_charge", "missing_item"], "summary": "triaged"}))
        .build()
        .unwrap();
    for event in [&placed, &triaged] {
        table.add_event(event).await.unwrap();
    }
    let resolved = triaged
        .follow_up("agents.payments", "PaymentIssueResolved")
        .data(json!({"order_id": "o-1001", "outcome": "refunded", "summary": "We refunded the duplicate charge.",
                     "refunds": [{"charge_id": "ch-1001-b", "refund_id": "rf-1",
                                  "amount": {"amount_minor": 20800, "currency": "EUR"}}]}))
        .build()
        .unwrap();
    choreo_consumers::runner::publish(bus.as_ref(), &resolved).await.unwrap();
    choreo_consumers::runner::publish(bus.as_ref(), &resolved).await.unwrap();
    let copies = choreo_tests::ministack::receive(bus.as_ref(), "agent-support", 2).await;

    let mut asked = Vec::new();
    for (instance, copy) in instances.iter().zip(copies) {
        let agent = Arc::new(instance.agents.iter().find(|a| a.name() == "support").unwrap().clone());
        let retry = choreo_consumers::lambda::handle_batch(&instance.services, bus.as_ref(), &agent, vec![copy]).await;
        assert!(retry.is_empty(), "{retry:?}");
        asked.push(calls.load(Ordering::SeqCst));
    }
    assert!(asked[0] > 0, "the first instance asked its model");
    assert_eq!(asked[1], asked[0], "the second instance did not");
    let case = placed.id();
    let notes = table.notes(case).await.unwrap();
    assert_eq!(notes.iter().map(|n| n.kind).collect::<Vec<_>>(), [NoteKind::NoCompletion], "one run ended its turn");
    let types: Vec<String> = table.case_events(case).await.unwrap().into_iter().map(|e| e.event_type).collect();
    assert_eq!(types, ["OrderSupportPlaced", "SupportTriaged", "PaymentIssueResolved"], "nothing answered yet");
    let recorded = table.recorded("support", resolved.id()).await.unwrap().unwrap();
    assert_eq!(recorded.iter().map(|r| r.tool.as_str()).collect::<Vec<_>>(), [choreo_consumers::store::NO_COMPLETION]);
    for instance in instances {
        instance.shutdown().await;
    }
}
