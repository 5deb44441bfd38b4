//! The effect ledger's contract, the same assertions on the agents' store (SQLite, the
//! embedded default) and on a DynamoDB table (ministack, a real AWS-compatible server): claim,
//! settle, release, record once under a race, the completions an event's run recorded; and the
//! table's errors, named.

use std::sync::Arc;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use choreo_consumers::store::{Claim, ClaimMeta, DynamoLedger, Ledger, Store, effect_key};
use choreo_tests::ministack::Ministack;
use serde_json::{Value, json};

fn meta<'a>(agent: &'a str, event: &'a str, tool: &'a str, args: &'a Value) -> ClaimMeta<'a> {
    ClaimMeta { agent, event_id: event, correlation_id: "case-1", tool, args }
}

/// What every ledger does, whatever keeps it.
async fn contract(ledger: Arc<dyn Ledger>) {
    let name = ledger.name();
    let args = json!({"charge_id": "ch-1001-b", "reason": "duplicate"});
    let refund = effect_key("ev-1", "payments.refund_charge", &args);
    let m = meta("payments", "ev-1", "payments.refund_charge", &args);

    // The first claim acts; a second one, before the first settles, is in doubt.
    assert_eq!(ledger.claim(&refund, &m).await.unwrap(), Claim::Fresh, "{name}");
    assert!(matches!(ledger.claim(&refund, &m).await.unwrap(), Claim::InDoubt { started_at_ms } if started_at_ms > 0));
    // Settled, every later claim gets the result back and acts nowhere.
    ledger.settle(&refund, &m, &json!({"refund_id": "rf-1"})).await.unwrap();
    for _ in 0..2 {
        assert_eq!(ledger.claim(&refund, &m).await.unwrap(), Claim::Done(json!({"refund_id": "rf-1"})), "{name}");
    }
    // A release after the effect is settled gives nothing back.
    ledger.release(&refund, &m).await.unwrap();
    assert!(matches!(ledger.claim(&refund, &m).await.unwrap(), Claim::Done(_)), "{name}");

    // A claim released (the call certainly did not act) may be taken again.
    let args2 = json!({"order_id": "o-1001", "sku": "SKU-SPEAKER-02", "quantity": 1});
    let ship = effect_key("ev-1", "orders.create_shipment", &args2);
    let m2 = meta("orders", "ev-1", "orders.create_shipment", &args2);
    assert_eq!(ledger.claim(&ship, &m2).await.unwrap(), Claim::Fresh);
    ledger.release(&ship, &m2).await.unwrap();
    assert_eq!(ledger.claim(&ship, &m2).await.unwrap(), Claim::Fresh, "{name}: taken again after its release");

    // Eight runs race to record one completion: one wins, the seven others get its record.
    let done = json!({"id": "c-1", "type": "PaymentIssueResolved", "correlationid": "case-1"});
    let key = effect_key("ev-1", "complete.PaymentIssueResolved", &Value::Null);
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let (ledger, key, done) = (ledger.clone(), key.clone(), done.clone());
            tokio::spawn(async move {
                let mine = json!({"id": format!("c-{}", i + 1), "type": "PaymentIssueResolved"});
                let m = meta("payments", "ev-1", "complete.PaymentIssueResolved", &Value::Null);
                let recorded = ledger.record_once(&key, &m, if i == 0 { &done } else { &mine }).await.unwrap();
                (recorded, if i == 0 { done } else { mine })
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut answers = Vec::new();
    for racer in racers {
        match racer.await.unwrap() {
            (None, mine) => winners.push(mine),
            (Some(theirs), _) => answers.push(theirs),
        }
    }
    assert_eq!(winners.len(), 1, "{name}: exactly one run records the completion");
    assert!(answers.iter().all(|a| a == &winners[0]), "{name}: the others get the winner's record");

    // Another agent's completion of the same event, an escalation of another event.
    let other = effect_key("ev-1", "complete.FulfilmentIssueResolved", &Value::Null);
    let mo = meta("orders", "ev-1", "complete.FulfilmentIssueResolved", &Value::Null);
    assert_eq!(ledger.record_once(&other, &mo, &json!({"id": "f-1"})).await.unwrap(), None);
    let escalate = effect_key("ev-2", "case.escalate", &Value::Null);
    let me = meta("payments", "ev-2", "case.escalate", &Value::Null);
    assert_eq!(ledger.record_once(&escalate, &me, &json!({"id": "x-1"})).await.unwrap(), None);

    // What an earlier delivery recorded, where the ledger is shared beyond the store.
    if let Some(recorded) = ledger.recorded("payments", "ev-1").await.unwrap() {
        let seen: Vec<(&str, &str, &Value)> =
            recorded.iter().map(|r| (r.key.as_str(), r.tool.as_str(), &r.envelope)).collect();
        assert_eq!(seen, [(key.as_str(), "complete.PaymentIssueResolved", &winners[0])], "{name}");
        let escalated = ledger.recorded("payments", "ev-2").await.unwrap().unwrap();
        assert_eq!(escalated.len(), 1);
        assert_eq!(escalated[0].tool, "case.escalate");
        assert!(ledger.recorded("inventory", "ev-1").await.unwrap().unwrap().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_keeps_the_ledgers_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    contract(store.clone()).await;
    // The store's own read of the ledger saw all of it: one suppression per answered claim.
    let effects = store.effects("case-1").unwrap();
    let refund = effects.iter().find(|e| e.tool == "payments.refund_charge").unwrap();
    assert_eq!(refund.suppressed, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamodb_table_keeps_the_ledgers_contract() {
    let Some(server) = Ministack::start() else { return };
    let ledger = DynamoLedger::new(&server.sdk_config(), "choreo-ledger").unwrap();
    ledger.ensure_table().await.unwrap();
    ledger.ensure_table().await.expect("making it again is no error");
    contract(Arc::new(ledger)).await;

    // The items as an operator reads them: the refund settled, its suppressions counted.
    let client = aws_sdk_dynamodb::Client::new(&server.sdk_config());
    let args = json!({"charge_id": "ch-1001-b", "reason": "duplicate"});
    let sk = effect_key("ev-1", "payments.refund_charge", &args).split_once('|').unwrap().1.to_owned();
    let item = client
        .get_item()
        .table_name("choreo-ledger")
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S("ev-1".into()))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S(sk))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("the refund's item");
    let s = |name: &str| item[name].as_s().unwrap().clone();
    let n = |name: &str| item[name].as_n().unwrap().clone();
    assert_eq!((s("state"), s("agent"), s("correlation_id")), ("done".into(), "payments".into(), "case-1".into()));
    assert_eq!(serde_json::from_str::<Value>(&s("result")).unwrap(), json!({"refund_id": "rf-1"}));
    assert_eq!(n("suppressed"), "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tables_errors_name_it_and_say_whether_to_try_again() {
    let args = Value::Null;
    let m = meta("payments", "ev-1", "payments.refund_charge", &args);
    let key = effect_key("ev-1", "payments.refund_charge", &args);

    // No region: said before any call.
    let bare = SdkConfig::builder().behavior_version(BehaviorVersion::latest()).build();
    let err = DynamoLedger::new(&bare, "t").err().expect("no region").to_string();
    assert!(err.contains("DynamoDB table `t`") && err.contains("no AWS region"), "{err}");

    // An endpoint that is down: worth another try (the delivery is retried, not dead-lettered).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let down = Ministack::sdk_config_for(&format!("http://127.0.0.1:{port}"), Region::new("us-east-1"));
    let ledger = DynamoLedger::new(&down, "choreo-ledger").unwrap();
    let err = ledger.claim(&key, &m).await.unwrap_err();
    assert!(err.retryable, "{err}");
    assert!(err.to_string().contains("DynamoDB table `choreo-ledger`") && err.to_string().contains("PutItem"), "{err}");

    // A table that does not exist: named, and not retryable.
    let Some(server) = Ministack::start() else { return };
    let ledger = DynamoLedger::new(&server.sdk_config(), "no-such-table").unwrap();
    let err = ledger.claim(&key, &m).await.unwrap_err();
    assert!(!err.retryable, "{err}");
    let text = err.to_string();
    assert!(text.contains("DynamoDB table `no-such-table`") && text.contains("ResourceNotFoundException"), "{text}");
}
