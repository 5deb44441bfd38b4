//! The checks behind `choreo validate`: every agent folder read as the runtime reads it (the
//! manifest, the tools, the offline script, the cases against the rule), then the choreography
//! they make together ([`crate::choreography`]), collecting every problem with its file and
//! field instead of stopping at the first.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use choreo_bus::pattern::{MachineBuilder, Pattern};
use choreo_models::{OfflineModel, OfflineScriptError, SCRIPT_FILE};
use choreo_schemas::catalog::{CaseEscalated, CatalogEvent};
use serde_json::{Value, json};

use crate::cases::{self, AgentCase, CaseInput};
use crate::choreography::{self, Graph, World};
use crate::manifest::{self, Agent, MANIFEST_FILE, ManifestError};
use crate::runner::{ESCALATE_TOOL, completion_tool};
use crate::tools::Registry;

/// What `validate_agents` found.
#[derive(Debug, Default)]
pub struct Report {
    /// The agents whose manifest loaded, sorted by name.
    pub agents: Vec<String>,
    /// The case files read.
    pub cases: usize,
    /// Errors and warnings, in the order found.
    pub problems: Vec<Problem>,
    /// The who-triggers-whom graph, once the choreography was checked.
    pub graph: Option<Graph>,
    /// Why the choreography was not checked, when it was asked for and could not be.
    pub choreography_skipped: Option<String>,
}

impl Report {
    /// No errors (warnings do not count).
    pub fn is_ok(&self) -> bool {
        self.errors() == 0
    }

    pub fn errors(&self) -> usize {
        self.problems.iter().filter(|p| p.severity == Severity::Error).count()
    }

    pub fn warnings(&self) -> usize {
        self.problems.len() - self.errors()
    }

    fn problem(&mut self, file: impl Into<PathBuf>, field: Option<&str>, message: impl Into<String>) {
        self.problems.push(Problem::error(file, field, message));
    }
}

/// Whether a problem fails validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    /// Printed, but validation passes.
    Warning,
}

/// One thing wrong in an agent folder: the file, the field when there is one, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub field: Option<String>,
    pub message: String,
    pub severity: Severity,
}

impl Problem {
    pub fn new(severity: Severity, file: impl Into<PathBuf>, field: Option<&str>, message: impl Into<String>) -> Self {
        Problem { file: file.into(), field: field.map(str::to_owned), message: message.into(), severity }
    }

