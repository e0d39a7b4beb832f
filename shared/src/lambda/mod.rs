//! The Lambda edge: configuration read once from the environment, JSON logs, EMF metrics, the HTTP
//! error/response shape both HTTP functions share, the stream consumers' batch report, and
//! the AWS SDK clients.

#[cfg(any(feature = "dynamodb", feature = "s3", feature = "sqs"))]
pub mod aws;
pub mod config;
pub mod http;
pub mod metrics;
#[cfg(feature = "stream-batch")]
pub mod stream;
pub mod telemetry;
