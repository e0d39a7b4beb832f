//! The status function's configuration, read once from the environment at cold start.

use std::time::Duration;

use shared::lambda::config::{ConfigError, Env, FromEnv, TaskTtl};

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
}

impl StatusConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let ttl = env.ranged("PRESIGN_TTL_SECS", 900u64, 1..=43_200)?;
        Ok(Self {
            table_name: env.required("TABLE_NAME")?.to_owned(),
            presign_ttl: Duration::from_secs(ttl),
            s3_force_path_style: env.flag("S3_FORCE_PATH_STYLE")?,
            task_ttl: TaskTtl::from_env(env)?.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_bounds_the_presign_ttl() {
        let c = StatusConfig::from_env(&Env::from_pairs([("TABLE_NAME", "t")])).unwrap();
        assert_eq!(c.presign_ttl, Duration::from_secs(900));
        let err = StatusConfig::from_env(&Env::from_pairs([
            ("TABLE_NAME", "t"),
            ("PRESIGN_TTL_SECS", "86400"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("PRESIGN_TTL_SECS"));
        assert_eq!(
            StatusConfig::from_env(&Env::from_pairs([])).unwrap_err(),
            ConfigError::Missing { name: "TABLE_NAME" }
        );
    }
}
