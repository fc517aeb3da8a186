//! Topic names (with the configured prefix) and their creation at start.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use super::config::KafkaConfig;
use crate::events::codec::{decode_input, decode_internal, DecodeError};
use crate::events::{InputEvent, Invalid};

/// The names of every Zumik topic (DESIGN §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub requests: String,
    pub completions: String,
    pub telemetry: String,
    pub control: String,
    pub decisions: String,
    pub journal: String,
    pub status: String,
    pub usage: String,
    pub snapshots: String,
    pub dlq: String,
}

impl Topics {
    pub fn new(prefix: &str) -> Self {
        let t = |name: &str| format!("{prefix}{name}");
        Topics {
            requests: t("requests"),
            completions: t("completions"),
            telemetry: t("telemetry"),
            control: t("control"),
            decisions: t("decisions"),
            journal: t("journal"),
            status: t("status"),
            usage: t("usage"),
            snapshots: t("snapshots"),
            dlq: t("dlq"),
        }
    }

    /// The input topics the broker consumes.
    pub fn inputs(&self) -> [&str; 4] {
        [
            &self.requests,
            &self.completions,
            &self.telemetry,
            &self.control,
        ]
    }

    /// The topics every instance reads whole and applies to each unit it holds (telemetry,
    /// control, and the units' own usage and status records), as opposed to the requests and
    /// completions, which the consumer group splits into units.
    pub fn broadcast(&self) -> [&str; 4] {
        [&self.telemetry, &self.control, &self.usage, &self.status]
    }

    /// Whether `topic` carries the broker's own records for other units (usage, status).
    pub fn is_internal(&self, topic: &str) -> bool {
        topic == self.usage || topic == self.status
    }

    /// Decodes one record of input topic `topic`. The usage and status topics carry the
    /// broker's own bincode records; the public topics carry JSON, where the internal events
    /// are refused (only the broker charges budgets and trips breakers across units).
    pub fn decode(&self, topic: &str, payload: &[u8]) -> Result<InputEvent, DecodeError> {
        if self.is_internal(topic) {
            return decode_internal(payload);
        }
        match decode_input(payload)? {
            e if e.is_internal() => Err(DecodeError::Invalid {
                schema: e.schema_name(),
                invalid: Invalid::new(
                    "schema",
                    format!(
                        "internal to the broker: accepted only on {} and {}",
                        self.usage, self.status
                    ),
                ),
            }),
            event => Ok(event),
        }
    }

    /// Where a producer puts an input event.
    pub fn for_input(&self, e: &InputEvent) -> &str {
        match e {
            InputEvent::Request(_) => &self.requests,
            InputEvent::Completion(_) => &self.completions,
            InputEvent::ClusterHeartbeat(_) | InputEvent::ProviderHealth(_) => &self.telemetry,
            InputEvent::Usage(_) => &self.usage,
            InputEvent::BreakerTripped(_) => &self.status,
            _ => &self.control,
        }
    }

    /// Every topic, with whether it is compacted.
    pub fn all(&self) -> Vec<(&str, bool)> {
        vec![
            (&self.requests, false),
            (&self.completions, false),
            (&self.telemetry, false),
            (&self.control, true),
            (&self.decisions, false),
            (&self.journal, false),
            (&self.status, true),
            (&self.usage, false),
            (&self.snapshots, true),
            (&self.dlq, false),
        ]
    }
}

/// Why topics could not be created.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("kafka admin client for {brokers}: {source}")]
    Client {
        brokers: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("creating topic {topic}: {message}")]
    Create { topic: String, message: String },
}

/// `max.message.bytes` of the snapshots topic (= `worker::SNAPSHOT_MESSAGE_MAX`).
const MAX_SNAPSHOT_BYTES: &str = "67108864";

/// `retention.ms` of the usage topic: 40 days, so that a unit loaded on any day of a month
/// finds every other unit's usage of that month (the topic's records are per tenant and batch,
/// small).
const USAGE_RETENTION_MS: &str = "3456000000";

/// Creates the topics that do not exist yet (control, status and snapshots compacted).
pub fn ensure_topics(cfg: &KafkaConfig, topics: &Topics) -> Result<(), TopicError> {
    let admin: AdminClient<DefaultClientContext> =
        cfg.client_config()
            .create()
            .map_err(|source| TopicError::Client {
                brokers: cfg.brokers.clone(),
                source,
            })?;
    let specs = topics.all();
    // The first topic of `specs` the metadata does not show ready (all partitions led).
    let waiting = |meta: &rdkafka::metadata::Metadata| {
        specs
            .iter()
            .find(|(name, _)| {
                !meta.topics().iter().any(|t| {
                    t.name() == *name
                        && t.error().is_none()
                        && !t.partitions().is_empty()
                        && t.partitions()
                            .iter()
                            .all(|p| p.leader() >= 0 && p.error().is_none())
                })
            })
            .map(|(name, _)| *name)
    };
    let metadata = || {
        admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(5))
            .map_err(|source| TopicError::Client {
                brokers: cfg.brokers.clone(),
                source,
            })
    };
    // A restart finds them all: one metadata request, no creation round trip.
    if waiting(&metadata()?).is_none() {
        return Ok(());
    }
    let new: Vec<NewTopic> = specs
        .iter()
        .map(|(name, compact)| {
            let t = NewTopic::new(
                name,
                cfg.partitions,
                TopicReplication::Fixed(cfg.replication),
            );
            let t = if *compact {
                t.set("cleanup.policy", "compact")
            } else {
                t
            };
            if *name == topics.snapshots.as_str() {
                t.set("max.message.bytes", MAX_SNAPSHOT_BYTES)
            } else if *name == topics.usage.as_str() {
                // A unit loaded later sums the month's usage from here: keep a month and more.
                t.set("retention.ms", USAGE_RETENTION_MS)
            } else {
                t
            }
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = futures_executor::block_on(admin.create_topics(&new, &opts)).map_err(|e| {
        TopicError::Create {
            topic: "*".into(),
            message: e.to_string(),
        }
    })?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(TopicError::Create {
                    topic,
                    message: code.to_string(),
                })
            }
        }
    }
    // Creation is acknowledged before every partition has a leader: a consumer subscribing at
    // once could be told a topic is unknown. Return only once the metadata shows them all.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let Some(name) = waiting(&metadata()?) else {
            return Ok(());
        };
        if Instant::now() > deadline {
            return Err(TopicError::Create {
                topic: name.to_string(),
                message: "created, but its partitions have no leader after 30 s".into(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
