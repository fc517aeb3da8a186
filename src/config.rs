//! The one root configuration of Zumik: `zumik.toml` plus `ZUMIK_*` environment overrides.
//!
//! Sections per subsystem (`[routing]`, `[pricing]`), unknown fields rejected, defaults documented
//! on each field, and `validate()` naming the bad field. Loading happens once at start; a bad
//! config stops the process before it routes anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::core::config::ConfigInvalid;
use crate::core::{PriceAliases, PriceTable, RoutingConfig};

/// Prefix of environment overrides: `ZUMIK_ROUTING__HEADROOM=0.8` sets `routing.headroom`.
/// Only variables with a `__` section separator are overrides, so `ZUMIK_CONFIG`, `ZUMIK_LOG`
/// and the like are never mistaken for config fields.
pub const ENV_PREFIX: &str = "ZUMIK_";

/// The `[pricing]` section.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PricingConfig {
    /// LiteLLM-format price table; relative paths are relative to the config file.
    /// Default: the table embedded in the binary (litellm 1.109.1).
    pub table: Option<PathBuf>,
    /// Lane provider → LiteLLM provider, added to the built-in ones
    /// (`fireworks = "fireworks_ai"`, `together = "together_ai"`, `google = "gemini"`).
    pub providers: BTreeMap<String, String>,
    /// Lane `provider/model` → price-table key, for models the table knows by another name.
    pub models: BTreeMap<String, String>,
}

/// The root config.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub routing: RoutingConfig,
    pub pricing: PricingConfig,
    pub kafka: crate::kafka::KafkaConfig,
    pub api: crate::api::ApiConfig,
}

/// Why the config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error(transparent)]
    Invalid(#[from] ConfigInvalid),
    #[error("cannot load price table {path}: {message}")]
    Prices { path: PathBuf, message: String },
}

