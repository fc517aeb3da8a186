//! Zumik execution broker: decides, for every LLM inference request, whether it runs on a BYOC
//! hot lane or on a managed provider — deterministically, so every decision can be replayed.
//!
//! # Layout
//!
//! - [`events`] — the public event contract (v1 JSON types, JSON Schemas, codecs, event time).
//! - [`core`] — the pure, sans-IO routing core: lane, cluster and tenant deciders, the price
//!   table, the routing config and the [`core::Router`] that wires them. No I/O, no clock.
//! - [`journal`] — journal files (JSONL / bincode) that audits replay offline.
//! - [`config`] — the one validated root config (`zumik.toml` + `ZUMIK_*` environment overrides).
//! - [`gate`] — the workload diagnostic, the replay simulation of a candidate cluster, gate
//!   reports (JSON + HTML); pure, driving the same [`core::Router`] as production.
//! - [`workload`] — the deterministic synthetic workload generator (seeded; feeds the demo,
//!   `zumik produce`, the benches).
//! - [`actors`] — the actix actors, one per lane, cluster and tenant, thin shells over the
//!   core's steps, and the dispatcher that drives them in input order (same bytes out as
//!   [`core::Router`]); the broker runs on them (`kafka.engine = "actors"`).
//! - [`kafka`] — the Kafka runtime: topics, the exactly-once broker loop over the core, recovery
//!   from the journal topic (blocking librdkafka calls on dedicated threads).
//! - [`store`] — the RocksDB snapshot store: router state and the input position it reflects,
//!   in one atomic write batch.
//! - [`api`] — the HTTP API of `zumik serve` (actix-web): clusters, lanes, tenant policies,
//!   decisions with explanations, `/healthz`, `/metrics`, the status page; the read-model actor
//!   the broker feeds after each committed batch.
//! - [`telemetry`] — every Prometheus metric name and label, and the `tracing` log setup.
//! - [`cli`] — the `zumik` command line (thin: parses arguments, does I/O, calls the core).
//!
//! Planned next (DESIGN §6): partition handover between live instances through
//! `zumik.snapshots`.

pub mod actors;
pub mod api;
pub mod cli;
pub mod config;
pub mod core;
pub mod events;
pub mod gate;
pub mod journal;
pub mod kafka;
pub mod store;
pub mod telemetry;
pub mod workload;
