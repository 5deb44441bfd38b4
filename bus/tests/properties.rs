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
        // Each pattern character stands for its own lower or upper form: flip ASCII case only.
        (Value::String(s), 3) => {
            json!({"equals-ignore-case": s.chars().map(|c| c.to_ascii_uppercase()).collect::<String>()})
        }
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

/// The reference semantics, by brute force: a leaf's trail is the (array, element) pairs of the
/// container elements it lies in (a scalar inside an array takes its array's context).
#[derive(Debug, Clone)]
struct RefLeaf {
    path: Vec<String>,
    value: Value,
    trail: Vec<(usize, usize)>,
}

fn ref_leaves(
    v: &Value,
    path: &mut Vec<String>,
    trail: &mut Vec<(usize, usize)>,
    next_array: &mut usize,
    out: &mut Vec<RefLeaf>,
) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                path.push(k.clone());
                ref_leaves(x, path, trail, next_array, out);
                path.pop();
            }
        }
        Value::Array(items) => {
            *next_array += 1;
            let id = *next_array;
            for (i, x) in items.iter().enumerate() {
                let container = x.is_object() || x.is_array();
                if container {
                    trail.push((id, i));
                }
                ref_leaves(x, path, trail, next_array, out);
                if container {
                    trail.pop();
                }
            }
        }
        leaf => out.push(RefLeaf { path: path.clone(), value: leaf.clone(), trail: trail.clone() }),
    }
}

fn consistent_pair(a: &[(usize, usize)], b: &[(usize, usize)]) -> bool {
    a.iter().all(|(arr, i)| b.iter().all(|(arr2, j)| arr != arr2 || i == j))
}

/// Fields of one alternative: (path, allowed values or None for "exists", absent?)
type RefField = (Vec<String>, Option<Vec<Value>>, bool);

fn reference_match(event: &Value, fields: &[RefField]) -> bool {
    let mut leaves = Vec::new();
    ref_leaves(event, &mut Vec::new(), &mut Vec::new(), &mut 0, &mut leaves);
    let positives: Vec<Vec<&RefLeaf>> = fields
        .iter()
        .filter(|f| !f.2)
        .map(|(path, vals, _)| {
            leaves.iter().filter(|l| &l.path == path && vals.as_ref().is_none_or(|vs| vs.contains(&l.value))).collect()
        })
        .collect();
    let presence: Vec<&RefLeaf> =
        fields.iter().filter(|f| f.2).flat_map(|(path, _, _)| leaves.iter().filter(move |l| &l.path == path)).collect();
    fn search<'a>(i: usize, pos: &[Vec<&'a RefLeaf>], chosen: &mut Vec<&'a RefLeaf>, presence: &[&RefLeaf]) -> bool {
        if i == pos.len() {
            return presence.iter().all(|p| !chosen.iter().all(|c| consistent_pair(&p.trail, &c.trail)));
        }
        for cand in &pos[i] {
            if chosen.iter().all(|c| consistent_pair(&c.trail, &cand.trail)) {
                chosen.push(cand);
                if search(i + 1, pos, chosen, presence) {
                    return true;
                }
                chosen.pop();
            }
        }
        false
    }
    search(0, &positives, &mut Vec::new(), &presence)
}

