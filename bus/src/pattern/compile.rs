//! Compiling patterns into one machine: a trie of the field names any pattern uses, whose
//! leaves hold value tests indexed for speed (hash maps for exact values, length-grouped maps
//! for prefixes and suffixes). A test that passes fires its targets: (rule, alternative, field).

use rustc_hash::FxHashMap;

use super::ast::{AnythingBut, Exact, FieldValue, Matcher, Obj, Pattern, Range};
use super::cidr::Cidr;
use super::fold;
use super::number;
use super::wildcard::Wildcard;

/// Identifies a rule inside one [`Machine`]: its position in the order rules were added.
pub type RuleId = u32;

pub(crate) const NONE: u32 = u32::MAX;

/// A run of targets in `Machine::targets`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Targets {
    pub start: u32,
    pub len: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The alternative has this one field and no absence: a hit is a match.
    Simple,
    /// One of several fields of the alternative.
    Positive,
    /// A value at a path the alternative needs absent (`{"exists": false}`).
    Presence,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    pub rule: u32,
    pub branch: u32,
    pub field: u16,
    pub kind: Kind,
}

/// One alternative of a rule (an `$or` combination): all its fields must hold together.
#[derive(Debug, Clone)]
pub(crate) struct Branch {
    pub rule: u32,
    pub positives: u16,
    pub absences: u16,
}

pub(crate) enum Children {
    None,
    Few(Vec<(Box<[u8]>, u32)>),
    Many(FxHashMap<Box<[u8]>, u32>),
}

pub(crate) struct Node {
    pub children: Children,
    pub leaf: u32,
}

impl Node {
    #[inline]
    pub fn child(&self, key: &[u8]) -> Option<u32> {
        match &self.children {
            Children::None => None,
            // Length first: most keys differ in length, and that saves a memcmp call.
            Children::Few(v) => v.iter().find(|(k, _)| k.len() == key.len() && &k[..] == key).map(|&(_, n)| n),
            Children::Many(m) => m.get(key).copied(),
        }
    }
    #[inline]
    pub fn has_children(&self) -> bool {
        !matches!(self.children, Children::None)
    }
}

const SMALL: usize = 8;

/// Exact byte strings to targets: a short list compared directly, or a hash map.
pub(crate) enum ByteMap<V = Targets> {
    Small(Vec<(Box<[u8]>, V)>),
    Hashed(FxHashMap<Box<[u8]>, V>),
}

impl<V> ByteMap<V> {
    #[inline]
    pub fn get(&self, k: &[u8]) -> Option<&V> {
        match self {
            ByteMap::Small(v) => v.iter().find(|(x, _)| x.len() == k.len() && &x[..] == k).map(|(_, t)| t),
            ByteMap::Hashed(m) => m.get(k),
        }
    }

    fn new(v: Vec<(Box<[u8]>, V)>) -> Self {
        if v.len() <= SMALL { ByteMap::Small(v) } else { ByteMap::Hashed(v.into_iter().collect()) }
    }
}

/// Prefixes (or suffixes) grouped by length, so a value needs one lookup per distinct length.
pub(crate) struct Affixes<V = Targets>(pub Vec<(usize, ByteMap<V>)>);

/// Case-insensitive operands under their upper-cased form, each with its exact check.
pub(crate) type Caseless = Vec<(fold::Caseless, Targets)>;

pub(crate) enum But {
    Strings(ByteMap),
    Numbers(Vec<u64>),
    Prefix(Vec<Box<[u8]>>),
    Suffix(Vec<Box<[u8]>>),
    IgnoreCase(Vec<fold::Caseless>),
    Wildcard(Vec<Wildcard>),
}

