//! The actix actors of the broker (DESIGN §6): one actor per lane, per BYOC cluster and per
//! tenant, each a thin shell that owns one decider's state and runs the core's step for it
//! (`core::router::{lane_step, lane_hot_step, cluster_step, tenant_step}`) on each message.
//!
//! [`ActorRouter`] is the dispatcher: it takes input events in order, sends each actor the
//! commands it owes it and turns one actor's facts into commands for the others, as
//! `core::Router` does in-process. It awaits every reply before the next command, depth-first,
//! so the commands reach each actor in exactly the order `core::Router` runs them: decisions,
//! journal and snapshot bytes are the same as the inline router's (property 8 of
//! `tests/properties.rs` checks this on random workloads, the unit tests below on the examples). Actors never read each other's state; what crosses between them
//! is the commands of `docs/architecture.md` ("The router: the only place actors meet").
//!
//! Besides addresses, the dispatcher keeps only each cluster's lanes (from its registrations, so
//! a new lane asks just the clusters serving it for their view) and a tenant's last view while
//! it cannot change (`TenantView::is_stable`: until that tenant's next policy), so most
//! requests take one round trip (their lane) rather than two.
//!
//! Nothing queues: the dispatcher awaits each reply before its next send, so an actor holds at
//! most one message (mailboxes are bounded too, [`MAILBOX`]), and a slow actor slows the
//! dispatcher and, through it, consumption.
//!
//! [`ActorEngine`] runs all of it on an actix system of the calling thread: the broker loop, a
//! blocking thread, hands it one input or a run of inputs at a time, and the system runs only
//! inside that call. Polls, transactions and commits happen between calls; a run's produce
//! calls happen between two of its inputs, when no actor has work.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use actix::prelude::*;
use futures_util::future::LocalBoxFuture;

use crate::core::cluster::{ClusterCommand, ClusterEvent, ClusterState, ClusterView};
use crate::core::index::HashIndex;
use crate::core::lane::{LaneCommand, LaneEvent, LaneState};
use crate::core::router::{
    cluster_step, create_lane, default_tenant_view, lane_hot_step, lane_step, tenant_step,
    unit_breaker_trip, unit_usage, ClusterFanOut, FollowUps, JournalEntry, RouterState,
    SnapshotError, Warning, SNAPSHOT_VERSION,
};
use crate::core::tenant::{TenantCommand, TenantEvent, TenantPolicy, TenantState, TenantView};
use crate::core::view::{LaneView, RouterView};
use crate::core::{Output, PriceTable, Router, RoutingConfig};
use crate::events::Name;
use crate::events::{
    ClusterDeregisteredV1, ClusterRegisteredV1, InputEvent, ProviderStatus, RequestV1, Timestamp,
};
use crate::kafka::config::EngineKind;

/// Mailbox capacity of every lane, cluster and tenant actor.
pub const MAILBOX: usize = 16;

/// An actor's message could not be delivered or answered: the actor stopped. Actors stop when
/// the dispatcher drops them or when a handler panics (the panic is logged), so this
/// is a bug, not an operating condition: the broker stops rather than restart on it.
#[derive(Debug, thiserror::Error)]
#[error("actor mailbox closed: {0}")]
pub struct ActorGone(#[from] MailboxError);

// ---- lane ----------------------------------------------------------------------------------

/// One lane: its reservations, clusters, activation and decision sequence.
pub struct LaneActor {
    state: LaneState,
    cfg: Arc<RoutingConfig>,
    events: Vec<LaneEvent>,
}

impl Actor for LaneActor {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX);
    }
}

/// A command for a lane. `hot` marks a request or completion from the input (a route first
/// expires what is due, see `core::router::lane_hot_step`). `out` is the dispatcher's output,
/// lent for the message: the actor appends to it and hands it back with its reply, so no
/// message allocates buffers of its own.
#[derive(Message)]
#[rtype(result = "LaneReply")]
pub struct LaneMsg {
    pub cmd: LaneCommand,
    pub hot: bool,
    pub out: Output,
}

/// What a lane command produced: the lent output with its decisions, journal and warnings
/// appended, and the commands it gives the cluster and the tenant.
pub struct LaneReply {
    pub out: Output,
    pub follow_ups: FollowUps,
}

impl Handler<LaneMsg> for LaneActor {
    type Result = MessageResult<LaneMsg>;
    fn handle(&mut self, msg: LaneMsg, _: &mut Context<Self>) -> Self::Result {
        let mut out = msg.out;
        let step = if msg.hot { lane_hot_step } else { lane_step };
        let follow_ups = step(
            &mut self.state,
            &self.cfg,
            &mut self.events,
            msg.cmd,
            &mut out,
        );
        MessageResult(LaneReply { out, follow_ups })
    }
}

/// What operators see of the lane (`core::view::LaneView`).
#[derive(Message)]
#[rtype(result = "LaneView")]
pub struct GetLaneView;

