//! The choreography as a whole, read from the agent manifests and the event catalog: who
//! publishes what and whose rule can match it, events nobody consumes, loops between agents,
//! completion schemas against their published versions, and the who-triggers-whom [`Graph`].

mod compat;
mod cycles;
mod domain;
mod emission;
mod graph;
mod reach;
mod schemas;

use std::path::{Path, PathBuf};

use choreo_schemas::catalog::{self, CaseEscalated, CatalogEvent};

pub use emission::Auth;
use emission::{Emission, Emitter};
pub use graph::Graph;
use graph::{Loop, NodeKind};
use reach::{Reach, Rule};
pub use schemas::check_schemas;

use crate::manifest::{Agent, MANIFEST_FILE};
use crate::validate::Problem;

/// A system outside the agent folders that publishes events (the ingest API, the back office).
#[derive(Debug, Clone)]
pub struct Producer {
    /// The CloudEvent `source`, e.g. `retail.support-api`.
    pub source: String,
    /// The catalog events it publishes.
    pub events: Vec<String>,
    /// Whom its events act for.
    pub auth: Auth,
}

/// A consumer besides the agents (the notifier): its rule's pattern and the file it is set in.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub name: String,
    pub pattern: String,
    pub file: PathBuf,
}

/// What the choreography is checked against, besides the agent folders.
#[derive(Debug, Clone, Default)]
pub struct World {
    pub producers: Vec<Producer>,
    pub subscribers: Vec<Subscriber>,
    /// The published data schemas, `<Event>.json` with the version in their `$id`
    /// (`schemas/json/`); the catalog's own schema stands in for a file that is not there.
    pub published: PathBuf,
    /// An example of each event's data, `<Event>.json` (`schemas/examples/`).
    pub examples: PathBuf,
}

impl World {
    /// The published schemas and examples of `schemas` (a folder like this source tree's
    /// `schemas/`), and no producer or subscriber yet.
    pub fn new(schemas: &Path) -> Self {
        World { published: schemas.join("json"), examples: schemas.join("examples"), ..World::default() }
    }

    /// This source tree's `schemas/` folder.
    pub fn source_tree_schemas() -> PathBuf {
        let consumers = Path::new(env!("CARGO_MANIFEST_DIR"));
        consumers.parent().unwrap_or(consumers).join("schemas")
    }
}

/// What [`check`] found, and the graph it found it on.
#[derive(Debug)]
pub struct Checked {
    pub problems: Vec<Problem>,
    pub graph: Graph,
}

/// A rule that receives events: an agent's or another subscriber's.
struct Receiver {
    name: String,
    file: PathBuf,
    rule: Option<Rule>,
    agent: bool,
}

/// Checks the subscriptions, the events nobody consumes and the loops of `agents` (every agent
/// folder, loaded) in `world`.
pub fn check(agents: &[Agent], world: &World) -> Checked {
    let mut problems = Vec::new();
    let emissions = emissions(agents, world, &mut problems);
    let mut receivers: Vec<Receiver> = agents
        .iter()
        .map(|a| Receiver {
            name: a.name().to_owned(),
            file: a.dir.join(MANIFEST_FILE),
            rule: Rule::parse(&a.pattern),
            agent: true,
        })
        .collect();
    for s in &world.subscribers {
        let rule = Rule::parse(&s.pattern);
        if rule.is_none() {
            problems.push(Problem::warning(&s.file, None, format!("the rule of `{}` is not a valid pattern", s.name)));
        }
        receivers.push(Receiver { name: s.name.clone(), file: s.file.clone(), rule, agent: false });
    }
    let reach: Vec<Vec<Reach>> = receivers
        .iter()
        .map(|r| emissions.iter().map(|e| r.rule.as_ref().map_or(Reach::Possible, |rule| rule.reach(e))).collect())
        .collect();
    for (receiver, reach) in receivers.iter().zip(&reach) {
        subscription(receiver, &emissions, reach, &mut problems);
    }
    unconsumed(agents, world, &receivers, &emissions, &reach, &mut problems);

    let (mut graph, agent_edges) = who_triggers_whom(agents, world, &receivers, &emissions, &reach);
    loops(agents, &agent_edges, &mut graph, &mut problems);
    Checked { problems, graph }
}

