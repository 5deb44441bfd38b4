//! The whole choreography in one process on the embedded default: the bus on SQLite, the
//! back office, the runtime's store, every agent folder, and the model. Used by `choreo demo`,
//! the end-to-end tests and the benchmarks.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use choreo_backoffice::{BackOffice, BackOfficeError, DataSet};
use choreo_bus::api::ArchiveSpec;
use choreo_bus::{Bus, BusError, Clock, Config, EmbeddedBus, Inboxes, SystemClock};
use choreo_models::{Model, ModelError, ModelSpec};
use choreo_schemas::catalog::{Channel, OrderSupportPlaced};
use choreo_schemas::envelope::{AuthType, Budget};
use choreo_schemas::{Envelope, EnvelopeBuilder};
use chrono::NaiveDate;

use crate::journal::{Journal, otlp};
use crate::manifest::{self, Agent, ManifestError};
use crate::observe::Observer;
use crate::runner::{self, RunError, Services};
use crate::runtime::{self, Runtime};
use crate::store::{CaseStore, Ledger, Store, StoreError};
use crate::tools::Registry;

/// The archive every event of the local bus goes to, for replays.
pub const ARCHIVE: &str = "choreo";
/// The file of the back office in a data directory.
pub const BACKOFFICE_FILE: &str = "backoffice.db";

/// The agent folders of this source tree, the default when none is given.
pub fn default_agents_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("agents")
}

/// How to start.
pub struct Options {
    pub data_dir: PathBuf,
    pub agents_dir: PathBuf,
    pub model: ModelSpec,
    pub clock: Arc<dyn Clock>,
    /// Loaded into a new back office; the seeded data set unless said.
    pub data_set: Option<DataSet>,
    /// Wraps the model (instrumentation, fault injection in drills), like a tower layer.
    pub model_layer: Option<ModelLayer>,
    /// Keep every step in the journal (`journal.db`, read by `choreo trace`).
    pub journal: bool,
    /// Export each agent run's spans there as it ends (needs the journal); by default from
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub otlp: Option<otlp::Endpoint>,
    /// Run a consumer loop per agent (the default). Off where something else hands the agents
    /// their messages: a Lambda function fed by its queue (`crate::lambda`).
    pub consume: bool,
    /// Put the agents' rules and queues, and the archive, on the bus (the default). Off where a
    /// deployment template made them (`choreo infra synth`).
    pub subscribe: bool,
    /// The effect ledger, where not the agents' store (`<data-dir>/agents.db`): a table that
    /// every instance of the agents shares ([`crate::store::DynamoLedger`]).
    pub ledger: Option<Arc<dyn Ledger>>,
    /// The case store, where not the agents' store: a table every instance of every agent
    /// shares (the same [`crate::store::DynamoLedger`]).
    pub cases: Option<Arc<dyn CaseStore>>,
}

/// A function that wraps the model the agents use.
pub type ModelLayer = Box<dyn FnOnce(Arc<dyn Model>) -> Arc<dyn Model> + Send>;

impl Options {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            agents_dir: default_agents_dir(),
            model: ModelSpec::Offline,
            clock: Arc::new(SystemClock),
            data_set: None,
            model_layer: None,
            journal: true,
            otlp: otlp::Endpoint::from_env(),
            consume: true,
            subscribe: true,
            ledger: None,
            cases: None,
        }
    }
}

