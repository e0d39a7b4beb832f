//! Music-video task domain and its AWS adapters, shared by every function.
//!
//! The domain is synchronous and pure: [`envelope`] parses the upstream's callback,
//! [`verify`] authenticates it, [`task`] holds the task record and its state machine,
//! [`ssrf`] decides which video URLs may be fetched. Storage sits behind narrow ports
//! ([`store::TaskStore`], [`sink::VideoSink`]) with DynamoDB and S3 adapters enabled by
//! cargo features, so each function links only the SDKs it calls.

#[cfg(any(feature = "dynamodb", feature = "s3"))]
pub mod aws;
pub mod clock;
pub mod config;
pub mod envelope;
pub mod record;
pub mod response;
pub mod secret;
pub mod sink;
pub mod ssrf;
pub mod store;
pub mod task;
pub mod task_id;
pub mod telemetry;
pub mod verify;

#[cfg(feature = "fetch")]
pub mod fetch;

pub use clock::Timestamp;
pub use envelope::{CallbackEnvelope, EnvelopeError, Outcome, VideoUrl};
pub use task::{Task, TaskStatus};
pub use task_id::TaskId;
