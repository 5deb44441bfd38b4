//! What happens after a failed attempt: retry after an exponential, jittered backoff, or
//! dead-letter when the target's retry policy is spent.

use serde::{Deserialize, Serialize};

use crate::api::{ExhaustedCondition, RetryPolicy};

/// A target's retry policy as each of its messages carries it, so a message keeps the policy
/// it was delivered under even if its rule changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredPolicy {
    /// Attempts in all: the first and its retries.
    pub max_attempts: u32,
    pub max_age_ms: i64,
    pub base_ms: i64,
    pub cap_ms: i64,
    pub dead_letter_inbox: String,
    pub rule_arn: String,
    pub target_arn: String,
}

impl StoredPolicy {
    pub fn new(policy: &RetryPolicy, dead_letter_inbox: &str, rule_arn: String, target_arn: String) -> Self {
        Self {
            max_attempts: policy.maximum_retry_attempts + 1,
            max_age_ms: policy.maximum_event_age.as_millis() as i64,
            base_ms: policy.backoff_base.as_millis().max(1) as i64,
            cap_ms: policy.backoff_cap.as_millis().max(1) as i64,
            dead_letter_inbox: dead_letter_inbox.to_owned(),
            rule_arn,
            target_arn,
        }
    }
}

/// What to do with a message whose attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    RetryAt(i64),
    /// `None`: a permanent failure, not retried.
    DeadLetter(Option<ExhaustedCondition>),
}

/// After attempt number `attempts` (1 for the first) failed at `now`.
pub(crate) fn after_failure(
    policy: &StoredPolicy,
    attempts: u32,
    ingested_ms: i64,
    now: i64,
    retryable: bool,
    rng: &mut fastrand::Rng,
) -> Next {
    if !retryable {
        return Next::DeadLetter(None);
    }
    if attempts >= policy.max_attempts {
        return Next::DeadLetter(Some(ExhaustedCondition::MaximumRetryAttempts));
    }
    let at = now.saturating_add(backoff(policy.base_ms, policy.cap_ms, attempts, rng));
    if at.saturating_sub(ingested_ms) > policy.max_age_ms {
        return Next::DeadLetter(Some(ExhaustedCondition::MaximumEventAgeInSeconds));
    }
    Next::RetryAt(at)
}

/// The delay after attempt `attempts`: `base · 2^(attempts-1)`, capped, then jittered to
/// between half and all of it, so that failed consumers do not come back in step.
pub(crate) fn backoff(base_ms: i64, cap_ms: i64, attempts: u32, rng: &mut fastrand::Rng) -> i64 {
    let exp = attempts.saturating_sub(1).min(40);
    let full = base_ms.saturating_mul(1i64 << exp).min(cap_ms).max(1);
    let half = full / 2;
    half + rng.i64(0..=full - half)
}

/// Retries of a dead-letter inbox's messages: back off, never dead-letter again.
pub(crate) fn dead_letter_backoff(attempts: u32, rng: &mut fastrand::Rng) -> i64 {
    let default = RetryPolicy::default();
    backoff(default.backoff_base.as_millis() as i64, default.backoff_cap.as_millis() as i64, attempts, rng)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn policy(retries: u32, age_s: u64) -> StoredPolicy {
        let p = RetryPolicy {
            maximum_retry_attempts: retries,
            maximum_event_age: Duration::from_secs(age_s),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
        };
        StoredPolicy::new(&p, "dlq", "rule".into(), "target".into())
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered_within_half_to_full() {
        let mut rng = fastrand::Rng::with_seed(7);
        for attempt in 1..=12u32 {
            let full = (1000i64 << (attempt - 1)).min(60_000);
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..200 {
                let d = backoff(1000, 60_000, attempt, &mut rng);
                assert!((full / 2..=full).contains(&d), "attempt {attempt}: {d} not in {}..={full}", full / 2);
                seen.insert(d);
            }
            assert!(seen.len() > 50, "attempt {attempt}: too little jitter ({} values)", seen.len());
        }
        assert!(backoff(1000, 60_000, u32::MAX, &mut rng) <= 60_000);
    }

    #[test]
    fn retries_until_attempts_or_age_run_out_and_permanent_failures_skip_them() {
        let mut rng = fastrand::Rng::with_seed(1);
        let p = policy(2, 3600);
        assert!(matches!(after_failure(&p, 1, 0, 0, true, &mut rng), Next::RetryAt(at) if (500..=1000).contains(&at)));
        assert!(matches!(after_failure(&p, 2, 0, 0, true, &mut rng), Next::RetryAt(at) if (1000..=2000).contains(&at)));
        assert_eq!(
            after_failure(&p, 3, 0, 0, true, &mut rng),
            Next::DeadLetter(Some(ExhaustedCondition::MaximumRetryAttempts))
        );
        assert_eq!(after_failure(&p, 1, 0, 0, false, &mut rng), Next::DeadLetter(None));
        let p = policy(185, 60);
        assert_eq!(
            after_failure(&p, 1, 0, 59_800, true, &mut rng),
            Next::DeadLetter(Some(ExhaustedCondition::MaximumEventAgeInSeconds))
        );
        assert!(matches!(after_failure(&p, 1, 0, 10_000, true, &mut rng), Next::RetryAt(_)));
    }
}