impl Handler<GetLaneView> for LaneActor {
    type Result = MessageResult<GetLaneView>;
    fn handle(&mut self, _: GetLaneView, _: &mut Context<Self>) -> Self::Result {
        MessageResult(LaneView::of(&self.state))
    }
}

// ---- cluster -------------------------------------------------------------------------------

/// One BYOC cluster: registration, heartbeats, health and breaker.
pub struct ClusterActor {
    state: ClusterState,
    cfg: Arc<RoutingConfig>,
    events: Vec<ClusterEvent>,
}

impl Actor for ClusterActor {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX);
    }
}

#[derive(Message)]
#[rtype(result = "ClusterReply")]
pub struct ClusterMsg {
    pub cmd: ClusterCommand,
    /// The dispatcher's output, lent for the message (as [`LaneMsg::out`]).
    pub out: Output,
}

/// What a cluster command produced: the lent output with its journal record, the views its
/// lanes get, and for a registration the lanes it serves now.
pub struct ClusterReply {
    pub out: Output,
    pub fan_out: ClusterFanOut,
    pub lanes: Option<Vec<Name>>,
}

impl Handler<ClusterMsg> for ClusterActor {
    type Result = MessageResult<ClusterMsg>;
    fn handle(&mut self, msg: ClusterMsg, _: &mut Context<Self>) -> Self::Result {
        let mut out = msg.out;
        let registration = matches!(msg.cmd, ClusterCommand::Register(_));
        let fan_out = cluster_step(
            &mut self.state,
            &self.cfg,
            &mut self.events,
            msg.cmd,
            &mut out,
        );
        let lanes = registration.then(|| self.state.lanes.clone());
        MessageResult(ClusterReply {
            out,
            fan_out,
            lanes,
        })
    }
}

/// The view a newly created lane gets of this cluster, if the cluster serves it.
#[derive(Message)]
#[rtype(result = "Option<(ClusterView, Timestamp)>")]
pub struct CatchUp(pub Name);

impl Handler<CatchUp> for ClusterActor {
    type Result = Option<(ClusterView, Timestamp)>;
    fn handle(&mut self, msg: CatchUp, _: &mut Context<Self>) -> Self::Result {
        self.state.catch_up(&msg.0, &self.cfg)
    }
}

// ---- tenant --------------------------------------------------------------------------------

/// One tenant: policy, version and the month's spend.
pub struct TenantActor {
    state: TenantState,
    cfg: Arc<RoutingConfig>,
    events: Vec<TenantEvent>,
}

impl Actor for TenantActor {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX);
    }
}

/// A command for a tenant; the reply is the lent output (as [`LaneMsg::out`]).
#[derive(Message)]
#[rtype(result = "Output")]
pub struct TenantMsg {
    pub cmd: TenantCommand,
    pub out: Output,
}

impl Handler<TenantMsg> for TenantActor {
    type Result = MessageResult<TenantMsg>;
    fn handle(&mut self, msg: TenantMsg, _: &mut Context<Self>) -> Self::Result {
        let mut out = msg.out;
        tenant_step(
            &mut self.state,
            &self.cfg,
            &mut self.events,
            msg.cmd,
            &mut out,
        );
        MessageResult(out)
    }
}

/// The view a request at event time `ts` gets of this tenant (`default`: the policy of tenants
/// without one).
#[derive(Message)]
#[rtype(result = "TenantView")]
pub struct ViewAt {
    pub ts: Timestamp,
    pub default: Arc<TenantPolicy>,
}

impl Handler<ViewAt> for TenantActor {
    type Result = MessageResult<ViewAt>;
    fn handle(&mut self, msg: ViewAt, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.state.view(msg.ts, &msg.default))
    }
}

// ---- state, for snapshots and views --------------------------------------------------------

/// A copy of an actor's state (snapshots, the status page).
pub struct GetState<S>(std::marker::PhantomData<S>);

impl<S> GetState<S> {
    pub fn new() -> Self {
        GetState(std::marker::PhantomData)
    }
}

impl<S> Default for GetState<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: 'static> Message for GetState<S> {
    type Result = S;
}

macro_rules! state_handler {
    ($actor:ty, $state:ty) => {
        impl Handler<GetState<$state>> for $actor {
            type Result = MessageResult<GetState<$state>>;
            fn handle(&mut self, _: GetState<$state>, _: &mut Context<Self>) -> Self::Result {
                MessageResult(self.state.clone())
            }
        }
    };
}
state_handler!(LaneActor, LaneState);
state_handler!(ClusterActor, ClusterState);
state_handler!(TenantActor, TenantState);

// ---- the dispatcher ------------------------------------------------------------------------

/// A tenant's actor and, while it holds, the view it last gave that cannot change before its
/// next policy ([`TenantView::is_stable`]): most requests then need no round trip to the tenant.
struct TenantEntry {
    addr: Addr<TenantActor>,
    stable_view: Option<TenantView>,
}

