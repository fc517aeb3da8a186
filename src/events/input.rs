//! Input events (v1): what producers put on `zumik.requests`, `zumik.completions`,
//! `zumik.telemetry` and `zumik.control`.
//!
//! These structs *are* the public contract: field names and meanings only change with a new
//! schema version. Each type checks the rules serde cannot (ranges, id shapes) in `validate`;
//! this module must not know anything about routing.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::id::InlineId;
use super::time::Timestamp;
use super::validate::{
    check_fraction, check_id, check_model_path, check_name, check_provider, check_region, Invalid,
};

/// Coarse profile classes a tenant or a request may allow (and order, for escalation).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
    bincode::Encode,
    bincode::Decode,
)]
#[serde(rename_all = "snake_case")]
pub enum ProfileClass {
    /// A BYOC hot-lane cluster (`byoc_dynamo` or `byoc_epp`).
    Byoc,
    /// The platform's managed provider account.
    ManagedProvider,
    /// The tenant's own provider credential.
    Byok,
    /// The tenant's provider subscription (bundled allowance).
    Subscription,
}

/// Quality-of-service hints of a request.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    JsonSchema,
    bincode::Encode,
    bincode::Decode,
)]
#[serde(deny_unknown_fields)]
pub struct Qos {
    /// Service class, e.g. `interactive` or `batch` (free text, 1–32 chars).
    #[schemars(length(min = 1, max = 32))]
    pub class: String,
    /// Time-to-first-token target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ttft_ms: Option<u32>,
    /// How long the caller waits at most; a BYOC reservation expires after it (event time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub deadline_ms: Option<u32>,
    /// Higher is more important.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
}

/// `zumik.request.v1` — one inference request to route (topic `zumik.requests`, key = lane).
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    JsonSchema,
    bincode::Encode,
    bincode::Decode,
)]
#[serde(deny_unknown_fields)]
pub struct RequestV1 {
    /// Caller's id for the request; the decision carries it back.
    #[schemars(length(min = 1, max = 128))]
    pub request_id: InlineId,
    /// Tenant (project), e.g. `prj_acme`.
    #[schemars(length(min = 1, max = 128))]
    pub tenant_id: InlineId,
    /// The lane: `provider/model[@revision]`.
    #[schemars(length(min = 3, max = 256))]
    pub model: String,
    /// The name the caller used before alias resolution, for the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Prompt tokens, cached ones included.
    pub input_tokens: u32,
    /// Prompt tokens expected to hit the provider's prompt cache (≤ `input_tokens`).
    pub cached_input_tokens: u32,
    /// Output budget of the request.
    pub max_output_tokens: u32,
    pub qos: Qos,
    /// Where the request originates / must be served; checked against the tenant's regions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Narrows the tenant's allowed profiles for this request only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_profiles: Option<Vec<ProfileClass>>,
    pub ts: Timestamp,
}

/// How a routed request ended.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    JsonSchema,
    bincode::Encode,
    bincode::Decode,
)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Completed,
    Failed,
    Cancelled,
    Expired,
}

/// `zumik.completion.v1` — the outcome of a routed request (topic `zumik.completions`).
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, bincode::Encode, bincode::Decode,
)]
#[serde(deny_unknown_fields)]
pub struct CompletionV1 {
    #[schemars(length(min = 1, max = 128))]
    pub request_id: InlineId,
    #[schemars(length(min = 1, max = 128))]
    pub tenant_id: InlineId,
    /// The lane the request was routed on.
    #[schemars(length(min = 3, max = 256))]
    pub model: String,
    pub outcome: Outcome,
    pub input_tokens: u32,
    pub cached_input_tokens: u32,
    pub output_tokens: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    /// Who served it, as the data plane saw it. Recommended: without it the broker infers the
    /// profile from its own reservation (BYOC) or assumes `managed_provider`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<super::decision::Profile>,
    /// The served target (cluster id or `provider/model`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub ts: Timestamp,
}

