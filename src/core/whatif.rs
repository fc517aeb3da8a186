//! What-if: the same inputs under two configurations, and how the decisions differ.
//!
//! Pure: both routers and the inputs come from the caller. Decisions are matched by position
//! (each request yields exactly one decision, in input order) and checked to be for the same
//! request.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::events::{DecisionV1, InputEvent};

use super::router::{Output, Router};

/// How decisions changed between a baseline and a candidate configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WhatIf {
    pub decisions: u64,
    pub changed: u64,
    /// `"<baseline profile>/<reason> -> <candidate profile>/<reason>"` → count, for changed ones.
    pub transitions: BTreeMap<String, u64>,
    /// Decision count per reason, before and after.
    pub baseline_reasons: BTreeMap<String, u64>,
    pub candidate_reasons: BTreeMap<String, u64>,
    pub baseline_cost_micros: u64,
    pub candidate_cost_micros: u64,
    /// candidate − baseline.
    pub cost_delta_micros: i64,
}

fn label(d: &DecisionV1) -> String {
    let profile = d.profile.map_or("none".to_owned(), |p| {
        serde_json::to_value(p)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    });
    format!("{profile}/{}", d.reason.as_str())
}

impl WhatIf {
    fn add(&mut self, base: &DecisionV1, cand: &DecisionV1) {
        self.decisions += 1;
        *self
            .baseline_reasons
            .entry(base.reason.as_str().to_owned())
            .or_default() += 1;
        *self
            .candidate_reasons
            .entry(cand.reason.as_str().to_owned())
            .or_default() += 1;
        self.baseline_cost_micros += base.estimated_cost_micros;
        self.candidate_cost_micros += cand.estimated_cost_micros;
        let same = base.profile == cand.profile
            && base.mode == cand.mode
            && base.target == cand.target
            && base.reason == cand.reason;
        if !same {
            self.changed += 1;
            *self
                .transitions
                .entry(format!("{} -> {}", label(base), label(cand)))
                .or_default() += 1;
        }
    }
}

/// Runs `inputs` through both routers; `candidate_inputs` rewrites the candidate's stream
/// (e.g. forced activations) and may only add or drop non-request events.
pub fn compare(
    inputs: impl IntoIterator<Item = InputEvent>,
    mut baseline: Router,
    mut candidate: Router,
    mut candidate_inputs: impl FnMut(InputEvent) -> Vec<InputEvent>,
) -> WhatIf {
    let mut report = WhatIf::default();
    let (mut a, mut b) = (Output::default(), Output::default());
    for event in inputs {
        baseline.apply(event.clone(), &mut a);
        for e in candidate_inputs(event) {
            candidate.apply(e, &mut b);
        }
        for (x, y) in a.decisions.iter().zip(b.decisions.iter()) {
            debug_assert_eq!(x.request_id, y.request_id);
            report.add(x, y);
        }
        a.clear();
        b.clear();
    }
    report.cost_delta_micros =
        report.candidate_cost_micros as i64 - report.baseline_cost_micros as i64;
    report
}
