//! [`SecretStore`] on AWS Secrets Manager: `GetSecretValue` of the current version, and
//! the cold start of a function that reads its configuration secret there.

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::SdkError;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;

use tracing::error;

use super::{
    Build, Refreshing, SecretError, SecretSettings, SecretStore, cold_start_env, refreshing,
};
use crate::lambda::config::Env;

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
        Self::new(client(sdk))
    }
}

/// The Secrets Manager client every reader and writer uses: the SDK's standard retries and
/// a 5 s bound per call, so a cold start or a delivery never hangs on it.
pub fn client(sdk: &aws_config::SdkConfig) -> Client {
    let conf = aws_sdk_secretsmanager::config::Builder::from(sdk)
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_timeout(std::time::Duration::from_secs(5))
                .build(),
        )
        .build();
    Client::from_conf(conf)
}

/// What a function's cold start read: the process environment, the configuration source
/// (that environment with the secret laid over it) and where the secret is.
#[derive(Debug)]
pub struct ColdStart {
    pub process: Env,
    /// Build the configuration from this.
    pub env: Env,
    store: SecretsManager,
    secret: Option<SecretSettings>,
}

impl ColdStart {
    /// Reads the secret `SECRETS_ID` names, if any (logging why it could not be used).
    pub async fn read(sdk: &aws_config::SdkConfig, process: Env) -> Result<Self, SecretError> {
        let store = SecretsManager::from_sdk(sdk);
        let (env, secret) = cold_start_env(&process, &store)
            .await
            .inspect_err(|e| error!(error = %e, "the configuration secret could not be used"))?;
        Ok(Self {
            process,
            env,
            store,
            secret,
        })
    }

    /// `initial` (built from [`ColdStart::env`]), rebuilt by `build` as the secret is
    /// refreshed; fixed without a secret.
    pub fn refreshing<T: Send + Sync + 'static>(
        &self,
        initial: T,
        build: Build<T>,
    ) -> Refreshing<T> {
        refreshing(
            initial,
            self.process.clone(),
            self.store.clone(),
            self.secret.clone(),
            build,
        )
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