/// A cluster's actor and the lanes it serves (as of its last registration), so a new lane asks
/// only the clusters that serve it for their view.
struct ClusterEntry {
    addr: Addr<ClusterActor>,
    lanes: Vec<Name>,
}

/// A lane's actor and the provider it belongs to (for provider-health fan-out).
struct LaneEntry {
    addr: Addr<LaneActor>,
    provider: Name,
}

/// The dispatcher over all actors of one process: `core::Router`'s wiring, by messages. Must be
/// used inside a running actix system (see [`ActorEngine`]).
pub struct ActorRouter {
    cfg: Arc<RoutingConfig>,
    prices: Arc<PriceTable>,
    default_policy: Arc<TenantPolicy>,
    lanes: HashIndex<Name, LaneEntry>,
    clusters: BTreeMap<Name, ClusterEntry>,
    tenants: HashIndex<Name, TenantEntry>,
    providers: BTreeMap<Name, (ProviderStatus, Timestamp)>,
    applied: u64,
}

impl ActorRouter {
    /// Starts an actor for every lane, cluster and tenant of `state` (empty for a new router).
    pub fn start(cfg: Arc<RoutingConfig>, prices: Arc<PriceTable>, state: RouterState) -> Self {
        let RouterState {
            lanes,
            clusters,
            tenants,
            providers,
            applied,
        } = state;
        let mut r = ActorRouter {
            cfg,
            prices,
            default_policy: Arc::new(TenantPolicy::permissive()),
            lanes: HashIndex::default(),
            clusters: BTreeMap::new(),
            tenants: HashIndex::default(),
            providers,
            applied,
        };
        for (key, mut lane) in lanes.0 {
            lane.rebuild_expiry();
            r.start_lane(key, lane);
        }
        for (key, cluster) in clusters {
            r.start_cluster(key, cluster);
        }
        for (key, tenant) in tenants.0 {
            r.start_tenant(key, tenant);
        }
        r
    }

    fn start_lane(&mut self, key: Name, state: LaneState) -> Addr<LaneActor> {
        let provider = state.provider;
        let addr = LaneActor {
            state,
            cfg: self.cfg.clone(),
            events: Vec::with_capacity(4),
        }
        .start();
        self.lanes.insert(
            key,
            LaneEntry {
                addr: addr.clone(),
                provider,
            },
        );
        addr
    }

    fn start_cluster(&mut self, key: Name, state: ClusterState) {
        let lanes = state.lanes.clone();
        let addr = ClusterActor {
            state,
            cfg: self.cfg.clone(),
            events: Vec::with_capacity(4),
        }
        .start();
        self.clusters.insert(key, ClusterEntry { addr, lanes });
    }

    fn start_tenant(&mut self, key: Name, state: TenantState) -> Addr<TenantActor> {
        let addr = TenantActor {
            state,
            cfg: self.cfg.clone(),
            events: Vec::with_capacity(4),
        }
        .start();
        self.tenants.insert(
            key,
            TenantEntry {
                addr: addr.clone(),
                stable_view: None,
            },
        );
        addr
    }

    /// Input events applied so far.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Applies one validated input event (as `core::Router::apply`).
    pub async fn apply(&mut self, event: InputEvent, out: &mut Output) -> Result<(), ActorGone> {
        self.applied += 1;
        if out.record_journal {
            out.journal.push(JournalEntry::Input(event.clone()));
        }
        match event {
            InputEvent::Request(r) => self.on_request(r, out).await,
            InputEvent::Completion(c) => self.hot_lane_cmd(LaneCommand::Complete(c), out).await,
            InputEvent::ClusterRegistered(e) => self.on_register(e, out).await,
            InputEvent::ClusterDeregistered(e) => self.on_deregister(e, out).await,
            InputEvent::ClusterHeartbeat(hb) => {
                let id = hb.cluster_id.clone();
                self.cluster_cmd(&id, ClusterCommand::Heartbeat(Box::new(hb)), out)
                    .await
            }
            InputEvent::ProviderHealth(p) => {
                let provider = Name::new(&p.provider);
                self.providers.insert(provider, (p.status, p.ts));
                let mut lanes: Vec<Name> = self
                    .lanes
                    .iter()
                    .filter(|(_, e)| e.provider == provider)
                    .map(|(k, _)| *k)
                    .collect();
                // Hash order must not decide the order of the journal: lanes go in id order.
                lanes.sort_unstable();
                for lane in lanes {
                    let cmd = LaneCommand::ProviderHealth {
                        status: p.status,
                        ts: p.ts,
                    };
                    self.lane_cmd(&lane, cmd, out).await?;
                }
                Ok(())
            }
            InputEvent::TenantPolicy(p) => {
                let id = Name::new(&p.tenant_id);
                self.tenant_cmd(&id, TenantCommand::SetPolicy(Box::new(p)), out)
                    .await
            }
            InputEvent::LaneActivated(a) => {
                let lane = self.lane_key(&a.lane, out).await?;
                let cmd = LaneCommand::Activate {
                    report_digest: a.report_digest,
                    ts: a.ts,
                };
                self.lane_cmd(&lane, cmd, out).await
            }
            InputEvent::LaneDeactivated(a) => {
                let lane = self.lane_key(&a.lane, out).await?;
                let cmd = LaneCommand::Deactivate {
                    reason: a.reason,
                    ts: a.ts,
                };
                self.lane_cmd(&lane, cmd, out).await
            }
            InputEvent::LaneActivate(a) => {
                let lane = self.lane_key(&a.lane, out).await?;
                let cmd = LaneCommand::RequestActivation {
                    report_digest: a.report_digest,
                    ts: a.ts,
                };
                self.lane_cmd(&lane, cmd, out).await
            }
            InputEvent::GateReport(r) => {
                let lane = self.lane_key(&r.lane, out).await?;
                self.lane_cmd(&lane, LaneCommand::RecordReport(r), out)
                    .await
            }
            InputEvent::Usage(u) => {
                let (id, cmd) = unit_usage(u);
                self.tenant_cmd(&id, cmd, out).await
            }
            InputEvent::BreakerTripped(b) => {
                let (id, cmd) = unit_breaker_trip(b);
                self.cluster_cmd(&id, cmd, out).await
            }
        }
    }

