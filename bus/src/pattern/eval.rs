//! Deciding alternatives with several fields once the scan has fired them. Fields must agree
//! on array elements (event-ruler's array consistency): values taken from different elements
//! of one array do not combine, and a field that must be absent is only looked for where the
//! chosen values lie.
//!
//! Contexts form a tree: one node per container element of an array, under the context the
//! array lies in. A choice of hits is consistent when, for every array, all chosen hits inside
//! it lie in one element. Bottom-up over the contexts, each node gets the sets of fields that a
//! consistent choice within it can cover (kept as an antichain of bit masks), which is linear in
//! the hits rather than a search over their combinations.

use rustc_hash::FxHashMap;

use super::Scratch;

/// A set of field indexes of one alternative (at most 256: a 2048-character pattern holds fewer
/// than 256 fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Mask([u64; 4]);

impl Mask {
    pub fn bit(i: u16) -> Mask {
        let mut m = Mask::default();
        m.0[(i / 64) as usize] |= 1 << (i % 64);
        m
    }
    pub fn full(n: u16) -> Mask {
        let mut m = Mask::default();
        for i in 0..n {
            m.0[(i / 64) as usize] |= 1 << (i % 64);
        }
        m
    }
    pub fn or(self, o: Mask) -> Mask {
        Mask([self.0[0] | o.0[0], self.0[1] | o.0[1], self.0[2] | o.0[2], self.0[3] | o.0[3]])
    }
    pub fn covers(self, o: Mask) -> bool {
        (0..4).all(|i| self.0[i] & o.0[i] == o.0[i])
    }
    pub fn is_empty(self) -> bool {
        self.0 == [0; 4]
    }
}

/// Adds `m` to an antichain of masks, dropping masks it covers.
fn insert(set: &mut Vec<Mask>, m: Mask) {
    if set.iter().any(|x| x.covers(m)) {
        return;
    }
    set.retain(|x| !m.covers(*x));
    set.push(m);
}

#[derive(Default)]
struct NodeState {
    direct: Mask,
    direct_presence: bool,
    /// Per array directly under this node: the masks its elements can give, and whether any
    /// element holds a value of a field that must be absent.
    groups: FxHashMap<u32, (Vec<Mask>, bool)>,
}

/// Whether alternative `branch` holds, given its hits in the scratch space.
pub(crate) fn branch_holds(s: &Scratch, branch: u32, positives: u16) -> bool {
    let full = Mask::full(positives);
    let mut covered = Mask::default();
    let mut any_presence = false;
    let mut all_outside = true;
    let mut i = s.branch_head[branch as usize];
    while i != u32::MAX {
        let h = &s.hits[i as usize];
        if h.presence {
            any_presence = true;
        } else {
            covered = covered.or(Mask::bit(h.field));
            all_outside &= h.ctx == 0;
        }
        i = h.next;
    }
    if !covered.covers(full) {
        return false;
    }
    if all_outside {
        // Chosen values lie outside every array, so every value of an absent field is seen.
        return !any_presence;
    }
    consistent(s, branch, full)
}

fn consistent(s: &Scratch, branch: u32, full: Mask) -> bool {
    let mut nodes: FxHashMap<u32, NodeState> = FxHashMap::default();
    let mut i = s.branch_head[branch as usize];
    while i != u32::MAX {
        let h = &s.hits[i as usize];
        // Make sure the hit's context and all its ancestors have a state.
        let mut c = h.ctx;
        loop {
            let fresh = !nodes.contains_key(&c);
            nodes.entry(c).or_default();
            if !fresh || c == 0 {
                break;
            }
            c = s.ctxs[c as usize].parent;
        }
        let st = nodes.entry(h.ctx).or_default();
        if h.presence {
            st.direct_presence = true;
        } else {
            st.direct = st.direct.or(Mask::bit(h.field));
        }
        i = h.next;
    }
    // Children were created after their parents, so higher ids first is bottom-up.
    let mut order: Vec<u32> = nodes.keys().copied().collect();
    order.sort_unstable_by(|a, b| b.cmp(a));
    for id in order {
        let Some(st) = nodes.remove(&id) else { continue };
        let mut subtree_presence = st.direct_presence;
        let mut achievable: Vec<Mask> = Vec::new();
        if !st.direct_presence {
            achievable.push(st.direct);
            for (options, presence) in st.groups.values() {
                subtree_presence |= *presence;
                let mut opts = options.clone();
                if !presence {
                    // Leaving the array untouched is allowed only if nothing absent hides in it.
                    insert(&mut opts, Mask::default());
                }
                let mut next = Vec::new();
                for a in &achievable {
                    for o in &opts {
                        insert(&mut next, a.or(*o));
                    }
                }
                achievable = next;
                if achievable.is_empty() {
                    break;
                }
            }
        } else {
            subtree_presence = true;
        }
        if id == 0 {
            return achievable.iter().any(|m| m.covers(full));
        }
        let ctx = s.ctxs[id as usize];
        let parent = nodes.entry(ctx.parent).or_default();
        let group = parent.groups.entry(ctx.array).or_default();
        group.1 |= subtree_presence;
        for m in achievable {
            // An element chosen for no field leaves the array untouched; that case is above.
            if !m.is_empty() {
                insert(&mut group.0, m);
            }
        }
    }
    false
}