impl Config {
    /// Loads `path` (or defaults when `None`), applies environment overrides, validates.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// Like [`Config::load`] with explicit environment variables (for tests).
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let (mut table, origin) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.into(),
                    source,
                })?;
                let table: toml::Table =
                    text.parse()
                        .map_err(|e: toml::de::Error| ConfigError::Parse {
                            path: p.into(),
                            message: e.to_string(),
                        })?;
                (table, p.to_path_buf())
            }
            None => (toml::Table::new(), PathBuf::from("<defaults>")),
        };
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains("__"))
            .collect();
        env.sort();
        for (var, value) in env {
            apply_env(&mut table, &var, &value)?;
        }
        let mut cfg: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: origin.clone(),
                    message: e.to_string(),
                })?;
        if let (Some(t), Some(dir)) = (&cfg.pricing.table, path.and_then(Path::parent)) {
            if t.is_relative() {
                cfg.pricing.table = Some(dir.join(t));
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every section; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigInvalid> {
        self.routing.validate()?;
        self.kafka.validate()?;
        self.api.validate()
    }

    /// Loads the configured price table (or the embedded one) with the configured aliases.
    pub fn price_table(&self) -> Result<PriceTable, ConfigError> {
        let mut aliases = PriceAliases::with_builtin_providers();
        aliases.providers.extend(self.pricing.providers.clone());
        aliases.models.extend(self.pricing.models.clone());
        let (bytes, path) = match &self.pricing.table {
            Some(p) => (
                std::fs::read(p).map_err(|e| ConfigError::Prices {
                    path: p.clone(),
                    message: e.to_string(),
                })?,
                p.clone(),
            ),
            None => (
                crate::core::price::EMBEDDED_TABLE.to_vec(),
                PathBuf::from("<embedded>"),
            ),
        };
        let table =
            PriceTable::from_litellm_json(&bytes, aliases).map_err(|e| ConfigError::Prices {
                path: path.clone(),
                message: e.to_string(),
            })?;
        for (lane, key) in &self.pricing.models {
            if !table.has_key(key) {
                return Err(ConfigError::Invalid(ConfigInvalid {
                    field: format!("pricing.models.\"{lane}\""),
                    reason: format!("price table {} has no model `{key}`", path.display()),
                }));
            }
        }
        Ok(table)
    }

    /// The routing section, shared.
    pub fn routing_arc(&self) -> Arc<RoutingConfig> {
        Arc::new(self.routing.clone())
    }
}

/// Sets `a.b.c` from `ZUMIK_A__B__C=value`; the value is read as TOML when it parses
/// (numbers, booleans, arrays), else as a string.
fn apply_env(table: &mut toml::Table, var: &str, value: &str) -> Result<(), ConfigError> {
    let path: Vec<String> = var[ENV_PREFIX.len()..]
        .split("__")
        .map(|s| s.to_ascii_lowercase())
        .collect();
    if path.iter().any(String::is_empty) {
        return Err(ConfigError::Env {
            var: var.into(),
            message: "expected ZUMIK_SECTION__FIELD".into(),
        });
    }
    let parsed: toml::Value = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let (last, parents) = path
        .split_last()
        .expect("split yields at least one segment");
    let mut cur = table;
    for seg in parents {
        let entry = cur
            .entry(seg.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry.as_table_mut().ok_or_else(|| ConfigError::Env {
            var: var.into(),
            message: format!("`{seg}` is not a section"),
        })?;
    }
    cur.insert(last.clone(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn example_config_in_the_repo_parses() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("zumik.toml");
        let cfg = Config::load_with_env(Some(&p), vec![]).unwrap();
        assert!(cfg.price_table().unwrap().len() > 1000);
    }

    #[test]
    fn environment_overrides_the_file() {
        let cfg = Config::load_with_env(
            None,
            env(&[
                ("ZUMIK_ROUTING__HEADROOM", "0.5"),
                ("ZUMIK_ROUTING__BREAKER__WINDOW", "30"),
                ("PATH", "/bin"),
                ("ZUMIK_CONFIG", "x.toml"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.routing.headroom, 0.5);
        assert_eq!(cfg.routing.breaker.window, 30);
    }

    #[test]
    fn api_tokens_come_from_the_environment_and_never_print() {
        let cfg = Config::load_with_env(
            None,
            env(&[("ZUMIK_API__ADMIN_TOKEN", "s3cret-admin-token-42")]),
        )
        .unwrap();
        assert!(cfg
            .api
            .admin_token
            .as_ref()
            .unwrap()
            .matches("s3cret-admin-token-42"));
        assert!(!format!("{cfg:?}").contains("s3cret"));
        let e =
            Config::load_with_env(None, env(&[("ZUMIK_API__ADMIN_TOKEN", "short")])).unwrap_err();
        assert!(e.to_string().contains("api.admin_token"), "{e}");
        let e = Config::load_with_env(None, env(&[("ZUMIK_API__LISTEN", "nowhere")])).unwrap_err();
        assert!(e.to_string().contains("api.listen"), "{e}");
    }

    #[test]
    fn kafka_client_values_may_be_numbers_and_booleans() {
        let file = std::env::temp_dir().join(format!("zumik-client-{}.toml", std::process::id()));
        std::fs::write(
            &file,
            "[kafka.client]\n\"fetch.wait.max.ms\" = 1\n\"socket.nagle.disable\" = true\n\
             \"client.id\" = \"zumik-a\"\n",
        )
        .unwrap();
        let cfg = Config::load_with_env(
            Some(&file),
            env(&[("ZUMIK_KAFKA__CLIENT__LINGER.MS", "0.5")]),
        )
        .unwrap();
        let client = &cfg.kafka.client.0;
        assert_eq!(client["fetch.wait.max.ms"], "1");
        assert_eq!(client["socket.nagle.disable"], "true");
        assert_eq!(client["client.id"], "zumik-a");
        assert_eq!(client["linger.ms"], "0.5");
        assert_eq!(
            cfg.kafka.client_config().get("fetch.wait.max.ms"),
            Some("1")
        );

        std::fs::write(&file, "[kafka.client]\n\"client.id\" = [1]\n").unwrap();
        let e = Config::load_with_env(Some(&file), vec![]).unwrap_err();
        assert!(e.to_string().contains("kafka.client.client.id"), "{e}");
        assert!(
            e.to_string().contains("a string, a number or a boolean"),
            "{e}"
        );
        let _ = std::fs::remove_file(&file);
    }

    #[test]
    fn bad_config_names_the_field() {
        let e = Config::load_with_env(None, env(&[("ZUMIK_ROUTING__HEADROOM", "2")])).unwrap_err();
        assert!(e.to_string().contains("routing.headroom"), "{e}");
        let e = Config::load_with_env(None, env(&[("ZUMIK_ROUTING__HEADROM", "0.5")])).unwrap_err();
        assert!(e.to_string().contains("headrom"), "{e}");
    }
}
