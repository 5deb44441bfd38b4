//! The `payments` agent as a Lambda function fed by its SQS queue, on ministack's EventBridge and
//! SQS: a batch of two records (a real triage, a malformed event) is answered with no item to
//! retry (the triage resolved with one refund, the malformed one dead-lettered with its reason);
//! a batch whose failure cannot be dead-lettered (the dead-letter queue is gone) reports that
//! record alone in `batchItemFailures`. Once with the handler called in process, once through
//! the real Lambda Runtime API of `cargo lambda watch` running the `choreo-agent` binary (its
//! ledger in a DynamoDB table). Two instances sharing the ledger's table act once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lambda_events::event::sqs::SqsEvent;
use choreo_bus::api::{Message, RuleSpec, Target};
use choreo_bus::{AwsBus, AwsConfig, Bus, Inboxes};
use choreo_consumers::local::{Local, Options};
use choreo_consumers::store::{DynamoLedger, Ledger};
use choreo_schemas::Envelope;
use choreo_schemas::catalog::{IssueKind, SupportTriaged};
use choreo_schemas::envelope::{AuthType, EnvelopeBuilder};
use choreo_schemas::eventbridge::PutEventsEntry;
use choreo_tests::agents::Counted;
use choreo_tests::lambda_watch::Watch;
use choreo_tests::ministack::{Ministack, receive};
use serde_json::{Value, json};

const INBOX: &str = "agent-payments";
/// The ledger's table of the function under `cargo lambda watch`.
const WATCHED_LEDGER: &str = "choreo-ledger-watched";

/// The bus with every agent's rule and queue (as a deployment has them) and a watch queue of
/// the payments' completions; nothing consumes the agents' queues.
async fn deployed(server: &Ministack, data: &std::path::Path) -> (Arc<AwsBus>, Local<AwsBus>) {
    deployed_with(server, Options::new(data)).await
}

