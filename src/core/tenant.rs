//! Tenant decider: the tenant's policy and its monthly budget.
//!
//! Owns policy versions, spend per calendar month (event time), the 50/80/100 % threshold events
//! and whether the tenant is paused. Lanes never read this state directly: they receive a
//! [`TenantView`] inside each route command, so a lane's journal alone replays its decisions.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::events::{DataBoundary, Name, OverageMode, ProfileClass, TenantPolicyV1, Timestamp};

use super::config::RoutingConfig;
use crate::events::InlineId;

/// A set of [`ProfileClass`]es as a bitmask (cheap to copy and to intersect).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode,
)]
pub struct ProfileSet(u8);

impl ProfileSet {
    pub const ALL: ProfileSet = ProfileSet(0b1111);

    fn bit(p: ProfileClass) -> u8 {
        match p {
            ProfileClass::Byoc => 1,
            ProfileClass::ManagedProvider => 2,
            ProfileClass::Byok => 4,
            ProfileClass::Subscription => 8,
        }
    }

    pub fn from_slice(ps: &[ProfileClass]) -> Self {
        ProfileSet(ps.iter().fold(0, |acc, &p| acc | Self::bit(p)))
    }

    pub fn contains(self, p: ProfileClass) -> bool {
        self.0 & Self::bit(p) != 0
    }

    pub fn intersect(self, other: ProfileSet) -> ProfileSet {
        ProfileSet(self.0 & other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// A tenant's policy, normalised (sorted lists, a profile bitmask) for fast checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct TenantPolicy {
    /// Sorted; `None` = any region.
    pub allowed_regions: Option<Vec<Name>>,
    pub profiles: ProfileSet,
    pub data_boundary: DataBoundary,
    /// Providers with a subscription, sorted.
    pub subscriptions: Vec<Name>,
    /// Providers with a BYOK credential, sorted.
    pub byok: Vec<Name>,
    pub monthly_budget_micros: Option<u64>,
    pub overage_mode: OverageMode,
    /// `None` = the configured default order.
    pub escalation: Option<Vec<ProfileClass>>,
}

/// Sorted, deduplicated, lowercased (provider names in lanes are lowercase).
fn sorted(v: &[String]) -> Vec<Name> {
    let mut out: Vec<Name> = v
        .iter()
        .map(|s| Name::new(&s.to_ascii_lowercase()))
        .collect();
    out.sort();
    out.dedup();
    out
}

impl TenantPolicy {
    /// The default for tenants without a policy: everything allowed, no budget.
    pub fn permissive() -> Self {
        TenantPolicy {
            allowed_regions: None,
            profiles: ProfileSet::ALL,
            data_boundary: DataBoundary::Project,
            subscriptions: vec![],
            byok: vec![],
            monthly_budget_micros: None,
            overage_mode: OverageMode::Allow,
            escalation: None,
        }
    }

    pub fn from_event(e: &TenantPolicyV1) -> Self {
        TenantPolicy {
            allowed_regions: e.allowed_regions.as_deref().map(sorted),
            profiles: e
                .allowed_profiles
                .as_deref()
                .map_or(ProfileSet::ALL, ProfileSet::from_slice),
            data_boundary: e.data_boundary.unwrap_or_default(),
            subscriptions: sorted(&e.subscriptions),
            byok: sorted(&e.byok),
            monthly_budget_micros: e.monthly_budget_micros,
            overage_mode: e.overage_mode.unwrap_or_default(),
            escalation: e.escalation.clone(),
        }
    }

    pub fn region_allowed(&self, region: &str) -> bool {
        self.allowed_regions
            .as_ref()
            .is_none_or(|rs| rs.binary_search_by(|r| (**r).cmp(region)).is_ok())
    }

    pub fn has_subscription(&self, provider: &str) -> bool {
        self.subscriptions
            .binary_search_by(|p| (**p).cmp(provider))
            .is_ok()
    }

    pub fn has_byok(&self, provider: &str) -> bool {
        self.byok.binary_search_by(|p| (**p).cmp(provider)).is_ok()
    }
}

/// What a lane needs to know about the tenant at decision time (journaled with the command).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct TenantView {
    /// The tenant (shared with the tenant's state, so decisions need not copy it).
    pub tenant_id: Name,
    /// False when the tenant has no policy and the default applies.
    pub known: bool,
    /// Policy version (0 = default policy).
    pub version: u64,
    pub policy: Arc<TenantPolicy>,
    /// Budget spent and overage mode `pause`: requests are rejected with `quota_exceeded`.
    pub paused: bool,
}

impl TenantView {
    /// Whether the tenant's state gives this same view at every event time and after any usage:
    /// true unless the policy can pause the tenant (a budget with `overage_mode = pause`). Such
    /// a view changes only with the tenant's next `SetPolicy`, so a caller may keep it until then.
    pub fn is_stable(&self) -> bool {
        self.policy.overage_mode != OverageMode::Pause
            || self.policy.monthly_budget_micros.is_none()
    }
}

/// Tenant state: policy and the current month's spend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct TenantState {
    pub tenant_id: Name,
    pub policy: Option<Arc<TenantPolicy>>,
    pub version: u64,
    /// Month of `spent_micros`, `yyyymm` (event time).
    pub month: u32,
    /// The month's spend on all units: this unit's, plus what the others reported.
    pub spent_micros: u64,
    /// This unit's own part of `spent_micros` (its completions), sent to the other units as
    /// `zumik.usage.v1`'s `unit_spent_micros`.
    pub own_micros: u64,
    /// The largest month total each other unit reported (`unit_spent_micros`): a record sent
    /// again adds only what it has beyond it.
    pub units: BTreeMap<u32, u64>,
    /// Bit i set = threshold i of the config already crossed this month.
    pub crossed: u8,
    /// Event-time bounds `[start, end)` of `month` in ms (a cache, so usage records need no
    /// calendar arithmetic while the month lasts).
    pub month_start_ms: i64,
    pub month_end_ms: i64,
}