    async fn on_request(&mut self, r: RequestV1, out: &mut Output) -> Result<(), ActorGone> {
        let tenant = match self.tenants.get(r.tenant_id.as_str()) {
            Some(t) => match &t.stable_view {
                Some(view) => view.clone(),
                None => {
                    let view = t
                        .addr
                        .send(ViewAt {
                            ts: r.ts,
                            default: self.default_policy.clone(),
                        })
                        .await?;
                    if view.is_stable() {
                        // Valid until the tenant's next policy (`tenant_cmd` drops it).
                        let entry = self.tenants.get_mut(r.tenant_id.as_str());
                        entry.expect("looked up above").stable_view = Some(view.clone());
                    }
                    view
                }
            },
            None => default_tenant_view(&r.tenant_id, &self.default_policy),
        };
        self.hot_lane_cmd(LaneCommand::Route { request: r, tenant }, out)
            .await
    }

    async fn on_register(
        &mut self,
        e: ClusterRegisteredV1,
        out: &mut Output,
    ) -> Result<(), ActorGone> {
        let id = Name::new(&e.cluster_id);
        let old_lanes = match self.clusters.get(&id) {
            Some(c) => c.lanes.clone(),
            None => {
                self.start_cluster(id, ClusterState::registered(&e));
                vec![]
            }
        };
        let ts = e.ts;
        self.cluster_cmd(&id, ClusterCommand::Register(Box::new(e)), out)
            .await?;
        let new_lanes = &self.clusters[&id].lanes;
        let gone: Vec<Name> = old_lanes
            .into_iter()
            .filter(|l| !new_lanes.contains(l))
            .collect();
        for lane in &gone {
            let cmd = LaneCommand::ClusterRemoved { cluster_id: id, ts };
            self.lane_cmd(lane, cmd, out).await?;
        }
        Ok(())
    }

    async fn on_deregister(
        &mut self,
        e: ClusterDeregisteredV1,
        out: &mut Output,
    ) -> Result<(), ActorGone> {
        let Some(ClusterEntry { addr, .. }) = self.clusters.remove(e.cluster_id.as_str()) else {
            out.warnings.push(Warning {
                code: "unknown_cluster",
                message: format!("deregistration of unknown cluster {}", e.cluster_id),
            });
            return Ok(());
        };
        // The last message to this actor: dropping its address stops it.
        let c = addr.send(GetState::<ClusterState>::new()).await?;
        if out.record_journal {
            out.journal.push(JournalEntry::ClusterRemoved {
                cluster_id: c.cluster_id,
            });
        }
        for lane in &c.lanes {
            let cmd = LaneCommand::ClusterRemoved {
                cluster_id: c.cluster_id,
                ts: e.ts,
            };
            self.lane_cmd(lane, cmd, out).await?;
        }
        Ok(())
    }

