//! Rules and their targets (PutRule, PutTargets and the rest), inboxes, and routing: the
//! enabled rules and the archives compiled into one machine that an event goes through once.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{OptionalExtension, params};

use super::writer::Ctx;
use crate::api::{BusError, MAX_TARGETS_PER_RULE, RetryPolicy, Rule, RuleSpec, RuleState, Target};
use crate::pattern::{Machine, MachineBuilder, Pattern};
use crate::retry::StoredPolicy;

/// The compiled routes: what each machine rule id stands for.
pub(crate) struct Routes {
    machine: Machine,
    kinds: Vec<Route>,
    /// Archives without a pattern: they keep every event.
    every: Vec<String>,
}

enum Route {
    Rule { name: String, targets: Vec<RouteTarget> },
    Archive(String),
}

struct RouteTarget {
    id: String,
    inbox: String,
    policy: String,
}

/// Where an event comes from: a put, or a replay to some rules (every rule when `None`).
#[derive(Clone, Copy)]
pub(crate) enum Origin<'a> {
    Put,
    Replay(Option<&'a BTreeSet<String>>),
}

pub(crate) fn check_name(what: &str, name: &str, max: usize) -> Result<(), BusError> {
    let ok = (1..=max).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(BusError::invalid(
            format!("{what} name `{name}`"),
            format!("must be 1 to {max} characters of letters, digits, '.', '-' and '_'"),
        ))
    }
}

/// Inbox names follow SQS queue names.
pub(crate) fn check_inbox_name(what: &str, name: &str) -> Result<(), BusError> {
    let ok =
        (1..=80).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(BusError::invalid(
            format!("{what} `{name}`"),
            "an inbox name is 1 to 80 characters of letters, digits, '-' and '_'",
        ))
    }
}

pub(crate) fn check_description(description: &Option<String>) -> Result<(), BusError> {
    match description {
        Some(d) if d.chars().count() > 512 => {
            Err(BusError::invalid("Description", format!("is {} characters; the limit is 512", d.chars().count())))
        }
        _ => Ok(()),
    }
}

pub(crate) fn parse_pattern(rule: &str, text: &str) -> Result<Pattern, BusError> {
    Pattern::parse(text).map_err(|e| BusError::InvalidPattern { rule: rule.to_owned(), reason: e.to_string() })
}

pub(crate) fn check_rule(rule: &RuleSpec) -> Result<(), BusError> {
    check_name("rule", &rule.name, 64)?;
    check_description(&rule.description)?;
    parse_pattern(&rule.name, &rule.event_pattern).map(drop)
}

pub(crate) fn check_targets(targets: &[Target]) -> Result<(), BusError> {
    if targets.is_empty() {
        return Err(BusError::invalid("Targets", "at least one target is required"));
    }
    let mut ids = BTreeSet::new();
    for t in targets {
        check_name("target", &t.id, 64)?;
        if !ids.insert(&t.id) {
            return Err(BusError::invalid(format!("target `{}`", t.id), "appears twice in the request"));
        }
        check_inbox_name(&format!("target `{}`: inbox", t.id), &t.inbox)?;
        check_inbox_name(&format!("target `{}`: dead-letter inbox", t.id), &t.dead_letter_inbox)?;
        if t.inbox == t.dead_letter_inbox {
            return Err(BusError::invalid(
                format!("target `{}`", t.id),
                format!("the dead-letter inbox must differ from the inbox `{}`", t.inbox),
            ));
        }
        t.retry_policy.validate(&t.id)?;
    }
    Ok(())
}

pub(crate) fn put_rule(ctx: &mut Ctx<'_>, rule: RuleSpec) -> Result<String, BusError> {
    ctx.tx
        .execute(
            "INSERT INTO rules (name, pattern, state, description, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (name) DO UPDATE SET pattern = ?2, state = ?3, description = ?4",
            params![rule.name, rule.event_pattern, rule.state.as_str(), rule.description, ctx.now],
        )
        .map_err(|e| ctx.db(e))?;
    ctx.changed()?;
    Ok(ctx.st.names.rule_arn(&rule.name))
}

