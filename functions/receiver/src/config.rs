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
}

impl ReceiverConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let max_body_bytes = env.ranged("MAX_BODY_BYTES", 64 * 1024, 256..=6 * 1024 * 1024)?;
        let deadline_ms = env.ranged("STORE_DEADLINE_MS", 5_000u64, 100..=14_000)?;
        Ok(Self {
            table_name: env.required("TABLE_NAME")?.to_owned(),
            verifier: Verifier::from_env(env)?,
            url_policy: UrlPolicy::from_env(env)?,
            max_body_bytes,
            store_deadline: Duration::from_millis(deadline_ms),
            task_ttl: TaskTtl::from_env(env)?.0,
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
