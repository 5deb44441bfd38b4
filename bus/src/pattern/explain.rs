//! Explaining a miss: for each alternative of a pattern, the first field and operator that
//! failed and what the event had there. Runs the same machine as matching, then reads the
//! event's values at the failing path for the message.

use std::fmt;

use super::compile::{Machine, RuleId};
use super::{EventError, Pattern, Scratch};
use crate::json;

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
                    miss = Some(Miss { path: path.join("."), wanted: wanted.clone(), found: found(event, path) });
                    break;
                }
            }
            misses.push(miss.unwrap_or_else(|| Miss {
                path: fields.iter().map(|(p, _, _)| p.join(".")).collect::<Vec<_>>().join(", "),
                wanted: "one array element to hold all these fields".to_owned(),
                found: "them only in different elements of the same array".to_owned(),
            }));
        }
        Ok(Explanation { matched: false, misses })
    }
}

/// The leaf values at a dotted path, arrays flattened, as the matcher sees them: read from the
/// raw text, so they show exactly as the event wrote them (`1e999` included).
fn found(event: &[u8], path: &[String]) -> String {
    let mut cur: Vec<&[u8]> = vec![event];
    for seg in path {
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
    let shown: Vec<String> = leaves.iter().take(8).map(|v| truncate(&String::from_utf8_lossy(v))).collect();
    let more = if leaves.len() > 8 { format!(", … ({} values)", leaves.len()) } else { String::new() };
    format!("[{}{more}]", shown.join(","))
}

fn trimmed(v: &[u8]) -> &[u8] {
    v.trim_ascii()
}

fn collect_key<'v>(v: &'v [u8], key: &str, out: &mut Vec<&'v [u8]>) {
    let v = trimmed(v);
    match v.first() {
        Some(b'{') => {
            if let Ok(members) = json::members(v) {
                out.extend(members.into_iter().filter(|(k, _)| k == key).map(|(_, r)| &v[r]));
            }
        }
        Some(b'[') => {
            if let Ok(items) = json::elements(v) {
                items.into_iter().for_each(|r| collect_key(&v[r], key, out));
            }
        }
        _ => {}
    }
}

fn flatten<'v>(v: &'v [u8], out: &mut Vec<&'v [u8]>) {
    let v = trimmed(v);
    match v.first() {
        Some(b'[') => {
            if let Ok(items) = json::elements(v) {
                items.into_iter().for_each(|r| flatten(&v[r], out));
            }
        }
        Some(b'{') | None => {}
        Some(_) => out.push(v),
    }
}

fn truncate(s: &str) -> String {
    if s.chars().count() <= 80 { s.to_owned() } else { format!("{}…", s.chars().take(80).collect::<String>()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn why(pattern: &str, event: &str) -> String {
        Pattern::parse(pattern).unwrap().explain(event.as_bytes()).unwrap().to_string()
    }

    #[test]
    fn names_the_field_the_operator_and_what_the_event_had() {
        assert_eq!(
            why(
                r#"{"detail":{"data":{"issues":["duplicate_charge"]}}}"#,
                r#"{"detail":{"data":{"issues":["missing_item"]}}}"#
            ),
            r#"detail.data.issues: wanted ["duplicate_charge"], the event has ["missing_item"]"#
        );
        assert_eq!(
            why(r#"{"a":[{"prefix":"x"}]}"#, r#"{"b":1}"#),
            r#"a: wanted [{"prefix":"x"}], the event has nothing"#
        );
        assert_eq!(
            why(r#"{"a":[{"exists":false}]}"#, r#"{"a":[1,2]}"#),
            r#"a: wanted {"exists":false}, the event has [1,2]"#
        );
        assert_eq!(why(r#"{"a":["x"]}"#, r#"{"a":"x"}"#), "matched");
        assert_eq!(why(r#"{"a.b":["x"]}"#, r#"{"a.b":"y"}"#), r#"a.b: wanted ["x"], the event has ["y"]"#);
        assert_eq!(why(r#"{"a":[1e300]}"#, r#"{"a":2}"#), r#"a: wanted [1e300], the event has [2]"#);
    }

    #[test]
    fn explains_each_alternative_and_array_consistency() {
        assert_eq!(
            why(r#"{"$or":[{"a":["1"]},{"b":[{"numeric":[">",5]}]}]}"#, r#"{"a":"2","b":5}"#),
            r#"none of 2 alternatives matched: [1] a: wanted ["1"], the event has ["2"]; [2] b: wanted [{"numeric":[">",5]}], the event has [5]"#
        );
        assert_eq!(
            why(r#"{"d":{"a":["1"],"b":["2"]}}"#, r#"{"d":[{"a":"1","b":"3"},{"a":"4","b":"2"}]}"#),
            "d.a, d.b: wanted one array element to hold all these fields, the event has them only in different elements of the same array"
        );
    }
}
