//! Following a replay to its end, and removing the temporary rules of replays that ended.

use std::time::Duration;

use choreo_bus::api::Replay;
use choreo_bus::{Bus, BusError};

use crate::ReplayError;
use crate::plan::{CREATED, TEMPORARY_RULE_PREFIX};

/// Reports the replay's progress to `progress` until it ends or `deadline` passes; answers its
/// last state. A replay that ended has its temporary rules removed.
pub async fn follow(
    bus: &dyn Bus,
    name: &str,
    poll: Duration,
    deadline: Option<tokio::time::Instant>,
    mut progress: impl FnMut(&Replay),
) -> Result<Replay, ReplayError> {
    loop {
        let replay = bus.describe_replay(name).await?;
        progress(&replay);
        if !replay.state.is_active() {
            sweep(bus).await?;
            return Ok(replay);
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return Ok(replay);
        }
        tokio::time::sleep(poll).await;
    }
}

/// A temporary rule whose replay does not exist is left this long: the replay may be about to
/// start (another process made the rule a moment ago).
const GRACE_MS: i64 = 5 * 60 * 1000;

/// Removes the temporary rules of case replays that have ended (or that never started); answers
/// how many were removed.
pub async fn sweep(bus: &dyn Bus) -> Result<usize, ReplayError> {
    let mut removed = 0;
    let now = chrono::Utc::now().timestamp_millis();
    for rule in bus.list_rules().await? {
        let Some(rest) = rule.name.strip_prefix(TEMPORARY_RULE_PREFIX) else { continue };
        let Some((replay, _)) = rest.rsplit_once('.') else { continue };
        let created = rule
            .description
            .as_deref()
            .and_then(|d| d.rsplit_once(CREATED))
            .and_then(|(_, ms)| ms.parse::<i64>().ok())
            .unwrap_or(0);
        let ended = match bus.describe_replay(replay).await {
            Ok(r) => !r.state.is_active(),
            Err(BusError::ReplayNotFound(_)) => now - created > GRACE_MS,
            Err(e) => return Err(e.into()),
        };
        if ended {
            remove_rule(bus, &rule.name).await;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Removes a rule and its targets; a failure is logged, and the next sweep tries again.
pub(crate) async fn remove_rule(bus: &dyn Bus, name: &str) {
    let result = async {
        let rule = bus.describe_rule(name).await?;
        let ids: Vec<String> = rule.targets.iter().map(|t| t.id.clone()).collect();
        if !ids.is_empty() {
            bus.remove_targets(name, &ids).await?;
        }
        bus.delete_rule(name).await
    }
    .await;
    match result {
        Ok(()) | Err(BusError::RuleNotFound(_)) => {}
        Err(e) => eprintln!("warning: temporary rule `{name}` was not removed ({e}); the next replay command retries"),
    }
}
