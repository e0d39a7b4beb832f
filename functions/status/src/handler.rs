//! `GET /tasks/{task_id}`: where a task stands, with a presigned URL once its video is
//! stored. Read-only: one GetItem, and a presign that is computed locally.

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use lambda_http::http::header::ALLOW;
use lambda_http::http::{HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{Value, json};
use tracing::{Instrument, error, field, info, info_span, warn};
use video_tasks::response::json_response;
use video_tasks::store::{StoreError, TaskStore};
use video_tasks::task::{Task, TaskStatus};
use video_tasks::task_id::TaskIdError;
use video_tasks::{TaskId, Timestamp};

use crate::config::StatusConfig;

const STORE_DEADLINE: Duration = Duration::from_secs(5);

/// Why a status request is not answered with a task.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("method {0} is not allowed")]
    MethodNotAllowed(String),
    #[error("task_id is invalid: {0}")]
    InvalidTaskId(TaskIdError),
    #[error("no task with this id")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the task store did not answer in time")]
    StoreDeadline,
    #[error("could not presign the video URL: {0}")]
    Presign(String),
}

impl StatusError {
    fn status(&self) -> StatusCode {
        match self {
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::InvalidTaskId(_) => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Store(_) | Self::StoreDeadline => StatusCode::SERVICE_UNAVAILABLE,
            Self::Presign(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::InvalidTaskId(_) => "invalid_task_id",
            Self::NotFound => "not_found",
            Self::Store(_) | Self::StoreDeadline => "unavailable",
            Self::Presign(_) => "internal_error",
        }
    }

    /// The one place errors become HTTP; server-side causes stay in the log.
    fn into_response(self) -> Response<Body> {
        let message = match &self {
            Self::Store(_) | Self::StoreDeadline => {
                "temporarily unavailable; retry later".to_owned()
            }
            Self::Presign(_) => "internal error".to_owned(),
            other => other.to_string(),
        };
        let mut response = json_response(
            self.status(),
            &json!({ "error": self.code(), "message": message }),
        );
        if matches!(self, Self::MethodNotAllowed(_)) {
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET"));
        }
        response
    }
}

/// The status function's dependencies.
#[derive(Debug)]
pub struct StatusService<S> {
    store: S,
    s3: aws_sdk_s3::Client,
    config: StatusConfig,
}

impl<S: TaskStore> StatusService<S> {
    pub fn new(store: S, s3: aws_sdk_s3::Client, config: StatusConfig) -> Self {
        Self { store, s3, config }
    }