/// Serving stack of a BYOC cluster.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
    bincode::Encode,
    bincode::Decode,
)]
#[serde(rename_all = "snake_case")]
pub enum Stack {
    /// NVIDIA Dynamo.
    Dynamo,
    /// llm-d / Gateway API endpoint picker.
    Epp,
}

/// `zumik.cluster_registered.v1` — a BYOC cluster joins (topic `zumik.control`, key = cluster).
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    JsonSchema,
    bincode::Encode,
    bincode::Decode,
)]
#[serde(deny_unknown_fields)]
pub struct ClusterRegisteredV1 {
    /// `byc_…`
    #[schemars(length(min = 1, max = 128))]
    pub cluster_id: String,
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    #[schemars(length(min = 1, max = 64))]
    pub region: String,
    pub stack: Stack,
    /// Lanes (`provider/model[@rev]`) the cluster serves; its capacity is split evenly among them.
    #[schemars(length(min = 1, max = 64))]
    pub lanes: Vec<String>,
    /// Concurrent sequences the cluster accepts (until a heartbeat says otherwise).
    #[schemars(range(min = 1))]
    pub max_inflight: u32,
    #[schemars(range(min = 1))]
    pub gpus: u32,
    /// Price of one GPU-hour in micros.
    pub gpu_hour_micros: u64,
    /// Tenant this cluster is dedicated to; absent = shared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedicated_to: Option<String>,
    pub ts: Timestamp,
}

/// `zumik.cluster_deregistered.v1` — a cluster leaves.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    JsonSchema,
    bincode::Encode,
    bincode::Decode,
)]
#[serde(deny_unknown_fields)]
pub struct ClusterDeregisteredV1 {
    #[schemars(length(min = 1, max = 128))]
    pub cluster_id: String,
    pub ts: Timestamp,
}

/// Status a cluster reports about itself.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
    bincode::Encode,
    bincode::Decode,
)]
#[serde(rename_all = "snake_case")]
pub enum ClusterStatus {
    Ready,
    Degraded,
    Draining,
    Down,
}

/// `zumik.cluster_heartbeat.v1` — periodic cluster telemetry (topic `zumik.telemetry`).
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, bincode::Encode, bincode::Decode,
)]
#[serde(deny_unknown_fields)]
pub struct ClusterHeartbeatV1 {
    #[schemars(length(min = 1, max = 128))]
    pub cluster_id: String,
    pub status: ClusterStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Current concurrent-sequence capacity (autoscaling changes it).
    pub max_inflight: u32,
    /// Sequences in flight as the cluster counts them (informational).
    pub inflight: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_depth: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_p95_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub kv_cache_usage: Option<f64>,
    /// Share of failed requests since the last heartbeat, 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub error_rate: Option<f64>,
    pub ts: Timestamp,
}

impl ClusterHeartbeatV1 {
    /// A minimal heartbeat: `status` and capacity, nothing in flight, no optional telemetry.
    pub fn new(
        cluster_id: impl Into<String>,
        status: ClusterStatus,
        max_inflight: u32,
        ts: Timestamp,
    ) -> Self {
        ClusterHeartbeatV1 {
            cluster_id: cluster_id.into(),
            status,
            replicas: None,
            max_inflight,
            inflight: 0,
            queue_depth: None,
            ttft_p95_ms: None,
            kv_cache_usage: None,
            error_rate: None,
            ts,
        }
    }
}

/// Health of a managed provider as the gateway sees it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
    bincode::Encode,
    bincode::Decode,
)]
#[serde(rename_all = "snake_case")]
pub enum ProviderStatus {
    Ok,
    Degraded,
    Down,
}

/// `zumik.provider_health.v1` — managed-provider health from the gateway (topic `zumik.telemetry`).
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, bincode::Encode, bincode::Decode,
)]
#[serde(deny_unknown_fields)]
pub struct ProviderHealthV1 {
    /// Provider name as used in lanes (`openai`, `fireworks`, …).
    #[schemars(length(min = 1, max = 64))]
    pub provider: String,
    pub status: ProviderStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub error_rate: Option<f64>,
    pub ts: Timestamp,
}

