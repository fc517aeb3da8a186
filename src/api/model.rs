//! The read model: an actix actor that holds what the API shows — the latest committed view of
//! lanes and clusters, recent decisions by request id, the decision mix per second, the health
//! of the broker loop — and keeps the metrics current. The broker thread feeds it through
//! [`ModelSink`] with `send`, so its bounded mailbox back-pressures the broker instead of
//! growing; HTTP handlers query it with messages. It holds no state of its own that Kafka does
//! not: everything here is rebuilt from the broker after a restart.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::Serialize;

use crate::core::view::RouterView;
use crate::events::{DecisionV1, InlineId, Name, Reason};
use crate::kafka::{BatchSink, CommittedBatch};
use crate::telemetry::Metrics;

/// Messages the model's mailbox holds before `send` waits (back-pressure on the broker).
pub const MAILBOX: usize = 64;
/// Seconds of decision mix kept for the status page.
pub const MIX_SECONDS: usize = 600;

/// Decisions committed in one second (wall clock of the commit), by `profile/reason`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MixSecond {
    /// Seconds since the epoch.
    pub t: u64,
    pub counts: BTreeMap<String, u64>,
}

/// How the broker loop is doing, for `/healthz`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BrokerHealth {
    /// Recovery done, consumer running.
    pub ready: bool,
    /// Assigned input partitions at the last view.
    pub assigned_partitions: usize,
    /// Messages behind on all assigned input partitions.
    pub lag: i64,
    /// Milliseconds since the broker last reported (a view or a commit); `None` before that.
    pub last_report_ms: Option<u64>,
    pub batches: u64,
    pub decisions: u64,
    /// The broker's last metadata request to Kafka succeeded (`None`: not asked yet).
    pub kafka_reachable: Option<bool>,
}

/// Decisions of one lane since this process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LaneStats {
    pub decisions: u64,
    pub overflow: u64,
    pub failover: u64,
}

/// The actor.
pub struct ReadModel {
    metrics: Arc<Metrics>,
    view: Arc<RouterView>,
    decisions: HashMap<InlineId, Arc<DecisionV1>>,
    order: VecDeque<InlineId>,
    keep: usize,
    mix: VecDeque<MixSecond>,
    health: BrokerHealth,
    last_report: Option<Instant>,
    lane_stats: HashMap<Name, LaneStats>,
}

impl ReadModel {
    /// A model keeping the last `keep` decisions.
    pub fn new(metrics: Arc<Metrics>, keep: usize) -> Self {
        ReadModel {
            metrics,
            view: Arc::default(),
            decisions: HashMap::new(),
            order: VecDeque::new(),
            keep,
            mix: VecDeque::new(),
            health: BrokerHealth::default(),
            last_report: None,
            lane_stats: HashMap::new(),
        }
    }

    fn remember(&mut self, d: DecisionV1) {
        let id = d.request_id.clone();
        if self.decisions.insert(id.clone(), Arc::new(d)).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > self.keep {
            if let Some(old) = self.order.pop_front() {
                self.decisions.remove(&old);
            }
        }
    }

    fn count_mix(&mut self, decisions: &[DecisionV1]) {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.mix.back().is_none_or(|m| m.t != t) {
            self.mix.push_back(MixSecond {
                t,
                counts: BTreeMap::new(),
            });
            while self.mix.len() > MIX_SECONDS {
                self.mix.pop_front();
            }
        }
        let slot = self.mix.back_mut().expect("pushed above");
        for d in decisions {
            let profile = d.profile.map_or("none", |p| p.as_str());
            let key = format!("{profile}/{}", d.reason.as_str());
            *slot.counts.entry(key).or_default() += 1;
        }
    }
}

impl Actor for ReadModel {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX);
    }
}

/// A committed batch (from the broker thread).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Committed(pub CommittedBatch);

impl Handler<Committed> for ReadModel {
    type Result = ();

