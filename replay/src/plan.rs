//! A replay request checked against the bus before anything moves: the window, the name, the
//! archive, the rules, and for one case the temporary rules that narrow each destination.

use std::collections::BTreeSet;

use choreo_bus::api::{ReplaySpec, Rule, RuleSpec, RuleState};
use choreo_bus::pattern::Pattern;
use choreo_bus::{Bus, BusError};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::ReplayError;

/// Temporary rules of case replays are named `<prefix><replay>.<n>`.
pub const TEMPORARY_RULE_PREFIX: &str = "replay.";
const MAX_RULE_NAME: usize = 64;
/// Where a temporary rule's description says when it was made (milliseconds since the epoch).
pub(crate) const CREATED: &str = "created at ms ";

/// What an operator asks for, with names already resolved to rules.
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    pub name: String,
    pub archive: String,
    /// The rules that get the events (an agent's rule, or named rules).
    pub rules: BTreeSet<String>,
    /// One case only: its correlationid and when its first event happened.
    pub case: Option<(String, DateTime<Utc>)>,
    /// The window; the start defaults to the case's first event, the end to `now`.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
    pub description: Option<String>,
}

/// A destination rule and, for a case replay, the temporary rule that stands in for it.
#[derive(Debug, Clone)]
pub struct Destination {
    pub rule: Rule,
    pub temporary: Option<RuleSpec>,
}

impl Destination {
    /// The rule the replay names, and the pattern its events must match there.
    pub fn replayed_rule(&self) -> (&str, &str) {
        match &self.temporary {
            Some(t) => (&t.name, &t.event_pattern),
            None => (&self.rule.name, &self.rule.event_pattern),
        }
    }
}

/// A replay ready to start.
#[derive(Debug, Clone)]
pub struct Plan {
    pub spec: ReplaySpec,
    pub destinations: Vec<Destination>,
    pub case: Option<String>,
}

