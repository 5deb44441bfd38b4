//! A rig for runtime tests: a temp data directory with the embedded bus, the seeded back
//! office, the runtime's store and the offline model over a folder of agents, on a clock
//! fixed at 2026-12-01 10:00 UTC.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use choreo_backoffice::{BackOffice, DataSet};
use choreo_bus::{Config, EmbeddedBus, ManualClock};
use choreo_consumers::cases::CaseInput;
use choreo_consumers::local::default_agents_dir;
use choreo_consumers::manifest::{self, Agent};
use choreo_consumers::observe::Observer;
use choreo_consumers::runner::Services;
use choreo_consumers::runtime;
use choreo_consumers::store::Store;
use choreo_consumers::tools::Registry;
use choreo_models::{Model, ModelSpec};
use choreo_schemas::Envelope;
use choreo_schemas::envelope::AuthType;
use chrono::{TimeZone, Utc};

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub bus: Arc<EmbeddedBus>,
    pub services: Arc<Services>,
    pub agents: Vec<Agent>,
    pub clock: ManualClock,
}

pub fn clock() -> ManualClock {
    ManualClock::new(Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap())
}

impl Rig {
    /// The agents of `consumers/agents` on the offline model.
    pub async fn new() -> Self {
        Self::with_agents(&default_agents_dir()).await
    }

    pub async fn with_agents(agents_dir: &Path) -> Self {
        let agents = manifest::discover(agents_dir).expect("agent folders");
        let model = runtime::connect_model(&ModelSpec::Offline, &agents).await.expect("offline model");
        Self::with_model(agents, model).await
    }

    pub async fn with_model(agents: Vec<Agent>, model: Arc<dyn Model>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = clock();
        let bus = Arc::new(
            EmbeddedBus::open(Config { clock: Arc::new(clock.clone()), ..Config::new(dir.path()) }).expect("bus"),
        );
        let backoffice = BackOffice::open(&dir.path().join("backoffice.db")).expect("back office");
        backoffice.load(&DataSet::seeded()).expect("seed");
        let store = Arc::new(Store::open(dir.path()).expect("store"));
        let services = Arc::new(Services {
            bus: bus.clone(),
            ledger: store.clone(),
            cases: store.clone(),
            store,
            backoffice: Arc::new(backoffice),
            tools: Arc::new(Registry::standard()),
            model,
            clock: Arc::new(clock.clone()),
            observer: Observer::default(),
        });
        Self { dir, bus, services, agents, clock }
    }

    pub fn agent(&self, name: &str) -> &Agent {
        self.agents.iter().find(|a| a.name() == name).unwrap_or_else(|| panic!("no agent {name}"))
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

/// The envelope of a case's event, on case `correlation`.
pub fn envelope(input: &CaseInput, correlation: &str) -> Envelope {
    let mut builder = Envelope::builder(&input.source, &input.event_type)
        .data(input.data.clone())
        .correlation_id(correlation)
        .time(clock_now());
    if let Some(order) = input.data["order_id"].as_str() {
        builder = builder.subject(format!("orders/{order}"));
    }
    if let Some(customer) = &input.customer {
        builder = builder.auth(AuthType::AppUser, customer);
    }
    builder.build().expect("case event")
}

fn clock_now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap()
}

/// Copies a folder tree (agent folders into a temp dir, to change one).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}
