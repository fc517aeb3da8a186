//! The plan of a workload: which lanes, tenants (with policies) and clusters exist, built once
//! from the seed and shared by the setup events and the traffic.
//!
//! Owns the names (real priced models first), the tenant policy archetypes and cluster sizing
//! (capacity follows each hot lane's expected concurrency). Emits no events itself.

use std::collections::BTreeSet;

use crate::events::{
    ClusterRegisteredV1, DataBoundary, ModelPath, OverageMode, ProfileClass, Stack, TenantPolicyV1,
    Timestamp,
};

use super::rng::{weight_of, zipf_cdf, Rng};
use super::spec::WorkloadSpec;
use super::stream::MEAN_SERVICE_MS;

/// Hot-lane candidates in rank order (rank 1 gets the most traffic). All priced in the LiteLLM table.
const HOT_MODELS: [&str; 8] = [
    "fireworks/qwen3-coder-480b-a35b-instruct",
    "openai/gpt-4o",
    "anthropic/claude-sonnet-4-5",
    "openai/gpt-4o-mini",
    "anthropic/claude-haiku-4-5",
    "fireworks/deepseek-v3",
    "google/gemini-2.5-flash",
    "openai/gpt-4.1-mini",
];

/// Real, priced models that are never hot first; the tail uses them before generated names.
const TAIL_MODELS: [&str; 12] = [
    "openai/gpt-4.1",
    "openai/gpt-4.1-nano",
    "openai/gpt-5",
    "openai/gpt-5-mini",
    "openai/o3",
    "openai/o4-mini",
    "google/gemini-2.5-pro",
    "deepseek/deepseek-chat",
    "mistral/mistral-large-latest",
    "fireworks/kimi-k2-instruct",
    "fireworks/gpt-oss-120b",
    "together/meta-llama/Llama-3.3-70B-Instruct-Turbo",
];

/// Regions tenants live in, with their share of tenants in permille.
const TENANT_REGIONS: [(&str, u64); 4] = [
    ("us-east-1", 500),
    ("eu-west-1", 300),
    ("eu-central-1", 120),
    ("ap-southeast-1", 80),
];
/// Regions BYOC clusters of one lane are spread over, in order.
const CLUSTER_REGIONS: [&str; 4] = ["us-east-1", "eu-west-1", "us-west-2", "eu-central-1"];
/// What EU-resident tenants may use.
const EU_REGIONS: [&str; 2] = ["eu-central-1", "eu-west-1"];
/// Smallest `max_inflight` a generated cluster gets.
const MIN_INFLIGHT: u64 = 8;
/// Seeds the plan's draws (independent of the traffic's, so asking for the setup alone changes nothing).
const PLAN_SALT: u64 = 0x706c_616e_5a75_6d69;

/// One tenant: its policy event and where its requests come from.
#[derive(Debug)]
pub(super) struct TenantPlan {
    pub(super) policy: TenantPolicyV1,
    pub(super) home_region: &'static str,
    /// Residency-restricted (EU only).
    pub(super) restricted: bool,
}

/// Everything that exists in a workload. Lanes and tenants are in rank order (most traffic first)
/// with Zipf cumulative weights beside them.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) hot: Vec<String>,
    pub(super) tail: Vec<String>,
    pub(super) hot_cdf: Vec<u64>,
    pub(super) tail_cdf: Vec<u64>,
    pub(super) tenants: Vec<TenantPlan>,
    pub(super) tenant_cdf: Vec<u64>,
    /// Hot lane 0's clusters first, then lane 1's, …
    pub(super) clusters: Vec<ClusterRegisteredV1>,
    /// Distinct providers of all lanes, sorted (targets of provider-health events).
    pub(super) providers: Vec<String>,
    /// Gate report digest per hot lane, for its activation.
    pub(super) digests: Vec<String>,
}

/// Lane names: the real models in rank order, then `<model>@ft-NNNN` fine-tune revisions of them
/// (priced like their base model, distinct lanes).
fn lane_names(hot: usize, tail: usize) -> (Vec<String>, Vec<String>) {
    let hot_names = (0..hot)
        .map(|i| match HOT_MODELS.get(i) {
            Some(m) => (*m).to_owned(),
            None => format!("{}@ft-h{:04}", HOT_MODELS[i % HOT_MODELS.len()], i),
        })
        .collect();
    let real: Vec<&str> = HOT_MODELS
        .iter()
        .skip(hot.min(HOT_MODELS.len()))
        .chain(TAIL_MODELS.iter())
        .copied()
        .collect();
    let all: Vec<&str> = HOT_MODELS
        .iter()
        .chain(TAIL_MODELS.iter())
        .copied()
        .collect();
    let tail_names = (0..tail)
        .map(|i| match real.get(i) {
            Some(m) => (*m).to_owned(),
            None => format!("{}@ft-{:04}", all[i % all.len()], i),
        })
        .collect();
    (hot_names, tail_names)
}

