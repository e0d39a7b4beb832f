//! Reconciler Lambda: an EventBridge schedule → one reconciler run (inbox replay,
//! re-drives, polling). Wiring only; the use case is in [`reconciler::reconcile`].

// The handler's future nests the run, the metrics flush and the ports' futures; computing
// its layout needs more than the default 128 levels.
#![recursion_limit = "256"]

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use reconciler::config::ReconcilerConfig;
use reconciler::reconcile::Reconciler;
use shared::Timestamp;
use shared::inbox::s3::S3Inbox;
use shared::lambda::aws::{CallTimeouts, dynamodb_client, s3_client, sdk_config};
use shared::lambda::config::Env;
use shared::lambda::metrics::{Emf, MetricsConfig};
use shared::lambda::telemetry;
use shared::secrets::secretsmanager::ColdStart;
use shared::store::dynamodb::DynamoTaskStore;
use shared::upstream::http::RefreshingUpstream;
use tracing::{Instrument, error, info, info_span};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let process = Env::process();
    let emf = Emf::install(&MetricsConfig::from_env(&process)?)?;
    let sdk = sdk_config().await;
    // The upstream API key from Secrets Manager when SECRETS_ID names the secret.
    let start = ColdStart::read(&sdk, process).await?;
    let config = ReconcilerConfig::from_env(&start.env)
        .inspect_err(|e| error!(error = %e, "invalid configuration"))?;
    let upstream = RefreshingUpstream::new(start.refreshing(
        RefreshingUpstream::build(&start.env)?,
        RefreshingUpstream::build,
    ));
    info!(
        table = %config.table_name,
        inbox = config.inbox_bucket.is_some(),
        polling = config.upstream_api.is_some(),
        max_per_run = config.max_per_run,
        "reconciler starting"
    );

    let timeouts = CallTimeouts::BACKGROUND;
    let store = DynamoTaskStore::new(dynamodb_client(&sdk, timeouts), config.table_name.clone());
    let inbox = config
        .inbox_bucket
        .clone()
        .map(|bucket| S3Inbox::new(s3_client(&sdk, config.s3_force_path_style), bucket));
    let reconciler = Arc::new(Reconciler {
        store,
        inbox,
        upstream,
        config,
    });

    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let reconciler = Arc::clone(&reconciler);
        let span = info_span!("run", request_id = %event.context.request_id);
        emf.flushed(
            async move {
                let report = reconciler.run(Timestamp::now()).await;
                info!(report = ?report, outcome = "reconciled", "reconciler run done");
                Ok::<_, Error>(serde_json::to_value(report)?)
            }
            .instrument(span),
        )
    }))
    .await
}