/// The value tests of one field path.
pub(crate) struct Leaf {
    pub exact: ByteMap,
    pub numbers: FxHashMap<u64, Targets>,
    /// `true`, `false`, `null`.
    pub literals: [Targets; 3],
    pub prefix: Affixes,
    pub suffix: Affixes,
    pub ic_exact: ByteMap<Caseless>,
    pub ic_prefix: Affixes<Caseless>,
    pub ic_suffix: Affixes<Caseless>,
    /// The rare case-insensitive operands the upper-cased hash cannot find (e.g. with `İ`).
    pub ic_other: Vec<(fold::Caseless, fold::Anchor, Targets)>,
    pub wildcards: Vec<(Wildcard, Targets)>,
    pub ranges: Vec<(Range, Targets)>,
    pub cidrs: Vec<(Cidr, Targets)>,
    pub buts: Vec<(But, Targets)>,
    /// Fired by any value: `{"exists": true}` and the presence of fields that must be absent.
    pub any: Targets,
    pub needs_upper: bool,
    pub needs_number: bool,
    pub has_string_tests: bool,
}

struct RuleEntry {
    name: String,
    pattern: Pattern,
}

/// Many rules compiled into one machine that matches an event against all of them in one pass.
pub struct Machine {
    pub(crate) nodes: Vec<Node>,
    pub(crate) leaves: Vec<Leaf>,
    pub(crate) targets: Vec<Target>,
    pub(crate) branches: Vec<Branch>,
    /// Alternatives made only of absent fields: they match when nothing fired them.
    pub(crate) absence_only: Vec<u32>,
    /// Some alternative needs array consistency checked, so array elements are tracked.
    pub(crate) track_arrays: bool,
    rules: Vec<RuleEntry>,
}

impl Machine {
    /// A machine of one rule, named `pattern`.
    pub fn single(pattern: &Pattern) -> Machine {
        let mut b = MachineBuilder::new();
        b.add_rule("pattern", pattern.clone());
        b.build()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The name a rule was added under.
    pub fn rule_name(&self, id: RuleId) -> &str {
        &self.rules[id as usize].name
    }

    /// The pattern of a rule.
    pub fn rule_pattern(&self, id: RuleId) -> &Pattern {
        &self.rules[id as usize].pattern
    }
}

/// Collects rules, then compiles them into a [`Machine`].
#[derive(Default)]
pub struct MachineBuilder {
    rules: Vec<RuleEntry>,
}

impl MachineBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a rule; ids are given in order from 0.
    pub fn add_rule(&mut self, name: impl Into<String>, pattern: Pattern) -> RuleId {
        self.rules.push(RuleEntry { name: name.into(), pattern });
        (self.rules.len() - 1) as RuleId
    }

    pub fn build(self) -> Machine {
        let mut c = Compiler { nodes: vec![NodeB::default()], leaves: Vec::new(), branches: Vec::new() };
        for (rule, entry) in self.rules.iter().enumerate() {
            c.add(rule as u32, &entry.pattern);
        }
        c.finish(self.rules)
    }
}

/// A field of one alternative, before compiling.
struct Want<'p> {
    path: Vec<&'p str>,
    tests: Vec<&'p Matcher>,
    absent: bool,
}

/// Expands `$or` groups and "value or absent" fields into alternatives (disjunctive normal form).
fn expand<'p>(obj: &'p Obj, prefix: &[&'p str]) -> Vec<Vec<Want<'p>>> {
    let mut alts: Vec<Vec<Want<'p>>> = vec![Vec::new()];
    let cross = |alts: &mut Vec<Vec<Want<'p>>>, options: Vec<Vec<Want<'p>>>| {
        let mut out = Vec::with_capacity(alts.len() * options.len());
        for a in alts.iter() {
            for o in &options {
                let mut v: Vec<Want<'p>> = a.iter().map(Want::clone_ref).collect();
                v.extend(o.iter().map(Want::clone_ref));
                out.push(v);
            }
        }
        *alts = out;
    };
    for f in &obj.fields {
        let mut path = prefix.to_vec();
        path.push(f.key.as_str());
        let options = match &f.value {
            FieldValue::Obj(inner) => expand(inner, &path),
            FieldValue::Leaf(ms) => {
                let tests: Vec<&Matcher> = ms.iter().filter(|m| **m != Matcher::Exists(false)).collect();
                let absent = ms.contains(&Matcher::Exists(false));
                let mut o = Vec::new();
                if !tests.is_empty() {
                    o.push(vec![Want { path: path.clone(), tests, absent: false }]);
                }
                if absent {
                    o.push(vec![Want { path, tests: Vec::new(), absent: true }]);
                }
                o
            }
        };
        cross(&mut alts, options);
    }
    for group in &obj.ors {
        let options: Vec<Vec<Want<'p>>> = group.iter().flat_map(|alt| expand(alt, prefix)).collect();
        cross(&mut alts, options);
    }
    alts
}

impl Pattern {
    /// Each alternative's fields as (path segments, wanted, absent), in the order the machine
    /// numbers them: positive fields first, then absent ones.
    pub(crate) fn alternatives_for_explain(&self) -> Vec<Vec<(Vec<String>, String, bool)>> {
        expand(&self.root, &[])
            .into_iter()
            .map(|alt| {
                alt.iter()
                    .filter(|w| !w.absent)
                    .chain(alt.iter().filter(|w| w.absent))
                    .map(|w| {
                        let wanted = if w.absent {
                            "{\"exists\":false}".to_owned()
                        } else {
                            format!("[{}]", w.tests.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(","))
                        };
                        (w.path.iter().map(|p| p.to_string()).collect(), wanted, w.absent)
                    })
                    .collect()
            })
            .collect()
    }
}

impl Want<'_> {
    fn clone_ref(&self) -> Self {
        Want { path: self.path.clone(), tests: self.tests.clone(), absent: self.absent }
    }
}