    fn handle(&mut self, Committed(batch): Committed, _: &mut Context<Self>) {
        let m = &self.metrics;
        m.count_decisions(&batch.decisions);
        m.inputs.inc_by(batch.inputs);
        m.dlq.inc_by(batch.dlq);
        m.already_applied.inc_by(batch.already_applied);
        m.batches.inc();
        m.observe(&m.batch_seconds, batch.took);
        m.observe(&m.commit_seconds, batch.commit);
        self.count_mix(&batch.decisions);
        self.health.batches += 1;
        self.health.decisions += batch.decisions.len() as u64;
        for d in batch.decisions {
            let st = self.lane_stats.entry(d.lane).or_default();
            st.decisions += 1;
            st.overflow += u64::from(d.reason == Reason::Overflow);
            st.failover += u64::from(d.reason == Reason::Failover);
            self.remember(d);
        }
        self.last_report = Some(Instant::now());
    }
}

/// A fresh view of the state and the input lag (from the broker thread).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Viewed {
    pub view: RouterView,
    pub lag: Vec<(String, i32, i64)>,
}

impl Handler<Viewed> for ReadModel {
    type Result = ();

    fn handle(&mut self, msg: Viewed, _: &mut Context<Self>) {
        self.metrics.observe_view(&msg.view);
        self.metrics.observe_lag(&msg.lag);
        self.health.assigned_partitions = msg.lag.len();
        self.health.lag = msg.lag.iter().map(|(_, _, n)| n).sum();
        self.view = Arc::new(msg.view);
        self.last_report = Some(Instant::now());
    }
}

/// The broker loop's state changed: `true` once recovered, `false` when it stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Ready(pub bool);

impl Handler<Ready> for ReadModel {
    type Result = ();

    fn handle(&mut self, Ready(ready): Ready, _: &mut Context<Self>) {
        self.health.ready = ready;
        self.metrics.ready.set(i64::from(ready));
        if !ready {
            self.health.assigned_partitions = 0;
            self.health.kafka_reachable = None;
        }
    }
}

/// A snapshot was written (from the broker thread).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SnapshotWritten(pub Duration);

impl Handler<SnapshotWritten> for ReadModel {
    type Result = ();

    fn handle(&mut self, SnapshotWritten(took): SnapshotWritten, _: &mut Context<Self>) {
        self.metrics.observe(&self.metrics.snapshot_seconds, took);
    }
}

/// Whether Kafka answered the broker's last metadata request (from the broker thread).
#[derive(Message)]
#[rtype(result = "()")]
pub struct KafkaReachable(pub bool);

impl Handler<KafkaReachable> for ReadModel {
    type Result = ();

    fn handle(&mut self, KafkaReachable(ok): KafkaReachable, _: &mut Context<Self>) {
        self.health.kafka_reachable = Some(ok);
    }
}

/// The latest view.
#[derive(Message)]
#[rtype(result = "Arc<RouterView>")]
pub struct GetView;

impl Handler<GetView> for ReadModel {
    type Result = MessageResult<GetView>;

    fn handle(&mut self, _: GetView, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.view.clone())
    }
}

/// A recent decision by request id.
#[derive(Message)]
#[rtype(result = "Option<Arc<DecisionV1>>")]
pub struct GetDecision(pub String);

impl Handler<GetDecision> for ReadModel {
    type Result = Option<Arc<DecisionV1>>;

    fn handle(&mut self, GetDecision(id): GetDecision, _: &mut Context<Self>) -> Self::Result {
        self.decisions.get(id.as_bytes()).cloned()
    }
}

/// Health of the broker loop.
#[derive(Message)]
#[rtype(result = "BrokerHealth")]
pub struct GetHealth;

impl Handler<GetHealth> for ReadModel {
    type Result = MessageResult<GetHealth>;

    fn handle(&mut self, _: GetHealth, _: &mut Context<Self>) -> Self::Result {
        let mut h = self.health.clone();
        h.last_report_ms = self.last_report.map(|t| t.elapsed().as_millis() as u64);
        MessageResult(h)
    }
}

/// The decision mix of the last `seconds` seconds, oldest first.
#[derive(Message)]
#[rtype(result = "Vec<MixSecond>")]
pub struct GetMix(pub usize);

