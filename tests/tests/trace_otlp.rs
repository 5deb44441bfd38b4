//! Spans over OTLP/HTTP, checked on the wire: a local receiver (axum, POST /v1/traces,
//! protobuf decoded with opentelemetry-proto) gets the runtime's live spans for the seeded
//! case, a redelivery and a replay, all in the case's trace, each run under the span of the
//! event it received; `choreo trace --otlp-endpoint` exports the same spans again, rooted.

mod trace_common;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use choreo_bus::Bus;
use choreo_bus::api::ReplaySpec;
use choreo_consumers::journal::otlp::Endpoint;
use choreo_consumers::journal::spans::TraceParent;
use choreo_consumers::local::ARCHIVE;
use choreo_consumers::observe::StepKind;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::sync::broadcast::error::RecvError;
use trace_common::{DEADLINE, Running, naive_agents, options};

type Received = Arc<Mutex<Vec<Span>>>;

/// A local OTLP/HTTP receiver; answers its base URL and what it received.
async fn receiver() -> (String, Received) {
    let received = Received::default();
    let app = Router::new()
        .route(
            "/v1/traces",
            post(|State(spans): State<Received>, body: Bytes| async move {
                let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export request");
                let mut spans = spans.lock().unwrap();
                for resource in request.resource_spans {
                    for scope in resource.scope_spans {
                        spans.extend(scope.spans);
                    }
                }
                ([("content-type", "application/x-protobuf")], Vec::new())
            }),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), received)
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Any> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| a.value.as_ref()?.value.as_ref())
}

