//! When things go wrong: a crash between an effect and the ack, a model that reaches for
//! another customer's charge, calls the model gets wrong, a panicking agent, a throttled model.
//! Each ends with a clear record, nothing done twice, nothing lost.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use choreo_bus::Bus;
use choreo_bus::Inboxes;
use choreo_bus::api::{ReceiveOptions, RuleSpec, Target};
use choreo_consumers::consumer;
use choreo_consumers::local::default_agents_dir;
use choreo_consumers::manifest;
use choreo_consumers::observe::StepKind;
use choreo_consumers::runner::{self, Outcome};
use choreo_consumers::runtime::{self, Runtime};
use choreo_consumers::store::{Claim, ClaimMeta, NoteKind, effect_key};
use choreo_models::{Model, ModelError, ModelRequest, ModelResponse, ModelSpec};
use choreo_schemas::Envelope;
use choreo_schemas::envelope::AuthType;
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(30);

fn triaged(order: &str, customer: &str, issues: serde_json::Value) -> Envelope {
    Envelope::builder("agents.support", "SupportTriaged")
        .data(json!({"order_id": order, "issues": issues, "summary": "triaged"}))
        .subject(format!("orders/{order}"))
        .auth(AuthType::AppUser, customer)
        .build()
        .unwrap()
}

fn receive_options() -> ReceiveOptions {
    ReceiveOptions { max_messages: 1, visibility_timeout: Duration::from_secs(30), wait_time: Duration::from_secs(1) }
}

#[tokio::test]
async fn a_crash_between_the_refund_and_the_ack_still_refunds_once() {
    let agents = agents_with_payments_script(include_str!("fixtures/naive_payments.toml"));
    let rig = common::Rig::with_agents(agents.path()).await;

    let payments = Arc::new(rig.agent("payments").clone());
    runtime::install(rig.bus.as_ref(), std::slice::from_ref(&payments)).await.unwrap();
    let event = triaged("o-1003", "c-1003", json!(["duplicate_charge"]));
    runner::publish(rig.bus.as_ref(), &event).await.unwrap();

    // First delivery: the agent refunds and publishes, then the process dies before it acks
    // (nothing after the run happens).
    let first = rig.bus.receive("agent-payments", receive_options()).await.unwrap().remove(0);
    let delivered = first.event().unwrap().to_delivery().unwrap().envelope;
    assert!(matches!(runner::run(&rig.services, &payments, &delivered).await.unwrap().outcome, Outcome::Completed(_)));
    assert_eq!(rig.services.backoffice.refunds("o-1003").unwrap().len(), 1);
    let turns_before = rig.services.store.spend(event.correlation_id().unwrap()).unwrap().turns;

    // The visibility timeout passes: the bus delivers it again, to the real consumer path.
    rig.clock.advance(Duration::from_secs(31));
    let again = rig.bus.receive("agent-payments", receive_options()).await.unwrap().remove(0);
    assert_eq!(again.receive_count, 2);
    consumer::handle(&rig.services, rig.bus.as_ref(), &payments, again).await;

    assert_eq!(rig.services.backoffice.refunds("o-1003").unwrap().len(), 1, "refunded twice");
    // The run had finished (its completion is in the ledger): the redelivery is answered
    // from the ledger without asking the model again, so nothing is even attempted.
    let case = event.correlation_id().unwrap();
    let effects = rig.services.store.effects(case).unwrap();
    let refund = effects.iter().find(|e| e.tool == "payments.refund_charge").unwrap();
    assert_eq!(refund.suppressed, 0, "the refund was attempted again");
    let completion = effects.iter().find(|e| e.tool == "complete.PaymentIssueResolved").unwrap();
    assert_eq!(completion.suppressed, 1, "the redelivery got the recorded completion");
    assert_eq!(rig.services.store.spend(case).unwrap().turns, turns_before, "the model was asked again");
    rig.clock.advance(Duration::from_secs(31));
    let options = ReceiveOptions { wait_time: Duration::ZERO, ..receive_options() };
    assert!(rig.bus.receive("agent-payments", options).await.unwrap().is_empty(), "acknowledged at last");
}