    /// The lane's key, starting its actor (priced, with the clusters and provider status that
    /// already concern it) on first sight.
    async fn lane_key(&mut self, lane: &str, out: &mut Output) -> Result<Name, ActorGone> {
        if let Some((k, _)) = self.lanes.get_key_value(lane) {
            return Ok(*k);
        }
        let state = create_lane(&self.prices, lane, out);
        let key = state.lane;
        let provider = state.provider;
        self.start_lane(key, state);
        if let Some(&(status, ts)) = self.providers.get(&provider) {
            if status == ProviderStatus::Down {
                let cmd = LaneCommand::ProviderHealth { status, ts };
                self.lane_cmd(&key, cmd, out).await?;
            }
        }
        let mut views = Vec::new();
        for c in self.clusters.values().filter(|c| c.lanes.contains(&key)) {
            if let Some(v) = c.addr.send(CatchUp(key)).await? {
                views.push(v);
            }
        }
        for (view, ts) in views {
            self.lane_cmd(&key, LaneCommand::ClusterUpdated { view, ts }, out)
                .await?;
        }
        Ok(key)
    }

    /// A request's route or a completion, to the lane it names (as `Router::on_request` and
    /// `Router::on_completion`).
    async fn hot_lane_cmd(&mut self, cmd: LaneCommand, out: &mut Output) -> Result<(), ActorGone> {
        let lane = match &cmd {
            LaneCommand::Route { request, .. } => request.model.as_str(),
            LaneCommand::Complete(c) => c.model.as_str(),
            _ => unreachable!("only requests and completions take the hot path"),
        };
        let Some(entry) = self.lanes.get(lane) else {
            let key = self.lane_key(lane, out).await?;
            return self.lane_cmd(&key, cmd, out).await;
        };
        let reply = entry
            .addr
            .send(LaneMsg {
                cmd,
                hot: true,
                out: std::mem::take(out),
            })
            .await?;
        *out = reply.out;
        self.follow_up(reply.follow_ups, out).await
    }

    /// One command to a lane, and what follows from it. Boxed: a lane's follow-ups can reach a
    /// cluster whose views come back to lanes.
    fn lane_cmd<'a>(
        &'a mut self,
        lane: &'a Name,
        cmd: LaneCommand,
        out: &'a mut Output,
    ) -> LocalBoxFuture<'a, Result<(), ActorGone>> {
        Box::pin(async move {
            let addr = match self.lanes.get(lane) {
                Some(e) => e.addr.clone(),
                None => {
                    let key = self.lane_key(lane, out).await?;
                    self.lanes[&key].addr.clone()
                }
            };
            let reply = addr
                .send(LaneMsg {
                    cmd,
                    hot: false,
                    out: std::mem::take(out),
                })
                .await?;
            *out = reply.out;
            self.follow_up(reply.follow_ups, out).await
        })
    }

    async fn follow_up(
        &mut self,
        (to_cluster, to_tenant): FollowUps,
        out: &mut Output,
    ) -> Result<(), ActorGone> {
        if let Some((id, cmd)) = to_cluster {
            self.cluster_cmd(&id, cmd, out).await?;
        }
        if let Some((id, cmd)) = to_tenant {
            self.tenant_cmd(&id, cmd, out).await?;
        }
        Ok(())
    }

    /// A cluster command and its views fanned out to the cluster's lanes (a registration also
    /// updates the lanes the dispatcher keeps for it).
    fn cluster_cmd<'a>(
        &'a mut self,
        id: &'a str,
        cmd: ClusterCommand,
        out: &'a mut Output,
    ) -> LocalBoxFuture<'a, Result<(), ActorGone>> {
        Box::pin(async move {
            let Some(entry) = self.clusters.get_mut(id) else {
                out.warnings.push(Warning {
                    code: "unknown_cluster",
                    message: format!("event for unregistered cluster {id} ignored"),
                });
                return Ok(());
            };
            let reply = entry
                .addr
                .send(ClusterMsg {
                    cmd,
                    out: std::mem::take(out),
                })
                .await?;
            if let Some(lanes) = reply.lanes {
                // Before the fan-out: a lane it creates catches up from the clusters serving it.
                entry.lanes = lanes;
            }
            *out = reply.out;
            let ts = reply.fan_out.ts;
            for (lane, view) in reply.fan_out.views {
                self.lane_cmd(&lane, LaneCommand::ClusterUpdated { view, ts }, out)
                    .await?;
            }
            Ok(())
        })
    }

    async fn tenant_cmd(
        &mut self,
        id: &str,
        cmd: TenantCommand,
        out: &mut Output,
    ) -> Result<(), ActorGone> {
        let addr = match self.tenants.get_mut(id) {
            Some(t) => {
                if matches!(cmd, TenantCommand::SetPolicy(_)) {
                    t.stable_view = None;
                }
                t.addr.clone()
            }
            None => {
                let id = Name::new(id);
                self.start_tenant(id, TenantState::new(id))
            }
        };
        *out = addr
            .send(TenantMsg {
                cmd,
                out: std::mem::take(out),
            })
            .await?;
        Ok(())
    }

    /// Snapshot bytes, the same as `RouterState::encode` of the inline router's state after the
    /// same inputs, gathered a chunk of actors at a time and encoded as the states arrive, so no
    /// second copy of the whole state is ever held (at 100 k tenants that copy is ~60 MB).
    pub async fn snapshot(&self) -> Result<Vec<u8>, ActorGone> {
        let mut out = vec![SNAPSHOT_VERSION];
        // `RouterState`'s derived encoding, field by field: a map is its length, then its
        // entries in key order (`HashIndex` sorts, `BTreeMap` is sorted).
        let mut lanes: Vec<_> = self.lanes.iter().map(|(k, e)| (k, &e.addr)).collect();
        lanes.sort_unstable_by_key(|(k, _)| *k);
        put_states::<_, LaneState>(&lanes, &mut out).await?;
        let clusters: Vec<_> = self.clusters.iter().map(|(k, e)| (k, &e.addr)).collect();
        put_states::<_, ClusterState>(&clusters, &mut out).await?;
        let mut tenants: Vec<_> = self.tenants.iter().map(|(k, e)| (k, &e.addr)).collect();
        tenants.sort_unstable_by_key(|(k, _)| *k);
        put_states::<_, TenantState>(&tenants, &mut out).await?;
        put(&self.providers, &mut out);
        put(&self.applied, &mut out);
        Ok(out)
    }

    /// What the status page shows: each lane actor views its own state (no copy of its
    /// reservations crosses), the clusters' states are gathered.
    pub async fn view(&self) -> Result<RouterView, ActorGone> {
        let lanes = ask_all(self.lanes.values().map(|e| &e.addr), || GetLaneView).await?;
        let clusters: Vec<ClusterState> =
            ask_all(self.clusters.values().map(|e| &e.addr), GetState::new).await?;
        Ok(RouterView::from_parts(
            lanes,
            clusters.iter(),
            self.applied,
            &self.cfg,
        ))
    }
}

