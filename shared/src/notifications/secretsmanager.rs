//! [`EndpointVault`] on AWS Secrets Manager: one secret per endpoint, named
//! `{prefix}{endpoint_id}` (the template's prefix is `{stack}/endpoints/`, the only names
//! the status and deliver roles may touch), encrypted with the account's Secrets Manager
//! key unless the secret was created with another.

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

use super::NotifyStoreError;
use super::vault::{EndpointSecrets, EndpointVault};
use crate::domain::notify::endpoint::EndpointId;

/// The endpoint vault in Secrets Manager.
#[derive(Debug, Clone)]
pub struct SecretsManagerVault {
    client: Client,
    prefix: String,
}

/// The service's error code (`ResourceNotFoundException`, …), for matching outcomes.
fn code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    match e {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}

fn unavailable<E, R>(call: &str, e: SdkError<E, R>) -> NotifyStoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    // The code and message only: an SDK error's Debug may carry the request.
    let what = match code(&e) {
        Some(code) => format!("{call}: {code}"),
        None => format!("{call}: {e}"),
    };
    NotifyStoreError::Unavailable(what.into())
}

const NOT_FOUND: &str = "ResourceNotFoundException";
const EXISTS: &str = "ResourceExistsException";

impl SecretsManagerVault {
    pub fn new(client: Client, prefix: impl Into<String>) -> Self {
        Self {
            client,
            prefix: prefix.into(),
        }
    }

    /// The shared Secrets Manager client (standard retries, 5 s per call).
    pub fn from_sdk(sdk: &aws_config::SdkConfig, prefix: impl Into<String>) -> Self {
        Self::new(crate::secrets::secretsmanager::client(sdk), prefix)
    }

    /// The secret's name for endpoint `id`.
    pub fn name(&self, id: &EndpointId) -> String {
        format!("{}{}", self.prefix, id.as_str())
    }

    async fn replace(&self, name: &str, value: &str) -> Result<bool, NotifyStoreError> {
        match self
            .client
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if code(&e) == Some(NOT_FOUND) => Ok(false),
            Err(e) => Err(unavailable("PutSecretValue", e)),
        }
    }
}

impl EndpointVault for SecretsManagerVault {
    async fn put(
        &self,
        id: &EndpointId,
        secrets: &EndpointSecrets,
    ) -> Result<(), NotifyStoreError> {
        let (name, value) = (self.name(id), secrets.to_json());
        if self.replace(&name, &value).await? {
            return Ok(());
        }
        match self
            .client
            .create_secret()
            .name(&name)
            .description("Signing secrets of one notification endpoint (mvcb)")
            .secret_string(&value)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Created meanwhile by another writer: this value is the newer one.
            Err(e) if code(&e) == Some(EXISTS) => match self.replace(&name, &value).await? {
                true => Ok(()),
                false => Err(NotifyStoreError::Unavailable(
                    format!("{name} was created and deleted while it was written").into(),
                )),
            },
            Err(e) => Err(unavailable("CreateSecret", e)),
        }
    }

    async fn read(&self, id: &EndpointId) -> Result<Option<EndpointSecrets>, NotifyStoreError> {
        match self
            .client
            .get_secret_value()
            .secret_id(self.name(id))
            .send()
            .await
        {
            Ok(out) => {
                let raw = out.secret_string.ok_or_else(|| {
                    NotifyStoreError::Malformed(format!("{} has no string value", self.name(id)))
                })?;
                EndpointSecrets::from_json(&raw).map(Some)
            }
            Err(e) if code(&e) == Some(NOT_FOUND) => Ok(None),
            Err(e) => Err(unavailable("GetSecretValue", e)),
        }
    }

    async fn delete(&self, id: &EndpointId) -> Result<(), NotifyStoreError> {
        match self
            .client
            .delete_secret()
            .secret_id(self.name(id))
            .force_delete_without_recovery(true)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some(NOT_FOUND) => Ok(()),
            Err(e) => Err(unavailable("DeleteSecret", e)),
        }
    }
}
