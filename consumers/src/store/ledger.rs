//! The effect ledger: every side-effecting tool call is recorded under its idempotency key
//! before the effect (`started`) and after it (`done`), so a redelivery, a retry or a replay
//! gets the recorded result back instead of acting again.

use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;
use serde_json::Value;

use choreo_schemas::Envelope;

use super::cases::has_event;
use super::{Store, StoreError, now_ms};

/// What the ledger says about a key when a call wants to act under it.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Never seen: the caller now holds the key and must act, then [`Store::settle`].
    Fresh,
    /// Already done: this is the recorded result; do not act again.
    Done(Value),
    /// Started and never settled (a crash between the effect and its record, or another run
    /// acting right now): the outcome is unknown.
    InDoubt { started_at_ms: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EffectState {
    Started,
    Done,
}

/// One row of the ledger, for traces and tests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EffectRecord {
    pub key: String,
    pub agent: String,
    pub event_id: String,
    pub correlation_id: String,
    pub tool: String,
    pub args: Value,
    pub state: EffectState,
    pub result: Option<Value>,
    /// How many later calls got the recorded result instead of acting.
    pub suppressed: u32,
}

/// What an earlier delivery of an event left (see [`Store::prior_run`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PriorRun {
    /// Whether the event's case holds the event.
    pub in_case: bool,
    /// The completions and escalations that delivery recorded, oldest first.
    pub answers: Vec<Answer>,
}

/// A completion or escalation recorded by a finished run.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub key: String,
    pub tool: String,
    /// The event recorded (`null` if the record cannot be read).
    pub recorded: Value,
    /// Whether its case holds it: it was accepted by the bus.
    pub in_case: bool,
}

/// Who is claiming a key, for the record.
pub struct ClaimMeta<'a> {
    pub agent: &'a str,
    pub event_id: &'a str,
    pub correlation_id: &'a str,
    pub tool: &'a str,
    pub args: &'a Value,
}

