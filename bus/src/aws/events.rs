//! EventBridge's side: events, rules and their SQS targets, archives, replays.

use std::collections::BTreeSet;

use async_trait::async_trait;
use aws_sdk_eventbridge::primitives::DateTime as AwsTime;
use aws_sdk_eventbridge::types as eb;
use choreo_schemas::eventbridge::PutEventsEntry;
use chrono::{DateTime, Utc};

use super::AwsBus;
use super::errors::{self, Call};
use super::policy::QueuePolicy;
use crate::api::*;
use crate::embedded::checks;

const NOT_FOUND: &str = "ResourceNotFoundException";
const EXISTS: &str = "ResourceAlreadyExistsException";

pub(super) fn to_aws(t: DateTime<Utc>) -> AwsTime {
    AwsTime::from_millis(t.timestamp_millis())
}

pub(super) fn from_aws(t: Option<&AwsTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| t.to_millis().ok()).and_then(DateTime::from_timestamp_millis)
}

/// What follows the last `/` of an ARN: a rule's, an archive's, a replay's or a queue's name.
fn name_of(arn: &str) -> &str {
    arn.rsplit(['/', ':']).next().unwrap_or(arn)
}

#[async_trait]
impl Bus for AwsBus {
    async fn put_events(&self, entries: Vec<PutEventsEntry>) -> Result<PutEventsOutput, BusError> {
        if entries.is_empty() {
            return Err(BusError::invalid("Entries", "at least one entry is required"));
        }
        if entries.len() > MAX_ENTRIES {
            return Err(BusError::TooManyEntries { count: entries.len(), limit: MAX_ENTRIES });
        }
        // Checked here as EventBridge checks them; only the valid ones are sent.
        let mut answers: Vec<Option<EntryResult>> = vec![None; entries.len()];
        let mut sent = Vec::with_capacity(entries.len());
        let mut request = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            if let Err((error_code, error_message)) = checks::entry(i, e, &self.bus_name, &self.bus_arn) {
                answers[i] = Some(EntryResult::Failed { error_code, error_message });
                continue;
            }
            sent.push(i);
            request.push(
                eb::PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus_name)
                    .source(&e.source)
                    .detail_type(&e.detail_type)
                    .detail(&e.detail)
                    .set_time(e.time.map(to_aws))
                    .set_resources((!e.resources.is_empty()).then(|| e.resources.clone()))
                    .set_trace_header(e.trace_header.clone())
                    .build(),
            );
        }
        if !request.is_empty() {
            let call = Call::events("PutEvents", &self.bus_name);
            let out = self.events.put_events().set_entries(Some(request)).send().await.map_err(|e| call.fail(e))?;
            let results = out.entries();
            if results.len() != sent.len() {
                return Err(call.odd(&format!("{} answers to {} entries", results.len(), sent.len())));
            }
            for (&i, r) in sent.iter().zip(results) {
                answers[i] = Some(match (r.event_id(), r.error_code()) {
                    (Some(id), None) => EntryResult::Accepted { event_id: id.to_owned() },
                    (_, code) => EntryResult::Failed {
                        error_code: entry_code(code.unwrap_or("InternalFailure")),
                        error_message: format!(
                            "Entries[{i}]: {}: {}",
                            code.unwrap_or("no event id"),
                            r.error_message().unwrap_or("")
                        ),
                    },
                });
            }
        }
        let unanswered = || EntryResult::Failed {
            error_code: ErrorCode::InternalFailure,
            error_message: "the entry got no answer".into(),
        };
        let entries: Vec<EntryResult> = answers.into_iter().map(|a| a.unwrap_or_else(unanswered)).collect();
        let failed_entry_count = entries.iter().filter(|e| e.event_id().is_none()).count();
        Ok(PutEventsOutput { failed_entry_count, entries })
    }

    async fn put_rule(&self, rule: RuleSpec) -> Result<String, BusError> {
        checks::rule(&rule)?;
        let call = Call::events("PutRule", &rule.name);
        let out = self
            .events
            .put_rule()
            .event_bus_name(&self.bus_name)
            .name(&rule.name)
            .event_pattern(&rule.event_pattern)
            .state(eb::RuleState::from(rule.state.as_str()))
            .set_description(rule.description.clone())
            .send()
            .await
            .map_err(|e| match errors::code(&e) {
                Some("InvalidEventPatternException") => BusError::InvalidPattern {
                    rule: rule.name.clone(),
                    reason: errors::message(&e).unwrap_or("refused").to_owned(),
                },
                _ => call.fail(e),
            })?;
        out.rule_arn().map(str::to_owned).ok_or_else(|| call.odd("no RuleArn in the answer"))
    }

    async fn delete_rule(&self, name: &str) -> Result<(), BusError> {
        // EventBridge refuses to delete a rule with targets; said here as the embedded bus says it.
        let targets = self.targets_of(name).await?;
        if !targets.is_empty() {
            return Err(BusError::RuleHasTargets { rule: name.to_owned(), targets: targets.len() });
        }
        let call = Call::events("DeleteRule", name);
        self.events
            .delete_rule()
            .event_bus_name(&self.bus_name)
            .name(name)
            .send()
            .await
            .map_err(|e| rule_error(&call, name, e))?;
        Ok(())
    }

    async fn set_rule_state(&self, name: &str, state: RuleState) -> Result<(), BusError> {
        match state {
            RuleState::Enabled => {
                let call = Call::events("EnableRule", name);
                let sent = self.events.enable_rule().event_bus_name(&self.bus_name).name(name).send().await;
                sent.map(drop).map_err(|e| rule_error(&call, name, e))
            }
            RuleState::Disabled => {
                let call = Call::events("DisableRule", name);
                let sent = self.events.disable_rule().event_bus_name(&self.bus_name).name(name).send().await;
                sent.map(drop).map_err(|e| rule_error(&call, name, e))
            }
        }
    }

    async fn describe_rule(&self, name: &str) -> Result<Rule, BusError> {
        let call = Call::events("DescribeRule", name);
        let out = self
            .events
            .describe_rule()
            .event_bus_name(&self.bus_name)
            .name(name)
            .send()
            .await
            .map_err(|e| rule_error(&call, name, e))?;
        let targets = self.targets_of(name).await?;
        Ok(Rule {
            name: name.to_owned(),
            arn: out.arn().map_or_else(|| self.rule_arn(name), str::to_owned),
            event_pattern: out.event_pattern().unwrap_or_default().to_owned(),
            state: rule_state(out.state()),
            description: out.description().map(str::to_owned),
            targets,
        })
    }

    async fn list_rules(&self) -> Result<Vec<Rule>, BusError> {
        let call = &Call::events("ListRules", &self.bus_name);
        let names = every_page(|token| async move {
            let list = self.events.list_rules().event_bus_name(&self.bus_name).set_next_token(token);
            let out = list.send().await.map_err(|e| call.fail(e))?;
            let names = out.rules().iter().filter_map(|r| r.name().map(str::to_owned)).collect();
            Ok((names, out.next_token().map(str::to_owned)))
        })
        .await?;
        let mut rules = Vec::with_capacity(names.len());
        for name in names {
            rules.push(self.describe_rule(&name).await?);
        }
        rules.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(rules)
    }

    async fn put_targets(&self, rule: &str, targets: Vec<Target>) -> Result<(), BusError> {
        checks::targets(&targets)?;
        let existing = self.targets_of(rule).await?;
        let ids: BTreeSet<&str> =
            existing.iter().map(|t| t.id.as_str()).chain(targets.iter().map(|t| t.id.as_str())).collect();
        if ids.len() > MAX_TARGETS_PER_RULE {
            return Err(BusError::TooManyTargets {
                rule: rule.to_owned(),
                count: ids.len(),
                limit: MAX_TARGETS_PER_RULE,
            });
        }
        let rule_arn = self.rule_arn(rule);
        let mut request = Vec::with_capacity(targets.len());
        for t in &targets {
            let dead = self.ensure_queue(&t.dead_letter_inbox, None).await?;
            let policy = QueuePolicy::new(&t.retry_policy, &t.dead_letter_inbox, &rule_arn, &t.id);
            let queue = self.ensure_queue(&t.inbox, Some((&policy, &dead.arn))).await?;
            let retry = eb::RetryPolicy::builder()
                .maximum_retry_attempts(t.retry_policy.maximum_retry_attempts as i32)
                .maximum_event_age_in_seconds(t.retry_policy.maximum_event_age.as_secs() as i32)
                .build();
            let target = eb::Target::builder()
                .id(&t.id)
                .arn(&queue.arn)
                .retry_policy(retry)
                .dead_letter_config(eb::DeadLetterConfig::builder().arn(&dead.arn).build())
                .build()
                .map_err(|e| BusError::invalid(format!("target `{}`", t.id), e.to_string()))?;
            request.push(target);
        }
        let call = Call::events("PutTargets", rule);
        let out = self
            .events
            .put_targets()
            .event_bus_name(&self.bus_name)
            .rule(rule)
            .set_targets(Some(request))
            .send()
            .await
            .map_err(|e| rule_error(&call, rule, e))?;
        match out.failed_entries().first() {
            None => Ok(()),
            Some(f) => {
                let resource = format!("{rule}/{}", f.target_id().unwrap_or("?"));
                let (code, message) = (f.error_code().unwrap_or("Unknown"), f.error_message().unwrap_or_default());
                Err(Call::events("PutTargets", &resource).failure(code.to_owned(), message.to_owned(), false))
            }
        }
    }

    async fn remove_targets(&self, rule: &str, ids: &[String]) -> Result<(), BusError> {
        let call = Call::events("RemoveTargets", rule);
        let out = self
            .events
            .remove_targets()
            .event_bus_name(&self.bus_name)
            .rule(rule)
            .set_ids(Some(ids.to_vec()))
            .send()
            .await
            .map_err(|e| rule_error(&call, rule, e))?;
        match out.failed_entries().first() {
            None => Ok(()),
            Some(f) => {
                let resource = format!("{rule}/{}", f.target_id().unwrap_or("?"));
                let (code, message) = (f.error_code().unwrap_or("Unknown"), f.error_message().unwrap_or_default());
                Err(Call::events("RemoveTargets", &resource).failure(code.to_owned(), message.to_owned(), false))
            }
        }
    }

    async fn create_archive(&self, archive: ArchiveSpec) -> Result<String, BusError> {
        checks::archive(&archive)?;
        let call = Call::events("CreateArchive", &archive.name);
        let out = self
            .events
            .create_archive()
            .archive_name(&archive.name)
            .event_source_arn(&self.bus_arn)
            .set_event_pattern(archive.event_pattern.clone())
            .retention_days(archive.retention_days as i32)
            .set_description(archive.description.clone())
            .send()
            .await
            .map_err(|e| match errors::code(&e) {
                Some(EXISTS) => BusError::ArchiveExists(archive.name.clone()),
                _ => call.fail(e),
            })?;
        Ok(out.archive_arn().map_or_else(|| self.resource_arn("archive", &archive.name), str::to_owned))
    }

    async fn delete_archive(&self, name: &str) -> Result<(), BusError> {
        let call = Call::events("DeleteArchive", name);
        self.events.delete_archive().archive_name(name).send().await.map_err(|e| match errors::code(&e) {
            Some(NOT_FOUND) => BusError::ArchiveNotFound(name.to_owned()),
            _ => call.fail(e),
        })?;
        Ok(())
    }

    async fn describe_archive(&self, name: &str) -> Result<Archive, BusError> {
        let call = Call::events("DescribeArchive", name);
        let a = self.events.describe_archive().archive_name(name).send().await.map_err(|e| match errors::code(&e) {
            Some(NOT_FOUND) => BusError::ArchiveNotFound(name.to_owned()),
            _ => call.fail(e),
        })?;
        Ok(Archive {
            name: name.to_owned(),
            arn: a.archive_arn().map_or_else(|| self.resource_arn("archive", name), str::to_owned),
            event_pattern: a.event_pattern().filter(|p| !p.is_empty()).map(str::to_owned),
            retention_days: a.retention_days().unwrap_or(0).max(0) as u32,
            description: a.description().filter(|d| !d.is_empty()).map(str::to_owned),
            state: a.state().map_or("ENABLED", |s| s.as_str()).to_owned(),
            event_count: a.event_count().max(0) as u64,
            size_bytes: a.size_bytes().max(0) as u64,
            creation_time: from_aws(a.creation_time()).unwrap_or_default(),
        })
    }

    async fn list_archives(&self) -> Result<Vec<Archive>, BusError> {
        let call = &Call::events("ListArchives", &self.bus_name);
        let names: Vec<String> = every_page(|token| async move {
            let list = self.events.list_archives().event_source_arn(&self.bus_arn).set_next_token(token);
            let out = list.send().await.map_err(|e| call.fail(e))?;
            let names = out.archives().iter().filter_map(|a| a.archive_name().map(str::to_owned)).collect();
            Ok((names, out.next_token().map(str::to_owned)))
        })
        .await?;
        let mut archives = Vec::with_capacity(names.len());
        for name in names {
            archives.push(self.describe_archive(&name).await?);
        }
        archives.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(archives)
    }

    async fn start_replay(&self, spec: ReplaySpec) -> Result<Replay, BusError> {
        checks::replay(&spec)?;
        let archive = self.describe_archive(&spec.archive).await?;
        let mut filter = None;
        if let Some(rules) = &spec.rules {
            let mut arns = Vec::with_capacity(rules.len());
            for rule in rules {
                arns.push(self.describe_rule(rule).await?.arn);
            }
            filter = Some(arns);
        }
        let destination = eb::ReplayDestination::builder()
            .arn(&self.bus_arn)
            .set_filter_arns(filter)
            .build()
            .map_err(|e| BusError::invalid("Destination", e.to_string()))?;
        let call = Call::events("StartReplay", &spec.name);
        self.events
            .start_replay()
            .replay_name(&spec.name)
            .set_description(spec.description.clone())
            .event_source_arn(&archive.arn)
            .event_start_time(to_aws(spec.event_start_time))
            .event_end_time(to_aws(spec.event_end_time))
            .destination(destination)
            .send()
            .await
            .map_err(|e| match errors::code(&e) {
                Some(EXISTS) => BusError::ReplayExists(spec.name.clone()),
                Some(NOT_FOUND) => BusError::ArchiveNotFound(spec.archive.clone()),
                Some("LimitExceededException") => {
                    BusError::TooManyReplays { active: MAX_ACTIVE_REPLAYS, limit: MAX_ACTIVE_REPLAYS }
                }
                _ => call.fail(e),
            })?;
        self.describe_replay(&spec.name).await
    }

    async fn describe_replay(&self, name: &str) -> Result<Replay, BusError> {
        let call = Call::events("DescribeReplay", name);
        let r = self.events.describe_replay().replay_name(name).send().await.map_err(|e| match errors::code(&e) {
            Some(NOT_FOUND) => BusError::ReplayNotFound(name.to_owned()),
            _ => call.fail(e),
        })?;
        let state = r.state().and_then(|s| ReplayState::parse(s.as_str())).ok_or_else(|| call.odd("no state"))?;
        let rules = r
            .destination()
            .map(|d| d.filter_arns())
            .filter(|arns| !arns.is_empty())
            .map(|arns| arns.iter().map(|a| name_of(a).to_owned()).collect());
        Ok(Replay {
            name: name.to_owned(),
            arn: r.replay_arn().map_or_else(|| self.resource_arn("replay", name), str::to_owned),
            archive: r.event_source_arn().map(name_of).unwrap_or_default().to_owned(),
            description: r.description().filter(|d| !d.is_empty()).map(str::to_owned),
            state,
            state_reason: r.state_reason().filter(|s| !s.is_empty()).map(str::to_owned),
            event_start_time: from_aws(r.event_start_time()).unwrap_or_default(),
            event_end_time: from_aws(r.event_end_time()).unwrap_or_default(),
            rules,
            event_last_replayed_time: from_aws(r.event_last_replayed_time()),
            // EventBridge reports no counts.
            events_total: 0,
            events_replayed: 0,
            deliveries: 0,
            replay_start_time: from_aws(r.replay_start_time()).unwrap_or_default(),
            replay_end_time: from_aws(r.replay_end_time()),
        })
    }

    async fn cancel_replay(&self, name: &str) -> Result<ReplayState, BusError> {
        let call = Call::events("CancelReplay", name);
        let sent = self.events.cancel_replay().replay_name(name).send().await;
        match sent {
            Ok(out) => Ok(out.state().and_then(|s| ReplayState::parse(s.as_str())).unwrap_or(ReplayState::Cancelling)),
            Err(e) => Err(match errors::code(&e) {
                Some(NOT_FOUND) => BusError::ReplayNotFound(name.to_owned()),
                Some("IllegalStatusException") => {
                    let state = self.describe_replay(name).await?.state;
                    BusError::ReplayNotCancellable { name: name.to_owned(), state: state.as_str().to_owned() }
                }
                _ => call.fail(e),
            }),
        }
    }

    async fn list_replays(&self) -> Result<Vec<Replay>, BusError> {
        let call = &Call::events("ListReplays", &self.bus_name);
        let names: Vec<String> = every_page(|token| async move {
            let out = self.events.list_replays().set_next_token(token).send().await.map_err(|e| call.fail(e))?;
            let names = out.replays().iter().filter_map(|r| r.replay_name().map(str::to_owned)).collect();
            Ok((names, out.next_token().map(str::to_owned)))
        })
        .await?;
        let mut replays = Vec::with_capacity(names.len());
        for name in names {
            replays.push(self.describe_replay(&name).await?);
        }
        replays.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(replays)
    }
}

