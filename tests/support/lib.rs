//! Shared support for the integration and end-to-end suites: the local stack's
//! connection details, SDK clients pointed at it, unique ids, a local video server whose
//! misbehaviour is scripted per path, a simulated upstream API, and a minimal Lambda
//! Runtime API for running the real binaries.
//!
//! The suites need the local stack (moto for DynamoDB, SeaweedFS for S3, `cargo lambda
//! watch` for the functions, the stream pump). `make test` starts it, runs them and
//! stops it; `.local/stack.env` is how they find it.

// Test support: failing loudly on a broken precondition is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod http1;
pub mod inbox;
pub mod runtime_api;
pub mod upstream_api;
pub mod video_server;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;

/// Connection details of the running local stack.
#[derive(Debug, Clone)]
pub struct Stack {
    vars: HashMap<String, String>,
}

impl Stack {
    /// Reads `.local/stack.env` (written by `infra/local/stack.py`), with the process
    /// environment taking precedence. Panics with instructions when the stack is not up.
    pub fn load() -> Self {
        let path = repo_root().join(".local/stack.env");
        let mut vars: HashMap<String, String> = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| {
                panic!("{}: {e}. These tests need the local stack: run `make test` (or `python3 infra/local/stack.py start`).", path.display())
            })
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').trim_matches('\'').to_owned()))
            .collect();
        for (k, v) in std::env::vars() {
            if vars.contains_key(&k) {
                vars.insert(k, v);
            }
        }
        Self { vars }
    }

    pub fn var(&self, name: &str) -> &str {
        self.vars
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{name} missing from .local/stack.env"))
    }

    pub fn table(&self) -> &str {
        self.var("TABLE_NAME")
    }

    pub fn bucket(&self) -> &str {
        self.var("BUCKET_NAME")
    }

    fn sdk(&self) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.var("AWS_REGION").to_owned()))
            .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
                aws_credential(self),
            ))
            .build()
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        let conf = aws_sdk_dynamodb::config::Builder::from(&self.sdk())
            .endpoint_url(self.var("AWS_ENDPOINT_URL_DYNAMODB"))
            .build();
        aws_sdk_dynamodb::Client::from_conf(conf)
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        shared::test_support::static_s3_client(
            Some(self.var("AWS_ENDPOINT_URL_S3")),
            self.var("AWS_ACCESS_KEY_ID"),
            self.var("AWS_SECRET_ACCESS_KEY"),
        )
    }

    /// The local Secrets Manager (a moto of its own).
    pub fn secrets_manager(&self) -> aws_sdk_secretsmanager::Client {
        let conf = aws_sdk_secretsmanager::config::Builder::from(&self.sdk())
            .endpoint_url(self.var("AWS_ENDPOINT_URL_SECRETS_MANAGER"))
            .build();
        aws_sdk_secretsmanager::Client::from_conf(conf)
    }

    /// POSTs `body` as JSON to the receiver's callback URL (with the stack's token).
    pub async fn post_callback(
        &self,
        client: &reqwest::Client,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        client
            .post(self.var("CALLBACK_URL"))
            .json(body)
            .send()
            .await
            .expect("POST to the receiver")
    }

    /// A function binary as a process under a Lambda Runtime API at `runtime_api` (see
    /// [`runtime_api::RuntimeApi`]), with the Lambda environment, the stack's endpoints
    /// and credentials, and the direct table. Add the function's own settings.
    pub fn function_process(&self, name: &str, runtime_api: &str) -> std::process::Command {
        let mut command = std::process::Command::new(target_binary(name));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "local")
            .env("AWS_REGION", self.var("AWS_REGION"))
            .env("AWS_ACCESS_KEY_ID", self.var("AWS_ACCESS_KEY_ID"))
            .env("AWS_SECRET_ACCESS_KEY", self.var("AWS_SECRET_ACCESS_KEY"))
            .env(
                "AWS_ENDPOINT_URL_DYNAMODB",
                self.var("AWS_ENDPOINT_URL_DYNAMODB"),
            )
            .env("AWS_ENDPOINT_URL_S3", self.var("AWS_ENDPOINT_URL_S3"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("S3_FORCE_PATH_STYLE", "true")
            .env("TABLE_NAME", self.direct_table())
            // The notification tables and job queue (status, notify and deliver read them).
            .env("AWS_ENDPOINT_URL_SQS", self.var("AWS_ENDPOINT_URL_SQS"))
            .env("DELIVERIES_TABLE_NAME", self.var("DELIVERIES_TABLE_NAME"))
            .env("ENDPOINTS_TABLE_NAME", self.var("ENDPOINTS_TABLE_NAME"))
            .env("JOBS_QUEUE_URL", self.var("JOBS_QUEUE_URL"))
            // Endpoint signing secrets (status and deliver), in the stack's Secrets Manager.
            .env(
                "AWS_ENDPOINT_URL_SECRETS_MANAGER",
                self.var("AWS_ENDPOINT_URL_SECRETS_MANAGER"),
            )
            .env(
                "ENDPOINT_SECRETS_PREFIX",
                self.var("ENDPOINT_SECRETS_PREFIX"),
            );
        command
    }

    /// The table no stream pump watches: for tests that drive the store or the ingest
    /// handler themselves (the running ingest function must not race them).
    pub fn direct_table(&self) -> &str {
        self.var("DIRECT_TABLE_NAME")
    }

    /// The task store adapter on the direct table.
    pub fn direct_task_store(&self) -> shared::store::dynamodb::DynamoTaskStore {
        shared::store::dynamodb::DynamoTaskStore::new(self.dynamodb(), self.direct_table())
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        let conf = aws_sdk_sqs::config::Builder::from(&self.sdk())
            .endpoint_url(self.var("AWS_ENDPOINT_URL_SQS"))
            .build();
        aws_sdk_sqs::Client::from_conf(conf)
    }

    /// Ingest settings every in-process ingest of the suites shares: the direct table,
    /// the stack's bucket, loopback sources over http, 5 MiB parts.
    pub fn local_ingest_env(&self) -> Vec<(&str, &str)> {
        vec![
            ("TABLE_NAME", self.direct_table()),
            ("BUCKET_NAME", self.bucket()),
            ("VIDEO_URL_ALLOW_HTTP", "true"),
            ("VIDEO_URL_ALLOW_LOOPBACK", "true"),
            ("PART_SIZE_MIB", "5"),
        ]
    }

    /// The notification stores' adapter on the stack's deliveries and endpoints tables.
    pub fn notifications(&self) -> shared::notifications::dynamodb::DynamoNotifications {
        shared::notifications::dynamodb::DynamoNotifications::new(
            self.dynamodb(),
            self.var("DELIVERIES_TABLE_NAME"),
            self.var("ENDPOINTS_TABLE_NAME"),
        )
    }

    /// The endpoint store the status and deliver functions use: settings in the endpoints
    /// table, signing secrets in the stack's Secrets Manager under its prefix.
    pub fn endpoints(
        &self,
    ) -> shared::notifications::vault::VaultedEndpoints<
        shared::notifications::dynamodb::DynamoNotifications,
        shared::notifications::secretsmanager::SecretsManagerVault,
    > {
        shared::notifications::vault::VaultedEndpoints::new(
            self.notifications(),
            self.endpoint_vault(),
            shared::notifications::vault::DEFAULT_VAULT_CACHE,
        )
    }

    /// The stack's endpoint vault (Secrets Manager, prefix `ENDPOINT_SECRETS_PREFIX`).
    pub fn endpoint_vault(&self) -> shared::notifications::secretsmanager::SecretsManagerVault {
        shared::notifications::secretsmanager::SecretsManagerVault::new(
            self.secrets_manager(),
            self.var("ENDPOINT_SECRETS_PREFIX"),
        )
    }

    /// An endpoint's own item exactly as stored (strongly consistent read).
    pub async fn raw_endpoint_item(
        &self,
        id: &shared::domain::notify::endpoint::EndpointId,
    ) -> Option<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        use aws_sdk_dynamodb::types::AttributeValue;
        self.dynamodb()
            .get_item()
            .table_name(self.var("ENDPOINTS_TABLE_NAME"))
            .key("endpoint_id", AttributeValue::S(id.as_str().into()))
            .key("sk", AttributeValue::S("endpoint".into()))
            .consistent_read(true)
            .send()
            .await
            .expect("GetItem")
            .item
    }

    /// A task's item exactly as stored (strongly consistent read).
    pub async fn raw_item(
        &self,
        table: &str,
        task_id: &str,
    ) -> Option<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        self.dynamodb()
            .get_item()
            .table_name(table)
            .key(
                "task_id",
                aws_sdk_dynamodb::types::AttributeValue::S(task_id.into()),
            )
            .consistent_read(true)
            .send()
            .await
            .expect("GetItem")
            .item
    }

    /// Multipart uploads still open in the bucket (must be none after any ingest).
    pub async fn open_multipart_uploads(&self, prefix: &str) -> Vec<String> {
        let out = self
            .s3()
            .list_multipart_uploads()
            .bucket(self.bucket())
            .prefix(prefix)
            .send()
            .await
            .expect("ListMultipartUploads");
        out.uploads()
            .iter()
            .filter_map(|u| u.upload_id().map(str::to_owned))
            .collect()
    }
}

fn aws_credential(stack: &Stack) -> Credentials {
    Credentials::new(
        stack.var("AWS_ACCESS_KEY_ID"),
        stack.var("AWS_SECRET_ACCESS_KEY"),
        None,
        None,
        "local-stack",
    )
}

/// The repository root (the parent of `tests/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// A binary of the workspace as `make test` builds it (`cargo build --workspace --bins`).
pub fn target_binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let path = target.join("debug").join(name);
    assert!(
        path.exists(),
        "{} not built: `cargo build --workspace --bins` (make test does)",
        path.display()
    );
    path
}

/// A task id no other test uses.
pub fn unique_task_id(prefix: &str) -> String {
    format!("{prefix}-{:016x}", fastrand::u64(..))
}

/// Polls `check` until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = std::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