fn ulid_like(rng: &mut Rng) -> String {
    const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    (0..26)
        .map(|_| CROCKFORD[rng.below(32) as usize] as char)
        .collect()
}

fn tenant_plan(i: usize, rng: &mut Rng, ts: Timestamp) -> TenantPlan {
    let home_region = rng.pick_weighted(&TENANT_REGIONS);
    let mut p = TenantPolicyV1 {
        tenant_id: format!("prj_{:05}", i + 1),
        allowed_regions: None,
        allowed_profiles: None,
        data_boundary: None,
        subscriptions: vec![],
        byok: vec![],
        monthly_budget_micros: rng
            .chance(700)
            .then(|| rng.between(100, 10_000) * 1_000_000),
        overage_mode: Some(OverageMode::Allow),
        escalation: None,
        ts,
    };
    // Policy archetypes, in roughly the proportions a platform sees.
    match rng.below(1000) {
        0..100 => p.subscriptions = vec![["openai", "anthropic"][rng.below(2) as usize].to_owned()],
        100..180 => {
            p.byok = vec![["anthropic", "openai", "fireworks"][rng.below(3) as usize].to_owned()]
        }
        180..230 => {
            p.allowed_profiles = Some(vec![
                ProfileClass::Subscription,
                ProfileClass::Byok,
                ProfileClass::ManagedProvider,
            ])
        }
        230..280 => p.data_boundary = Some(DataBoundary::Strict),
        280..300 => {
            // Small prepaid budget: pauses once spent (`rejected/quota_exceeded`).
            p.monthly_budget_micros = Some(rng.between(2, 20) * 1_000_000);
            p.overage_mode = Some(OverageMode::Pause);
        }
        300..340 => p.escalation = Some(vec![ProfileClass::Byoc, ProfileClass::ManagedProvider]),
        340..400 => p.data_boundary = Some(DataBoundary::NoOpenrouter),
        _ => {}
    }
    let restricted = EU_REGIONS.contains(&home_region) && rng.chance(400);
    if restricted {
        p.allowed_regions = Some(EU_REGIONS.iter().map(|r| (*r).to_owned()).collect());
    }
    TenantPlan {
        policy: p,
        home_region,
        restricted,
    }
}

fn allows_byoc_in(t: &TenantPlan, region: &str) -> bool {
    let p = &t.policy;
    p.allowed_profiles
        .as_ref()
        .is_none_or(|ps| ps.contains(&ProfileClass::Byoc))
        && p.allowed_regions
            .as_ref()
            .is_none_or(|rs| rs.iter().any(|r| r == region))
}

