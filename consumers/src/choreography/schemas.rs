//! Completion schemas against their published versions. The published version of an event is
//! its checked-in `schemas/json/<Event>.json` (its `$id` says the version); the schema an agent
//! completes with is the catalog's, or its folder's own `events/<Event>.json`. With the same
//! version the new schema must accept every event the published one did; a breaking change
//! must come as a new version.

use std::path::{Path, PathBuf};

use choreo_schemas::catalog;
use serde_json::Value;

use super::World;
use super::compat::diff;
use crate::manifest::{EVENTS_DIR, MANIFEST_FILE, Manifest, json_files};
use crate::validate::{Problem, Severity};

/// The most changes named in one problem.
const SHOWN: usize = 6;

/// A data schema and the version it is published (or would be published) as.
struct Versioned {
    schema: Value,
    version: u32,
    /// Where it comes from, for messages.
    from: String,
}

/// Checks the completion schemas of the agent folder `folder`, and any schema in its `events/`
/// that has a published version. Reads the folder itself, so that it runs even when the
/// manifest is refused (an `events/` file redefining a catalog event is refused by the loader,
/// and this says whether it would be a compatible version).
pub fn check_schemas(folder: &Path, world: &World) -> Vec<Problem> {
    let mut problems = Vec::new();
    let manifest_path = folder.join(MANIFEST_FILE);
    let completes: Vec<String> = std::fs::read_to_string(&manifest_path)
        .ok()
        .and_then(|text| toml::from_str::<Manifest>(&text).ok())
        .map(|m| m.completes_with)
        .unwrap_or_default();
    let own: Vec<(String, PathBuf, Value)> = json_files(&folder.join(EVENTS_DIR))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|path| {
            let name = path.file_stem()?.to_str()?.to_owned();
            let schema = serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
            Some((name, path, schema))
        })
        .collect();
    let mut names = completes.clone();
    names.extend(own.iter().map(|(n, _, _)| n.clone()).filter(|n| !completes.contains(n)));
    for name in &names {
        let candidate = match own.iter().find(|(n, _, _)| n == name) {
            Some((_, path, schema)) => match declared_version(schema, name) {
                Ok(version) => Versioned { schema: schema.clone(), version, from: relative(folder, path) },
                Err(why) => {
                    problems.push(Problem::warning(path, Some("$id"), why));
                    continue;
                }
            },
            None => match catalog::lookup(name) {
                Some(e) => Versioned { schema: e.schema().clone(), version: e.version(), from: "the catalog".into() },
                None => continue,
            },
        };
        let Some(published) = published(world, name) else { continue };
        let (file, field) = match own.iter().find(|(n, _, _)| n == name) {
            Some((_, path, _)) if !completes.contains(name) => (path.clone(), None),
            _ => (manifest_path.clone(), Some("completes_with")),
        };
        if let Some((severity, message)) = compare(name, &candidate, &published) {
            problems.push(Problem::new(severity, file, field, message));
        }
    }
    problems
}

fn compare(name: &str, candidate: &Versioned, published: &Versioned) -> Option<(Severity, String)> {
    let (n, what) = (published.version, format!("`{name}` ({}, version {})", candidate.from, candidate.version));
    if candidate.version > n {
        return None;
    }
    if candidate.version < n {
        let message = format!("{what} is older than the published version {n} ({})", published.from);
        return Some((Severity::Warning, message));
    }
    let diff = diff(&published.schema, &candidate.schema);
    let published_at = &published.from;
    if !diff.breaking.is_empty() {
        let message = format!(
            "{what} breaks the published version {n} ({published_at}): {}; events valid under version {n} would be refused, so a breaking change needs version {}",
            listed(&diff.breaking),
            n + 1
        );
        return Some((Severity::Error, message));
    }
    if !diff.unjudged.is_empty() {
        let message = format!(
            "cannot judge whether {what} is compatible with the published version {n} ({published_at}): {}",
            listed(&diff.unjudged)
        );
        return Some((Severity::Warning, message));
    }
    if !diff.widening.is_empty() {
        let message = format!(
            "{what} accepts data the published version {n} ({published_at}) refuses: {}; consumers checking against version {n} would refuse such events (consider version {})",
            listed(&diff.widening),
            n + 1
        );
        return Some((Severity::Warning, message));
    }
    None
}

fn listed(changes: &[String]) -> String {
    let mut shown = changes.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("; ");
    if changes.len() > SHOWN {
        shown.push_str(&format!("; and {} more", changes.len() - SHOWN));
    }
    shown
}

/// The published version of `name`: its file in `world.published`, else the catalog's schema
/// (the files are generated from it and tested to match).
fn published(world: &World, name: &str) -> Option<Versioned> {
    let path = world.published.join(format!("{name}.json"));
    let file = std::fs::read_to_string(&path).ok().and_then(|text| serde_json::from_str::<Value>(&text).ok());
    if let Some(schema) = file {
        let version = declared_version(&schema, name).ok()?;
        return Some(Versioned { schema, version, from: path.display().to_string() });
    }
    let event = catalog::lookup(name)?;
    Some(Versioned { schema: event.schema().clone(), version: event.version(), from: "the catalog".into() })
}

/// The version in a schema's `$id` (`urn:choreo:schema:<Event>:<N>`); 1 without an `$id`, the
/// version the runtime publishes completions with.
fn declared_version(schema: &Value, name: &str) -> Result<u32, String> {
    let Some(id) = schema.get("$id") else { return Ok(1) };
    let prefix = format!("urn:choreo:schema:{name}:");
    id.as_str()
        .and_then(|id| id.strip_prefix(&prefix))
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|v| *v >= 1)
        .ok_or_else(|| format!("`$id` {id} is not `{prefix}<version>`: the version cannot be told"))
}

fn relative(folder: &Path, path: &Path) -> String {
    path.strip_prefix(folder).unwrap_or(path).display().to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn versions_come_from_the_id() {
        assert_eq!(declared_version(&json!({"$id": "urn:choreo:schema:A:3"}), "A"), Ok(3));
        assert_eq!(declared_version(&json!({}), "A"), Ok(1));
        for id in [json!("urn:choreo:schema:B:3"), json!("urn:choreo:schema:A:0"), json!(7)] {
            let err = declared_version(&json!({ "$id": id }), "A").unwrap_err();
            assert!(err.contains("urn:choreo:schema:A:<version>"), "{err}");
        }
    }
}
