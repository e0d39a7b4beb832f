//! Notify Lambda: DynamoDB stream (tasks that reached `stored` or `failed`) → deliveries
//! queued for every matching endpoint. Wiring only; the handler is in [`notify::handler`].

// The handler's future nests the batch report, the use case and the ports' futures;
// computing its layout needs more than the default 128 levels.
#![recursion_limit = "256"]

use std::sync::Arc;

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use notify::config::NotifyConfig;
use notify::handler::NotifyHandler;
use shared::lambda::aws::{CallTimeouts, dynamodb_client, sdk_config, sqs_client};
use shared::lambda::config::Env;
use shared::lambda::metrics::{Emf, MetricsConfig};
use shared::lambda::telemetry;
use shared::notifications::dynamodb::DynamoNotifications;
use shared::notifications::sqs::SqsJobQueue;
use shared::usecase::notify::Notifier;
use tracing::{error, info};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = NotifyConfig::from_env(&Env::process())
        .inspect_err(|e| error!(error = %e, "invalid configuration"))?;
    let emf = Emf::install(&MetricsConfig::from_env(&Env::process())?)?;
    info!(
        deliveries = %config.tables.deliveries,
        endpoints = %config.tables.endpoints,
        "notify starting"
    );

    let sdk = sdk_config().await;
    let stores = DynamoNotifications::new(
        dynamodb_client(&sdk, CallTimeouts::BACKGROUND),
        config.tables.deliveries.clone(),
        config.tables.endpoints.clone(),
    );
    let queue = SqsJobQueue::new(sqs_client(&sdk), config.tables.jobs_queue_url.clone());
    let handler = Arc::new(NotifyHandler::new(Notifier {
        endpoints: stores.clone(),
        deliveries: stores.clone(),
        thresholds: stores,
        queue,
    }));

    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| {
        let handler = Arc::clone(&handler);
        emf.flushed(async move { handler.handle(event).await })
    }))
    .await
}
