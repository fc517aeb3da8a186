//! Plain-language explanations of decisions (`GET /v2/decisions/{id}`): what the reason code
//! and each candidate's verdict mean. Texts follow `docs/routing.md`.

use serde::Serialize;

use crate::events::{DecisionV1, Mode, Reason, Verdict};

/// A decision's explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// One sentence: what was decided and why.
    pub summary: String,
    /// What the reason code means.
    pub reason: &'static str,
    /// Each candidate looked at, in the order the decision considered them.
    pub considered: Vec<CandidateNote>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CandidateNote {
    pub target: String,
    pub verdict: Verdict,
    pub meaning: &'static str,
}

pub fn reason_meaning(r: Reason) -> &'static str {
    match r {
        Reason::HotLane => "the lane is an active hot lane and an eligible BYOC cluster had room",
        Reason::Overflow => "the lane is active but every eligible BYOC cluster was at its reserved capacity, so the request overflowed to the managed provider",
        Reason::Failover => "the lane is active but no BYOC cluster was healthy (down, draining, stale, breaker open or recovering), so the request failed over to the managed provider",
        Reason::NotActivated => "the lane has BYOC clusters but has not passed the gate (or was demoted), so it runs managed",
        Reason::Tail => "no BYOC cluster serves this lane: long-tail traffic runs on the managed provider",
        Reason::TenantPolicy => "the tenant's policy (allowed profiles, regions or data boundary) excluded the BYOC route",
        Reason::Subscription => "the tenant has a subscription with the lane's provider, which comes first in its escalation order",
        Reason::Byok => "the tenant brought its own key for the lane's provider, which comes before BYOC and managed in its escalation order",
        Reason::ManagedDown => "the managed provider is down; see the mode for what happened instead",
        Reason::UnknownTenant => "the tenant has no policy and unknown tenants are rejected",
        Reason::RegionNotAllowed => "no candidate lies in a region the tenant allows",
        Reason::QuotaExceeded => "the tenant's monthly budget is used up and its overage mode is pause",
        Reason::InvalidRequest => "the request is not routable as sent (see detail)",
    }
}

pub fn verdict_meaning(v: Verdict) -> &'static str {
    match v {
        Verdict::Chosen => "served the request",
        Verdict::NotChosen => "eligible, but another candidate was less utilised",
        Verdict::Saturated => "its reserved in-flight count reached this lane's share of max_inflight x headroom",
        Verdict::SlowStart => "recovering: its slow-start allowance was used up",
        Verdict::Down => "its heartbeat says down",
        Verdict::Draining => "its heartbeat says draining",
        Verdict::Unhealthy => "its heartbeat reported an error rate above the threshold",
        Verdict::BreakerOpen => "its circuit breaker is open (completion error rate)",
        Verdict::Recovering => "back from unhealthy, waiting for enough healthy heartbeats in a row",
        Verdict::Stale => "its last heartbeat is older than routing.stale_after_ms (event time)",
        Verdict::NoHeartbeat => "registered, but has not sent a heartbeat yet",
        Verdict::RegionNotAllowed => "its region is not one the tenant allows",
        Verdict::DedicatedToOtherTenant => "dedicated to another tenant",
        Verdict::DataBoundary => "a shared cluster, and the tenant's strict data boundary allows only its dedicated clusters",
        Verdict::ProviderDown => "the route's provider is down",
    }
}

/// Explains `d`.
pub fn explain(d: &DecisionV1) -> Explanation {
    let target = d.target.as_deref().unwrap_or("nothing");
    let how = match d.mode {
        Mode::Live => format!("served by {target}"),
        Mode::OpenrouterFallback => format!("routed through OpenRouter ({target})"),
        Mode::Placeholder => "answered with a placeholder (nothing could serve it)".to_owned(),
        Mode::Rejected => "rejected".to_owned(),
    };
    Explanation {
        summary: format!(
            "Request {} of tenant {} on lane {} was {how} because {}.",
            d.request_id,
            d.tenant_id,
            d.lane,
            reason_meaning(d.reason)
        ),
        reason: reason_meaning(d.reason),
        considered: d
            .considered
            .iter()
            .map(|c| CandidateNote {
                target: c.target.to_string(),
                verdict: c.verdict,
                meaning: verdict_meaning(c.verdict),
            })
            .collect(),
    }
}
