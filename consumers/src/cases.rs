//! An agent's cases: `cases/*.json` in its folder, each one event in and what must come out
//! (the outcome, the events published, the effects done, the refusals). One generic test runs
//! every case of every agent; `choreo validate` checks that they read.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::manifest::ManifestError;

/// The folder of an agent's cases.
pub const CASES_DIR: &str = "cases";

/// One case of an agent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentCase {
    /// What the case shows, in a sentence.
    pub description: String,
    /// The event the agent receives.
    pub event: CaseInput,
    /// Events of the case before this one (what `case.get_case` shows), oldest first.
    #[serde(default)]
    pub case: Vec<CaseInput>,
    pub expect: Expect,
}

/// An event, as a case writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseInput {
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default = "default_source")]
    pub source: String,
    /// The customer the event acts for (`authid`, `authtype` = `app_user`).
    #[serde(default)]
    pub customer: Option<String>,
    pub data: Value,
}

fn default_source() -> String {
    "retail.support-api".into()
}

/// What must come out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `completed`, `escalated` or `no_completion`.
    pub outcome: String,
    /// The events the agent publishes, in order; `data` is matched as a subset (every field
    /// given must be there with that value; arrays element by element).
    #[serde(default)]
    pub published: Vec<ExpectedEvent>,
    /// Side effects done, by tool name (tools not named must do none).
    #[serde(default)]
    pub effects: std::collections::BTreeMap<String, usize>,
    /// Tool calls refused for naming what the customer does not own.
    #[serde(default)]
    pub refused: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedEvent {
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub data: Value,
}

/// Every case of the agent folder `dir`, sorted by file name.
pub fn load(dir: &Path) -> Result<Vec<(PathBuf, AgentCase)>, ManifestError> {
    crate::manifest::json_files(&dir.join(CASES_DIR))?
        .into_iter()
        .map(|path| {
            let text =
                std::fs::read_to_string(&path).map_err(|source| ManifestError::Read { path: path.clone(), source })?;
            let case: AgentCase = serde_json::from_str(&text)
                .map_err(|e| ManifestError::Parse { path: path.clone(), message: e.to_string() })?;
            if !["completed", "escalated", "no_completion"].contains(&case.expect.outcome.as_str()) {
                return Err(ManifestError::Field {
                    path,
                    field: "expect.outcome".into(),
                    message: format!("`{}` is not completed, escalated or no_completion", case.expect.outcome),
                });
            }
            Ok((path, case))
        })
        .collect()
}

/// Whether `actual` has every field of `expected` with its value; the error names the first
/// difference by JSON pointer.
pub fn contains(expected: &Value, actual: &Value) -> Result<(), String> {
    fn walk(expected: &Value, actual: &Value, at: &mut String) -> Result<(), String> {
        match (expected, actual) {
            (Value::Object(want), Value::Object(have)) => {
                for (key, value) in want {
                    let len = at.len();
                    at.push('/');
                    at.push_str(key);
                    let got = have.get(key).ok_or_else(|| format!("{at}: missing"))?;
                    walk(value, got, at)?;
                    at.truncate(len);
                }
                Ok(())
            }
            (Value::Array(want), Value::Array(have)) => {
                if want.len() != have.len() {
                    return Err(format!("{at}: {} items, expected {}", have.len(), want.len()));
                }
                for (i, (w, h)) in want.iter().zip(have).enumerate() {
                    let len = at.len();
                    at.push_str(&format!("/{i}"));
                    walk(w, h, at)?;
                    at.truncate(len);
                }
                Ok(())
            }
            _ if expected == actual => Ok(()),
            _ => Err(format!("{at}: {actual}, expected {expected}")),
        }
    }
    walk(expected, actual, &mut String::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subsets_match_and_differences_are_named_by_pointer() {
        let actual = json!({"outcome": "refunded", "refunds": [{"charge_id": "b", "refund_id": "rf-1"}], "x": 1});
        assert!(contains(&json!({"outcome": "refunded", "refunds": [{"charge_id": "b"}]}), &actual).is_ok());
        assert_eq!(
            contains(&json!({"outcome": "refused"}), &actual).unwrap_err(),
            r#"/outcome: "refunded", expected "refused""#
        );
        assert_eq!(contains(&json!({"refunds": []}), &actual).unwrap_err(), "/refunds: 1 items, expected 0");
        assert_eq!(contains(&json!({"y": 1}), &actual).unwrap_err(), "/y: missing");
    }
}