/// Appends the bincode (standard config, as snapshots) of `value` to `out`, and returns `out`.
fn put<'o, T: bincode::Encode + ?Sized>(value: &T, out: &'o mut Vec<u8>) -> &'o mut Vec<u8> {
    // Plain data: encoding into a Vec cannot fail.
    bincode::encode_into_std_write(value, out, bincode::config::standard()).expect("state encodes");
    out
}

/// A map of actor states in `RouterState`'s derived encoding — its length, then each key with
/// the state its actor gives, in the order of `entries` (key order) — asking a chunk of actors
/// at a time.
async fn put_states<A, S>(entries: &[(&Name, &Addr<A>)], out: &mut Vec<u8>) -> Result<(), ActorGone>
where
    A: Actor + Handler<GetState<S>>,
    A::Context: actix::dev::ToEnvelope<A, GetState<S>>,
    S: bincode::Encode + Send + 'static,
{
    const CHUNK: usize = 1024;
    put(&(entries.len() as u64), out);
    for chunk in entries.chunks(CHUNK) {
        let states = ask_all(chunk.iter().map(|(_, a)| *a), GetState::new).await?;
        for ((key, _), state) in chunk.iter().zip(states) {
            put(&state, put(*key, out));
        }
    }
    Ok(())
}

/// Asks each actor of `addrs` one message, all at once (every actor holds one, so the system
/// answers them in one pass instead of one round trip each), and returns the answers in order.
async fn ask_all<'a, A, M>(
    addrs: impl Iterator<Item = &'a Addr<A>>,
    msg: impl Fn() -> M,
) -> Result<Vec<M::Result>, ActorGone>
where
    A: Actor + Handler<M>,
    A::Context: actix::dev::ToEnvelope<A, M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    let asks = addrs.map(|a| a.send(msg()));
    Ok(futures_util::future::try_join_all(asks).await?)
}

/// An actix system owned by the calling thread, shared by the engines of that thread (the
/// broker's units): one system per thread, run only inside the engines' calls.
#[derive(Clone)]
pub struct ActorSystem(Rc<SystemRunner>);

impl ActorSystem {
    /// The system on a current-thread runtime without I/O or timer drivers: the actors only
    /// pass messages. With the drivers (actix's default runtime), every time the dispatcher
    /// waited for a reply the scheduler polled epoll and processed the timer wheel (a sixth of
    /// the engine's time in a profile of `decide_actors/full_mix`).
    pub fn new() -> Self {
        let system = System::with_tokio_rt(|| {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a current-thread runtime without drivers builds")
        });
        ActorSystem(Rc::new(system))
    }
}

impl Default for ActorSystem {
    fn default() -> Self {
        Self::new()
    }
}

/// The actor router on an actix system owned by the calling thread. Each call runs the system
/// until that call's work is done; between calls the actors wait in their mailboxes.
pub struct ActorEngine {
    system: ActorSystem,
    router: ActorRouter,
}

impl ActorEngine {
    /// Actors for `state` (`RouterState::default()` for a new router), on a system of their own.
    pub fn new(cfg: Arc<RoutingConfig>, prices: Arc<PriceTable>, state: RouterState) -> Self {
        Self::on(&ActorSystem::new(), cfg, prices, state)
    }

