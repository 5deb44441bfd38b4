//! EventBridge's own event-pattern matcher, through its `TestEventPattern` API: for
//! `choreo pattern check --backend aws`, to hold a pattern (or the embedded engine) against the
//! service's answers.
//!
//! EventBridge requires the event to be a whole EventBridge event (`id`, `account`, `source`,
//! `time`, `region`, `resources`, `detail-type`) and answers an event without them with a
//! `ValidationException`; a local server may accept less.

use aws_config::SdkConfig;

use super::errors::{self, Call};
use super::{AwsConfig, load};
use crate::api::BusError;

/// What EventBridge said of one pattern and one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Match,
    Miss,
    /// The pattern is rejected (`InvalidEventPatternException`): the service's message.
    Invalid(String),
    /// The request is rejected for another reason of its own (the event not an EventBridge
    /// event, say: `ValidationException`): the code and message.
    Rejected(String),
}

/// EventBridge's matcher.
#[derive(Debug, Clone)]
pub struct AwsMatcher {
    events: aws_sdk_eventbridge::Client,
}

impl AwsMatcher {
    /// The matcher of the EventBridge the standard AWS configuration reaches (or the server at
    /// `config.endpoint_url`).
    pub async fn connect(config: &AwsConfig) -> Result<Self, BusError> {
        Self::with(&load(config).await?, config)
    }

    /// [`AwsMatcher::connect`] with an SDK configuration the caller built.
    pub fn with(sdk: &SdkConfig, config: &AwsConfig) -> Result<Self, BusError> {
        if sdk.region().is_none() {
            return Err(BusError::Config(
                "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION) or a region in the AWS profile".into(),
            ));
        }
        let mut events = aws_sdk_eventbridge::config::Builder::from(sdk);
        if let Some(url) = &config.endpoint_url {
            events = events.endpoint_url(url);
        }
        Ok(Self { events: aws_sdk_eventbridge::Client::from_conf(events.build()) })
    }

    /// Asks EventBridge whether `event` matches `pattern` (both JSON text, sent as given). An
    /// error is one no line can be blamed for (the endpoint, credentials, throttling left after
    /// the SDK's retries).
    pub async fn test(&self, pattern: &str, event: &str) -> Result<Verdict, BusError> {
        let answer = self.events.test_event_pattern().event_pattern(pattern).event(event).send().await;
        match answer {
            Ok(out) => Ok(if out.result { Verdict::Match } else { Verdict::Miss }),
            Err(e) => match errors::code(&e) {
                Some("InvalidEventPatternException") => {
                    Ok(Verdict::Invalid(errors::message(&e).unwrap_or("the pattern is invalid").to_owned()))
                }
                Some(code @ "ValidationException") => {
                    Ok(Verdict::Rejected(format!("{code}: {}", errors::message(&e).unwrap_or("rejected"))))
                }
                _ => Err(Call::events("TestEventPattern", "the event pattern").fail(e)),
            },
        }
    }
}
