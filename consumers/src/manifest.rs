//! Agent folders: `consumers/agents/<name>/` with `agent.toml` (the manifest), `prompt.md`
//! and, for the offline model, `offline.toml`. Discovered at start; nothing lists them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use choreo_bus::pattern::Pattern;
use serde::Deserialize;
use serde_json::Value;

/// The manifest file of an agent folder.
pub const MANIFEST_FILE: &str = "agent.toml";
/// The system prompt of an agent folder.
pub const PROMPT_FILE: &str = "prompt.md";
/// Events an agent brings of its own: `events/<EventName>.json`, each a JSON Schema of the
/// event's data. Adding an agent with a new event touches no file outside its folder.
pub const EVENTS_DIR: &str = "events";

/// What an agent is: `agent.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// A lowercase noun, the same as the folder's name.
    pub name: String,
    pub description: String,
    /// The EventBridge event pattern of the agent's rule.
    pub subscribe: toml::Table,
    /// The events the agent may complete with; their data schemas are its output schemas.
    #[serde(deserialize_with = "one_or_many")]
    pub completes_with: Vec<String>,
    /// Completions answered at most once per case, however many events ask for them (the
    /// join: `support` answers the customer once even when two resolutions arrive together).
    #[serde(default)]
    pub once_per_case: Vec<String>,
    /// The tools the model may call, `<domain>.<verb>_<noun>`.
    #[serde(default)]
    pub tools: Vec<String>,
    /// Model calls per event before the agent gives the case to a human.
    #[serde(default = "default_max_turns")]
    pub max_turns: u32,
    /// The longest answer the model may give, in tokens.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Runs that call the model at once. Events answered without the model (duplicates,
    /// finished runs answered from the ledger) take no slot; up to `concurrency` + 640 events
    /// are in flight (see `consumer::max_in_flight`).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Retries of the agent's rule target before its dead letters.
    #[serde(default)]
    pub retry: Retry,
}

/// The retry policy of the agent's rule target.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    #[serde(default = "default_attempts")]
    pub maximum_retry_attempts: u32,
    #[serde(default = "default_event_age")]
    pub maximum_event_age_seconds: u64,
}

impl Default for Retry {
    fn default() -> Self {
        Self { maximum_retry_attempts: default_attempts(), maximum_event_age_seconds: default_event_age() }
    }
}

fn default_max_turns() -> u32 {
    8
}
fn default_max_tokens() -> u32 {
    2048
}
fn default_concurrency() -> usize {
    8
}
fn default_attempts() -> u32 {
    5
}
fn default_event_age() -> u64 {
    3600
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// An agent folder, read.
#[derive(Debug, Clone)]
pub struct Agent {
    pub manifest: Manifest,
    pub dir: PathBuf,
    pub prompt: String,
    /// The rule's pattern as JSON text.
    pub pattern: String,
    /// Events of the agent's own (`events/*.json`), beside the catalog's.
    pub events: Vec<AgentEvent>,
    /// The model slots of [`Manifest::concurrency`], shared by the agent's runs (and clones).
    pub(crate) model_slots: Arc<tokio::sync::Semaphore>,
    /// The events the agent's runs are on right now (shared by clones).
    pub(crate) in_progress: Arc<crate::consumer::InProgress>,
}

/// An event an agent folder defines: its name and the JSON Schema of its data.
#[derive(Clone)]
pub struct AgentEvent {
    pub name: String,
    pub schema: Value,
    validator: Arc<jsonschema::Validator>,
}

impl std::fmt::Debug for AgentEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentEvent").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Agent {
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// The agent's rule on the bus.
    pub fn rule_name(&self) -> String {
        format!("agent-{}", self.manifest.name)
    }

    /// The agent's inbox (its SQS queue in the cloud).
    pub fn inbox(&self) -> String {
        format!("agent-{}", self.manifest.name)
    }

    /// The CloudEvent `source` of its completions.
    pub fn source(&self) -> String {
        format!("agents.{}", self.manifest.name)
    }

    /// The data schema of an event the agent may complete with: the catalog's, or its own.
    pub fn event_schema(&self, event: &str) -> Option<Value> {
        match choreo_schemas::catalog::lookup(event) {
            Some(schema) => Some(schema.schema().clone()),
            None => self.events.iter().find(|e| e.name == event).map(|e| e.schema.clone()),
        }
    }

    /// Checks completion data against its event's schema; the error names the JSON pointer.
    pub fn validate_event(&self, event: &str, data: &Value) -> Result<(), String> {
        if choreo_schemas::catalog::lookup(event).is_some() {
            return choreo_schemas::catalog::validate(event, data).map_err(|e| e.to_string());
        }
        let own = self.events.iter().find(|e| e.name == event).ok_or_else(|| format!("unknown event `{event}`"))?;
        match own.validator.iter_errors(data).next() {
            None => Ok(()),
            Some(error) => {
                let pointer = error.instance_path().as_str().to_owned();
                let at = if pointer.is_empty() { "the root".to_owned() } else { format!("`{pointer}`") };
                Err(format!("`{event}` data is invalid at {at}: {error}"))
            }
        }
    }
}

