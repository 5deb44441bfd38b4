//! Deciding alternatives with several fields once the scan has fired them. Fields must agree
//! on array elements (event-ruler's array consistency): values taken from different elements
//! of one array do not combine, and a field that must be absent is only looked for where the
//! chosen values lie.
//!
//! Contexts form a tree: one node per container element of an array, under the context the
//! array lies in. A choice of hits is consistent when, for every array, all chosen hits inside
//! it lie in one element. Top-down then bottom-up over the contexts of the hits, each node gets
//! the fields it covers when chosen: linear in the hits, never a search over their combinations.

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
    pub fn minus(self, o: Mask) -> Mask {
        Mask([self.0[0] & !o.0[0], self.0[1] & !o.0[1], self.0[2] & !o.0[2], self.0[3] & !o.0[3]])
    }
    pub fn is_empty(self) -> bool {
        self.0 == [0; 4]
    }
}

#[derive(Default)]
struct NodeState {
    parent: u32,
    direct: Mask,
    direct_presence: bool,
    /// Fields hit directly here or at an ancestor: covered whenever this node is chosen.
    free: Mask,
    /// Per array directly under this node, its elements (context ids).
    groups: FxHashMap<u32, Vec<u32>>,
    /// Fields hit anywhere in the subtree, and whether a field that must be absent is.
    seen: Mask,
    presence: bool,
    /// Fields this node covers when chosen; `None` when choosing it exposes an absent field.
    cover: Option<Mask>,
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

/// The consistency pass. A field's key path passes through exactly one of the arrays directly
/// under a node, so sibling arrays hold disjoint fields, and the fields an array holds can be
/// covered nowhere else once the node is chosen (except those already hit at the node or
/// above). Each array therefore either supplies all its fields through one element or fails
/// to, and one mask per node suffices: linear in the hits.
fn consistent(s: &Scratch, branch: u32, full: Mask) -> bool {
    let mut nodes: FxHashMap<u32, NodeState> = FxHashMap::default();
    let mut i = s.branch_head[branch as usize];
    while i != u32::MAX {
        let h = &s.hits[i as usize];
        let mut c = h.ctx;
        loop {
            let fresh = !nodes.contains_key(&c);
            nodes.entry(c).or_default().parent = s.ctxs[c as usize].parent;
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
    // Parents were created before their children: ascending ids is top-down.
    let mut order: Vec<u32> = nodes.keys().copied().collect();
    order.sort_unstable();
    for &id in &order {
        if id == 0 {
            let st = nodes.get_mut(&0).expect("root");
            st.free = st.direct;
            continue;
        }
        let parent = nodes[&id].parent;
        let parent_free = nodes[&parent].free;
        let array = s.ctxs[id as usize].array;
        nodes.get_mut(&parent).expect("parent").groups.entry(array).or_default().push(id);
        let st = nodes.get_mut(&id).expect("node");
        st.free = parent_free.or(st.direct);
    }
    for &id in order.iter().rev() {
        let st = &nodes[&id];
        let (free, mut seen, mut presence) = (st.free, st.direct, st.direct_presence);
        let mut cover = if st.direct_presence { None } else { Some(st.direct) };
        for elements in st.groups.values() {
            let (mut g_seen, mut g_presence) = (Mask::default(), false);
            for e in elements {
                g_seen = g_seen.or(nodes[e].seen);
                g_presence |= nodes[e].presence;
            }
            seen = seen.or(g_seen);
            presence |= g_presence;
            let need = g_seen.minus(free);
            // Choosing an element with a value touches the array, hiding its other elements.
            let supplied =
                elements.iter().any(|e| matches!(nodes[e].cover, Some(m) if !m.is_empty() && m.covers(need)));
            cover = match cover {
                None => None,
                Some(_) if need.is_empty() && g_presence && !supplied => None,
                Some(m) if supplied => Some(m.or(need)),
                // The array cannot supply its fields: this node stays short of them.
                Some(m) => Some(m),
            };
        }
        let st = nodes.get_mut(&id).expect("node");
        (st.seen, st.presence, st.cover) = (seen, presence, cover);
    }
    matches!(nodes[&0].cover, Some(m) if m.covers(full))
}
