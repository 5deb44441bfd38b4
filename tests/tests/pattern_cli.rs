//! `choreo pattern check | test | bench` end to end: the real binary, real pipes, real files.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use choreo_tests::{choreo, run};

fn deep_event(levels: usize) -> String {
    format!("{}1{}", r#"{"a":"#.repeat(levels), "}".repeat(levels))
}

#[test]
fn check_answers_every_line_once_in_order() {
    let deep = format!(r#"{{"pattern":{{"a":[1]}},"event":{}}}"#, deep_event(2000));
    let mut input: Vec<u8> = Vec::new();
    let mut expect: Vec<&str> = Vec::new();
    let mut line = |text: &[u8], want: &'static str| {
        input.extend_from_slice(text);
        input.push(b'\n');
        expect.push(want);
    };
    line(br#"{"pattern":{"source":["shop"]},"event":{"source":"shop"}}"#, "true");
    line(br#"{"pattern":{"source":["shop"]},"event":{"source":"bank"}}"#, "false");
    line(
        br#"{"pattern_text":"{\"n\":[{\"numeric\":[\">\",5]}]}","event":{"n":6},"id":"extra fields are fine"}"#,
        "true",
    );
    line(br#"{"pattern":{"a":["x"],"a":["y"]},"event":{"a":"x"}}"#, "invalid: ");
    line(br#"{"pattern":{"a":[1e999]},"event":{"a":1}}"#, "invalid: ");
    line(br#"{"pattern":{"a":["x"]},"event":{"a":"x"}}"#.as_slice(), "true");
    line(b"{\"pattern\":{\"a\":[\"\xff\"]},\"event\":{}}", "error: line is not valid UTF-8");
    line(b"", "error: empty line");
    line(deep.as_bytes(), "error: line is not valid JSON at byte");
    line(br#"{"pattern":{"a":["x"]}}"#, "error: line needs an \"event\"");
    line(br#"{"pattern":{"a":["x"]},"pattern_text":"{}","event":{}}"#, "error: line has both");
    line(br#"{"pattern":{"a":["x"]},"event":"x"}"#, "error: \"event\" must be a JSON object");
    line(b"not json", "error: line is not valid JSON at byte 0");
    line(b"[]", "error: line must be a JSON object");
    line(b"{\"pattern\":{\"a\":[\"x\"]},\"event\":{\"a\":\"x\"}}\r", "true");
    // The last line has no newline, and still counts.
    input.extend_from_slice(br#"{"pattern":{"a":["x"]},"event":{"a":"z"}}"#);
    expect.push("false");

    let out = run(&["pattern", "check"], &input);
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    let got = out.lines();
    assert_eq!(got.len(), expect.len(), "one answer per line:\n{}", out.stdout);
    for (i, (got, want)) in got.iter().zip(&expect).enumerate() {
        let ok = if want.ends_with(' ') || want.starts_with("error") { got.starts_with(want) } else { got == want };
        assert!(ok, "line {}: got {got:?}, want {want:?}", i + 1);
    }
    assert!(out.stderr.is_empty(), "nothing on stderr: {}", out.stderr);
}

#[test]
fn check_with_explain_names_the_field_and_what_the_event_had() {
    let input = br#"{"pattern":{"detail":{"status":["paid"]}},"event":{"detail":{"status":"refunded"}}}
{"pattern":{"detail":{"status":["paid"]}},"event":{"detail":{"status":"paid"}}}
"#;
    let out = run(&["pattern", "check", "--explain"], input);
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    let lines = out.lines();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with("false: detail.status"), "{}", lines[0]);
    assert!(lines[0].contains(r#"["paid"]"#) && lines[0].contains(r#""refunded""#), "{}", lines[0]);
    assert_eq!(lines[1], "true");
}

#[test]
fn check_answers_each_line_before_the_next_one_arrives() {
    // A caller that writes one line and waits for its answer must get it while stdin stays open.
    let mut child = choreo().args(["pattern", "check"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, answers) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in stdout.lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    for (line, want) in [(r#"{"pattern":{"a":[1]},"event":{"a":1}}"#, "true"), ("{", "error: line is not valid JSON")] {
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        let answer = answers.recv_timeout(Duration::from_secs(20)).expect("no answer while stdin is still open");
        assert!(answer.starts_with(want), "{line}: {answer}");
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
}

#[test]
fn check_stops_quietly_when_its_reader_goes_away() {
    // Far more output than a pipe holds, so the binary must write after the reader is gone.
    let input = r#"{"pattern":{"a":[1]},"event":{"a":1}}
"#
    .repeat(200_000);
    let mut child = choreo()
        .args(["pattern", "check"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(first, "true\n");
    drop(stdout);
    let stderr = choreo_tests::read_all(child.stderr.take().unwrap());
    let status = child.wait().unwrap();
    writer.join().unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
}

mod pattern_test {
    use super::*;

    fn files(pattern: &str, event: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pattern.json"), pattern).unwrap();
        std::fs::write(dir.path().join("event.json"), event).unwrap();
        dir
    }

    fn test(dir: &tempfile::TempDir, extra: &[&str]) -> choreo_tests::Run {
        let (p, e) = (dir.path().join("pattern.json"), dir.path().join("event.json"));
        let mut args = vec!["pattern", "test", "--pattern", p.to_str().unwrap(), "--event", e.to_str().unwrap()];
        args.extend_from_slice(extra);
        run(&args, b"")
    }

    #[test]
    fn a_match_exits_0_and_a_miss_exits_1() {
        let dir = files("{\"detail-type\":[\"OrderPlaced\"]}\n", r#"{"detail-type":"OrderPlaced"}"#);
        let out = test(&dir, &["--explain"]);
        assert_eq!((out.code, out.stdout.as_str()), (Some(0), "true\n"), "{}", out.stderr);

        let dir = files(r#"{"detail-type":["OrderPlaced"]}"#, r#"{"detail-type":"OrderShipped"}"#);
        let out = test(&dir, &[]);
        assert_eq!((out.code, out.stdout.as_str()), (Some(1), "false\n"), "{}", out.stderr);
        let out = test(&dir, &["--explain"]);
        assert_eq!(out.code, Some(1));
        assert!(out.stdout.starts_with("false: detail-type: wanted"), "{}", out.stdout);
        assert!(out.stdout.contains("OrderShipped"), "{}", out.stdout);
    }

    #[test]
    fn bad_input_exits_3_naming_the_file() {
        let dir = files(r#"{"a":["x"],"a":["y"]}"#, "{}");
        let out = test(&dir, &[]);
        assert_eq!(out.code, Some(3));
        assert!(out.stderr.contains("invalid pattern in ") && out.stderr.contains("pattern.json"), "{}", out.stderr);
        assert!(out.stdout.is_empty());

        let dir = files(r#"{"a":["x"]}"#, r#"{"a": "x""#);
        let out = test(&dir, &[]);
        assert_eq!(out.code, Some(3));
        assert!(out.stderr.contains("event.json is not valid JSON at byte 9"), "{}", out.stderr);

        let dir = files(r#"{"a":["x"]}"#, &format!("{{\"b\":{}}}", deep_event(5000)));
        let out = test(&dir, &[]);
        assert_eq!(out.code, Some(3));
        assert!(
            out.stderr.contains("event.json is not valid JSON") && out.stderr.contains("nesting"),
            "{}",
            out.stderr
        );

        let missing = dir.path().join("nowhere.json");
        let out = run(&["pattern", "test", "--pattern", missing.to_str().unwrap(), "--event", "-"], b"{}");
        assert_eq!(out.code, Some(3));
        assert!(out.stderr.contains("cannot read ") && out.stderr.contains("nowhere.json"), "{}", out.stderr);
    }

    #[test]
    fn a_missing_flag_is_a_usage_error() {
        let out = run(&["pattern", "test", "--pattern", "p.json"], b"");
        assert_eq!(out.code, Some(2));
        assert!(out.stderr.contains("--event"), "{}", out.stderr);
    }
}

mod bench {
    use super::*;

    const EVENTS: &str = r#"{"kind":"order","total":10}
{"kind":"order","total":250}

{"kind":"refund","total":40}
"#;

    fn bench(rules: &str, extra: &[&str]) -> choreo_tests::Run {
        let dir = tempfile::tempdir().unwrap();
        let (r, e) = (dir.path().join("rules.json"), dir.path().join("events.jsonl"));
        std::fs::write(&r, rules).unwrap();
        std::fs::write(&e, EVENTS).unwrap();
        let mut args = vec!["pattern", "bench", "--rules", r.to_str().unwrap(), "--events", e.to_str().unwrap()];
        args.extend_from_slice(&["--passes", "2"]);
        args.extend_from_slice(extra);
        run(&args, b"")
    }

    const SETS: &str = r#"{"rule_sets":[
        {"name":"KIND","rules":[
            {"id":"orders","pattern":"{\"kind\":[\"order\"]}","expected_matches":2},
            {"id":"refunds","pattern":"{\"kind\":[\"refund\"]}","expected_matches":1}]},
        {"name":"BIG","rules":[
            {"id":"big","pattern":"{\"total\":[{\"numeric\":[\">=\",100]}]}","expected_matches":EXPECT_BIG}]}]}"#;

    #[test]
    fn counts_are_printed_per_rule() {
        let out = bench(r#"{"orders":{"kind":["order"]},"anything":"{\"total\":[{\"exists\":true}]}"}"#, &[]);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        assert!(out.stdout.starts_with("events: 3 from "), "{}", out.stdout);
        assert!(out.stdout.contains("baseline: "), "{}", out.stdout);
        let rows: Vec<Vec<&str>> = out.lines().iter().map(|l| l.split_whitespace().collect()).collect();
        assert!(rows.contains(&vec!["orders", "2", "-"]), "{}", out.stdout);
        assert!(rows.contains(&vec!["anything", "3", "-"]), "{}", out.stdout);
    }

    #[test]
    fn expected_counts_are_checked() {
        let out = bench(&SETS.replace("EXPECT_BIG", "1"), &["--no-baseline"]);
        assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
        assert!(!out.stdout.contains("baseline"), "{}", out.stdout);
        assert!(out.stdout.contains("3 expected counts checked, all as expected"), "{}", out.stdout);

        let out = bench(&SETS.replace("EXPECT_BIG", "2"), &[]);
        assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
        let rows: Vec<Vec<&str>> = out.lines().iter().map(|l| l.split_whitespace().collect()).collect();
        assert!(rows.contains(&vec!["big", "1", "2", "MISMATCH"]), "{}", out.stdout);
        assert!(rows.contains(&vec!["orders", "2", "2", "OK"]), "{}", out.stdout);
        assert!(out.stdout.contains("big: counted 1, expected 2"), "{}", out.stdout);
    }

    #[test]
    fn json_report_parses_and_follows_the_chosen_sets() {
        let out = bench(&SETS.replace("EXPECT_BIG", "2"), &["--json", "--set", "BIG"]);
        assert_eq!(out.code, Some(1), "{}", out.stderr);
        let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("--json prints JSON");
        assert_eq!(report["events"], 3);
        assert_eq!(report["passes"], 2);
        let sets = report["sets"].as_array().unwrap();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0]["name"], "BIG");
        assert_eq!(sets[0]["rules"][0], serde_json::json!({"id":"big","matches":1,"expected":2,"ok":false}));
        assert_eq!(report["mismatches"], serde_json::json!(["big: counted 1, expected 2"]));
    }

    #[test]
    fn an_unknown_set_is_a_usage_error_listing_the_sets() {
        let out = bench(&SETS.replace("EXPECT_BIG", "1"), &["--set", "KIND", "--set", "HUGE"]);
        assert_eq!(out.code, Some(2), "{}", out.stderr);
        assert!(
            out.stderr.contains(r#"no rule set named "HUGE""#) && out.stderr.contains("available: KIND, BIG"),
            "{}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "{}", out.stdout);
    }

    #[test]
    fn an_invalid_rule_is_bad_input_naming_the_rule() {
        let out = bench(r#"{"broken":{"kind":"order"}}"#, &[]);
        assert_eq!(out.code, Some(3));
        assert!(out.stderr.contains("rules.json") && out.stderr.contains("rule broken:"), "{}", out.stderr);
    }
}

#[test]
fn help_and_version_describe_the_commands() {
    let out = run(&["--version"], b"");
    assert_eq!(out.code, Some(0));
    assert_eq!(out.stdout.trim(), format!("choreo {}", env!("CARGO_PKG_VERSION")));

    let out = run(&["pattern", "--help"], b"");
    assert_eq!(out.code, Some(0));
    for cmd in ["check", "test", "bench"] {
        assert!(out.lines().iter().any(|l| l.trim_start().starts_with(cmd)), "{cmd} missing:\n{}", out.stdout);
    }
    let out = run(&["--help"], b"");
    assert!(out.stdout.contains("--data-dir") && out.stdout.contains("Exit codes:"), "{}", out.stdout);

    let out = run(&[], b"");
    assert_eq!(out.code, Some(2), "no command is a usage error");
}
