//! The output contract: `zumik.decision.v1`, one per request, on `zumik.decisions`.
//!
//! What the platform returns as `Agent-Execution-Profile` and what an auditor reads. This module
//! only defines the shape; the core decides the content.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::id::InlineId;
use super::name::Name;
use super::time::Timestamp;

/// Who serves a request.
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
pub enum Profile {
    ByocDynamo,
    ByocEpp,
    ManagedProvider,
    Byok,
    Subscription,
}

/// How it is served.
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
pub enum Mode {
    /// Served normally.
    Live,
    /// Emergency route through OpenRouter because the managed path is down.
    OpenrouterFallback,
    /// Nothing could serve; the caller gets a placeholder answer.
    Placeholder,
    /// Refused at admission or validation.
    Rejected,
}

impl Profile {
    /// The wire name (`byoc_dynamo`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::ByocDynamo => "byoc_dynamo",
            Profile::ByocEpp => "byoc_epp",
            Profile::ManagedProvider => "managed_provider",
            Profile::Byok => "byok",
            Profile::Subscription => "subscription",
        }
    }
}

impl Mode {
    /// The wire name (`live`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::OpenrouterFallback => "openrouter_fallback",
            Mode::Placeholder => "placeholder",
            Mode::Rejected => "rejected",
        }
    }
}

/// Stable machine code for *why* (DESIGN §4).
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
pub enum Reason {
    /// Served by a BYOC cluster of an active lane.
    HotLane,
    /// Lane active, every eligible cluster saturated.
    Overflow,
    /// Lane active, clusters unhealthy / stale / down.
    Failover,
    /// Lane has clusters but has not passed the gate, or was demoted.
    NotActivated,
    /// Lane has no BYOC at all.
    Tail,
    /// Tenant (or request) not allowed BYOC or this profile.
    TenantPolicy,
    Subscription,
    Byok,
    /// Managed path down; see the mode.
    ManagedDown,
    UnknownTenant,
    RegionNotAllowed,
    QuotaExceeded,
    InvalidRequest,
}

impl Reason {
    /// Every reason code, in declaration order.
    pub const ALL: [Reason; 13] = [
        Reason::HotLane,
        Reason::Overflow,
        Reason::Failover,
        Reason::NotActivated,
        Reason::Tail,
        Reason::TenantPolicy,
        Reason::Subscription,
        Reason::Byok,
        Reason::ManagedDown,
        Reason::UnknownTenant,
        Reason::RegionNotAllowed,
        Reason::QuotaExceeded,
        Reason::InvalidRequest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::HotLane => "hot_lane",
            Reason::Overflow => "overflow",
            Reason::Failover => "failover",
            Reason::NotActivated => "not_activated",
            Reason::Tail => "tail",
            Reason::TenantPolicy => "tenant_policy",
            Reason::Subscription => "subscription",
            Reason::Byok => "byok",
            Reason::ManagedDown => "managed_down",
            Reason::UnknownTenant => "unknown_tenant",
            Reason::RegionNotAllowed => "region_not_allowed",
            Reason::QuotaExceeded => "quota_exceeded",
            Reason::InvalidRequest => "invalid_request",
        }
    }
}

/// Why a candidate was or was not used.
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
pub enum Verdict {
    /// The candidate that serves the request.
    Chosen,
    /// Eligible, but another candidate was less utilised (or the tenant's dedicated one came first).
    NotChosen,
    /// Reserved in-flight count reached `max_inflight × headroom` (its lane share).
    Saturated,
    /// Recovering cluster whose slow-start allowance is used up.
    SlowStart,
    /// Heartbeat says `down`.
    Down,
    /// Heartbeat says `draining`.
    Draining,
    /// Heartbeat reported an error rate above the threshold.
    Unhealthy,
    /// Circuit breaker open: completion error rate crossed the threshold.
    BreakerOpen,
    /// Back from unhealthy, waiting for enough consecutive healthy heartbeats.
    Recovering,
    /// Last heartbeat older than `stale_after` (event time).
    Stale,
    /// Registered, never heartbeated.
    NoHeartbeat,
    /// Cluster region not in the tenant's allowed regions.
    RegionNotAllowed,
    /// Dedicated to another tenant.
    DedicatedToOtherTenant,
    /// A shared cluster, and the tenant's `strict` data boundary allows only its dedicated ones.
    DataBoundary,
    /// The route's provider is down (subscription / byok).
    ProviderDown,
}

/// One candidate the decision looked at.
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
pub struct Considered {
    /// Cluster id, or `subscription:<provider>` / `byok:<provider>` for credential routes.
    pub target: Name,
    pub verdict: Verdict,
}

/// Where the input that caused a decision was read (runtime only).
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
pub struct Source {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// `zumik.decision.v1` — where one request runs and why.
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
pub struct DecisionV1 {
    pub request_id: InlineId,
    pub tenant_id: Name,
    pub lane: Name,
    /// Who serves it; `null` for rejections and placeholders.
    pub profile: Option<Profile>,
    pub mode: Mode,
    /// Cluster id, `provider/model`, or `openrouter/provider/model`; `null` when nothing serves.
    pub target: Option<Name>,
    pub reason: Reason,
    /// Candidates looked at (clusters in id order, then credential routes), with verdicts.
    pub considered: Vec<Considered>,
    /// Expected marginal cost from the price table (0 for BYOC and subscriptions).
    pub estimated_cost_micros: u64,
    /// Event time of the request.
    pub decided_at: Timestamp,
    /// Per-lane sequence number, from 1.
    pub seq: u64,
    /// Version of the tenant policy applied (0 = the default policy).
    pub policy_version: u64,
    /// Human-readable detail, e.g. what made a request invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Input coordinates (set by the Kafka runtime, absent offline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// Any output event on a public topic, tagged by its `schema` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, bincode::Encode, bincode::Decode)]
#[serde(tag = "schema")]
pub enum OutputEvent {
    #[serde(rename = "zumik.decision.v1")]
    Decision(DecisionV1),
}
