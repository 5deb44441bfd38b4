//! Every `consumers/agents/*/cases/*.json` through one generic test: the agent runs on the
//! case's event with the offline model, the real tools, ledger and bus; what it published, the
//! effects it did and the refusals must be what the case says. Then the same event again:
//! nothing more happens, and the same events come out.

mod common;

use choreo_consumers::cases::{self, AgentCase};
use choreo_consumers::runner;
use choreo_consumers::store::{EffectState, NoteKind};

#[tokio::test]
async fn every_agent_case_holds_and_a_redelivery_changes_nothing() {
    let rig = common::Rig::new().await;
    let mut ran = 0;
    for agent in &rig.agents {
        let cases = cases::load(&agent.dir).expect("cases read");
        assert!(!cases.is_empty(), "agent `{}` has no cases", agent.name());
        for (path, case) in cases {
            // A fresh rig per case: the back office starts from the seeded data set.
            let rig = common::Rig::new().await;
            let name = format!("{}", path.display());
            check(&rig, agent.name(), &case).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            ran += 1;
        }
    }
    assert!(ran >= 8, "only {ran} cases ran");
}

async fn check(rig: &common::Rig, agent: &str, case: &AgentCase) -> Result<(), String> {
    let agent = rig.agent(agent);
    let correlation = format!("case-{}", agent.name());
    for earlier in &case.case {
        rig.services.store.record_event(&common::envelope(earlier, &correlation)).map_err(|e| e.to_string())?;
    }
    let event = common::envelope(&case.event, &correlation);
    let runner::Ran { outcome, .. } =
        runner::run(&rig.services, agent, &event).await.map_err(|e| format!("run failed: {e}"))?;
    if outcome.label() != case.expect.outcome {
        return Err(format!("outcome {outcome:?}, expected {}", case.expect.outcome));
    }
    let published = published_by(rig, &correlation, &event)?;
    let types: Vec<_> = published.iter().map(|e| e.event_type.clone()).collect();
    let expected: Vec<_> = case.expect.published.iter().map(|e| e.event_type.clone()).collect();
    if types != expected {
        return Err(format!("published {types:?}, expected {expected:?}"));
    }
    for (got, want) in published.iter().zip(&case.expect.published) {
        cases::contains(&want.data, &got.data).map_err(|e| format!("{} data {e}", got.event_type))?;
    }
    let effects = effects_done(rig, &correlation)?;
    if effects != case.expect.effects {
        return Err(format!("effects {effects:?}, expected {:?}", case.expect.effects));
    }
    let notes = rig.services.store.notes(&correlation).map_err(|e| e.to_string())?;
    let refused = notes.iter().filter(|n| n.kind == NoteKind::Refused).count();
    if refused != case.expect.refused {
        return Err(format!("{refused} refusals, expected {}: {notes:?}", case.expect.refused));
    }

    // The same event once more (a redelivery, a retry, a replay): no effect twice, and the
    // same completions (same ids) come out again.
    let runner::Ran { outcome: again, .. } =
        runner::run(&rig.services, agent, &event).await.map_err(|e| format!("second run failed: {e}"))?;
    if again.label() != case.expect.outcome {
        return Err(format!("second run: outcome {again:?}"));
    }
    if effects_done(rig, &correlation)? != case.expect.effects {
        return Err("second run did an effect again".into());
    }
    let ids: Vec<_> = published.iter().map(|e| e.id.clone()).collect();
    let again: Vec<_> = published_by(rig, &correlation, &event)?.iter().map(|e| e.id.clone()).collect();
    if ids != again {
        return Err(format!("second run published {again:?}, the first {ids:?}"));
    }
    Ok(())
}

/// The events caused by `event` on the case, as the case store recorded them.
fn published_by(
    rig: &common::Rig,
    correlation: &str,
    event: &choreo_schemas::Envelope,
) -> Result<Vec<choreo_consumers::store::CaseEvent>, String> {
    let events = rig.services.store.case_events(correlation).map_err(|e| e.to_string())?;
    Ok(events.into_iter().filter(|e| e.causation_id.as_deref() == Some(event.id())).collect())
}

/// Effects done on the case, by tool (completions and escalations are not effects here).
fn effects_done(rig: &common::Rig, correlation: &str) -> Result<std::collections::BTreeMap<String, usize>, String> {
    let mut done = std::collections::BTreeMap::new();
    for record in rig.services.store.effects(correlation).map_err(|e| e.to_string())? {
        if record.state == EffectState::Done && !record.tool.starts_with("complete.") && record.tool != "case.escalate"
        {
            *done.entry(record.tool).or_insert(0) += 1;
        }
    }
    Ok(done)
}
