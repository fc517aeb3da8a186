//! Cluster decider: registration, heartbeats, health, circuit breaker, recovery and slow start
//! of one BYOC cluster.
//!
//! Owns everything the broker believes about a cluster's health. It does not own capacity
//! reservations (lanes do, per lane share) and never decides routing. What lanes may see of it is
//! the [`ClusterView`], sent to each lane it serves as a journaled command.

use serde::{Deserialize, Serialize};

use crate::events::{
    ClusterHeartbeatV1, ClusterRegisteredV1, ClusterStatus, Name, Stack, Timestamp,
};

use super::config::{permille, RoutingConfig};

/// The broker's judgement of a cluster.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode,
)]
pub enum Health {
    /// Registered, no heartbeat yet.
    NoHeartbeat,
    Healthy,
    /// Heartbeat status `down`.
    Down,
    /// Heartbeat status `draining`.
    Draining,
    /// Heartbeat error rate at or above the threshold.
    Unhealthy,
    /// Completion error rate tripped the breaker.
    BreakerOpen,
    /// Healthy heartbeats again, not yet enough of them in a row.
    Recovering,
}

/// Why health changed (kept in the journal for the audit).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode,
)]
pub enum HealthCause {
    FirstHeartbeat,
    HeartbeatStatus(ClusterStatus),
    HeartbeatErrorRate {
        permille: u64,
    },
    Breaker {
        failures: u32,
        samples: u32,
    },
    Stale {
        gap_ms: i64,
    },
    HealthyHeartbeat {
        streak: u32,
    },
    /// The breaker opened in another unit (its lanes' completions).
    BreakerInUnit {
        unit: u32,
        failures: u32,
        samples: u32,
    },
}

/// What a lane may know about a cluster that serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct ClusterView {
    pub cluster_id: Name,
    pub stack: Stack,
    pub region: Name,
    pub dedicated_to: Option<Name>,
    pub health: Health,
    pub last_heartbeat: Option<i64>,
    /// This lane's share of `max_inflight × headroom` (capacity is split evenly among lanes).
    pub lane_limit: u32,
    /// Start of the slow-start ramp after a recovery (event time ms).
    pub slow_start_since: Option<i64>,
}

/// Sliding window of the last completions' outcomes (bit set = failure).
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
pub struct OutcomeWindow {
    bits: u64,
    len: u32,
    pos: u32,
}

impl OutcomeWindow {
    fn push(&mut self, failed: bool, size: u32) {
        let mask = 1u64 << self.pos;
        if failed {
            self.bits |= mask;
        } else {
            self.bits &= !mask;
        }
        self.len = (self.len + 1).min(size);
        self.pos = (self.pos + 1) % size;
    }

    pub fn failures(&self) -> u32 {
        self.bits.count_ones()
    }

    pub fn samples(&self) -> u32 {
        self.len
    }
}

/// One registered cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub struct ClusterState {
    pub cluster_id: Name,
    pub name: String,
    pub region: Name,
    pub stack: Stack,
    pub lanes: Vec<Name>,
    pub gpus: u32,
    pub gpu_hour_micros: u64,
    pub dedicated_to: Option<Name>,
    pub registered_at: i64,
    /// From the registration, then from each heartbeat.
    pub max_inflight: u32,
    pub last_heartbeat: Option<i64>,
    pub health: Health,
    /// Consecutive healthy heartbeats.
    pub healthy_streak: u32,
    pub outcomes: OutcomeWindow,
    pub slow_start_since: Option<i64>,
}

/// Inputs of the cluster decider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub enum ClusterCommand {
    Register(Box<ClusterRegisteredV1>),
    Heartbeat(Box<ClusterHeartbeatV1>),
    /// Outcome of a request this cluster served (from a lane's completion).
    Outcome {
        failed: bool,
        ts: Timestamp,
    },
    /// The cluster's breaker opened in another unit (`zumik.breaker_tripped.v1`), on the
    /// completions of that unit's lanes. Last variant, so the others keep their encoding.
    BreakerTripped {
        unit: u32,
        failures: u32,
        samples: u32,
        ts: Timestamp,
    },
}

