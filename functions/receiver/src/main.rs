//! Receiver Lambda: API Gateway HTTP API `POST /callbacks/music-video` → verified,
//! deduplicated task record in DynamoDB → 200 in milliseconds. Wiring only; the handler
//! is in [`handler`], its refusals in [`error`].

mod config;
mod error;
#[cfg(test)]
mod forged_requests;
mod handler;
#[cfg(test)]
mod hostile_input;

use std::sync::Arc;
use std::time::Duration;

use lambda_http::{Error, Request, service_fn};
use shared::inbox::s3::S3Inbox;
use shared::lambda::aws::{CallTimeouts, dynamodb_client, s3_client, sdk_config};
use shared::lambda::config::Env;
use shared::lambda::metrics::{Emf, MetricsConfig};
use shared::lambda::telemetry;
use shared::secrets::secretsmanager::ColdStart;
use shared::store::dynamodb::DynamoTaskStore;
use tracing::{error, info, warn};

use crate::config::ReceiverConfig;
use crate::handler::Receiver;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let process = Env::process();
    let emf = Emf::install(&MetricsConfig::from_env(&process)?)?;
    let sdk = sdk_config().await;
    // Tokens and HMAC secrets from Secrets Manager when SECRETS_ID names the secret.
    let start = ColdStart::read(&sdk, process).await?;
    let config = ReceiverConfig::from_env(&start.env)
        .inspect_err(|e| error!(error = %e, "invalid configuration"))?;
    if config.verifier.is_unauthenticated() {
        warn!("CALLBACK_AUTH=none: callbacks are NOT verified; for local use only");
    }
    info!(
        table = %config.table_name,
        schemes = ?config.verifier.enabled_schemes().iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        max_body_bytes = config.max_body_bytes,
        store_deadline_ms = config.store_deadline.as_millis() as u64,
        "receiver starting"
    );

    // Whole call, SDK retries included, stays inside the deadline; each attempt gets a
    // slice of it so one stuck connection cannot eat it all.
    let timeouts = CallTimeouts {
        operation: config.store_deadline,
        attempt: (config.store_deadline / 3).max(Duration::from_millis(300)),
        max_attempts: 3,
    };
    let store = DynamoTaskStore::new(dynamodb_client(&sdk, timeouts), config.table_name.clone());
    // Without an inbox bucket an unavailable table is answered 503, as before.
    let inbox = config
        .inbox_bucket
        .clone()
        .map(|bucket| S3Inbox::new(s3_client(&sdk, config.s3_force_path_style), bucket));
    if inbox.is_none() {
        warn!("BUCKET_NAME is not set: callbacks the table cannot take are answered 503");
    }
    let verifier = start.refreshing(config.verifier.clone(), |env| {
        Ok(ReceiverConfig::from_env(env)?.verifier)
    });
    let receiver = Arc::new(
        Receiver::new(store, config)
            .with_inbox(inbox)
            .with_verifier(Arc::new(verifier)),
    );

    lambda_http::run(service_fn(move |request: Request| {
        let receiver = Arc::clone(&receiver);
        emf.flushed(async move { Ok::<_, Error>(receiver.handle(request).await) })
    }))
    .await
}