/// Why the local system could not start or take a request.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    #[error("back office: {0}")]
    BackOffice(#[from] BackOfficeError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("model: {0}")]
    Model(#[from] ModelError),
    #[error("publish: {0}")]
    Publish(#[from] RunError),
    #[error("no agent folder under {}", .0.display())]
    NoAgents(PathBuf),
    #[error("{0}")]
    Event(String),
    #[error(transparent)]
    Export(#[from] otlp::ExportError),
}

/// Everything running, on the embedded bus unless started on another (`Local::start_on`).
pub struct Local<B = EmbeddedBus> {
    pub bus: Arc<B>,
    pub services: Arc<Services>,
    pub agents: Vec<Agent>,
    runtime: Runtime,
}

impl Local {
    /// Opens (or creates) the data directory, subscribes every agent and starts them.
    pub async fn start(options: Options) -> Result<Self, LocalError> {
        let agents = discover(&options.agents_dir)?;
        let bus =
            Arc::new(EmbeddedBus::open(Config { clock: options.clock.clone(), ..Config::new(&options.data_dir) })?);
        Self::assemble(options, agents, bus).await
    }
}

fn discover(agents_dir: &Path) -> Result<Vec<Agent>, LocalError> {
    let agents = manifest::discover(agents_dir)?;
    if agents.is_empty() {
        return Err(LocalError::NoAgents(agents_dir.to_owned()));
    }
    Ok(agents)
}

impl<B: Bus + Inboxes + 'static> Local<B> {
    /// The same on another bus (the AWS backend: EventBridge and SQS): the agents' rules and
    /// queues are put there, the archive made if missing; the store, the journal and the back
    /// office stay in the data directory.
    pub async fn start_on(options: Options, bus: Arc<B>) -> Result<Self, LocalError> {
        let agents = discover(&options.agents_dir)?;
        Self::assemble(options, agents, bus).await
    }

    async fn assemble(options: Options, agents: Vec<Agent>, bus: Arc<B>) -> Result<Self, LocalError> {
        let mut model = runtime::connect_model(&options.model, &agents).await?;
        if let Some(layer) = options.model_layer {
            model = layer(model);
        }
        if options.subscribe {
            if let Err(e) = bus.describe_archive(ARCHIVE).await {
                if matches!(e, BusError::ArchiveNotFound(_)) {
                    bus.create_archive(ArchiveSpec::new(ARCHIVE)).await?;
                } else {
                    return Err(e.into());
                }
            }
            runtime::install(bus.as_ref(), &agents).await?;
        }
        let backoffice = BackOffice::open(&options.data_dir.join(BACKOFFICE_FILE))?;
        backoffice_seed(&backoffice, options.data_set)?;
        let store = Arc::new(Store::open(&options.data_dir)?);
        let mut observer = Observer::default();
        if options.journal {
            let exporter = options.otlp.as_ref().map(otlp::Exporter::new).transpose()?;
            observer = observer.with_journal(Journal::open(&store, exporter)?);
        }
        let ledger: Arc<dyn Ledger> = options.ledger.unwrap_or_else(|| store.clone());
        let cases: Arc<dyn CaseStore> = options.cases.unwrap_or_else(|| store.clone());
        let services = Arc::new(Services {
            bus: bus.clone(),
            store,
            ledger,
            cases,
            backoffice: Arc::new(backoffice),
            tools: Arc::new(Registry::standard()),
            model,
            clock: options.clock,
            observer,
        });
        let inboxes: Arc<dyn Inboxes> = bus.clone();
        let consumed = if options.consume { agents.clone() } else { Vec::new() };
        let runtime = Runtime::spawn(services.clone(), inboxes, consumed);
        Ok(Self { bus, services, agents, runtime })
    }

    /// Publishes a customer's support request, as the ingest API would, and answers it.
    pub async fn submit(&self, request: &SupportRequest) -> Result<Envelope, LocalError> {
        let data = OrderSupportPlaced {
            order_id: request.order_id.clone(),
            message: request.message.clone(),
            needed_by: request.needed_by,
            channel: Channel::Web,
        };
        let envelope = EnvelopeBuilder::of("retail.support-api", &data)
            .subject(format!("orders/{}", request.order_id))
            .auth(AuthType::AppUser, &request.customer)
            .budget(request.budget)
            .traceparent(choreo_schemas::envelope::new_traceparent())
            .time(self.services.clock.now())
            .build()
            .map_err(|e| LocalError::Event(e.to_string()))?;
        choreo_schemas::catalog::validate_envelope(&envelope).map_err(|e| LocalError::Event(e.to_string()))?;
        runner::publish(self.bus.as_ref(), &envelope).await?;
        Ok(envelope)
    }

    /// Stops the agents; events in flight finish, and their steps are in the journal (and
    /// their spans exported) when it returns.
    pub async fn shutdown(self) {
        self.runtime.shutdown().await;
    }
}

fn backoffice_seed(backoffice: &BackOffice, data_set: Option<DataSet>) -> Result<(), BackOfficeError> {
    // A back office that has its data already (a data directory used before) is kept as is.
    match backoffice.load(&data_set.unwrap_or_else(DataSet::seeded)) {
        Ok(()) | Err(BackOfficeError::Invalid { field: "data_set", .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A customer's request for help with an order.
#[derive(Debug, Clone)]
pub struct SupportRequest {
    pub customer: String,
    pub order_id: String,
    pub message: String,
    pub needed_by: Option<NaiveDate>,
    pub budget: Budget,
}

impl SupportRequest {
    /// The seeded case: `c-1001` was charged twice for `o-1001`, received one of its two
    /// items, and needs the order by `needed_by` (tomorrow).
    pub fn seeded(needed_by: NaiveDate) -> Self {
        Self {
            customer: "c-1001".into(),
            order_id: "o-1001".into(),
            message: "I was charged twice for my Black Friday order, and only the headphones arrived — \
                      the speaker is missing. It's a gift: I need everything by tomorrow."
                .into(),
            needed_by: Some(needed_by),
            budget: Budget::default(),
        }
    }
}
