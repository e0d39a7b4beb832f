//! [`SecretStore`] on AWS Secrets Manager: `GetSecretValue` of the current version.

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::SdkError;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;

use super::{SecretError, SecretStore};

/// Secrets Manager, through one client built at cold start.
#[derive(Debug, Clone)]
pub struct SecretsManager {
    client: Client,
}

impl SecretsManager {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// A client with the SDK's standard retries and a 5 s bound per call.
    pub fn from_sdk(sdk: &aws_config::SdkConfig) -> Self {
        let conf = aws_sdk_secretsmanager::config::Builder::from(sdk)
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_timeout(std::time::Duration::from_secs(5))
                    .build(),
            )
            .build();
        Self::new(Client::from_conf(conf))
    }
}

impl SecretStore for SecretsManager {
    async fn fetch(&self, id: &str) -> Result<String, SecretError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| match e {
                SdkError::ServiceError(service) => match service.err() {
                    GetSecretValueError::ResourceNotFoundException(_) => {
                        SecretError::NotFound(id.to_owned())
                    }
                    other => {
                        let code = aws_sdk_secretsmanager::error::ProvideErrorMetadata::code(other)
                            .unwrap_or("unknown");
                        if code == "AccessDeniedException" {
                            SecretError::NotFound(format!("{id} (access denied)"))
                        } else {
                            SecretError::Unavailable(format!("GetSecretValue: {code}"))
                        }
                    }
                },
                other => SecretError::Unavailable(format!("GetSecretValue: {other}")),
            })?;
        out.secret_string
            .ok_or_else(|| SecretError::Malformed(format!("{id} has no string value")))
    }
}
