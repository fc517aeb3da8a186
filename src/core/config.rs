//! Routing configuration: every threshold the deciders use, with documented defaults.
//!
//! Part of the root config (`[routing]` in `zumik.toml`). Validated once at start; the deciders
//! read the derived integer forms (`*_permille`) so no float arithmetic enters a decision.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::events::ProfileClass;

/// What to do with a tenant that has no policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnknownTenant {
    /// Route with the permissive default policy.
    #[default]
    Allow,
    /// Reject with `rejected/unknown_tenant`.
    Reject,
}

/// Circuit breaker and recovery of BYOC clusters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Completions remembered per cluster (sliding window by count, 1–64). Default 20.
    pub window: u32,
    /// Completions needed in the window before the breaker may trip. Default 10.
    pub min_samples: u32,
    /// Failed share of the window that trips the breaker (0–1]. Default 0.5.
    pub error_rate: f64,
    /// A heartbeat whose `error_rate` is at or above this counts as unhealthy (0–1]. Default 0.5.
    pub heartbeat_error_rate: f64,
    /// Consecutive healthy heartbeats before an unhealthy cluster serves again. Default 3.
    pub recovery_heartbeats: u32,
    /// Slow-start ramp after recovery, event-time ms (0 = none). Default 30 000.
    pub slow_start_ms: i64,
    /// Share of capacity a cluster gets at the start of slow start (0–1]. Default 0.1.
    pub slow_start_initial: f64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window: 20,
            min_samples: 10,
            error_rate: 0.5,
            heartbeat_error_rate: 0.5,
            recovery_heartbeats: 3,
            slow_start_ms: 30_000,
            slow_start_initial: 0.1,
        }
    }
}

/// Activation and demotion of hot lanes (`[routing.gate]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GateConfig {
    /// A gate report whose window ended longer ago than this (event time) cannot activate a
    /// lane. Default 7 days.
    pub max_report_age_ms: i64,
    /// Demote active lanes automatically. Default true.
    pub demotion: bool,
    /// Window over which an active lane's utilisation and reliability are judged. Default 1 h.
    pub demotion_window_ms: i64,
    /// Demote when utilisation < break-even × (1 − hysteresis) (0–1]. Default 0.1.
    pub demotion_hysteresis: f64,
    /// Demote when the success share of BYOC completions in the window is below this (0–1].
    /// Default 0.99.
    pub min_reliability: f64,
    /// BYOC completions needed in a window before reliability can demote. Default 100.
    pub min_reliability_samples: u32,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            max_report_age_ms: 7 * 24 * 3_600_000,
            demotion: true,
            demotion_window_ms: 3_600_000,
            demotion_hysteresis: 0.1,
            min_reliability: 0.99,
            min_reliability_samples: 100,
        }
    }
}

/// The `[routing]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Share of a cluster's `max_inflight` the broker may reserve (0–1]. Default 0.9.
    pub headroom: f64,
    /// A cluster whose last heartbeat is older than this (event time) is stale. Default 15 000.
    pub stale_after_ms: i64,
    /// Reservation lifetime for requests without `qos.deadline_ms`. Default 120 000.
    pub default_deadline_ms: u32,
    /// Tenants without a policy: `allow` (default) or `reject`.
    pub unknown_tenant: UnknownTenant,
    /// Allow the OpenRouter emergency route when a managed provider is down. Default false.
    pub openrouter_fallback: bool,
    /// Default escalation order. Default subscription, byok, byoc, managed_provider.
    pub escalation: Vec<ProfileClass>,
    /// Budget thresholds (percent of the monthly budget) that emit events. Default 50, 80, 100.
    pub budget_thresholds_pct: Vec<u8>,
    pub breaker: BreakerConfig,
    pub gate: GateConfig,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            headroom: 0.9,
            stale_after_ms: 15_000,
            default_deadline_ms: 120_000,
            unknown_tenant: UnknownTenant::Allow,
            openrouter_fallback: false,
            escalation: vec![
                ProfileClass::Subscription,
                ProfileClass::Byok,
                ProfileClass::Byoc,
                ProfileClass::ManagedProvider,
            ],
            budget_thresholds_pct: vec![50, 80, 100],
            breaker: BreakerConfig::default(),
            gate: GateConfig::default(),
        }
    }
}

