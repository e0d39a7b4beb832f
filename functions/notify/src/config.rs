//! The notify function's configuration, read once from the environment at cold start.

use shared::lambda::config::{ConfigError, Env};

#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// `DELIVERIES_TABLE_NAME`
    pub deliveries_table: String,
    /// `ENDPOINTS_TABLE_NAME`
    pub endpoints_table: String,
    /// `JOBS_QUEUE_URL`: where deliveries and threshold checks are queued.
    pub jobs_queue_url: String,
}

impl NotifyConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            deliveries_table: env.required("DELIVERIES_TABLE_NAME")?.to_owned(),
            endpoints_table: env.required("ENDPOINTS_TABLE_NAME")?.to_owned(),
            jobs_queue_url: env.required("JOBS_QUEUE_URL")?.to_owned(),
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
            (c.deliveries_table.as_str(), c.endpoints_table.as_str()),
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