/// Facts the cluster decider emits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
pub enum ClusterEvent {
    Registered(Box<ClusterRegisteredV1>),
    HeartbeatRecorded {
        status: ClusterStatus,
        max_inflight: u32,
        streak: u32,
        ts: Timestamp,
    },
    HealthChanged {
        from: Health,
        to: Health,
        cause: HealthCause,
        slow_start: bool,
        ts: Timestamp,
    },
    OutcomeRecorded {
        failed: bool,
        ts: Timestamp,
    },
}

impl ClusterState {
    /// State of a cluster as its registration describes it (no heartbeat yet).
    pub fn registered(e: &ClusterRegisteredV1) -> Self {
        let mut s = ClusterState {
            cluster_id: Name::new(&e.cluster_id),
            name: String::new(),
            region: Name::from(""),
            stack: e.stack,
            lanes: vec![],
            gpus: 0,
            gpu_hour_micros: 0,
            dedicated_to: None,
            registered_at: e.ts.millis(),
            max_inflight: 0,
            last_heartbeat: None,
            health: Health::NoHeartbeat,
            healthy_streak: 0,
            outcomes: OutcomeWindow::default(),
            slow_start_since: None,
        };
        s.apply_registration(e);
        s
    }

    fn apply_registration(&mut self, e: &ClusterRegisteredV1) {
        self.name = e.name.clone();
        self.region = Name::new(&e.region);
        self.stack = e.stack;
        let mut lanes: Vec<Name> = e.lanes.iter().map(|l| Name::new(l)).collect();
        lanes.sort();
        lanes.dedup();
        self.lanes = lanes;
        self.gpus = e.gpus;
        self.gpu_hour_micros = e.gpu_hour_micros;
        self.dedicated_to = e.dedicated_to.as_deref().map(Name::new);
        self.max_inflight = e.max_inflight;
    }

    /// Slots of this cluster all its lanes together may reserve: DESIGN §4 makes a cluster
    /// eligible while reserved < max_inflight × headroom, which with integer counts is
    /// ceil(max_inflight × headroom) slots (1 × 0.9 still gives 1).
    pub fn slots(&self, cfg: &RoutingConfig) -> u32 {
        (self.max_inflight as u64 * cfg.headroom_permille()).div_ceil(1000) as u32
    }

    /// This lane's share of [`ClusterState::slots`]: an even split, the remainder going one slot
    /// each to the first lanes in id order, so the shares add up to exactly the cluster's slots.
    /// Each lane counts only its own reservations against its share, so lanes on different
    /// partitions never need to coordinate. 0 for a lane the cluster does not serve.
    pub fn lane_limit(&self, lane: &str, cfg: &RoutingConfig) -> u32 {
        let Ok(index) = self.lanes.binary_search_by(|l| (**l).cmp(lane)) else {
            return 0;
        };
        let (slots, n) = (self.slots(cfg), self.lanes.len() as u32);
        slots / n + u32::from((index as u32) < slots % n)
    }

    /// The view lane `lane` gets.
    pub fn view(&self, lane: &str, cfg: &RoutingConfig) -> ClusterView {
        ClusterView {
            cluster_id: self.cluster_id,
            stack: self.stack,
            region: self.region,
            dedicated_to: self.dedicated_to,
            health: self.health,
            last_heartbeat: self.last_heartbeat,
            lane_limit: self.lane_limit(lane, cfg),
            slow_start_since: self.slow_start_since,
        }
    }

    /// What a lane created after this cluster registered gets of it: its view, with the event
    /// time of the last heartbeat (or of the registration, before the first one). `None` when
    /// the cluster does not serve the lane.
    pub fn catch_up(&self, lane: &str, cfg: &RoutingConfig) -> Option<(ClusterView, Timestamp)> {
        self.lanes.iter().any(|l| **l == *lane).then(|| {
            (
                self.view(lane, cfg),
                Timestamp(self.last_heartbeat.unwrap_or(self.registered_at)),
            )
        })
    }