/// Where a tenant's data may go.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
    bincode::Encode,
    bincode::Decode,
)]
#[serde(rename_all = "snake_case")]
pub enum DataBoundary {
    /// The project's providers and, in an emergency, OpenRouter.
    #[default]
    Project,
    /// Only the lane's own provider (managed, subscription, BYOK) or clusters dedicated to the
    /// tenant: never shared clusters, never OpenRouter.
    Strict,
    /// Anything but OpenRouter.
    NoOpenrouter,
}

/// What happens when the monthly budget is spent.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Default,
    Serialize,
    Deserialize,
    JsonSchema,
    bincode::Encode,
    bincode::Decode,
)]
#[serde(rename_all = "snake_case")]
pub enum OverageMode {
    /// Reject further requests with `quota_exceeded` until the next month.
    Pause,
    /// Keep serving; threshold events still fire.
    #[default]
    Allow,
}

/// `zumik.tenant_policy.v1` — a tenant's routing policy (topic `zumik.control`, key = tenant).
/// Each one replaces the previous policy whole.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    JsonSchema,
    bincode::Encode,
    bincode::Decode,
)]
#[serde(deny_unknown_fields)]
pub struct TenantPolicyV1 {
    #[schemars(length(min = 1, max = 128))]
    pub tenant_id: String,
    /// Regions the tenant's requests may come from and its traffic may run in; absent = any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_regions: Option<Vec<String>>,
    /// Profiles the tenant may use; absent = all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_profiles: Option<Vec<ProfileClass>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_boundary: Option<DataBoundary>,
    /// Providers the tenant has a subscription with.
    #[serde(default)]
    pub subscriptions: Vec<String>,
    /// Providers the tenant brought its own key for.
    #[serde(default)]
    pub byok: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_budget_micros: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overage_mode: Option<OverageMode>,
    /// Escalation order; absent = the broker default (subscription, byok, byoc, managed_provider).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<Vec<ProfileClass>>,
    pub ts: Timestamp,
}

/// `zumik.lane_activated.v1` — a lane becomes a hot lane after passing the gate.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    JsonSchema,
    bincode::Encode,
    bincode::Decode,
)]
#[serde(deny_unknown_fields)]
pub struct LaneActivatedV1 {
    #[schemars(length(min = 3, max = 256))]
    pub lane: String,
    /// SHA-256 evidence digest of the passing gate report.
    #[schemars(length(min = 1, max = 128))]
    pub report_digest: String,
    pub ts: Timestamp,
}

/// `zumik.lane_activate.v1` — the command to make a lane hot, naming the gate report that
/// justifies it. The broker accepts it only if that report is stored for the lane, passed, its
/// digest verifies and it is not stale; otherwise the refusal is journaled with the reason.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    JsonSchema,
    bincode::Encode,
    bincode::Decode,
)]
#[serde(deny_unknown_fields)]
pub struct LaneActivateV1 {
    #[schemars(length(min = 3, max = 256))]
    pub lane: String,
    /// Digest (`sha256:…`) of a stored `zumik.gate_report.v1` for this lane.
    #[schemars(length(min = 1, max = 128))]
    pub report_digest: String,
    pub ts: Timestamp,
}

/// `zumik.lane_deactivated.v1` — a lane goes back to managed (demotion or operator command).
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    JsonSchema,
    bincode::Encode,
    bincode::Decode,
)]
#[serde(deny_unknown_fields)]
pub struct LaneDeactivatedV1 {
    #[schemars(length(min = 3, max = 256))]
    pub lane: String,
    #[schemars(length(min = 1, max = 256))]
    pub reason: String,
    pub ts: Timestamp,
}

