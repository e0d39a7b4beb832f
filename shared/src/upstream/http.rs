//! The HTTP adapter of the upstream API: `GET {base}/api/v1/mp4/record-info?taskId=…`
//! with `Authorization: Bearer <key>`. The base is the operator's configuration, not a
//! callback's, so this is a plain client (https unless configured for local use); the
//! key never appears in a log or an error.

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::{UpstreamApi, UpstreamError, UpstreamRecord, parse_record_info, refusal};
use crate::domain::secret::Secret;
use crate::domain::task_id::TaskId;
use crate::lambda::config::{ConfigError, Env, FromEnv, UpstreamApiSettings};
use crate::secrets::Refreshing;

/// The upstream's API at `base`.
#[derive(Debug, Clone)]
pub struct HttpUpstream {
    client: reqwest::Client,
    base: Url,
    key: Secret,
}

impl HttpUpstream {
    /// `allow_http` only for local stacks (the simulated upstream).
    pub fn new(base: Url, key: Secret, allow_http: bool) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .https_only(!allow_http)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("music-video-receiver/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client, base, key })
    }

    /// The client the configuration asks for, if it asks for one.
    pub fn configured(
        settings: Option<&UpstreamApiSettings>,
    ) -> Result<Option<Self>, reqwest::Error> {
        settings
            .map(|s| Self::new(s.base.clone(), s.key.clone(), s.allow_http))
            .transpose()
    }
}

/// The upstream's client, rebuilt from its secret (`UPSTREAM_API_KEY` in `SECRETS_ID`)
/// when that is due a refresh, so a rotated key needs no redeploy.
#[derive(Debug, Clone)]
pub struct RefreshingUpstream(Arc<Refreshing<Option<HttpUpstream>>>);

/// How long a call waits for a due refresh of the key before using the one it has.
const KEY_REFRESH_WAIT: Duration = Duration::from_secs(2);

impl RefreshingUpstream {
    pub fn new(client: Refreshing<Option<HttpUpstream>>) -> Self {
        Self(Arc::new(client))
    }

    /// The client the environment asks for (`UPSTREAM_API_BASE`, `UPSTREAM_API_KEY`).
    pub fn build(env: &Env) -> Result<Option<HttpUpstream>, ConfigError> {
        let settings = Option::<UpstreamApiSettings>::from_env(env)?;
        HttpUpstream::configured(settings.as_ref()).map_err(|e| ConfigError::Invalid {
            name: "UPSTREAM_API_BASE",
            reason: format!("the client could not be built: {e}"),
        })
    }
}

impl UpstreamApi for RefreshingUpstream {
    async fn record_info(&self, task_id: &TaskId) -> Result<UpstreamRecord, UpstreamError> {
        let client = self.0.current_after_refresh(KEY_REFRESH_WAIT).await;
        client.record_info(task_id).await
    }
}

impl UpstreamApi for HttpUpstream {
    async fn record_info(&self, task_id: &TaskId) -> Result<UpstreamRecord, UpstreamError> {
        let mut url = self
            .base
            .join("api/v1/mp4/record-info")
            .map_err(|e| UpstreamError::Malformed(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("taskId", task_id.as_str());
        let key = String::from_utf8_lossy(self.key.expose()).into_owned();
        let response = self
            .client
            .get(url)
            .bearer_auth(key)
            .send()
            .await
            .map_err(|e| UpstreamError::Unavailable(e.without_url().to_string()))?;
        let status = response.status().as_u16();
        if let Some(refused) = refusal(i64::from(status), || format!("HTTP {status}")) {
            return Err(refused);
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| UpstreamError::Unavailable(e.without_url().to_string()))?;
        parse_record_info(&body)
    }
}
