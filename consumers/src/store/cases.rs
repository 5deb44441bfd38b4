//! The case store: every event of a case (by `correlationid`) as the runtime consumes or emits
//! it, notes on the case (refusals, escalations, failures), and what the case has spent of
//! its budget, debited before every model call so parallel agents share one budget.

use async_trait::async_trait;
use choreo_schemas::Envelope;
use choreo_schemas::envelope::Budget;
use rusqlite::OptionalExtension;
use serde::Serialize;
use serde_json::Value;

use super::{Store, StoreError, now_ms};

/// One event of a case, as agents read it through `case.get_case`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    pub data: Value,
}

/// What a note records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    /// A tool call refused because it named what the case's customer does not own.
    Refused,
    /// The model asked for something the runtime could not do (unknown tool, bad input).
    InvalidCall,
    /// The case was handed to a human.
    Escalated,
    /// An agent ended its turn without a completion.
    NoCompletion,
    /// An agent failed on the event.
    Failed,
    /// The case's budget ran out.
    BudgetExhausted,
}

impl NoteKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            NoteKind::Refused => "refused",
            NoteKind::InvalidCall => "invalid_call",
            NoteKind::Escalated => "escalated",
            NoteKind::NoCompletion => "no_completion",
            NoteKind::Failed => "failed",
            NoteKind::BudgetExhausted => "budget_exhausted",
        }
    }

    pub(crate) fn parse(s: &str) -> NoteKind {
        match s {
            "refused" => NoteKind::Refused,
            "invalid_call" => NoteKind::InvalidCall,
            "escalated" => NoteKind::Escalated,
            "no_completion" => NoteKind::NoCompletion,
            "budget_exhausted" => NoteKind::BudgetExhausted,
            _ => NoteKind::Failed,
        }
    }
}

/// A note on a case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseNote {
    pub event_id: String,
    pub agent: String,
    pub kind: NoteKind,
    pub detail: String,
}

/// What a case has spent so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Spend {
    pub turns: u32,
    pub tokens: u64,
    pub hops: u32,
}

/// The budget ran out: which limit, and what was spent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the case's budget is spent: {limit} ({spent:?} of {budget:?})")]
pub struct Exhausted {
    pub limit: &'static str,
    pub spent: Spend,
    pub budget: Budget,
}

/// The case store as the runtime calls it: one trait, kept by the agents' store (SQLite, the
/// embedded default, where every agent of the process shares it) or by a DynamoDB table (the
/// AWS path, where every instance of every agent function shares it: see
/// [`super::DynamoLedger`]). What one agent records, the others read: the join of `support`
/// over the others' completions, and one budget for the whole case.
#[async_trait]
pub trait CaseStore: Send + Sync {
    /// Where the cases are, for messages (a file, a table).
    fn name(&self) -> String;

    /// Adds an event to its case: once, however often it is added.
    async fn add_event(&self, envelope: &Envelope) -> Result<(), StoreError>;

    /// [`CaseStore::add_event`], looking first where a read spares a write.
    async fn record_event(&self, envelope: &Envelope) -> Result<(), StoreError> {
        let case = envelope.correlation_id().unwrap_or(envelope.id());
        if self.has_event(case, envelope.id()).await? {
            return Ok(());
        }
        self.add_event(envelope).await
    }

    /// Whether case `case` holds event `event_id`.
    async fn has_event(&self, case: &str, event_id: &str) -> Result<bool, StoreError>;

    /// The events of a case, in the order they were recorded.
    async fn case_events(&self, case: &str) -> Result<Vec<CaseEvent>, StoreError>;

    /// Writes a note on a case.
    async fn note(
        &self,
        case: &str,
        event_id: &str,
        agent: &str,
        kind: NoteKind,
        detail: &str,
    ) -> Result<(), StoreError>;

    /// The notes on a case, oldest first.
    async fn notes(&self, case: &str) -> Result<Vec<CaseNote>, StoreError>;

    /// What the case has spent.
    async fn spend(&self, case: &str) -> Result<Spend, StoreError>;

    /// Debits one agent run (a hop), or says the budget is spent. Atomic: two runs racing for
    /// the last hop cannot both get it.
    async fn debit_hop(&self, case: &str, budget: &Budget) -> Result<Result<Spend, Exhausted>, StoreError>;

    /// Debits one model turn, when turns and tokens remain (atomic, as a hop).
    async fn debit_turn(&self, case: &str, budget: &Budget) -> Result<Result<Spend, Exhausted>, StoreError>;

    /// Adds the tokens a model call used (known only after it answered).
    async fn add_tokens(&self, case: &str, tokens: u64) -> Result<(), StoreError>;
}

#[async_trait]
impl CaseStore for Store {
    fn name(&self) -> String {
        self.path().display().to_string()
    }

    async fn add_event(&self, envelope: &Envelope) -> Result<(), StoreError> {
        Store::add_event(self, envelope)
    }

    async fn has_event(&self, case: &str, event_id: &str) -> Result<bool, StoreError> {
        Store::has_event(self, case, event_id)
    }

