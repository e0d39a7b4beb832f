//! Deliver Lambda: the notification job queue (SQS) → signed, formatted attempts to the
//! endpoints, batch flushes and drain checks. Wiring only; the handler is in
//! [`deliver::handler`].

// The handler's future nests both use cases and the ports' futures; computing its
// layout needs more than the default 128 levels.
#![recursion_limit = "256"]

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use deliver::config::DeliverConfig;
use deliver::handler::DeliverHandler;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::lambda::aws::{CallTimeouts, dynamodb_client, s3_client, sdk_config, sqs_client};
use shared::lambda::config::Env;
use shared::lambda::metrics::{Emf, MetricsConfig};
use shared::lambda::telemetry;
use shared::notifications::dynamodb::DynamoNotifications;
use shared::notifications::secretsmanager::SecretsManagerVault;
use shared::notifications::sqs::SqsJobQueue;
use shared::notifications::vault::VaultedEndpoints;
use shared::sender::http::HttpSender;
use shared::sink::s3::S3VideoLinks;
use shared::store::dynamodb::DynamoTaskStore;
use shared::usecase::deliver::{Courier, DeliverSettings};
use shared::usecase::notify::Notifier;
use tracing::{error, info};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = DeliverConfig::from_env(&Env::process())
        .inspect_err(|e| error!(error = %e, "invalid configuration"))?;
    let emf = Emf::install(&MetricsConfig::from_env(&Env::process())?)?;
    info!(
        deliveries = %config.tables.deliveries,
        endpoints = %config.tables.endpoints,
        allow_http = config.url_policy.guard.allow_http,
        allow_loopback = config.url_policy.guard.allow_loopback,
        disable_after_failures = config.health.consecutive,
        fallback = config.fallback.is_some(),
        "deliver starting"
    );

    let sdk = sdk_config().await;
    let dynamodb = dynamodb_client(&sdk, CallTimeouts::BACKGROUND);
    let stores = DynamoNotifications::new(
        dynamodb.clone(),
        config.tables.deliveries.clone(),
        config.tables.endpoints.clone(),
    );
    // Signing keys from Secrets Manager, cached per endpoint while it is unchanged.
    let endpoints = Arc::new(VaultedEndpoints::new(
        stores.clone(),
        SecretsManagerVault::from_sdk(&sdk, config.endpoint_secrets.prefix.clone()),
        config.endpoint_secrets.cache_for,
    ));
    let queue = SqsJobQueue::new(sqs_client(&sdk), config.tables.jobs_queue_url.clone());
    let links = S3VideoLinks::new(s3_client(&sdk, config.s3_force_path_style));
    let handler = Arc::new(DeliverHandler {
        courier: Courier {
            deliveries: stores.clone(),
            endpoints: Arc::clone(&endpoints),
            sender: HttpSender::new(config.url_policy.guard.clone())?,
            queue: queue.clone(),
            settings: DeliverSettings {
                health: config.health,
                fallback: config.fallback.clone(),
                links: Some((Arc::new(links), config.link_ttl)),
            },
        },
        notifier: Notifier {
            endpoints,
            deliveries: stores.clone(),
            thresholds: stores,
            queue,
        },
        tasks: DynamoTaskStore::new(dynamodb, config.table_name.clone()),
    });

    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let handler = Arc::clone(&handler);
        emf.flushed(async move { handler.handle(event).await })
    }))
    .await
}