/// A config value out of range, naming the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("config field `{field}`: {reason}")]
pub struct ConfigInvalid {
    pub field: String,
    pub reason: String,
}

fn bad(field: &str, reason: &str) -> ConfigInvalid {
    ConfigInvalid {
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}

fn fraction(field: &str, v: f64) -> Result<(), ConfigInvalid> {
    if v > 0.0 && v <= 1.0 {
        Ok(())
    } else {
        Err(bad(field, "must be greater than 0 and at most 1"))
    }
}

impl RoutingConfig {
    /// Checks every field; the error names the first bad one (prefixed `routing.`).
    pub fn validate(&self) -> Result<(), ConfigInvalid> {
        fraction("routing.headroom", self.headroom)?;
        if self.stale_after_ms <= 0 {
            return Err(bad("routing.stale_after_ms", "must be positive"));
        }
        if self.default_deadline_ms == 0 {
            return Err(bad("routing.default_deadline_ms", "must be positive"));
        }
        if self.escalation.is_empty() {
            return Err(bad("routing.escalation", "must name at least one profile"));
        }
        let mut seen = self.escalation.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != self.escalation.len() {
            return Err(bad("routing.escalation", "names a profile twice"));
        }
        if self
            .budget_thresholds_pct
            .iter()
            .any(|&p| p == 0 || p > 100)
        {
            return Err(bad(
                "routing.budget_thresholds_pct",
                "each threshold must be 1–100",
            ));
        }
        if self.budget_thresholds_pct.len() > 8 {
            return Err(bad("routing.budget_thresholds_pct", "at most 8 thresholds"));
        }
        let b = &self.breaker;
        if !(1..=64).contains(&b.window) {
            return Err(bad("routing.breaker.window", "must be 1–64"));
        }
        if b.min_samples == 0 || b.min_samples > b.window {
            return Err(bad("routing.breaker.min_samples", "must be 1..=window"));
        }
        fraction("routing.breaker.error_rate", b.error_rate)?;
        fraction(
            "routing.breaker.heartbeat_error_rate",
            b.heartbeat_error_rate,
        )?;
        if b.recovery_heartbeats == 0 {
            return Err(bad(
                "routing.breaker.recovery_heartbeats",
                "must be at least 1",
            ));
        }
        if b.slow_start_ms < 0 {
            return Err(bad("routing.breaker.slow_start_ms", "must not be negative"));
        }
        fraction("routing.breaker.slow_start_initial", b.slow_start_initial)?;
        let g = &self.gate;
        if g.max_report_age_ms <= 0 {
            return Err(bad("routing.gate.max_report_age_ms", "must be positive"));
        }
        if g.demotion_window_ms <= 0 {
            return Err(bad("routing.gate.demotion_window_ms", "must be positive"));
        }
        fraction("routing.gate.demotion_hysteresis", g.demotion_hysteresis)?;
        fraction("routing.gate.min_reliability", g.min_reliability)?;
        Ok(())
    }

    /// `headroom` in thousandths.
    pub fn headroom_permille(&self) -> u64 {
        permille(self.headroom)
    }
}

impl BreakerConfig {
    pub fn error_rate_permille(&self) -> u64 {
        permille(self.error_rate)
    }
    pub fn heartbeat_error_rate_permille(&self) -> u64 {
        permille(self.heartbeat_error_rate)
    }
    pub fn slow_start_initial_permille(&self) -> u64 {
        permille(self.slow_start_initial)
    }
}

/// A validated fraction in thousandths (rounded), so decisions use integer arithmetic only.
pub fn permille(x: f64) -> u64 {
    (x * 1000.0).round().clamp(0.0, 1000.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        RoutingConfig::default().validate().unwrap();
    }

    #[test]
    fn bad_values_name_their_field() {
        let mut c = RoutingConfig {
            headroom: 1.5,
            ..RoutingConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "routing.headroom");
        c.headroom = 0.9;
        c.breaker.window = 100;
        assert_eq!(c.validate().unwrap_err().field, "routing.breaker.window");
        c.breaker.window = 20;
        c.escalation = vec![ProfileClass::Byoc, ProfileClass::Byoc];
        assert_eq!(c.validate().unwrap_err().field, "routing.escalation");
    }
}
