//! Property tests of the pattern parser and the matcher: arbitrary input never panics, a
//! pattern derived from an event always matches it, and the JSON checker agrees with serde_json.

use choreo_bus::json;
use choreo_bus::pattern::{Machine, MachineBuilder, Pattern, Scratch};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-1_000_000i64..1_000_000).prop_map(|n| json!(n)),
        (-1.0e6f64..1.0e6).prop_map(|f| json!(f)),
        "[a-zA-Z0-9 ./*\\\\\"é\u{df}-]{0,12}".prop_map(Value::String),
    ]
}

fn event_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-d]{1,2}", inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An event object with at least one scalar member, so a pattern can always be derived.
fn event() -> impl Strategy<Value = Value> {
    (prop::collection::btree_map("[a-d]{1,2}", event_value(), 0..5), leaf()).prop_map(|(m, l)| {
        let mut obj: Map<String, Value> = m.into_iter().collect();
        obj.insert("zz".into(), l);
        Value::Object(obj)
    })
}

/// Leaves reachable by choosing one element of every array: values that can all be matched
/// together, with their key paths.
fn consistent_leaves(
    v: &Value,
    path: &mut Vec<String>,
    choice: &mut impl FnMut(usize) -> usize,
    out: &mut Vec<(Vec<String>, Value)>,
) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                path.push(k.clone());
                consistent_leaves(x, path, choice, out);
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let i = choice(items.len());
            consistent_leaves(&items[i], path, choice, out);
        }
        Value::Array(_) => {}
        leaf => out.push((path.clone(), leaf.clone())),
    }
}

/// One way to match a leaf value, chosen by `op`.
fn matcher_for(v: &Value, op: u8) -> Value {
    match (v, op % 6) {
        (Value::String(s), 1) => json!({"prefix": s.chars().take(2).collect::<String>()}),
        (Value::String(s), 2) => {
            json!({"suffix": s.chars().rev().take(2).collect::<Vec<_>>().into_iter().rev().collect::<String>()})
        }
        (Value::String(s), 3) => json!({"equals-ignore-case": s.to_uppercase()}),
        (Value::String(s), 4) => {
            let escaped = s.replace('\\', "\\\\").replace('*', "\\*");
            json!({"wildcard": format!("{escaped}*")})
        }
        (Value::Number(n), 1) => json!({"numeric": ["=", n]}),
        (Value::Number(n), 2) => json!({"numeric": [">=", n]}),
        (_, 5) => json!({"exists": true}),
        (other, _) => other.clone(),
    }
}

fn insert_path(root: &mut Map<String, Value>, path: &[String], m: Value) {
    let (last, parents) = path.split_last().expect("non-empty path");
    let mut cur = root;
    for p in parents {
        let entry = cur.entry(p.clone()).or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            return; // a leaf already claimed this key: keep the pattern simple
        }
        cur = entry.as_object_mut().expect("object");
    }
    match cur.get_mut(last) {
        Some(Value::Array(ms)) => ms.push(m),
        Some(_) => {}
        None => {
            cur.insert(last.clone(), Value::Array(vec![m]));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn parsing_any_text_never_panics(text in ".{0,300}") {
        let _ = Pattern::parse(&text);
    }

    #[test]
    fn parsing_json_shaped_text_never_panics(v in event_value()) {
        let _ = Pattern::parse(&v.to_string());
    }

    #[test]
    fn matching_any_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let machine = machine(&[
            r#"{"a":["x"],"b":{"c":[{"prefix":"y"}]}}"#,
            r#"{"a":[{"exists":false}],"$or":[{"b":[{"numeric":[">",1]}]},{"c":[{"wildcard":"*z*"}]}]}"#,
        ]);
        let _ = machine.matches(&bytes, &mut Scratch::new());
    }

    #[test]
    fn a_pattern_derived_from_an_event_matches_it(
        ev in event(),
        seed in any::<u64>(),
        ops in prop::collection::vec(any::<u8>(), 8),
        take in 1usize..5,
    ) {
        let mut state = seed | 1;
        let mut choice = |n: usize| { state ^= state << 13; state ^= state >> 7; state ^= state << 17; (state % n as u64) as usize };
        let mut leaves = Vec::new();
        consistent_leaves(&ev, &mut Vec::new(), &mut choice, &mut leaves);
        prop_assert!(!leaves.is_empty());
        let mut root = Map::new();
        for (i, (path, v)) in leaves.iter().take(take).enumerate() {
            insert_path(&mut root, path, matcher_for(v, ops[i % ops.len()]));
        }
        prop_assert!(!root.is_empty());
        let pattern_text = Value::Object(root).to_string();
        let pattern = Pattern::parse(&pattern_text).map_err(|e| TestCaseError::fail(format!("{pattern_text}: {e}")))?;
        let event_text = ev.to_string();
        let m = Machine::single(&pattern);
        let matched = m.is_match(event_text.as_bytes(), &mut Scratch::new()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(matched, "pattern {} should match event {}", pattern_text, event_text);
        let why = pattern.explain(event_text.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(why.matched);
    }

    #[test]
    fn json_check_agrees_with_serde_json(v in event_value(), cut in any::<prop::sample::Index>(), junk in "[\\[\\]{},:\"0-9a-z ]{0,3}") {
        let text = v.to_string();
        prop_assert!(json::check(text.as_bytes(), 1000).is_ok());
        // Corrupt the text and compare verdicts.
        let at = cut.index(text.len() + 1);
        let mut bad = text.into_bytes();
        bad.splice(at..at, junk.bytes());
        let ours = json::check(&bad, 1000).is_ok();
        let theirs = serde_json::from_slice::<Value>(&bad);
        // serde_json stops at numbers beyond a double's range, before finishing the grammar:
        // no verdict to compare with.
        prop_assume!(!matches!(&theirs, Err(e) if e.to_string().starts_with("number out of range")));
        let theirs = theirs.is_ok();
        prop_assert_eq!(ours, theirs, "{}", String::from_utf8_lossy(&bad));
    }
}

fn machine(patterns: &[&str]) -> Machine {
    let mut b = MachineBuilder::new();
    for (i, p) in patterns.iter().enumerate() {
        b.add_rule(format!("r{i}"), Pattern::parse(p).expect("valid pattern"));
    }
    b.build()
}

#[test]
fn hostile_events_get_errors_not_panics() {
    let m = machine(&[r#"{"a":{"b":["x"]}}"#, r#"{"a":[{"numeric":[">",0]}]}"#]);
    let mut s = Scratch::new();
    let deep = format!("{{\"a\":{}1{}}}", "[".repeat(5000), "]".repeat(5000));
    assert!(m.matches(deep.as_bytes(), &mut s).is_err(), "5,000 levels on a named path is refused");
    let deep_skipped = format!("{{\"z\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(m.matches(deep_skipped.as_bytes(), &mut s).is_ok(), "unnamed deep values are skipped without recursion");
    for bad in [&b"[1]"[..], b"", b"{", b"{\"a\":", b"{\"a\":1e99999}", b"{\"a\":\"\xff\"}", b"{\"a\":[1,2"] {
        let _ = m.matches(bad, &mut s);
    }
    assert_eq!(m.matches(b"{\"a\":1e99999}", &mut s).map(|r| r.len()), Ok(0), "an infinite number matches no range");
}
