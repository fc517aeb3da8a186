//! The managed price table (LiteLLM format) and per-request cost estimates in integer micros.
//!
//! Loading takes bytes (the file read happens in the shell); lookups and estimates are pure and
//! integer-only, so costs are identical on every machine. Prices are kept in pico-dollars per
//! token (1e-12 $), exact for every price in the LiteLLM table.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::events::ModelPath;

/// The LiteLLM table this binary ships with (`data/model-prices.json`, MIT, litellm 1.109.1).
pub const EMBEDDED_TABLE: &[u8] = include_bytes!("../../data/model-prices.json");

/// Price of one model, pico-dollars per token.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    bincode::Encode,
    bincode::Decode,
)]
pub struct ModelPrice {
    pub input_pd: u64,
    pub output_pd: u64,
    /// Cached-input (cache read) price; `None` = billed at the input price.
    pub cache_read_pd: Option<u64>,
    pub max_input_tokens: Option<u32>,
    pub max_output_tokens: Option<u32>,
}

impl ModelPrice {
    /// Cost in micros of a request, rounded half up: uncached input at the input price, cached
    /// input at the cache-read price, output at the output price.
    pub fn cost_micros(
        &self,
        input_tokens: u32,
        cached_input_tokens: u32,
        output_tokens: u32,
    ) -> u64 {
        let cached = cached_input_tokens.min(input_tokens) as u128;
        let uncached = input_tokens as u128 - cached;
        let pd = uncached * self.input_pd as u128
            + cached * self.cache_read_pd.unwrap_or(self.input_pd) as u128
            + output_tokens as u128 * self.output_pd as u128;
        // 1 micro = 1e6 pico-dollars. A u128 division is a library call on the per-request
        // path; every realistic sum fits in u64, whose division by a constant is a multiply.
        let rounded = pd + 500_000;
        match u64::try_from(rounded) {
            Ok(x) => x / 1_000_000,
            Err(_) => (rounded / 1_000_000).min(u64::MAX as u128) as u64,
        }
    }
}

/// Name mappings for lanes the table does not know under their own name (`[pricing]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PriceAliases {
    /// Lane provider → LiteLLM provider, e.g. `fireworks = "fireworks_ai"`.
    pub providers: BTreeMap<String, String>,
    /// Lane (`provider/model`, no revision) → table key, checked first.
    pub models: BTreeMap<String, String>,
}

impl PriceAliases {
    /// The provider names Zumik lanes use that LiteLLM spells differently.
    pub fn with_builtin_providers() -> Self {
        let providers = [
            ("fireworks", "fireworks_ai"),
            ("together", "together_ai"),
            ("google", "gemini"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
        PriceAliases {
            providers,
            models: BTreeMap::new(),
        }
    }
}

/// Why a price table could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    #[error("price table is not a JSON object of models: {0}")]
    Format(#[from] serde_json::Error),
    #[error("price table has no usable model prices")]
    Empty,
}

#[derive(Debug, Clone)]
struct Entry {
    provider: Option<String>,
    price: ModelPrice,
}

/// A loaded price table with the lane → key resolution rules.
#[derive(Debug, Clone)]
pub struct PriceTable {
    entries: BTreeMap<String, Entry>,
    /// (litellm_provider, last path segment of the key) → smallest key, for keys like
    /// `fireworks_ai/accounts/fireworks/models/<model>`.
    by_suffix: BTreeMap<(String, String), String>,
    aliases: PriceAliases,
    /// Entries skipped because they carry no token prices (image models, the sample spec, …).
    pub skipped: usize,
}

/// A resolved price, with the table key it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceMatch {
    pub key: String,
    pub price: ModelPrice,
}

fn to_pd(v: Option<&Value>) -> Option<u64> {
    let x = v?.as_f64()?;
    (x.is_finite() && x >= 0.0).then(|| (x * 1e12).round() as u64)
}

fn to_tokens(v: Option<&Value>) -> Option<u32> {
    v?.as_u64().map(|n| n.min(u32::MAX as u64) as u32)
}

impl PriceTable {
    /// Parses a LiteLLM-format table (`{ "<key>": { "input_cost_per_token": …, … } }`).
    /// Entries without both token prices are skipped and counted, never fatal.
    pub fn from_litellm_json(bytes: &[u8], aliases: PriceAliases) -> Result<Self, PriceError> {
        let raw: BTreeMap<String, Value> = serde_json::from_slice(bytes)?;
        let mut entries = BTreeMap::new();
        let mut skipped = 0;
        for (key, v) in raw {
            let (Some(input_pd), Some(output_pd)) = (
                to_pd(v.get("input_cost_per_token")),
                to_pd(v.get("output_cost_per_token")),
            ) else {
                skipped += 1;
                continue;
            };
            let price = ModelPrice {
                input_pd,
                output_pd,
                cache_read_pd: to_pd(v.get("cache_read_input_token_cost")),
                max_input_tokens: to_tokens(v.get("max_input_tokens")),
                max_output_tokens: to_tokens(v.get("max_output_tokens")),
            };
            let provider = v
                .get("litellm_provider")
                .and_then(Value::as_str)
                .map(str::to_owned);
            entries.insert(key, Entry { provider, price });
        }
        if entries.is_empty() {
            return Err(PriceError::Empty);
        }
        let mut by_suffix = BTreeMap::new();
        for (key, e) in &entries {
            if let (Some(p), Some((_, last))) = (&e.provider, key.rsplit_once('/')) {
                // BTreeMap iteration is sorted, so the first key seen is the smallest.
                by_suffix
                    .entry((p.clone(), last.to_owned()))
                    .or_insert_with(|| key.clone());
            }
        }
        Ok(PriceTable {
            entries,
            by_suffix,
            aliases,
            skipped,
        })
    }

