//! The README's main command prints what the README shows.

use std::path::PathBuf;

use choreo_tests::run;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn readme_main_command_output_is_what_the_binary_prints() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("read README.md");
    let command = "cargo run -q -p choreo -- pattern check --explain < bus/examples/routing.jsonl";
    assert!(readme.contains(command), "the README's main command changed; update this test");
    let after = readme.split("The first prints").nth(1).expect("the README shows the output");
    let shown = after.split("```text\n").nth(1).and_then(|s| s.split("\n```").next()).expect("a text block");

    let input = std::fs::read(repo().join("bus/examples/routing.jsonl")).expect("read the example");
    let out = run(&["pattern", "check", "--explain"], &input);
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.stdout.trim_end(), shown, "README output block differs from the binary's");
}
