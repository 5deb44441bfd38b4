//! EventBridge pattern conformance: every case of `../shared/conformance`, read from there.
//! Set `CHOREO_SHARED_DIR` to point elsewhere; a missing corpus fails the test, never skips it.

use std::path::PathBuf;

use choreo_bus::pattern::{Machine, Pattern, Scratch};
use serde_json::Value;

fn shared_dir() -> PathBuf {
    let dir = std::env::var_os("CHOREO_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    assert!(
        dir.join("conformance/patterns.jsonl").is_file(),
        "conformance corpus not found under {} (clone with ../shared beside the repo, or set CHOREO_SHARED_DIR)",
        dir.display()
    );
    dir
}

/// An invalid-pattern case: only the exact text matters (its parsed `pattern` may not even fit
/// a double, e.g. `1E309`).
#[derive(serde::Deserialize)]
struct InvalidCase {
    id: String,
    pattern_text: String,
}

fn invalid_cases() -> Vec<InvalidCase> {
    let path = shared_dir().join("conformance/invalid_patterns.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("corpus line is JSON"))
        .collect()
}

/// Pattern text exactly as embedded in the corpus line (number literals keep their spelling).
fn raw_field(line: &str, key: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Raw<'a> {
        #[serde(borrow)]
        pattern: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow)]
        event: Option<&'a serde_json::value::RawValue>,
    }
    let r: Raw = serde_json::from_str(line).expect("corpus line is JSON");
    let v = if key == "pattern" { r.pattern } else { r.event };
    v.expect("field present").get().to_owned()
}

fn run_matches(file: &str) -> (usize, Vec<String>) {
    let path = shared_dir().join("conformance").join(file);
    let text = std::fs::read_to_string(path).unwrap();
    let mut failures = Vec::new();
    let mut n = 0;
    let mut scratch = Scratch::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let case: Value = serde_json::from_str(line).unwrap();
        let mut id = case["id"].as_str().unwrap_or("?").to_owned();
        if let Some(q) = case["quirk"].as_str() {
            id = format!("{id} [{q}]");
        }
        let want = case["matches"].as_bool().expect("matches is a boolean");
        let pattern_text = raw_field(line, "pattern");
        let event_text = raw_field(line, "event");
        n += 1;
        let pattern = match Pattern::parse(&pattern_text) {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{id}: pattern rejected: {e}"));
                continue;
            }
        };
        let machine = Machine::single(&pattern);
        match machine.is_match(event_text.as_bytes(), &mut scratch) {
            Ok(got) if got == want => {}
            Ok(got) => {
                failures.push(format!("{id}: got {got}, want {want}\n  pattern {pattern_text}\n  event   {event_text}"))
            }
            Err(e) => failures.push(format!("{id}: event error: {e}")),
        }
    }
    (n, failures)
}

#[test]
fn agrees_with_every_pattern_case() {
    let (n, failures) = run_matches("patterns.jsonl");
    println!("patterns.jsonl: {n} cases run, {} disagreements", failures.len());
    assert_eq!(n, 1336, "the corpus should hold 1336 cases");
    assert!(failures.is_empty(), "{} of {n} cases disagree:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn rejects_every_invalid_pattern() {
    let cases = invalid_cases();
    let mut accepted = Vec::new();
    for case in &cases {
        let text = &case.pattern_text;
        match Pattern::parse(text) {
            Ok(_) => accepted.push(format!("{}: accepted {text}", case.id)),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    println!("invalid_patterns.jsonl: {} patterns run, {} wrongly accepted", cases.len(), accepted.len());
    assert_eq!(cases.len(), 160, "the corpus should hold 160 invalid patterns");
    assert!(accepted.is_empty(), "{} invalid patterns accepted:\n{}", accepted.len(), accepted.join("\n"));
}

/// Quirks depend on event-ruler behaviour EventBridge does not document: reported, not enforced.
#[test]
fn reports_quirks_apart() {
    let (n, failures) = run_matches("quirks.jsonl");
    println!("quirks.jsonl: {n} cases run, {} answer differently from event-ruler (not a contract):", failures.len());
    for f in &failures {
        println!("  {}", f.lines().next().unwrap_or_default());
    }
    assert!(n > 0);
}