/// `zumik.usage.v1` — internal (topic `zumik.usage`, written and read by the broker): what a
/// tenant's billable completions cost in one unit (input partition) during one batch. Every unit
/// charges its own completions directly; it applies the other units' records like telemetry, so
/// a tenant's monthly spend — and `quota_exceeded` — covers its traffic on every lane. Accepted
/// as JSON too, so a unit's exported journal replays through `zumik decide`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    JsonSchema,
    bincode::Encode,
    bincode::Decode,
)]
#[serde(deny_unknown_fields)]
pub struct UsageV1 {
    #[schemars(length(min = 1, max = 128))]
    pub tenant_id: String,
    /// The unit (input partition of requests and completions) whose completions these are.
    pub unit: u32,
    /// Completions summed into this record.
    #[schemars(range(min = 1))]
    pub requests: u32,
    /// Their billable cost, in micros.
    #[schemars(range(min = 1))]
    pub cost_micros: u64,
    /// The unit's whole spend for the tenant in this record's month, these completions
    /// included. A receiving unit counts what it adds to the largest total it has from that
    /// unit this month, so a record sent again (at least once, after a crash or a takeover)
    /// counts once. Absent when the completions fall in a month the unit has already left:
    /// then `cost_micros` is added as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_spent_micros: Option<u64>,
    /// Event time of the last of them; all of them fall in this UTC calendar month.
    pub ts: Timestamp,
}

/// `zumik.breaker_tripped.v1` — internal (topic `zumik.status`, keyed by cluster, written and
/// read by the broker): a cluster's circuit breaker opened in one unit, on the completions of
/// that unit's lanes. Every other unit takes the cluster out of rotation too, so a cluster
/// failing on some lanes stops taking traffic on all of them. Accepted as JSON too, so a
/// unit's exported journal replays through `zumik decide`.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    JsonSchema,
    bincode::Encode,
    bincode::Decode,
)]
#[serde(deny_unknown_fields)]
pub struct BreakerTrippedV1 {
    #[schemars(length(min = 1, max = 128))]
    pub cluster_id: String,
    /// The unit whose breaker opened.
    pub unit: u32,
    /// Failed completions among the `samples` of its window when it opened.
    pub failures: u32,
    #[schemars(range(min = 1))]
    pub samples: u32,
    /// Event time of the completion that opened it.
    pub ts: Timestamp,
}

/// Any input event, tagged by its `schema` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
#[serde(tag = "schema")]
pub enum InputEvent {
    #[serde(rename = "zumik.request.v1")]
    Request(RequestV1),
    #[serde(rename = "zumik.completion.v1")]
    Completion(CompletionV1),
    #[serde(rename = "zumik.cluster_registered.v1")]
    ClusterRegistered(ClusterRegisteredV1),
    #[serde(rename = "zumik.cluster_deregistered.v1")]
    ClusterDeregistered(ClusterDeregisteredV1),
    #[serde(rename = "zumik.cluster_heartbeat.v1")]
    ClusterHeartbeat(ClusterHeartbeatV1),
    #[serde(rename = "zumik.provider_health.v1")]
    ProviderHealth(ProviderHealthV1),
    #[serde(rename = "zumik.tenant_policy.v1")]
    TenantPolicy(TenantPolicyV1),
    #[serde(rename = "zumik.lane_activated.v1")]
    LaneActivated(LaneActivatedV1),
    #[serde(rename = "zumik.lane_deactivated.v1")]
    LaneDeactivated(LaneDeactivatedV1),
    #[serde(rename = "zumik.lane_activate.v1")]
    LaneActivate(LaneActivateV1),
    #[serde(rename = "zumik.gate_report.v1")]
    GateReport(Box<super::report::GateReportV1>),
    /// Internal; last, so the other variants keep their journal encoding.
    #[serde(rename = "zumik.usage.v1")]
    Usage(UsageV1),
    /// Internal, like `Usage`.
    #[serde(rename = "zumik.breaker_tripped.v1")]
    BreakerTripped(BreakerTrippedV1),
}

