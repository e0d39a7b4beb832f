//! The music-video callback domain and its AWS adapters, shared by every function. Its
//! folders are its layers:
//!
//! - [`domain`]: pure and synchronous (envelope, task id, task record and transitions,
//!   verification, URL policy, clock);
//! - ports and adapters: [`store`] (task records; DynamoDB), [`sink`] (videos; S3),
//!   [`fetch`] (the video source; the SSRF-guarded HTTP client), [`upstream`] (the
//!   upstream's task API), [`inbox`] (callbacks spilled while the store is down),
//!   [`notifications`] (endpoints and deliveries), [`sender`] (outbound notifications;
//!   the guarded HTTP sender), [`secrets`] (configuration secrets; Secrets Manager);
//! - [`usecase`]: what a function does, written against the ports;
//! - [`metrics`]: the metric catalogue (names, units, closed label sets);
//! - [`lambda`]: the Lambda edge (configuration readers, telemetry, EMF metrics, HTTP
//!   responses, SDK clients);
//! - `test_support` (feature `test-support`): a fake for every port and the builders and
//!   fixtures the tests share.
//!
//! Adapters are behind cargo features, so each function links only the SDKs it calls.

pub mod domain;
#[cfg(feature = "fetch")]
pub mod fetch;
pub mod inbox;
pub mod lambda;
pub mod metrics;
pub mod notifications;
pub mod secrets;
pub mod sender;
pub mod sink;
pub mod store;
#[cfg(feature = "test-support")]
pub mod test_support;
pub mod upstream;
pub mod usecase;

pub use domain::clock::Timestamp;
pub use domain::envelope::{CallbackEnvelope, EnvelopeError, Outcome, VideoUrl};
pub use domain::task::{Task, TaskStatus};
pub use domain::task_id::TaskId;
