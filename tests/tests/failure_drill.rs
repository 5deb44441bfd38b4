//! The failure drill, with the real `choreo serve` and the real CLI: the seeded case runs while
//! the payments agent's tool is broken (the back office refuses every refund); the other agents
//! do their part; payments' event lands in its dead letters; the tool is fixed; a replay of the
//! case to payments only — or a redrive — completes the case with exactly one refund, the
//! orders agent not run again, and the customer told of the refund once. Two replays started
//! at the same time still refund once.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use choreo_bus::{Config, EmbeddedBus, Inboxes};
use choreo_tests::customer::*;
use choreo_tests::served::Served;
use serde_json::Value;

const MESSAGE: &str = "I was charged twice, and only the headphones arrived. I need it all by tomorrow.";
const FREEZE: &str =
    "CREATE TRIGGER drill BEFORE INSERT ON refunds BEGIN SELECT RAISE(ABORT, 'refunds are frozen'); END;";

struct Drill {
    served: Served,
    socket: Socket,
    token: String,
    case: String,
    seen: Vec<Value>,
    _dir: tempfile::TempDir,
}

fn backoffice(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("backoffice.db")).expect("open the back office")
}

fn cli(dir: &Path, args: &[&str]) -> Output {
    choreo_tests::choreo().args(args).arg("--data-dir").arg(dir).output().expect("run choreo")
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "choreo failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Polls `probe` until it answers `Some`, for at most [`WAIT`].
async fn until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The case runs with refunds frozen, until payments' event is dead-lettered and orders is done.
async fn broken_case() -> Drill {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path());
    backoffice(dir.path()).execute_batch(FREEZE).unwrap();
    let token = served.customer_token("c-1001");
    let mut socket = connect(&served, &token, None).await;
    let (status, accepted) = submit(&served, &token, "drill-1", "o-1001", MESSAGE).await;
    assert_eq!(status, 202, "{accepted}");
    let case = accepted["case_id"].as_str().unwrap().to_owned();
    let mut seen = Vec::new();
    while !events(&seen).contains(&"FulfilmentIssueResolved") {
        let n = next_notification(&mut socket).await;
        ack(&mut socket, n["seq"].as_u64().unwrap()).await;
        seen.push(n);
    }
    let dead = until("payments' dead letter", || {
        let list = json_of(&cli(dir.path(), &["dlq", "list", "--agent", "payments", "--json"]));
        (list.as_array().unwrap().len() == 1).then_some(list)
    })
    .await;
    assert_eq!(dead[0]["event_type"], "SupportTriaged", "{dead}");
    assert_eq!(dead[0]["error_code"], "TOOL_BROKEN", "{dead}");
    assert_eq!(dead[0]["correlation_id"], case.as_str());
    assert!(dead[0]["error_message"].as_str().unwrap().contains("refunds are frozen"), "{dead}");
    assert!(!events(&seen).contains(&"PaymentIssueResolved"), "{seen:?}");
    assert_eq!(refunds(dir.path()), 0);
    // Fixed.
    backoffice(dir.path()).execute_batch("DROP TRIGGER drill;").unwrap();
    Drill { served, socket, token, case, seen, _dir: dir }
}

fn refunds(dir: &Path) -> i64 {
    backoffice(dir).query_row("SELECT count(*) FROM refunds WHERE charge_id = 'ch-1001-b'", [], |r| r.get(0)).unwrap()
}

impl Drill {
    fn dir(&self) -> &Path {
        &self.served.data_dir
    }