impl Store {
    /// Claims `key` for an effect: the first caller gets [`Claim::Fresh`]; later callers the
    /// recorded result, or [`Claim::InDoubt`] while it is unsettled. A `Done` answer also
    /// counts one suppressed effect.
    pub fn claim(&self, key: &str, meta: &ClaimMeta<'_>) -> Result<Claim, StoreError> {
        let conn = self.conn();
        let inserted = conn
            .prepare_cached(
                "INSERT OR IGNORE INTO effects (key, agent, event_id, correlation_id, tool, args, state, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'started', ?7)",
            )
            .and_then(|mut s| {
                s.execute((
                    key,
                    meta.agent,
                    meta.event_id,
                    meta.correlation_id,
                    meta.tool,
                    meta.args.to_string(),
                    now_ms(),
                ))
            })
            .map_err(|e| self.err(e))?;
        if inserted == 1 {
            return Ok(Claim::Fresh);
        }
        let (state, result, started_at): (String, Option<String>, i64) = conn
            .prepare_cached("SELECT state, result, started_at FROM effects WHERE key = ?1")
            .and_then(|mut s| s.query_row([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
            .map_err(|e| self.err(e))?;
        if state == "done" {
            conn.prepare_cached("UPDATE effects SET suppressed = suppressed + 1 WHERE key = ?1")
                .and_then(|mut s| s.execute([key]))
                .map_err(|e| self.err(e))?;
            let result = result.and_then(|r| serde_json::from_str(&r).ok()).unwrap_or(Value::Null);
            return Ok(Claim::Done(result));
        }
        Ok(Claim::InDoubt { started_at_ms: started_at })
    }

    /// Records `result` under `key` in one step, unless the key is taken: answers `None` when
    /// this call recorded it, or the result already there (counting one suppression). For
    /// effects whose result is known before acting, such as a completion event built before
    /// it is published, so that two runs racing for the key cannot both win.
    pub fn record_once(&self, key: &str, meta: &ClaimMeta<'_>, result: &Value) -> Result<Option<Value>, StoreError> {
        let conn = self.conn();
        let inserted = conn
            .prepare_cached(
                "INSERT OR IGNORE INTO effects (key, agent, event_id, correlation_id, tool, args, state, result, started_at, finished_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'done', ?7, ?8, ?8)",
            )
            .and_then(|mut s| {
                s.execute((
                    key,
                    meta.agent,
                    meta.event_id,
                    meta.correlation_id,
                    meta.tool,
                    meta.args.to_string(),
                    result.to_string(),
                    now_ms(),
                ))
            })
            .map_err(|e| self.err(e))?;
        if inserted == 1 {
            return Ok(None);
        }
        let existing: Option<String> = conn
            .prepare_cached("UPDATE effects SET suppressed = suppressed + 1 WHERE key = ?1 RETURNING result")
            .and_then(|mut s| s.query_row([key], |r| r.get(0)))
            .map_err(|e| self.err(e))?;
        Ok(Some(existing.and_then(|r| serde_json::from_str(&r).ok()).unwrap_or(Value::Null)))
    }

    /// Records the result of the effect claimed under `key`.
    pub fn settle(&self, key: &str, result: &Value) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached("UPDATE effects SET state = 'done', result = ?2, finished_at = ?3 WHERE key = ?1")
            .and_then(|mut s| s.execute((key, result.to_string(), now_ms())))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Gives a claim back when the effect certainly did not happen (the call failed before
    /// acting, e.g. the downstream system was unavailable), so a retry may act.
    pub fn release(&self, key: &str) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached("DELETE FROM effects WHERE key = ?1 AND state = 'started'")
            .and_then(|mut s| s.execute([key]))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The ledger's rows for a case, oldest first.
    pub fn effects(&self, correlation_id: &str) -> Result<Vec<EffectRecord>, StoreError> {
        self.read_effects("correlation_id = ?1", [correlation_id])
    }

    fn read_effects(&self, filter: &str, args: impl rusqlite::Params) -> Result<Vec<EffectRecord>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT key, agent, event_id, correlation_id, tool, args, state, result, suppressed
                 FROM effects WHERE {filter} ORDER BY started_at, rowid"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(args, |r| {
                let args: String = r.get(5)?;
                let state: String = r.get(6)?;
                let result: Option<String> = r.get(7)?;
                Ok(EffectRecord {
                    key: r.get(0)?,
                    agent: r.get(1)?,
                    event_id: r.get(2)?,
                    correlation_id: r.get(3)?,
                    tool: r.get(4)?,
                    args: serde_json::from_str(&args).unwrap_or(Value::Null),
                    state: if state == "done" { EffectState::Done } else { EffectState::Started },
                    result: result.and_then(|r| serde_json::from_str(&r).ok()),
                    suppressed: r.get(8)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// The ledger's rows of `agent` for CloudEvent `event_id`, oldest first (what a replay of
    /// that event to that agent would get answered from the ledger).
    pub fn event_effects(&self, agent: &str, event_id: &str) -> Result<Vec<EffectRecord>, StoreError> {
        self.read_effects("agent = ?1 AND event_id = ?2", (agent, event_id))
    }

    /// What an earlier delivery of `event` to `agent` left, read in one transaction: whether
    /// the event's case holds it, and the completions and escalations that delivery recorded,
    /// oldest first. A run that recorded one had finished (it is an agent's last act), so the
    /// event is answered with them. Reads only: [`Store::finish`] counts the suppressions once
    /// the delivery is settled.
    pub fn prior_run(&self, agent: &str, event: &Envelope) -> Result<PriorRun, StoreError> {
        self.read(|conn| prior_in(conn, agent, event))
    }

    /// [`Store::prior_run`], unless `agent` has handled `event` already (`None`: a duplicate),
    /// in the same read transaction: what a delivery needs to know before its run.
    pub fn unless_processed(&self, agent: &str, event: &Envelope) -> Result<Option<PriorRun>, StoreError> {
        self.unless_processed_all(agent, &[event]).map(|mut all| all.pop().flatten())
    }

    /// [`Store::unless_processed`] for each of `events`, in one read transaction: the pages
    /// the lookups share (each index's upper levels) are read once for all of them.
    pub fn unless_processed_all(&self, agent: &str, events: &[&Envelope]) -> Result<Vec<Option<PriorRun>>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.read(|conn| {
            events
                .iter()
                .map(|event| {
                    if super::processed_in(conn, agent, event.id())? {
                        return Ok(None);
                    }
                    prior_in(conn, agent, event).map(Some)
                })
                .collect()
        })
    }
    /// How `agent` ended its handling of CloudEvent `event_id`, if it did.
    pub fn handled(&self, agent: &str, event_id: &str) -> Result<Option<String>, StoreError> {
        let conn = self.reader();
        conn.prepare_cached("SELECT outcome FROM processed WHERE agent = ?1 AND event_id = ?2")
            .and_then(|mut s| s.query_row((agent, event_id), |r| r.get(0)).optional())
            .map_err(|e| self.err(e))
    }

    /// The recorded result under `key`, if settled (without counting a suppression).
    pub fn effect_result(&self, key: &str) -> Result<Option<Value>, StoreError> {
        let conn = self.reader();
        let result: Option<Option<String>> = conn
            .prepare_cached("SELECT result FROM effects WHERE key = ?1 AND state = 'done'")
            .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))?;
        Ok(result.flatten().and_then(|r| serde_json::from_str(&r).ok()))
    }
}

/// What an earlier delivery of `event` to `agent` left, read on `conn` (see
/// [`Store::prior_run`]).
fn prior_in(conn: &Connection, agent: &str, event: &Envelope) -> rusqlite::Result<PriorRun> {
    let in_case = has_event(conn, event.correlation_id().unwrap_or(event.id()), event.id())?;
    let rows: Vec<(String, String, Option<String>)> = conn
        .prepare_cached(
            "SELECT key, tool, result FROM effects
             WHERE event_id = ?2 AND agent = ?1 AND state = 'done' AND (tool GLOB 'complete.*' OR tool = ?3)
             ORDER BY started_at, rowid",
        )?
        .query_map((agent, event.id(), crate::runner::ESCALATE_TOOL), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut answers = Vec::with_capacity(rows.len());
    for (key, tool, result) in rows {
        let recorded = result.and_then(|r| serde_json::from_str(&r).ok()).unwrap_or(Value::Null);
        let in_case = match (recorded["id"].as_str(), recorded["correlationid"].as_str()) {
            (Some(id), case) => has_event(conn, case.unwrap_or(id), id)?,
            (None, _) => false,
        };
        answers.push(Answer { key, tool, recorded, in_case });
    }
    Ok(PriorRun { in_case, answers })
}

/// The idempotency key of an effect: the event, the tool and its arguments in canonical form
/// (object keys sorted at every level, no whitespace).
pub fn effect_key(event_id: &str, tool: &str, args: &Value) -> String {
    format!("{event_id}|{tool}|{}", canonical(args))
}

/// JSON with object keys sorted at every level and no insignificant whitespace.
pub fn canonical(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                Value::Object(entries.into_iter().map(|(k, v)| (k.clone(), sorted(v))).collect())
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Finished;
    use serde_json::json;

    fn meta(args: &Value) -> ClaimMeta<'_> {
        ClaimMeta { agent: "payments", event_id: "e1", correlation_id: "c1", tool: "payments.refund_charge", args }
    }

    #[test]
    fn the_first_claim_acts_and_later_ones_get_the_recorded_result() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let args = json!({"charge_id": "ch-1"});
        let key = effect_key("e1", "payments.refund_charge", &args);
        assert_eq!(store.claim(&key, &meta(&args)).unwrap(), Claim::Fresh);
        assert!(matches!(store.claim(&key, &meta(&args)).unwrap(), Claim::InDoubt { .. }));
        store.settle(&key, &json!({"refund_id": "rf-1"})).unwrap();
        for _ in 0..2 {
            assert_eq!(store.claim(&key, &meta(&args)).unwrap(), Claim::Done(json!({"refund_id": "rf-1"})));
        }
        let rows = store.effects("c1").unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].suppressed, 2);
        assert_eq!(rows[0].state, EffectState::Done);
    }

