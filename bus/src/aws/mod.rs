//! The AWS backend: the same [`Bus`](crate::Bus) and [`Inboxes`](crate::Inboxes) on Amazon
//! EventBridge (one custom event bus, rules with SQS targets, archives, replays) and Amazon SQS
//! (an inbox queue and a dead-letter queue per target), through aws-sdk-eventbridge and
//! aws-sdk-sqs.
//!
//! How the embedded engine's semantics map onto the services:
//! - **A target** is an SQS queue. Its retry policy is EventBridge's for delivering to the queue
//!   (the target's `RetryPolicy` and `DeadLetterConfig`) and the queue's for its consumer: the
//!   queue's redrive policy moves a message to the dead-letter queue once it was received one
//!   time more than the retries allow (a consumer that crashed, or let its visibility run out),
//!   and its tags (`choreo:*`, see `queues`) give `nack` the backoff, the event age and the rule
//!   and target ARNs that a dead letter's reason names.
//! - **A nack** hides the message for the backoff (`ChangeMessageVisibility`), or, on a permanent
//!   failure or the last attempt, sends it to the dead-letter queue with EventBridge's reason
//!   attributes (`RULE_ARN`, `TARGET_ARN`, `ERROR_CODE`, `ERROR_MESSAGE`,
//!   `EXHAUSTED_RETRY_CONDITION`, `RETRY_ATTEMPTS`) and deletes it.
//! - **Entries** are checked here as EventBridge checks them, so a malformed one gets the same
//!   precise answer whatever the server does with it; the service's own per-entry answers are
//!   passed on.
//! - A replay's progress: EventBridge reports the time of the last event replayed, not counts;
//!   the counts of [`Replay`](crate::api::Replay) are 0 on this backend.

mod errors;
mod events;
mod matcher;
mod policy;
mod queues;
mod scan;
pub mod tables;

use std::collections::HashMap;
use std::sync::Mutex;

use aws_config::{BehaviorVersion, SdkConfig};

use crate::api::BusError;
pub use errors::{Call, ServiceError};
pub use matcher::{AwsMatcher, Verdict};
pub use policy::queue_tags;
use queues::{InFlight, Queue};

/// How to reach the services and what to call things there.
#[derive(Debug, Clone)]
pub struct AwsConfig {
    /// The custom event bus (`EventBusName`).
    pub bus_name: String,
    /// Put before every queue's name (a stage, a test's namespace): inbox `agent-payments` is
    /// queue `<prefix>agent-payments`. Inboxes are named without it everywhere else.
    pub queue_prefix: String,
    /// Another endpoint than AWS's own (a local AWS-compatible server), for both services.
    pub endpoint_url: Option<String>,
}

impl AwsConfig {
    /// The bus `bus_name` on AWS's endpoints, queues without a prefix.
    pub fn new(bus_name: impl Into<String>) -> Self {
        Self { bus_name: bus_name.into(), queue_prefix: String::new(), endpoint_url: None }
    }

    #[must_use]
    pub fn with_queue_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.queue_prefix = prefix.into();
        self
    }

    #[must_use]
    pub fn with_endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }
}

/// The bus on EventBridge and SQS.
#[derive(Debug)]
pub struct AwsBus {
    events: aws_sdk_eventbridge::Client,
    sqs: aws_sdk_sqs::Client,
    bus_name: String,
    bus_arn: String,
    queue_prefix: String,
    /// Queues looked up so far, by inbox name: their URL, ARN and Choreo policy.
    queues: Mutex<HashMap<String, Queue>>,
    /// Messages received and not settled yet, by receipt: what a nack needs of them.
    in_flight: Mutex<HashMap<String, InFlight>>,
}

impl AwsBus {
    /// Connects to an event bus that exists, with the standard AWS configuration (environment,
    /// profile, instance role). A missing region or bus is an error here, not at the first call.
    pub async fn connect(config: AwsConfig) -> Result<Self, BusError> {
        let sdk = load(&config).await?;
        Self::connect_with(&sdk, config).await
    }

