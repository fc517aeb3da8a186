//! The Kafka runtime (DESIGN §3, §6): topics, the broker loop that runs the routing core over
//! Kafka inputs with exactly-once output, and the producer/tail tools.
//!
//! Everything here is blocking librdkafka calls on dedicated threads — never on an async
//! executor. The routing itself is [`crate::core::Router`], unchanged: this layer only moves
//! bytes, batches, and commits.

pub mod config;
pub mod topics;
pub mod units;
pub mod worker;

pub use config::{DeliveryMode, EngineKind, KafkaConfig};
pub use topics::Topics;
pub use worker::{
    append_to_journal, read_journal, read_journal_units, read_topic, run_broker, run_broker_with,
    BatchSink, BrokerStats, CommittedBatch, JournalRecord, NoSink,
};
