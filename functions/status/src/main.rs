//! Status Lambda: the operator API. `GET /tasks/{task_id}` → the task's state, with a
//! presigned URL once stored; task registration; the notification routes. Wiring only;
//! the handler is in [`handler`] and [`operator`], its refusals in [`error`].

// The handler's future nests the operator use case, the deliver use case (a test send)
// and the ports' futures; computing its layout needs more than the default 128 levels.
#![recursion_limit = "256"]

mod config;
mod error;
mod handler;
mod operator;

use std::sync::Arc;
use std::time::Duration;

use lambda_http::{Error, Request, service_fn};
use shared::lambda::aws::{CallTimeouts, dynamodb_client, s3_client, sdk_config, sqs_client};
use shared::lambda::config::Env;
use shared::lambda::telemetry;
use shared::notifications::dynamodb::DynamoNotifications;
use shared::notifications::secretsmanager::SecretsManagerVault;
use shared::notifications::sqs::SqsJobQueue;
use shared::notifications::vault::VaultedEndpoints;
use shared::sender::http::HttpSender;
use shared::store::dynamodb::DynamoTaskStore;
use shared::usecase::deliver::{Courier, DeliverSettings};
use shared::usecase::operate::Operator;
use tracing::{error, info};

use crate::config::StatusConfig;
use crate::handler::StatusService;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = StatusConfig::from_env(&Env::process())
        .inspect_err(|e| error!(error = %e, "invalid configuration"))?;
    info!(table = %config.table_name, presign_ttl_s = config.presign_ttl.as_secs(), "status starting");

    let sdk = sdk_config().await;
    let timeouts = CallTimeouts {
        operation: handler::STORE_DEADLINE,
        attempt: Duration::from_secs(2),
        max_attempts: 3,
    };
    let dynamodb = dynamodb_client(&sdk, timeouts);
    let store = DynamoTaskStore::new(dynamodb.clone(), config.table_name.clone());
    let s3 = s3_client(&sdk, config.s3_force_path_style);
    let notifications = DynamoNotifications::new(
        dynamodb,
        config.tables.deliveries.clone(),
        config.tables.endpoints.clone(),
    );
    // Endpoint settings in the table, their signing secrets in Secrets Manager.
    let endpoints = VaultedEndpoints::new(
        notifications.clone(),
        SecretsManagerVault::from_sdk(&sdk, config.endpoint_secrets.prefix.clone()),
        config.endpoint_secrets.cache_for,
    );
    let operator = Operator {
        courier: Courier {
            deliveries: notifications,
            endpoints,
            sender: HttpSender::new(config.url_policy.guard.clone())?,
            queue: SqsJobQueue::new(sqs_client(&sdk), config.tables.jobs_queue_url.clone()),
            settings: DeliverSettings {
                health: config.health,
                fallback: config.fallback.clone(),
                links: None,
            },
        },
        url_policy: config.url_policy.clone(),
    };
    let service = Arc::new(StatusService::new(store, s3, config, operator));

    lambda_http::run(service_fn(move |request: Request| {
        let service = Arc::clone(&service);
        async move { Ok::<_, Error>(service.handle(request).await) }
    }))
    .await
}