fn exists(ctx: &Ctx<'_>, name: &str) -> Result<(), BusError> {
    let found = ctx
        .tx
        .query_row("SELECT 1 FROM rules WHERE name = ?1", [name], |_| Ok(()))
        .optional()
        .map_err(|e| ctx.db(e))?;
    found.ok_or_else(|| BusError::RuleNotFound(name.to_owned()))
}

pub(crate) fn delete_rule(ctx: &mut Ctx<'_>, name: &str) -> Result<(), BusError> {
    exists(ctx, name)?;
    let targets: i64 = ctx
        .tx
        .query_row("SELECT count(*) FROM targets WHERE rule = ?1", [name], |r| r.get(0))
        .map_err(|e| ctx.db(e))?;
    if targets > 0 {
        return Err(BusError::RuleHasTargets { rule: name.to_owned(), targets: targets as usize });
    }
    ctx.tx.execute("DELETE FROM rules WHERE name = ?1", [name]).map_err(|e| ctx.db(e))?;
    ctx.changed()
}

pub(crate) fn set_state(ctx: &mut Ctx<'_>, name: &str, state: RuleState) -> Result<(), BusError> {
    let n = ctx
        .tx
        .execute("UPDATE rules SET state = ?2 WHERE name = ?1", params![name, state.as_str()])
        .map_err(|e| ctx.db(e))?;
    if n == 0 {
        return Err(BusError::RuleNotFound(name.to_owned()));
    }
    ctx.changed()
}

pub(crate) fn describe(ctx: &mut Ctx<'_>, name: &str) -> Result<Rule, BusError> {
    let rules = read_rules(ctx, Some(name))?;
    rules.into_iter().next().ok_or_else(|| BusError::RuleNotFound(name.to_owned()))
}

pub(crate) fn list(ctx: &mut Ctx<'_>) -> Result<Vec<Rule>, BusError> {
    read_rules(ctx, None)
}

pub(crate) fn read_rules(ctx: &Ctx<'_>, only: Option<&str>) -> Result<Vec<Rule>, BusError> {
    let db = |e| ctx.db(e);
    let mut stmt = ctx
        .tx
        .prepare_cached(
            "SELECT name, pattern, state, description FROM rules WHERE ?1 IS NULL OR name = ?1 ORDER BY name",
        )
        .map_err(db)?;
    let mut rules: BTreeMap<String, Rule> = stmt
        .query_map([only], |r| {
            let name: String = r.get(0)?;
            let state: String = r.get(2)?;
            Ok(Rule {
                arn: ctx.st.names.rule_arn(&name),
                name,
                event_pattern: r.get(1)?,
                state: if state == "DISABLED" { RuleState::Disabled } else { RuleState::Enabled },
                description: r.get(3)?,
                targets: Vec::new(),
            })
        })
        .map_err(db)?
        .map(|r| r.map(|rule| (rule.name.clone(), rule)))
        .collect::<Result<_, _>>()
        .map_err(db)?;
    let mut stmt = ctx
        .tx
        .prepare_cached(
            "SELECT rule, id, inbox, dead_letter_inbox, policy FROM targets WHERE ?1 IS NULL OR rule = ?1 ORDER BY rule, id",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map([only], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get::<_, String>(4)?)))
        .map_err(db)?;
    for row in rows {
        let (rule, id, inbox, dead_letter_inbox, policy) = row.map_err(db)?;
        let retry_policy: RetryPolicy = serde_json::from_str(&policy)
            .map_err(|e| BusError::Internal(format!("target `{id}` of rule `{rule}` has an unreadable policy: {e}")))?;
        if let Some(r) = rules.get_mut(&rule) {
            r.targets.push(Target { id, inbox, dead_letter_inbox, retry_policy });
        }
    }
    Ok(rules.into_values().collect())
}

