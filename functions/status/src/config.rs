//! The status function's configuration, read once from the environment at cold start.

use std::time::Duration;

use shared::domain::notify::endpoint::{EndpointId, EndpointUrlPolicy};
use shared::domain::notify::health::HealthPolicy;
use shared::lambda::config::{
    ConfigError, EndpointSecretsConfig, Env, FallbackEndpoint, FromEnv, NotificationTables, TaskTtl,
};

#[derive(Debug, Clone)]
pub struct StatusConfig {
    /// `TABLE_NAME`
    pub table_name: String,
    /// `PRESIGN_TTL_SECS` (900). A URL signed with the function's role credentials stops
    /// working when those expire, whatever this says; 12 h is the ceiling.
    pub presign_ttl: Duration,
    /// `S3_FORCE_PATH_STYLE` (local S3-protocol servers).
    pub s3_force_path_style: bool,
    /// `TASK_TTL_DAYS` (30): how long a registered (expected) task lives.
    pub task_ttl: Duration,
    /// `DELIVERIES_TABLE_NAME`, `ENDPOINTS_TABLE_NAME`, `JOBS_QUEUE_URL`: the notification
    /// routes' tables and the queue replays go to.
    pub tables: NotificationTables,
    /// `ENDPOINT_SECRETS_PREFIX`, `ENDPOINT_SECRETS_CACHE_SECS`: endpoint secrets in Secrets
    /// Manager.
    pub endpoint_secrets: EndpointSecretsConfig,
    /// `ENDPOINT_URL_ALLOW_HTTP`, `ENDPOINT_URL_ALLOW_LOOPBACK`, `ENDPOINT_URL_ANY_CHAT_HOST`
    /// (local stacks only): where endpoints may point (and where a test send may go).
    pub url_policy: EndpointUrlPolicy,
    /// `DISABLE_AFTER_DAYS`, `DISABLE_AFTER_FAILURES`: as deliver's (a test is an attempt).
    pub health: HealthPolicy,
    /// `FALLBACK_ENDPOINT_ID`: as deliver's.
    pub fallback: Option<EndpointId>,
}

impl StatusConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let ttl = env.ranged("PRESIGN_TTL_SECS", 900u64, 1..=43_200)?;
        Ok(Self {
            table_name: env.required("TABLE_NAME")?.to_owned(),
            presign_ttl: Duration::from_secs(ttl),
            s3_force_path_style: env.flag("S3_FORCE_PATH_STYLE")?,
            task_ttl: TaskTtl::from_env(env)?.0,
            tables: FromEnv::from_env(env)?,
            endpoint_secrets: FromEnv::from_env(env)?,
            url_policy: FromEnv::from_env(env)?,
            health: FromEnv::from_env(env)?,
            fallback: FallbackEndpoint::from_env(env)?.0,
        })
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub const BASE: [(&str, &str); 5] = [
        ("TABLE_NAME", "t"),
        ("DELIVERIES_TABLE_NAME", "d"),
        ("ENDPOINTS_TABLE_NAME", "e"),
        ("JOBS_QUEUE_URL", "http://127.0.0.1:1/q"),
        ("ENDPOINT_SECRETS_PREFIX", "stack/endpoints/"),
    ];

    #[test]
    fn reads_and_bounds_the_presign_ttl() {
        let c = StatusConfig::from_env(&Env::from_pairs(BASE)).unwrap();
        assert_eq!(
            c.url_policy,
            EndpointUrlPolicy::default(),
            "a deployment's by default"
        );
        assert_eq!(c.presign_ttl, Duration::from_secs(900));
        let err = StatusConfig::from_env(&Env::from_pairs(
            BASE.into_iter().chain([("PRESIGN_TTL_SECS", "86400")]),
        ))
        .unwrap_err();
        assert!(err.to_string().contains("PRESIGN_TTL_SECS"));
        assert_eq!(
            StatusConfig::from_env(&Env::from_pairs([])).unwrap_err(),
            ConfigError::Missing { name: "TABLE_NAME" }
        );
        let err = StatusConfig::from_env(&Env::from_pairs(BASE.into_iter().take(3))).unwrap_err();
        assert_eq!(
            err,
            ConfigError::Missing {
                name: "JOBS_QUEUE_URL"
            }
        );
    }
}
