//! Measuring rules on events: compile a rule set once, match every event, count matches per
//! rule, check them against expected counts, and report events per second beside a baseline
//! (parsing the same events into `serde_json::Value`). Used by `choreo pattern bench` and by
//! the `citylots` bench target.

use std::time::Instant;

use serde_json::Value;

use super::{Machine, MachineBuilder, Pattern, PatternError, Scratch};

/// A named set of rules, each with the number of events it should match, if known.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub name: String,
    pub rules: Vec<BenchRule>,
}

#[derive(Debug, Clone)]
pub struct BenchRule {
    pub id: String,
    pub pattern: Pattern,
    pub expected: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("rules file is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("rules file: {0}")]
    Shape(String),
    #[error("rule {id}: {source}")]
    Pattern { id: String, source: PatternError },
    #[error("event line {line}: {reason}")]
    Event { line: usize, reason: String },
}

fn pattern_of(id: &str, v: &Value) -> Result<Pattern, BenchError> {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Pattern::parse(&text).map_err(|source| BenchError::Pattern { id: id.to_owned(), source })
}

/// Reads rules: either a JSON object of rule name → pattern (an object, or its text), giving one
/// set named `rules`, or a file shaped like `citylots_rules.json` (`rule_sets` with `rules` and
/// `include`), giving its sets.
pub fn load_rules(text: &str) -> Result<Vec<RuleSet>, BenchError> {
    let doc: Value = serde_json::from_str(text)?;
    let Some(obj) = doc.as_object() else {
        return Err(BenchError::Shape("expected a JSON object".into()));
    };
    let Some(sets) = obj.get("rule_sets") else {
        let rules = obj
            .iter()
            .map(|(id, p)| Ok(BenchRule { id: id.clone(), pattern: pattern_of(id, p)?, expected: None }))
            .collect::<Result<Vec<_>, BenchError>>()?;
        return Ok(vec![RuleSet { name: "rules".into(), rules }]);
    };
    let sets = sets.as_array().ok_or_else(|| BenchError::Shape("rule_sets must be an array".into()))?;
    let mut out: Vec<RuleSet> = Vec::new();
    for set in sets {
        let name = set["name"].as_str().ok_or_else(|| BenchError::Shape("a rule set needs a name".into()))?.to_owned();
        let mut rules = Vec::new();
        if let Some(list) = set.get("rules").and_then(Value::as_array) {
            for r in list {
                let id = r["id"].as_str().ok_or_else(|| BenchError::Shape(format!("a rule of {name} needs an id")))?;
                rules.push(BenchRule {
                    id: id.to_owned(),
                    pattern: pattern_of(id, &r["pattern"])?,
                    expected: r.get("expected_matches").and_then(Value::as_u64),
                });
            }
        }
        if let Some(includes) = set.get("include").and_then(Value::as_array) {
            for inc in includes {
                let inc = inc.as_str().unwrap_or_default();
                let found = out
                    .iter()
                    .find(|s| s.name == inc)
                    .ok_or_else(|| BenchError::Shape(format!("set {name} includes unknown set {inc}")))?;
                rules.extend(found.rules.iter().cloned());
            }
        }
        out.push(RuleSet { name, rules });
    }
    Ok(out)
}

/// Events as lines of one buffer: loaded once, matched many times.
pub struct Events {
    data: Vec<u8>,
    lines: Vec<(usize, usize)>,
}

impl Events {
    /// Splits JSON lines; blank lines are ignored.
    pub fn from_bytes(data: Vec<u8>) -> Events {
        let mut lines = Vec::new();
        let mut start = 0;
        for (i, &b) in data.iter().enumerate() {
            if b == b'\n' {
                if i > start {
                    lines.push((start, i));
                }
                start = i + 1;
            }
        }
        if start < data.len() {
            lines.push((start, data.len()));
        }
        Events { data, lines }
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.lines.iter().map(|&(a, b)| &self.data[a..b])
    }
}

/// The outcome of one rule set over the events.
#[derive(Debug, Clone)]
pub struct SetReport {
    pub name: String,
    /// (rule id, matches counted, matches expected)
    pub counts: Vec<(String, u64, Option<u64>)>,
    /// Median events per second over the passes.
    pub events_per_sec: f64,
}

impl SetReport {
    /// Rules whose count differs from the expected one.
    pub fn mismatches(&self) -> Vec<String> {
        self.counts
            .iter()
            .filter_map(|(id, got, want)| match want {
                Some(w) if w != got => Some(format!("{id}: counted {got}, expected {w}")),
                _ => None,
            })
            .collect()
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Compiles the set once, matches every event `passes` times, and reports the median rate.
/// Counts come from the first pass; every pass must agree with it.
pub fn run_set(set: &RuleSet, events: &Events, passes: usize) -> Result<SetReport, BenchError> {
    let mut b = MachineBuilder::new();
    for r in &set.rules {
        b.add_rule(r.id.clone(), r.pattern.clone());
    }
    let machine = b.build();
    let (counts, rates) = measure(&machine, events, passes)?;
    Ok(SetReport {
        name: set.name.clone(),
        counts: set.rules.iter().zip(counts).map(|(r, c)| (r.id.clone(), c, r.expected)).collect(),
        events_per_sec: median(rates),
    })
}

/// Matches every event `passes` times; returns per-rule counts and each pass's events/s.
pub fn measure(machine: &Machine, events: &Events, passes: usize) -> Result<(Vec<u64>, Vec<f64>), BenchError> {
    let mut scratch = Scratch::new();
    let mut counts = vec![0u64; machine.len()];
    let mut rates = Vec::with_capacity(passes.max(1));
    for pass in 0..passes.max(1) {
        let mut pass_counts = vec![0u64; machine.len()];
        let t = Instant::now();
        for (i, e) in events.iter().enumerate() {
            let hits = machine
                .matches(e, &mut scratch)
                .map_err(|err| BenchError::Event { line: i + 1, reason: err.to_string() })?;
            for &r in hits {
                pass_counts[r as usize] += 1;
            }
        }
        rates.push(events.len() as f64 / t.elapsed().as_secs_f64());
        if pass == 0 {
            counts = pass_counts;
        } else {
            debug_assert_eq!(counts, pass_counts);
        }
    }
    Ok((counts, rates))
}

/// The baseline: parsing each event into a `serde_json::Value`; median events/s.
pub fn parse_baseline(events: &Events, passes: usize) -> f64 {
    let mut rates = Vec::new();
    for _ in 0..passes.max(1) {
        let t = Instant::now();
        let mut n = 0usize;
        for e in events.iter() {
            if let Ok(v) = serde_json::from_slice::<Value>(e) {
                n += usize::from(v.is_object());
            }
        }
        std::hint::black_box(n);
        rates.push(events.len() as f64 / t.elapsed().as_secs_f64());
    }
    median(rates)
}
