//! JSON logs for every function: one line per event, fields at the top level, the
//! current span's fields (`task_id`, `request_id`) on every line.
//!
//! Whatever `RUST_LOG` says, the Lambda runtime, the AWS SDK and the HTTP stacks log at
//! most `info`: at `debug`/`trace` they print raw events, request headers and bodies,
//! which carry the callback token, signature headers and signed URLs. Our own code logs
//! no secret at any level.

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{Targets, filter_fn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, fmt};

/// Crates whose own `debug`/`trace` output may carry secrets (events, headers, bodies).
pub const CAPPED_TARGETS: &[&str] = &[
    "lambda_runtime",
    "lambda_runtime_api_client",
    "lambda_http",
    "aws_config",
    "aws_runtime",
    "aws_sigv4",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http",
    "aws_smithy_http_client",
    "aws_smithy_types",
    "aws_sdk_dynamodb",
    "aws_sdk_s3",
    "aws_sdk_sqs",
    // GetSecretValue's response body is the secret.
    "aws_sdk_secretsmanager",
    "aws_sdk_sts",
    "aws_sdk_sso",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    "tower",
    "tower_http",
];

/// Whether an event may be logged at all: capped targets only up to `info`.
pub fn allowed(metadata: &Metadata<'_>) -> bool {
    let target = metadata.target();
    let capped = CAPPED_TARGETS.iter().any(|prefix| {
        target == *prefix
            || target
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with("::"))
    });
    !capped || *metadata.level() <= Level::INFO
}

/// `RUST_LOG` as a filter: a default level and `target=level` directives, comma-separated
/// (`info`, `debug`, `info,shared=trace`); `info` when unset or unreadable. Target
/// directives only: span and field filters would need a regex engine in every binary.
pub fn log_filter(rust_log: Option<&str>) -> Targets {
    let info = || Targets::new().with_default(Level::INFO);
    match rust_log.map(str::trim) {
        Some(raw) if !raw.is_empty() => raw.parse().unwrap_or_else(|_| info()),
        _ => info(),
    }
}

/// Installs the global subscriber. `RUST_LOG` filters (default `info`). Call once, first
/// thing in `main`.
pub fn init() {
    let env = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let layer = fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_filter(env)
        .with_filter(filter_fn(allowed));
    tracing_subscriber::registry().with(layer).init();
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn rust_log_reads_levels_and_target_directives() {
        use tracing::level_filters::LevelFilter;
        let at = |filter: &Targets, target: &str| {
            filter.iter().find(|(t, _)| *t == target).map(|(_, l)| l)
        };
        assert_eq!(log_filter(None).default_level(), Some(LevelFilter::INFO));
        assert_eq!(
            log_filter(Some(" ")).default_level(),
            Some(LevelFilter::INFO)
        );
        assert_eq!(
            log_filter(Some("trace")).default_level(),
            Some(LevelFilter::TRACE)
        );
        let mixed = log_filter(Some("warn,shared=debug,receiver::handler=trace"));
        assert_eq!(mixed.default_level(), Some(LevelFilter::WARN));
        assert_eq!(at(&mixed, "shared"), Some(LevelFilter::DEBUG));
        assert_eq!(at(&mixed, "receiver::handler"), Some(LevelFilter::TRACE));
        assert!(mixed.would_enable("receiver::handler", &Level::TRACE));
        assert!(!mixed.would_enable("ingest", &Level::INFO));
        // Unreadable: the default, never nothing and never everything.
        assert_eq!(
            log_filter(Some("shared=loud")).default_level(),
            Some(LevelFilter::INFO)
        );
    }

    #[test]
    fn capped_targets_stay_at_info_even_under_trace() {
        let buffer = Buffer::default();
        let layer = fmt::layer()
            .json()
            .with_writer(buffer.clone())
            .with_filter(log_filter(Some("trace,lambda_runtime=trace")))
            .with_filter(filter_fn(allowed));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "lambda_runtime::layers", event = "token=SECRET-1", "raw event");
            tracing::debug!(target: "aws_smithy_runtime::client", "x-webhook-signature: SECRET-2");
            tracing::trace!(target: "hyper_util::client", "SECRET-3");
            tracing::info!(target: "lambda_runtime", "runtime ready");
            tracing::trace!(target: "receiver::handler", "our own trace line");
            tracing::trace!(target: "lambda_runtime_extra", "not a capped crate");
        });
        let out = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert!(!out.contains("SECRET"), "{out}");
        assert!(
            out.contains("runtime ready") && out.contains("our own trace line"),
            "{out}"
        );
        assert!(
            out.contains("not a capped crate"),
            "only whole crate names are capped"
        );
    }
}
