//! Explaining a miss: for each alternative of a pattern, the first field and operator that
//! failed and what the event had there. Runs the same machine as matching, then reads the
//! event's values at the failing path for the message.

use std::fmt;

use serde_json::Value;

use super::compile::{Machine, RuleId};
use super::{EventError, Pattern, Scratch};

/// Why one alternative of a pattern did not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Miss {
    /// Dotted field path, e.g. `detail.data.issues`.
    pub path: String,
    /// What the pattern asked there, as pattern JSON, e.g. `["duplicate_charge"]`.
    pub wanted: String,
    /// What the event had there, as JSON values, or `nothing`.
    pub found: String,
}

/// The outcome of matching one pattern, with the reason for a miss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub matched: bool,
    /// One entry per alternative (`$or` combination) when the pattern did not match.
    pub misses: Vec<Miss>,
}

impl fmt::Display for Miss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: wanted {}, the event has {}", self.path, self.wanted, self.found)
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.matched {
            return write!(f, "matched");
        }
        match self.misses.as_slice() {
            [] => write!(f, "no match"),
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "none of {} alternatives matched: ", many.len())?;
                for (i, m) in many.iter().take(5).enumerate() {
                    if i > 0 {
                        write!(f, "; ")?;
                    }
                    write!(f, "[{}] {m}", i + 1)?;
                }
                if many.len() > 5 {
                    write!(f, "; …")?;
                }
                Ok(())
            }
        }
    }
}

impl Pattern {
    /// Matches one event and, on a miss, says why.
    pub fn explain(&self, event: &[u8]) -> Result<Explanation, EventError> {
        Machine::single(self).explain(0, event)
    }
}

impl Machine {
    /// Matches one rule against an event and, on a miss, says why for each alternative.
    pub fn explain(&self, rule: RuleId, event: &[u8]) -> Result<Explanation, EventError> {
        let mut s = Scratch::new();
        self.run(event, &mut s)?;
        if s.matched.contains(&rule) {
            return Ok(Explanation { matched: true, misses: Vec::new() });
        }
        let doc: Option<Value> = serde_json::from_slice(event).ok();
        let pattern = self.rule_pattern(rule);
        let wants = pattern.alternatives_for_explain();
        let mut misses = Vec::new();
        let branches = self.branches.iter().enumerate().filter(|(_, b)| b.rule == rule);
        for ((b, branch), fields) in branches.zip(wants) {
            let b = b as u32;
            let fired = |field: u16, presence: bool| {
                s.hits.iter().any(|h| h.branch == b && h.field == field && h.presence == presence)
            };
            // A one-field alternative fires its rule directly, and the rule did not match.
            let simple = branch.positives == 1 && branch.absences == 0;
            let mut miss = None;
            let (mut pi, mut ai) = (0u16, 0u16);
            for (path, wanted, absent) in &fields {
                let ok = if *absent {
                    let present = fired(ai, true);
                    ai += 1;
                    !present
                } else {
                    let hit = !simple && fired(pi, false);
                    pi += 1;
                    hit
                };
                if !ok {
                    miss = Some(Miss { path: path.clone(), wanted: wanted.clone(), found: found(doc.as_ref(), path) });
                    break;
                }
            }
            misses.push(miss.unwrap_or_else(|| Miss {
                path: fields.iter().map(|(p, _, _)| p.as_str()).collect::<Vec<_>>().join(", "),
                wanted: "one array element to hold all these fields".to_owned(),
                found: "them only in different elements of the same array".to_owned(),
            }));
        }
        Ok(Explanation { matched: false, misses })
    }
}

/// The leaf values at a dotted path, arrays flattened, as the matcher sees them.
fn found(doc: Option<&Value>, path: &str) -> String {
    let Some(doc) = doc else { return "an unreadable event".to_owned() };
    let mut cur: Vec<&Value> = vec![doc];
    for seg in path.split('.') {
        let mut next = Vec::new();
        for v in cur {
            collect_key(v, seg, &mut next);
        }
        cur = next;
    }
    let mut leaves = Vec::new();
    for v in cur {
        flatten(v, &mut leaves);
    }
    if leaves.is_empty() {
        return "nothing".to_owned();
    }
    let shown: Vec<String> = leaves.iter().take(8).map(|v| truncate(&v.to_string())).collect();
    let more = if leaves.len() > 8 { format!(", … ({} values)", leaves.len()) } else { String::new() };
    format!("[{}{more}]", shown.join(","))
}

fn collect_key<'v>(v: &'v Value, key: &str, out: &mut Vec<&'v Value>) {
    match v {
        Value::Object(m) => {
            if let Some(x) = m.get(key) {
                out.push(x);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_key(i, key, out)),
        _ => {}
    }
}

fn flatten<'v>(v: &'v Value, out: &mut Vec<&'v Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        Value::Object(_) => {}
        leaf => out.push(leaf),
    }
}

fn truncate(s: &str) -> String {
    if s.chars().count() <= 80 { s.to_owned() } else { format!("{}…", s.chars().take(80).collect::<String>()) }
}
