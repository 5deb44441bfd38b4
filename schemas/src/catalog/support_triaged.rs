//! `SupportTriaged`: the support agent has read the request and named its issues.

use chrono::NaiveDate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::CatalogEvent;
use super::common::{IssueKind, ORDER_ID_PATTERN};

/// The issues found in a customer's request. Each issue is picked up by the agent that
/// subscribes to it; the case is answered when every issue listed here is resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SupportTriaged {
    /// The order the request is about.
    #[schemars(regex(pattern = ORDER_ID_PATTERN))]
    pub order_id: String,
    /// The issues, each once. A flat list of names, so that rules can match on one of them.
    #[schemars(length(min = 1), extend("uniqueItems" = true))]
    pub issues: Vec<IssueKind>,
    /// What the customer needs, in a sentence or two.
    #[schemars(length(min = 1))]
    pub summary: String,
    /// The date by which the customer needs the order, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needed_by: Option<NaiveDate>,
}

impl CatalogEvent for SupportTriaged {
    const NAME: &'static str = "SupportTriaged";
}