fn attr_str<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match attr(span, key) {
        Some(Any::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn attr_int(span: &Span, key: &str) -> Option<i64> {
    match attr(span, key) {
        Some(Any::IntValue(i)) => Some(*i),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_cross_the_bus_and_replays_in_the_cases_trace() {
    let (url, received) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let agents = tempfile::tempdir().unwrap();
    naive_agents(agents.path());
    let running = Running::start(options(dir.path(), Some(agents.path()), Some(Endpoint::Base(url.clone())))).await;
    let placed = running.seeded_case().await;
    let case = placed.correlation_id().unwrap_or(placed.id()).to_owned();

    // Replay the case's events to payments: it has handled SupportTriaged, so it acknowledges.
    let mut steps = running.local.services.observer.subscribe();
    let now = chrono::Utc::now();
    running
        .local
        .bus
        .start_replay(ReplaySpec {
            name: "trace-replay".into(),
            archive: ARCHIVE.into(),
            event_start_time: now - chrono::Duration::minutes(5),
            event_end_time: now,
            rules: Some(BTreeSet::from(["agent-payments".to_owned()])),
            description: None,
        })
        .await
        .expect("start the replay");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout_at(deadline, steps.recv()).await.expect("payments gets the replayed event") {
            Ok(step) if step.agent == "payments" && matches!(step.kind, StepKind::Duplicate) => break,
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => panic!("the runtime stopped"),
        }
    }
    // A graceful stop flushes the journal and the exporter: every span is on the wire by now.
    running.shutdown().await;
    let live: Vec<Span> = std::mem::take(&mut *received.lock().unwrap());

    let root = TraceParent::parse(placed.traceparent().expect("the case's traceparent")).unwrap();
    let trace_id = root.trace_id.to_bytes().to_vec();
    assert!(live.len() > 40, "{} spans", live.len());
    for span in &live {
        assert_eq!(span.trace_id, trace_id, "span `{}` is not in the case's trace", span.name);
    }
    let by_id: HashMap<&[u8], &Span> = live.iter().map(|s| (s.span_id.as_slice(), s)).collect();
    assert_eq!(by_id.len(), live.len(), "span ids are unique");
    let runs = |name: &str| live.iter().filter(|s| s.name == name).collect::<Vec<_>>();

    // Support's run on the request hangs under the request's traceparent span.
    let support = runs("support OrderSupportPlaced");
    assert_eq!(support.len(), 1);
    assert_eq!(support[0].parent_span_id, root.span_id.to_bytes().to_vec());
    assert_eq!(attr_str(support[0], "cloudevents.event_id"), Some(case.as_str()));
    let triaged_publish = live
        .iter()
        .find(|s| s.name == "publish SupportTriaged" && s.parent_span_id == support[0].span_id)
        .expect("support's publication of SupportTriaged, under its run");

    // Payments: the throttled run, its redelivery, and the replay, each under that publication.
    let payments = runs("payments SupportTriaged");
    let outcomes: Vec<(Option<&str>, Option<i64>, Option<&str>)> = payments
        .iter()
        .map(|s| {
            assert_eq!(s.parent_span_id, triaged_publish.span_id, "payments' run is not under SupportTriaged");
            (attr_str(s, "choreo.outcome"), attr_int(s, "choreo.receive_count"), attr_str(s, "choreo.replay_name"))
        })
        .collect();
    assert!(outcomes.contains(&(Some("failed"), Some(1), None)), "{outcomes:?}");
    assert!(outcomes.contains(&(Some("done"), Some(2), None)), "{outcomes:?}");
    assert!(outcomes.contains(&(Some("duplicate"), Some(1), Some("trace-replay"))), "{outcomes:?}");
    let redelivered = payments.iter().find(|s| attr_int(s, "choreo.receive_count") == Some(2)).unwrap();
    let refunds: Vec<(bool, bool)> = live
        .iter()
        .filter(|s| s.name == "tool payments.refund_charge")
        .map(|s| {
            let suppressed = matches!(attr(s, "choreo.ledger.suppressed"), Some(Any::BoolValue(true)));
            (suppressed, s.parent_span_id == redelivered.span_id)
        })
        .collect();
    assert_eq!(refunds.len(), 2, "{refunds:?}");
    assert!(refunds.contains(&(true, true)), "the redelivery's refund is not marked suppressed: {refunds:?}");
    assert!(refunds.contains(&(false, false)), "{refunds:?}");
    assert_eq!(attr_int(redelivered, "choreo.ledger.suppressed"), Some(1));

    // Model turns are children of runs, with their tokens.
    let turns: Vec<&Span> = live.iter().filter(|s| s.name.starts_with("model turn ")).collect();
    assert!(turns.len() >= 18, "{} model turns", turns.len());
    for turn in turns {
        let parent = by_id.get(turn.parent_span_id.as_slice()).expect("a model turn's run is exported");
        assert!(attr_str(parent, "choreo.agent").is_some(), "{}", parent.name);
        assert!(attr_int(turn, "gen_ai.usage.input_tokens").unwrap_or(0) > 0);
    }
    // The answer's run is reached from the request through publications only.
    let answer = runs("support FulfilmentIssueResolved")
        .into_iter()
        .chain(runs("support PaymentIssueResolved"))
        .find(|s| live.iter().any(|p| p.name == "publish OrderSupportCompleted" && p.parent_span_id == s.span_id))
        .expect("the run that answered");
    let mut hops = 0;
    let mut at: &Span = answer;
    while at.parent_span_id != root.span_id.to_bytes().to_vec() {
        at = by_id.get(at.parent_span_id.as_slice()).expect("every parent up to the request is exported");
        hops += 1;
        assert!(hops < 20, "a parent cycle");
    }

    // `choreo trace` exports the same spans from the journal, with the request's as the root.
    let out = trace_common::trace(dir.path(), &[&case, "--otlp-endpoint", &url]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains(&format!("span(s) of trace {}", root.trace_id)), "{}", out.stdout);
    let again: Vec<Span> = std::mem::take(&mut *received.lock().unwrap());
    assert_eq!(again.len(), live.len() + 1, "the live spans and the request's");
    let again_ids: HashMap<&[u8], &Span> = again.iter().map(|s| (s.span_id.as_slice(), s)).collect();
    for span in &live {
        let same = again_ids.get(span.span_id.as_slice()).expect("the same span id after the fact");
        assert_eq!((same.name.as_str(), &same.parent_span_id), (span.name.as_str(), &span.parent_span_id));
    }
    let request = again_ids.get(root.span_id.to_bytes().as_slice()).expect("the request's span");
    assert_eq!(request.name, "publish OrderSupportPlaced");
    assert!(request.parent_span_id.is_empty());
}
