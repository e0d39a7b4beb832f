//! The reconciler's configuration, read once from the environment at cold start.

use std::time::Duration;

use shared::domain::ssrf::UrlPolicy;
use shared::domain::task::ReconcilePolicy;
use shared::lambda::config::{ConfigError, Env, FromEnv, TaskTtl, UpstreamApiSettings};

#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    /// `TABLE_NAME`
    pub table_name: String,
    /// `BUCKET_NAME`: the inbox (`inbox/`) to replay; none, no replay.
    pub inbox_bucket: Option<String>,
    /// `S3_FORCE_PATH_STYLE` (local S3-protocol servers).
    pub s3_force_path_style: bool,
    /// `RECEIVED_REDRIVE_SECS` (120), `MAX_ATTEMPTS` (5, as ingest's),
    /// `POLL_GRACE_SECS` (60), `POLL_MIN_INTERVAL_SECS` (30), `POLL_MAX_INTERVAL_SECS`
    /// (600), `EXPECTED_MAX_AGE_SECS` (86400), `TASK_TTL_DAYS` (30).
    pub policy: ReconcilePolicy,
    /// `MAX_TASKS_PER_RUN` (1000): open tasks (per status) and inbox objects one run
    /// looks at; the next run goes on.
    pub max_per_run: usize,
    /// `VIDEO_URL_ALLOW_HTTP` (local stacks): how replayed and polled URLs are parsed.
    pub url_policy: UrlPolicy,
    /// `UPSTREAM_API_BASE`, `UPSTREAM_API_KEY`: polling for missed callbacks.
    pub upstream_api: Option<UpstreamApiSettings>,
}

impl ReconcilerConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let secs = |name: &'static str, default: u64, range: std::ops::RangeInclusive<u64>| {
            env.ranged(name, default, range).map(Duration::from_secs)
        };
        let policy = ReconcilePolicy {
            received_after: secs("RECEIVED_REDRIVE_SECS", 120, 1..=86_400)?,
            max_attempts: env.ranged("MAX_ATTEMPTS", 5u32, 1..=100)?,
            poll_grace: secs("POLL_GRACE_SECS", 60, 0..=86_400)?,
            poll_min_interval: secs("POLL_MIN_INTERVAL_SECS", 30, 1..=3_600)?,
            poll_max_interval: secs("POLL_MAX_INTERVAL_SECS", 600, 1..=86_400)?,
            expected_max_age: secs("EXPECTED_MAX_AGE_SECS", 86_400, 60..=14 * 86_400)?,
            ttl: TaskTtl::from_env(env)?.0,
        };
        if policy.poll_max_interval < policy.poll_min_interval {
            return Err(ConfigError::Invalid {
                name: "POLL_MAX_INTERVAL_SECS",
                reason: "shorter than POLL_MIN_INTERVAL_SECS".into(),
            });
        }
        Ok(Self {
            table_name: env.required("TABLE_NAME")?.to_owned(),
            inbox_bucket: env.optional("BUCKET_NAME").map(str::to_owned),
            s3_force_path_style: env.flag("S3_FORCE_PATH_STYLE")?,
            policy,
            max_per_run: env.ranged("MAX_TASKS_PER_RUN", 1_000usize, 1..=100_000)?,
            url_policy: UrlPolicy::from_env(env)?,
            upstream_api: FromEnv::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_limits() {
        let c = ReconcilerConfig::from_env(&Env::from_pairs([("TABLE_NAME", "t")])).unwrap();
        assert_eq!(c.policy.received_after, Duration::from_secs(120));
        assert_eq!(c.policy.poll_min_interval, Duration::from_secs(30));
        assert_eq!(c.max_per_run, 1_000);
        assert!(c.upstream_api.is_none() && c.inbox_bucket.is_none());
        let err = ReconcilerConfig::from_env(&Env::from_pairs([
            ("TABLE_NAME", "t"),
            ("POLL_MIN_INTERVAL_SECS", "60"),
            ("POLL_MAX_INTERVAL_SECS", "30"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("POLL_MAX_INTERVAL_SECS"));
        assert_eq!(
            ReconcilerConfig::from_env(&Env::from_pairs([])).unwrap_err(),
            ConfigError::Missing { name: "TABLE_NAME" }
        );
    }
}
