//! The ingest function's configuration, read once from the environment at cold start.

use std::time::Duration;

use shared::domain::backoff::Backoff;
use shared::domain::ssrf::UrlPolicy;
use shared::fetch::client::FetchTimeouts;
use shared::fetch::http::SourceSettings;
use shared::lambda::config::{ConfigError, Env, FromEnv, TaskTtl, UpstreamApiSettings};

use crate::transfer::{MAX_OBJECT_BYTES, MIN_PART_SIZE, ProgressPolicy, TransferSettings};

const MIN_PART_MIB: u64 = (MIN_PART_SIZE as u64) / MIB;

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// `TABLE_NAME`
    pub table_name: String,
    /// `BUCKET_NAME`
    pub bucket_name: String,
    /// `S3_FORCE_PATH_STYLE` (local S3-protocol servers).
    pub s3_force_path_style: bool,
    /// `VIDEO_URL_ALLOWED_HOSTS`, `VIDEO_URL_ALLOW_HTTP`, `VIDEO_URL_ALLOW_LOOPBACK`.
    pub url_policy: UrlPolicy,
    /// `CONNECT_TIMEOUT_SECS` (10), `READ_IDLE_TIMEOUT_SECS` (30).
    pub fetch_timeouts: FetchTimeouts,
    /// `MAX_VIDEO_BYTES` (4 GiB), `DOWNLOAD_RETRIES` (5).
    pub source: SourceSettings,
    /// `PART_SIZE_MIB` (8, ≥ 5), `UPLOAD_CONCURRENCY` (4), `PROGRESS_INTERVAL_SECS` (5).
    pub transfer: TransferSettings,
    /// `MAX_ATTEMPTS` (5): claims of one task before it fails as `max_attempts_exceeded`.
    pub max_attempts: u32,
    /// `LEASE_SECS` (120): how long a claim or a renewal holds the task. Renewed by
    /// progress and a heartbeat every third of it, never past the invocation's deadline;
    /// a dead invocation's task is re-driven by the reconciler once it runs out.
    pub lease_for: Duration,
    /// `UPSTREAM_API_BASE`, `UPSTREAM_API_KEY`: asked once for a fresh URL when a video
    /// URL has expired (401/403/410).
    pub upstream_api: Option<UpstreamApiSettings>,
    /// `DEADLINE_MARGIN_SECS` (20): time kept back from the invocation's deadline to
    /// abort the upload and record the outcome.
    pub deadline_margin: Duration,
    /// `TASK_TTL_DAYS` (30).
    pub task_ttl: Duration,
    /// `FALLBACK_INVOCATION_SECS` (900). LOCAL EMULATOR ONLY: the time budget assumed
    /// when the runtime's deadline is already past, which only local emulators send
    /// (cargo lambda watch sends a fixed 1970 deadline). Lambda always sends a future one.
    pub local_emulator_budget: Duration,
}

impl IngestConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        // Any size up to S3's object limit fits in 10 000 parts: part sizes adapt
        // (transfer::part_size_for).
        let part_mib = env.ranged("PART_SIZE_MIB", 8u64, MIN_PART_MIB..=512)?;
        let part_size = usize::try_from(part_mib * MIB).map_err(|_| ConfigError::Invalid {
            name: "PART_SIZE_MIB",
            reason: "too large".into(),
        })?;
        let max_bytes = env.ranged("MAX_VIDEO_BYTES", 4 * GIB, 1..=MAX_OBJECT_BYTES)?;
        let concurrency = env.ranged("UPLOAD_CONCURRENCY", 4usize, 1..=32)?;
        let retries = env.ranged("DOWNLOAD_RETRIES", 5u32, 0..=20)?;
        let connect = env.ranged("CONNECT_TIMEOUT_SECS", 10u64, 1..=120)?;
        let read_idle = env.ranged("READ_IDLE_TIMEOUT_SECS", 30u64, 1..=600)?;
        let progress = env.ranged("PROGRESS_INTERVAL_SECS", 5u64, 1..=300)?;
        let margin = env.ranged("DEADLINE_MARGIN_SECS", 20u64, 1..=300)?;
        let fallback = env.ranged("FALLBACK_INVOCATION_SECS", 900u64, 30..=3_600)?;
        Ok(Self {
            table_name: env.required("TABLE_NAME")?.to_owned(),
            bucket_name: env.required("BUCKET_NAME")?.to_owned(),
            s3_force_path_style: env.flag("S3_FORCE_PATH_STYLE")?,
            url_policy: UrlPolicy::from_env(env)?,
            fetch_timeouts: FetchTimeouts {
                connect: Duration::from_secs(connect),
                read_idle: Duration::from_secs(read_idle),
            },
            source: SourceSettings {
                max_bytes,
                backoff: Backoff {
                    base: Duration::from_millis(500),
                    max: Duration::from_secs(20),
                    retries,
                },
            },
            transfer: TransferSettings {
                part_size,
                concurrency,
                max_restarts: 2,
                progress: ProgressPolicy {
                    interval: Duration::from_secs(progress),
                    bytes: 64 * MIB,
                    min_gap: Duration::from_secs(1),
                },
            },
            max_attempts: env.ranged("MAX_ATTEMPTS", 5u32, 1..=100)?,
            lease_for: Duration::from_secs(env.ranged("LEASE_SECS", 120u64, 2..=900)?),
            upstream_api: FromEnv::from_env(env)?,
            deadline_margin: Duration::from_secs(margin),
            task_ttl: TaskTtl::from_env(env)?.0,
            local_emulator_budget: Duration::from_secs(fallback),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![("TABLE_NAME", "t"), ("BUCKET_NAME", "b")]
    }

    #[test]
    fn defaults() {
        let c = IngestConfig::from_env(&Env::from_pairs(base())).unwrap();
        assert_eq!(c.transfer.part_size, 8 << 20);
        assert_eq!(c.transfer.concurrency, 4);
        assert_eq!(c.source.max_bytes, 4 << 30);
        assert_eq!(c.max_attempts, 5);
        assert!(
            !c.url_policy.allow_http
                && !c.url_policy.allow_loopback
                && c.url_policy.allowed_hosts.is_empty()
        );
    }

    #[test]
    fn videos_over_the_old_copy_limit_are_allowed() {
        let mut pairs = base();
        pairs.push(("MAX_VIDEO_BYTES", "6442450944"));
        let c = IngestConfig::from_env(&Env::from_pairs(pairs)).unwrap();
        assert_eq!(c.source.max_bytes, 6 << 30);
    }

    #[test]
    fn limits_name_their_variable() {
        for (name, value) in [
            ("PART_SIZE_MIB", "4"),
            // One byte over S3's 5 TiB object limit (6 GiB, over the old copy limit, is fine).
            ("MAX_VIDEO_BYTES", "5497558138881"),
            ("UPLOAD_CONCURRENCY", "0"),
            ("MAX_ATTEMPTS", "x"),
            ("VIDEO_URL_ALLOW_LOOPBACK", "perhaps"),
        ] {
            let mut pairs = base();
            pairs.push((name, value));
            let err = IngestConfig::from_env(&Env::from_pairs(pairs)).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
        let err = IngestConfig::from_env(&Env::from_pairs([("TABLE_NAME", "t")])).unwrap_err();
        assert_eq!(
            err,
            ConfigError::Missing {
                name: "BUCKET_NAME"
            }
        );
    }
}