impl AwsBus {
    /// A rule's targets, read back as [`Target`]s (their queues' Choreo policy included).
    async fn targets_of(&self, rule: &str) -> Result<Vec<Target>, BusError> {
        let call = &Call::events("ListTargetsByRule", rule);
        let found: Vec<eb::Target> = every_page(|token| async move {
            let list = self.events.list_targets_by_rule().event_bus_name(&self.bus_name).rule(rule);
            let out = list.set_next_token(token).send().await.map_err(|e| rule_error(call, rule, e))?;
            Ok((out.targets().to_vec(), out.next_token().map(str::to_owned)))
        })
        .await?;
        let mut targets = Vec::with_capacity(found.len());
        for t in found {
            let inbox = self.inbox_of(name_of(t.arn())).to_owned();
            let queue = self.queue(&inbox).await?;
            let mut target = Target::new(t.id(), inbox);
            if let Some(policy) = &queue.policy {
                target = target.with_retry_policy(policy.retry_policy()).with_dead_letter_inbox(&policy.dead_letter);
            }
            if let Some(dead) = t.dead_letter_config().and_then(|d| d.arn()) {
                target.dead_letter_inbox = self.inbox_of(name_of(dead)).to_owned();
            }
            if let Some(r) = t.retry_policy() {
                if let Some(n) = r.maximum_retry_attempts() {
                    target.retry_policy.maximum_retry_attempts = n.max(0) as u32;
                }
                if let Some(s) = r.maximum_event_age_in_seconds() {
                    target.retry_policy.maximum_event_age = std::time::Duration::from_secs(s.max(0) as u64);
                }
            }
            targets.push(target);
        }
        targets.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(targets)
    }
}