    async fn case_events(&self, case: &str) -> Result<Vec<CaseEvent>, StoreError> {
        Store::case_events(self, case)
    }

    async fn note(
        &self,
        case: &str,
        event_id: &str,
        agent: &str,
        kind: NoteKind,
        detail: &str,
    ) -> Result<(), StoreError> {
        Store::note(self, case, event_id, agent, kind, detail)
    }

    async fn notes(&self, case: &str) -> Result<Vec<CaseNote>, StoreError> {
        Store::notes(self, case)
    }

    async fn spend(&self, case: &str) -> Result<Spend, StoreError> {
        Store::spend(self, case)
    }

    async fn debit_hop(&self, case: &str, budget: &Budget) -> Result<Result<Spend, Exhausted>, StoreError> {
        Store::debit_hop(self, case, budget)
    }

    async fn debit_turn(&self, case: &str, budget: &Budget) -> Result<Result<Spend, Exhausted>, StoreError> {
        Store::debit_turn(self, case, budget)
    }

    async fn add_tokens(&self, case: &str, tokens: u64) -> Result<(), StoreError> {
        Store::add_tokens(self, case, tokens)
    }
}

impl Exhausted {
    /// `what` ("turns" or "hops") could not be debited from `budget` with `spent` spent: the
    /// first limit reached is the one reported.
    pub(crate) fn of(spent: Spend, budget: &Budget, what: &'static str) -> Self {
        let limit = if spent.tokens >= budget.tokens { "tokens" } else { what };
        Exhausted { limit, spent, budget: *budget }
    }
}

impl Store {
    /// Adds an event to its case (once, however often it is recorded).
    pub fn record_event(&self, envelope: &Envelope) -> Result<(), StoreError> {
        let correlation = envelope.correlation_id().unwrap_or(envelope.id());
        // A redelivered or replayed event is there already: looked up beside the writer.
        if self.has_event(correlation, envelope.id())? {
            return Ok(());
        }
        self.add_event(envelope)
    }