impl Plan {
    pub(super) fn new(spec: &WorkloadSpec) -> Plan {
        let mut rng = Rng::new(spec.seed, PLAN_SALT);
        let (hot, tail) = lane_names(spec.hot_lanes, spec.tail_lanes);
        let tenants: Vec<TenantPlan> = (0..spec.tenants)
            .map(|i| tenant_plan(i, &mut rng, spec.start))
            .collect();
        let tenant_cdf = zipf_cdf(spec.tenants);
        let hot_cdf = zipf_cdf(hot.len());
        let tail_cdf = zipf_cdf(tail.len());
        let tenant_total = *tenant_cdf.last().expect("at least one tenant (validated)") as u128;

        let mut clusters = Vec::with_capacity(hot.len() * spec.clusters_per_hot_lane);
        for (l, lane) in hot.iter().enumerate() {
            // Expected concurrency of the lane: rate × lane share × mean service time.
            let hot_total = *hot_cdf.last().expect("hot lanes exist in this loop") as u128;
            let conc = spec.rate_per_sec as u128
                * spec.effective_hot_share() as u128
                * weight_of(&hot_cdf, l) as u128
                * MEAN_SERVICE_MS as u128
                * spec.capacity_permille as u128
                / (hot_total * 1_000_000_000);
            let n = spec.clusters_per_hot_lane;
            let regions: Vec<&str> = (0..n)
                .map(|j| CLUSTER_REGIONS[j % CLUSTER_REGIONS.len()])
                .collect();
            // The first cluster is shared; later ones may be dedicated to one of the biggest tenants.
            let dedicated: Vec<Option<usize>> = (0..n)
                .map(|j| {
                    if j == 0 || !rng.chance(spec.dedicated_permille) {
                        return None;
                    }
                    let eligible: Vec<usize> = (0..tenants.len().min(8))
                        .filter(|&t| allows_byoc_in(&tenants[t], regions[j]))
                        .collect();
                    (!eligible.is_empty())
                        .then(|| eligible[rng.below(eligible.len() as u64) as usize])
                })
                .collect();
            // A dedicated cluster is sized for its tenant's share; shared ones split the rest.
            let dedicated_cap = |t: usize| conc * weight_of(&tenant_cdf, t) as u128 / tenant_total;
            let reserved: u128 = dedicated.iter().flatten().map(|&t| dedicated_cap(t)).sum();
            let shared = dedicated.iter().filter(|d| d.is_none()).count() as u128;
            let model = ModelPath::parse(lane).map_or(lane.as_str(), |p| p.model);
            let short: String = model
                .rsplit('/')
                .next()
                .unwrap_or(model)
                .chars()
                .take(40)
                .collect();
            for (j, (&region, ded)) in regions.iter().zip(&dedicated).enumerate() {
                let cap = match ded {
                    Some(t) => dedicated_cap(*t),
                    None => conc.saturating_sub(reserved) / shared,
                };
                let max_inflight = (cap as u64).clamp(MIN_INFLIGHT, u32::MAX as u64) as u32;
                // ~128 concurrent sequences per 8-GPU node.
                let gpus = (max_inflight.div_ceil(128) * 8).clamp(8, 4096);
                clusters.push(ClusterRegisteredV1 {
                    cluster_id: format!("byc_{}", ulid_like(&mut rng)),
                    name: format!("{short}-{region}-{}", (b'a' + (j % 26) as u8) as char),
                    region: region.to_owned(),
                    stack: if rng.chance(700) {
                        Stack::Dynamo
                    } else {
                        Stack::Epp
                    },
                    lanes: vec![lane.clone()],
                    max_inflight,
                    gpus,
                    gpu_hour_micros: rng.between(200, 400) * 10_000,
                    dedicated_to: ded.map(|t| tenants[t].policy.tenant_id.clone()),
                    ts: Timestamp(spec.start.millis() + 1),
                });
            }
        }
        let providers: BTreeSet<&str> = hot
            .iter()
            .chain(&tail)
            .filter_map(|l| ModelPath::parse(l).map(|p| p.provider))
            .collect();
        let providers = providers.into_iter().map(str::to_owned).collect();
        let digests = hot
            .iter()
            .map(|_| {
                let hex: String = (0..4).map(|_| format!("{:016x}", rng.next_u64())).collect();
                format!("sha256:{hex}")
            })
            .collect();
        Plan {
            hot,
            tail,
            hot_cdf,
            tail_cdf,
            tenants,
            tenant_cdf,
            clusters,
            providers,
            digests,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::PriceTable;
    use crate::workload::Workload;

    #[test]
    fn every_lane_is_priced_and_clusters_fit_their_lanes() {
        let spec = WorkloadSpec {
            hot_lanes: 10,
            tail_lanes: 300,
            ..WorkloadSpec::default()
        };
        let w = Workload::new(spec).unwrap();
        let prices = PriceTable::embedded();
        for lane in w.hot_lanes().iter().chain(w.tail_lanes()) {
            assert!(prices.resolve(lane).is_some(), "{lane} has no price");
        }
        let lanes: BTreeSet<&String> = w.hot_lanes().iter().chain(w.tail_lanes()).collect();
        assert_eq!(lanes.len(), 310, "lane names are unique");
        assert_eq!(w.clusters().len(), 20);
        // Cluster capacity follows the Zipf ranks: lane 0 gets more than lane 3.
        let cap = |l: usize| -> u32 {
            w.clusters()
                .iter()
                .filter(|c| c.lanes[0] == w.hot_lanes()[l])
                .map(|c| c.max_inflight)
                .sum()
        };
        assert!(cap(0) > cap(3) * 3, "{} vs {}", cap(0), cap(3));
    }
}