    pub fn decide(&self, cmd: &ClusterCommand, cfg: &RoutingConfig) -> Vec<ClusterEvent> {
        let mut out = Vec::new();
        self.decide_into(cmd, cfg, &mut out);
        out
    }

    /// [`ClusterState::decide`] appending to a caller's buffer (the hot path reuses one).
    pub fn decide_into(
        &self,
        cmd: &ClusterCommand,
        cfg: &RoutingConfig,
        out: &mut Vec<ClusterEvent>,
    ) {
        match cmd {
            ClusterCommand::Register(e) => out.push(ClusterEvent::Registered(e.clone())),
            ClusterCommand::Heartbeat(hb) => out.extend(self.on_heartbeat(hb, cfg)),
            ClusterCommand::Outcome { failed, ts } => self.on_outcome(*failed, *ts, cfg, out),
            ClusterCommand::BreakerTripped {
                unit,
                failures,
                samples,
                ts,
            } => {
                // Like an outcome: news only while the cluster is in rotation here. A trip
                // from before the freshness window of this unit's last heartbeat (a unit
                // working off a backlog, a catch-up) is old news: the heartbeats since have
                // been judged already. Recovery follows this unit's own heartbeats, as after
                // its own trip.
                let old_news = self
                    .last_heartbeat
                    .is_some_and(|hb| ts.millis() < hb.saturating_sub(cfg.stale_after_ms));
                if self.health == Health::Healthy && !old_news {
                    out.push(ClusterEvent::HealthChanged {
                        from: self.health,
                        to: Health::BreakerOpen,
                        cause: HealthCause::BreakerInUnit {
                            unit: *unit,
                            failures: *failures,
                            samples: *samples,
                        },
                        slow_start: false,
                        ts: *ts,
                    });
                }
            }
        }
    }

    fn on_heartbeat(&self, hb: &ClusterHeartbeatV1, cfg: &RoutingConfig) -> Vec<ClusterEvent> {
        let b = &cfg.breaker;
        let ts = hb.ts;
        let err_permille = hb.error_rate.map_or(0, permille);
        let reports_healthy = matches!(hb.status, ClusterStatus::Ready | ClusterStatus::Degraded);
        let healthy = reports_healthy && err_permille < b.heartbeat_error_rate_permille();
        let mut out = Vec::with_capacity(2);
        let mut health = self.health;
        let change = |from: Health, to: Health, cause: HealthCause, slow_start: bool| {
            ClusterEvent::HealthChanged {
                from,
                to,
                cause,
                slow_start,
                ts,
            }
        };
        if !healthy {
            let (to, cause) = match hb.status {
                ClusterStatus::Down => (
                    Health::Down,
                    HealthCause::HeartbeatStatus(ClusterStatus::Down),
                ),
                ClusterStatus::Draining => (
                    Health::Draining,
                    HealthCause::HeartbeatStatus(ClusterStatus::Draining),
                ),
                _ => (
                    Health::Unhealthy,
                    HealthCause::HeartbeatErrorRate {
                        permille: err_permille,
                    },
                ),
            };
            if health != to {
                out.push(change(health, to, cause, false));
            }
            out.push(ClusterEvent::HeartbeatRecorded {
                status: hb.status,
                max_inflight: hb.max_inflight,
                streak: 0,
                ts,
            });
            return out;
        }
        let mut streak = self.healthy_streak;
        // Recovery counts *consecutive* heartbeats: a gap longer than `stale_after` restarts it.
        if health != Health::Healthy
            && self
                .last_heartbeat
                .is_some_and(|last| ts.millis() - last > cfg.stale_after_ms)
        {
            streak = 0;
        }
        // A healthy cluster that went quiet for longer than `stale_after` was out of rotation;
        // it has to earn its way back like any other unhealthy cluster (no flapping).
        if let (Health::Healthy, Some(last)) = (health, self.last_heartbeat) {
            let gap = ts.millis() - last;
            if gap > cfg.stale_after_ms {
                out.push(change(
                    health,
                    Health::Recovering,
                    HealthCause::Stale { gap_ms: gap },
                    false,
                ));
                health = Health::Recovering;
                streak = 0;
            }
        }
        streak += 1;
        out.push(ClusterEvent::HeartbeatRecorded {
            status: hb.status,
            max_inflight: hb.max_inflight,
            streak,
            ts,
        });
        match health {
            Health::Healthy => {}
            Health::NoHeartbeat => out.push(change(
                health,
                Health::Healthy,
                HealthCause::FirstHeartbeat,
                false,
            )),
            _ if streak >= b.recovery_heartbeats => out.push(change(
                health,
                Health::Healthy,
                HealthCause::HealthyHeartbeat { streak },
                b.slow_start_ms > 0,
            )),
            Health::Recovering => {}
            _ => out.push(change(
                health,
                Health::Recovering,
                HealthCause::HealthyHeartbeat { streak },
                false,
            )),
        }
        out
    }

