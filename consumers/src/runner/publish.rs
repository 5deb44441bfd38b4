//! Publishing an agent's event on the bus through the one publisher
//! ([`choreo_bus::publisher`]): retried with backoff while the bus says trying again may help,
//! never reported published unless the bus accepted it.

use std::time::Duration;

use choreo_bus::Bus;
use choreo_bus::publisher::{Outcome, PublishError, RetryPolicy, publish_on};
use choreo_schemas::Envelope;

use super::RunError;

/// Four attempts, 10-20 ms then up to 80 ms apart: an agent's run is retried whole later (its
/// message goes back to its inbox) when the bus stays unavailable longer.
const RETRY: RetryPolicy =
    RetryPolicy { max_attempts: 4, base_backoff: Duration::from_millis(20), max_backoff: Duration::from_millis(80) };

/// Puts `envelope` on the bus. A refused entry is a permanent error (the event is wrong); a
/// bus that stays unavailable is a retryable one (the whole run is retried later). The runner
/// checked the data against its schema already (the completion tool's input schema).
pub async fn publish(bus: &dyn Bus, envelope: &Envelope) -> Result<(), RunError> {
    let what = format!("`{}` {}", envelope.event_type(), envelope.id());
    let outcome = match publish_on(bus, &RETRY, std::slice::from_ref(envelope), false).await {
        Ok(mut outcomes) => outcomes.pop(),
        Err(PublishError::Unavailable { source, .. }) if !source.is_retryable() => {
            return Err(RunError::retryable("BUS", source.to_string()));
        }
        Err(PublishError::Unavailable { source, .. }) => {
            return Err(RunError::retryable("PUBLISH_FAILED", format!("{what} not accepted: {source}")));
        }
    };
    let retryable = outcome.as_ref().is_none_or(Outcome::is_retryable);
    match outcome {
        Some(Outcome::Published { .. }) => Ok(()),
        Some(Outcome::Refused { reason }) => {
            Err(RunError::permanent("PUBLISH_REFUSED", format!("the bus refused {what}: {reason}")))
        }
        Some(Outcome::Failed { code, message, attempts }) if retryable => Err(RunError::retryable(
            "PUBLISH_FAILED",
            format!("{what} not accepted after {attempts} attempts: {code}: {message}"),
        )),
        Some(Outcome::Failed { code, message, .. }) => {
            Err(RunError::permanent("PUBLISH_REFUSED", format!("the bus refused {what}: {code}: {message}")))
        }
        None => Err(RunError::retryable("PUBLISH_FAILED", format!("{what}: the bus answered no entry"))),
    }
}
