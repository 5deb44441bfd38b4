//! The agents as the operations commands see them: their folders (names, rules, tools) and
//! their store in the data directory (what each handled, what the ledger holds, the cases).

use std::path::Path;

use anyhow::{Context, bail};
use choreo_consumers::manifest::{self, Agent};
use choreo_consumers::store::{EffectState, STORE_FILE, Store};
use choreo_consumers::tools::Registry;
use choreo_replay::{LedgerView, RecordedEffect};
use chrono::{DateTime, Utc};

pub struct Agents {
    agents: Vec<Agent>,
    store: Option<Store>,
    tools: Registry,
}

impl Agents {
    pub fn load(agents_dir: Option<&Path>, data_dir: &Path) -> anyhow::Result<Self> {
        let dir = agents_dir.map(Path::to_path_buf).unwrap_or_else(choreo_consumers::local::default_agents_dir);
        let agents =
            manifest::discover(&dir).with_context(|| format!("cannot read the agent folders in {}", dir.display()))?;
        let store = if data_dir.join(STORE_FILE).exists() {
            Some(
                Store::open(data_dir)
                    .with_context(|| format!("cannot open the agents' store in {}", data_dir.display()))?,
            )
        } else {
            None
        };
        Ok(Self { agents, store, tools: Registry::standard() })
    }

    pub fn names(&self) -> Vec<&str> {
        self.agents.iter().map(Agent::name).collect()
    }

    /// The agent called `name`, or an error naming the agents there are.
    pub fn get(&self, name: &str) -> anyhow::Result<&Agent> {
        self.agents
            .iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| anyhow::anyhow!("unknown agent `{name}` (agents: {})", self.names().join(", ")))
    }

    /// When case `case` began: its first recorded event.
    pub fn case_start(&self, case: &str) -> anyhow::Result<DateTime<Utc>> {
        let Some(store) = &self.store else {
            bail!("unknown case `{case}`: this data directory has no agents' store ({STORE_FILE})")
        };
        let events = store.case_events(case).with_context(|| format!("cannot read case `{case}`"))?;
        if events.is_empty() {
            bail!("unknown case `{case}`: no agent recorded an event of it in {}", store.path().display());
        }
        events
            .iter()
            .filter_map(|e| e.time.as_deref())
            .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.to_utc())
            .min()
            .with_context(|| format!("case `{case}`: its events carry no time"))
    }
}

impl LedgerView for Agents {
    fn agent_of_inbox(&self, inbox: &str) -> Option<String> {
        self.agents.iter().find(|a| a.inbox() == inbox).map(|a| a.name().to_owned())
    }

    fn handled(&self, agent: &str, event_id: &str) -> Result<Option<String>, String> {
        match &self.store {
            Some(store) => store.handled(agent, event_id).map_err(|e| e.to_string()),
            None => Ok(None),
        }
    }

    fn effects(&self, agent: &str, event_id: &str) -> Result<Vec<RecordedEffect>, String> {
        let Some(store) = &self.store else { return Ok(Vec::new()) };
        let records = store.event_effects(agent, event_id).map_err(|e| e.to_string())?;
        Ok(records
            .into_iter()
            .map(|r| RecordedEffect {
                tool: r.tool,
                args: r.args,
                done: r.state == EffectState::Done,
                result: r.result,
            })
            .collect())
    }

    fn effect_tools(&self, agent: &str) -> Vec<String> {
        let Some(agent) = self.agents.iter().find(|a| a.name() == agent) else { return Vec::new() };
        agent.manifest.tools.iter().filter(|t| self.tools.get(t).is_some_and(|d| d.effect)).cloned().collect()
    }
}
