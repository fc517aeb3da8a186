//! The HTTP API beside the broker (actix-web, DESIGN §7): BYOC cluster registration and
//! heartbeats, lanes and their activation, tenant policies, decisions with explanations,
//! `/healthz`, `/metrics` and the status page.
//!
//! The API holds no state: writes become events on the control and telemetry topics (the same
//! public events any producer may send, stamped with the wall clock here at the edge); reads
//! come from the [`model::ReadModel`] actor, which the broker feeds after each committed batch.
//! A write that changes what the API shows (register, delete, activate, deactivate) waits up to
//! `api.apply_wait_ms` until the broker has applied it, so a 201/200 means the state is visible.

pub mod error;
pub mod explain;
pub mod model;
pub mod routes;
pub mod status_page;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::core::config::ConfigInvalid;
use crate::events::InputEvent;

pub use routes::{app, ApiState};

/// A bearer token: never printed by `Debug`, never logged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// Constant-time comparison (no early exit on the first differing byte).
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The `[api]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Serve the HTTP API from `zumik serve`. Default true.
    pub enabled: bool,
    /// Listen address. Default `127.0.0.1:8080`.
    pub listen: String,
    /// Bearer token of the admin scope (writes and reads). Without it every write is refused
    /// with 403. Set it from the environment: `ZUMIK_API__ADMIN_TOKEN`.
    pub admin_token: Option<Secret>,
    /// Bearer token of the read-only scope. Without it reads need no token.
    pub read_token: Option<Secret>,
    /// Largest request body, bytes. Default 65 536.
    pub max_body_bytes: usize,
    /// Decisions kept for `GET /v2/decisions/{id}` (the most recent ones). Default 100 000.
    pub recent_decisions: usize,
    /// How often the broker publishes its view of lanes and clusters, ms. Default 500.
    pub view_interval_ms: u64,
    /// How long a write waits for the broker to apply it before answering 202, ms. Default 5 000.
    pub apply_wait_ms: u64,
    /// HTTP worker threads. Default 2.
    pub workers: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enabled: true,
            listen: "127.0.0.1:8080".into(),
            admin_token: None,
            read_token: None,
            max_body_bytes: 64 * 1024,
            recent_decisions: 100_000,
            view_interval_ms: 500,
            apply_wait_ms: 5_000,
            workers: 2,
        }
    }
}

impl ApiConfig {
    pub fn validate(&self) -> Result<(), ConfigInvalid> {
        let bad = |field: &'static str, reason: &str| {
            Err(ConfigInvalid {
                field: format!("api.{field}"),
                reason: reason.into(),
            })
        };
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return bad("listen", "must be an address like 127.0.0.1:8080");
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_body_bytes) {
            return bad("max_body_bytes", "must be 1024 to 16777216");
        }
        if self.recent_decisions > 10_000_000 {
            return bad("recent_decisions", "must be at most 10000000");
        }
        if !(10..=60_000).contains(&self.view_interval_ms) {
            return bad("view_interval_ms", "must be 10 to 60000");
        }
        if self.apply_wait_ms > 60_000 {
            return bad("apply_wait_ms", "must be at most 60000");
        }
        if !(1..=64).contains(&self.workers) {
            return bad("workers", "must be 1 to 64");
        }
        for (field, token) in [
            ("admin_token", &self.admin_token),
            ("read_token", &self.read_token),
        ] {
            if token.as_ref().is_some_and(|t| t.0.len() < 16) {
                return bad(field, "must be at least 16 characters");
            }
        }
        Ok(())
    }
}

/// Where writes go: puts one input event on its topic and resolves once Kafka acknowledged it
/// (or with the reason it did not).
pub type Control =
    Arc<dyn Fn(InputEvent) -> Pin<Box<dyn Future<Output = Result<(), String>>>> + Send + Sync>;