impl Handler<GetMix> for ReadModel {
    type Result = MessageResult<GetMix>;

    fn handle(&mut self, GetMix(n): GetMix, _: &mut Context<Self>) -> Self::Result {
        let skip = self.mix.len().saturating_sub(n);
        MessageResult(self.mix.iter().skip(skip).cloned().collect())
    }
}

/// Per-lane decision counts, by lane.
#[derive(Message)]
#[rtype(result = "BTreeMap<String, LaneStats>")]
pub struct GetLaneStats;

impl Handler<GetLaneStats> for ReadModel {
    type Result = MessageResult<GetLaneStats>;

    fn handle(&mut self, _: GetLaneStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.lane_stats
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        )
    }
}

/// Feeds the model from the broker thread: blocks on each `send` (a full mailbox slows the
/// broker), asks for a view every `interval`.
pub struct ModelSink {
    model: Addr<ReadModel>,
    interval: Duration,
    last_view: Option<Instant>,
}

impl ModelSink {
    pub fn new(model: Addr<ReadModel>, interval: Duration) -> Self {
        ModelSink {
            model,
            interval,
            last_view: None,
        }
    }

    fn send<M>(&self, msg: M)
    where
        M: Message<Result = ()> + Send + 'static,
        ReadModel: Handler<M>,
    {
        // The model is gone only while the process shuts down: nothing left to show.
        let _ = futures_executor::block_on(self.model.send(msg));
    }

    /// Tells the model the broker loop stopped (it restarts or the process ends).
    pub fn stopped(&self) {
        self.send(Ready(false));
    }
}

impl BatchSink for ModelSink {
    fn committed(&mut self, batch: CommittedBatch) {
        self.send(Committed(batch));
    }

    fn view_due(&mut self) -> bool {
        self.last_view.is_none_or(|t| t.elapsed() >= self.interval)
    }

    fn view(&mut self, view: RouterView, lag: Vec<(String, i32, i64)>) {
        self.last_view = Some(Instant::now());
        self.send(Viewed { view, lag });
    }

    fn snapshot_written(&mut self, took: Duration) {
        self.send(SnapshotWritten(took));
    }

    fn kafka_reachable(&mut self, ok: bool) {
        self.send(KafkaReachable(ok));
    }

    fn ready(&mut self) {
        self.last_view = None;
        self.send(Ready(true));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Mode, Profile, Timestamp};

    fn decision(id: &str) -> DecisionV1 {
        DecisionV1 {
            request_id: id.into(),
            tenant_id: "t".into(),
            lane: "a/b".into(),
            profile: Some(Profile::ManagedProvider),
            mode: Mode::Live,
            target: Some("a/b".into()),
            reason: Reason::Tail,
            considered: vec![],
            estimated_cost_micros: 1,
            decided_at: Timestamp(0),
            seq: 1,
            policy_version: 0,
            detail: None,
            source: None,
        }
    }

    #[actix::test]
    async fn keeps_the_last_decisions_and_counts_them() {
        let metrics = Arc::new(Metrics::new());
        let model = ReadModel::new(metrics.clone(), 2).start();
        let batch = CommittedBatch {
            decisions: vec![decision("r1"), decision("r2"), decision("r3")],
            inputs: 3,
            already_applied: 2,
            ..CommittedBatch::default()
        };
        model.send(Committed(batch)).await.unwrap();
        assert!(model
            .send(GetDecision("r1".into()))
            .await
            .unwrap()
            .is_none());
        let r3 = model.send(GetDecision("r3".into())).await.unwrap().unwrap();
        assert_eq!(&*r3.request_id, "r3");
        let mix = model.send(GetMix(60)).await.unwrap();
        assert_eq!(mix.last().unwrap().counts["managed_provider/tail"], 3);
        let health = model.send(GetHealth).await.unwrap();
        assert_eq!((health.batches, health.decisions), (1, 3));
        let text = metrics.render();
        assert!(text.contains("zumik_inputs_total 3"), "{text}");
        assert!(
            text.contains("zumik_inputs_already_applied_total 2"),
            "{text}"
        );
    }
}
