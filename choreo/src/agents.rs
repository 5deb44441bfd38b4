//! The agent folders a Lambda function runs: `CHOREO_AGENTS_DIR` when set; else the folders
//! of this source tree when they are there (a developer's machine, `cargo lambda watch`); else
//! the copy built into the binary (`consumers/agents` when it was built, as `sam build` does),
//! written out once to `/tmp/choreo-agents`. `build.rs` rebuilds the binary when a folder
//! changes.

use std::path::PathBuf;

use anyhow::Context;
use include_dir::{Dir, include_dir};

/// `consumers/agents` as it was when this binary was built.
static BUILT_IN: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../consumers/agents");

/// Where a function's copy of the built-in folders goes (Lambda's writable `/tmp`).
const EXTRACTED: &str = "/tmp/choreo-agents";

/// The agent folders to run, as the module docs say.
pub fn dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CHOREO_AGENTS_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let source = choreo_consumers::local::default_agents_dir();
    if source.is_dir() {
        return Ok(source);
    }
    extract(&PathBuf::from(EXTRACTED))
}

/// Writes the built-in agent folders under `to` (again: a warm start overwrites them with
/// the same bytes); answers `to`.
pub fn extract(to: &std::path::Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(to).with_context(|| format!("create {}", to.display()))?;
    BUILT_IN.extract(to).with_context(|| format!("write the built-in agent folders to {}", to.display()))?;
    Ok(to.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_folders_are_the_source_trees() {
        let dir = tempfile::tempdir().unwrap();
        let written = extract(dir.path()).unwrap();
        let built_in = choreo_consumers::manifest::discover(&written).unwrap();
        let source = choreo_consumers::manifest::discover(&choreo_consumers::local::default_agents_dir()).unwrap();
        let names = |agents: &[choreo_consumers::manifest::Agent]| {
            agents.iter().map(|a| a.name().to_owned()).collect::<Vec<_>>()
        };
        assert_eq!(names(&built_in), names(&source));
        assert_eq!(names(&built_in), ["inventory", "orders", "payments", "support"]);
        for agent in ["payments", "support"] {
            let read = |root: &std::path::Path| std::fs::read(root.join(agent).join("agent.toml")).unwrap();
            assert_eq!(read(&written), read(&choreo_consumers::local::default_agents_dir()));
        }
    }
}