    /// Actors for `state` on `system` (shared with other engines of this thread).
    pub fn on(
        system: &ActorSystem,
        cfg: Arc<RoutingConfig>,
        prices: Arc<PriceTable>,
        state: RouterState,
    ) -> Self {
        let system = system.clone();
        let router = system
            .0
            .block_on(async { ActorRouter::start(cfg, prices, state) });
        ActorEngine { system, router }
    }

    /// Actors for the state of snapshot bytes.
    pub fn restore(
        cfg: Arc<RoutingConfig>,
        prices: Arc<PriceTable>,
        bytes: &[u8],
    ) -> Result<Self, SnapshotError> {
        Ok(ActorEngine::new(cfg, prices, RouterState::decode(bytes)?))
    }

    pub fn apply(&mut self, event: InputEvent, out: &mut Output) -> Result<(), ActorGone> {
        let router = &mut self.router;
        self.system.0.block_on(router.apply(event, out))
    }

    pub fn view(&self) -> Result<RouterView, ActorGone> {
        self.system.0.block_on(self.router.view())
    }

    pub fn snapshot(&self) -> Result<Vec<u8>, ActorGone> {
        self.system.0.block_on(self.router.snapshot())
    }

    pub fn applied(&self) -> u64 {
        self.router.applied()
    }

    /// Actors started: lanes, clusters, tenants.
    pub fn actors(&self) -> (usize, usize, usize) {
        let r = &self.router;
        (r.lanes.len(), r.clusters.len(), r.tenants.len())
    }
}

/// What runs the deciders in the broker (`kafka.engine`): the actors, or the inline router.
pub enum Engine {
    Actors(ActorEngine),
    Inline(Router),
}

impl Engine {
    pub fn new(kind: EngineKind, cfg: Arc<RoutingConfig>, prices: Arc<PriceTable>) -> Self {
        Self::on(&ActorSystem::new(), kind, cfg, prices)
    }

    /// An engine whose actors (if any) run on `system`, shared with other engines.
    pub fn on(
        system: &ActorSystem,
        kind: EngineKind,
        cfg: Arc<RoutingConfig>,
        prices: Arc<PriceTable>,
    ) -> Self {
        match kind {
            EngineKind::Actors => {
                Engine::Actors(ActorEngine::on(system, cfg, prices, RouterState::default()))
            }
            EngineKind::Inline => Engine::Inline(Router::new(cfg, prices)),
        }
    }

