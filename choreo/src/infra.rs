//! `choreo infra synth`: the AWS SAM template of the agent folders, after the same checks as
//! `choreo validate` (a template of a broken choreography would deploy it).

use std::io::Write;

use anyhow::Context;
use choreo_consumers::tools::Registry;
use choreo_consumers::validate::validate_choreography;
use choreo_infra::Settings;

use crate::Status;
use crate::cli::SynthArgs;

pub fn synth(args: &SynthArgs, out: &mut impl Write) -> anyhow::Result<Status> {
    let dir = args.agents_dir.clone().unwrap_or_else(choreo_consumers::local::default_agents_dir);
    let report = validate_choreography(&dir, &Registry::standard(), &crate::validate::world());
    if !report.is_ok() {
        let mut err = std::io::stderr().lock();
        for problem in &report.problems {
            writeln!(err, "{problem}").context("cannot write to stderr")?;
        }
        writeln!(err, "no template: {} problem(s) in the agent folders (see `choreo validate`)", report.errors())
            .context("cannot write to stderr")?;
        return Ok(Status::CheckFailed);
    }
    let agents = choreo_consumers::manifest::discover(&dir)?;
    let settings = Settings {
        bus_name: args.bus_name.clone(),
        archive_retention_days: args.archive_retention_days,
        code_uri: args.code_uri.clone(),
    };
    let text = choreo_infra::to_text(&choreo_infra::synth(&agents, &settings));
    match &args.out {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
            writeln!(out, "wrote {} ({} agents, {} resources)", path.display(), agents.len(), resources(&text))
                .context("cannot write to stdout")?;
        }
        None => out.write_all(text.as_bytes()).context("cannot write to stdout")?,
    }
    Ok(Status::Success)
}

fn resources(text: &str) -> usize {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|t| t["Resources"].as_object().map(|r| r.len()))
        .unwrap_or(0)
}