#[derive(Default)]
struct NodeB {
    children: Vec<(Box<[u8]>, u32)>,
    leaf: Option<usize>,
}

/// Targets grouped by the value that fires them.
type Keyed<K> = FxHashMap<K, Vec<Target>>;

#[derive(Default)]
struct LeafB {
    exact: Keyed<Box<[u8]>>,
    numbers: Keyed<u64>,
    literals: [Vec<Target>; 3],
    prefix: Keyed<Box<[u8]>>,
    suffix: Keyed<Box<[u8]>>,
    ic_exact: Keyed<String>,
    ic_prefix: Keyed<String>,
    ic_suffix: Keyed<String>,
    wildcards: Vec<(Wildcard, Vec<Target>)>,
    ranges: Vec<(Range, Vec<Target>)>,
    cidrs: Vec<(Cidr, Vec<Target>)>,
    buts: Vec<(But, Vec<Target>)>,
    any: Vec<Target>,
}

fn slot<K: PartialEq, V: Default>(list: &mut Vec<(K, V)>, key: K) -> &mut V {
    let i = match list.iter().position(|(k, _)| *k == key) {
        Some(i) => i,
        None => {
            list.push((key, V::default()));
            list.len() - 1
        }
    };
    &mut list[i].1
}

struct Compiler {
    nodes: Vec<NodeB>,
    leaves: Vec<LeafB>,
    branches: Vec<Branch>,
}

impl Compiler {
    fn leaf_for(&mut self, path: &[&str]) -> usize {
        let mut n = 0usize;
        for seg in path {
            let key = seg.as_bytes();
            n = match self.nodes[n].children.iter().find(|(k, _)| &k[..] == key) {
                Some(&(_, c)) => c as usize,
                None => {
                    self.nodes.push(NodeB::default());
                    let c = self.nodes.len() - 1;
                    self.nodes[n].children.push((key.into(), c as u32));
                    c
                }
            };
        }
        if let Some(l) = self.nodes[n].leaf {
            return l;
        }
        self.leaves.push(LeafB::default());
        let l = self.leaves.len() - 1;
        self.nodes[n].leaf = Some(l);
        l
    }

    fn add(&mut self, rule: u32, pattern: &Pattern) {
        for alt in expand(&pattern.root, &[]) {
            let branch = self.branches.len() as u32;
            let positives = alt.iter().filter(|w| !w.absent).count();
            let absences = alt.len() - positives;
            let simple = positives == 1 && absences == 0;
            let (mut pi, mut ai) = (0u16, 0u16);
            for want in alt.iter().filter(|w| !w.absent).chain(alt.iter().filter(|w| w.absent)) {
                let leaf = self.leaf_for(&want.path);
                if want.absent {
                    let t = Target { rule, branch, field: ai, kind: Kind::Presence };
                    ai += 1;
                    self.leaves[leaf].any.push(t);
                    continue;
                }
                let kind = if simple { Kind::Simple } else { Kind::Positive };
                let t = Target { rule, branch, field: pi, kind };
                pi += 1;
                for m in &want.tests {
                    self.add_test(leaf, m, t);
                }
            }
            self.branches.push(Branch { rule, positives: positives as u16, absences: absences as u16 });
        }
    }

