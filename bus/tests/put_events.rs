//! PutEvents and rules on the embedded bus: per-entry answers, EventBridge's limits, the
//! delivered shape, and rules that route, change, disable and refuse.

mod common;

use choreo_bus::Bus;
use choreo_bus::api::{BusError, EntryResult, ErrorCode, MAX_ENTRY_BYTES, RuleSpec, RuleState, Target};
use choreo_schemas::envelope::{AuthType, Envelope};
use choreo_schemas::eventbridge::PutEventsEntry;
use common::*;
use serde_json::{Value, json};

fn failed(r: &EntryResult) -> (ErrorCode, &str) {
    match r {
        EntryResult::Failed { error_code, error_message } => (*error_code, error_message.as_str()),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn each_entry_is_answered_in_order_and_a_bad_one_fails_alone() {
    let t = open();
    route(&t.bus, "support", "OrderSupportPlaced", policy(3, 3600)).await;
    let good = entry("OrderSupportPlaced", json!({"order": "o-1001"}));
    let mut aws = good.clone();
    aws.source = "aws.ec2".into();
    let mut array = good.clone();
    array.detail = "[1, 2]".into();
    let mut long_type = good.clone();
    long_type.detail_type = "x".repeat(129);
    let mut broken = good.clone();
    broken.detail = r#"{"order": "o-1001""#.into();
    let mut no_source = good.clone();
    no_source.source = String::new();
    let mut other_bus = good.clone();
    other_bus.event_bus_name = Some("orders".into());
    let mut deep = good.clone();
    deep.detail = format!("{}{}", "{\"a\":".repeat(1100), "1".to_owned() + &"}".repeat(1100));
    let mut second = good.clone();
    second.detail = json!({"order": "o-2002"}).to_string();

    let entries = vec![good, aws, array, long_type, broken, no_source, other_bus, deep, second];
    let out = t.bus.put_events(entries).await.unwrap();
    assert_eq!(out.entries.len(), 9);
    assert_eq!(out.failed_entry_count, 7);
    assert!(out.entries[0].event_id().is_some() && out.entries[8].event_id().is_some());
    let expect = [
        (1, ErrorCode::NotAuthorizedForSourceException, "Entries[1].Source `aws.ec2`"),
        (2, ErrorCode::MalformedDetail, "Entries[2].Detail must be a JSON object, got an array"),
        (3, ErrorCode::InvalidArgument, "Entries[3].DetailType is 129 characters long; the limit is 128"),
        (4, ErrorCode::MalformedDetail, "Entries[4].Detail is not valid JSON at byte 18"),
        (5, ErrorCode::InvalidArgument, "Entries[5].Source is required"),
        (6, ErrorCode::InvalidArgument, "Entries[6].EventBusName: event bus `orders` does not exist"),
        (7, ErrorCode::MalformedDetail, "nesting deeper than"),
    ];
    for (i, code, text) in expect {
        let (got, message) = failed(&out.entries[i]);
        assert_eq!(got, code, "entry {i}: {message}");
        assert!(message.contains(text), "entry {i}: {message:?} lacks {text:?}");
    }
    let got = drain(&t.bus, "support").await;
    let orders: Vec<Value> = got.iter().map(|m| detail(m)["order"].clone()).collect();
    assert_eq!(orders, [json!("o-1001"), json!("o-2002")]);
    let ids: Vec<String> = got.iter().map(event_id).collect();
    assert_eq!(ids, [out.entries[0].event_id().unwrap(), out.entries[8].event_id().unwrap()]);
}

#[tokio::test]
async fn a_call_of_more_than_ten_entries_or_none_is_refused_whole() {
    let t = open();
    route(&t.bus, "support", "OrderSupportPlaced", policy(3, 3600)).await;
    let eleven = vec![entry("OrderSupportPlaced", json!({})); 11];
    let err = t.bus.put_events(eleven).await.unwrap_err();
    assert_eq!(err, BusError::TooManyEntries { count: 11, limit: 10 });
    assert_eq!(err.to_string(), "the request has 11 entries; PutEvents takes at most 10");
    let err = t.bus.put_events(Vec::new()).await.unwrap_err();
    assert!(err.to_string().contains("Entries"), "{err}");
    assert!(drain(&t.bus, "support").await.is_empty(), "nothing of a refused call is delivered");
}

#[tokio::test]
async fn entry_size_follows_eventbridge_s_formula_to_the_byte() {
    let t = open();
    route(&t.bus, "support", "OrderSupportPlaced", policy(3, 3600)).await;
    let sized = |total: usize| {
        let mut e = entry("OrderSupportPlaced", json!({}));
        e.resources = vec!["arn:aws:s3:::bucket".into()];
        // Source + DetailType + Resources + Detail (`{"p":"…"}` is 8 bytes around the padding).
        let fixed = e.source.len() + e.detail_type.len() + e.resources[0].len() + 8;
        e.detail = json!({"p": "x".repeat(total - fixed)}).to_string();
        assert_eq!(e.size(), total);
        e
    };
    let out = t.bus.put_events(vec![sized(MAX_ENTRY_BYTES), sized(MAX_ENTRY_BYTES + 1)]).await.unwrap();
    assert!(out.entries[0].event_id().is_some(), "{:?}", out.entries[0]);
    let (code, message) = failed(&out.entries[1]);
    assert_eq!(code, ErrorCode::InvalidArgument);
    assert!(message.starts_with("Entries[1].size is 262145 bytes"), "{message}");
    assert!(message.contains("the limit is 262144"), "{message}");
    let mut timed = sized(MAX_ENTRY_BYTES - 13);
    timed.time = Some(start_time());
    let out = t.bus.put_events(vec![timed]).await.unwrap();
    assert!(failed(&out.entries[0]).1.contains("262145"), "Time counts 14 bytes");
}

#[tokio::test]
async fn delivered_event_is_eventbridge_s_shape_and_carries_the_cloud_event() {
    let t = open();
    route(&t.bus, "payments", "SupportTriaged", policy(3, 3600)).await;
    let envelope = Envelope::builder("agents.support", "SupportTriaged")
        .subject("orders/o-1001")
        .data(json!({"order_id": "o-1001", "issues": ["duplicate_charge"]}))
        .auth(AuthType::AppUser, "c-1001")
        .build()
        .unwrap();
    let mut e = PutEventsEntry::from_envelope(&envelope);
    e.resources = vec!["arn:aws:orders:::o-1001".into()];
    let out = t.bus.put_events(vec![e]).await.unwrap();
    let got = drain(&t.bus, "payments").await;
    assert_eq!(got.len(), 1);
    let members = choreo_bus::json::members(got[0].body.as_bytes()).unwrap();
    let keys: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
    let wire: serde_json::Map<String, Value> = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(keys, ["version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"]);
    assert_eq!(wire["version"], "0");
    assert_eq!(wire["id"], out.entries[0].event_id().unwrap());
    assert!(uuid::Uuid::parse_str(wire["id"].as_str().unwrap()).is_ok());
    assert_eq!(wire["account"], "000000000000");
    assert_eq!(wire["region"], "us-east-1");
    assert_eq!(wire["resources"], json!(["arn:aws:orders:::o-1001"]));
    let time = envelope.time().unwrap().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(wire["time"], time.as_str());
    let delivery = got[0].event().unwrap().to_delivery().unwrap();
    assert_eq!(delivery.envelope, envelope);
    assert_eq!(delivery.meta.replay_name, None);
    assert_eq!(got[0].rule, "payments");
    assert_eq!(got[0].receive_count, 1);
}

#[tokio::test]
async fn an_entry_without_time_takes_the_time_of_the_call() {
    let t = open();
    route(&t.bus, "support", "OrderSupportPlaced", policy(3, 3600)).await;
    put(&t.bus, "OrderSupportPlaced", [json!({})]).await;
    let got = drain(&t.bus, "support").await;
    assert_eq!(got[0].event().unwrap().event.time.unwrap(), start_time());
}

#[tokio::test]
async fn rules_route_change_disable_and_enable() {
    let t = open();
    route(&t.bus, "payments", "SupportTriaged", policy(3, 3600)).await;
    put(&t.bus, "SupportTriaged", [json!({"n": 1})]).await;
    t.bus.disable_rule("payments").await.unwrap();
    assert_eq!(t.bus.describe_rule("payments").await.unwrap().state, RuleState::Disabled);
    put(&t.bus, "SupportTriaged", [json!({"n": 2})]).await;
    t.bus.enable_rule("payments").await.unwrap();
    put(&t.bus, "SupportTriaged", [json!({"n": 3})]).await;
    // Replacing the pattern reroutes at once.
    let pattern = json!({"detail": {"n": [{"numeric": [">", 3]}]}}).to_string();
    t.bus.put_rule(RuleSpec::new("payments", pattern)).await.unwrap();
    put(&t.bus, "SupportTriaged", [json!({"n": 4}), json!({"n": 1})]).await;
    let seen: Vec<Value> = drain(&t.bus, "payments").await.iter().map(|m| detail(m)["n"].clone()).collect();
    assert_eq!(seen, [json!(1), json!(3), json!(4)]);
}

#[tokio::test]
async fn one_event_reaches_every_matching_rule_and_target() {
    let t = open();
    route(&t.bus, "payments", "SupportTriaged", policy(3, 3600)).await;
    route(&t.bus, "orders", "SupportTriaged", policy(3, 3600)).await;
    t.bus.put_targets("orders", vec![Target::new("audit", "audit")]).await.unwrap();
    let ids = put(&t.bus, "SupportTriaged", [json!({})]).await;
    for inbox in ["payments", "orders", "audit"] {
        let got = drain(&t.bus, inbox).await;
        assert_eq!(got.len(), 1, "{inbox}");
        assert_eq!(event_id(&got[0]), ids[0], "{inbox}: the same event, the same id");
    }
}

#[tokio::test]
async fn rule_and_target_calls_refuse_what_eventbridge_refuses() {
    let t = open();
    let err = t.bus.put_rule(RuleSpec::new("bad", r#"{"detail-type": "SupportTriaged"}"#)).await.unwrap_err();
    assert!(err.to_string().starts_with("rule `bad`: invalid event pattern: at detail-type:"), "{err}");
    let err = t.bus.put_rule(RuleSpec::new("white space", "{}")).await.unwrap_err();
    assert!(err.to_string().contains("rule name `white space`"), "{err}");
    assert_eq!(
        t.bus.put_targets("missing", vec![Target::new("a", "a")]).await.unwrap_err(),
        BusError::RuleNotFound("missing".into())
    );
    route(&t.bus, "payments", "SupportTriaged", policy(3, 3600)).await;
    let four: Vec<Target> = (1..=4).map(|i| Target::new(format!("t{i}"), format!("in{i}"))).collect();
    t.bus.put_targets("payments", four).await.unwrap();
    let err = t.bus.put_targets("payments", vec![Target::new("t6", "in6")]).await.unwrap_err();
    assert_eq!(err, BusError::TooManyTargets { rule: "payments".into(), count: 6, limit: 5 });
    let err = t.bus.delete_rule("payments").await.unwrap_err();
    assert_eq!(err, BusError::RuleHasTargets { rule: "payments".into(), targets: 5 });
    let err =
        t.bus.put_targets("payments", vec![Target::new("self", "x").with_dead_letter_inbox("x")]).await.unwrap_err();
    assert!(err.to_string().contains("dead-letter inbox must differ"), "{err}");
    let mut bad_policy = policy(3, 3600);
    bad_policy.maximum_retry_attempts = 186;
    let err =
        t.bus.put_targets("payments", vec![Target::new("t1", "in1").with_retry_policy(bad_policy)]).await.unwrap_err();
    assert!(err.to_string().contains("MaximumRetryAttempts: 186 is out of range 0..=185"), "{err}");
    // A call naming a target the rule does not have changes nothing.
    let err = t.bus.remove_targets("payments", &["inbox".into(), "nope".into()]).await.unwrap_err();
    assert_eq!(err.to_string(), "invalid target `nope`: is not a target of rule `payments`");
    assert_eq!(t.bus.describe_rule("payments").await.unwrap().targets.len(), 5);
    let ids: Vec<String> = ["inbox", "t1", "t2", "t3", "t4"].map(String::from).to_vec();
    t.bus.remove_targets("payments", &ids).await.unwrap();
    t.bus.delete_rule("payments").await.unwrap();
    assert_eq!(t.bus.describe_rule("payments").await.unwrap_err(), BusError::RuleNotFound("payments".into()));
    assert!(t.bus.list_rules().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_event_no_rule_matches_is_accepted_and_kept_nowhere() {
    let t = open();
    route(&t.bus, "payments", "SupportTriaged", policy(3, 3600)).await;
    let ids = put(&t.bus, "Unrouted", [json!({})]).await;
    assert_eq!(ids.len(), 1);
    assert!(drain(&t.bus, "payments").await.is_empty());
}