    fn on_outcome(
        &self,
        failed: bool,
        ts: Timestamp,
        cfg: &RoutingConfig,
        out: &mut Vec<ClusterEvent>,
    ) {
        // Outcomes of requests that finish while the cluster is already out of rotation say
        // nothing new; the breaker window restarts when it is back.
        if self.health != Health::Healthy {
            return;
        }
        let b = &cfg.breaker;
        out.push(ClusterEvent::OutcomeRecorded { failed, ts });
        let mut w = self.outcomes;
        w.push(failed, b.window);
        let (failures, samples) = (w.failures(), w.samples());
        if samples >= b.min_samples
            && failures as u64 * 1000 >= b.error_rate_permille() * samples as u64
        {
            out.push(ClusterEvent::HealthChanged {
                from: self.health,
                to: Health::BreakerOpen,
                cause: HealthCause::Breaker { failures, samples },
                slow_start: false,
                ts,
            });
        }
    }

    pub fn evolve(&mut self, event: &ClusterEvent, cfg: &RoutingConfig) {
        match event {
            ClusterEvent::Registered(e) => self.apply_registration(e),
            ClusterEvent::HeartbeatRecorded {
                max_inflight,
                streak,
                ts,
                ..
            } => {
                self.last_heartbeat = Some(ts.millis());
                self.max_inflight = *max_inflight;
                self.healthy_streak = *streak;
            }
            ClusterEvent::HealthChanged {
                to, slow_start, ts, ..
            } => {
                self.health = *to;
                if *to == Health::Healthy {
                    if *slow_start {
                        self.slow_start_since = Some(ts.millis());
                    }
                } else {
                    self.slow_start_since = None;
                    self.outcomes = OutcomeWindow::default();
                    // Recovering keeps the streak its heartbeat carries; a failure resets it.
                    if *to != Health::Recovering {
                        self.healthy_streak = 0;
                    }
                }
            }
            ClusterEvent::OutcomeRecorded { failed, .. } => {
                self.outcomes.push(*failed, cfg.breaker.window)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> ClusterRegisteredV1 {
        ClusterRegisteredV1 {
            cluster_id: "byc_a".into(),
            name: "a".into(),
            region: "eu-west-1".into(),
            stack: Stack::Dynamo,
            lanes: vec!["openai/gpt-4o".into()],
            max_inflight: 10,
            gpus: 8,
            gpu_hour_micros: 2_000_000,
            dedicated_to: None,
            ts: Timestamp(1_000),
        }
    }

    fn hb(status: ClusterStatus, ts: i64) -> ClusterCommand {
        ClusterCommand::Heartbeat(Box::new(ClusterHeartbeatV1::new(
            "byc_a",
            status,
            10,
            Timestamp(ts),
        )))
    }

    fn apply(s: &mut ClusterState, c: ClusterCommand, cfg: &RoutingConfig) -> Vec<ClusterEvent> {
        let ev = s.decide(&c, cfg);
        for e in &ev {
            s.evolve(e, cfg);
        }
        ev
    }

    #[test]
    fn breaker_trips_then_recovers_after_n_heartbeats_with_slow_start() {
        let cfg = RoutingConfig::default();
        let mut s = ClusterState::registered(&reg());
        apply(&mut s, hb(ClusterStatus::Ready, 2_000), &cfg);
        assert_eq!(s.health, Health::Healthy);
        for i in 0..10 {
            apply(
                &mut s,
                ClusterCommand::Outcome {
                    failed: i % 2 == 0,
                    ts: Timestamp(3_000),
                },
                &cfg,
            );
        }
        assert_eq!(s.health, Health::BreakerOpen);
        apply(&mut s, hb(ClusterStatus::Ready, 4_000), &cfg);
        assert_eq!(s.health, Health::Recovering);
        apply(&mut s, hb(ClusterStatus::Ready, 5_000), &cfg);
        assert_eq!(s.health, Health::Recovering);
        apply(&mut s, hb(ClusterStatus::Ready, 6_000), &cfg);
        assert_eq!(s.health, Health::Healthy);
        assert_eq!(s.slow_start_since, Some(6_000));
    }

    #[test]
    fn an_unhealthy_heartbeat_resets_the_streak() {
        let cfg = RoutingConfig::default();
        let mut s = ClusterState::registered(&reg());
        apply(&mut s, hb(ClusterStatus::Down, 2_000), &cfg);
        apply(&mut s, hb(ClusterStatus::Ready, 3_000), &cfg);
        apply(&mut s, hb(ClusterStatus::Ready, 4_000), &cfg);
        apply(&mut s, hb(ClusterStatus::Draining, 5_000), &cfg);
        assert_eq!(s.health, Health::Draining);
        apply(&mut s, hb(ClusterStatus::Ready, 6_000), &cfg);
        apply(&mut s, hb(ClusterStatus::Ready, 7_000), &cfg);
        assert_eq!(s.health, Health::Recovering);
        apply(&mut s, hb(ClusterStatus::Ready, 8_000), &cfg);
        assert_eq!(s.health, Health::Healthy);
    }

    #[test]
    fn a_late_heartbeat_means_recovery_not_instant_return() {
        let cfg = RoutingConfig::default();
        let mut s = ClusterState::registered(&reg());
        apply(&mut s, hb(ClusterStatus::Ready, 2_000), &cfg);
        let ev = apply(
            &mut s,
            hb(ClusterStatus::Ready, 2_000 + cfg.stale_after_ms + 1),
            &cfg,
        );
        assert!(matches!(
            ev[0],
            ClusterEvent::HealthChanged {
                cause: HealthCause::Stale { .. },
                ..
            }
        ));
        assert_eq!(s.health, Health::Recovering);
    }

    #[test]
    fn lane_share_splits_capacity_and_applies_headroom() {
        let cfg = RoutingConfig::default();
        let mut e = reg();
        e.lanes = vec!["a/x".into(), "b/y".into()];
        e.max_inflight = 100;
        let s = ClusterState::registered(&e);
        // 100 × 0.9 = 90 slots over 2 lanes.
        assert_eq!(
            (
                s.view("a/x", &cfg).lane_limit,
                s.view("b/y", &cfg).lane_limit
            ),
            (45, 45)
        );
        assert_eq!(s.view("c/z", &cfg).lane_limit, 0);
        e.lanes = vec!["a/x".into()];
        e.max_inflight = 1;
        assert_eq!(ClusterState::registered(&e).view("a/x", &cfg).lane_limit, 1);
        e.max_inflight = 4;
        assert_eq!(ClusterState::registered(&e).view("a/x", &cfg).lane_limit, 4);
        // Shares never add up to more than the cluster's slots: 2 × 0.9 → 2 slots over 4 lanes.
        e.lanes = vec!["d/w".into(), "a/x".into(), "b/y".into(), "c/z".into()];
        e.max_inflight = 2;
        let s = ClusterState::registered(&e);
        let shares: Vec<u32> = ["a/x", "b/y", "c/z", "d/w"]
            .iter()
            .map(|l| s.view(l, &cfg).lane_limit)
            .collect();
        assert_eq!(shares, [1, 1, 0, 0]);
    }
}
