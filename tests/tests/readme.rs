//! The README's main command runs and prints what the README shows: the same events published
//! by the same agents, and the same answer (ids, timings and dates aside, and the interleaving of
//! agents that work at the same time).

use std::collections::BTreeSet;
use std::path::PathBuf;

use choreo_tests::run;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A line with what varies between runs taken out: ids (`01M8…`), digits, padding.
fn normalize(line: &str) -> String {
    let words: Vec<String> =
        line.split_whitespace().map(|w| if w.ends_with('…') { "<id>".to_owned() } else { w.to_owned() }).collect();
    let mut out = String::new();
    let mut in_digits = false;
    for c in words.join(" ").chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('9');
            }
            in_digits = true;
        } else {
            in_digits = false;
            out.push(c);
        }
    }
    out
}

/// The lines that must match: published events, and the customer's answer.
fn essential(text: &str) -> BTreeSet<String> {
    let answer = text.split("The customer's answer:").nth(1).and_then(|a| a.split("\nCase ").next()).unwrap_or("");
    text.lines().filter(|l| l.contains(" → ")).chain(answer.lines()).map(normalize).filter(|l| !l.is_empty()).collect()
}

#[test]
fn readme_main_command_prints_the_case_the_readme_shows() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("read README.md");
    let command = "cargo run -q -p choreo -- demo";
    assert!(readme.contains(command), "the README's main command changed; update this test");
    let after = readme.split("The first submits the seeded case").nth(1).expect("the README shows the output");
    let shown = after.split("```text\n").nth(1).and_then(|s| s.split("\n```").next()).expect("a text block");

    let dir = tempfile::tempdir().unwrap();
    let out = run(&["--data-dir", dir.path().to_str().unwrap(), "demo"], b"");
    assert_eq!(out.code, Some(0), "stdout: {}\nstderr: {}", out.stdout, out.stderr);
    let (want, got) = (essential(shown), essential(&out.stdout));
    assert!(want.len() >= 12, "the README shows too little: {want:?}");
    let missing: Vec<_> = want.difference(&got).collect();
    assert!(missing.is_empty(), "README lines the demo did not print: {missing:#?}\n\n{}", out.stdout);
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(extra.is_empty(), "demo lines the README does not show: {extra:#?}");
}

/// The README's commands start with `cargo run -q -p choreo --`: the package has several
/// binaries (the Lambda functions beside the command), so it must say which one runs.
#[test]
fn cargo_run_p_choreo_runs_the_choreo_command() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .current_dir(repo())
        .args(["run", "-q", "--locked", "-p", "choreo", "--", "--version"])
        .output()
        .expect("run cargo");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.starts_with("choreo "), "{stdout}");
}
