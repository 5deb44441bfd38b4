//! The offline model, the embedded default: deterministic, no network, scripted per agent by
//! `offline.toml` in the agent's folder. It reads the conversation as a real model would (the
//! event in the first message, the tool results since) and answers with Converse blocks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use minijinja::{Environment, UndefinedBehavior, Value as Mj};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{
    ContentBlock, Message, Model, ModelError, ModelRequest, ModelResponse, Role, StopReason, ToolResultStatus, ToolUse,
    Usage,
};

/// The name of the script file in an agent's folder.
pub const SCRIPT_FILE: &str = "offline.toml";

/// Why a script could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum OfflineScriptError {
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: rule {index}: {message}", path.display())]
    Rule { path: PathBuf, index: usize, message: String },
}

/// One answer of the script, chosen when its `when` expression holds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    /// A name for messages; defaults to the rule's position.
    name: Option<String>,
    /// A minijinja expression over the conversation; the rule applies when it is true.
    when: Option<String>,
    /// Call `tool` once per item of this expression's value (`item` and `index` in `input`).
    for_each: Option<String>,
    /// The tool to call (runtime name, e.g. `payments.refund_charge`).
    tool: Option<String>,
    /// A minijinja template that renders the tool input as JSON.
    input: Option<String>,
    /// End the turn with this text (a minijinja template) instead of calling a tool.
    text: Option<String>,
}

/// A name for a value computed from the conversation, visible to later `let`s and rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Let {
    name: String,
    /// A minijinja expression.
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptFile {
    #[serde(rename = "let", default)]
    lets: Vec<Let>,
    #[serde(rename = "rule", default)]
    rules: Vec<Rule>,
}

#[derive(Debug)]
struct Script {
    path: PathBuf,
    lets: Vec<Let>,
    rules: Vec<Rule>,
}

/// The offline model: one script per agent.
pub struct OfflineModel {
    scripts: HashMap<String, Script>,
    env: Environment<'static>,
}

impl Default for OfflineModel {
    fn default() -> Self {
        Self::new()
    }
}

impl OfflineModel {
    pub fn new() -> Self {
        let mut env = Environment::new();
        // `results["x"].charges` on a tool not yet called is undefined, not an error: scripts
        // test for it with `is undefined`.
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        Self { scripts: HashMap::new(), env }
    }

