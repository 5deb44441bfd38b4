//! `choreo infra synth` end to end: the real binary writes the checked-in template, and refuses
//! (exit 1, the problems named, no file) to synthesize broken agent folders.

use std::path::Path;

use choreo_tests::run;

#[test]
fn synth_writes_the_checked_in_template() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("template.json");
    let done = run(&["infra", "synth", "--out", out.to_str().unwrap()], b"");
    assert_eq!(done.code, Some(0), "{}{}", done.stdout, done.stderr);
    assert!(done.stdout.starts_with("wrote ") && done.stdout.contains("(4 agents, 38 resources)"), "{}", done.stdout);
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/template.json");
    assert_eq!(std::fs::read_to_string(out).unwrap(), std::fs::read_to_string(golden).unwrap());
    // Without --out, the same template on stdout.
    let printed = run(&["infra", "synth"], b"");
    assert_eq!(printed.code, Some(0));
    let template: serde_json::Value = serde_json::from_str(&printed.stdout).expect("JSON on stdout");
    assert_eq!(template["Transform"], "AWS::Serverless-2016-10-31");
}

#[test]
fn synth_refuses_broken_agent_folders() {
    let agents = tempfile::tempdir().unwrap();
    let bad = agents.path().join("broken");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(
        bad.join("agent.toml"),
        "name = \"broken\"\ndescription = \"x\"\nsubscribe = { \"detail-type\" = \"not-a-list\" }\ncompletes_with = \"Nope\"\n",
    )
    .unwrap();
    std::fs::write(bad.join("prompt.md"), "x").unwrap();
    let out = agents.path().join("template.json");
    let refused =
        run(&["infra", "synth", "--agents-dir", agents.path().to_str().unwrap(), "--out", out.to_str().unwrap()], b"");
    assert_eq!(refused.code, Some(1), "{}{}", refused.stdout, refused.stderr);
    assert!(refused.stderr.contains("broken"), "{}", refused.stderr);
    assert!(refused.stderr.contains("no template:"), "{}", refused.stderr);
    assert!(!out.exists(), "no template was written");
}
