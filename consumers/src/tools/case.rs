//! The case so far, read-only: every event of the case the runtime has seen, and its notes.
//! This is how an agent joins the work of others without an orchestrator.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ToolContext, ToolDef, ToolError};
use crate::store::{CaseEvent, CaseNote};

pub(super) fn tools() -> Vec<ToolDef> {
    vec![ToolDef::typed(
        "case.get_case",
        "The case so far: its events in order (type, source, data) and notes (refusals, escalations), with the types of the events received.",
        false,
        get_case,
    )
    .reading_case()]
}

/// No input: the case is the one of the event being handled.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetCase {}

/// The case as an agent reads it.
#[derive(Debug, Serialize)]
pub struct Case {
    pub correlation_id: String,
    /// The types of the events received, in order, e.g. `["OrderSupportPlaced", "SupportTriaged"]`.
    pub received: Vec<String>,
    pub events: Vec<CaseEvent>,
    pub notes: Vec<CaseNote>,
}

fn get_case(ctx: &ToolContext<'_>, _input: GetCase) -> Result<Case, ToolError> {
    let case = ctx.case.ok_or_else(|| ToolError::Broken("the runtime did not read the case for this tool".into()))?;
    let (events, notes) = (case.events.clone(), case.notes.clone());
    Ok(Case {
        correlation_id: ctx.correlation_id.to_owned(),
        received: events.iter().map(|e| e.event_type.clone()).collect(),
        events,
        notes,
    })
}
