//! The whole choreography in one process on the embedded bus: the seeded case end to end,
//! redeliveries, a budget that runs out, and a fifth agent added as a folder. Events are
//! observed the way any subscriber sees them: through a rule and an inbox of the bus.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use choreo_bus::api::{ReceiveOptions, RuleSpec, Target};
use choreo_bus::{Bus, EmbeddedBus, Inboxes};
use choreo_consumers::local::{Local, Options, SupportRequest, default_agents_dir};
use choreo_consumers::observe::StepKind;
use choreo_schemas::Envelope;
use choreo_schemas::envelope::Budget;
use chrono::NaiveDate;

const DEADLINE: Duration = Duration::from_secs(30);

fn tomorrow() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 2).unwrap()
}

async fn start(dir: &Path, agents: &Path) -> Local {
    let mut options = Options::new(dir);
    options.agents_dir = agents.to_owned();
    options.clock = Arc::new(common::clock());
    Local::start(options).await.expect("start")
}

/// Subscribes an inbox to every event of the bus (a plain subscriber, like any other).
async fn watch(local: &Local) -> String {
    let inbox = "watch".to_owned();
    local.bus.put_rule(RuleSpec::new("watch", r#"{"detail": {"specversion": ["1.0"]}}"#)).await.unwrap();
    local.bus.put_targets("watch", vec![Target::new("watch", &inbox)]).await.unwrap();
    inbox
}

/// Events of case `case` from the watch inbox until `done` says so or the deadline passes.
async fn collect(bus: &EmbeddedBus, inbox: &str, case: &str, done: impl Fn(&[Envelope]) -> bool) -> Vec<Envelope> {
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !done(&events) {
        assert!(tokio::time::Instant::now() < deadline, "deadline passed with {:?}", types(&events));
        let options = ReceiveOptions { max_messages: 10, wait_time: Duration::from_millis(500), ..Default::default() };
        for message in bus.receive(inbox, options).await.unwrap() {
            let envelope = message.event().unwrap().to_delivery().unwrap().envelope;
            bus.ack(inbox, &message.receipt).await.unwrap();
            if envelope.correlation_id() == Some(case) {
                events.push(envelope);
            }
        }
    }
    events
}

/// Whatever else is in the watch inbox, once the agents have stopped.
async fn drain(bus: &EmbeddedBus, inbox: &str, case: &str) -> Vec<Envelope> {
    let mut events = Vec::new();
    loop {
        let options = ReceiveOptions { max_messages: 10, wait_time: Duration::ZERO, ..Default::default() };
        let messages = bus.receive(inbox, options).await.unwrap();
        if messages.is_empty() {
            return events;
        }
        for message in messages {
            let envelope = message.event().unwrap().to_delivery().unwrap().envelope;
            bus.ack(inbox, &message.receipt).await.unwrap();
            if envelope.correlation_id() == Some(case) {
                events.push(envelope);
            }
        }
    }
}

fn types(events: &[Envelope]) -> Vec<&str> {
    events.iter().map(Envelope::event_type).collect()
}

fn has(events: &[Envelope], event_type: &str) -> bool {
    events.iter().any(|e| e.event_type() == event_type)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeded_case_is_resolved_with_one_refund_and_a_next_day_shipment() {
    let dir = tempfile::tempdir().unwrap();
    let local = start(dir.path(), &default_agents_dir()).await;
    let inbox = watch(&local).await;
    let placed = local.submit(&SupportRequest::seeded(tomorrow())).await.unwrap();
    let case = placed.id().to_owned();
    let mut events = collect(&local.bus, &inbox, &case, |e| has(e, "OrderSupportCompleted")).await;
    let (bus, backoffice) = (local.bus.clone(), local.services.backoffice.clone());
    local.shutdown().await;
    events.extend(drain(&bus, &inbox, &case).await);

    // Exactly one answer, one refund of the duplicate, one next-day shipment of the speaker.
    let distinct: BTreeSet<&str> = events.iter().map(Envelope::id).collect();
    let mut by_type: HashMap<&str, usize> = HashMap::new();
    for id in &distinct {
        let e = events.iter().find(|e| e.id() == *id).unwrap();
        *by_type.entry(e.event_type()).or_default() += 1;
    }
    for (event_type, n) in [
        ("OrderSupportPlaced", 1),
        ("SupportTriaged", 1),
        ("PaymentIssueResolved", 1),
        ("InventoryChecked", 1),
        ("FulfilmentIssueResolved", 1),
        ("OrderSupportCompleted", 1),
    ] {
        assert_eq!(by_type.get(event_type), Some(&n), "{event_type} in {by_type:?}");
    }
    assert!(!by_type.contains_key("CaseEscalated"));
    let refunds = backoffice.refunds("o-1001").unwrap();
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!((refunds[0].charge_id.as_str(), refunds[0].amount_minor), ("ch-1001-b", 20800));
    let shipped: Vec<_> =
        backoffice.shipments("o-1001").unwrap().into_iter().filter(|s| s.sku == "SKU-SPEAKER-02").collect();
    assert_eq!(shipped.len(), 1, "{shipped:?}");
    assert_eq!(shipped[0].service_level.as_str(), "next_day");
    assert_eq!(shipped[0].estimated_delivery, tomorrow());

    // The answer names what was done.
    let answer = events.iter().find(|e| e.event_type() == "OrderSupportCompleted").unwrap();
    let data = answer.data().unwrap();
    let text = data["answer"].as_str().unwrap();
    for needle in ["208.00 EUR", "rf-1", "next-day", "2026-12-02"] {
        assert!(text.contains(needle), "answer lacks {needle}: {text}");
    }
    let agents: Vec<_> = data["actions"].as_array().unwrap().iter().map(|a| a["agent"].as_str().unwrap()).collect();
    assert_eq!(agents, ["payments", "orders"]);

    // One case, one customer, one trace; every event caused by one before it, back to the request.
    let trace = &placed.traceparent().unwrap()[..36];
    for e in &events {
        assert_eq!(e.correlation_id(), Some(case.as_str()), "{}", e.event_type());
        assert_eq!(e.auth_id(), Some("c-1001"), "{}", e.event_type());
        assert!(e.traceparent().unwrap().starts_with(trace), "{}", e.event_type());
        let mut cause = e.clone();
        let mut hops = 0;
        while let Some(parent) = cause.causation_id() {
            cause = events.iter().find(|x| x.id() == parent).unwrap_or_else(|| panic!("no cause {parent}")).clone();
            hops += 1;
            assert!(hops < 10, "causation loop");
        }
        assert_eq!(cause.id(), placed.id(), "{} does not lead back to the request", e.event_type());
    }
}

/// Steps of the case seen so far, without waiting.
fn steps_so_far(
    steps: &mut tokio::sync::broadcast::Receiver<choreo_consumers::observe::Step>,
) -> Vec<choreo_consumers::observe::Step> {
    let mut seen = Vec::new();
    while let Ok(step) = steps.try_recv() {
        seen.push(step);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_delivered_three_times_refunds_once() {
    let dir = tempfile::tempdir().unwrap();
    let local = start(dir.path(), &default_agents_dir()).await;
    let inbox = watch(&local).await;
    let triaged = Envelope::builder("agents.support", "SupportTriaged")
        .data(serde_json::json!({"order_id": "o-1003", "issues": ["duplicate_charge"], "summary": "Charged twice"}))
        .subject("orders/o-1003")
        .auth(choreo_schemas::envelope::AuthType::AppUser, "c-1003")
        .build()
        .unwrap();
    let mut steps = local.services.observer.subscribe();
    // Three PutEvents of one CloudEvent: three deliveries (three EventBridge ids), one `id`.
    for _ in 0..3 {
        choreo_consumers::runner::publish(local.bus.as_ref(), &triaged).await.unwrap();
    }
    let mut settled = 0;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while settled < 3 {
        let step = tokio::time::timeout_at(deadline, steps.recv()).await.expect("three deliveries settle").unwrap();
        if step.agent == "payments" && step.event_id == triaged.id() {
            settled += matches!(step.kind, StepKind::Done { .. } | StepKind::Duplicate) as usize;
            assert!(!matches!(step.kind, StepKind::Failed { .. }), "{step:?}");
        }
    }
    let (bus, backoffice) = (local.bus.clone(), local.services.backoffice.clone());
    local.shutdown().await;
    let refunds = backoffice.refunds("o-1003").unwrap();
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(refunds[0].charge_id, "ch-1003-b");
    let events = drain(&bus, &inbox, triaged.correlation_id().unwrap()).await;
    let resolutions: BTreeSet<&str> =
        events.iter().filter(|e| e.event_type() == "PaymentIssueResolved").map(Envelope::id).collect();
    assert_eq!(resolutions.len(), 1, "one resolution, however often it was delivered: {:?}", types(&events));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_spent_mid_case_escalates_once_and_stops_the_agents() {
    let dir = tempfile::tempdir().unwrap();
    let local = start(dir.path(), &default_agents_dir()).await;
    let inbox = watch(&local).await;
    let mut steps = local.services.observer.subscribe();
    // Triage takes 3 turns; payments and inventory need 3 and 5 more: 5 turns cannot suffice.
    let request = SupportRequest {
        budget: Budget { turns: 5, tokens: 1_000_000, hops: 20 },
        ..SupportRequest::seeded(tomorrow())
    };
    let placed = local.submit(&request).await.unwrap();
    let case = placed.id().to_owned();
    let mut events = collect(&local.bus, &inbox, &case, |e| has(e, "CaseEscalated")).await;
    let (bus, store) = (local.bus.clone(), local.services.store.clone());
    local.shutdown().await;
    events.extend(drain(&bus, &inbox, &case).await);

    let escalations: BTreeSet<&str> =
        events.iter().filter(|e| e.event_type() == "CaseEscalated").map(Envelope::id).collect();
    assert_eq!(escalations.len(), 1, "{:?}", types(&events));
    let escalated = events.iter().find(|e| e.event_type() == "CaseEscalated").unwrap();
    assert_eq!(escalated.data().unwrap()["reason"], "budget_exhausted");
    assert!(!has(&events, "OrderSupportCompleted"), "{:?}", types(&events));
    assert_eq!(store.spend(&case).unwrap().turns, 5);
    let turns = steps_so_far(&mut steps)
        .iter()
        .filter(|s| s.correlation_id == case && matches!(s.kind, StepKind::ModelTurn { .. }))
        .count();
    assert_eq!(turns, 5, "no model call after the budget ran out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifth_agent_is_added_by_adding_its_folder() {
    let agents = tempfile::tempdir().unwrap();
    common::copy_dir(&default_agents_dir(), agents.path());
    let loyalty = agents.path().join("loyalty");
    std::fs::create_dir_all(loyalty.join("events")).unwrap();
    std::fs::write(
        loyalty.join("agent.toml"),
        r#"name = "loyalty"
description = "Grants a goodwill voucher to a customer who was charged twice"
subscribe = { "detail-type" = ["OrderSupportCompleted"], detail = { data = { resolved_issues = ["duplicate_charge"] } } }
completes_with = "VoucherGranted"
tools = ["payments.list_charges"]
max_turns = 3
"#,
    )
    .unwrap();
    std::fs::write(loyalty.join("prompt.md"), "Grant a voucher of 10% of the duplicate charge, with a code.").unwrap();
    std::fs::write(
        loyalty.join("events/VoucherGranted.json"),
        r#"{"type": "object", "additionalProperties": false,
            "required": ["order_id", "code", "amount_minor", "currency"],
            "properties": {"order_id": {"type": "string"}, "code": {"type": "string", "minLength": 6},
                           "amount_minor": {"type": "integer", "minimum": 1}, "currency": {"type": "string"}}}"#,
    )
    .unwrap();
    std::fs::write(
        loyalty.join("offline.toml"),
        r#"
[[rule]]
when = 'calls["payments.list_charges"] is undefined'
tool = "payments.list_charges"
input = '{"order_id": {{ event.data.order_id | tojson }}}'

[[rule]]
tool = "complete.VoucherGranted"
input = '''{% set dup = results["payments.list_charges"].charges | selectattr("duplicate_of") | first %}
{"order_id": {{ event.data.order_id | tojson }}, "code": {{ ("SORRY-" ~ event.data.order_id | upper) | tojson }},
 "amount_minor": {{ dup.amount_minor // 10 }}, "currency": {{ dup.currency | tojson }}}'''
"#,
    )
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let local = start(dir.path(), agents.path()).await;
    assert_eq!(
        local.agents.iter().map(|a| a.name()).collect::<Vec<_>>(),
        ["inventory", "loyalty", "orders", "payments", "support"]
    );
    let inbox = watch(&local).await;
    let placed = local.submit(&SupportRequest::seeded(tomorrow())).await.unwrap();
    let events = collect(&local.bus, &inbox, placed.id(), |e| has(e, "VoucherGranted")).await;
    local.shutdown().await;
    let voucher = events.iter().find(|e| e.event_type() == "VoucherGranted").unwrap();
    let answer = events.iter().find(|e| e.event_type() == "OrderSupportCompleted").unwrap();
    assert_eq!(voucher.causation_id(), Some(answer.id()));
    assert_eq!(voucher.source(), "agents.loyalty");
    assert_eq!(voucher.auth_id(), Some("c-1001"));
    assert_eq!(
        voucher.data().unwrap(),
        &serde_json::json!({"order_id": "o-1001", "code": "SORRY-O-1001", "amount_minor": 2080, "currency": "EUR"})
    );
}