fn rule_error<E: errors::ServiceError>(call: &Call<'_>, rule: &str, e: errors::Failed<E>) -> BusError {
    match errors::code(&e) {
        Some(NOT_FOUND) => BusError::RuleNotFound(rule.to_owned()),
        _ => call.fail(e),
    }
}

/// Every item of a listing that answers a page at a time, each page asked with the token the
/// last one ended with.
async fn every_page<T, F, Fut>(mut page: F) -> Result<Vec<T>, BusError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<String>), BusError>>,
{
    let (mut items, mut token) = (Vec::new(), None);
    loop {
        let (found, next) = page(token).await?;
        items.extend(found);
        match next {
            Some(next) => token = Some(next),
            None => return Ok(items),
        }
    }
}

fn rule_state(state: Option<&eb::RuleState>) -> RuleState {
    match state {
        Some(eb::RuleState::Disabled) => RuleState::Disabled,
        _ => RuleState::Enabled,
    }
}

/// A per-entry error code as [`ErrorCode`]; one this backend does not know is an internal
/// failure (retried by the publisher), its text kept in the message.
fn entry_code(code: &str) -> ErrorCode {
    match code {
        "InvalidArgument" | "ValidationException" => ErrorCode::InvalidArgument,
        "MalformedDetail" => ErrorCode::MalformedDetail,
        "NotAuthorizedForSourceException" | "AccessDeniedException" => ErrorCode::NotAuthorizedForSourceException,
        "ThrottlingException" => ErrorCode::ThrottlingException,
        _ => ErrorCode::InternalFailure,
    }
}
