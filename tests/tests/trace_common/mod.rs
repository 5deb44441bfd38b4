//! The seeded case run in-process (`Local` with the notifier beside it), with payments'
//! model throttled once after its refund so that the bus redelivers the event and the ledger
//! answers the refund the second time. Shared by the `choreo trace` tests.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use choreo_auth::Issuer;
use choreo_bus::Inboxes;
use choreo_consumers::journal::otlp::Endpoint;
use choreo_consumers::local::{Local, Options, SupportRequest};
use choreo_consumers::observe::StepKind;
use choreo_models::{Model, ModelError, ModelRequest, ModelResponse};
use choreo_schemas::Envelope;
use chrono::Days;
use tokio::sync::broadcast::error::RecvError;

pub const DEADLINE: Duration = Duration::from_secs(60);

/// Payments' third model call (the one after its refund) fails once, retryably.
struct ThrottleAfterRefund {
    inner: Arc<dyn Model>,
    payments_calls: AtomicU32,
}

#[async_trait]
impl Model for ThrottleAfterRefund {
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn converse(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError> {
        if request.agent == "payments" && self.payments_calls.fetch_add(1, Ordering::SeqCst) == 2 {
            return Err(ModelError::Throttled {
                model: self.inner.name(),
                message: "slow down (injected by the test)".into(),
                retry_after: None,
            });
        }
        self.inner.converse(request).await
    }
}

/// A payments model that refunds every duplicate it sees, refunded already or not (as a real
/// model may): on a redelivery, only the effect ledger stands between it and a second refund.
const NAIVE_PAYMENTS: &str = r#"
[[rule]]
when = 'calls["payments.list_charges"] is undefined'
tool = "payments.list_charges"
input = '{"order_id": {{ event.data.order_id | tojson }}}'

[[rule]]
when = 'calls["payments.refund_charge"] is undefined'
for_each = 'results["payments.list_charges"].charges | selectattr("duplicate_of") | list'
tool = "payments.refund_charge"
input = '{"charge_id": {{ item.charge_id | tojson }}, "reason": {{ ("duplicate of " ~ item.duplicate_of) | tojson }}}'

[[rule]]
tool = "complete.PaymentIssueResolved"
input = '''{"order_id": {{ event.data.order_id | tojson }}, "outcome": "refunded",
  "refunds": [{%- for r in all_results["payments.refund_charge"] %}{"charge_id": {{ r.charge_id | tojson }}, "refund_id": {{ r.refund_id | tojson }}, "amount": {"amount_minor": {{ r.amount_minor }}, "currency": {{ r.currency | tojson }}}}{{ "," if not loop.last }}{% endfor %}],
  "summary": "We refunded the duplicate charge."}'''
"#;

/// The agent folders with the naive payments script, in `dir`.
pub fn naive_agents(dir: &Path) {
    copy_dir(&choreo_consumers::local::default_agents_dir(), dir);
    std::fs::write(dir.join("payments/offline.toml"), NAIVE_PAYMENTS).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Options for the seeded case in `dir`: journal on, no span export unless `otlp`. With
/// `redeliver_from` (agent folders from [`naive_agents`]), payments is throttled once after
/// its refund, so the bus redelivers the event and the ledger answers the refund again.
pub fn options(dir: &Path, redeliver_from: Option<&Path>, otlp: Option<Endpoint>) -> Options {
    let mut options = Options::new(dir);
    options.otlp = otlp;
    if let Some(agents) = redeliver_from {
        options.agents_dir = agents.to_owned();
        options.model_layer = Some(Box::new(|inner| {
            Arc::new(ThrottleAfterRefund { inner, payments_calls: AtomicU32::new(0) }) as Arc<dyn Model>
        }));
    }
    options
}

/// A running system with the notifier's consumer beside it.
pub struct Running {
    pub local: Local,
    notifier: choreo_notifier::Consumer,
}

impl Running {
    pub async fn start(options: Options) -> Running {
        let dir = options.data_dir.clone();
        let local = Local::start(options).await.expect("start the agents");
        let issuer = Issuer::open_or_create(&dir).expect("the local issuer");
        let notifier = choreo_notifier::Notifier::open(&dir, issuer.verifier()).expect("open the notifier");
        choreo_notifier::install(local.bus.as_ref()).await.expect("subscribe the notifier");
        let inboxes: Arc<dyn Inboxes> = local.bus.clone();
        let notifier = notifier.spawn(inboxes);
        Running { local, notifier }
    }

    /// Submits the seeded case and waits until support publishes its answer and the notifier
    /// has stored it for the customer. Answers the placed event.
    pub async fn seeded_case(&self) -> Envelope {
        let today = chrono::Utc::now().date_naive();
        self.case(&SupportRequest::seeded(today.checked_add_days(Days::new(1)).unwrap_or(today))).await
    }

    /// Submits `request` and waits as [`Running::seeded_case`] does.
    pub async fn case(&self, request: &SupportRequest) -> Envelope {
        let mut steps = self.local.services.observer.subscribe();
        let placed = self.local.submit(request).await.expect("submit the case");
        let case = placed.correlation_id().unwrap_or(placed.id()).to_owned();
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let step = match tokio::time::timeout_at(deadline, steps.recv()).await.expect("the case completes in time")
            {
                Ok(step) => step,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => panic!("the runtime stopped before the case completed"),
            };
            if step.correlation_id != case {
                continue;
            }
            assert!(
                !matches!(&step.kind, StepKind::Published { event_type, .. } if event_type == "CaseEscalated"),
                "the case was escalated"
            );
            if matches!(&step.kind, StepKind::Published { event_type, .. } if event_type == "OrderSupportCompleted") {
                break;
            }
        }
        self.notified(&case, "OrderSupportCompleted", deadline).await;
        placed
    }

    /// Waits until the notifier has stored `event_type` of `case` for its customer.
    pub async fn notified(&self, case: &str, event_type: &str, deadline: tokio::time::Instant) {
        let dir = self.local.services.store.path().parent().expect("the data directory").to_owned();
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            let stored = choreo_notifier::case_notifications(&dir, case).expect("read the notifications");
            if stored.is_some_and(|list| list.iter().any(|n| n.event_type == event_type)) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "the notifier did not store {event_type} in time");
            tick.tick().await;
        }
    }

    pub async fn shutdown(self) {
        self.local.shutdown().await;
        self.notifier.shutdown().await;
    }
}

/// Runs the seeded case (redelivered once) on `dir` in a runtime of its own, to its end and
/// a graceful stop; answers the placed event.
pub fn run_seeded(dir: &Path) -> Envelope {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let agents = tempfile::tempdir().unwrap();
    naive_agents(agents.path());
    runtime.block_on(async {
        let running = Running::start(options(dir, Some(agents.path()), None)).await;
        let placed = running.seeded_case().await;
        running.shutdown().await;
        placed
    })
}

/// `choreo --data-dir <dir> trace <args…>`, with no OTLP endpoint from the environment.
pub fn trace(dir: &Path, args: &[&str]) -> choreo_tests::Run {
    let mut cmd = choreo_tests::choreo();
    cmd.env_remove("OTEL_EXPORTER_OTLP_ENDPOINT").env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    cmd.arg("--data-dir").arg(dir).arg("trace").args(args);
    choreo_tests::run_command(&mut cmd, b"")
}