pub(crate) fn put_targets(ctx: &mut Ctx<'_>, rule: &str, targets: Vec<Target>) -> Result<(), BusError> {
    exists(ctx, rule)?;
    let db = |e| ctx.db(e);
    let mut ids: BTreeSet<String> = {
        let mut stmt = ctx.tx.prepare_cached("SELECT id FROM targets WHERE rule = ?1").map_err(db)?;
        stmt.query_map([rule], |r| r.get(0)).map_err(db)?.collect::<Result<_, _>>().map_err(db)?
    };
    ids.extend(targets.iter().map(|t| t.id.clone()));
    if ids.len() > MAX_TARGETS_PER_RULE {
        return Err(BusError::TooManyTargets { rule: rule.to_owned(), count: ids.len(), limit: MAX_TARGETS_PER_RULE });
    }
    for t in &targets {
        let policy = serde_json::to_string(&t.retry_policy).map_err(|e| BusError::Internal(e.to_string()))?;
        ctx.tx
            .execute(
                "INSERT INTO targets (rule, id, inbox, dead_letter_inbox, policy) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (rule, id) DO UPDATE SET inbox = ?3, dead_letter_inbox = ?4, policy = ?5",
                params![rule, t.id, t.inbox, t.dead_letter_inbox, policy],
            )
            .map_err(db)?;
        create_inbox(ctx, &t.inbox)?;
        create_inbox(ctx, &t.dead_letter_inbox)?;
    }
    ctx.changed()
}

pub(crate) fn remove_targets(ctx: &mut Ctx<'_>, rule: &str, ids: &[String]) -> Result<(), BusError> {
    exists(ctx, rule)?;
    let current: BTreeSet<String> =
        read_rules(ctx, Some(rule))?.into_iter().flat_map(|r| r.targets.into_iter().map(|t| t.id)).collect();
    if let Some(missing) = ids.iter().find(|id| !current.contains(*id)) {
        return Err(BusError::invalid(format!("target `{missing}`"), format!("is not a target of rule `{rule}`")));
    }
    for id in ids {
        let n = ctx
            .tx
            .execute("DELETE FROM targets WHERE rule = ?1 AND id = ?2", params![rule, id])
            .map_err(|e| ctx.db(e))?;
        if n == 0 {
            return Err(BusError::invalid(format!("target `{id}`"), format!("is not a target of rule `{rule}`")));
        }
    }
    ctx.changed()
}

pub(crate) fn create_inbox(ctx: &Ctx<'_>, name: &str) -> Result<(), BusError> {
    ctx.tx
        .execute("INSERT OR IGNORE INTO inboxes (name, created_ms) VALUES (?1, ?2)", params![name, ctx.now])
        .map_err(|e| ctx.db(e))?;
    Ok(())
}

pub(crate) fn load_routes(ctx: &Ctx<'_>) -> Result<Routes, BusError> {
    let mut builder = MachineBuilder::new();
    let mut kinds = Vec::new();
    let mut every = Vec::new();
    for rule in read_rules(ctx, None)? {
        if rule.state == RuleState::Disabled || rule.targets.is_empty() {
            continue;
        }
        let rule_arn = ctx.st.names.rule_arn(&rule.name);
        let targets = rule
            .targets
            .iter()
            .map(|t| {
                let stored = StoredPolicy::new(
                    &t.retry_policy,
                    &t.dead_letter_inbox,
                    rule_arn.clone(),
                    ctx.st.names.inbox_arn(&t.inbox),
                );
                RouteTarget {
                    id: t.id.clone(),
                    inbox: t.inbox.clone(),
                    policy: serde_json::to_string(&stored).unwrap_or_default(),
                }
            })
            .collect();
        builder.add_rule(rule.name.clone(), parse_pattern(&rule.name, &rule.event_pattern)?);
        kinds.push(Route::Rule { name: rule.name, targets });
    }
    for (name, pattern) in super::archive::patterns(ctx)? {
        match pattern {
            None => every.push(name),
            Some(text) => {
                builder.add_rule(name.clone(), parse_pattern(&name, &text)?);
                kinds.push(Route::Archive(name));
            }
        }
    }
    Ok(Routes { machine: builder.build(), kinds, every })
}

