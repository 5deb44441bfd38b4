//! The shared conformance corpus through the real binary: every case of `patterns.jsonl` gives
//! its `matches`, and every pattern of `invalid_patterns.jsonl` is answered `invalid: …`.

use std::collections::BTreeMap;

use choreo_tests::{run, shared_dir};
use serde_json::value::RawValue;

/// A corpus line's fields, each kept as its raw text: some patterns hold numbers such as 1e999
/// that no f64 can take, and the test must not reject a line the binary is meant to judge.
type Case = BTreeMap<String, Box<RawValue>>;

fn field<T: serde::de::DeserializeOwned>(case: &Case, name: &str) -> T {
    let raw = case.get(name).unwrap_or_else(|| panic!("a case without {name}"));
    serde_json::from_str(raw.get()).unwrap_or_else(|e| panic!("{name} = {}: {e}", raw.get()))
}

fn corpus(name: &str) -> Vec<Case> {
    let path = shared_dir().join("conformance").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name} line {}: {e}", i + 1)))
        .collect()
}

#[test]
fn every_conformance_case_gives_its_answer() {
    let path = shared_dir().join("conformance/patterns.jsonl");
    // The corpus file as it is: each line carries `pattern` and `event` with their original text.
    let input = std::fs::read(&path).unwrap();
    let cases = corpus("patterns.jsonl");
    assert!(cases.len() > 1000, "corpus too small: {}", cases.len());

    let out = run(&["pattern", "check"], &input);
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    let answers = out.lines();
    assert_eq!(answers.len(), cases.len(), "one answer per case");
    let mut wrong = Vec::new();
    for (case, answer) in cases.iter().zip(&answers) {
        let want = if field::<bool>(case, "matches") { "true" } else { "false" };
        if *answer != want {
            wrong.push(format!("{}: got {answer}, want {want}", field::<String>(case, "id")));
        }
    }
    let matched = answers.iter().filter(|a| **a == "true").count();
    println!(
        "patterns.jsonl: {} cases, {matched} true, {} false, {} wrong",
        cases.len(),
        answers.len() - matched,
        wrong.len()
    );
    assert!(wrong.is_empty(), "{} wrong answers:\n{}", wrong.len(), wrong.join("\n"));
}

#[test]
fn every_invalid_pattern_is_rejected() {
    let cases = corpus("invalid_patterns.jsonl");
    assert!(cases.len() > 100, "corpus too small: {}", cases.len());
    let mut input = String::new();
    for case in &cases {
        let text: String = field(case, "pattern_text");
        input.push_str(&serde_json::json!({"pattern_text": text, "event": {}}).to_string());
        input.push('\n');
    }
    let out = run(&["pattern", "check"], input.as_bytes());
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    let answers = out.lines();
    assert_eq!(answers.len(), cases.len(), "one answer per case");
    let accepted: Vec<String> = cases
        .iter()
        .zip(&answers)
        .filter(|(_, a)| !a.starts_with("invalid: "))
        .map(|(c, a)| format!("{}: {a}", field::<String>(c, "id")))
        .collect();
    println!("invalid_patterns.jsonl: {} cases, {} rejected", cases.len(), cases.len() - accepted.len());
    assert!(accepted.is_empty(), "{} not rejected:\n{}", accepted.len(), accepted.join("\n"));
}