fn small_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![Just(json!("x")), Just(json!("y")), Just(json!(1)), Just(Value::Null)];
    leaf.prop_recursive(3, 24, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[ab]", inner, 0..3).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn small_field() -> impl Strategy<Value = RefField> {
    (
        prop::collection::vec("[ab]", 1..4),
        prop_oneof![
            Just(None),
            prop::collection::vec(
                prop_oneof![Just(json!("x")), Just(json!("y")), Just(json!(1)), Just(Value::Null)],
                1..3
            )
            .prop_map(Some)
        ],
        prop::bool::weighted(0.25),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, .. ProptestConfig::default() })]

    #[test]
    fn array_consistency_agrees_with_brute_force(
        event in prop::collection::btree_map("[ab]", small_value(), 1..3),
        fields in prop::collection::vec(small_field(), 1..4),
        picks in prop::collection::vec((any::<bool>(), any::<prop::sample::Index>()), 4),
    ) {
        let event = Value::Object(event.into_iter().collect());
        // Most fields take the path of one of the event's own leaves, so matches are common.
        let mut leaves = Vec::new();
        ref_leaves(&event, &mut Vec::new(), &mut Vec::new(), &mut 0, &mut leaves);
        let fields: Vec<RefField> = fields
            .into_iter()
            .zip(&picks)
            .map(|((path, vals, absent), (own, idx))| {
                if *own && !leaves.is_empty() { (leaves[idx.index(leaves.len())].path.clone(), vals, absent) } else { (path, vals, absent) }
            })
            .collect();
        // Keep fields whose paths are distinct and no prefix of another: each is its own leaf.
        let mut kept: Vec<RefField> = Vec::new();
        for f in fields {
            if kept.iter().all(|k| { let n = k.0.len().min(f.0.len()); k.0[..n] != f.0[..n] }) {
                kept.push(f);
            }
        }
        let fields = kept;
        let mut root = Map::new();
        for (path, vals, absent) in &fields {
            let m = if *absent {
                json!({"exists": false})
            } else {
                match vals { None => json!({"exists": true}), Some(_) => Value::Null }
            };
            let ms: Vec<Value> = match (vals, *absent) {
                (Some(vs), false) => vs.clone(),
                _ => vec![m],
            };
            for x in ms {
                insert_path(&mut root, path, x);
            }
        }
        // Reread fields from the pattern actually built (insert_path may have merged some).
        let pattern_text = Value::Object(root.clone()).to_string();
        let pattern = Pattern::parse(&pattern_text).map_err(|e| TestCaseError::fail(format!("{pattern_text}: {e}")))?;
        let mut built = Vec::new();
        collect_fields(&Value::Object(root), &mut Vec::new(), &mut built);
        let want = reference_match(&event, &built);
        let event_text = event.to_string();
        let got = Machine::single(&pattern).is_match(event_text.as_bytes(), &mut Scratch::new()).unwrap();
        prop_assert_eq!(got, want, "pattern {} event {}", pattern_text, event_text);
    }
}

/// The fields of a pattern built by `insert_path`, in reference form. A leaf mixing values with
/// `exists` is not produced by the generator above.
fn collect_fields(p: &Value, path: &mut Vec<String>, out: &mut Vec<RefField>) {
    match p {
        Value::Object(m) => {
            for (k, v) in m {
                path.push(k.clone());
                collect_fields(v, path, out);
                path.pop();
            }
        }
        Value::Array(ms) => {
            if ms.contains(&json!({"exists": false})) {
                out.push((path.clone(), None, true));
            } else if ms.contains(&json!({"exists": true})) {
                out.push((path.clone(), None, false));
            } else {
                out.push((path.clone(), Some(ms.clone()), false));
            }
        }
        _ => {}
    }
}

#[test]
fn lone_surrogates_read_as_the_replacement_character_on_both_sides() {
    let m = machine(&[r#"{"k":["\ud800"]}"#, r#"{"k":[{"anything-but":"x"}]}"#]);
    let mut s = Scratch::new();
    let hits = m.matches(br#"{"\udc00":1,"k":"\ud800"}"#, &mut s).expect("valid JSON text is matched").to_vec();
    assert_eq!(hits, vec![0, 1]);
}

#[test]
fn many_alternatives_over_a_huge_array_keep_hits_bounded() {
    // 1,000 alternatives share field `a`; 60,000 values of it in one array.
    let alts = |k: &str| (0..10).map(|i| format!(r#"{{"{k}":[{i}]}}"#)).collect::<Vec<_>>().join(",");
    let p = format!(
        r#"{{"a":["x"],"p":{{"$or":[{}]}},"q":{{"$or":[{}]}},"r":{{"$or":[{}]}}}}"#,
        alts("m"),
        alts("n"),
        alts("o")
    );
    let m = machine(&[&p]);
    let event = format!(r#"{{"a":[{}],"p":{{"m":3}},"q":{{"n":4}},"r":{{"o":5}}}}"#, vec![r#""x""#; 60_000].join(","));
    let mut s = Scratch::new();
    assert_eq!(m.matches(event.as_bytes(), &mut s).unwrap(), &[0]);
    assert!(s.hit_count() <= 4 * 1000, "one hit per target and context, got {}", s.hit_count());
}
