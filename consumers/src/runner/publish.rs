//! Publishing an agent's event on the bus: one PutEvents entry, retried with backoff while the
//! bus says trying again may help, never reported published unless the bus accepted it.

use std::time::Duration;

use choreo_bus::Bus;
use choreo_bus::api::EntryResult;
use choreo_schemas::Envelope;
use choreo_schemas::eventbridge::PutEventsEntry;

use super::RunError;

const ATTEMPTS: u32 = 4;

/// Puts `envelope` on the bus. A refused entry is a permanent error (the event is wrong); a
/// bus that stays unavailable is a retryable one (the whole run is retried later).
pub async fn publish(bus: &dyn Bus, envelope: &Envelope) -> Result<(), RunError> {
    let entry = PutEventsEntry::from_envelope(envelope);
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            // Backoff between attempts: 20, 40, 80 ms.
            tokio::time::sleep(Duration::from_millis(10 << attempt)).await;
        }
        match bus.put_events(vec![entry.clone()]).await {
            Ok(output) => match output.entries.first() {
                Some(EntryResult::Accepted { .. }) => return Ok(()),
                Some(EntryResult::Failed { error_code, error_message }) if error_code.is_retryable() => {
                    last = format!("{error_code}: {error_message}");
                }
                Some(EntryResult::Failed { error_code, error_message }) => {
                    return Err(RunError::permanent(
                        "PUBLISH_REFUSED",
                        format!(
                            "the bus refused `{}` {}: {error_code}: {error_message}",
                            envelope.event_type(),
                            envelope.id()
                        ),
                    ));
                }
                None => last = "the bus answered no entry".into(),
            },
            Err(e) if e.is_retryable() => last = e.to_string(),
            Err(e) => return Err(RunError::retryable("BUS", e.to_string())),
        }
    }
    Err(RunError::retryable(
        "PUBLISH_FAILED",
        format!("`{}` {} not accepted: {last}", envelope.event_type(), envelope.id()),
    ))
}