/// Why an agent folder was refused; each names the file and the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: `{field}`: {message}", path.display())]
    Field { path: PathBuf, field: String, message: String },
}

impl ManifestError {
    fn field(path: &Path, field: impl Into<String>, message: impl Into<String>) -> Self {
        ManifestError::Field { path: path.to_owned(), field: field.into(), message: message.into() }
    }
}

/// Reads one agent folder, checking what can be checked without the tool registry: the name
/// against the folder, the pattern, the completion events against the catalog.
pub fn load(dir: &Path) -> Result<Agent, ManifestError> {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Read { path: path.clone(), source })?;
    let manifest: Manifest =
        toml::from_str(&text).map_err(|e| ManifestError::Parse { path: path.clone(), message: e.to_string() })?;
    let folder = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if manifest.name != folder {
        return Err(ManifestError::field(
            &path,
            "name",
            format!("`{}` differs from its folder `{folder}`", manifest.name),
        ));
    }
    let valid_name = manifest.name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && manifest.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !valid_name {
        return Err(ManifestError::field(&path, "name", format!("`{}` is not a lowercase noun", manifest.name)));
    }
    let pattern = serde_json::to_string(&manifest.subscribe)
        .map_err(|e| ManifestError::field(&path, "subscribe", e.to_string()))?;
    Pattern::parse(&pattern).map_err(|e| ManifestError::field(&path, "subscribe", format!("invalid pattern: {e}")))?;
    if manifest.completes_with.is_empty() {
        return Err(ManifestError::field(&path, "completes_with", "names no event"));
    }
    let events = load_events(dir)?;
    for event in &manifest.completes_with {
        if choreo_schemas::catalog::lookup(event).is_none() && !events.iter().any(|e| &e.name == event) {
            return Err(ManifestError::field(&path, "completes_with", format!("unknown event `{event}`")));
        }
    }
    for event in &manifest.once_per_case {
        if !manifest.completes_with.contains(event) {
            return Err(ManifestError::field(
                &path,
                "once_per_case",
                format!("`{event}` is not one of completes_with"),
            ));
        }
    }
    if manifest.max_turns == 0 {
        return Err(ManifestError::field(&path, "max_turns", "must be at least 1"));
    }
    if manifest.concurrency == 0 {
        return Err(ManifestError::field(&path, "concurrency", "must be at least 1"));
    }
    let prompt_path = dir.join(PROMPT_FILE);
    let prompt = std::fs::read_to_string(&prompt_path)
        .map_err(|source| ManifestError::Read { path: prompt_path.clone(), source })?;
    let model_slots = Arc::new(tokio::sync::Semaphore::new(manifest.concurrency));
    let in_progress = Arc::default();
    Ok(Agent { manifest, dir: dir.to_owned(), prompt, pattern, events, model_slots, in_progress })
}

