//! `CaseEscalated`: a case leaves the agents for a human.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::CatalogEvent;
use super::common::{AGENT_NAME_PATTERN, ORDER_ID_PATTERN};

/// A case handed to a human, with the reason. No agent subscribes to it to do more work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseEscalated {
    /// The order, when the case is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ORDER_ID_PATTERN))]
    pub order_id: Option<String>,
    /// Why the case was escalated.
    pub reason: EscalationReason,
    /// What happened, for the human who takes the case.
    #[schemars(length(min = 1))]
    pub detail: String,
    /// The agent that escalated, e.g. `payments`.
    #[schemars(regex(pattern = AGENT_NAME_PATTERN))]
    pub escalated_by: String,
}

/// Why a case was escalated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EscalationReason {
    /// The case spent its budget of turns, tokens or hops.
    BudgetExhausted,
    /// An agent failed on the case beyond its retries.
    AgentFailed,
    /// Policy requires a human, e.g. a refund above the agent's limit.
    Policy,
    /// A tool call was refused because it named another customer's data.
    Unauthorized,
    /// The customer asked for a human.
    CustomerRequest,
}

impl CatalogEvent for CaseEscalated {
    const NAME: &'static str = "CaseEscalated";
}