    /// Notifications until the case's answer, then every queue drained: nothing is left to run.
    async fn finish(&mut self) {
        while !events(&self.seen).contains(&"OrderSupportCompleted") {
            let n = next_notification(&mut self.socket).await;
            assert_eq!(n["case"], self.case.as_str(), "{n}");
            ack(&mut self.socket, n["seq"].as_u64().unwrap()).await;
            self.seen.push(n);
        }
        let bus = EmbeddedBus::open(Config::new(self.dir())).unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let busy: Vec<_> = bus
                .list_inboxes()
                .await
                .unwrap()
                .into_iter()
                .filter(|i| !i.name.ends_with("-dlq") && i.visible + i.hidden > 0)
                .collect();
            if busy.is_empty() {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "inboxes never drained: {busy:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One refund, orders ran once, and the customer's whole history has each step once.
    async fn assert_exactly_once(&self) {
        assert_eq!(refunds(self.dir()), 1, "the duplicate charge must be refunded exactly once");
        let store = rusqlite::Connection::open(self.dir().join("agents.db")).unwrap();
        let orders: i64 =
            store.query_row("SELECT count(*) FROM processed WHERE agent = 'orders'", [], |r| r.get(0)).unwrap();
        assert_eq!(orders, 1, "orders handled the triage once and was not run again");
        let mut history = connect(&self.served, &self.token, Some(0)).await;
        let mut all = Vec::new();
        while !events(&all).contains(&"OrderSupportCompleted") {
            all.push(next_notification(&mut history).await);
        }
        let kinds = events(&all);
        for once in ["SupportTriaged", "FulfilmentIssueResolved", "PaymentIssueResolved", "OrderSupportCompleted"] {
            assert_eq!(kinds.iter().filter(|k| **k == once).count(), 1, "{once} in {kinds:?}");
        }
        let answer = all.last().unwrap()["data"]["answer"].as_str().unwrap();
        assert!(answer.contains("refund"), "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_to_payments_only_completes_the_case_with_one_refund() {
    let mut drill = broken_case().await;
    let dir = drill.dir().to_path_buf();
    let case = drill.case.clone();

    // The dry run says what the replay will do, and moves nothing.
    let dry = json_of(&cli(&dir, &["replay", "start", "--agent", "payments", "--case", &case, "--dry-run", "--json"]));
    let planned = dry["events"].as_array().unwrap();
    assert_eq!(planned.len(), 1, "{dry}");
    assert_eq!(planned[0]["type"], "SupportTriaged");
    let delivery = &planned[0]["deliveries"][0];
    assert_eq!(planned[0]["deliveries"].as_array().unwrap().len(), 1, "payments only: {dry}");
    assert_eq!((delivery["agent"].as_str(), delivery["rule"].as_str()), (Some("payments"), Some("agent-payments")));
    assert!(delivery["handled"].is_null(), "payments never finished it: {delivery}");
    assert_eq!(delivery["suppressed"], Value::Array(vec![]), "the failed refund left nothing in the ledger");
    assert_eq!(delivery["may_act"], serde_json::json!(["payments.refund_charge"]));
    assert_eq!(refunds(&dir), 0, "a dry run moves nothing");

    let done =
        json_of(&cli(&dir, &["replay", "start", "--agent", "payments", "--case", &case, "--name", "fix-1", "--json"]));
    assert_eq!(done["State"], "COMPLETED", "{done}");
    assert_eq!(done["Deliveries"], dry["events"][0]["deliveries"].as_array().unwrap().len(), "as the dry run said");
    drill.finish().await;
    drill.assert_exactly_once().await;

    // The dry run now sees the event handled and the refund in the ledger.
    let again =
        json_of(&cli(&dir, &["replay", "start", "--agent", "payments", "--case", &case, "--dry-run", "--json"]));
    let delivery = &again["events"][0]["deliveries"][0];
    assert_eq!(delivery["handled"], "completed", "{again}");
    let suppressed: Vec<&str> =
        delivery["suppressed"].as_array().unwrap().iter().map(|e| e["tool"].as_str().unwrap()).collect();
    assert!(suppressed.contains(&"payments.refund_charge"), "{again}");

    // The replay's temporary rule is gone; the old dead letter is still there until purged.
    let rules = EmbeddedBus::open(Config::new(&dir)).unwrap();
    let names: Vec<String> = choreo_bus::Bus::list_rules(&rules).await.unwrap().into_iter().map(|r| r.name).collect();
    assert!(names.iter().all(|n| !n.starts_with("replay.")), "{names:?}");
    let purge = cli(&dir, &["dlq", "purge", "--agent", "payments"]);
    assert_eq!(purge.status.code(), Some(2), "no terminal to confirm on: {purge:?}");
    assert!(String::from_utf8_lossy(&purge.stderr).contains("--yes"), "{purge:?}");
    let purge = cli(&dir, &["dlq", "purge", "--agent", "payments", "--yes", "--json"]);
    assert_eq!(json_of(&purge)["purged"], 1);
    assert_eq!(json_of(&cli(&dir, &["dlq", "list", "--agent", "payments", "--json"])), Value::Array(vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replays_started_at_once_still_refund_once() {
    let mut drill = broken_case().await;
    let dir = drill.dir().to_path_buf();
    let case = drill.case.clone();
    let start = |name: &str| {
        choreo_tests::choreo()
            .args(["replay", "start", "--agent", "payments", "--case", &case, "--name", name, "--json", "--data-dir"])
            .arg(&dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start choreo replay")
    };
    let (a, b) = (start("fix-a"), start("fix-b"));
    for replay in [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()] {
        let done = json_of(&replay);
        assert_eq!((done["State"].as_str(), done["Deliveries"].as_u64()), (Some("COMPLETED"), Some(1)), "{done}");
    }
    drill.finish().await;
    drill.assert_exactly_once().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_of_the_dead_letter_completes_the_case_with_one_refund() {
    let mut drill = broken_case().await;
    let dir = drill.dir().to_path_buf();
    let moved = json_of(&cli(&dir, &["dlq", "redrive", "--agent", "payments", "--case", &drill.case, "--json"]));
    assert_eq!(moved.as_array().unwrap().len(), 1, "{moved}");
    assert_eq!(moved[0]["inbox"], "agent-payments");
    drill.finish().await;
    drill.assert_exactly_once().await;
    assert_eq!(json_of(&cli(&dir, &["dlq", "list", "--agent", "payments", "--json"])), Value::Array(vec![]));
}
