//! The SAM template: the checked-in `infra/template.json` is what the agent folders give
//! (golden); a fifth agent folder adds its own resources and changes nothing else; each agent's
//! function may touch its own queues only; and cfn-lint (PyPI, installed by `.ci/test`) finds
//! nothing wrong with it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use choreo_consumers::local::default_agents_dir;
use choreo_consumers::manifest::discover;
use choreo_infra::{Settings, synth, to_text};
use serde_json::Value;

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("template.json")
}

fn template_of(dir: &Path) -> Value {
    synth(&discover(dir).expect("the agent folders"), &Settings::default())
}

#[test]
fn the_checked_in_template_is_what_the_agent_folders_give() {
    let text = to_text(&template_of(&default_agents_dir()));
    if std::env::var_os("CHOREO_BLESS").is_some() {
        std::fs::write(golden(), &text).unwrap();
    }
    let checked_in = std::fs::read_to_string(golden()).expect("infra/template.json");
    assert!(
        checked_in == text,
        "infra/template.json is not what the agent folders give: run `choreo infra synth --out infra/template.json` \
         (or this test with CHOREO_BLESS=1) and review the diff"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn resources(template: &Value) -> &serde_json::Map<String, Value> {
    template["Resources"].as_object().expect("Resources")
}

#[test]
fn a_new_agent_folder_adds_its_resources_and_changes_nothing_else() {
    let agents = tempfile::tempdir().unwrap();
    copy_dir(&default_agents_dir(), agents.path());
    let before = template_of(agents.path());
    let loyalty = agents.path().join("gift-wrap");
    std::fs::create_dir_all(&loyalty).unwrap();
    std::fs::write(
        loyalty.join("agent.toml"),
        r#"name = "gift-wrap"
description = "Offers gift wrapping on orders needed by a date"
subscribe = { "detail-type" = ["SupportTriaged"] }
completes_with = "FulfilmentIssueResolved"
tools = ["orders.get_order"]
concurrency = 3
retry = { maximum_retry_attempts = 2, maximum_event_age_seconds = 600 }
"#,
    )
    .unwrap();
    std::fs::write(loyalty.join("prompt.md"), "Offer gift wrapping.").unwrap();
    let after = template_of(agents.path());

    let (old, new) = (resources(&before), resources(&after));
    let added: BTreeSet<&str> = new.keys().filter(|k| !old.contains_key(*k)).map(String::as_str).collect();
    let expected =
        ["GiftWrapDeadLetterQueue", "GiftWrapFunction", "GiftWrapQueue", "GiftWrapQueuePolicy", "GiftWrapRule"];
    assert_eq!(added, expected.into_iter().collect(), "the new agent's resources");
    for (id, resource) in old {
        assert_eq!(new.get(id), Some(resource), "{id} changed when an agent was added");
    }
    for key in ["Parameters", "Globals", "Outputs", "Transform"] {
        assert_eq!(before[key], after[key], "{key} changed");
    }
    // What the manifest says: its pattern, its retries, its concurrency.
    let rule = &new["GiftWrapRule"]["Properties"];
    assert_eq!(rule["Name"], "agent-gift-wrap");
    assert_eq!(rule["EventPattern"], serde_json::json!({"detail-type": ["SupportTriaged"]}));
    assert_eq!(rule["Targets"][0]["RetryPolicy"]["MaximumRetryAttempts"], 2);
    assert_eq!(rule["Targets"][0]["RetryPolicy"]["MaximumEventAgeInSeconds"], 600);
    assert_eq!(new["GiftWrapQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"], 3);
    let events = &new["GiftWrapFunction"]["Properties"]["Events"]["Queue"]["Properties"];
    assert_eq!(events["ScalingConfig"]["MaximumConcurrency"], 3);
    assert_eq!(events["FunctionResponseTypes"], serde_json::json!(["ReportBatchItemFailures"]));
    assert_eq!(new["GiftWrapFunction"]["Properties"]["Environment"]["Variables"]["CHOREO_AGENT"], "gift-wrap");
}

/// Every logical id a value refers to (`Ref`, `Fn::GetAtt`, `${Name}` in `Fn::Sub`).
fn references(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("Ref", Value::String(id)) => drop(out.insert(id.clone())),
                    ("Fn::GetAtt", Value::Array(parts)) => {
                        if let Some(Value::String(id)) = parts.first() {
                            out.insert(id.clone());
                        }
                    }
                    ("Fn::Sub", Value::String(text)) => {
                        for piece in text.split("${").skip(1) {
                            let name = piece.split(['}', '.']).next().unwrap_or_default();
                            if !name.starts_with("AWS::") {
                                out.insert(name.to_owned());
                            }
                        }
                    }
                    _ => references(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

#[test]
fn each_agent_s_function_may_touch_its_own_queues_only() {
    let template = template_of(&default_agents_dir());
    let all = resources(&template);
    for agent in ["Payments", "Orders", "Inventory", "Support"] {
        let mut used = BTreeSet::new();
        references(&all[&format!("{agent}Function")]["Properties"]["Policies"], &mut used);
        let queues: BTreeSet<&str> = used.iter().filter(|r| r.ends_with("Queue")).map(String::as_str).collect();
        let own = [format!("{agent}Queue"), format!("{agent}DeadLetterQueue")];
        assert_eq!(queues, own.iter().map(String::as_str).collect(), "{agent}'s function's queues");
        assert!(used.contains("LedgerTable") && !used.contains("ConnectionsTable"), "{agent}: {used:?}");
    }
    // Every reference in the template names a resource or a parameter of it.
    let mut used = BTreeSet::new();
    references(&template, &mut used);
    let parameters = template["Parameters"].as_object().unwrap();
    // Made by SAM from the ingest function's HttpApi event.
    let implicit = ["ServerlessHttpApi"];
    for id in used {
        assert!(
            all.contains_key(&id) || parameters.contains_key(&id) || implicit.contains(&id.as_str()),
            "`{id}` is referred to but not defined"
        );
    }
}

#[test]
fn cfn_lint_finds_nothing_wrong_with_the_template() {
    let exe = std::env::var_os("CHOREO_CFN_LINT").map(PathBuf::from).or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path).map(|dir| dir.join("cfn-lint")).find(|p| p.is_file())
    });
    let Some(exe) = exe else {
        let why = "cfn-lint is not installed: `bash .ci/test` installs it (or `pip install cfn-lint`)";
        assert!(std::env::var_os("CI").is_none(), "{why}");
        eprintln!("SKIPPED (not CI): {why}");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("template.json");
    std::fs::write(&path, to_text(&template_of(&default_agents_dir()))).unwrap();
    let out = Command::new(&exe).arg(&path).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    assert!(
        out.status.success(),
        "cfn-lint: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // It does look: a queue kept longer than SQS allows is an error.
    let broken = std::fs::read_to_string(&path).unwrap().replace("1209600", "99999999");
    std::fs::write(&path, broken).unwrap();
    let out = Command::new(&exe).arg(&path).output().unwrap();
    assert!(!out.status.success(), "cfn-lint passed a retention over SQS's maximum");
}