    /// Replaces the state by that of snapshot bytes (either engine's: they are the same).
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let state = RouterState::decode(bytes)?;
        match self {
            Engine::Actors(a) => {
                let (cfg, prices) = (a.router.cfg.clone(), a.router.prices.clone());
                *a = ActorEngine::on(&a.system.clone(), cfg, prices, state);
            }
            Engine::Inline(r) => {
                let (cfg, prices) = r.parts();
                *r = Router::from_state(cfg, prices, state);
            }
        }
        Ok(())
    }

    pub fn apply(&mut self, event: InputEvent, out: &mut Output) -> Result<(), ActorGone> {
        match self {
            Engine::Actors(a) => a.apply(event, out),
            Engine::Inline(r) => {
                r.apply(event, out);
                Ok(())
            }
        }
    }

    /// Applies `inputs` in order, calling `each` with the output and the input's tag after each
    /// input (as [`Engine::apply`] would leave it). The actors take the whole run within one
    /// run of their system: entering the runtime once per run rather than once per input saves
    /// its per-call work (context, RNG seed, busy-time clock reads). `each` runs on this thread
    /// between two inputs, while every actor waits for its next message.
    pub fn apply_each<T, E: From<ActorGone>>(
        &mut self,
        inputs: impl IntoIterator<Item = (InputEvent, T)>,
        out: &mut Output,
        mut each: impl FnMut(&mut Output, T) -> Result<(), E>,
    ) -> Result<(), E> {
        match self {
            Engine::Actors(a) => {
                let router = &mut a.router;
                a.system.0.block_on(async move {
                    for (event, tag) in inputs {
                        router.apply(event, out).await?;
                        each(out, tag)?;
                    }
                    Ok(())
                })
            }
            Engine::Inline(r) => {
                for (event, tag) in inputs {
                    r.apply(event, out);
                    each(out, tag)?;
                }
                Ok(())
            }
        }
    }

    pub fn snapshot(&self) -> Result<Vec<u8>, ActorGone> {
        match self {
            Engine::Actors(a) => a.snapshot(),
            Engine::Inline(r) => Ok(r.snapshot()),
        }
    }

    /// What the status page shows of the lanes and clusters.
    pub fn view(&self) -> Result<RouterView, ActorGone> {
        match self {
            Engine::Actors(a) => a.view(),
            Engine::Inline(r) => Ok(RouterView::of(r.state(), r.config())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::codec::decode_input;

    fn parts() -> (Arc<RoutingConfig>, Arc<PriceTable>) {
        (
            Arc::new(RoutingConfig::default()),
            Arc::new(PriceTable::embedded()),
        )
    }

    fn events(text: &str) -> Vec<InputEvent> {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| decode_input(l.as_bytes()).ok())
            .collect()
    }

    /// Both example files through both engines: the same outputs, one actor per lane, cluster
    /// and tenant of the inline router's state, and the same snapshot.
    #[test]
    fn the_examples_run_the_same_on_actors() {
        for text in [
            include_str!("../examples/scenario.jsonl"),
            include_str!("../examples/tenants.jsonl"),
        ] {
            let (cfg, prices) = parts();
            let mut router = Router::new(cfg.clone(), prices.clone());
            let mut actors = ActorEngine::new(cfg, prices, RouterState::default());
            let (mut a, mut b) = (Output::with_journal(), Output::with_journal());
            for e in events(text) {
                router.apply(e.clone(), &mut a);
                actors.apply(e, &mut b).unwrap();
            }
            assert!(!a.decisions.is_empty());
            assert_eq!(a.decisions, b.decisions);
            assert_eq!(a.journal, b.journal);
            assert_eq!(a.warnings, b.warnings);
            let s = router.state();
            assert_eq!(
                actors.actors(),
                (s.lanes.len(), s.clusters.len(), s.tenants.len())
            );
            assert_eq!(actors.applied(), s.applied);
            assert_eq!(actors.snapshot().unwrap(), router.snapshot());
            let view = RouterView::of(s, router.config());
            assert!(!view.lanes.is_empty());
            assert_eq!(actors.view().unwrap(), view);
        }
    }

    /// Runs of inputs through `apply_each` (the broker's way) give each input exactly what the
    /// inline router gives it, in its own callback, and the same state in the end.
    #[test]
    fn inputs_applied_in_runs_give_each_input_its_own_outputs() {
        let text = include_str!("../examples/scenario.jsonl");
        let (cfg, prices) = parts();
        let mut router = Router::new(cfg.clone(), prices.clone());
        let mut expected = Vec::new();
        let mut out = Output::with_journal();
        for e in events(text) {
            router.apply(e, &mut out);
            expected.push((out.decisions.clone(), out.journal.clone()));
            out.clear();
        }
        let mut actors = Engine::Actors(ActorEngine::new(cfg, prices, RouterState::default()));
        let mut got = Vec::new();
        let mut inputs = events(text)
            .into_iter()
            .enumerate()
            .map(|(i, e)| (e, i))
            .peekable();
        while inputs.peek().is_some() {
            // Runs of 1, 2, 3, … inputs.
            let run: Vec<_> = inputs.by_ref().take(got.len() % 5 + 1).collect();
            actors
                .apply_each(run, &mut out, |out, i| {
                    assert_eq!(i, got.len(), "inputs come back in order");
                    got.push((out.decisions.clone(), out.journal.clone()));
                    out.clear();
                    Ok::<_, ActorGone>(())
                })
                .unwrap();
        }
        assert!(expected.iter().any(|(d, _)| !d.is_empty()));
        assert_eq!(got, expected);
        assert_eq!(actors.snapshot().unwrap(), router.snapshot());
    }

    /// A deregistered cluster's actor stops: the dispatcher held its only address.
    #[test]
    fn a_deregistered_cluster_stops_its_actor() {
        let (cfg, prices) = parts();
        let mut actors = ActorEngine::new(cfg, prices, RouterState::default());
        let mut out = Output::with_journal();
        let text = include_str!("../examples/scenario.jsonl");
        let register = events(text)
            .into_iter()
            .find(|e| matches!(e, InputEvent::ClusterRegistered(_)))
            .expect("the scenario registers a cluster");
        let InputEvent::ClusterRegistered(r) = &register else {
            unreachable!()
        };
        let id = r.cluster_id.clone();
        let ts = r.ts;
        actors.apply(register, &mut out).unwrap();
        let weak = actors.router.clusters[id.as_str()].addr.downgrade();
        assert_eq!(actors.actors().1, 1);
        let gone = InputEvent::ClusterDeregistered(ClusterDeregisteredV1 {
            cluster_id: id.clone(),
            ts,
        });
        actors.apply(gone, &mut out).unwrap();
        assert_eq!(actors.actors().1, 0);
        assert!(matches!(
            out.journal.last(),
            Some(JournalEntry::Lane {
                command: LaneCommand::ClusterRemoved { .. },
                ..
            })
        ));
        // Let the system run so the actor sees its mailbox closed.
        actors.system.0.block_on(async {
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        });
        let alive = weak.upgrade().is_some_and(|a| a.connected());
        assert!(!alive, "the actor stopped with its last address gone");
    }
}