/// Routes one event: a message in each matching target's inbox and, unless it is a replay, an
/// entry in each matching archive. The event is stored only when something keeps it; answers
/// how many messages were sent.
pub(crate) fn deliver(
    ctx: &mut Ctx<'_>,
    body: &str,
    time_ms: i64,
    ingested_ms: i64,
    id: &str,
    origin: Origin<'_>,
) -> Result<u64, BusError> {
    ctx.routes()?;
    let (tx, now, faults) = (ctx.tx, ctx.now, ctx.faults);
    let db = |e| faults.map(e);
    let st = &mut *ctx.st;
    let Some(routes) = st.routes.as_ref() else { return Err(BusError::Internal("routes not loaded".into())) };
    let hits = routes
        .machine
        .matches(body.as_bytes(), &mut st.scratch)
        .map_err(|e| BusError::Internal(format!("event {id} cannot be matched: {e}")))?;
    let mut seq = None;
    let mut event_seq = || -> Result<i64, BusError> {
        if let Some(s) = seq {
            return Ok(s);
        }
        let mut stmt = tx
            .prepare_cached("INSERT INTO events (id, time_ms, ingested_ms, body) VALUES (?1, ?2, ?3, ?4)")
            .map_err(db)?;
        stmt.execute(params![id, time_ms, ingested_ms, body]).map_err(db)?;
        let s = tx.last_insert_rowid();
        seq = Some(s);
        Ok(s)
    };
    let mut sent = 0;
    let archiving = matches!(origin, Origin::Put);
    let archive = |name: &str, s: i64| -> Result<(), BusError> {
        let mut stmt = tx
            .prepare_cached("INSERT INTO archived (archive, time_ms, seq, archived_ms) VALUES (?1, ?2, ?3, ?4)")
            .map_err(db)?;
        stmt.execute(params![name, time_ms, s, now]).map_err(db)?;
        Ok(())
    };
    for &hit in hits {
        match &routes.kinds[hit as usize] {
            Route::Rule { name, targets } => {
                if let Origin::Replay(Some(only)) = origin
                    && !only.contains(name)
                {
                    continue;
                }
                for t in targets {
                    let s = event_seq()?;
                    let mut stmt = tx
                        .prepare_cached(
                            "INSERT INTO messages (inbox, event_seq, rule, target, visible_ms, sent_ms, ingested_ms, policy)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7)",
                        )
                        .map_err(db)?;
                    stmt.execute(params![t.inbox, s, name, t.id, now, ingested_ms, t.policy]).map_err(db)?;
                    ctx.landed.push(t.inbox.clone());
                    sent += 1;
                }
            }
            Route::Archive(name) if archiving => archive(name, event_seq()?)?,
            Route::Archive(_) => {}
        }
    }
    if archiving {
        for name in &routes.every {
            archive(name, event_seq()?)?;
        }
    }
    Ok(sent)
}

/// Deletes an event no message and no archive refers to any more.
pub(crate) fn forget_if_unused(ctx: &Ctx<'_>, seq: i64) -> Result<(), BusError> {
    let mut stmt = ctx
        .tx
        .prepare_cached(
            "DELETE FROM events WHERE seq = ?1
               AND NOT EXISTS (SELECT 1 FROM messages WHERE event_seq = ?1)
               AND NOT EXISTS (SELECT 1 FROM archived WHERE seq = ?1)",
        )
        .map_err(|e| ctx.db(e))?;
    stmt.execute([seq]).map_err(|e| ctx.db(e))?;
    Ok(())
}
