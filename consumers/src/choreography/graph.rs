//! The who-triggers-whom graph: producers, agents and other subscribers, an edge per event a
//! rule can receive, printed as text, a Mermaid flowchart or a Graphviz digraph. Producers come
//! first, then agents in the order the flow reaches them, then the other subscribers.

use std::collections::VecDeque;
use std::fmt::Write;

/// The choreography's graph, as [`super::check`] found it.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    nodes: Vec<Node>,
    emits: Vec<Emits>,
    pub(crate) loops: Vec<Loop>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Producer,
    Agent,
    Subscriber,
}

#[derive(Debug, Clone)]
struct Node {
    kind: NodeKind,
    name: String,
}

/// `from` publishes `event`, which the rules of `to` receive (nobody when empty).
#[derive(Debug, Clone)]
struct Emits {
    from: usize,
    event: String,
    to: Vec<usize>,
}

/// A loop between agents, and what bounds it, if anything.
#[derive(Debug, Clone)]
pub(crate) struct Loop {
    pub path: String,
    pub bounded_by: Option<String>,
}

impl Graph {
    pub(crate) fn node(&mut self, kind: NodeKind, name: &str) -> usize {
        if let Some(i) = self.nodes.iter().position(|n| n.kind == kind && n.name == name) {
            return i;
        }
        self.nodes.push(Node { kind, name: name.to_owned() });
        self.nodes.len() - 1
    }

    pub(crate) fn emits(&mut self, from: usize, event: &str, mut to: Vec<usize>) {
        to.sort_by(|a, b| self.nodes[*a].name.cmp(&self.nodes[*b].name));
        to.dedup();
        match self.emits.iter_mut().find(|e| e.from == from && e.event == event) {
            Some(existing) => {
                existing.to.extend(to);
                let nodes = &self.nodes;
                existing.to.sort_by(|a, b| nodes[*a].name.cmp(&nodes[*b].name));
                existing.to.dedup();
            }
            None => self.emits.push(Emits { from, event: event.to_owned(), to }),
        }
    }

    /// Every edge as `(from, event, to)` names, in the order printed; `to` is empty for an
    /// event nobody receives.
    pub fn edges(&self) -> Vec<(String, String, Vec<String>)> {
        self.ordered_emits()
            .into_iter()
            .map(|e| {
                let to = e.to.iter().map(|&t| self.nodes[t].name.clone()).collect();
                (self.nodes[e.from].name.clone(), e.event.clone(), to)
            })
            .collect()
    }

    /// Node indices, producers first, then agents breadth first from what producers trigger,
    /// then the agents nothing reaches (by name), then the other subscribers.
    fn order(&self) -> Vec<usize> {
        let of = |kind| (0..self.nodes.len()).filter(move |&i| self.nodes[i].kind == kind);
        let mut order: Vec<usize> = of(NodeKind::Producer).collect();
        let mut queue: VecDeque<usize> = order.iter().copied().collect();
        while let Some(n) = queue.pop_front() {
            for e in self.emits.iter().filter(|e| e.from == n) {
                for &t in &e.to {
                    if self.nodes[t].kind == NodeKind::Agent && !order.contains(&t) {
                        order.push(t);
                        queue.push_back(t);
                    }
                }
            }
        }
        let mut rest: Vec<usize> = of(NodeKind::Agent).filter(|a| !order.contains(a)).collect();
        rest.sort_by(|a, b| self.nodes[*a].name.cmp(&self.nodes[*b].name));
        order.extend(rest);
        order.extend(of(NodeKind::Subscriber));
        order
    }

    fn ordered_emits(&self) -> Vec<&Emits> {
        self.order().into_iter().flat_map(|n| self.emits.iter().filter(move |e| e.from == n)).collect()
    }

