//! `choreo validate`: checks every agent folder and the choreography they make before anything
//! runs, printing each problem with its file and field, and on `--graph` the who-triggers-whom
//! graph (on stdout, the findings then going to stderr, so the graph can be piped to a renderer).

use std::io::Write;

use anyhow::Context;
use choreo_consumers::choreography::{Auth, Producer, Subscriber, World};
use choreo_consumers::tools::Registry;
use choreo_consumers::validate::{Report, validate_choreography};
use choreo_schemas::catalog::{CatalogEvent, ChargeCaptured, OrderShipped, OrderSupportPlaced};

use crate::Status;
use crate::cli::{GraphFormat, ValidateArgs};

/// The ingest API's `source` (`choreo_producers::http`'s, which is private to it; the demo and
/// the case files use the same).
const SUPPORT_API: &str = "retail.support-api";

/// What publishes besides the agents, and what else subscribes: the ingest API (customers'
/// requests), the back office's outbox (shipments, captured charges) and the notifier.
pub fn world() -> World {
    let choreo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let tree = choreo.parent().unwrap_or(choreo);
    let mut world = World::new(&World::source_tree_schemas());
    world.producers = vec![
        Producer { source: SUPPORT_API.into(), events: vec![OrderSupportPlaced::NAME.into()], auth: Auth::Customer },
        Producer {
            source: choreo_backoffice::OUTBOX_SOURCE.into(),
            events: vec![OrderShipped::NAME.into(), ChargeCaptured::NAME.into()],
            auth: Auth::Service(choreo_backoffice::OUTBOX_AUTH_ID.into()),
        },
    ];
    world.subscribers = vec![Subscriber {
        name: "notifier".into(),
        pattern: choreo_notifier::PATTERN.into(),
        file: tree.join("consumers/notifier/src/lib.rs"),
    }];
    world
}

pub fn run(args: &ValidateArgs, out: &mut impl Write) -> anyhow::Result<Status> {
    match args.graph {
        None => report(args, out, None::<&mut Vec<u8>>),
        Some(_) => report(args, &mut std::io::stderr().lock(), Some(out)),
    }
}

/// Prints the findings and the summary to `out`, and the graph (when asked) to `graph_out`.
fn report(args: &ValidateArgs, out: &mut impl Write, graph_out: Option<&mut impl Write>) -> anyhow::Result<Status> {
    let dir = args.agents_dir.clone().unwrap_or_else(choreo_consumers::local::default_agents_dir);
    let report = validate_choreography(&dir, &Registry::standard(), &world());
    if let (Some(format), Some(graph_out)) = (args.graph, graph_out) {
        match &report.graph {
            Some(graph) => {
                let text = match format {
                    GraphFormat::Text => graph.text(),
                    GraphFormat::Mermaid => graph.mermaid(),
                    GraphFormat::Dot => graph.dot(),
                };
                graph_out.write_all(text.as_bytes()).context("cannot write to stdout")?;
                graph_out.flush().context("cannot write to stdout")?;
            }
            None => writeln!(out, "no graph: the choreography was not checked").context("cannot write to stderr")?,
        }
    }
    for problem in &report.problems {
        writeln!(out, "{problem}").context("cannot write the report")?;
    }
    if let Some(why) = &report.choreography_skipped {
        writeln!(out, "note: {why}").context("cannot write the report")?;
    }
    writeln!(out, "{}", summary(&report)).context("cannot write the report")?;
    Ok(if report.is_ok() { Status::Success } else { Status::CheckFailed })
}

/// The last line: what was checked, or how many problems (and warnings) there are.
fn summary(report: &Report) -> String {
    let warnings = match report.warnings() {
        0 => String::new(),
        n => format!("{n} warning{}", plural(n)),
    };
    if !report.is_ok() {
        let n = report.errors();
        let and = if warnings.is_empty() { String::new() } else { format!(" and {warnings}") };
        return format!("{n} problem{}{and} in the agent folders", plural(n));
    }
    let n = report.agents.len();
    let warned = if warnings.is_empty() { String::new() } else { format!("; {warnings}") };
    format!(
        "ok: {n} agent{} ({}) — rules, tools, offline scripts, {} case{} and the choreography checked{warned}",
        plural(n),
        report.agents.join(", "),
        report.cases,
        plural(report.cases),
    )
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(agents_dir: Option<std::path::PathBuf>, graph: Option<GraphFormat>) -> ValidateArgs {
        ValidateArgs { agents_dir, graph }
    }

    #[test]
    fn the_source_tree_agents_are_valid_with_two_warnings() {
        let mut out = Vec::new();
        let status = run(&args(None, None), &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(status, Status::Success, "{out}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].ends_with("OrderShipped.json: warning: `OrderShipped`, published by `retail.backoffice`, is consumed by nobody: no agent's rule matches it, nor `notifier`'s"), "{out}");
        assert!(lines[2].starts_with("ok: 4 agents (inventory, orders, payments, support)"), "{out}");
        assert!(lines[2].ends_with("and the choreography checked; 2 warnings"), "{out}");
    }

    #[test]
    fn the_graph_goes_to_its_writer_and_the_findings_elsewhere() {
        let (mut graph, mut findings) = (Vec::new(), Vec::new());
        let status = report(&args(None, Some(GraphFormat::Text)), &mut findings, Some(&mut graph)).unwrap();
        assert_eq!(status, Status::Success);
        let graph = String::from_utf8(graph).unwrap();
        assert!(graph.starts_with("OrderSupportPlaced (retail.support-api) → support\n"), "{graph}");
        assert!(!graph.contains("ok: "), "{graph}");
        assert!(String::from_utf8(findings).unwrap().contains("ok: 4 agents"));
    }

    #[test]
    fn problems_are_listed_then_counted() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("notes")).unwrap();
        let mut out = Vec::new();
        let status = run(&args(Some(root.path().to_owned()), None), &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(status, Status::CheckFailed);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].ends_with("notes: not an agent: it has no agent.toml"), "{out}");
        assert_eq!(lines[1], "1 problem in the agent folders");
    }
}