/// The `*.json` files of `dir`, sorted; none when `dir` does not exist.
pub(crate) fn json_files(dir: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let entries = std::fs::read_dir(dir).map_err(|source| ManifestError::Read { path: dir.to_owned(), source })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    Ok(paths)
}

/// Reads `events/*.json`: PascalCase names the catalog does not have, valid JSON Schemas.
fn load_events(dir: &Path) -> Result<Vec<AgentEvent>, ManifestError> {
    let mut events = Vec::new();
    for path in json_files(&dir.join(EVENTS_DIR))? {
        let name = path.file_stem().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let pascal = name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && name.chars().all(|c| c.is_ascii_alphanumeric());
        if !pascal {
            return Err(ManifestError::Parse { path, message: format!("event name `{name}` is not PascalCase") });
        }
        if choreo_schemas::catalog::lookup(&name).is_some() {
            return Err(ManifestError::Parse {
                path,
                message: format!("`{name}` is an event of the catalog; an agent cannot redefine it"),
            });
        }
        let text =
            std::fs::read_to_string(&path).map_err(|source| ManifestError::Read { path: path.clone(), source })?;
        let schema: Value = serde_json::from_str(&text)
            .map_err(|e| ManifestError::Parse { path: path.clone(), message: format!("not JSON: {e}") })?;
        let validator = jsonschema::validator_for(&schema).map_err(|e| ManifestError::Parse {
            path: path.clone(),
            message: format!("not a valid JSON Schema: {e}"),
        })?;
        events.push(AgentEvent { name, schema, validator: Arc::new(validator) });
    }
    Ok(events)
}

/// Every agent folder under `root` (a folder with an `agent.toml`), sorted by name.
pub fn discover(root: &Path) -> Result<Vec<Agent>, ManifestError> {
    let entries = std::fs::read_dir(root).map_err(|source| ManifestError::Read { path: root.to_owned(), source })?;
    let mut dirs: Vec<PathBuf> =
        entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.join(MANIFEST_FILE).is_file()).collect();
    dirs.sort();
    dirs.iter().map(|d| load(d)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYMENTS: &str = r#"
name = "payments"
description = "Refunds duplicate charges"
subscribe = { "detail-type" = ["SupportTriaged"], detail = { data = { issues = ["duplicate_charge"] } } }
completes_with = "PaymentIssueResolved"
tools = ["payments.list_charges"]
"#;

    fn folder(name: &str, manifest: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(MANIFEST_FILE), manifest).unwrap();
        std::fs::write(dir.join(PROMPT_FILE), "You are payments.").unwrap();
        root
    }

    #[test]
    fn reads_a_folder_into_an_agent_with_its_rule_pattern() {
        let root = folder("payments", PAYMENTS);
        let agents = discover(root.path()).unwrap();
        assert_eq!(agents.len(), 1);
        let agent = &agents[0];
        assert_eq!(agent.manifest.completes_with, vec!["PaymentIssueResolved"]);
        assert_eq!(agent.manifest.max_turns, 8);
        assert_eq!(agent.rule_name(), "agent-payments");
        let pattern: serde_json::Value = serde_json::from_str(&agent.pattern).unwrap();
        assert_eq!(pattern["detail"]["data"]["issues"][0], "duplicate_charge");
    }

    #[test]
    fn refusals_name_the_file_and_the_field() {
        let cases = [
            ("orders", PAYMENTS.to_owned(), "`name`: `payments` differs from its folder `orders`"),
            ("payments", PAYMENTS.replace("PaymentIssueResolved", "RefundDone"), "`completes_with`: unknown event"),
            (
                "payments",
                PAYMENTS.replace("[\"SupportTriaged\"]", "\"SupportTriaged\""),
                "`subscribe`: invalid pattern",
            ),
            ("payments", format!("{PAYMENTS}colour = 1\n"), "unknown field `colour`"),
            ("payments", format!("{PAYMENTS}max_turns = 0\n"), "`max_turns`"),
        ];
        for (dir, manifest, expected) in cases {
            let root = folder(dir, &manifest);
            let err = discover(root.path()).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
            assert!(err.contains("agent.toml"), "{err}");
        }
    }
}
