//! Status Lambda: `GET /tasks/{task_id}` → the task's state, with a presigned URL once
//! stored. Wiring only; the handler is in [`handler`], its refusals in [`error`].

mod config;
mod error;
mod handler;

use std::sync::Arc;
use std::time::Duration;

use lambda_http::{Error, Request, service_fn};
use shared::lambda::aws::{CallTimeouts, dynamodb_client, s3_client, sdk_config};
use shared::lambda::config::Env;
use shared::lambda::telemetry;
use shared::store::dynamodb::DynamoTaskStore;
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
    let store = DynamoTaskStore::new(dynamodb_client(&sdk, timeouts), config.table_name.clone());
    let s3 = s3_client(&sdk, config.s3_force_path_style);
    let service = Arc::new(StatusService::new(store, s3, config));

    lambda_http::run(service_fn(move |request: Request| {
        let service = Arc::clone(&service);
        async move { Ok::<_, Error>(service.handle(request).await) }
    }))
    .await
}
