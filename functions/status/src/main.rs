//! Status Lambda: `GET /tasks/{task_id}` → the task's state, with a presigned URL once
//! stored. Wiring only; the handler is in [`handler`].

mod config;
mod handler;

use std::sync::Arc;
use std::time::Duration;

use lambda_http::{Error, Request, service_fn};
use tracing::{error, info};
use video_tasks::aws::{CallTimeouts, dynamodb_client, s3_client, sdk_config};
use video_tasks::config::Env;
use video_tasks::store::dynamodb::DynamoTaskStore;
use video_tasks::task::DEFAULT_TASK_TTL;
use video_tasks::telemetry;

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
        operation: Duration::from_secs(5),
        attempt: Duration::from_secs(2),
        max_attempts: 3,
    };
    // The TTL only matters for writes, which this function never makes.
    let store = DynamoTaskStore::new(
        dynamodb_client(&sdk, timeouts),
        config.table_name.clone(),
        DEFAULT_TASK_TTL,
    );
    let s3 = s3_client(&sdk, config.s3_force_path_style);
    let service = Arc::new(StatusService::new(store, s3, config));

    lambda_http::run(service_fn(move |request: Request| {
        let service = Arc::clone(&service);
        async move { Ok::<_, Error>(service.handle(request).await) }
    }))
    .await
}
