//! Loops between agents: every elementary cycle of the who-triggers-whom graph, each once,
//! starting at its smallest agent, in a deterministic order.

/// An edge: `from` publishes `event`, whose rule delivers it to `to`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Edge {
    pub from: usize,
    pub event: String,
    pub to: usize,
}

/// The most cycles reported; past it a choreography has bigger problems than the list.
pub(crate) const MAX_CYCLES: usize = 64;
/// Edges followed at most: paths between agents can be exponentially many.
const MAX_STEPS: usize = 200_000;

/// Every elementary cycle (no node twice) among `nodes` nodes, as the indices of its edges into
/// `edges`, each starting at its smallest node. Two events between the same agents make two
/// cycles: each is a way round.
pub(crate) fn cycles(nodes: usize, edges: &[Edge]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..edges.len()).collect();
    order.sort_by(|&a, &b| edges[a].cmp(&edges[b]));
    let mut found = Vec::new();
    let mut steps = 0;
    for start in 0..nodes {
        let mut walk = Walk { start, edges, order: &order, path: Vec::new(), on_path: vec![false; nodes] };
        walk.from(start, &mut found, &mut steps);
        if found.len() >= MAX_CYCLES || steps >= MAX_STEPS {
            found.truncate(MAX_CYCLES);
            break;
        }
    }
    found
}

struct Walk<'a> {
    start: usize,
    edges: &'a [Edge],
    order: &'a [usize],
    path: Vec<usize>,
    on_path: Vec<bool>,
}

impl Walk<'_> {
    /// Depth first from `at`, only through nodes above `start` (a cycle through a smaller node
    /// was found from that node already).
    fn from(&mut self, at: usize, found: &mut Vec<Vec<usize>>, steps: &mut usize) {
        self.on_path[at] = true;
        for &e in self.order.iter().filter(|&&e| self.edges[e].from == at) {
            *steps += 1;
            if found.len() >= MAX_CYCLES || *steps >= MAX_STEPS {
                break;
            }
            let to = self.edges[e].to;
            if to == self.start {
                let mut cycle = self.path.clone();
                cycle.push(e);
                found.push(cycle);
            } else if to > self.start && !self.on_path[to] {
                self.path.push(e);
                self.from(to, found, steps);
                self.path.pop();
            }
        }
        self.on_path[at] = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(from: usize, event: &str, to: usize) -> Edge {
        Edge { from, event: event.to_owned(), to }
    }

    fn render(edges: &[Edge], cycles: &[Vec<usize>]) -> Vec<String> {
        cycles
            .iter()
            .map(|c| {
                let mut s = edges[c[0]].from.to_string();
                for &e in c {
                    s.push_str(&format!(" -{}-> {}", edges[e].event, edges[e].to));
                }
                s
            })
            .collect()
    }

    #[test]
    fn finds_each_loop_once_from_its_smallest_node() {
        let edges =
            vec![edge(2, "C", 0), edge(0, "A", 1), edge(1, "B", 2), edge(1, "D", 0), edge(3, "E", 3), edge(0, "F", 4)];
        let found = render(&edges, &cycles(5, &edges));
        assert_eq!(found, ["0 -A-> 1 -B-> 2 -C-> 0", "0 -A-> 1 -D-> 0", "3 -E-> 3"]);
    }

    #[test]
    fn two_events_between_the_same_agents_are_two_ways_round() {
        let edges = vec![edge(0, "A", 1), edge(0, "B", 1), edge(1, "C", 0)];
        assert_eq!(render(&edges, &cycles(2, &edges)), ["0 -A-> 1 -C-> 0", "0 -B-> 1 -C-> 0"]);
    }

    #[test]
    fn a_chain_has_no_cycle_and_a_dense_graph_is_capped() {
        let chain = vec![edge(0, "A", 1), edge(1, "B", 2)];
        assert!(cycles(3, &chain).is_empty());
        let n = 8;
        let dense: Vec<Edge> =
            (0..n).flat_map(|a| (0..n).filter(move |&b| b != a).map(move |b| edge(a, "E", b))).collect();
        assert_eq!(cycles(n, &dense).len(), MAX_CYCLES);
    }
}