/// Inputs of the tenant decider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub enum TenantCommand {
    SetPolicy(Box<TenantPolicyV1>),
    /// Billable cost of a completed request.
    RecordUsage {
        request_id: InlineId,
        cost_micros: u64,
        ts: Timestamp,
    },
    /// Billable cost of the tenant's completions in another unit (`zumik.usage.v1`).
    RecordUnitUsage {
        unit: u32,
        requests: u32,
        cost_micros: u64,
        /// That unit's month total, these completions included (see [`UsageV1`]).
        ///
        /// [`UsageV1`]: crate::events::UsageV1
        unit_spent_micros: Option<u64>,
        ts: Timestamp,
    },
}

/// Facts the tenant decider emits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub enum TenantEvent {
    PolicySet {
        policy: Arc<TenantPolicy>,
        version: u64,
        ts: Timestamp,
    },
    MonthStarted {
        month: u32,
    },
    UsageRecorded {
        request_id: InlineId,
        cost_micros: u64,
        spent_micros: u64,
        /// This unit's own spend after it; `None` when the usage fell in an earlier month
        /// (recorded, not charged).
        own_micros: Option<u64>,
        ts: Timestamp,
    },
    BudgetThresholdCrossed {
        pct: u8,
        spent_micros: u64,
        budget_micros: u64,
        ts: Timestamp,
    },
    /// Another unit's usage was added: `cost_micros` is what it added (its spend past
    /// that unit's largest total so far, or the record's cost when it carries no total; 0
    /// for a month before the current one), `spent_micros` the spend after it. Last
    /// variant, so the others keep their journal encoding.
    UnitUsageRecorded {
        unit: u32,
        requests: u32,
        cost_micros: u64,
        spent_micros: u64,
        unit_spent_micros: Option<u64>,
        ts: Timestamp,
    },
}