    /// Loads `path` as the script of `agent`, checking every expression and template compiles.
    pub fn load_script(&mut self, agent: &str, path: &Path) -> Result<(), OfflineScriptError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| OfflineScriptError::Read { path: path.to_owned(), source })?;
        let file: ScriptFile = toml::from_str(&text)
            .map_err(|e| OfflineScriptError::Parse { path: path.to_owned(), message: e.to_string() })?;
        if file.rules.is_empty() {
            return Err(OfflineScriptError::Parse { path: path.to_owned(), message: "no [[rule]]".into() });
        }
        for binding in &file.lets {
            self.env.compile_expression(&binding.value).map_err(|e| OfflineScriptError::Parse {
                path: path.to_owned(),
                message: format!("let `{}`: {e}", binding.name),
            })?;
        }
        for (index, rule) in file.rules.iter().enumerate() {
            self.check_rule(rule).map_err(|message| OfflineScriptError::Rule {
                path: path.to_owned(),
                index: index + 1,
                message,
            })?;
        }
        // Compiled once, here: every later call only renders.
        let expressions = file
            .lets
            .iter()
            .map(|l| &l.value)
            .chain(file.rules.iter().flat_map(|r| [&r.when, &r.for_each].into_iter().flatten()));
        for expr in expressions {
            let name = format!("expr:{expr}");
            if self.env.get_template(&name).is_err() {
                // An expression as a template that sets `value`, so it is compiled once and
                // evaluated to a value (minijinja's compiled expressions borrow the environment).
                self.env.add_template_owned(name, format!("{{% set value = ({expr}) %}}")).map_err(|e| {
                    OfflineScriptError::Parse { path: path.to_owned(), message: format!("expression `{expr}`: {e}") }
                })?;
            }
        }
        for template in file.rules.iter().flat_map(|r| [&r.input, &r.text].into_iter().flatten()) {
            let name = format!("tpl:{template}");
            if self.env.get_template(&name).is_err() {
                self.env.add_template_owned(name, template.clone()).map_err(|e| OfflineScriptError::Parse {
                    path: path.to_owned(),
                    message: format!("template: {e}"),
                })?;
            }
        }
        self.scripts.insert(agent.to_owned(), Script { path: path.to_owned(), lets: file.lets, rules: file.rules });
        Ok(())
    }

    /// The tools a script may call, for `choreo validate` to check against the manifest.
    pub fn script_tools(&self, agent: &str) -> Vec<String> {
        self.scripts.get(agent).map(|s| s.rules.iter().filter_map(|r| r.tool.clone()).collect()).unwrap_or_default()
    }

    fn check_rule(&self, rule: &Rule) -> Result<(), String> {
        match (&rule.tool, &rule.input, &rule.text) {
            (Some(_), Some(_), None) | (None, None, Some(_)) => {}
            (Some(_), None, _) => return Err("`tool` needs an `input` template".into()),
            (None, Some(_), _) => return Err("`input` without a `tool`".into()),
            (Some(_), _, Some(_)) => return Err("a rule either calls a `tool` or ends with `text`, not both".into()),
            (None, None, None) => return Err("a rule needs a `tool` or a `text`".into()),
        }
        if rule.for_each.is_some() && rule.tool.is_none() {
            return Err("`for_each` needs a `tool`".into());
        }
        for expr in [&rule.when, &rule.for_each].into_iter().flatten() {
            self.env.compile_expression(expr).map_err(|e| format!("expression `{expr}`: {e}"))?;
        }
        for template in [&rule.input, &rule.text].into_iter().flatten() {
            self.env.template_from_str(template).map_err(|e| format!("template: {e}"))?;
        }
        Ok(())
    }

    fn answer(&self, request: &ModelRequest) -> Result<Message, ModelError> {
        let script = self.scripts.get(&request.agent).ok_or_else(|| ModelError::Config {
            model: "offline".into(),
            message: format!("agent `{}` has no {SCRIPT_FILE}", request.agent),
        })?;
        let turn = request.messages.iter().filter(|m| m.role == Role::Assistant).count() + 1;
        let mut ctx = Conversation::read(&request.messages).into_context(turn);
        for binding in &script.lets {
            let value = self.eval(&binding.value, &ctx).map_err(|message| ModelError::Config {
                model: "offline".into(),
                message: format!("{}: let `{}`: {message}", script.path.display(), binding.name),
            })?;
            ctx = minijinja::context! { ..minijinja::Value::from_iter([(binding.name.as_str(), value)]), ..ctx };
        }
        for (index, rule) in script.rules.iter().enumerate() {
            let fail = |message: String| ModelError::Config {
                model: "offline".into(),
                message: format!(
                    "{}: rule {}: {message}",
                    script.path.display(),
                    rule.name.clone().unwrap_or_else(|| (index + 1).to_string())
                ),
            };
            if let Some(when) = &rule.when {
                let holds = self.eval(when, &ctx).map_err(&fail)?;
                if !holds.is_true() {
                    continue;
                }
            }
            if let Some(text) = &rule.text {
                let text = self.render(text, &ctx).map_err(&fail)?;
                return Ok(Message {
                    role: Role::Assistant,
                    content: vec![ContentBlock::Text(text.trim().to_owned())],
                });
            }
            let (Some(tool), Some(input)) = (&rule.tool, &rule.input) else { continue };
            let items: Vec<Mj> = match &rule.for_each {
                None => vec![Mj::UNDEFINED],
                Some(expr) => {
                    let value = self.eval(expr, &ctx).map_err(&fail)?;
                    let iter = value.try_iter().map_err(|e| fail(format!("for_each: {e}")))?;
                    iter.collect()
                }
            };
            if items.is_empty() {
                continue;
            }
            let mut content = Vec::with_capacity(items.len());
            for (n, item) in items.into_iter().enumerate() {
                let ctx = minijinja::context! { index => n, item => item, ..ctx.clone() };
                let rendered = self.render(input, &ctx).map_err(&fail)?;
                let input: Value = serde_json::from_str(&rendered)
                    .map_err(|e| fail(format!("input is not JSON ({e}): {rendered}")))?;
                content.push(ContentBlock::ToolUse(ToolUse {
                    tool_use_id: format!("tooluse_{turn}_{}", n + 1),
                    name: tool.clone(),
                    input,
                }));
            }
            return Ok(Message { role: Role::Assistant, content });
        }
        Err(ModelError::Config {
            model: "offline".into(),
            message: format!("{}: no rule applies at turn {turn}", script.path.display()),
        })
    }

    fn eval(&self, expr: &str, ctx: &Mj) -> Result<Mj, String> {
        let fail = |e: minijinja::Error| format!("expression `{expr}`: {e}");
        let template = self.env.get_template(&format!("expr:{expr}")).map_err(fail)?;
        let captured = template.render_captured(ctx).map_err(fail)?;
        Ok(captured.state().lookup("value").unwrap_or(Mj::UNDEFINED))
    }

    fn render(&self, source: &str, ctx: &Mj) -> Result<String, String> {
        let template = self.env.get_template(&format!("tpl:{source}")).map_err(|e| e.to_string())?;
        template.render(ctx).map_err(|e| e.to_string())
    }
}

