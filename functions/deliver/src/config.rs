//! The deliver function's configuration, read once from the environment at cold start.

use std::time::Duration;

use shared::domain::notify::endpoint::{EndpointId, EndpointUrlPolicy};
use shared::domain::notify::health::HealthPolicy;
use shared::lambda::config::{
    ConfigError, EndpointSecretsConfig, Env, FallbackEndpoint, FromEnv, NotificationTables,
};

#[derive(Debug, Clone)]
pub struct DeliverConfig {
    /// `TABLE_NAME`: the tasks table (a drain check asks whether any task is open).
    pub table_name: String,
    /// `DELIVERIES_TABLE_NAME`, `ENDPOINTS_TABLE_NAME`, `JOBS_QUEUE_URL` (the next attempts, and
    /// early jobs sent again).
    pub tables: NotificationTables,
    /// `ENDPOINT_SECRETS_PREFIX`, `ENDPOINT_SECRETS_CACHE_SECS`: endpoint secrets in Secrets
    /// Manager.
    pub endpoint_secrets: EndpointSecretsConfig,
    /// `ENDPOINT_URL_ALLOW_HTTP`, `ENDPOINT_URL_ALLOW_LOOPBACK` (local stacks only): the
    /// sender's SSRF guard.
    pub url_policy: EndpointUrlPolicy,
    /// `DISABLE_AFTER_DAYS` (5), `DISABLE_AFTER_FAILURES` (20).
    pub health: HealthPolicy,
    /// `FALLBACK_ENDPOINT_ID`: told when another endpoint is disabled.
    pub fallback: Option<EndpointId>,
    /// `VIDEO_LINK_TTL_SECS` (3600): how long the presigned video links of endpoints with
    /// `include_video_url` work (at most 12 h; never longer than the role's credentials).
    pub link_ttl: Duration,
    /// `S3_FORCE_PATH_STYLE` (local S3-protocol servers).
    pub s3_force_path_style: bool,
}

impl DeliverConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            table_name: env.required("TABLE_NAME")?.to_owned(),
            tables: FromEnv::from_env(env)?,
            endpoint_secrets: FromEnv::from_env(env)?,
            url_policy: FromEnv::from_env(env)?,
            health: FromEnv::from_env(env)?,
            fallback: FallbackEndpoint::from_env(env)?.0,
            link_ttl: Duration::from_secs(env.ranged(
                "VIDEO_LINK_TTL_SECS",
                3_600u64,
                60..=43_200,
            )?),
            s3_force_path_style: env.flag("S3_FORCE_PATH_STYLE")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: [(&str, &str); 5] = [
        ("TABLE_NAME", "t"),
        ("DELIVERIES_TABLE_NAME", "d"),
        ("ENDPOINTS_TABLE_NAME", "e"),
        ("JOBS_QUEUE_URL", "http://127.0.0.1:1/q"),
        ("ENDPOINT_SECRETS_PREFIX", "stack/endpoints/"),
    ];

    #[test]
    fn defaults_are_a_deployment_and_errors_name_the_variable() {
        let c = DeliverConfig::from_env(&Env::from_pairs(BASE)).unwrap();
        assert_eq!(c.url_policy, EndpointUrlPolicy::default());
        assert_eq!(c.health, HealthPolicy::default());
        assert!(c.fallback.is_none());
        assert_eq!(c.link_ttl, Duration::from_secs(3_600));
        assert_eq!(
            c.endpoint_secrets,
            EndpointSecretsConfig {
                prefix: "stack/endpoints/".into(),
                cache_for: Duration::from_secs(300)
            }
        );
        let no_vault = DeliverConfig::from_env(&Env::from_pairs(BASE.into_iter().take(4)));
        assert_eq!(
            no_vault.unwrap_err(),
            ConfigError::Missing {
                name: "ENDPOINT_SECRETS_PREFIX"
            }
        );
        for (name, bad) in [
            ("ENDPOINT_SECRETS_PREFIX", "stack endpoints/"),
            ("ENDPOINT_SECRETS_PREFIX", ""),
            ("ENDPOINT_SECRETS_CACHE_SECS", "3601"),
        ] {
            let env = BASE
                .into_iter()
                .take(4)
                .chain([("ENDPOINT_SECRETS_PREFIX", "p/"), (name, bad)]);
            let err = DeliverConfig::from_env(&Env::from_pairs(env)).unwrap_err();
            assert!(err.to_string().contains(name), "{name}={bad}: {err}");
        }
        let id = EndpointId::generate(7);
        let with = BASE
            .into_iter()
            .chain([("FALLBACK_ENDPOINT_ID", id.as_str())]);
        let c = DeliverConfig::from_env(&Env::from_pairs(with)).unwrap();
        assert_eq!(c.fallback, Some(id));
        let bad = BASE.into_iter().chain([("FALLBACK_ENDPOINT_ID", "nope")]);
        let err = DeliverConfig::from_env(&Env::from_pairs(bad)).unwrap_err();
        assert!(err.to_string().contains("FALLBACK_ENDPOINT_ID"));
        let err = DeliverConfig::from_env(&Env::from_pairs(BASE.into_iter().skip(1))).unwrap_err();
        assert_eq!(err, ConfigError::Missing { name: "TABLE_NAME" });
    }
}
