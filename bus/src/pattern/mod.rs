//! EventBridge event patterns: parse and validate ([`Pattern`]), compile many into one
//! [`Machine`], match events against all of them in one pass, and explain a miss.

mod ast;
pub mod bench;
mod cidr;
mod compile;
mod eval;
mod explain;
mod fold;
mod json;
mod number;
mod scan;
pub(crate) mod skip;
mod wildcard;

pub use ast::{MAX_ALTERNATIVES, MAX_OR_COMBINATIONS, MAX_PATTERN_CHARS, MAX_WILDCARDS_PER_FIELD, Pattern};
pub use compile::{Machine, MachineBuilder, RuleId};
pub use explain::Explanation;
pub use json::SyntaxError;
pub use scan::MAX_EVENT_DEPTH;

/// Why a pattern is rejected, as `PutRule` would reject it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("pattern is {chars} characters long; the limit is {limit}")]
    TooLong { chars: usize, limit: usize },
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
    #[error("a pattern must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    #[error("at {path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("$or produces {count} combinations; the limit is {limit}")]
    TooManyCombinations { count: usize, limit: usize },
    #[error(
        "pattern expands to {count} alternatives (each field that takes a value or absence doubles its $or combinations); the limit is {limit}"
    )]
    TooManyAlternatives { count: usize, limit: usize },
    #[error("at {path}: wildcard pattern too complex: {stars} '*' on one field; the limit is {limit}")]
    TooComplex { path: String, stars: usize, limit: usize },
}

/// Why an event could not be matched: it is not a well-formed JSON object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event is not valid JSON at byte {offset}: {reason}")]
pub struct EventError {
    pub offset: usize,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Hit {
    pub branch: u32,
    pub field: u16,
    pub presence: bool,
    pub ctx: u32,
    pub next: u32,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx {
    pub parent: u32,
    pub array: u32,
}

/// Reusable working memory for matching: one per thread, reused across events so that
/// matching allocates nothing once warm.
#[derive(Debug, Default)]
pub struct Scratch {
    generation: u32,
    rule_gen: Vec<u32>,
    matched: Vec<RuleId>,
    pub(crate) hits: Vec<Hit>,
    pub(crate) ctxs: Vec<Ctx>,
    pub(crate) arrays: u32,
    branch_gen: Vec<u32>,
    pub(crate) branch_head: Vec<u32>,
    touched: Vec<u32>,
    /// Per target: the generation and context it last fired in. A target firing again in the
    /// same context adds nothing, so hits stay bounded by targets × contexts, not by values.
    target_seen: Vec<(u32, u32)>,
    pub(crate) key_buf: Vec<u8>,
    pub(crate) value_buf: Vec<u8>,
    pub(crate) upper_buf: Vec<u8>,
}

impl Scratch {
    pub fn new() -> Self {
        Self::default()
    }

    fn reset(&mut self, m: &Machine) {
        if self.rule_gen.len() < m.len() {
            self.rule_gen.resize(m.len(), 0);
        }
        if self.branch_gen.len() < m.branches.len() {
            self.branch_gen.resize(m.branches.len(), 0);
            self.branch_head.resize(m.branches.len(), u32::MAX);
        }
        if self.target_seen.len() < m.targets.len() {
            self.target_seen.resize(m.targets.len(), (0, 0));
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            // Stamps from 2^32 events ago could collide: start over.
            self.rule_gen.iter_mut().for_each(|g| *g = 0);
            self.branch_gen.iter_mut().for_each(|g| *g = 0);
            self.target_seen.iter_mut().for_each(|g| *g = (0, 0));
            self.generation = 1;
        }
        self.matched.clear();
        self.hits.clear();
        self.ctxs.clear();
        self.ctxs.push(Ctx { parent: 0, array: 0 });
        self.arrays = 0;
        self.touched.clear();
    }

    #[inline]
    pub(crate) fn matched_rule(&mut self, rule: u32) {
        let g = &mut self.rule_gen[rule as usize];
        if *g != self.generation {
            *g = self.generation;
            self.matched.push(rule);
        }
    }

    #[inline]
    pub(crate) fn hit(&mut self, target: u32, branch: u32, field: u16, presence: bool, ctx: u32) {
        let seen = &mut self.target_seen[target as usize];
        if *seen == (self.generation, ctx) {
            return;
        }
        *seen = (self.generation, ctx);
        self.hits.push(Hit { branch, field, presence, ctx, next: u32::MAX });
    }

    #[inline]
    pub(crate) fn new_ctx(&mut self, parent: u32, array: u32) -> u32 {
        self.ctxs.push(Ctx { parent, array });
        (self.ctxs.len() - 1) as u32
    }

    /// Field hits recorded for the last event (for tests and diagnostics).
    pub fn hit_count(&self) -> usize {
        self.hits.len()
    }

    fn is_matched(&self, rule: u32) -> bool {
        self.rule_gen[rule as usize] == self.generation
    }
}

impl Machine {
    /// The rules that match `event` (a JSON object's text), in the order they first matched.
    pub fn matches<'s>(&self, event: &[u8], scratch: &'s mut Scratch) -> Result<&'s [RuleId], EventError> {
        self.run(event, scratch)?;
        Ok(&scratch.matched)
    }

    /// Whether any rule matches `event`.
    pub fn is_match(&self, event: &[u8], scratch: &mut Scratch) -> Result<bool, EventError> {
        Ok(!self.matches(event, scratch)?.is_empty())
    }

    pub(crate) fn run(&self, event: &[u8], s: &mut Scratch) -> Result<(), EventError> {
        s.reset(self);
        scan::Scan { m: self, s: &mut *s, b: event, pos: 0, ctx: 0, depth: 0 }.root()?;
        self.decide(s);
        Ok(())
    }

    /// Decides the alternatives the scan could not settle on its own.
    fn decide(&self, s: &mut Scratch) {
        let generation = s.generation;
        for i in 0..s.hits.len() {
            let b = s.hits[i].branch as usize;
            if s.branch_gen[b] != generation {
                s.branch_gen[b] = generation;
                s.branch_head[b] = u32::MAX;
                s.touched.push(b as u32);
            }
            s.hits[i].next = s.branch_head[b];
            s.branch_head[b] = i as u32;
        }
        for k in 0..s.touched.len() {
            let b = s.touched[k];
            let br = &self.branches[b as usize];
            if br.positives > 0 && !s.is_matched(br.rule) && eval::branch_holds(s, b, br.positives) {
                s.matched_rule(br.rule);
            }
        }
        for &b in &self.absence_only {
            if s.branch_gen[b as usize] != generation {
                s.matched_rule(self.branches[b as usize].rule);
            }
        }
    }
}
