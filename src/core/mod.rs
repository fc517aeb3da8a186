//! The pure routing core (DESIGN §4, §6): deciders for lanes, clusters and tenants, the price
//! table, the routing config, and the [`router::Router`] that wires them together.
//!
//! Sans-IO: no tokio, rdkafka, rocksdb, actix, clock, randomness or logging in here. Each decider
//! is `decide(&state, &command) -> Vec<Event>` plus `evolve(&mut state, &event)`; time comes
//! from events; maps iterated into an output are `BTreeMap`s, and the hash maps looked up on the
//! hot path (`index::HashIndex`) encode in key order, so hash order never reaches an output.

pub mod audit;
pub mod cluster;
pub mod config;
pub mod expiry;
pub mod index;
pub mod lane;
pub mod price;
pub mod router;
pub mod tenant;
pub mod view;
pub mod whatif;

pub use config::RoutingConfig;
pub use price::{PriceAliases, PriceTable};
pub use router::{Output, Router};
