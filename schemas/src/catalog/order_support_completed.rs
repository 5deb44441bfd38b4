//! `OrderSupportCompleted`: the case is answered; the notifier sends the answer to the customer.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::CatalogEvent;
use super::common::{AGENT_NAME_PATTERN, IssueKind, ORDER_ID_PATTERN};

/// The answer to a customer's request, written once every triaged issue is resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderSupportCompleted {
    /// The order the request was about.
    #[schemars(regex(pattern = ORDER_ID_PATTERN))]
    pub order_id: String,
    /// The answer, addressed to the customer.
    #[schemars(length(min = 1, max = 4000))]
    pub answer: String,
    /// What the agents did, in the order they did it.
    pub actions: Vec<ActionTaken>,
    /// The triaged issues now resolved.
    #[schemars(extend("uniqueItems" = true))]
    pub resolved_issues: Vec<IssueKind>,
}

/// One thing an agent did on the case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionTaken {
    /// The agent that did it, e.g. `payments`.
    #[schemars(regex(pattern = AGENT_NAME_PATTERN))]
    pub agent: String,
    /// What it did, in a sentence.
    #[schemars(length(min = 1))]
    pub description: String,
}

impl CatalogEvent for OrderSupportCompleted {
    const NAME: &'static str = "OrderSupportCompleted";
}
