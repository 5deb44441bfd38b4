//! A target's Choreo policy as its SQS queue keeps it, in tags (`choreo:*`): the retry
//! policy's attempts, event age and backoff, the dead-letter inbox, the rule's ARN and the
//! target's id, which `nack` needs and SQS does not keep.

use std::collections::HashMap;
use std::time::Duration;

use crate::api::RetryPolicy;
use crate::retry::StoredPolicy;

const TAG_ATTEMPTS: &str = "choreo:max-attempts";
const TAG_AGE: &str = "choreo:max-age-s";
const TAG_BASE: &str = "choreo:backoff-base-ms";
const TAG_CAP: &str = "choreo:backoff-cap-ms";
const TAG_DEAD: &str = "choreo:dead-letter-inbox";
const TAG_RULE: &str = "choreo:rule-arn";
const TAG_TARGET: &str = "choreo:target-id";

/// A target's policy, as the queue's tags keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueuePolicy {
    pub(crate) max_attempts: u32,
    max_age_s: u64,
    base_ms: u64,
    cap_ms: u64,
    pub(crate) dead_letter: String,
    pub(crate) rule_arn: String,
    pub(crate) target_id: String,
}

impl QueuePolicy {
    pub(crate) fn new(policy: &RetryPolicy, dead_letter: &str, rule_arn: &str, target_id: &str) -> Self {
        Self {
            max_attempts: policy.maximum_retry_attempts + 1,
            max_age_s: policy.maximum_event_age.as_secs(),
            base_ms: policy.backoff_base.as_millis() as u64,
            cap_ms: policy.backoff_cap.as_millis() as u64,
            dead_letter: dead_letter.to_owned(),
            rule_arn: rule_arn.to_owned(),
            target_id: target_id.to_owned(),
        }
    }

    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            maximum_retry_attempts: self.max_attempts.saturating_sub(1),
            maximum_event_age: Duration::from_secs(self.max_age_s),
            backoff_base: Duration::from_millis(self.base_ms),
            backoff_cap: Duration::from_millis(self.cap_ms),
        }
    }

    pub(crate) fn tags(&self) -> HashMap<String, String> {
        HashMap::from([
            (TAG_ATTEMPTS.to_owned(), self.max_attempts.to_string()),
            (TAG_AGE.to_owned(), self.max_age_s.to_string()),
            (TAG_BASE.to_owned(), self.base_ms.to_string()),
            (TAG_CAP.to_owned(), self.cap_ms.to_string()),
            (TAG_DEAD.to_owned(), self.dead_letter.clone()),
            (TAG_RULE.to_owned(), self.rule_arn.clone()),
            (TAG_TARGET.to_owned(), self.target_id.clone()),
        ])
    }

    pub(crate) fn from_tags(tags: &HashMap<String, String>) -> Option<Self> {
        let number = |k: &str| tags.get(k)?.parse::<u64>().ok();
        Some(Self {
            max_attempts: u32::try_from(number(TAG_ATTEMPTS)?).ok()?,
            max_age_s: number(TAG_AGE)?,
            base_ms: number(TAG_BASE)?,
            cap_ms: number(TAG_CAP)?,
            dead_letter: tags.get(TAG_DEAD)?.clone(),
            rule_arn: tags.get(TAG_RULE)?.clone(),
            target_id: tags.get(TAG_TARGET)?.clone(),
        })
    }

    pub(crate) fn stored(&self, target_arn: &str) -> StoredPolicy {
        StoredPolicy {
            max_attempts: self.max_attempts,
            max_age_ms: (self.max_age_s * 1000) as i64,
            base_ms: self.base_ms.max(1) as i64,
            cap_ms: self.cap_ms.max(1) as i64,
            dead_letter_inbox: self.dead_letter.clone(),
            rule_arn: self.rule_arn.clone(),
            target_arn: target_arn.to_owned(),
        }
    }

    pub(crate) fn rule_name(&self) -> &str {
        self.rule_arn.rsplit('/').next().unwrap_or_default()
    }
}

/// The tags a target's queue carries for this backend (`choreo:*`), for a deployment template
/// to set them as `put_targets` would.
pub fn queue_tags(
    policy: &RetryPolicy,
    dead_letter_inbox: &str,
    rule_arn: &str,
    target_id: &str,
) -> std::collections::BTreeMap<String, String> {
    QueuePolicy::new(policy, dead_letter_inbox, rule_arn, target_id).tags().into_iter().collect()
}
