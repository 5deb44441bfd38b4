//! Which model the agents use, as typed on the command line:
//! `offline`, `bedrock:<model-id>` or `openai:<base-url>#<model>`.

use std::fmt;
use std::str::FromStr;

/// A model choice (`--model`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    /// The offline model: deterministic, no network, scripted by each agent's `offline.toml`.
    Offline,
    /// Bedrock Converse with this model id, e.g. `anthropic.claude-3-5-haiku-20241022-v1:0`.
    Bedrock { model_id: String },
    /// An OpenAI-compatible chat endpoint, e.g. `http://localhost:11434/v1` and `llama3.1`.
    OpenAi { base_url: String, model: String },
}

/// Why a `--model` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelSpecError {
    #[error("unknown model `{0}`: expected offline, bedrock:<model-id> or openai:<base-url>#<model>")]
    Unknown(String),
    #[error("`{0}` names no model id: expected bedrock:<model-id>")]
    MissingModelId(String),
    #[error("`{0}` is not openai:<base-url>#<model>: {1}")]
    OpenAi(String, &'static str),
}

impl FromStr for ModelSpec {
    type Err = ModelSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "offline" {
            return Ok(ModelSpec::Offline);
        }
        if let Some(id) = s.strip_prefix("bedrock:") {
            if id.trim().is_empty() {
                return Err(ModelSpecError::MissingModelId(s.to_owned()));
            }
            return Ok(ModelSpec::Bedrock { model_id: id.to_owned() });
        }
        if let Some(rest) = s.strip_prefix("openai:") {
            let (url, model) = rest.rsplit_once('#').ok_or(ModelSpecError::OpenAi(s.to_owned(), "no `#<model>`"))?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ModelSpecError::OpenAi(s.to_owned(), "the base url must start with http:// or https://"));
            }
            if model.is_empty() {
                return Err(ModelSpecError::OpenAi(s.to_owned(), "the model name is empty"));
            }
            return Ok(ModelSpec::OpenAi { base_url: url.to_owned(), model: model.to_owned() });
        }
        Err(ModelSpecError::Unknown(s.to_owned()))
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSpec::Offline => f.write_str("offline"),
            ModelSpec::Bedrock { model_id } => write!(f, "bedrock:{model_id}"),
            ModelSpec::OpenAi { base_url, model } => write!(f, "openai:{base_url}#{model}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_kinds_and_prints_them_back() {
        for text in
            ["offline", "bedrock:anthropic.claude-3-5-haiku-20241022-v1:0", "openai:http://localhost:11434/v1#llama3.1"]
        {
            let spec: ModelSpec = text.parse().unwrap();
            assert_eq!(spec.to_string(), text);
        }
        assert_eq!(
            "openai:http://h/v1#m".parse::<ModelSpec>().unwrap(),
            ModelSpec::OpenAi { base_url: "http://h/v1".into(), model: "m".into() }
        );
    }

    #[test]
    fn refuses_what_it_cannot_use_and_says_why() {
        assert!(matches!("gpt".parse::<ModelSpec>(), Err(ModelSpecError::Unknown(_))));
        assert!(matches!("bedrock:".parse::<ModelSpec>(), Err(ModelSpecError::MissingModelId(_))));
        let err = "openai:localhost:11434#m".parse::<ModelSpec>().unwrap_err();
        assert!(err.to_string().contains("http://"), "{err}");
        assert!("openai:http://h/v1".parse::<ModelSpec>().unwrap_err().to_string().contains("#<model>"));
    }
}