    pub fn error(file: impl Into<PathBuf>, field: Option<&str>, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, file, field, message)
    }

    pub fn warning(file: impl Into<PathBuf>, field: Option<&str>, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, file, field, message)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        if let Some(field) = &self.field {
            write!(f, "`{field}`: ")?;
        }
        if self.severity == Severity::Warning {
            write!(f, "warning: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl From<ManifestError> for Problem {
    fn from(e: ManifestError) -> Self {
        match e {
            ManifestError::Read { path, source } => Problem::error(path, None, format!("cannot read: {source}")),
            ManifestError::Parse { path, message } => Problem::error(path, None, one_line(&message)),
            ManifestError::Field { path, field, message } => Problem::error(path, Some(&field), message),
        }
    }
}

impl From<OfflineScriptError> for Problem {
    fn from(e: OfflineScriptError) -> Self {
        match e {
            OfflineScriptError::Read { path, source } => Problem::error(path, None, format!("cannot read: {source}")),
            OfflineScriptError::Parse { path, message } => Problem::error(path, None, one_line(&message)),
            OfflineScriptError::Rule { path, index, message } => {
                Problem::error(path, Some("rule"), format!("rule {index}: {message}"))
            }
        }
    }
}

/// Checks every agent folder under `dir` against `registry`'s tools.
pub fn validate_agents(dir: &Path, registry: &Registry) -> Report {
    read_folders(dir, registry).report
}

/// Checks every agent folder under `dir`, then the choreography they make in `world`: the
/// completion schemas of every folder, and, once every manifest loads, the subscriptions, the
/// events nobody consumes and the loops, with the graph.
pub fn validate_choreography(dir: &Path, registry: &Registry, world: &World) -> Report {
    let Folders { mut report, agents, folders } = read_folders(dir, registry);
    for folder in &folders {
        report.problems.extend(choreography::check_schemas(folder, world));
    }
    let refused = folders.iter().filter(|f| f.join(MANIFEST_FILE).is_file()).count() - agents.len();
    if refused > 0 {
        // Without every agent, events look unconsumed and rules unmatched that are not.
        report.choreography_skipped =
            Some(format!("the choreography is checked once every manifest loads ({refused} did not)"));
    } else if !agents.is_empty() {
        let checked = choreography::check(&agents, world);
        report.problems.extend(checked.problems);
        report.graph = Some(checked.graph);
    }
    report
}

/// The folders' report, the agents that loaded and every folder looked at.
struct Folders {
    report: Report,
    agents: Vec<Agent>,
    folders: Vec<PathBuf>,
}

fn read_folders(dir: &Path, registry: &Registry) -> Folders {
    let mut report = Report::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            report.problem(dir, None, format!("cannot read the agents folder: {e}"));
            return Folders { report, agents: Vec::new(), folders: Vec::new() };
        }
    };
    let mut folders = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let path = entry.path();
                // Hidden entries (`.git`, editor files) are not agents and not mistakes.
                let hidden = entry.file_name().to_string_lossy().starts_with('.');
                if path.is_dir() && !hidden {
                    folders.push(path);
                }
            }
            Err(e) => report.problem(dir, None, format!("cannot read the agents folder: {e}")),
        }
    }
    folders.sort();
    if folders.is_empty() && report.problems.is_empty() {
        report.problem(dir, None, format!("no agent folders (a folder with {MANIFEST_FILE} is an agent)"));
    }
    let agents = folders.iter().filter_map(|folder| check_folder(folder, registry, &mut report)).collect();
    Folders { report, agents, folders }
}

fn check_folder(folder: &Path, registry: &Registry, report: &mut Report) -> Option<Agent> {
    if !folder.join(MANIFEST_FILE).is_file() {
        report.problem(folder, None, format!("not an agent: it has no {MANIFEST_FILE}"));
        return None;
    }
    // What does not need the manifest is still checked when it fails, so that one run shows
    // every problem of the folder.
    let agent = match manifest::load(folder) {
        Ok(agent) => {
            report.agents.push(agent.name().to_owned());
            check_tools(&agent, registry, report);
            Some(agent)
        }
        Err(e) => {
            report.problems.push(e.into());
            None
        }
    };
    let allowed = agent.as_ref().map(allowed_tools);
    let name = folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let script = folder.join(SCRIPT_FILE);
    let mut offline = OfflineModel::new();
    match offline.load_script(&name, &script) {
        Ok(()) => {
            if let Some(allowed) = &allowed {
                let called: BTreeSet<String> = offline.script_tools(&name).into_iter().collect();
                for tool in called.iter().filter(|t| !allowed.contains(*t)) {
                    report.problem(
                        &script,
                        Some("rule.tool"),
                        format!("`{name}` may not call `{tool}`; it may call {}", list(allowed)),
                    );
                }
            }
        }
        Err(e) => report.problems.push(e.into()),
    }
    match cases::load(folder) {
        Ok(cases) => {
            report.cases += cases.len();
            if let (Some(agent), Some(allowed)) = (&agent, &allowed) {
                check_cases(agent, allowed, &cases, report);
            }
        }
        Err(e) => report.problems.push(e.into()),
    }
    agent
}

/// The manifest's tools must be tools of the runtime.
fn check_tools(agent: &Agent, registry: &Registry, report: &mut Report) {
    let path = agent.dir.join(MANIFEST_FILE);
    for tool in agent.manifest.tools.iter().filter(|t| registry.get(t).is_none()) {
        let known: Vec<&str> = registry.names().collect();
        report.problem(&path, Some("tools"), format!("unknown tool `{tool}`; the tools are {}", known.join(", ")));
    }
}

