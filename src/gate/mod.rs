//! The gate (DESIGN §5): the workload diagnostic, the replay simulation of a candidate cluster,
//! and the gate report (JSON + HTML).
//!
//! Pure and deterministic: history arrives as bytes ([`trace`]), everything else is computed
//! from it with integer money and event time — no clock, no file system, no randomness — so the
//! same inputs and config give the same report bytes and digest. The replay drives the same
//! [`crate::core::Router`] as production. The CLI (`zumik diagnose`, `zumik gate`) reads the
//! files and writes the outputs.
//!
//! - [`trace`] — Azure trace CSVs and JSONL event exports → request records in arrival order.
//! - [`model`] — the candidate cluster: capacity, service time, cost, break-even utilisation.
//! - [`stats`] — nearest-rank percentiles, time buckets, burstiness.
//! - [`diagnose`] — per-lane concentration, sustained rate, burstiness, utilisation vs break-even.
//! - [`simulate`] — one replay of a lane through the router with a simulated cluster.
//! - [`report`] — the sweep, the prices, the verdict, the sealed `zumik.gate_report.v1`.
//! - [`html`], [`svg`] — the self-contained report page and its charts.
//!
//! The method and its formulas, with a worked example, are in `docs/gate.md`.

pub mod diagnose;
pub mod html;
pub mod model;
pub mod report;
pub mod simulate;
pub mod stats;
pub mod svg;
pub mod trace;

pub use diagnose::{diagnose, Diagnosis, LaneDiagnosis};
pub use model::ClusterSpec;
pub use report::{GateError, GateOptions, GatePlan};
pub use trace::{Trace, TraceBuilder, TraceError};
