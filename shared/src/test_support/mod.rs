//! What the tests share (feature `test-support`): the fakes of every port live beside
//! their ports ([`crate::store::memory`], [`crate::sink::memory`], `fetch::scripted`);
//! here are the builders and real-shaped fixtures the unit and integration tests use.

// Test support: failing loudly on a broken precondition is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[cfg(feature = "fetch")]
mod lookup;
mod metrics;
mod video;

use serde_json::{Value, json};

pub use crate::inbox::memory::MemoryInbox;
pub use crate::secrets::memory::MemorySecrets;
pub use crate::sink::memory::MemoryVideoSink;
pub use crate::store::memory::MemoryTaskStore;
#[cfg(feature = "fetch")]
pub use lookup::StaticLookup;
pub use metrics::CapturedMetrics;
pub use video::Video;

use crate::domain::envelope::{CallbackEnvelope, Outcome, VideoUrl};
use crate::domain::ssrf::UrlPolicy;
use crate::domain::task::Item;
use crate::domain::task_id::TaskId;

/// Real-shaped Lambda events, edited by the tests that use them.
pub mod fixtures {
    /// API Gateway HTTP API (payload 2.0) `POST /callbacks/music-video?token=…`.
    pub const APIGW_V2_CALLBACK: &str = include_str!("fixtures/apigw-v2-callback.json");
    /// API Gateway HTTP API (payload 2.0) `GET /tasks/{task_id}`, IAM-authorised.
    pub const APIGW_V2_STATUS: &str = include_str!("fixtures/apigw-v2-status.json");
    /// A DynamoDB stream event with one INSERT of a `received` task.
    pub const DYNAMODB_STREAM_RECEIVED: &str =
        include_str!("fixtures/dynamodb-stream-received.json");
}

/// A policy that accepts the local stack's plain-http URLs.
fn permissive() -> UrlPolicy {
    UrlPolicy {
        allow_http: true,
        ..UrlPolicy::default()
    }
}

/// A parsed callback: `code` 200 with `video_url`, or a failure code without one.
pub fn envelope(task_id: &str, code: u16, video_url: Option<&str>, msg: &str) -> CallbackEnvelope {
    let outcome = match video_url {
        Some(url) => Outcome::Succeeded {
            video_url: VideoUrl::parse(url, &permissive()).expect("a valid test URL"),
        },
        None => Outcome::Failed { code },
    };
    CallbackEnvelope {
        task_id: TaskId::parse(task_id).expect("a valid test task id"),
        msg: msg.into(),
        outcome,
    }
}

/// A task as ingest leaves it once stored: `task_id`'s success callback at `at`, then
/// `stored` at `revision` with a 10-byte video under `videos/{task_id}.mp4`.
pub fn stored_task(
    task_id: &str,
    revision: u64,
    at: crate::Timestamp,
) -> crate::domain::task::Task {
    use crate::domain::task::{DEFAULT_TASK_TTL, StoredVideo, Task, TaskStatus};
    let mut task = Task::from_callback(
        &success(task_id, "https://cdn.example/v.mp4"),
        at,
        DEFAULT_TASK_TTL,
    );
    task.status = TaskStatus::Stored;
    task.revision = revision;
    task.video = Some(StoredVideo {
        bucket: "b".into(),
        key: format!("videos/{task_id}.mp4"),
        bytes: 10,
        sha256: "ab".repeat(32),
        content_type: "video/mp4".into(),
    });
    task
}

/// Signing headers (as the sender carries them) as a header map, for the verifier.
pub fn header_map(headers: &[(&'static str, String)]) -> http::HeaderMap {
    headers
        .iter()
        .filter_map(|(name, value)| {
            Some((
                http::HeaderName::from_static(name),
                http::HeaderValue::from_str(value).ok()?,
            ))
        })
        .collect()
}

/// The upstream's success callback for `task_id`.
pub fn success(task_id: &str, video_url: &str) -> CallbackEnvelope {
    envelope(task_id, 200, Some(video_url), "MP4 generated successfully.")
}

/// A failure callback (400, 451, 500, …) for `task_id`.
pub fn failure(task_id: &str, code: u16) -> CallbackEnvelope {
    envelope(task_id, code, None, "source download failed")
}

/// An attribute value in DynamoDB's JSON form (`{"S": …}`, `{"N": …}`, `{"M": …}`).
pub fn dynamodb_json(value: &Value) -> Value {
    match value {
        Value::String(s) => json!({ "S": s }),
        Value::Number(n) => json!({ "N": n.to_string() }),
        Value::Bool(b) => json!({ "BOOL": b }),
        Value::Null => json!({ "NULL": true }),
        Value::Array(items) => json!({ "L": items.iter().map(dynamodb_json).collect::<Vec<_>>() }),
        Value::Object(map) => {
            json!({ "M": map.iter().map(|(k, v)| (k.clone(), dynamodb_json(v))).collect::<serde_json::Map<_, _>>() })
        }
    }
}

/// A DynamoDB stream event (the fixture's shape) with one `INSERT` record per image,
/// sequence numbers increasing in order. Deserialise it as `aws_lambda_events`' event.
pub fn stream_event(images: &[Item]) -> Value {
    let changes: Vec<(Option<&Item>, &Item)> = images.iter().map(|i| (None, i)).collect();
    stream_change_event(&changes)
}

/// [`stream_event`] for changes: `(None, new)` is an `INSERT`, `(Some(old), new)` a
/// `MODIFY` carrying both images (the template's `NEW_AND_OLD_IMAGES`).
pub fn stream_change_event(changes: &[(Option<&Item>, &Item)]) -> Value {
    let mut event: Value =
        serde_json::from_str(fixtures::DYNAMODB_STREAM_RECEIVED).expect("the fixture parses");
    let template = event["Records"][0].clone();
    let as_image = |item: &Item| -> Value {
        Value::Object(
            item.iter()
                .map(|(k, v)| (k.clone(), dynamodb_json(v)))
                .collect(),
        )
    };
    let records: Vec<Value> = changes
        .iter()
        .enumerate()
        .map(|(i, (old, new))| {
            let image = as_image(new);
            let mut record = template.clone();
            record["dynamodb"]["Keys"] = json!({ "task_id": image["task_id"] });
            record["dynamodb"]["NewImage"] = image;
            if let Some(old) = old {
                record["eventName"] = "MODIFY".into();
                record["dynamodb"]["OldImage"] = as_image(old);
            }
            record["dynamodb"]["SequenceNumber"] =
                format!("1110000000000000001234567{i:02}").into();
            record
        })
        .collect();
    event["Records"] = Value::Array(records);
    event
}

/// A real S3 client with static credentials: for presigning (computed locally) or, with
/// an endpoint, for a local S3-protocol server (path-style addressing).
#[cfg(feature = "s3")]
pub fn static_s3_client(
    endpoint: Option<&str>,
    access_key: &str,
    secret: &str,
) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let mut conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(access_key, secret, None, None, "static"));
    if let Some(endpoint) = endpoint {
        conf = conf.endpoint_url(endpoint).force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(conf.build())
}