    /// The table shipped in the binary, with the built-in provider aliases.
    pub fn embedded() -> Self {
        // The embedded file is checked by the `embedded_table_loads` test.
        Self::from_litellm_json(EMBEDDED_TABLE, PriceAliases::with_builtin_providers())
            .expect("embedded price table parses")
    }

    /// True when the table prices `key`.
    pub fn has_key(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// Number of priced models.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn hit(&self, key: &str) -> Option<PriceMatch> {
        self.entries.get(key).map(|e| PriceMatch {
            key: key.to_owned(),
            price: e.price,
        })
    }

    fn hit_with_provider(&self, key: &str, provider: &str) -> Option<PriceMatch> {
        self.entries
            .get(key)
            .filter(|e| e.provider.as_deref() == Some(provider))
            .map(|e| PriceMatch {
                key: key.to_owned(),
                price: e.price,
            })
    }

    /// Finds the price of a lane `provider/model[@rev]`, in this order:
    /// 1. the configured model alias for `provider/model`;
    /// 2. the exact key `provider/model`;
    /// 3. the key `model` whose `litellm_provider` is the provider (or its alias);
    /// 4. the key `<litellm provider>/model`;
    /// 5. the smallest key ending in `/model` whose `litellm_provider` is the provider.
    pub fn resolve(&self, lane: &str) -> Option<PriceMatch> {
        let path = ModelPath::parse(lane)?;
        let plain = format!("{}/{}", path.provider, path.model);
        if let Some(key) = self.aliases.models.get(&plain) {
            return self.hit(key);
        }
        if let Some(m) = self.hit(&plain) {
            return Some(m);
        }
        let provider = self
            .aliases
            .providers
            .get(path.provider)
            .map_or(path.provider, String::as_str);
        for p in [path.provider, provider] {
            if let Some(m) = self.hit_with_provider(path.model, p) {
                return Some(m);
            }
        }
        if let Some(m) = self.hit(&format!("{provider}/{}", path.model)) {
            return Some(m);
        }
        let last = path.model.rsplit('/').next().unwrap_or(path.model);
        self.by_suffix
            .get(&(provider.to_owned(), last.to_owned()))
            .and_then(|k| self.hit(k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_table_loads() {
        let t = PriceTable::embedded();
        assert!(t.len() > 1000, "{} priced models", t.len());
    }

    #[test]
    fn resolution_follows_litellm_conventions() {
        let t = PriceTable::embedded();
        // Rule 3: bare key with matching provider.
        let m = t.resolve("openai/gpt-4o").unwrap();
        assert_eq!(m.key, "gpt-4o");
        assert_eq!(m.price.input_pd, 2_500_000);
        assert_eq!(m.price.cache_read_pd, Some(1_250_000));
        // Revision is ignored for pricing.
        assert_eq!(
            t.resolve("anthropic/claude-sonnet-4-5@2025-09")
                .unwrap()
                .key,
            "claude-sonnet-4-5"
        );
        // Rule 5 via the provider alias.
        let m = t
            .resolve("fireworks/qwen3-coder-480b-a35b-instruct")
            .unwrap();
        assert_eq!(
            m.key,
            "fireworks_ai/accounts/fireworks/models/qwen3-coder-480b-a35b-instruct"
        );
        // Wrong provider does not borrow another provider's price.
        assert!(t.resolve("anthropic/gpt-4o").is_none());
        assert!(t.resolve("acme/house-model").is_none());
    }

    #[test]
    fn config_alias_wins() {
        let mut aliases = PriceAliases::with_builtin_providers();
        aliases
            .models
            .insert("acme/house-model".into(), "gpt-4o-mini".into());
        let t = PriceTable::from_litellm_json(EMBEDDED_TABLE, aliases).unwrap();
        assert_eq!(t.resolve("acme/house-model").unwrap().key, "gpt-4o-mini");
    }

    #[test]
    fn cost_uses_cache_read_price_and_rounds() {
        let p = ModelPrice {
            input_pd: 2_500_000,
            output_pd: 10_000_000,
            cache_read_pd: Some(1_250_000),
            ..Default::default()
        };
        // 1000 uncached × 2.5 µ$ + 1000 cached × 1.25 µ$ + 100 out × 10 µ$ = 2500 + 1250 + 1000.
        assert_eq!(p.cost_micros(2000, 1000, 100), 4750);
        // Cached beyond input is clamped.
        assert_eq!(p.cost_micros(10, 50, 0), 13);
    }

    #[test]
    fn cost_past_u64_pico_dollars_takes_the_wide_division_and_saturates() {
        let p = ModelPrice {
            input_pd: u64::MAX,
            output_pd: u64::MAX,
            ..Default::default()
        };
        // 2 × (2^64 − 1) pico-dollars does not fit in u64: rounded the same way in u128.
        let wide = 2 * (u64::MAX as u128) + 500_000;
        assert_eq!(p.cost_micros(2, 0, 0), (wide / 1_000_000) as u64);
        assert_eq!(p.cost_micros(u32::MAX, 0, u32::MAX), u64::MAX);
    }

    #[test]
    fn garbage_tables_fail_clearly() {
        assert!(matches!(
            PriceTable::from_litellm_json(b"[1,2]", PriceAliases::default()),
            Err(PriceError::Format(_))
        ));
        assert!(matches!(
            PriceTable::from_litellm_json(b"{\"a\":{}}", PriceAliases::default()),
            Err(PriceError::Empty)
        ));
    }
}
