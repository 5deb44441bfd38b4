//! The per-case budget: set at ingest, carried on every event of the case as three integer
//! extensions, so that every agent checks the same limits against what the case has spent.

use cloudevents::event::ExtensionValue;
use serde::{Deserialize, Serialize};

use super::{Envelope, EnvelopeBuilder};

/// Extension: the most model turns the whole case may take.
pub const BUDGET_TURNS: &str = "budgetturns";
/// Extension: the most model tokens (input + output) the whole case may spend.
pub const BUDGET_TOKENS: &str = "budgettokens";
/// Extension: the most agent runs (events consumed by agents) the case may cause.
pub const BUDGET_HOPS: &str = "budgethops";

/// What a case may spend, all agents together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    pub turns: u32,
    pub tokens: u64,
    pub hops: u32,
}

impl Default for Budget {
    /// Room for a case of a dozen agent runs on a real model.
    fn default() -> Self {
        Self { turns: 60, tokens: 400_000, hops: 24 }
    }
}

impl EnvelopeBuilder {
    /// Sets the case's budget (on the event that opens the case; follow-ups carry it).
    pub fn budget(self, budget: Budget) -> Self {
        self.extension(BUDGET_TURNS, i64::from(budget.turns))
            .extension(BUDGET_TOKENS, i64::try_from(budget.tokens).unwrap_or(i64::MAX))
            .extension(BUDGET_HOPS, i64::from(budget.hops))
    }
}

impl Envelope {
    /// The case's budget, when the event carries all three limits as non-negative integers
    /// (or as strings of digits, as a binary-mode HTTP header would bring them).
    pub fn budget(&self) -> Option<Budget> {
        let read = |name| match self.extension(name)? {
            ExtensionValue::Integer(i) => u64::try_from(*i).ok(),
            ExtensionValue::String(s) => s.parse().ok(),
            ExtensionValue::Boolean(_) => None,
        };
        Some(Budget {
            turns: u32::try_from(read(BUDGET_TURNS)?).ok()?,
            tokens: read(BUDGET_TOKENS)?,
            hops: u32::try_from(read(BUDGET_HOPS)?).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_set_at_ingest_travels_with_the_case_and_through_json() {
        let budget = Budget { turns: 7, tokens: 9000, hops: 3 };
        let placed = Envelope::builder("retail.support-api", "OrderSupportPlaced").budget(budget).build().unwrap();
        let triaged = placed.follow_up("agents.support", "SupportTriaged").build().unwrap();
        assert_eq!(triaged.budget(), Some(budget));
        let parsed = Envelope::from_json_str(&triaged.to_json_string()).unwrap();
        assert_eq!(parsed.budget(), Some(budget));
        let none = Envelope::builder("s", "T").build().unwrap();
        assert_eq!(none.budget(), None);
    }
}
