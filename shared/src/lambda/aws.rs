//! AWS SDK clients, built once per cold start. Endpoints come from the standard
//! variables (`AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_S3`), which is how the local
//! stack points the same binaries at local servers.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// Loads region, credentials and endpoints from the environment.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// Bounds on one store call: the whole operation including SDK retries, and one attempt.
#[derive(Debug, Clone, Copy)]
pub struct CallTimeouts {
    pub operation: Duration,
    pub attempt: Duration,
    pub max_attempts: u32,
}

impl CallTimeouts {
    /// For functions nobody waits on (ingest, the reconciler): 10 s a call, 3 s an
    /// attempt, so an unresponsive table fails calls instead of hanging them.
    pub const BACKGROUND: Self = Self {
        operation: Duration::from_secs(10),
        attempt: Duration::from_secs(3),
        max_attempts: 3,
    };
}

#[cfg(feature = "dynamodb")]
pub fn dynamodb_client(sdk: &SdkConfig, timeouts: CallTimeouts) -> aws_sdk_dynamodb::Client {
    let conf = aws_sdk_dynamodb::config::Builder::from(sdk)
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_timeout(timeouts.operation)
                .operation_attempt_timeout(timeouts.attempt)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(timeouts.max_attempts))
        .build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}

/// `force_path_style` is for local S3-protocol servers (`S3_FORCE_PATH_STYLE=true`).
#[cfg(feature = "s3")]
pub fn s3_client(sdk: &SdkConfig, force_path_style: bool) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(force_path_style)
        .retry_config(RetryConfig::standard().with_max_attempts(5))
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The job queue's client: 10 s a call, like the background store calls.
#[cfg(feature = "sqs")]
pub fn sqs_client(sdk: &SdkConfig) -> aws_sdk_sqs::Client {
    let conf = aws_sdk_sqs::config::Builder::from(sdk)
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_timeout(CallTimeouts::BACKGROUND.operation)
                .operation_attempt_timeout(CallTimeouts::BACKGROUND.attempt)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .build();
    aws_sdk_sqs::Client::from_conf(conf)
}
