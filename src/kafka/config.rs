//! The `[kafka]` config section.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::core::config::ConfigInvalid;

/// How outputs and input offsets are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    /// One Kafka transaction per batch holds decisions, journal and DLQ records and the consumed
    /// offsets; readers use `read_committed`.
    #[default]
    ExactlyOnce,
    /// Outputs flushed, then offsets committed: lowest latency. After a crash or a takeover the
    /// inputs applied since the last offset commit are decided again, on the state of the last
    /// committed batch (a unit keeps its journal only up to its committed offsets), so a
    /// request among them gets a second decision: a copy of the first unless a broadcast record
    /// (a heartbeat, say) arrived in between. Dedupe on `request_id` (docs/operations.md,
    /// "At-least-once").
    AtLeastOnce,
}

/// What runs the deciders inside the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// One actix actor per lane, cluster and tenant, driven in input order by a dispatcher
    /// (`zumik::actors`).
    #[default]
    Actors,
    /// The same steps called in-process by `core::Router`, without messages: the same bytes
    /// out, less overhead per input.
    Inline,
}

/// The `[kafka]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers. Default `127.0.0.1:9092`.
    pub brokers: String,
    /// Prefix of every topic name. Default `zumik.` (topics `zumik.requests`, …).
    pub topic_prefix: String,
    /// Consumer group of the broker instances. Default `zumik-broker`.
    pub group_id: String,
    /// Partitions of topics the broker creates. Default 4.
    pub partitions: i32,
    /// Replication factor of topics the broker creates. Default 1.
    pub replication: i32,
    pub mode: DeliveryMode,
    /// What runs the deciders: `actors` (default) or `inline`. Both give the same decisions,
    /// journal and snapshots byte for byte; a snapshot of one restores the other.
    pub engine: EngineKind,
    /// Transactional id of this instance (exactly-once); must be unique per instance and stable
    /// across its restarts. Default `zumik-broker-0`.
    pub transactional_id: String,
    /// Most input messages per batch (one transaction). Large batches amortise the commit: on a
    /// local broker 1 000 / 5 ms gave ~7 k inputs/s, 20 000 / 50 ms ~40 k. Default 10 000.
    pub batch_max: usize,
    /// Longest a batch waits for more input after its first message, ms (latency vs
    /// throughput). Default 20.
    pub batch_wait_ms: u64,
    /// At-least-once: the input offsets of acknowledged batches are committed at most this often,
    /// ms (0: after every batch). Each commit is a write to Kafka's offsets log; at a few
    /// thousand small batches a second, committing each one loads the Kafka broker and costs
    /// latency. A crash re-decides at most this much input, with the same decision ids.
    /// Exactly-once ignores it (its offsets are part of each batch's transaction). Default 100.
    pub commit_interval_ms: u64,
    /// Create missing topics at start. Default true (the embedded demo creates its own).
    pub create_topics: bool,
    /// RocksDB directory for state snapshots. With it, a restart restores the latest snapshot
    /// and replays only the journal written after it; each snapshot is also published on the
    /// snapshots topic, which an instance with an empty directory restores from. Without it
    /// (default), a restart replays the whole journal topic.
    pub snapshot_dir: Option<PathBuf>,
    /// A snapshot is written after the batch that brings this many inputs since the last one:
    /// it bounds the journal a restart replays. Default 20 000.
    pub snapshot_every_inputs: u64,
    /// …or after the first batch this long after the last one, ms. Default 5 000.
    pub snapshot_interval_ms: u64,
    /// How long the consumer group waits for an instance that stopped answering before its
    /// partitions (units) move to the others, ms (`session.timeout.ms`; Kafka allows 6 000 to
    /// 300 000 by default). A restarted instance takes its units back at once (static
    /// membership). Default 10 000.
    pub session_timeout_ms: u64,
    /// How long a transaction may stay open, ms (`transaction.timeout.ms`): after a crash the
    /// instance's open transaction holds back `read_committed` readers of its partitions —
    /// the units' next owner among them — until Kafka aborts it this long after it began (or
    /// the instance restarts and fences it). Default 10 000.
    pub transaction_timeout_ms: u64,
    /// Extra librdkafka properties for every Kafka client of the broker and
    /// its tools: security (`security.protocol`, `sasl.*`, `ssl.*`), `client.id`, or latency
    /// tuning (`fetch.wait.max.ms`, `linger.ms`, …). They override the defaults of the
    /// broker's producer and input consumers; the readers that scan a topic once keep the few
    /// settings their scan needs. The settings the broker's guarantees rest on are refused
    /// ([`RESERVED_CLIENT_PROPERTIES`]). Default: none.
    pub client: ClientProperties,
}

/// `kafka.client`: librdkafka property names to values. A value may be written as a string, a
/// number or a boolean (`"fetch.wait.max.ms" = 1`, or `1` from an environment override): it
/// reaches librdkafka as its text. Values of secret-looking properties (passwords, keys,
/// secrets, OAuth configs) never print.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct ClientProperties(
    #[serde(deserialize_with = "scalar_values")] pub std::collections::BTreeMap<String, String>,
);

/// A map whose values are strings, numbers or booleans, each kept as its text.
fn scalar_values<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, String>, D::Error> {
    struct Scalar(String);
    impl<'de> Deserialize<'de> for Scalar {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl serde::de::Visitor<'_> for V {
                type Value = Scalar;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a string, a number or a boolean (a librdkafka property value)")
                }
                fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_owned()))
                }
                fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }
                fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }
                fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }
                fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }
            }
            d.deserialize_any(V)
        }
    }
    let m = std::collections::BTreeMap::<String, Scalar>::deserialize(d)?;
    Ok(m.into_iter().map(|(k, v)| (k, v.0)).collect())
}