    /// Connects to the event bus, creating it if it does not exist (a local server, a test, a
    /// first run; in production the deployment template creates it).
    pub async fn ensure(config: AwsConfig) -> Result<Self, BusError> {
        let sdk = load(&config).await?;
        Self::ensure_with(&sdk, config).await
    }

    /// [`AwsBus::ensure`] with an SDK configuration the caller built.
    pub async fn ensure_with(sdk: &SdkConfig, config: AwsConfig) -> Result<Self, BusError> {
        let bus = Self::clients(sdk, config)?;
        let created = bus.events.create_event_bus().name(&bus.bus_name).send().await;
        match created {
            Ok(_) => {}
            Err(e) if errors::code(&e) == Some("ResourceAlreadyExistsException") => {}
            Err(e) => return Err(Call::events("CreateEventBus", &bus.bus_name).fail(e)),
        }
        bus.resolved().await
    }

    /// Connects with an SDK configuration the caller built (custom credentials, tests).
    pub async fn connect_with(sdk: &SdkConfig, config: AwsConfig) -> Result<Self, BusError> {
        Self::clients(sdk, config)?.resolved().await
    }

    fn clients(sdk: &SdkConfig, config: AwsConfig) -> Result<Self, BusError> {
        if sdk.region().is_none() {
            return Err(BusError::Config(
                "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION) or a region in the AWS profile".into(),
            ));
        }
        let mut events = aws_sdk_eventbridge::config::Builder::from(sdk);
        let mut sqs = aws_sdk_sqs::config::Builder::from(sdk);
        if let Some(url) = &config.endpoint_url {
            events = events.endpoint_url(url);
            sqs = sqs.endpoint_url(url);
        }
        Ok(Self {
            events: aws_sdk_eventbridge::Client::from_conf(events.build()),
            sqs: aws_sdk_sqs::Client::from_conf(sqs.build()),
            bus_arn: String::new(),
            bus_name: config.bus_name,
            queue_prefix: config.queue_prefix,
            queues: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
        })
    }

    /// Looks the bus up: its ARN names it in archives and replays.
    async fn resolved(mut self) -> Result<Self, BusError> {
        let call = Call::events("DescribeEventBus", &self.bus_name);
        let found = self.events.describe_event_bus().name(&self.bus_name).send().await.map_err(|e| {
            if errors::code(&e) == Some("ResourceNotFoundException") {
                BusError::Config(format!(
                    "event bus `{}` does not exist in this account and region (deploy the template first)",
                    self.bus_name
                ))
            } else {
                call.fail(e)
            }
        })?;
        self.bus_arn = found.arn().map(str::to_owned).ok_or_else(|| call.odd("no ARN in the answer"))?;
        Ok(self)
    }

    pub fn bus_name(&self) -> &str {
        &self.bus_name
    }

    /// The event bus's ARN.
    pub fn arn(&self) -> &str {
        &self.bus_arn
    }

    /// The ARN of a rule of this bus, from the bus's own ARN.
    pub fn rule_arn(&self, rule: &str) -> String {
        // arn:aws:events:<region>:<account>:event-bus/<bus>  →  …:rule/<bus>/<rule>
        let head = self.bus_arn.rsplit_once(":event-bus/").map_or(self.bus_arn.as_str(), |(head, _)| head);
        format!("{head}:rule/{}/{rule}", self.bus_name)
    }

    /// The ARN of an archive or a replay in this bus's account and region.
    fn resource_arn(&self, kind: &str, name: &str) -> String {
        let head = self.bus_arn.rsplit_once(":event-bus/").map_or(self.bus_arn.as_str(), |(head, _)| head);
        format!("{head}:{kind}/{name}")
    }
}

/// The SDK configuration from the standard chain, pointed at `endpoint_url` if given.
async fn load(config: &AwsConfig) -> Result<SdkConfig, BusError> {
    if let Some(url) = &config.endpoint_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(BusError::Config(format!("endpoint url `{url}` is not an http(s) url")));
    }
    Ok(aws_config::defaults(BehaviorVersion::latest()).load().await)
}