    fn add_test(&mut self, leaf: usize, m: &Matcher, t: Target) {
        let l = &mut self.leaves[leaf];
        match m {
            Matcher::Exact(Exact::String(s)) => l.exact.entry(s.as_bytes().into()).or_default().push(t),
            Matcher::Exact(Exact::Number(n)) => l.numbers.entry(number::key(*n)).or_default().push(t),
            Matcher::Exact(Exact::Bool(true)) => l.literals[0].push(t),
            Matcher::Exact(Exact::Bool(false)) => l.literals[1].push(t),
            Matcher::Exact(Exact::Null) => l.literals[2].push(t),
            Matcher::Prefix { text, ignore_case: false } => l.prefix.entry(text.as_bytes().into()).or_default().push(t),
            Matcher::Suffix { text, ignore_case: false } => l.suffix.entry(text.as_bytes().into()).or_default().push(t),
            Matcher::Prefix { text, ignore_case: true } => l.ic_prefix.entry(text.clone()).or_default().push(t),
            Matcher::Suffix { text, ignore_case: true } => l.ic_suffix.entry(text.clone()).or_default().push(t),
            Matcher::EqualsIgnoreCase(s) => l.ic_exact.entry(s.clone()).or_default().push(t),
            Matcher::Wildcard(w) => slot(&mut l.wildcards, w.clone()).push(t),
            Matcher::Numeric(r) => slot(&mut l.ranges, *r).push(t),
            Matcher::Cidr(c) => slot(&mut l.cidrs, c.clone()).push(t),
            Matcher::Exists(_) => l.any.push(t),
            Matcher::AnythingBut(ab) => {
                let but = match ab {
                    AnythingBut::Strings(v) => But::Strings(byte_set(v.iter().map(|s| s.as_bytes().into()))),
                    AnythingBut::Numbers(v) => But::Numbers(v.iter().map(|n| number::key(*n)).collect()),
                    AnythingBut::Prefix(v) => But::Prefix(v.iter().map(|s| s.as_bytes().into()).collect()),
                    AnythingBut::Suffix(v) => But::Suffix(v.iter().map(|s| s.as_bytes().into()).collect()),
                    AnythingBut::IgnoreCase(v) => But::IgnoreCase(v.iter().map(|s| fold::Caseless::new(s)).collect()),
                    AnythingBut::Wildcard(v) => But::Wildcard(v.clone()),
                };
                l.buts.push((but, vec![t]));
            }
        }
    }

    fn finish(self, rules: Vec<RuleEntry>) -> Machine {
        let mut targets = Vec::new();
        let leaves: Vec<Leaf> = self.leaves.into_iter().map(|l| l.finish(&mut targets)).collect();
        let nodes = self
            .nodes
            .into_iter()
            .map(|n| Node {
                children: match n.children.len() {
                    0 => Children::None,
                    k if k <= SMALL => Children::Few(n.children),
                    _ => Children::Many(n.children.into_iter().collect()),
                },
                leaf: n.leaf.map_or(NONE, |l| l as u32),
            })
            .collect();
        let absence_only =
            self.branches.iter().enumerate().filter(|(_, b)| b.positives == 0).map(|(i, _)| i as u32).collect();
        let track_arrays = self.branches.iter().any(|b| b.positives >= 2 || (b.positives >= 1 && b.absences >= 1));
        Machine { nodes, leaves, targets, branches: self.branches, absence_only, track_arrays, rules }
    }
}

fn byte_set(keys: impl Iterator<Item = Box<[u8]>>) -> ByteMap {
    ByteMap::new(keys.map(|k| (k, Targets::default())).collect())
}