impl std::fmt::Debug for ClientProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |k: &str| {
            ["password", "secret", "key", "oauthbearer", "jaas"]
                .iter()
                .any(|s| k.contains(s))
        };
        f.debug_map()
            .entries(
                self.0
                    .iter()
                    .map(|(k, v)| (k, if secret(k) { "<redacted>" } else { v.as_str() })),
            )
            .finish()
    }
}

/// librdkafka properties `kafka.client` may not set: exactly-once, offsets after durability,
/// the group's partition layout and the instance's identity depend on them (`brokers`,
/// `group_id`, `transactional_id`, `session_timeout_ms` and `transaction_timeout_ms` set the
/// rest).
pub const RESERVED_CLIENT_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "group.instance.id",
    "transactional.id",
    "transaction.timeout.ms",
    "session.timeout.ms",
    "enable.idempotence",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "isolation.level",
    "auto.offset.reset",
    "partition.assignment.strategy",
    "group.protocol",
    "enable.partition.eof",
    "acks",
];

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topic_prefix: "zumik.".into(),
            group_id: "zumik-broker".into(),
            partitions: 4,
            replication: 1,
            mode: DeliveryMode::ExactlyOnce,
            engine: EngineKind::Actors,
            transactional_id: "zumik-broker-0".into(),
            batch_max: 10_000,
            batch_wait_ms: 20,
            commit_interval_ms: 100,
            create_topics: true,
            snapshot_dir: None,
            snapshot_every_inputs: 20_000,
            snapshot_interval_ms: 5_000,
            session_timeout_ms: 10_000,
            transaction_timeout_ms: 10_000,
            client: Default::default(),
        }
    }
}

impl KafkaConfig {
    /// A client config for the configured brokers, with the `kafka.client` properties: the
    /// start of every Kafka client the broker and its tools make (each then sets its own).
    pub fn client_config(&self) -> rdkafka::ClientConfig {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        self.apply_client(&mut c);
        c
    }

    /// Sets the `kafka.client` properties on `c`, over what it has.
    pub fn apply_client(&self, c: &mut rdkafka::ClientConfig) {
        for (k, v) in &self.client.0 {
            c.set(k, v);
        }
    }

    pub fn validate(&self) -> Result<(), ConfigInvalid> {
        let bad = |field: &str, reason: &str| ConfigInvalid {
            field: field.into(),
            reason: reason.into(),
        };
        if self.brokers.trim().is_empty() {
            return Err(bad("kafka.brokers", "must name at least one broker"));
        }
        if self.partitions < 1 {
            return Err(bad("kafka.partitions", "must be at least 1"));
        }
        if self.replication < 1 {
            return Err(bad("kafka.replication", "must be at least 1"));
        }
        if self.batch_max == 0 {
            return Err(bad("kafka.batch_max", "must be at least 1"));
        }
        if self.snapshot_dir.is_some() && self.snapshot_every_inputs == 0 {
            return Err(bad("kafka.snapshot_every_inputs", "must be at least 1"));
        }
        if self
            .snapshot_dir
            .as_deref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return Err(bad("kafka.snapshot_dir", "must not be empty"));
        }
        if self.session_timeout_ms < 1_000 {
            return Err(bad("kafka.session_timeout_ms", "must be at least 1000"));
        }
        if self.transaction_timeout_ms < 1_000 {
            return Err(bad("kafka.transaction_timeout_ms", "must be at least 1000"));
        }
        for key in self.client.0.keys() {
            if key.trim().is_empty() {
                return Err(bad("kafka.client", "property names must not be empty"));
            }
            if RESERVED_CLIENT_PROPERTIES.contains(&key.as_str()) {
                return Err(ConfigInvalid {
                    field: format!("kafka.client.{key}"),
                    reason: "is set by the broker (its delivery guarantees depend on it)".into(),
                });
            }
        }
        if self.group_id.is_empty() || self.transactional_id.is_empty() {
            return Err(bad(
                "kafka.group_id",
                "group and transactional ids must not be empty",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_client(pairs: &[(&str, &str)]) -> KafkaConfig {
        KafkaConfig {
            client: ClientProperties(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..KafkaConfig::default()
        }
    }

    #[test]
    fn client_properties_override_the_defaults_but_not_the_guarantees() {
        let cfg = KafkaConfig {
            mode: DeliveryMode::AtLeastOnce,
            ..with_client(&[("fetch.wait.max.ms", "1"), ("client.id", "zumik-a")])
        };
        cfg.validate().unwrap();
        let consumer = crate::kafka::worker::consumer_config(&cfg);
        assert_eq!(consumer.get("fetch.wait.max.ms"), Some("1"));
        assert_eq!(consumer.get("client.id"), Some("zumik-a"));
        let producer = crate::kafka::worker::producer_config(&cfg);
        assert_eq!(producer.get("client.id"), Some("zumik-a"));
        assert_eq!(
            cfg.client_config().get("bootstrap.servers"),
            Some("127.0.0.1:9092")
        );

        for reserved in ["isolation.level", "enable.auto.commit", "transactional.id"] {
            let e = with_client(&[(reserved, "x")]).validate().unwrap_err();
            assert_eq!(e.field, format!("kafka.client.{reserved}"));
        }
        assert!(with_client(&[(" ", "x")]).validate().is_err());

        let secret = with_client(&[
            ("sasl.password", "hunter2-hunter2"),
            ("client.id", "zumik-a"),
        ]);
        let printed = format!("{secret:?}");
        assert!(
            !printed.contains("hunter2") && printed.contains("zumik-a"),
            "{printed}"
        );
    }
}