impl InputEvent {
    /// The event's `schema` name.
    pub fn schema_name(&self) -> &'static str {
        match self {
            InputEvent::Request(_) => "zumik.request.v1",
            InputEvent::Completion(_) => "zumik.completion.v1",
            InputEvent::ClusterRegistered(_) => "zumik.cluster_registered.v1",
            InputEvent::ClusterDeregistered(_) => "zumik.cluster_deregistered.v1",
            InputEvent::ClusterHeartbeat(_) => "zumik.cluster_heartbeat.v1",
            InputEvent::ProviderHealth(_) => "zumik.provider_health.v1",
            InputEvent::TenantPolicy(_) => "zumik.tenant_policy.v1",
            InputEvent::LaneActivated(_) => "zumik.lane_activated.v1",
            InputEvent::LaneDeactivated(_) => "zumik.lane_deactivated.v1",
            InputEvent::LaneActivate(_) => "zumik.lane_activate.v1",
            InputEvent::GateReport(_) => "zumik.gate_report.v1",
            InputEvent::Usage(_) => "zumik.usage.v1",
            InputEvent::BreakerTripped(_) => "zumik.breaker_tripped.v1",
        }
    }

    /// Whether only the broker writes this event (on its internal topics): another unit's
    /// usage or breaker trip. Refused on the public topics.
    pub fn is_internal(&self) -> bool {
        matches!(self, InputEvent::Usage(_) | InputEvent::BreakerTripped(_))
    }

    /// Event time of the event.
    pub fn ts(&self) -> Timestamp {
        match self {
            InputEvent::Request(e) => e.ts,
            InputEvent::Completion(e) => e.ts,
            InputEvent::ClusterRegistered(e) => e.ts,
            InputEvent::ClusterDeregistered(e) => e.ts,
            InputEvent::ClusterHeartbeat(e) => e.ts,
            InputEvent::ProviderHealth(e) => e.ts,
            InputEvent::TenantPolicy(e) => e.ts,
            InputEvent::LaneActivated(e) => e.ts,
            InputEvent::LaneDeactivated(e) => e.ts,
            InputEvent::LaneActivate(e) => e.ts,
            InputEvent::GateReport(e) => e.window.end,
            InputEvent::Usage(e) => e.ts,
            InputEvent::BreakerTripped(e) => e.ts,
        }
    }

    /// The Kafka key the event belongs under (lane, cluster, provider or tenant).
    pub fn key(&self) -> &str {
        match self {
            InputEvent::Request(e) => &e.model,
            InputEvent::Completion(e) => &e.model,
            InputEvent::ClusterRegistered(e) => &e.cluster_id,
            InputEvent::ClusterDeregistered(e) => &e.cluster_id,
            InputEvent::ClusterHeartbeat(e) => &e.cluster_id,
            InputEvent::ProviderHealth(e) => &e.provider,
            InputEvent::TenantPolicy(e) => &e.tenant_id,
            InputEvent::LaneActivated(e) => &e.lane,
            InputEvent::LaneDeactivated(e) => &e.lane,
            InputEvent::LaneActivate(e) => &e.lane,
            InputEvent::GateReport(e) => &e.lane,
            InputEvent::Usage(e) => &e.tenant_id,
            InputEvent::BreakerTripped(e) => &e.cluster_id,
        }
    }

    /// Checks the contract rules serde does not: id shapes, ranges, model paths.
    pub fn validate(&self) -> Result<(), Invalid> {
        match self {
            InputEvent::Request(e) => {
                check_id("request_id", &e.request_id)?;
                check_id("tenant_id", &e.tenant_id)?;
                check_model_path("model", &e.model)?;
                if e.qos.class.is_empty() || e.qos.class.len() > 32 {
                    return Err(Invalid::new("qos.class", "must be 1–32 characters"));
                }
                if e.qos.deadline_ms == Some(0) {
                    return Err(Invalid::new("qos.deadline_ms", "must be at least 1"));
                }
                if let Some(r) = &e.region {
                    check_region("region", r)?;
                }
                Ok(())
            }
            InputEvent::Completion(e) => {
                check_id("request_id", &e.request_id)?;
                check_id("tenant_id", &e.tenant_id)?;
                check_model_path("model", &e.model)
            }
            InputEvent::ClusterRegistered(e) => {
                check_id("cluster_id", &e.cluster_id)?;
                check_name("name", &e.name)?;
                check_region("region", &e.region)?;
                if e.lanes.is_empty() || e.lanes.len() > 64 {
                    return Err(Invalid::new("lanes", "must list 1–64 lanes"));
                }
                for lane in &e.lanes {
                    check_model_path("lanes", lane)?;
                }
                if e.max_inflight == 0 {
                    return Err(Invalid::new("max_inflight", "must be at least 1"));
                }
                if e.gpus == 0 {
                    return Err(Invalid::new("gpus", "must be at least 1"));
                }
                if let Some(t) = &e.dedicated_to {
                    check_id("dedicated_to", t)?;
                }
                Ok(())
            }
            InputEvent::ClusterDeregistered(e) => check_id("cluster_id", &e.cluster_id),
            InputEvent::ClusterHeartbeat(e) => {
                check_id("cluster_id", &e.cluster_id)?;
                check_fraction("kv_cache_usage", e.kv_cache_usage)?;
                check_fraction("error_rate", e.error_rate)
            }
            InputEvent::ProviderHealth(e) => {
                check_provider("provider", &e.provider)?;
                check_fraction("error_rate", e.error_rate)
            }
            InputEvent::TenantPolicy(e) => {
                check_id("tenant_id", &e.tenant_id)?;
                for r in e.allowed_regions.iter().flatten() {
                    check_region("allowed_regions", r)?;
                }
                for p in e.subscriptions.iter() {
                    check_id("subscriptions", p)?;
                }
                for p in e.byok.iter() {
                    check_id("byok", p)?;
                }
                if let Some(order) = &e.escalation {
                    let mut seen = order.clone();
                    seen.sort();
                    seen.dedup();
                    if order.is_empty() || seen.len() != order.len() {
                        return Err(Invalid::new(
                            "escalation",
                            "must name each profile at most once, at least one",
                        ));
                    }
                }
                Ok(())
            }
            InputEvent::LaneActivated(e) => {
                check_model_path("lane", &e.lane)?;
                check_id("report_digest", &e.report_digest)
            }
            InputEvent::LaneDeactivated(e) => {
                check_model_path("lane", &e.lane)?;
                if e.reason.is_empty() || e.reason.len() > 256 {
                    return Err(Invalid::new("reason", "must be 1–256 characters"));
                }
                Ok(())
            }
            InputEvent::LaneActivate(e) => {
                check_model_path("lane", &e.lane)?;
                check_id("report_digest", &e.report_digest)
            }
            InputEvent::GateReport(e) => {
                check_model_path("lane", &e.lane)?;
                check_id("digest", &e.digest)?;
                if e.window.start > e.window.end {
                    return Err(Invalid::new("window", "start is after end"));
                }
                Ok(())
            }
            InputEvent::Usage(e) => {
                check_id("tenant_id", &e.tenant_id)?;
                if e.requests == 0 {
                    return Err(Invalid::new("requests", "must be at least 1"));
                }
                if e.cost_micros == 0 {
                    return Err(Invalid::new("cost_micros", "must be at least 1"));
                }
                if e.unit_spent_micros.is_some_and(|t| t < e.cost_micros) {
                    return Err(Invalid::new(
                        "unit_spent_micros",
                        "must be at least cost_micros (it includes them)",
                    ));
                }
                Ok(())
            }
            InputEvent::BreakerTripped(e) => {
                check_id("cluster_id", &e.cluster_id)?;
                if e.samples == 0 || e.failures > e.samples {
                    return Err(Invalid::new(
                        "samples",
                        "must be at least 1 and at least `failures`",
                    ));
                }
                Ok(())
            }
        }
    }
}
