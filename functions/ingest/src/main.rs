//! Ingest Lambda: DynamoDB stream (tasks that became `received`) → video in S3.
//! Wiring only; the handler is in [`ingest::handler`].

// The handler's future nests the use case, the transfer and the source port's futures;
// computing its layout needs more than the default 128 levels.
#![recursion_limit = "256"]

use std::sync::Arc;

use aws_lambda_events::event::dynamodb::Event;
use ingest::config::IngestConfig;
use ingest::handler::Ingest;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::lambda::aws::{CallTimeouts, dynamodb_client, s3_client, sdk_config};
use shared::lambda::config::Env;
use shared::lambda::metrics::{Emf, MetricsConfig};
use shared::lambda::telemetry;
use shared::secrets::secretsmanager::ColdStart;
use shared::sink::s3::S3VideoSink;
use shared::store::dynamodb::DynamoTaskStore;
use shared::upstream::http::RefreshingUpstream;
use tracing::{error, info};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let process = Env::process();
    let emf = Emf::install(&MetricsConfig::from_env(&process)?)?;
    let sdk = sdk_config().await;
    // The upstream API key from Secrets Manager when SECRETS_ID names the secret.
    let start = ColdStart::read(&sdk, process).await?;
    let config = IngestConfig::from_env(&start.env)
        .inspect_err(|e| error!(error = %e, "invalid configuration"))?;
    let upstream = RefreshingUpstream::new(start.refreshing(
        RefreshingUpstream::build(&start.env)?,
        RefreshingUpstream::build,
    ));
    info!(
        table = %config.table_name,
        bucket = %config.bucket_name,
        part_size = config.transfer.part_size,
        concurrency = config.transfer.concurrency,
        max_bytes = config.source.max_bytes,
        allowed_hosts = config.url_policy.allowed_hosts.len(),
        allow_loopback = config.url_policy.allow_loopback,
        refreshes_urls = config.upstream_api.is_some(),
        "ingest starting"
    );

    let timeouts = CallTimeouts::BACKGROUND;
    let store = DynamoTaskStore::new(dynamodb_client(&sdk, timeouts), config.table_name.clone());
    let sink = S3VideoSink::new(
        s3_client(&sdk, config.s3_force_path_style),
        config.bucket_name.clone(),
    );
    let ingest = Arc::new(Ingest::over_http(store, sink, config)?.with_upstream(upstream));

    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| {
        let ingest = Arc::clone(&ingest);
        emf.flushed(async move { ingest.handle(event).await })
    }))
    .await
}