#[async_trait]
impl Model for OfflineModel {
    fn name(&self) -> String {
        "offline".into()
    }

    async fn converse(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError> {
        let message = self.answer(request)?;
        let stop_reason = if message.tool_uses().next().is_some() { StopReason::ToolUse } else { StopReason::EndTurn };
        // Tokens as a real model would roughly count them (4 characters each), so budgets
        // behave offline as they do online.
        let prompt = request.system.len() + serde_json::to_string(&request.messages).map_or(0, |s| s.len());
        let answer = serde_json::to_string(&message).map_or(0, |s| s.len());
        let usage = Usage { input_tokens: prompt.div_ceil(4) as u64, output_tokens: answer.div_ceil(4) as u64 };
        Ok(ModelResponse { message, stop_reason, usage })
    }
}

/// What the script sees of the conversation.
#[derive(Default)]
struct Conversation {
    event: Value,
    results: Map<String, Value>,
    all_results: Map<String, Value>,
    errors: Map<String, Value>,
    calls: Map<String, Value>,
    last_user_text: String,
}

impl Conversation {
    fn read(messages: &[Message]) -> Self {
        let mut conv = Conversation { event: Value::Null, ..Default::default() };
        let mut names: HashMap<&str, &str> = HashMap::new();
        for (i, message) in messages.iter().enumerate() {
            for block in &message.content {
                match block {
                    ContentBlock::Text(text) if message.role == Role::User => {
                        if i == 0 {
                            conv.event = first_json_block(text).unwrap_or(Value::Null);
                        }
                        conv.last_user_text = text.clone();
                    }
                    ContentBlock::ToolUse(u) => {
                        names.insert(&u.tool_use_id, &u.name);
                        let n = conv.calls.get(&u.name).and_then(Value::as_u64).unwrap_or(0);
                        conv.calls.insert(u.name.clone(), (n + 1).into());
                    }
                    ContentBlock::ToolResult(r) => {
                        let name = names.get(r.tool_use_id.as_str()).copied().unwrap_or("unknown").to_owned();
                        match r.status {
                            ToolResultStatus::Success => {
                                let all = conv.all_results.entry(name.clone()).or_insert_with(|| Value::Array(vec![]));
                                if let Value::Array(list) = all {
                                    list.push(r.content.clone());
                                }
                                conv.results.insert(name, r.content.clone());
                            }
                            ToolResultStatus::Error => {
                                conv.errors.insert(name, r.content.clone());
                            }
                        }
                    }
                    ContentBlock::Text(_) => {}
                }
            }
        }
        conv
    }

    fn into_context(self, turn: usize) -> Mj {
        minijinja::context! {
            turn => turn,
            event => Mj::from_serialize(&self.event),
            results => Mj::from_serialize(&self.results),
            all_results => Mj::from_serialize(&self.all_results),
            errors => Mj::from_serialize(&self.errors),
            calls => Mj::from_serialize(&self.calls),
            last_user_text => self.last_user_text,
        }
    }
}

/// The first fenced ```json block of a text, parsed.
fn first_json_block(text: &str) -> Option<Value> {
    let start = text.find("```json")? + "```json".len();
    let rest = &text[start..];
    let end = rest.find("```")?;
    serde_json::from_str(rest[..end].trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ToolResult;

    fn script(text: &str) -> (tempfile::TempDir, OfflineModel) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SCRIPT_FILE);
        std::fs::write(&path, text).unwrap();
        let mut model = OfflineModel::new();
        model.load_script("payments", &path).unwrap();
        (dir, model)
    }

