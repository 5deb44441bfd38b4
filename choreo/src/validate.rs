//! `choreo validate`: checks every agent folder before anything runs, printing each problem
//! with its file and field, or one line saying what was checked.

use std::io::Write;

use anyhow::Context;
use choreo_consumers::tools::Registry;
use choreo_consumers::validate::validate_agents;

use crate::Status;
use crate::cli::ValidateArgs;

pub fn run(args: &ValidateArgs, out: &mut impl Write) -> anyhow::Result<Status> {
    let dir = args.agents_dir.clone().unwrap_or_else(choreo_consumers::local::default_agents_dir);
    let report = validate_agents(&dir, &Registry::standard());
    if report.is_ok() {
        let n = report.agents.len();
        writeln!(
            out,
            "ok: {n} agent{} ({}) — rules, tools, offline scripts and {} case{} checked",
            plural(n),
            report.agents.join(", "),
            report.cases,
            plural(report.cases),
        )
        .context("cannot write to stdout")?;
        return Ok(Status::Success);
    }
    for problem in &report.problems {
        writeln!(out, "{problem}").context("cannot write to stdout")?;
    }
    let n = report.problems.len();
    writeln!(out, "{n} problem{} in the agent folders", plural(n)).context("cannot write to stdout")?;
    Ok(Status::CheckFailed)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_tree_agents_are_valid() {
        let mut out = Vec::new();
        let status = run(&ValidateArgs { agents_dir: None }, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(status, Status::Success, "{out}");
        assert!(out.starts_with("ok: 4 agents (inventory, orders, payments, support)"), "{out}");
    }

    #[test]
    fn problems_are_listed_then_counted() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("notes")).unwrap();
        let mut out = Vec::new();
        let args = ValidateArgs { agents_dir: Some(root.path().to_owned()) };
        let status = run(&args, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(status, Status::CheckFailed);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].ends_with("notes: not an agent: it has no agent.toml"), "{out}");
        assert_eq!(lines[1], "1 problem in the agent folders");
    }
}