/// The graph of every emission and the receivers whose rule can match it; and its edges
/// between agents, for the loops.
fn who_triggers_whom(
    agents: &[Agent],
    world: &World,
    receivers: &[Receiver],
    emissions: &[Emission],
    reach: &[Vec<Reach>],
) -> (Graph, Vec<cycles::Edge>) {
    let mut graph = Graph::default();
    let producers: Vec<usize> = world.producers.iter().map(|p| graph.node(NodeKind::Producer, &p.source)).collect();
    let agent_nodes: Vec<usize> = agents.iter().map(|a| graph.node(NodeKind::Agent, a.name())).collect();
    // Receivers are the agents, in order, then the other subscribers.
    let receiver_nodes: Vec<usize> = receivers
        .iter()
        .enumerate()
        .map(|(i, r)| if r.agent { agent_nodes[i] } else { graph.node(NodeKind::Subscriber, &r.name) })
        .collect();
    let mut agent_edges = Vec::new();
    for (e, emission) in emissions.iter().enumerate() {
        let to: Vec<usize> = (0..receivers.len()).filter(|&r| reach[r][e].can_match()).collect();
        let from = match emission.emitter {
            Emitter::Producer(p) => producers[p],
            Emitter::Agent(a) => {
                let event = &emission.event;
                let edges = to.iter().filter(|&&r| receivers[r].agent);
                agent_edges.extend(edges.map(|&r| cycles::Edge { from: a, event: event.clone(), to: r }));
                agent_nodes[a]
            }
        };
        graph.emits(from, &emission.event, to.iter().map(|&r| receiver_nodes[r]).collect());
    }
    (graph, agent_edges)
}

/// Each producer's events, each agent's completions and its escalations.
fn emissions(agents: &[Agent], world: &World, problems: &mut Vec<Problem>) -> Vec<Emission> {
    let mut emissions = Vec::new();
    for (i, producer) in world.producers.iter().enumerate() {
        for event in &producer.events {
            let schema = catalog::lookup(event).map(|e| e.schema().clone());
            if schema.is_none() {
                let message = format!("`{}` publishes `{event}`, which the catalog does not have", producer.source);
                problems.push(Problem::warning(&world.published, None, message));
            }
            let auth = Some(producer.auth.clone());
            emissions.push(Emission::new(event, Emitter::Producer(i), &producer.source, auth, schema));
        }
    }
    for (i, agent) in agents.iter().enumerate() {
        let mut events = agent.manifest.completes_with.clone();
        if !events.iter().any(|e| e == CaseEscalated::NAME) {
            events.push(CaseEscalated::NAME.to_owned());
        }
        for event in &events {
            emissions.push(Emission::new(event, Emitter::Agent(i), &agent.source(), None, agent.event_schema(event)));
        }
    }
    emissions.into_iter().map(|e| e.with_example(&world.examples)).collect()
}

/// A rule that can match nothing is an error (a warning for subscribers outside the agent
/// folders); an event it names that it can never receive is a warning.
fn subscription(receiver: &Receiver, emissions: &[Emission], reach: &[Reach], problems: &mut Vec<Problem>) {
    let Some(rule) = &receiver.rule else { return };
    let name = &receiver.name;
    let why_not = |event: &str| -> Option<String> {
        let of: Vec<usize> = (0..emissions.len()).filter(|&e| emissions[e].event == event).collect();
        if of.is_empty() {
            return Some(format!("nobody publishes `{event}` (no producer, and no agent completes with it)"));
        }
        let mut reasons = of.iter().filter_map(|&e| match &reach[e] {
            Reach::Never(why) => Some(why.clone()),
            _ => None,
        });
        let first = reasons.next()?;
        (reasons.count() + 1 == of.len()).then_some(first)
    };
    let field = receiver.agent.then_some("subscribe");
    if !reach.iter().any(Reach::can_match) {
        let named: Vec<String> = rule.named_events().iter().filter_map(|event| why_not(event)).collect();
        let why = if named.is_empty() { example_reason(reach) } else { named.join("; ") };
        let message = format!("the rule of `{name}` matches no event anyone publishes: {why}");
        problems.push(if receiver.agent {
            Problem::error(&receiver.file, field, message)
        } else {
            Problem::warning(&receiver.file, field, message)
        });
        return;
    }
    for why in rule.named_events().iter().filter_map(|event| why_not(event)) {
        problems.push(Problem::warning(
            &receiver.file,
            field,
            format!("the rule of `{name}` names an event it never receives: {why}"),
        ));
    }
}