    pub async fn handle(&self, request: Request) -> Response<Body> {
        let request_id = request
            .lambda_context_ref()
            .map(|c| c.request_id.clone())
            .unwrap_or_default();
        let span = info_span!("status", request_id = %request_id, task_id = field::Empty);
        async {
            match self.status(&request).await {
                Ok(body) => {
                    info!(outcome = "found", task_status = %body["status"].as_str().unwrap_or_default(), "status served");
                    json_response(StatusCode::OK, &body)
                }
                Err(e) => {
                    if e.status().is_server_error() {
                        error!(outcome = "failed", error_code = e.code(), error = %e, "status not served");
                    } else {
                        warn!(outcome = "rejected", error_code = e.code(), reason = %e, "status request refused");
                    }
                    e.into_response()
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn status(&self, request: &Request) -> Result<Value, StatusError> {
        if request.method() != Method::GET {
            return Err(StatusError::MethodNotAllowed(request.method().to_string()));
        }
        let task_id = task_id_of(request)?;
        tracing::Span::current().record("task_id", task_id.as_str());
        let task = tokio::time::timeout(STORE_DEADLINE, self.store.get(&task_id))
            .await
            .map_err(|_| StatusError::StoreDeadline)??
            .ok_or(StatusError::NotFound)?;
        let presigned = match &task.video {
            Some(video) if task.status == TaskStatus::Stored => {
                Some(self.presign(&video.bucket, &video.key).await?)
            }
            _ => None,
        };
        Ok(view(
            &task,
            presigned,
            Timestamp::now(),
            self.config.presign_ttl,
        ))
    }

    async fn presign(&self, bucket: &str, key: &str) -> Result<String, StatusError> {
        let config = PresigningConfig::expires_in(self.config.presign_ttl)
            .map_err(|e| StatusError::Presign(e.to_string()))?;
        let request = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(|e| StatusError::Presign(e.to_string()))?;
        Ok(request.uri().to_owned())
    }
}

/// The id from the route's path parameter, or from the path itself (the local emulator
/// does not match routes).
fn task_id_of(request: &Request) -> Result<TaskId, StatusError> {
    let raw = request
        .path_parameters_ref()
        .and_then(|p| p.first("task_id"))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let path = request.uri().path();
            let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
            percent_encoding::percent_decode_str(last)
                .decode_utf8_lossy()
                .into_owned()
        });
    TaskId::parse(&raw).map_err(StatusError::InvalidTaskId)
}

/// The public view of a task.
fn view(task: &Task, presigned_url: Option<String>, now: Timestamp, ttl: Duration) -> Value {
    let mut body = json!({
        "task_id": task.task_id,
        "status": task.status.as_str(),
        "upstream_code": task.upstream_code,
        "upstream_msg": task.upstream_msg,
        "callback_count": task.callback_count,
        "attempts": task.attempts,
        "received_at": task.received_at,
        "updated_at": task.updated_at,
        "failure_reason": task.failure_reason.map(|r| r.as_str()),
    });
    if let Some(detail) = &task.failure_detail {
        body["failure_detail"] = json!(detail);
    }
    if task.status == TaskStatus::Downloading {
        body["progress"] = json!({ "bytes_received": task.bytes_received.unwrap_or(0) });
    }
    if let (Some(video), Some(url)) = (&task.video, presigned_url) {
        body["video"] = json!({
            "bucket": video.bucket,
            "key": video.key,
            "bytes": video.bytes,
            "sha256": video.sha256,
            "content_type": video.content_type,
            "url": url,
            "url_expires_at": now.saturating_add(ttl),
        });
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    use video_tasks::config::Env;
    use video_tasks::envelope::{CallbackEnvelope, Outcome, VideoUrl, VideoUrlPolicy};
    use video_tasks::store::memory::MemoryTaskStore;
    use video_tasks::task::{
        DEFAULT_TASK_TTL, FailureReason, Guard, StoredVideo, TaskChange, Update,
    };

    const FIXTURE: &str = include_str!("../../../tests/fixtures/apigw-v2-status.json");
    const TASK: &str = "taskId_774b9aa0422f";

    /// A real S3 client with static credentials: presigning is computed locally.
    fn s3() -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                None,
                "test",
            ))
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    fn service() -> StatusService<MemoryTaskStore> {
        let config = StatusConfig::from_env(&Env::from_pairs([("TABLE_NAME", "t")])).unwrap();
        StatusService::new(MemoryTaskStore::default(), s3(), config)
    }

    fn request(edit: impl FnOnce(&mut Value)) -> Request {
        let mut v: Value = serde_json::from_str(FIXTURE).unwrap();
        edit(&mut v);
        lambda_http::request::from_str(&v.to_string()).unwrap()
    }

    fn read(response: &Response<Body>) -> Value {
        serde_json::from_slice(response.body().as_ref()).unwrap()
    }

    async fn seed(store: &MemoryTaskStore, code: u16) -> Task {
        let outcome = if code == 200 {
            Outcome::Succeeded {
                video_url: VideoUrl::parse("https://cdn.example/v.mp4", &VideoUrlPolicy::default())
                    .unwrap(),
            }
        } else {
            Outcome::Failed { code }
        };
        let envelope = CallbackEnvelope {
            task_id: TaskId::parse(TASK).unwrap(),
            msg: "m".into(),
            outcome,
        };
        let task = Task::from_callback(&envelope, Timestamp::now(), DEFAULT_TASK_TTL);
        store.create(&task).await.unwrap();
        task
    }

    async fn advance(
        store: &MemoryTaskStore,
        task: &Task,
        change: TaskChange,
        guard: Guard,
    ) -> Task {
        let update = Update {
            change,
            guard,
            at: Timestamp::now(),
        };
        match store.apply(&task.task_id, &update).await.unwrap() {
            video_tasks::store::Applied::Done(t) => *t,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn received_task() {
        let s = service();
        seed(&s.store, 200).await;
        let response = s.handle(request(|_| {})).await;
        assert_eq!(response.status(), 200);
        let body = read(&response);
        assert_eq!(body["status"], "received");
        assert_eq!(body["callback_count"], 1);
        assert_eq!(body["failure_reason"], Value::Null);
        assert!(body.get("video").is_none() && body.get("progress").is_none());
    }

    #[tokio::test]
    async fn downloading_shows_progress_and_stored_shows_a_presigned_url() {
        let s = service();
        let task = seed(&s.store, 200).await;
        let lease = Timestamp::now().saturating_add(Duration::from_secs(600));
        let claim = TaskChange::Claim {
            owner: "inv".into(),
            lease_until: lease,
        };
        let task = advance(&s.store, &task, claim, Guard::Revision(task.revision)).await;
        let owner = Guard::LeaseOwner("inv".into());
        let task = advance(
            &s.store,
            &task,
            TaskChange::Progress {
                bytes_received: 64 << 20,
            },
            owner.clone(),
        )
        .await;
        let body = read(&s.handle(request(|_| {})).await);
        assert_eq!(
            (body["status"].as_str(), &body["progress"]["bytes_received"]),
            (Some("downloading"), &json!(64 << 20))
        );
        assert_eq!(body["attempts"], 1);

        let video = StoredVideo {
            bucket: "videos-bucket".into(),
            key: format!("videos/{TASK}.mp4"),
            bytes: 3 << 20,
            sha256: "ab".repeat(32),
            content_type: "video/mp4".into(),
        };
        advance(&s.store, &task, TaskChange::Store { video }, owner).await;
        let body = read(&s.handle(request(|_| {})).await);
        assert_eq!(body["status"], "stored");
        let url = body["video"]["url"].as_str().unwrap();
        assert!(
            url.starts_with(&format!(
                "https://videos-bucket.s3.us-east-1.amazonaws.com/videos/{TASK}.mp4?"
            )),
            "{url}"
        );
        assert!(
            url.contains("X-Amz-Signature=") && url.contains("X-Amz-Expires=900"),
            "{url}"
        );
        assert_eq!(body["video"]["bytes"], 3 << 20);
        assert_eq!(body["video"]["sha256"], "ab".repeat(32));
    }

    #[tokio::test]
    async fn failed_task_shows_why() {
        let s = service();
        seed(&s.store, 451).await;
        let body = read(&s.handle(request(|_| {})).await);
        assert_eq!(body["status"], "failed");
        assert_eq!(body["upstream_code"], 451);
        assert_eq!(
            body["failure_reason"],
            FailureReason::UpstreamFailed.as_str()
        );
    }

    #[tokio::test]
    async fn refusals() {
        let s = service();
        let response = s.handle(request(|_| {})).await;
        assert_eq!(
            (
                response.status().as_u16(),
                read(&response)["error"].as_str()
            ),
            (404, Some("not_found"))
        );
        let bad = request(|v| {
            v["pathParameters"]["task_id"] = "a b".into();
        });
        let response = s.handle(bad).await;
        assert_eq!(
            (
                response.status().as_u16(),
                read(&response)["error"].as_str()
            ),
            (400, Some("invalid_task_id"))
        );
        let post = request(|v| v["requestContext"]["http"]["method"] = "POST".into());
        let response = s.handle(post).await;
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "GET");
        s.store.set_unavailable(true);
        let response = s.handle(request(|_| {})).await;
        assert_eq!(
            (
                response.status().as_u16(),
                read(&response)["error"].as_str()
            ),
            (503, Some("unavailable"))
        );
    }

    #[tokio::test]
    async fn the_id_comes_from_the_path_when_no_route_matched() {
        let s = service();
        seed(&s.store, 200).await;
        let local = request(|v| {
            v.as_object_mut().unwrap().remove("pathParameters");
            v["rawPath"] = format!("/tasks/{TASK}").into();
            v["requestContext"]["http"]["path"] = format!("/tasks/{TASK}").into();
        });
        assert_eq!(s.handle(local).await.status(), 200);
    }
}