/// What the agent's model may call: its tools, its completions, and the escalation.
fn allowed_tools(agent: &Agent) -> BTreeSet<String> {
    let mut allowed: BTreeSet<String> = agent.manifest.tools.iter().cloned().collect();
    for event in &agent.manifest.completes_with {
        if let Some(tool) = completion_tool(agent, event) {
            allowed.insert(tool.name);
        }
    }
    allowed.insert(ESCALATE_TOOL.to_owned());
    allowed
}

/// Each case's event must reach the agent through its rule, and what it expects must be
/// something the agent can do.
fn check_cases(agent: &Agent, allowed: &BTreeSet<String>, cases: &[(PathBuf, AgentCase)], report: &mut Report) {
    // `manifest::load` already refused an invalid pattern.
    let Ok(pattern) = Pattern::parse(&agent.pattern) else { return };
    let mut rules = MachineBuilder::new();
    let rule = rules.add_rule(agent.rule_name(), pattern);
    let machine = rules.build();
    let name = agent.name();
    for (path, case) in cases {
        let delivered = delivered(&case.event);
        match machine.explain(rule, delivered.as_bytes()) {
            Ok(explanation) if explanation.matched => {}
            Ok(explanation) => {
                let field = explanation.misses.first().map_or("event".to_owned(), |m| case_field(&m.path));
                report.problem(
                    path,
                    Some(&field),
                    format!("the rule of `{name}` would never deliver this event: {explanation}"),
                );
            }
            Err(e) => report.problem(path, Some("event"), format!("cannot be matched: {e}")),
        }
        for expected in &case.expect.published {
            let event = &expected.event_type;
            if event != CaseEscalated::NAME && !agent.manifest.completes_with.contains(event) {
                report.problem(
                    path,
                    Some("expect.published"),
                    format!(
                        "`{name}` never publishes `{event}`: it completes with {}, or escalates ({})",
                        agent.manifest.completes_with.join(", "),
                        CaseEscalated::NAME
                    ),
                );
            }
        }
        for tool in case.expect.effects.keys().filter(|t| !allowed.contains(*t)) {
            report.problem(path, Some("expect.effects"), format!("`{name}` may not call `{tool}`"));
        }
    }
}