    /// One line per event a producer or an agent publishes, then one per loop.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for e in self.ordered_emits() {
            let from = &self.nodes[e.from];
            let to: Vec<&str> = e.to.iter().map(|&t| self.nodes[t].name.as_str()).collect();
            let to = if to.is_empty() { "nobody".to_owned() } else { to.join(", ") };
            let _ = match from.kind {
                NodeKind::Producer => writeln!(out, "{} ({}) → {to}", e.event, from.name),
                _ => writeln!(out, "{} —{}→ {to}", from.name, e.event),
            };
        }
        for l in &self.loops {
            let _ = match &l.bounded_by {
                Some(bound) => writeln!(out, "loop: {} (bounded: {bound})", l.path),
                None => writeln!(out, "loop: {} (unbounded: only the case's hop budget stops it)", l.path),
            };
        }
        out
    }

    /// A Mermaid `flowchart LR`: producers as boxes, agents as stadiums, other subscribers as
    /// subroutines; an event nobody receives goes to a `nobody` circle, dashed.
    pub fn mermaid(&self) -> String {
        let ids = self.ids();
        let mut out = String::from("flowchart LR\n");
        for n in self.order() {
            let name = self.nodes[n].name.replace('"', "#quot;");
            let _ = match self.nodes[n].kind {
                NodeKind::Producer => writeln!(out, "    {}[\"{name}\"]", ids[n]),
                NodeKind::Agent => writeln!(out, "    {}([\"{name}\"])", ids[n]),
                NodeKind::Subscriber => writeln!(out, "    {}[[\"{name}\"]]", ids[n]),
            };
        }
        if self.emits.iter().any(|e| e.to.is_empty()) {
            out.push_str("    nobody((\"nobody\"))\n");
        }
        for e in self.ordered_emits() {
            let event = e.event.replace('"', "#quot;");
            if e.to.is_empty() {
                let _ = writeln!(out, "    {} -.->|\"{event}\"| nobody", ids[e.from]);
            }
            for &t in &e.to {
                let _ = writeln!(out, "    {} -->|\"{event}\"| {}", ids[e.from], ids[t]);
            }
        }
        out
    }

    /// A Graphviz `digraph`, laid out left to right, shaped as in [`Graph::mermaid`].
    pub fn dot(&self) -> String {
        let ids = self.ids();
        let mut out = String::from("digraph choreography {\n    rankdir=LR;\n");
        for n in self.order() {
            let shape = match self.nodes[n].kind {
                NodeKind::Producer => "box",
                NodeKind::Agent => "ellipse",
                NodeKind::Subscriber => "component",
            };
            let _ = writeln!(out, "    {} [label={}, shape={shape}];", quoted(&ids[n]), quoted(&self.nodes[n].name));
        }
        if self.emits.iter().any(|e| e.to.is_empty()) {
            out.push_str("    \"nobody\" [label=\"nobody\", shape=circle, style=dashed];\n");
        }
        for e in self.ordered_emits() {
            let (from, label) = (quoted(&ids[e.from]), quoted(&e.event));
            if e.to.is_empty() {
                let _ = writeln!(out, "    {from} -> \"nobody\" [label={label}, style=dashed];");
            }
            for &t in &e.to {
                let _ = writeln!(out, "    {from} -> {} [label={label}];", quoted(&ids[t]));
            }
        }
        out.push_str("}\n");
        out
    }

    /// Identifiers: the kind and the name in letters, digits and `_`, unique.
    fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for node in &self.nodes {
            let kind = match node.kind {
                NodeKind::Producer => "producer",
                NodeKind::Agent => "agent",
                NodeKind::Subscriber => "subscriber",
            };
            let name: String = node.name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
            let mut id = format!("{kind}_{name}");
            if ids.contains(&id) || id == "nobody" {
                id = format!("{id}_{}", ids.len());
            }
            ids.push(id);
        }
        ids
    }
}

fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// support-api → support → payments → support, and an event nobody receives.
    fn sample() -> Graph {
        let mut g = Graph::default();
        let api = g.node(NodeKind::Producer, "retail.support-api");
        let office = g.node(NodeKind::Producer, "retail.backoffice");
        let payments = g.node(NodeKind::Agent, "payments");
        let support = g.node(NodeKind::Agent, "support");
        let lonely = g.node(NodeKind::Agent, "archivist");
        let notifier = g.node(NodeKind::Subscriber, "notifier");
        g.emits(api, "OrderSupportPlaced", vec![support]);
        g.emits(office, "OrderShipped", vec![]);
        g.emits(payments, "PaymentIssueResolved", vec![support, notifier]);
        g.emits(support, "SupportTriaged", vec![payments, notifier]);
        g.emits(lonely, "Archived", vec![]);
        g.loops
            .push(Loop { path: "payments —A→ support —B→ payments".into(), bounded_by: Some("once".into()) });
        g
    }

    #[test]
    fn text_lists_producers_then_agents_in_flow_order() {
        assert_eq!(
            sample().text(),
            "OrderSupportPlaced (retail.support-api) → support\n\
             OrderShipped (retail.backoffice) → nobody\n\
             support —SupportTriaged→ notifier, payments\n\
             payments —PaymentIssueResolved→ notifier, support\n\
             archivist —Archived→ nobody\n\
             loop: payments —A→ support —B→ payments (bounded: once)\n"
        );
    }

    #[test]
    fn mermaid_is_a_flowchart_with_declared_nodes_and_labelled_edges() {
        let text = sample().mermaid();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "flowchart LR");
        assert!(lines.contains(&"    producer_retail_support_api[\"retail.support-api\"]"), "{text}");
        assert!(lines.contains(&"    agent_support([\"support\"])"), "{text}");
        assert!(lines.contains(&"    subscriber_notifier[[\"notifier\"]]"), "{text}");
        assert!(lines.contains(&"    agent_support -->|\"SupportTriaged\"| agent_payments"), "{text}");
        assert!(lines.contains(&"    producer_retail_backoffice -.->|\"OrderShipped\"| nobody"), "{text}");
        assert_eq!(lines.iter().filter(|l| l.contains("-->") || l.contains("-.->")).count(), 7, "{text}");
    }

    #[test]
    fn dot_is_a_digraph_whose_edges_name_declared_nodes() {
        let text = sample().dot();
        assert!(text.starts_with("digraph choreography {\n    rankdir=LR;\n") && text.ends_with("}\n"), "{text}");
        let declared: Vec<&str> =
            text.lines().filter(|l| l.contains("shape=")).map(|l| l.trim().split(' ').next().unwrap()).collect();
        for edge in text.lines().filter(|l| l.contains(" -> ")) {
            let (from, rest) = edge.trim().split_once(" -> ").unwrap();
            let to = rest.split(' ').next().unwrap();
            assert!(declared.contains(&from) && declared.contains(&to), "{edge} in {text}");
        }
        assert!(text.contains("\"agent_support\" -> \"agent_payments\" [label=\"SupportTriaged\"];"), "{text}");
    }

    #[test]
    fn identifiers_stay_unique_and_quotes_are_escaped() {
        let mut g = Graph::default();
        g.node(NodeKind::Producer, "a.b");
        g.node(NodeKind::Producer, "a-b");
        assert_eq!(g.ids(), ["producer_a_b", "producer_a_b_1"]);
        assert_eq!(quoted("say \"hi\""), "\"say \\\"hi\\\"\"");
    }
}