#[tokio::test]
async fn a_crash_between_the_refund_and_the_completion_still_refunds_once() {
    let agents = agents_with_payments_script(include_str!("fixtures/naive_payments.toml"));
    let rig = common::Rig::with_agents(agents.path()).await;
    let payments = rig.agent("payments");
    let event = triaged("o-1003", "c-1003", json!(["duplicate_charge"]));
    let Outcome::Completed(first) = runner::run(&rig.services, payments, &event).await.unwrap().outcome else {
        panic!()
    };
    // As if the process had died after the refund, before the agent completed: no completion
    // recorded, none on the bus.
    let db = rusqlite::Connection::open(rig.path().join("agents.db")).unwrap();
    db.execute("DELETE FROM effects WHERE tool = 'complete.PaymentIssueResolved'", []).unwrap();
    db.execute("DELETE FROM case_events WHERE event_id = ?1", [first[0].id()]).unwrap();

    // The model runs again, and asks for the refund again: only the ledger stands in between.
    let Outcome::Completed(again) = runner::run(&rig.services, payments, &event).await.unwrap().outcome else {
        panic!()
    };
    assert_eq!(rig.services.backoffice.refunds("o-1003").unwrap().len(), 1, "refunded twice");
    let effects = rig.services.store.effects(event.correlation_id().unwrap()).unwrap();
    let refund = effects.iter().find(|e| e.tool == "payments.refund_charge").unwrap();
    assert_eq!(refund.suppressed, 1, "the second run got the recorded refund");
    assert_eq!(
        again[0].data().unwrap()["refunds"][0]["refund_id"],
        first[0].data().unwrap()["refunds"][0]["refund_id"]
    );
}

#[tokio::test]
async fn a_crash_between_the_effect_and_its_record_does_not_repeat_it() {
    let rig = common::Rig::new().await;
    let payments = rig.agent("payments");
    let event = triaged("o-1003", "c-1003", json!(["duplicate_charge"]));
    // What the offline script asks for; the refund happened downstream but the ledger never
    // heard back (the process died in between).
    let args = json!({"charge_id": "ch-1003-b", "reason": "duplicate of ch-1003-a"});
    let key = effect_key(event.id(), "payments.refund_charge", &args);
    let meta = ClaimMeta {
        agent: "payments",
        event_id: event.id(),
        correlation_id: event.correlation_id().unwrap(),
        tool: "payments.refund_charge",
        args: &args,
    };
    assert_eq!(rig.services.store.claim(&key, &meta).unwrap(), Claim::Fresh);
    rig.services.backoffice.refund_charge("c-1003", "ch-1003-b", None, "duplicate of ch-1003-a", &key).unwrap();

    runner::run(&rig.services, payments, &event).await.unwrap();
    let refunds = rig.services.backoffice.refunds("o-1003").unwrap();
    assert_eq!(refunds.len(), 1, "the in-doubt effect was not done twice: {refunds:?}");
}

