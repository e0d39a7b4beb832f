//! The receiver's configuration, read once from the environment at cold start.

use std::time::Duration;

use shared::domain::ssrf::UrlPolicy;
use shared::domain::verify::Verifier;
use shared::lambda::config::{ConfigError, Env, FromEnv, TaskTtl};

#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// `TABLE_NAME`: the tasks table.
    pub table_name: String,
    /// `CALLBACK_TOKENS`, `UPSTREAM_HMAC_SECRETS`, `STANDARD_WEBHOOKS_SECRETS`,
    /// `SIGNATURE_TOLERANCE_SECS`, `CALLBACK_AUTH`.
    pub verifier: Verifier,
    /// `VIDEO_URL_ALLOW_HTTP` (local stacks only) decides the schemes a callback's URL may
    /// have; where a URL may lead is ingest's business, under the same policy.
    pub url_policy: UrlPolicy,
    /// `MAX_BODY_BYTES`, default 64 KiB.
    pub max_body_bytes: usize,
    /// `STORE_DEADLINE_MS`, default 5 s: far inside the sender's 15 s, so a slow store
    /// answers 503 and the sender retries instead of timing out.
    pub store_deadline: Duration,
    /// `TASK_TTL_DAYS`, default 30.
    pub task_ttl: Duration,
    /// `BUCKET_NAME`: where callbacks are spilled (under `inbox/`) when the table cannot
    /// take them; without it such a callback is answered 503.
    pub inbox_bucket: Option<String>,
    /// `SPILL_DEADLINE_MS`, default 3 s: time allowed for the spill after the store's
    /// deadline (both stay inside the function's 10 s and the sender's 15 s).
    pub spill_deadline: Duration,
    /// `S3_FORCE_PATH_STYLE` (local S3-protocol servers).
    pub s3_force_path_style: bool,
}

impl ReceiverConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let max_body_bytes = env.ranged("MAX_BODY_BYTES", 64 * 1024, 256..=6 * 1024 * 1024)?;
        let deadline_ms = env.ranged("STORE_DEADLINE_MS", 5_000u64, 100..=14_000)?;
        let verifier = Verifier::from_env(env)?;
        let url_policy = UrlPolicy::from_env(env)?;
        // The upstream's signature covers the task id and the time, not the body: a
        // captured request can be replayed with any video_url inside its window. With no
        // other scheme, only an allowlist keeps such a URL from pointing anywhere.
        if verifier.only_upstream_hmac() && url_policy.allowed_hosts.is_empty() {
            return Err(ConfigError::Invalid {
                name: "VIDEO_URL_ALLOWED_HOSTS",
                reason: "required when upstream-hmac is the only verification scheme: its \
                         signature does not cover video_url"
                    .into(),
            });
        }
        Ok(Self {
            table_name: env.required("TABLE_NAME")?.to_owned(),
            verifier,
            url_policy,
            max_body_bytes,
            store_deadline: Duration::from_millis(deadline_ms),
            task_ttl: TaskTtl::from_env(env)?.0,
            inbox_bucket: env.optional("BUCKET_NAME").map(str::to_owned),
            spill_deadline: Duration::from_millis(env.ranged(
                "SPILL_DEADLINE_MS",
                3_000u64,
                100..=9_000,
            )?),
            s3_force_path_style: env.flag("S3_FORCE_PATH_STYLE")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = ReceiverConfig::from_env(&Env::from_pairs([
            ("TABLE_NAME", "tasks"),
            ("CALLBACK_TOKENS", "tok-0123456789abcdef"),
        ]))
        .unwrap();
        assert_eq!(
            (c.max_body_bytes, c.store_deadline, c.task_ttl.as_secs()),
            (65_536, Duration::from_secs(5), 30 * 86_400)
        );
        assert!(!c.url_policy.allow_http);

        let c = ReceiverConfig::from_env(&Env::from_pairs([
            ("TABLE_NAME", "tasks"),
            ("CALLBACK_AUTH", "none"),
            ("MAX_BODY_BYTES", "1024"),
            ("STORE_DEADLINE_MS", "250"),
            ("TASK_TTL_DAYS", "7"),
            ("VIDEO_URL_ALLOW_HTTP", "true"),
        ]))
        .unwrap();
        assert_eq!(
            (
                c.max_body_bytes,
                c.store_deadline.as_millis(),
                c.task_ttl.as_secs()
            ),
            (1024, 250, 7 * 86_400)
        );
        assert!(c.url_policy.allow_http && c.verifier.is_unauthenticated());
    }

    #[test]
    fn upstream_hmac_alone_needs_a_host_allowlist() {
        let only_hmac = [
            ("TABLE_NAME", "t"),
            ("UPSTREAM_HMAC_SECRETS", "upstream-secret-0123456789"),
        ];
        let err = ReceiverConfig::from_env(&Env::from_pairs(only_hmac)).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    name: "VIDEO_URL_ALLOWED_HOSTS",
                    ..
                }
            ),
            "{err}"
        );
        let mut allowed = only_hmac.to_vec();
        allowed.push(("VIDEO_URL_ALLOWED_HOSTS", "cdn.example.com"));
        assert!(ReceiverConfig::from_env(&Env::from_pairs(allowed)).is_ok());
        // With a scheme that covers the body (or the token) too, no allowlist is needed.
        let mut with_token = only_hmac.to_vec();
        with_token.push(("CALLBACK_TOKENS", "tok-0123456789abcdef"));
        assert!(ReceiverConfig::from_env(&Env::from_pairs(with_token)).is_ok());
    }

    #[test]
    fn fails_fast_naming_the_variable() {
        let err =
            ReceiverConfig::from_env(&Env::from_pairs([("CALLBACK_AUTH", "none")])).unwrap_err();
        assert_eq!(err, ConfigError::Missing { name: "TABLE_NAME" });
        let err = ReceiverConfig::from_env(&Env::from_pairs([("TABLE_NAME", "t")])).unwrap_err();
        assert!(err.to_string().contains("CALLBACK_AUTH"));
        let err = ReceiverConfig::from_env(&Env::from_pairs([
            ("TABLE_NAME", "t"),
            ("CALLBACK_AUTH", "none"),
            ("STORE_DEADLINE_MS", "20000"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("STORE_DEADLINE_MS"));
    }
}