/// The event as the agent's rule sees it: the CloudEvent as `detail` of EventBridge's
/// delivered shape, with the fields the rule may match on (`detail-type`, `source`).
fn delivered(input: &CaseInput) -> String {
    let mut detail = json!({
        "specversion": "1.0",
        "id": "x",
        "source": input.source,
        "type": input.event_type,
        "datacontenttype": "application/json",
        "data": input.data,
    });
    if let (Some(customer), Value::Object(map)) = (&input.customer, &mut detail) {
        map.insert("authtype".into(), "app_user".into());
        map.insert("authid".into(), customer.as_str().into());
    }
    json!({
        "version": "0",
        "id": "x",
        "detail-type": input.event_type,
        "source": input.source,
        "account": "000000000000",
        "time": "2026-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    })
    .to_string()
}

/// The case file's field for a path of the delivered event.
fn case_field(path: &str) -> String {
    match path {
        "detail-type" | "detail.type" => "event.type".into(),
        "source" | "detail.source" => "event.source".into(),
        "detail.authid" => "event.customer".into(),
        _ => match path.strip_prefix("detail.data") {
            Some(rest) => format!("event.data{rest}"),
            None => "event".into(),
        },
    }
}

fn list(items: &BTreeSet<String>) -> String {
    items.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
}

/// Parser messages (toml's) span several lines with a source excerpt; a problem is one line:
/// the position and the message.
fn one_line(message: &str) -> String {
    let mut lines = message.lines().map(str::trim).filter(|l| !l.is_empty());
    let Some(first) = lines.next() else { return String::new() };
    let rest: Vec<&str> = lines.filter(|l| !is_excerpt(l)).collect();
    if rest.is_empty() {
        return first.to_owned();
    }
    let at = first.strip_prefix("TOML parse error at ").unwrap_or(first);
    format!("{at}: {}", rest.join("; "))
}

/// A line of a source excerpt: `7 | colour = 1`, `|`, or `| ^^^^^^`.
fn is_excerpt(line: &str) -> bool {
    line.trim_start_matches(|c: char| c.is_ascii_digit()).trim_start().starts_with('|')
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYMENTS: &str = r#"name = "payments"
description = "Refunds duplicate charges"
subscribe = { "detail-type" = ["SupportTriaged"], detail = { data = { issues = ["duplicate_charge"] } } }
completes_with = "PaymentIssueResolved"
tools = ["payments.list_charges", "payments.refund_charge"]
"#;

    const SCRIPT: &str = r#"[[rule]]
when = 'calls["payments.list_charges"] is undefined'
tool = "payments.list_charges"
input = '{"order_id": {{ event.data.order_id | tojson }}}'

[[rule]]
tool = "complete.PaymentIssueResolved"
input = '{}'
"#;

    const CASE: &str = r#"{
  "description": "a duplicate charge is refunded",
  "event": {"type": "SupportTriaged", "customer": "c-1003",
            "data": {"order_id": "o-1003", "issues": ["duplicate_charge"]}},
  "expect": {"outcome": "completed", "published": [{"type": "PaymentIssueResolved"}],
             "effects": {"payments.refund_charge": 1}}
}"#;

    fn agents(files: &[(&str, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = root.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        root
    }

    fn payments(replace: &[(&str, &str)]) -> tempfile::TempDir {
        let mut files = vec![
            ("payments/agent.toml", PAYMENTS.to_owned()),
            ("payments/prompt.md", "You are payments.".to_owned()),
            ("payments/offline.toml", SCRIPT.to_owned()),
            ("payments/cases/refund.json", CASE.to_owned()),
        ];
        for (file, text) in replace {
            match files.iter_mut().find(|(f, _)| f == file) {
                Some(entry) => entry.1 = (*text).to_owned(),
                None => files.push((file, (*text).to_owned())),
            }
        }
        let files: Vec<(&str, &str)> = files.iter().map(|(f, t)| (*f, t.as_str())).collect();
        agents(&files)
    }

    fn problems(root: &tempfile::TempDir) -> Vec<String> {
        let report = validate_agents(root.path(), &Registry::standard());
        report.problems.iter().map(|p| p.to_string().replace(&root.path().display().to_string(), "")).collect()
    }

    #[test]
    fn a_valid_folder_has_no_problems_and_counts_its_cases() {
        let root = payments(&[]);
        let report = validate_agents(root.path(), &Registry::standard());
        assert!(report.is_ok(), "{:?}", report.problems);
        assert_eq!(report.agents, ["payments"]);
        assert_eq!(report.cases, 1);
    }

    #[test]
    fn a_missing_agents_folder_is_one_problem() {
        let root = tempfile::tempdir().unwrap();
        let report = validate_agents(&root.path().join("nowhere"), &Registry::standard());
        assert_eq!(report.problems.len(), 1);
        assert!(report.problems[0].message.contains("cannot read the agents folder"), "{:?}", report.problems);
        let empty = validate_agents(root.path(), &Registry::standard());
        assert!(empty.problems[0].message.contains("no agent folders"), "{:?}", empty.problems);
    }

    #[test]
    fn every_problem_is_collected_with_its_file_and_field() {
        let manifest = PAYMENTS.replace("\"payments.refund_charge\"", "\"payments.refund_everything\"");
        let script = SCRIPT.replace("tool = \"payments.list_charges\"", "tool = \"orders.create_shipment\"");
        let case = CASE
            .replace("\"duplicate_charge\"]}", "\"missing_item\"]}")
            .replace("[{\"type\": \"PaymentIssueResolved\"}]", "[{\"type\": \"OrderSupportCompleted\"}]");
        let root = payments(&[
            ("payments/agent.toml", &manifest),
            ("payments/offline.toml", &script),
            ("payments/cases/refund.json", &case),
            ("notes/readme.md", "not an agent"),
        ]);
        let found = problems(&root);
        let expected = [
            "/notes: not an agent: it has no agent.toml",
            "/payments/agent.toml: `tools`: unknown tool `payments.refund_everything`; the tools are ",
            "/payments/offline.toml: `rule.tool`: `payments` may not call `orders.create_shipment`",
            "/payments/cases/refund.json: `event.data.issues`: the rule of `payments` would never deliver",
            "/payments/cases/refund.json: `expect.published`: `payments` never publishes `OrderSupportCompleted`",
            "/payments/cases/refund.json: `expect.effects`: `payments` may not call `payments.refund_charge`",
        ];
        assert_eq!(found.len(), expected.len(), "{found:#?}");
        for (found, expected) in found.iter().zip(expected) {
            assert!(found.starts_with(expected), "{found}\n  expected: {expected}");
        }
    }

    #[test]
    fn a_broken_manifest_still_has_its_script_and_cases_checked() {
        let root = payments(&[
            ("payments/agent.toml", &format!("{PAYMENTS}colour = 1\n")),
            ("payments/offline.toml", "[[rule]]\ntool = \"payments.list_charges\"\n"),
            (
                "payments/cases/bad.json",
                r#"{"description": "x", "event": {"type": "A", "data": {}}, "expect": {"outcome": "won"}}"#,
            ),
        ]);
        let found = problems(&root);
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(found[0].starts_with("/payments/agent.toml: line 6, column 1: unknown field `colour`"), "{found:#?}");
        assert!(!found[0].contains('\n'), "{}", found[0]);
        assert!(found[1].starts_with("/payments/offline.toml: `rule`: rule 1: `tool` needs an `input`"), "{found:#?}");
        assert!(found[2].starts_with("/payments/cases/bad.json: `expect.outcome`: `won`"), "{found:#?}");
        let report = validate_agents(root.path(), &Registry::standard());
        assert!(report.agents.is_empty());
    }

    #[test]
    fn a_missing_script_is_named() {
        let root = payments(&[]);
        std::fs::remove_file(root.path().join("payments/offline.toml")).unwrap();
        let found = problems(&root);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].starts_with("/payments/offline.toml: cannot read"), "{found:#?}");
    }

    #[test]
    fn escalating_is_always_allowed() {
        let case = CASE.replace("\"PaymentIssueResolved\"", "\"CaseEscalated\"");
        let script = SCRIPT.replace("complete.PaymentIssueResolved", "case.escalate");
        let root = payments(&[("payments/cases/refund.json", &case), ("payments/offline.toml", &script)]);
        assert_eq!(problems(&root), Vec::<String>::new());
    }

    #[test]
    fn warnings_are_shown_as_such_and_do_not_fail_the_report() {
        let warning = Problem::warning("a/agent.toml", Some("completes_with"), "nobody consumes `X`");
        assert_eq!(warning.to_string(), "a/agent.toml: `completes_with`: warning: nobody consumes `X`");
        let report = Report { problems: vec![warning.clone(), warning], ..Report::default() };
        assert!(report.is_ok());
        assert_eq!((report.errors(), report.warnings()), (0, 2));
    }

    #[test]
    fn the_choreography_is_checked_with_a_graph_once_every_manifest_loads() {
        let world = World::new(&World::source_tree_schemas());
        let root = payments(&[]);
        let report = validate_choreography(root.path(), &Registry::standard(), &world);
        assert!(report.graph.is_some() && report.choreography_skipped.is_none());
        // Alone, payments waits for a `SupportTriaged` nobody publishes.
        let found: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        assert!(found.iter().any(|p| p.contains("`subscribe`: the rule of `payments` matches no event anyone publishes: nobody publishes `SupportTriaged`")), "{found:#?}");

        let broken =
            payments(&[("payments/agent.toml", &PAYMENTS.replace("name = \"payments\"", "name = \"refunds\""))]);
        let report = validate_choreography(broken.path(), &Registry::standard(), &world);
        assert!(report.graph.is_none(), "{:?}", report.problems);
        assert_eq!(
            report.choreography_skipped.as_deref(),
            Some("the choreography is checked once every manifest loads (1 did not)")
        );
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    }

    #[test]
    fn parser_excerpts_are_folded_onto_one_line() {
        let message = "TOML parse error at line 6, column 1\n  |\n6 | colour = 1\n  | ^^^^^^\nunknown field `colour`\n";
        assert_eq!(one_line(message), "line 6, column 1: unknown field `colour`");
        assert_eq!(one_line("no [[rule]]"), "no [[rule]]");
    }
}