/// For a rule that names no event: why it misses one, preferring a reason about a field the
/// event has over one about a field it lacks (most events lack most fields).
fn example_reason(reach: &[Reach]) -> String {
    let reasons: Vec<&String> =
        reach.iter().filter_map(|r| if let Reach::Never(why) = r { Some(why) } else { None }).collect();
    match reasons.iter().find(|why| !why.ends_with("no such field")).or(reasons.first()) {
        Some(why) => format!("no producer's event and no agent's completion can match it, e.g. {why}"),
        None => "no producer's event and no agent's completion can match it".to_owned(),
    }
}

/// An event someone publishes that no rule matches is a warning, on the publishing agent's
/// manifest (or the published schema of a producer's event, or of the escalation).
fn unconsumed(
    agents: &[Agent],
    world: &World,
    receivers: &[Receiver],
    emissions: &[Emission],
    reach: &[Vec<Reach>],
    problems: &mut Vec<Problem>,
) {
    let consumed = |e: usize| (0..receivers.len()).any(|r| reach[r][e].can_match());
    let others: Vec<String> = receivers.iter().filter(|r| !r.agent).map(|r| format!("`{}`'s", r.name)).collect();
    let nor = if others.is_empty() { String::new() } else { format!(", nor {}", others.join(" nor ")) };
    let escalations: Vec<usize> = (0..emissions.len()).filter(|&e| emissions[e].event == CaseEscalated::NAME).collect();
    if !escalations.is_empty() && !escalations.iter().any(|&e| consumed(e)) {
        let message = format!(
            "`{}`, published by every agent, is consumed by nobody: no agent's rule matches it{nor}",
            CaseEscalated::NAME
        );
        problems.push(Problem::warning(world.published.join(format!("{}.json", CaseEscalated::NAME)), None, message));
    }
    for (_, emission) in emissions.iter().enumerate().filter(|(e, _)| !escalations.contains(e) && !consumed(*e)) {
        let event = &emission.event;
        match emission.emitter {
            Emitter::Agent(a) => {
                let message = format!(
                    "`{}` publishes `{event}`, which nobody consumes: no agent's rule matches it{nor}",
                    agents[a].name()
                );
                problems.push(Problem::warning(agents[a].dir.join(MANIFEST_FILE), Some("completes_with"), message));
            }
            Emitter::Producer(_) => {
                let message = format!(
                    "`{event}`, published by `{}`, is consumed by nobody: no agent's rule matches it{nor}",
                    emission.source
                );
                problems.push(Problem::warning(world.published.join(format!("{event}.json")), None, message));
            }
        }
    }
}

/// Loops between agents: an error unless an event on the loop is `once_per_case` for the agent
/// that publishes it. Each way round needs that event published again, which happens at most
/// once per case (the effect ledger keeps it so across redeliveries and replays), so such a
/// loop runs at most once. Any other loop is stopped only by the case's hop budget.
fn loops(agents: &[Agent], edges: &[cycles::Edge], graph: &mut Graph, problems: &mut Vec<Problem>) {
    for cycle in cycles::cycles(agents.len(), edges) {
        let start = edges[cycle[0]].from;
        let mut path = agents[start].name().to_owned();
        for &e in &cycle {
            path.push_str(&format!(" —{}→ {}", edges[e].event, agents[edges[e].to].name()));
        }
        let bound = cycle.iter().map(|&e| &edges[e]).find(|e| agents[e.from].manifest.once_per_case.contains(&e.event));
        let bounded_by = bound.map(|e| format!("`{}` publishes `{}` once per case", agents[e.from].name(), e.event));
        if bounded_by.is_none() {
            let message = format!(
                "a loop that could run forever: {path}; no event on it is once_per_case, so only the case's hop budget (`budgethops`) stops it"
            );
            problems.push(Problem::error(agents[start].dir.join(MANIFEST_FILE), Some("subscribe"), message));
        }
        graph.loops.push(Loop { path, bounded_by });
    }
}

#[cfg(test)]
mod tests;
