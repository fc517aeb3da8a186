//! The public event contract (v1): input events, the decision, event time, contract checks,
//! JSON codecs and the JSON Schemas generated from these types.
//!
//! Everything here is plain data and pure functions; the routing logic lives in `core`.

pub mod codec;
pub mod decision;
pub mod id;
pub mod input;
pub mod name;
pub mod report;
pub mod schema;
pub mod time;
pub mod validate;

pub use decision::{Considered, DecisionV1, Mode, OutputEvent, Profile, Reason, Source, Verdict};
pub use id::InlineId;
pub use input::*;
pub use name::Name;
pub use report::{report_digest, GateReportV1, Window};
pub use time::Timestamp;
pub use validate::{Invalid, ModelPath};
