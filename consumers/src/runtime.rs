//! The runtime in one process: subscribes every discovered agent to the bus (its rule, its
//! inbox as the rule's target) and runs one consumer loop per agent, concurrently.

use std::sync::Arc;
use std::time::Duration;

use choreo_bus::api::{RetryPolicy, RuleSpec, RuleState, Target};
use choreo_bus::{Bus, BusError, Inboxes};
use choreo_models::{BedrockModel, Model, ModelError, ModelSpec, OfflineModel, OpenAiModel, SCRIPT_FILE};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::consumer;
use crate::manifest::Agent;
use crate::observe::Observer;
use crate::runner::Services;

/// Creates or updates each agent's rule and target. Adding an agent folder adds its rule;
/// nothing else changes.
pub async fn install(bus: &dyn Bus, agents: &[Agent]) -> Result<(), BusError> {
    for agent in agents {
        let rule = agent.rule_name();
        bus.put_rule(RuleSpec {
            name: rule.clone(),
            event_pattern: agent.pattern.clone(),
            state: RuleState::Enabled,
            description: Some(agent.manifest.description.clone()),
        })
        .await?;
        bus.put_targets(&rule, vec![Target::new(agent.inbox(), agent.inbox()).with_retry_policy(retry_policy(agent))])
            .await?;
    }
    Ok(())
}

/// The retry policy of an agent's rule target: the manifest's attempts and event age, a
/// backoff from 200 ms doubling up to a minute.
pub fn retry_policy(agent: &Agent) -> RetryPolicy {
    RetryPolicy {
        maximum_retry_attempts: agent.manifest.retry.maximum_retry_attempts,
        maximum_event_age: Duration::from_secs(agent.manifest.retry.maximum_event_age_seconds),
        backoff_base: Duration::from_millis(200),
        backoff_cap: Duration::from_secs(60),
    }
}

/// The model the agents use. The offline model reads each agent's `offline.toml`; Bedrock
/// takes the standard AWS configuration (`AWS_ENDPOINT_URL_BEDROCK_RUNTIME` for a local
/// endpoint); OpenAI-compatible endpoints take `OPENAI_API_KEY` if set.
pub async fn connect_model(spec: &ModelSpec, agents: &[Agent]) -> Result<Arc<dyn Model>, ModelError> {
    Ok(match spec {
        ModelSpec::Offline => {
            let mut model = OfflineModel::new();
            for agent in agents {
                model
                    .load_script(agent.name(), &agent.dir.join(SCRIPT_FILE))
                    .map_err(|e| ModelError::Config { model: "offline".into(), message: e.to_string() })?;
            }
            Arc::new(model)
        }
        ModelSpec::Bedrock { model_id } => {
            let endpoint = std::env::var("AWS_ENDPOINT_URL_BEDROCK_RUNTIME").ok();
            Arc::new(BedrockModel::from_env(model_id.clone(), endpoint).await?)
        }
        ModelSpec::OpenAi { base_url, model } => {
            Arc::new(OpenAiModel::new(base_url, model.clone(), std::env::var("OPENAI_API_KEY").ok())?)
        }
    })
}

/// Running consumer loops, one per agent.
pub struct Runtime {
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    /// Flushed once the loops end, so the journal has every step of the work done.
    observer: Observer,
}

impl Runtime {
    /// Starts a consumer loop for each agent.
    pub fn spawn(services: Arc<Services>, inboxes: Arc<dyn Inboxes>, agents: Vec<Agent>) -> Self {
        let (shutdown, watch) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for agent in agents {
            tasks.spawn(consumer::consume(services.clone(), inboxes.clone(), Arc::new(agent), watch.clone()));
        }
        Self { shutdown, tasks, observer: services.observer.clone() }
    }

    /// Stops receiving; events in flight finish (or, if they cannot, return to their inbox
    /// when their visibility runs out); then the journal commits every step reported.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        self.observer.flush().await;
    }
}
