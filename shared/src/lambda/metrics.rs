//! CloudWatch metrics from every function: the [`crate::metrics`] catalogue, recorded
//! through the `metrics` facade into `metrics_cloudwatch_embedded`'s collector and written
//! to stdout as Embedded Metric Format documents after each invocation. CloudWatch Logs
//! turns those lines into metrics; no API call, no extra latency, nothing lost when the
//! function is frozen between invocations.
//!
//! Every metric carries the `Stack` dimension, so several deployments in one account keep
//! apart and the template's alarms can name their own stack's metrics exactly.

use std::fmt;
use std::future::Future;
use std::io::Write as _;

use metrics_cloudwatch_embedded::{Builder, Collector};
use tracing::warn;

use super::config::{ConfigError, Env};

/// The default namespace (the template's `MetricsNamespace` parameter).
pub const DEFAULT_NAMESPACE: &str = "MusicVideoCallbacks";
/// The dimension every metric carries.
pub const STACK_DIMENSION: &str = "Stack";

/// Where the metrics go: `METRICS_NAMESPACE` and `METRICS_STACK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    pub namespace: String,
    pub stack: String,
}

impl MetricsConfig {
    /// `METRICS_NAMESPACE` (default [`DEFAULT_NAMESPACE`]) and `METRICS_STACK` (default
    /// `local`). Both are CloudWatch names: at most 255 printable ASCII characters, and
    /// the namespace may not start with `AWS/`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let namespace = env
            .optional("METRICS_NAMESPACE")
            .unwrap_or(DEFAULT_NAMESPACE)
            .to_owned();
        let stack = env.optional("METRICS_STACK").unwrap_or("local").to_owned();
        check_name("METRICS_NAMESPACE", &namespace)?;
        check_name("METRICS_STACK", &stack)?;
        if namespace.starts_with("AWS/") {
            return Err(ConfigError::Invalid {
                name: "METRICS_NAMESPACE",
                reason: "the AWS/ prefix is reserved for AWS services".into(),
            });
        }
        Ok(Self { namespace, stack })
    }
}

fn check_name(name: &'static str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty() || value.len() > 255 || !value.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ConfigError::Invalid {
            name,
            reason: "must be 1-255 printable ASCII characters without spaces".into(),
        });
    }
    Ok(())
}

/// The installed collector. Copy it into the handler closure and [`Emf::flushed`] each
/// invocation.
#[derive(Clone, Copy)]
pub struct Emf {
    collector: &'static Collector,
}

impl fmt::Debug for Emf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emf").finish_non_exhaustive()
    }
}

/// The recorder could not be installed (another one already was).
#[derive(Debug, thiserror::Error)]
#[error("the metrics recorder could not be installed: {0}")]
pub struct InstallError(String);

impl Emf {
    /// Installs the process-wide recorder and registers the catalogue's units. Call once,
    /// in `main`, after the telemetry.
    pub fn install(config: &MetricsConfig) -> Result<Self, InstallError> {
        let collector = Builder::new()
            .cloudwatch_namespace(config.namespace.clone())
            .with_dimension(STACK_DIMENSION, config.stack.clone())
            .init()
            .map_err(|e| InstallError(e.to_string()))?;
        crate::metrics::describe();
        Ok(Self { collector })
    }

    /// Writes what was recorded since the last flush, one EMF document per label set.
    pub fn flush_into(&self, out: &mut Vec<u8>) {
        if let Err(error) = self.collector.flush(out) {
            warn!(%error, "metrics could not be rendered");
        }
    }

    /// Writes the pending metrics to stdout in one write, so no log line from another
    /// task lands inside a document.
    pub fn flush(&self) {
        let mut buffer = Vec::with_capacity(1024);
        self.flush_into(&mut buffer);
        if buffer.is_empty() {
            return;
        }
        let mut stdout = std::io::stdout().lock();
        if let Err(error) = stdout.write_all(&buffer).and_then(|()| stdout.flush()) {
            warn!(%error, "metrics could not be written");
        }
    }

    /// Runs one invocation, then flushes what it recorded.
    pub async fn flushed<T>(self, invocation: impl Future<Output = T>) -> T {
        let out = invocation.await;
        self.flush();
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::Value;

    use super::*;
    use crate::metrics::{CallbackAnswer, callback_answered};

    #[test]
    fn reads_namespace_and_stack_with_defaults() {
        let config = MetricsConfig::from_env(&Env::from_pairs([])).unwrap();
        assert_eq!(config.namespace, DEFAULT_NAMESPACE);
        assert_eq!(config.stack, "local");
        let config = MetricsConfig::from_env(&Env::from_pairs([
            ("METRICS_NAMESPACE", "Videos/Prod"),
            ("METRICS_STACK", "mv-prod"),
        ]))
        .unwrap();
        assert_eq!(
            (config.namespace.as_str(), config.stack.as_str()),
            ("Videos/Prod", "mv-prod")
        );
    }

    #[test]
    fn refuses_reserved_or_malformed_names() {
        for (name, value) in [
            ("METRICS_NAMESPACE", "AWS/Lambda"),
            ("METRICS_NAMESPACE", "has space"),
            ("METRICS_STACK", "tab\there"),
        ] {
            let err = MetricsConfig::from_env(&Env::from_pairs([(name, value)])).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
        let long = "x".repeat(256);
        assert!(
            MetricsConfig::from_env(&Env::from_pairs([("METRICS_STACK", long.as_str())])).is_err()
        );
    }

    /// The one test in this binary that installs the global recorder: nothing else in
    /// shared's unit tests records metrics, so what is flushed is this test's alone.
    #[test]
    fn flushes_embedded_metric_format_with_the_stack_dimension() {
        let emf = Emf::install(&MetricsConfig {
            namespace: "TestNamespace".into(),
            stack: "test-stack".into(),
        })
        .unwrap();
        callback_answered(
            CallbackAnswer::Rejected("unauthorized"),
            Duration::from_millis(7),
        );
        callback_answered(
            CallbackAnswer::Rejected("unauthorized"),
            Duration::from_millis(9),
        );

        let mut out = Vec::new();
        emf.flush_into(&mut out);
        let docs: Vec<Value> = std::str::from_utf8(&out)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let doc_with = |metric: &str| {
            docs.iter()
                .find(|d| d.get(metric).is_some())
                .unwrap_or_else(|| panic!("no {metric} in {docs:?}"))
        };

        let rejections = doc_with("CallbackRejections");
        assert_eq!(rejections["CallbackRejections"], 2);
        assert_eq!(rejections["Code"], "unauthorized");
        assert_eq!(rejections["Stack"], "test-stack");
        let directive = &rejections["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "TestNamespace");
        assert_eq!(
            directive["Dimensions"][0],
            serde_json::json!(["Stack", "Code"])
        );
        assert!(rejections["_aws"]["Timestamp"].as_u64().unwrap() > 1_700_000_000_000);

        let answer = doc_with("CallbackAnswerTime");
        assert_eq!(answer["CallbackAnswerTime"], serde_json::json!([7.0, 9.0]));
        assert_eq!(
            answer["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
            "Milliseconds"
        );
        assert_eq!(doc_with("Callbacks")["Outcome"], "rejected");

        // Counters are deltas: a second flush with nothing new writes nothing.
        let mut again = Vec::new();
        emf.flush_into(&mut again);
        assert!(again.is_empty(), "{}", String::from_utf8_lossy(&again));
        // A second recorder cannot be installed.
        assert!(Emf::install(&MetricsConfig::from_env(&Env::from_pairs([])).unwrap()).is_err());
    }
}