async fn deployed_with(server: &Ministack, mut options: Options) -> (Arc<AwsBus>, Local<AwsBus>) {
    let bus = Arc::new(AwsBus::ensure_with(&server.sdk_config(), AwsConfig::new("choreo")).await.unwrap());
    options.consume = false;
    let local = Local::start_on(options, bus.clone()).await.expect("the agents' rules and queues");
    bus.put_rule(RuleSpec::new("watch", r#"{"detail-type": ["PaymentIssueResolved"]}"#)).await.unwrap();
    bus.put_targets("watch", vec![Target::new("watch", "watch")]).await.unwrap();
    (bus, local)
}

/// Puts the seeded customer's triage (a duplicate charge) and a malformed event that payments'
/// rule matches; answers them as the event source mapping would receive them.
async fn two_records(bus: &AwsBus) -> Vec<Message> {
    choreo_consumers::runner::publish(bus, &triage()).await.unwrap();
    put_malformed(bus).await;
    receive(bus, INBOX, 2).await
}

/// The seeded customer's triage: a duplicate charge.
fn triage() -> Envelope {
    let triage = SupportTriaged {
        order_id: "o-1001".into(),
        issues: vec![IssueKind::DuplicateCharge],
        summary: "Charged twice for the order.".into(),
        needed_by: None,
    };
    EnvelopeBuilder::of("agents.support", &triage)
        .subject("orders/o-1001")
        .correlation_id("case-lambda")
        .auth(AuthType::AppUser, "c-1001")
        .build()
        .unwrap()
}

async fn put_malformed(bus: &AwsBus) {
    let malformed = PutEventsEntry {
        source: "agents.support".into(),
        detail_type: "SupportTriaged".into(),
        detail: json!({"specversion": "1.0", "data": {"issues": ["duplicate_charge"]}}).to_string(),
        time: None,
        resources: Vec::new(),
        event_bus_name: None,
        trace_header: None,
    };
    let out = bus.put_events(vec![malformed]).await.unwrap();
    assert_eq!(out.failed_entry_count, 0);
}

/// The SQS event Lambda's event source mapping would hand the function for `messages`.
fn sqs_event(messages: &[Message]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({
                "messageId": m.message_id,
                "receiptHandle": m.receipt.0,
                "body": m.body,
                "attributes": {
                    "ApproximateReceiveCount": m.receive_count.to_string(),
                    "SentTimestamp": m.sent_at.timestamp_millis().to_string(),
                },
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": format!("arn:aws:sqs:us-east-1:000000000000:{INBOX}"),
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    json!({"Records": records})
}

fn failures(response: &Value) -> Vec<String> {
    response["batchItemFailures"]
        .as_array()
        .expect("batchItemFailures")
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
        .collect()
}

/// After the first batch: the triage resolved once, the malformed event dead-lettered with its
/// reason, the agent's queue empty.
async fn first_batch_settled(bus: &AwsBus, response: &Value) {
    assert_eq!(failures(response), Vec::<String>::new(), "nothing to retry: {response}");
    let resolved = receive(bus, "watch", 1).await;
    let event = resolved[0].event().unwrap().to_delivery().unwrap().envelope;
    assert_eq!(event.correlation_id(), Some("case-lambda"));
    let dead = receive(bus, "agent-payments-dlq", 1).await;
    let reason = dead[0].dead_letter.clone().expect("the reason");
    assert_eq!(reason.error_code, "MALFORMED_EVENT", "{reason:?}");
    assert_eq!(reason.exhausted_retry_condition, None);
    let inboxes = bus.list_inboxes().await.unwrap();
    let queue = inboxes.iter().find(|i| i.name == INBOX).unwrap();
    assert_eq!(queue.visible + queue.hidden, 0, "the agent's queue is empty");
}

/// Deletes the agent's dead-letter queue: a permanent failure can then be dead-lettered by
/// nobody, and must be left to SQS.
async fn lose_the_dead_letter_queue(server: &Ministack) {
    let sqs = aws_sdk_sqs::Client::new(&server.sdk_config());
    let url = sqs.get_queue_url().queue_name("agent-payments-dlq").send().await.unwrap();
    sqs.delete_queue().queue_url(url.queue_url().unwrap()).send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_answers_a_batch_with_only_the_records_to_retry() {
    let Some(server) = Ministack::start() else { return };
    let data = tempfile::tempdir().unwrap();
    let (bus, local) = deployed(&server, data.path()).await;
    let agent = Arc::new(local.agents.iter().find(|a| a.name() == "payments").unwrap().clone());
    let handle = |event: Value| {
        let (services, bus, agent) = (local.services.clone(), bus.clone(), agent.clone());
        async move {
            let event: SqsEvent = serde_json::from_value(event).unwrap();
            let response = choreo_consumers::lambda::handle_sqs(&services, bus.as_ref(), &agent, event).await;
            serde_json::to_value(response).unwrap()
        }
    };

    let records = two_records(&bus).await;
    first_batch_settled(&bus, &handle(sqs_event(&records)).await).await;
    let refunds = local.services.backoffice.refunds("o-1001").unwrap();
    assert_eq!(refunds.len(), 1, "{refunds:?}");

    lose_the_dead_letter_queue(&server).await;
    put_malformed(&bus).await;
    let stuck = receive(bus.as_ref(), INBOX, 1).await;
    let response = handle(sqs_event(&stuck)).await;
    assert_eq!(failures(&response), vec![stuck[0].message_id.clone()], "the one record left to SQS");
    local.shutdown().await;
}

/// Two instances of the payments function (two data directories: their own stores and back
/// offices) share the ledger's DynamoDB table. The triage is put twice (a producer's retry:
/// the same CloudEvent) and each copy goes to another instance: the second finds the first's
/// completion in the table and answers with it, its model not asked, nothing refunded again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_that_share_the_dynamodb_ledger_act_once() {
    let Some(server) = Ministack::start() else { return };
    let ledger = Arc::new(DynamoLedger::new(&server.sdk_config(), "choreo-ledger").unwrap());
    ledger.ensure_table().await.unwrap();
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let calls = Arc::new(AtomicUsize::new(0));
    let instance = |dir: &std::path::Path, calls: Option<Arc<AtomicUsize>>| {
        let mut options = Options::new(dir);
        options.ledger = Some(ledger.clone() as Arc<dyn Ledger>);
        if let Some(calls) = calls {
            options.model_layer = Some(Counted::layer(calls));
        }
        options
    };
    let (bus, first) = deployed_with(&server, instance(one.path(), None)).await;
    let mut options = instance(two.path(), Some(calls.clone()));
    (options.subscribe, options.consume) = (false, false);
    let second = Local::start_on(options, bus.clone()).await.unwrap();

    let event = triage();
    choreo_consumers::runner::publish(bus.as_ref(), &event).await.unwrap();
    choreo_consumers::runner::publish(bus.as_ref(), &event).await.unwrap();
    let copies = receive(bus.as_ref(), INBOX, 2).await;
    for (local, copy) in [(&first, &copies[0]), (&second, &copies[1])] {
        let agent = Arc::new(local.agents.iter().find(|a| a.name() == "payments").unwrap().clone());
        let batch: SqsEvent = serde_json::from_value(sqs_event(std::slice::from_ref(copy))).unwrap();
        let response = choreo_consumers::lambda::handle_sqs(&local.services, bus.as_ref(), &agent, batch).await;
        assert!(response.batch_item_failures.is_empty(), "{:?}", response.batch_item_failures);
    }

    assert_eq!(first.services.backoffice.refunds("o-1001").unwrap().len(), 1, "the first instance refunded");
    assert!(second.services.backoffice.refunds("o-1001").unwrap().is_empty(), "the second did not");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the second instance's model was not asked");
    // Both copies were answered with the one completion (the second published it again, with
    // its id: subscribers dedupe it).
    let answers = receive(bus.as_ref(), "watch", 2).await;
    let ids: Vec<String> =
        answers.iter().map(|m| m.event().unwrap().to_delivery().unwrap().envelope.id().to_owned()).collect();
    assert_eq!(ids[0], ids[1], "one completion, twice");
    let recorded = ledger.recorded("payments", event.id()).await.unwrap().unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].envelope["id"], ids[0].as_str());
    first.shutdown().await;
    second.shutdown().await;
}

/// `cargo lambda watch` running the `choreo-agent` binary for payments, on `server`.
fn watch(server: &Ministack, data: &std::path::Path) -> Option<Watch> {
    Watch::start(
        &[
            ("CHOREO_AGENT", "payments".to_owned()),
            ("CHOREO_MODEL", "offline".to_owned()),
            ("CHOREO_DATA_DIR", data.display().to_string()),
            ("CHOREO_LEDGER_TABLE", WATCHED_LEDGER.to_owned()),
        ]
        .into_iter()
        .chain(server.aws_env())
        .collect::<Vec<_>>(),
    )
}

async fn invoke(watch: &Watch, event: &Value) -> Value {
    watch.invoke("choreo-agent", event).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_runs_behind_the_lambda_runtime_api_and_reports_partial_failures() {
    let Some(server) = Ministack::start() else { return };
    let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (bus, local) = deployed(&server, ours.path()).await;
    let ledger = DynamoLedger::new(&server.sdk_config(), WATCHED_LEDGER).unwrap();
    ledger.ensure_table().await.unwrap();
    let Some(watch) = watch(&server, theirs.path()) else { return };

    let records = two_records(&bus).await;
    first_batch_settled(&bus, &invoke(&watch, &sqs_event(&records)).await).await;
    // The function recorded its completion in the ledger's table.
    let triage = records.iter().find_map(|m| m.event().ok()?.to_delivery().ok()).expect("the triage").envelope;
    let recorded = ledger.recorded("payments", triage.id()).await.unwrap().unwrap();
    assert_eq!(recorded.iter().map(|r| r.tool.as_str()).collect::<Vec<_>>(), ["complete.PaymentIssueResolved"]);
    // After the invocation, its runs are in the table for `choreo trace --backend aws`.
    let trace = |case: &str| {
        let mut cmd = choreo_tests::choreo();
        cmd.args(["trace", case, "--backend", "aws", "--ledger-table", WATCHED_LEDGER]);
        cmd.args(["--endpoint-url", &server.endpoint]).env_remove("AWS_PROFILE");
        for (k, v) in server.aws_env() {
            cmd.env(k, v);
        }
        choreo_tests::run_command(&mut cmd, b"")
    };
    let out = trace("case-lambda");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    for shown in [
        "payments ← delivery 1 · done",
        "tool payments.refund_charge",
        "● PaymentIssueResolved",
        "model turn",
        // The case's events and its effects, from the case store and the ledger in the table.
        "SupportTriaged",
        "Ledger (effects of the case)",
        "· done · by payments on",
    ] {
        assert!(out.stdout.contains(shown), "{shown:?} in:\n{}", out.stdout);
    }
    let out = trace("no-such-case");
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    assert!(out.stderr.contains("case `no-such-case` not found in DynamoDB table"), "{}", out.stderr);

    lose_the_dead_letter_queue(&server).await;
    put_malformed(&bus).await;
    let stuck = receive(bus.as_ref(), INBOX, 1).await;
    let response = invoke(&watch, &sqs_event(&stuck)).await;
    assert_eq!(failures(&response), vec![stuck[0].message_id.clone()], "the one record left to SQS");
    local.shutdown().await;
}