    /// [`Store::record_event`] for an event the caller looked up already.
    pub fn add_event(&self, envelope: &Envelope) -> Result<(), StoreError> {
        let correlation = envelope.correlation_id().unwrap_or(envelope.id());
        let data = envelope.data().cloned().unwrap_or(Value::Null).to_string();
        let time = envelope.time().map(|t| t.to_rfc3339());
        self.conn()
            .prepare_cached(
                "INSERT OR IGNORE INTO case_events (correlation_id, event_id, seq, type, source, causation_id, time, data)
                 VALUES (?1, ?2, (SELECT COUNT(*) FROM case_events WHERE correlation_id = ?1), ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut s| {
                s.execute((
                    correlation,
                    envelope.id(),
                    envelope.event_type(),
                    envelope.source(),
                    envelope.causation_id(),
                    time,
                    data,
                ))
            })
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Whether the case holds the event `event_id`.
    pub fn has_event(&self, correlation_id: &str, event_id: &str) -> Result<bool, StoreError> {
        has_event(&self.reader(), correlation_id, event_id).map_err(|e| self.err(e))
    }

    /// The events of a case, in the order the runtime recorded them.
    pub fn case_events(&self, correlation_id: &str) -> Result<Vec<CaseEvent>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT event_id, type, source, causation_id, time, data FROM case_events
                 WHERE correlation_id = ?1 ORDER BY seq",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([correlation_id], |r| {
            let data: String = r.get(5)?;
            Ok(CaseEvent {
                id: r.get(0)?,
                event_type: r.get(1)?,
                source: r.get(2)?,
                causation_id: r.get(3)?,
                time: r.get(4)?,
                data: serde_json::from_str(&data).unwrap_or(Value::Null),
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// Writes a note on a case.
    pub fn note(
        &self,
        correlation_id: &str,
        event_id: &str,
        agent: &str,
        kind: NoteKind,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO case_notes (correlation_id, event_id, agent, kind, detail, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut s| s.execute((correlation_id, event_id, agent, kind.as_str(), detail, now_ms())))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The notes on a case, oldest first.
    pub fn notes(&self, correlation_id: &str) -> Result<Vec<CaseNote>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT event_id, agent, kind, detail FROM case_notes WHERE correlation_id = ?1 ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([correlation_id], |r| {
            let kind: String = r.get(2)?;
            Ok(CaseNote { event_id: r.get(0)?, agent: r.get(1)?, kind: NoteKind::parse(&kind), detail: r.get(3)? })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// What the case has spent.
    pub fn spend(&self, correlation_id: &str) -> Result<Spend, StoreError> {
        let conn = self.reader();
        let row = conn
            .prepare_cached("SELECT turns, tokens, hops FROM case_spend WHERE correlation_id = ?1")
            .and_then(|mut s| {
                s.query_row([correlation_id], |r| {
                    Ok(Spend { turns: r.get(0)?, tokens: r.get::<_, i64>(1)? as u64, hops: r.get(2)? })
                })
                .optional()
            })
            .map_err(|e| self.err(e))?;
        Ok(row.unwrap_or_default())
    }

    /// Debits one agent run (a hop) from the case, or says the budget is spent.
    pub fn debit_hop(&self, correlation_id: &str, budget: &Budget) -> Result<Result<Spend, Exhausted>, StoreError> {
        self.debit(correlation_id, budget, "hops")
    }

    /// Debits one model turn, when turns and tokens remain.
    pub fn debit_turn(&self, correlation_id: &str, budget: &Budget) -> Result<Result<Spend, Exhausted>, StoreError> {
        self.debit(correlation_id, budget, "turns")
    }

    /// Adds the tokens a model call used (known only after it answered).
    pub fn add_tokens(&self, correlation_id: &str, tokens: u64) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO case_spend (correlation_id, tokens) VALUES (?1, ?2)
                 ON CONFLICT (correlation_id) DO UPDATE SET tokens = tokens + excluded.tokens",
            )
            .and_then(|mut s| s.execute((correlation_id, i64::try_from(tokens).unwrap_or(i64::MAX))))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn debit(
        &self,
        correlation_id: &str,
        budget: &Budget,
        what: &'static str,
    ) -> Result<Result<Spend, Exhausted>, StoreError> {
        // One statement: count the turn (or hop) only while every limit holds, so parallel
        // agents racing for the last turn cannot both get it.
        let (sql, limit) = if what == "turns" {
            (
                "INSERT INTO case_spend (correlation_id, turns) VALUES (?1, 1)
                 ON CONFLICT (correlation_id) DO UPDATE SET turns = turns + 1
                 WHERE case_spend.turns < ?2 AND case_spend.tokens < ?3
                 RETURNING turns, tokens, hops",
                budget.turns,
            )
        } else {
            (
                "INSERT INTO case_spend (correlation_id, hops) VALUES (?1, 1)
                 ON CONFLICT (correlation_id) DO UPDATE SET hops = hops + 1
                 WHERE case_spend.hops < ?2 AND case_spend.tokens < ?3
                 RETURNING turns, tokens, hops",
                budget.hops,
            )
        };
        let tokens = i64::try_from(budget.tokens).unwrap_or(i64::MAX);
        if limit > 0 && tokens > 0 {
            let conn = self.conn();
            let after = conn
                .prepare_cached(sql)
                .and_then(|mut s| {
                    s.query_row((correlation_id, limit, tokens), |r| {
                        Ok(Spend { turns: r.get(0)?, tokens: r.get::<_, i64>(1)? as u64, hops: r.get(2)? })
                    })
                    .optional()
                })
                .map_err(|e| self.err(e))?;
            if let Some(after) = after {
                return Ok(Ok(after));
            }
        }
        Ok(Err(Exhausted::of(self.spend(correlation_id)?, budget, what)))
    }
}

/// Whether the case `correlation_id` holds the event `event_id`.
pub(super) fn has_event(conn: &rusqlite::Connection, correlation_id: &str, event_id: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM case_events WHERE correlation_id = ?1 AND event_id = ?2")?
        .exists((correlation_id, event_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_join_their_case_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let placed =
            Envelope::builder("retail", "OrderSupportPlaced").data(serde_json::json!({"a": 1})).build().unwrap();
        let triaged = placed.follow_up("agents.support", "SupportTriaged").build().unwrap();
        for e in [&placed, &triaged, &placed] {
            store.record_event(e).unwrap();
        }
        let events = store.case_events(placed.id()).unwrap();
        let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types, ["OrderSupportPlaced", "SupportTriaged"]);
        assert_eq!(events[1].causation_id.as_deref(), Some(placed.id()));
        assert_eq!(events[0].data["a"], 1);
    }

    #[test]
    fn the_budget_is_debited_until_a_limit_is_reached() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let budget = Budget { turns: 2, tokens: 1000, hops: 1 };
        assert_eq!(store.debit_hop("c", &budget).unwrap().unwrap().hops, 1);
        assert_eq!(store.debit_hop("c", &budget).unwrap().unwrap_err().limit, "hops");
        assert!(store.debit_turn("c", &budget).unwrap().is_ok());
        store.add_tokens("c", 400).unwrap();
        assert!(store.debit_turn("c", &budget).unwrap().is_ok());
        let err = store.debit_turn("c", &budget).unwrap().unwrap_err();
        assert_eq!(err.limit, "turns");
        assert_eq!(err.spent, Spend { turns: 2, tokens: 400, hops: 1 });
        store.add_tokens("d", 1000).unwrap();
        assert_eq!(store.debit_turn("d", &budget).unwrap().unwrap_err().limit, "tokens");
    }

    #[test]
    fn notes_keep_their_kind_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.note("c", "e", "payments", NoteKind::Refused, "charge ch-9 is not the customer's").unwrap();
        store.note("c", "e", "payments", NoteKind::Escalated, "x").unwrap();
        let notes = store.notes("c").unwrap();
        assert_eq!(notes.iter().map(|n| n.kind).collect::<Vec<_>>(), [NoteKind::Refused, NoteKind::Escalated]);
        assert!(store.notes("other").unwrap().is_empty());
    }
}