    #[test]
    fn record_once_lets_exactly_one_writer_win() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let args = json!({});
        assert_eq!(store.record_once("k", &meta(&args), &json!(1)).unwrap(), None);
        assert_eq!(store.record_once("k", &meta(&args), &json!(2)).unwrap(), Some(json!(1)));
        assert_eq!(store.effect_result("k").unwrap(), Some(json!(1)));
    }

    #[test]
    fn a_released_claim_can_be_taken_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let args = json!({});
        store.claim("k", &meta(&args)).unwrap();
        store.release("k").unwrap();
        assert_eq!(store.claim("k", &meta(&args)).unwrap(), Claim::Fresh);
    }

    #[test]
    fn one_read_answers_each_event_as_its_own_read_would() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let placed = Envelope::builder("retail", "OrderSupportPlaced").data(json!({})).build().unwrap();
        let event =
            |n: u32| placed.follow_up("agents.support", "SupportTriaged").data(json!({"n": n})).build().unwrap();
        let (handled, answered, fresh, unknown) = (event(1), event(2), event(3), event(4));
        let case = placed.id();
        let done = Finished { event_id: handled.id(), correlation_id: case, outcome: "completed", answered: &[] };
        store.finish("payments", &[done]).unwrap();
        // `answered`'s run recorded its completion, which reached the case; `fresh` is in the
        // case, with nothing recorded; `unknown` is nowhere.
        let completion = answered.follow_up("agents.payments", "PaymentIssueResolved").build().unwrap();
        let args = json!({"n": 2});
        let meta = ClaimMeta {
            agent: "payments",
            event_id: answered.id(),
            correlation_id: case,
            tool: "complete.PaymentIssueResolved",
            args: &args,
        };
        let key = effect_key(answered.id(), meta.tool, &args);
        store.record_once(&key, &meta, &completion.to_json_value()).unwrap();
        for e in [&placed, &fresh, &answered, &completion] {
            store.record_event(e).unwrap();
        }

        let all = store.unless_processed_all("payments", &[&handled, &answered, &fresh, &unknown]).unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[0], None, "handled already");
        let prior = all[1].as_ref().expect("answered is not processed");
        assert!(prior.in_case);
        assert_eq!(prior.answers.len(), 1);
        assert_eq!((prior.answers[0].key.as_str(), prior.answers[0].in_case), (key.as_str(), true));
        assert_eq!(prior.answers[0].recorded["id"], completion.id());
        assert_eq!(all[2], Some(PriorRun { in_case: true, answers: Vec::new() }));
        assert_eq!(all[3], Some(PriorRun { in_case: false, answers: Vec::new() }));
        for (e, batched) in [&handled, &answered, &fresh, &unknown].into_iter().zip(&all) {
            assert_eq!(&store.unless_processed("payments", e).unwrap(), batched, "event {}", e.id());
        }
        assert!(store.unless_processed_all("payments", &[]).unwrap().is_empty());
    }

    #[test]
    fn keys_ignore_the_order_and_spacing_of_arguments() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"y": [1, {"d": 2, "c": 3}], "x": null}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"x":null,"y":[1,{"c":3,"d":2}]},"b":1}"#).unwrap();
        assert_eq!(effect_key("e", "t", &a), effect_key("e", "t", &b));
        assert_ne!(effect_key("e", "t", &a), effect_key("e2", "t", &a));
        assert_eq!(canonical(&b), r#"{"a":{"x":null,"y":[1,{"c":3,"d":2}]},"b":1}"#);
    }
}
