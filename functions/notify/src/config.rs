//! The notify function's configuration, read once from the environment at cold start.

use shared::lambda::config::{ConfigError, Env, FromEnv, NotificationTables};

#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// `DELIVERIES_TABLE_NAME`, `ENDPOINTS_TABLE_NAME`, `JOBS_QUEUE_URL`.
    pub tables: NotificationTables,
}

impl NotifyConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            tables: FromEnv::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variable_is_required_and_named() {
        let all = [
            ("DELIVERIES_TABLE_NAME", "d"),
            ("ENDPOINTS_TABLE_NAME", "e"),
            ("JOBS_QUEUE_URL", "http://127.0.0.1:1/q"),
        ];
        let c = NotifyConfig::from_env(&Env::from_pairs(all)).unwrap();
        assert_eq!(
            (c.tables.deliveries.as_str(), c.tables.endpoints.as_str()),
            ("d", "e")
        );
        for skip in 0..all.len() {
            let some = all
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, p)| *p);
            let err = NotifyConfig::from_env(&Env::from_pairs(some)).unwrap_err();
            assert_eq!(err, ConfigError::Missing { name: all[skip].0 });
        }
    }
}