/// Where a usage's event time falls against the month a tenant's state counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UsageMonth {
    /// Before it: recorded, not charged (a late record must not reopen a past month).
    Earlier,
    Current,
    /// After it, or no month yet: the month starts over.
    Later,
}

/// `[start, end)` in ms of the UTC calendar month `yyyymm`.
fn month_bounds(month: u32) -> (i64, i64) {
    use chrono::{NaiveDate, TimeZone, Utc};
    let (y, m) = ((month / 100) as i32, month % 100);
    let start = |y: i32, m: u32| {
        NaiveDate::from_ymd_opt(y, m, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or(0, |dt| Utc.from_utc_datetime(&dt).timestamp_millis())
    };
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (start(y, m), start(ny, nm))
}

fn crossed_mask(spent: u64, budget: Option<u64>, thresholds: &[u8]) -> u8 {
    let Some(budget) = budget else { return 0 };
    thresholds.iter().enumerate().fold(0, |acc, (i, &pct)| {
        if spent as u128 * 100 >= budget as u128 * pct as u128 {
            acc | (1 << i)
        } else {
            acc
        }
    })
}

impl TenantState {
    pub fn new(tenant_id: Name) -> Self {
        TenantState {
            tenant_id,
            policy: None,
            version: 0,
            month: 0,
            spent_micros: 0,
            own_micros: 0,
            units: BTreeMap::new(),
            crossed: 0,
            month_start_ms: 0,
            month_end_ms: 0,
        }
    }

    /// The view a lane gets for a request at event time `now`.
    pub fn view(&self, now: Timestamp, default: &Arc<TenantPolicy>) -> TenantView {
        let policy = self.policy.clone().unwrap_or_else(|| default.clone());
        // Spend from an earlier month does not count against this month's budget (the calendar
        // is only consulted for tenants that can be paused at all).
        let paused = policy.overage_mode == OverageMode::Pause
            && policy.monthly_budget_micros.is_some_and(|b| {
                self.spent_micros >= b && self.month_of(now) == UsageMonth::Current
            });
        TenantView {
            tenant_id: self.tenant_id,
            known: self.policy.is_some(),
            version: self.version,
            policy,
            paused,
        }
    }

    pub fn decide(&self, cmd: &TenantCommand, cfg: &RoutingConfig) -> Vec<TenantEvent> {
        let mut out = Vec::new();
        self.decide_into(cmd, cfg, &mut out);
        out
    }

    /// [`TenantState::decide`] appending to a caller's buffer (the hot path reuses one).
    pub fn decide_into(
        &self,
        cmd: &TenantCommand,
        cfg: &RoutingConfig,
        out: &mut Vec<TenantEvent>,
    ) {
        match cmd {
            TenantCommand::SetPolicy(p) => {
                let policy = Arc::new(TenantPolicy::from_event(p));
                // A new budget may put the current spend past thresholds not yet reported.
                let spent = if p.ts.year_month() == self.month {
                    self.spent_micros
                } else {
                    0
                };
                let now_crossed = crossed_mask(
                    spent,
                    policy.monthly_budget_micros,
                    &cfg.budget_thresholds_pct,
                );
                let fresh = now_crossed & !self.crossed;
                let budget = policy.monthly_budget_micros.unwrap_or(0);
                out.push(TenantEvent::PolicySet {
                    policy,
                    version: self.version + 1,
                    ts: p.ts,
                });
                for (i, &pct) in cfg.budget_thresholds_pct.iter().enumerate() {
                    if fresh & (1 << i) != 0 {
                        out.push(TenantEvent::BudgetThresholdCrossed {
                            pct,
                            spent_micros: spent,
                            budget_micros: budget,
                            ts: p.ts,
                        });
                    }
                }
            }
            TenantCommand::RecordUsage {
                request_id,
                cost_micros,
                ts,
            } => {
                let month = self.month_of(*ts);
                let own_micros = match month {
                    UsageMonth::Earlier => None,
                    UsageMonth::Current => Some(self.own_micros.saturating_add(*cost_micros)),
                    UsageMonth::Later => Some(*cost_micros),
                };
                self.charge(month, *cost_micros, *ts, cfg, out, |spent_micros| {
                    TenantEvent::UsageRecorded {
                        request_id: request_id.clone(),
                        cost_micros: *cost_micros,
                        spent_micros,
                        own_micros,
                        ts: *ts,
                    }
                })
            }
            TenantCommand::RecordUnitUsage {
                unit,
                requests,
                cost_micros,
                unit_spent_micros,
                ts,
            } => {
                let month = self.month_of(*ts);
                let added = match (unit_spent_micros, month) {
                    (_, UsageMonth::Earlier) => 0,
                    (None, _) => *cost_micros,
                    (Some(total), UsageMonth::Current) => {
                        total.saturating_sub(self.units.get(unit).copied().unwrap_or(0))
                    }
                    (Some(total), UsageMonth::Later) => *total,
                };
                self.charge(month, added, *ts, cfg, out, |spent_micros| {
                    TenantEvent::UnitUsageRecorded {
                        unit: *unit,
                        requests: *requests,
                        cost_micros: added,
                        spent_micros,
                        unit_spent_micros: *unit_spent_micros,
                        ts: *ts,
                    }
                })
            }
        }
    }

    /// Where usage at event time `ts` falls against the month being counted.
    fn month_of(&self, ts: Timestamp) -> UsageMonth {
        let t = ts.millis();
        if self.month_end_ms <= self.month_start_ms || t >= self.month_end_ms {
            UsageMonth::Later
        } else if t < self.month_start_ms {
            UsageMonth::Earlier
        } else {
            UsageMonth::Current
        }
    }

    /// Adds `cost` at event time `ts` to the month's spend: the month starts over when `ts` is
    /// past it, the recorded event (built from the spend after it) and any threshold newly
    /// crossed follow. Usage of an earlier month is recorded but leaves this month's spend
    /// alone: records from other units arrive late, and one from the last minutes of a month
    /// must not send the tenant back to that month.
    fn charge(
        &self,
        month: UsageMonth,
        cost: u64,
        ts: Timestamp,
        cfg: &RoutingConfig,
        out: &mut Vec<TenantEvent>,
        recorded: impl FnOnce(u64) -> TenantEvent,
    ) {
        let (spent_before, crossed_before) = match month {
            UsageMonth::Earlier => {
                out.push(recorded(self.spent_micros));
                return;
            }
            UsageMonth::Current => (self.spent_micros, self.crossed),
            UsageMonth::Later => {
                out.push(TenantEvent::MonthStarted {
                    month: ts.year_month(),
                });
                (0, 0)
            }
        };
        let spent = spent_before.saturating_add(cost);
        out.push(recorded(spent));
        let budget = self.policy.as_ref().and_then(|p| p.monthly_budget_micros);
        let now_crossed = crossed_mask(spent, budget, &cfg.budget_thresholds_pct);
        for (i, &pct) in cfg.budget_thresholds_pct.iter().enumerate() {
            if now_crossed & !crossed_before & (1 << i) != 0 {
                out.push(TenantEvent::BudgetThresholdCrossed {
                    pct,
                    spent_micros: spent,
                    budget_micros: budget.unwrap_or(0),
                    ts,
                });
            }
        }
    }

    pub fn evolve(&mut self, event: &TenantEvent, cfg: &RoutingConfig) {
        match event {
            TenantEvent::PolicySet {
                policy,
                version,
                ts,
            } => {
                self.policy = Some(policy.clone());
                self.version = *version;
                // A new budget re-arms the thresholds the current spend no longer crosses.
                let spent = if ts.year_month() == self.month {
                    self.spent_micros
                } else {
                    0
                };
                self.crossed = crossed_mask(
                    spent,
                    policy.monthly_budget_micros,
                    &cfg.budget_thresholds_pct,
                );
            }
            TenantEvent::MonthStarted { month } => {
                self.month = *month;
                (self.month_start_ms, self.month_end_ms) = month_bounds(*month);
                self.spent_micros = 0;
                self.own_micros = 0;
                self.units.clear();
                self.crossed = 0;
            }
            TenantEvent::UsageRecorded {
                spent_micros,
                own_micros,
                ..
            } => {
                self.spent_micros = *spent_micros;
                if let Some(own) = own_micros {
                    self.own_micros = *own;
                }
            }
            TenantEvent::UnitUsageRecorded {
                unit,
                spent_micros,
                unit_spent_micros,
                ts,
                ..
            } => {
                self.spent_micros = *spent_micros;
                // Usage of an earlier month is recorded, not counted (`charge`).
                let counted = self.month_of(*ts) == UsageMonth::Current;
                if let (Some(total), true) = (unit_spent_micros, counted) {
                    let known = self.units.entry(*unit).or_default();
                    *known = (*known).max(*total);
                }
            }
            TenantEvent::BudgetThresholdCrossed { .. } => {
                let budget = self.policy.as_ref().and_then(|p| p.monthly_budget_micros);
                self.crossed = crossed_mask(self.spent_micros, budget, &cfg.budget_thresholds_pct);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Applies `cmd` to `state` as an actor does: decide, then evolve on every event.
    fn apply(state: &mut TenantState, cmd: &TenantCommand, cfg: &RoutingConfig) {
        for e in state.decide(cmd, cfg) {
            state.evolve(&e, cfg);
        }
    }

    /// Another unit's record for the spend `costs[from..to]`, with its month total.
    fn record(costs: &[u64], from: usize, to: usize) -> TenantCommand {
        let total: u64 = costs[..to].iter().sum();
        TenantCommand::RecordUnitUsage {
            unit: 3,
            requests: (to - from) as u32,
            cost_micros: costs[from..to].iter().sum(),
            unit_spent_micros: Some(total),
            ts: Timestamp(1_795_000_000_000),
        }
    }

    proptest! {
        /// A unit that resumes at an earlier batch sends its records again, batched
        /// differently: the receiving tenant's spend is what it is when each was sent once.
        #[test]
        fn another_units_records_sent_again_count_once(
            costs in prop::collection::vec(1u64..10_000, 1..20),
            resume in any::<prop::sample::Index>(),
            step in 1usize..4,
        ) {
            let cfg = RoutingConfig::default();
            let mut once = TenantState::new("prj_a".into());
            let mut again = once.clone();
            for i in 0..costs.len() {
                apply(&mut once, &record(&costs, i, i + 1), &cfg);
                apply(&mut again, &record(&costs, i, i + 1), &cfg);
            }
            // The repeat: from an earlier record on, `step` completions to a record.
            let mut from = resume.index(costs.len());
            while from < costs.len() {
                let to = (from + step).min(costs.len());
                apply(&mut again, &record(&costs, from, to), &cfg);
                from = to;
            }
            prop_assert_eq!(again.spent_micros, costs.iter().sum::<u64>());
            prop_assert_eq!(again, once);
        }
    }

    #[test]
    fn own_spend_is_kept_apart_from_the_other_units() {
        let cfg = RoutingConfig::default();
        let mut t = TenantState::new("prj_a".into());
        let ts = Timestamp(1_795_000_000_000);
        let own = |cost_micros| TenantCommand::RecordUsage {
            request_id: "r".into(),
            cost_micros,
            ts,
        };
        apply(&mut t, &own(100), &cfg);
        apply(&mut t, &record(&[40, 60], 0, 2), &cfg);
        apply(&mut t, &own(5), &cfg);
        assert_eq!((t.own_micros, t.spent_micros), (105, 205));
        assert_eq!(t.units, BTreeMap::from([(3, 100)]));
        // Without a total, another unit's record adds its cost as it is.
        let late = TenantCommand::RecordUnitUsage {
            unit: 3,
            requests: 1,
            cost_micros: 7,
            unit_spent_micros: None,
            ts,
        };
        apply(&mut t, &late, &cfg);
        assert_eq!((t.own_micros, t.spent_micros), (105, 212));
    }
}