    fn request(messages: Vec<Message>) -> ModelRequest {
        ModelRequest { agent: "payments".into(), system: "s".into(), messages, tools: vec![], max_tokens: 1000 }
    }

    const SCRIPT: &str = r#"
[[rule]]
when = 'results["payments.list_charges"] is undefined'
tool = "payments.list_charges"
input = '{"order_id": {{ event.data.order_id | tojson }}}'

[[rule]]
when = 'results["payments.refund_charge"] is undefined'
for_each = 'results["payments.list_charges"].charges | selectattr("duplicate_of")'
tool = "payments.refund_charge"
input = '{"charge_id": {{ item.charge_id | tojson }}}'

[[rule]]
text = "refunded {{ all_results['payments.refund_charge'] | length }}"
"#;

    #[tokio::test]
    async fn follows_the_conversation_turn_by_turn() {
        let (_dir, model) = script(SCRIPT);
        let first = Message::user_text("Event:\n```json\n{\"data\": {\"order_id\": \"o-1001\"}}\n```");
        let r1 = model.converse(&request(vec![first.clone()])).await.unwrap();
        assert_eq!(r1.stop_reason, StopReason::ToolUse);
        let call = r1.message.tool_uses().next().unwrap().clone();
        assert_eq!(call.name, "payments.list_charges");
        assert_eq!(call.input, serde_json::json!({"order_id": "o-1001"}));
        assert!(r1.usage.input_tokens > 0 && r1.usage.output_tokens > 0);

        let charges = serde_json::json!({"charges": [{"charge_id": "a"}, {"charge_id": "b", "duplicate_of": "a"}]});
        let result = |id: &str, content| Message {
            role: Role::User,
            content: vec![ContentBlock::ToolResult(ToolResult {
                tool_use_id: id.into(),
                content,
                status: ToolResultStatus::Success,
            })],
        };
        let mut messages = vec![first, r1.message, result(&call.tool_use_id, charges)];
        let r2 = model.converse(&request(messages.clone())).await.unwrap();
        let refunds: Vec<_> = r2.message.tool_uses().map(|u| u.input["charge_id"].clone()).collect();
        assert_eq!(refunds, vec![serde_json::json!("b")]);

        let id = r2.message.tool_uses().next().unwrap().tool_use_id.clone();
        messages.extend([r2.message, result(&id, serde_json::json!({"refund_id": "rf-1"}))]);
        let r3 = model.converse(&request(messages)).await.unwrap();
        assert_eq!(r3.stop_reason, StopReason::EndTurn);
        assert_eq!(r3.message.text(), "refunded 1");
    }

    #[tokio::test]
    async fn no_applicable_rule_is_a_config_error_naming_the_script() {
        let (_dir, model) = script("[[rule]]\nwhen = 'false'\ntext = 'never'\n");
        let err = model.converse(&request(vec![Message::user_text("hi")])).await.unwrap_err();
        assert!(matches!(err, ModelError::Config { .. }));
        assert!(err.to_string().contains("no rule applies at turn 1"), "{err}");
        let other = ModelRequest { agent: "orders".into(), ..request(vec![]) };
        assert!(model.converse(&other).await.unwrap_err().to_string().contains("orders"));
    }

    #[test]
    fn bad_scripts_are_refused_at_load_with_the_rule_at_fault() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SCRIPT_FILE);
        for (text, expected) in [
            ("[[rule]]\ntool = 'x.y'\n", "needs an `input`"),
            ("[[rule]]\nwhen = '(('\ntext = 'a'\n", "expression"),
            ("[[rule]]\ntext = 'a'\nbogus = 1\n", "unknown field"),
            ("", "no [[rule]]"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = OfflineModel::new().load_script("a", &path).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }
}