#[tokio::test]
async fn a_redelivery_puts_its_recorded_completion_again_only_if_the_bus_never_got_it() {
    let rig = common::Rig::new().await;
    let payments = rig.agent("payments");
    // A watcher of payments' completions counts what reaches the bus.
    rig.bus.create_inbox("watch").await.unwrap();
    rig.bus.put_rule(RuleSpec::new("watch", r#"{"detail-type":["PaymentIssueResolved"]}"#)).await.unwrap();
    rig.bus.put_targets("watch", vec![Target::new("watch", "watch")]).await.unwrap();
    let watched = || async {
        let options = ReceiveOptions {
            max_messages: 10,
            visibility_timeout: Duration::from_secs(300),
            wait_time: Duration::ZERO,
        };
        let messages = rig.bus.receive("watch", options).await.unwrap();
        messages.iter().map(|m| m.event().unwrap().to_delivery().unwrap().envelope.id().to_owned()).collect::<Vec<_>>()
    };
    let event = triaged("o-1003", "c-1003", json!(["duplicate_charge"]));
    let Outcome::Completed(first) = runner::run(&rig.services, payments, &event).await.unwrap().outcome else {
        panic!()
    };
    assert_eq!(watched().await, vec![first[0].id().to_owned()]);

    // Delivered again after its completion reached the bus: the ledger answers, nothing is put.
    let Outcome::Completed(again) = runner::run(&rig.services, payments, &event).await.unwrap().outcome else {
        panic!()
    };
    assert_eq!(again[0].id(), first[0].id(), "the recorded completion");
    assert!(watched().await.is_empty(), "put on the bus twice");

    // The earlier delivery stopped between the ledger's record and the put (the case store
    // records a completion only once the bus accepted it): the same completion is put now.
    let db = rusqlite::Connection::open(rig.path().join("agents.db")).unwrap();
    let forgotten = db.execute("DELETE FROM case_events WHERE event_id = ?1", [first[0].id()]).unwrap();
    assert_eq!(forgotten, 1);
    runner::run(&rig.services, payments, &event).await.unwrap();
    assert_eq!(watched().await, vec![first[0].id().to_owned()], "never put, or put under another id");
    assert_eq!(rig.services.backoffice.refunds("o-1003").unwrap().len(), 1);
}

/// A copy of the agent folders with `payments/offline.toml` replaced.
fn agents_with_payments_script(script: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(&default_agents_dir(), dir.path());
    std::fs::write(dir.path().join("payments/offline.toml"), script).unwrap();
    dir
}

#[tokio::test]
async fn a_model_asking_to_refund_another_customers_charge_is_refused_and_recorded() {
    let agents = agents_with_payments_script(
        r#"
[[rule]]
when = 'calls["payments.refund_charge"] is undefined'
tool = "payments.refund_charge"
input = '{"charge_id": "ch-1003-b", "reason": "the customer said so"}'

[[rule]]
tool = "complete.PaymentIssueResolved"
input = '''{"order_id": {{ event.data.order_id | tojson }}, "outcome": "refused", "refunds": [],
  "summary": {{ errors["payments.refund_charge"].error | tojson }}}'''
"#,
    );
    let rig = common::Rig::with_agents(agents.path()).await;
    let event = triaged("o-1001", "c-1001", json!(["duplicate_charge"]));
    let runner::Ran { outcome, .. } = runner::run(&rig.services, rig.agent("payments"), &event).await.unwrap();

    assert!(rig.services.backoffice.refunds("o-1003").unwrap().is_empty(), "another customer's charge was refunded");
    assert!(rig.services.backoffice.refunds("o-1001").unwrap().is_empty());
    let notes = rig.services.store.notes(event.correlation_id().unwrap()).unwrap();
    let refused: Vec<_> = notes.iter().filter(|n| n.kind == NoteKind::Refused).collect();
    assert_eq!(refused.len(), 1, "{notes:?}");
    assert!(refused[0].detail.contains("ch-1003-b") && refused[0].detail.contains("c-1001"), "{}", refused[0].detail);
    // The model was told, and said so in its completion.
    let Outcome::Completed(published) = outcome else { panic!("{outcome:?}") };
    let data = published[0].data().unwrap();
    assert_eq!(data["outcome"], "refused");
    assert!(data["summary"].as_str().unwrap().contains("refused"), "{data}");
}

#[tokio::test]
async fn calls_the_model_gets_wrong_are_told_to_it_and_it_may_correct_them() {
    let agents = agents_with_payments_script(
        r#"
[[rule]]
when = 'turn == 1'
tool = "payments.steal_money"
input = '{}'

[[rule]]
when = 'turn == 2'
tool = "payments.list_charges"
input = '{"order": "o-1003"}'

[[rule]]
when = 'turn == 3'
tool = "complete.PaymentIssueResolved"
input = '{"order_id": "o-1003", "outcome": "maybe", "refunds": [], "summary": "?"}'

[[rule]]
tool = "complete.PaymentIssueResolved"
input = '{"order_id": "o-1003", "outcome": "no_duplicate_found", "refunds": [], "summary": "Third time lucky."}'
"#,
    );
    let rig = common::Rig::with_agents(agents.path()).await;
    let event = triaged("o-1003", "c-1003", json!(["duplicate_charge"]));
    let runner::Ran { outcome, .. } = runner::run(&rig.services, rig.agent("payments"), &event).await.unwrap();
    assert!(matches!(outcome, Outcome::Completed(ref p) if p.len() == 1), "{outcome:?}");
    let notes = rig.services.store.notes(event.correlation_id().unwrap()).unwrap();
    let invalid: Vec<_> = notes.iter().filter(|n| n.kind == NoteKind::InvalidCall).map(|n| n.detail.as_str()).collect();
    assert_eq!(invalid.len(), 3, "{invalid:?}");
    assert!(invalid[0].contains("unknown tool `payments.steal_money`"), "{}", invalid[0]);
    assert!(invalid[1].contains("unknown field `order`"), "{}", invalid[1]);
    assert!(invalid[2].contains("/outcome") && invalid[2].contains("\"maybe\""), "{}", invalid[2]);
}

/// The offline model, except that it panics or is throttled for `payments` as told.
struct Faulty {
    inner: Arc<dyn Model>,
    panics: bool,
    throttles_left: AtomicU32,
}

#[async_trait]
impl Model for Faulty {
    fn name(&self) -> String {
        "faulty".into()
    }

    async fn converse(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError> {
        if request.agent == "payments" {
            assert!(!self.panics, "payments' model went wrong");
            if self.throttles_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                return Err(ModelError::Throttled {
                    model: "faulty".into(),
                    message: "slow down".into(),
                    retry_after: None,
                });
            }
        }
        self.inner.converse(request).await
    }
}

async fn faulty_rig(panics: bool, throttles: u32) -> (common::Rig, Runtime) {
    let agents = manifest::discover(&default_agents_dir()).unwrap();
    let inner = runtime::connect_model(&ModelSpec::Offline, &agents).await.unwrap();
    let model = Arc::new(Faulty { inner, panics, throttles_left: AtomicU32::new(throttles) });
    let rig = common::Rig::with_model(agents.clone(), model).await;
    runtime::install(rig.bus.as_ref(), &agents).await.unwrap();
    let inboxes: Arc<dyn Inboxes> = rig.bus.clone();
    let running = Runtime::spawn(rig.services.clone(), inboxes, agents);
    (rig, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_agent_dead_letters_its_event_and_the_others_carry_on() {
    let (rig, running) = faulty_rig(true, 0).await;
    let mut steps = rig.services.observer.subscribe();
    let event = triaged("o-1001", "c-1001", json!(["duplicate_charge", "missing_item"]));
    runner::publish(rig.bus.as_ref(), &event).await.unwrap();
    let (mut panicked, mut shipped) = (false, false);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !(panicked && shipped) {
        let step = tokio::time::timeout_at(deadline, steps.recv()).await.expect("both happen").unwrap();
        match (&step.agent[..], &step.kind) {
            ("payments", StepKind::Failed { code, retryable, .. }) => {
                assert_eq!((code.as_str(), *retryable), ("AGENT_PANIC", false));
                panicked = true;
            }
            ("orders", StepKind::Published { event_type, .. }) => shipped = event_type == "FulfilmentIssueResolved",
            _ => {}
        }
    }
    running.shutdown().await;
    let options = ReceiveOptions { wait_time: Duration::ZERO, ..receive_options() };
    let dead = rig.bus.receive("agent-payments-dlq", options).await.unwrap();
    assert_eq!(dead.len(), 1);
    let reason = dead[0].dead_letter.as_ref().unwrap();
    assert_eq!(reason.error_code, "AGENT_PANIC");
    assert!(reason.error_message.contains("payments' model went wrong"), "{}", reason.error_message);
    assert!(rig.services.backoffice.refunds("o-1001").unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_model_is_retried_after_a_backoff_and_completes() {
    let (rig, running) = faulty_rig(false, 1).await;
    let mut steps = rig.services.observer.subscribe();
    let event = triaged("o-1003", "c-1003", json!(["duplicate_charge"]));
    runner::publish(rig.bus.as_ref(), &event).await.unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut deliveries = Vec::new();
    loop {
        let step = tokio::time::timeout_at(deadline, steps.recv()).await.expect("payments finishes").unwrap();
        if step.agent != "payments" {
            continue;
        }
        match step.kind {
            StepKind::Received { receive_count, .. } => deliveries.push(receive_count),
            StepKind::Failed { code, retryable, .. } => {
                assert_eq!((code.as_str(), retryable), ("MODEL_THROTTLED", true));
                // The retry is due after the backoff, on the bus's clock.
                rig.clock.advance(Duration::from_secs(120));
            }
            StepKind::Done { .. } => break,
            _ => {}
        }
    }
    running.shutdown().await;
    assert_eq!(deliveries, [1, 2]);
    assert_eq!(rig.services.backoffice.refunds("o-1003").unwrap().len(), 1);
}

/// A model whose first answer says it stops for a tool but calls none.
struct EmptyToolTurn {
    inner: Arc<dyn Model>,
    first: AtomicU32,
}

#[async_trait]
impl Model for EmptyToolTurn {
    fn name(&self) -> String {
        "empty-tool-turn".into()
    }

    async fn converse(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError> {
        if self.first.swap(1, Ordering::SeqCst) == 0 {
            return Ok(ModelResponse {
                message: choreo_models::Message {
                    role: choreo_models::Role::Assistant,
                    content: vec![choreo_models::ContentBlock::Text("Let me look that up.".into())],
                },
                stop_reason: choreo_models::StopReason::ToolUse,
                usage: Default::default(),
            });
        }
        self.inner.converse(request).await
    }
}

#[tokio::test]
async fn an_answer_that_stops_for_a_tool_but_calls_none_is_told_and_the_agent_goes_on() {
    let agents = manifest::discover(&default_agents_dir()).unwrap();
    let inner = runtime::connect_model(&ModelSpec::Offline, &agents).await.unwrap();
    let rig = common::Rig::with_model(agents, Arc::new(EmptyToolTurn { inner, first: AtomicU32::new(0) })).await;
    let event = triaged("o-1003", "c-1003", json!(["duplicate_charge"]));
    let runner::Ran { outcome, .. } = runner::run(&rig.services, rig.agent("payments"), &event).await.unwrap();
    assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
    let notes = rig.services.store.notes(event.correlation_id().unwrap()).unwrap();
    assert!(
        notes.iter().any(|n| n.kind == NoteKind::InvalidCall && n.detail.contains("holds no tool call")),
        "{notes:?}"
    );
    assert_eq!(rig.services.backoffice.refunds("o-1003").unwrap().len(), 1);
}

#[tokio::test]
async fn an_event_whose_data_breaks_its_schema_is_dead_lettered_with_the_pointer() {
    let rig = common::Rig::new().await;
    let payments = Arc::new(rig.agent("payments").clone());
    runtime::install(rig.bus.as_ref(), std::slice::from_ref(&payments)).await.unwrap();
    // Matches payments' rule, but has no order id.
    let broken = Envelope::builder("agents.support", "SupportTriaged")
        .data(json!({"issues": ["duplicate_charge"], "summary": "?"}))
        .auth(AuthType::AppUser, "c-1003")
        .build()
        .unwrap();
    runner::publish(rig.bus.as_ref(), &broken).await.unwrap();
    let message = rig.bus.receive("agent-payments", receive_options()).await.unwrap().remove(0);
    consumer::handle(&rig.services, rig.bus.as_ref(), &payments, message).await;

    let options = ReceiveOptions { wait_time: Duration::ZERO, ..receive_options() };
    let dead = rig.bus.receive("agent-payments-dlq", options).await.unwrap();
    assert_eq!(dead.len(), 1, "the event is kept, with its reason");
    let reason = dead[0].dead_letter.as_ref().unwrap();
    assert_eq!(reason.error_code, "MALFORMED_EVENT");
    assert!(reason.error_message.contains("order_id"), "{}", reason.error_message);
    assert!(!rig.services.store.is_processed("payments", broken.id()).unwrap());
}