fn push(targets: &mut Vec<Target>, list: Vec<Target>) -> Targets {
    let start = targets.len() as u32;
    let len = list.len() as u32;
    targets.extend(list);
    Targets { start, len }
}

fn byte_map(targets: &mut Vec<Target>, list: Keyed<Box<[u8]>>) -> ByteMap {
    ByteMap::new(list.into_iter().map(|(k, ts)| (k, push(targets, ts))).collect())
}

/// Groups keyed values by key length, shortest first: one lookup per distinct length.
fn by_length<V>(map: FxHashMap<Box<[u8]>, V>) -> Affixes<V> {
    type Group<V> = Vec<(Box<[u8]>, V)>;
    let mut by_len: FxHashMap<usize, Group<V>> = FxHashMap::default();
    for (k, v) in map {
        by_len.entry(k.len()).or_default().push((k, v));
    }
    let mut groups: Vec<(usize, ByteMap<V>)> = by_len.into_iter().map(|(n, g)| (n, ByteMap::new(g))).collect();
    groups.sort_by_key(|(n, _)| *n);
    Affixes(groups)
}

fn affixes(targets: &mut Vec<Target>, list: Keyed<Box<[u8]>>) -> Affixes {
    by_length(list.into_iter().map(|(k, ts)| (k, push(targets, ts))).collect())
}

/// Case-insensitive operands under their upper-cased form; those the upper-cased hash cannot
/// find go to `other`, checked one by one.
fn caseless(
    targets: &mut Vec<Target>,
    list: Keyed<String>,
    anchor: fold::Anchor,
    other: &mut Vec<(fold::Caseless, fold::Anchor, Targets)>,
) -> FxHashMap<Box<[u8]>, Caseless> {
    let mut map: FxHashMap<Box<[u8]>, Caseless> = FxHashMap::default();
    for (text, ts) in list {
        let c = fold::Caseless::new(&text);
        let t = push(targets, ts);
        if c.filterable() {
            map.entry(fold::upper(&text)).or_default().push((c, t));
        } else {
            other.push((c, anchor, t));
        }
    }
    map
}

impl LeafB {
    fn finish(self, targets: &mut Vec<Target>) -> Leaf {
        let needs_upper = !self.ic_exact.is_empty()
            || !self.ic_prefix.is_empty()
            || !self.ic_suffix.is_empty()
            || self.buts.iter().any(|(b, _)| matches!(b, But::IgnoreCase(_)));
        let needs_number = !self.numbers.is_empty() || !self.ranges.is_empty();
        let has_string_tests = !self.exact.is_empty()
            || !self.prefix.is_empty()
            || !self.suffix.is_empty()
            || needs_upper
            || !self.wildcards.is_empty()
            || !self.cidrs.is_empty();
        let [t, f, n] = self.literals;
        let mut ic_other = Vec::new();
        Leaf {
            exact: byte_map(targets, self.exact),
            numbers: self.numbers.into_iter().map(|(k, ts)| (k, push(targets, ts))).collect(),
            literals: [push(targets, t), push(targets, f), push(targets, n)],
            prefix: affixes(targets, self.prefix),
            suffix: affixes(targets, self.suffix),
            ic_exact: ByteMap::new(
                caseless(targets, self.ic_exact, fold::Anchor::Whole, &mut ic_other).into_iter().collect(),
            ),
            ic_prefix: by_length(caseless(targets, self.ic_prefix, fold::Anchor::Prefix, &mut ic_other)),
            ic_suffix: by_length(caseless(targets, self.ic_suffix, fold::Anchor::Suffix, &mut ic_other)),
            ic_other,
            wildcards: self.wildcards.into_iter().map(|(w, ts)| (w, push(targets, ts))).collect(),
            ranges: self.ranges.into_iter().map(|(r, ts)| (r, push(targets, ts))).collect(),
            cidrs: self.cidrs.into_iter().map(|(c, ts)| (c, push(targets, ts))).collect(),
            buts: self.buts.into_iter().map(|(b, ts)| (b, push(targets, ts))).collect(),
            any: push(targets, self.any),
            needs_upper,
            needs_number,
            has_string_tests,
        }
    }
}