/// Checks `request` against the bus; answers the plan, having changed nothing.
pub async fn plan(bus: &dyn Bus, request: ReplayRequest) -> Result<Plan, ReplayError> {
    let ReplayRequest { name, archive, rules, case, from, to, now, description } = request;
    check_name(&name)?;
    let start = from.or(case.as_ref().map(|(_, first)| *first)).ok_or_else(|| {
        ReplayError::Invalid("give the window's start (--from or --since), or a case (--case)".into())
    })?;
    let end = to.unwrap_or(now);
    let at = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    if start > end {
        return Err(ReplayError::Invalid(format!(
            "the window is reversed: it starts at {} and ends at {}",
            at(start),
            at(end)
        )));
    }
    if end > now {
        return Err(ReplayError::Invalid(format!(
            "the window ends at {}, in the future (now is {}): nothing is archived there yet",
            at(end),
            at(now)
        )));
    }
    match bus.describe_replay(&name).await {
        Ok(_) => return Err(ReplayError::NameInUse(name)),
        Err(BusError::ReplayNotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    match bus.describe_archive(&archive).await {
        Ok(_) => {}
        Err(BusError::ArchiveNotFound(_)) => {
            let known: Vec<String> = bus.list_archives().await?.into_iter().map(|a| a.name).collect();
            return Err(ReplayError::Unknown(format!(
                "archive `{archive}` does not exist (archives: {})",
                list_or_none(&known)
            )));
        }
        Err(e) => return Err(e.into()),
    }
    if rules.is_empty() {
        return Err(ReplayError::Invalid("name an agent or at least one rule to replay to".into()));
    }
    let mut destinations = Vec::with_capacity(rules.len());
    for (n, rule_name) in rules.iter().enumerate() {
        let rule = match bus.describe_rule(rule_name).await {
            Ok(rule) => rule,
            Err(BusError::RuleNotFound(_)) => {
                let known: Vec<String> = bus
                    .list_rules()
                    .await?
                    .into_iter()
                    .map(|r| r.name)
                    .filter(|r| !r.starts_with(TEMPORARY_RULE_PREFIX))
                    .collect();
                return Err(ReplayError::Unknown(format!(
                    "rule `{rule_name}` does not exist (rules: {})",
                    list_or_none(&known)
                )));
            }
            Err(e) => return Err(e.into()),
        };
        if rule.targets.is_empty() {
            return Err(ReplayError::Invalid(format!(
                "rule `{rule_name}` has no target: nothing would receive the events"
            )));
        }
        let temporary = match &case {
            Some((case_id, _)) => Some(temporary_rule(&name, n, &rule, case_id, now)?),
            None => None,
        };
        destinations.push(Destination { rule, temporary });
    }
    let named = destinations.iter().map(|d| d.replayed_rule().0.to_owned()).collect();
    let spec =
        ReplaySpec { name, archive, event_start_time: start, event_end_time: end, rules: Some(named), description };
    Ok(Plan { spec, destinations, case: case.map(|(id, _)| id) })
}

/// Starts a planned replay: its temporary rules first, then the replay. If the replay cannot
/// start, the temporary rules are removed again.
pub async fn start(bus: &dyn Bus, plan: &Plan) -> Result<choreo_bus::api::Replay, ReplayError> {
    let mut created = Vec::new();
    let mut outcome = Ok(());
    for d in &plan.destinations {
        let Some(temporary) = &d.temporary else { continue };
        if let Err(e) = bus.put_rule(temporary.clone()).await {
            outcome = Err(e);
            break;
        }
        created.push(temporary.name.clone());
        if let Err(e) = bus.put_targets(&temporary.name, d.rule.targets.clone()).await {
            outcome = Err(e);
            break;
        }
    }
    let started = match outcome {
        Ok(()) => bus.start_replay(plan.spec.clone()).await,
        Err(e) => Err(e),
    };
    match started {
        Ok(replay) => Ok(replay),
        Err(e) => {
            for name in created {
                crate::follow::remove_rule(bus, &name).await;
            }
            Err(match e {
                BusError::ReplayExists(name) => ReplayError::NameInUse(name),
                e => e.into(),
            })
        }
    }
}

fn check_name(name: &str) -> Result<(), ReplayError> {
    let ok = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(ReplayError::Invalid(format!("replay name {name:?} must be 1-64 characters of A-Z a-z 0-9 . - _")))
    }
}

/// The rule that stands in for `rule` in a replay of one case: its pattern narrowed to the
/// replay's events of that case, its targets the same.
fn temporary_rule(
    replay: &str,
    n: usize,
    rule: &Rule,
    case: &str,
    now: DateTime<Utc>,
) -> Result<RuleSpec, ReplayError> {
    let name = format!("{TEMPORARY_RULE_PREFIX}{replay}.{n}");
    if name.len() > MAX_RULE_NAME {
        return Err(ReplayError::Invalid(format!(
            "replay name `{replay}` is too long for a case replay: its temporary rule `{name}` would exceed {MAX_RULE_NAME} characters"
        )));
    }
    let cannot =
        |why: String| ReplayError::Invalid(format!("rule `{}` cannot be narrowed to case `{case}`: {why}", rule.name));
    let mut pattern: Value =
        serde_json::from_str(&rule.event_pattern).map_err(|e| cannot(format!("its pattern is not JSON: {e}")))?;
    let Some(top) = pattern.as_object_mut() else { return Err(cannot("its pattern is not an object".into())) };
    if top.contains_key("replay-name") {
        return Err(cannot("its pattern already filters on replay-name".into()));
    }
    top.insert("replay-name".into(), json!([replay]));
    let detail = top.entry("detail").or_insert_with(|| json!({}));
    let Some(detail) = detail.as_object_mut() else { return Err(cannot("its detail pattern is not an object".into())) };
    if detail.contains_key("correlationid") {
        return Err(cannot("its pattern already filters on detail.correlationid".into()));
    }
    detail.insert("correlationid".into(), json!([case]));
    let text = pattern.to_string();
    Pattern::parse(&text).map_err(|e| cannot(e.to_string()))?;
    Ok(RuleSpec {
        name,
        event_pattern: text,
        state: RuleState::Enabled,
        description: Some(format!(
            "temporary: replay `{replay}` of case `{case}` to rule `{}`; removed when the replay ends; {CREATED}{}",
            rule.name,
            now.timestamp_millis()
        )),
    })
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() { "none".into() } else { names.join(", ") }
}

#[cfg(test)]
mod tests {
    use choreo_bus::api::{RuleState, Target};
    use choreo_bus::pattern::{Machine, Scratch};

    use super::*;

    fn rule(pattern: &str) -> Rule {
        Rule {
            name: "agent-payments".into(),
            arn: "arn".into(),
            event_pattern: pattern.into(),
            state: RuleState::Enabled,
            description: None,
            targets: vec![Target::new("agent-payments", "agent-payments")],
        }
    }

    fn matches(spec: &RuleSpec, event: &Value) -> bool {
        Machine::single(&Pattern::parse(&spec.event_pattern).unwrap())
            .is_match(event.to_string().as_bytes(), &mut Scratch::new())
            .unwrap()
    }

    #[test]
    fn a_case_rule_takes_only_the_replays_events_of_that_case_that_the_rule_takes() {
        let pattern = r#"{"detail-type":["SupportTriaged"],"detail":{"data":{"issues":["duplicate_charge"]}}}"#;
        let spec = temporary_rule("fix", 0, &rule(pattern), "case-1", Utc::now()).unwrap();
        assert_eq!(spec.name, "replay.fix.0");
        let event = |replay: Option<&str>, case: &str, issue: &str| {
            let mut e = json!({"detail-type": "SupportTriaged",
                               "detail": {"correlationid": case, "data": {"issues": [issue]}}});
            if let Some(r) = replay {
                e["replay-name"] = json!(r);
            }
            e
        };
        assert!(matches(&spec, &event(Some("fix"), "case-1", "duplicate_charge")));
        assert!(!matches(&spec, &event(None, "case-1", "duplicate_charge")), "live events never");
        assert!(!matches(&spec, &event(Some("other"), "case-1", "duplicate_charge")), "another replay's");
        assert!(!matches(&spec, &event(Some("fix"), "case-2", "duplicate_charge")), "another case's");
        assert!(!matches(&spec, &event(Some("fix"), "case-1", "missing_item")), "what the rule does not take");
    }

    #[test]
    fn patterns_that_cannot_be_narrowed_are_refused_by_name() {
        let now = Utc::now();
        for (pattern, why) in [
            (r#"{"replay-name":[{"exists":false}]}"#, "already filters on replay-name"),
            (r#"{"detail":{"correlationid":["x"]}}"#, "already filters on detail.correlationid"),
            (r#"{"detail":["x"]}"#, "detail pattern is not an object"),
        ] {
            let err = temporary_rule("fix", 0, &rule(pattern), "c", now).unwrap_err().to_string();
            assert!(err.contains("rule `agent-payments` cannot be narrowed to case `c`") && err.contains(why), "{err}");
        }
        let long = "x".repeat(60);
        let err = temporary_rule(&long, 0, &rule("{}"), "c", now).unwrap_err().to_string();
        assert!(err.contains("too long for a case replay"), "{err}");
    }

    #[test]
    fn replay_names_are_eventbridges() {
        assert!(check_name("fix-1.a_b").is_ok());
        for bad in ["", "has space", "slash/no", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
