//! The operator API (IAM-authorised):
//! - `GET /tasks/{task_id}`: where a task stands, with a presigned URL once its video is
//!   stored. One GetItem, and a presign that is computed locally.
//! - `POST /tasks` `{"task_ids": [...]}`: registers tasks whose callback is expected, so
//!   the reconciler can poll the upstream if it never comes. One conditional put each.
//! - `POST /tasks/{task_id}/notify`: notifies the task's outcome again.
//! - the notification routes (`/endpoints…`, `/deliveries…`): [`crate::operator`].

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::{Deserialize, Serialize};
use shared::domain::task::{FailureReason, RecordSource, StoredVideo, Task, TaskState, TaskStatus};
use shared::lambda::http::{
    MethodNotAllowed, check_json_body, json_response, serve, within_deadline,
};
use shared::store::{Created, TaskStore};
use shared::{TaskId, Timestamp};
use tracing::{debug, info};

use shared::notifications::{DeliveryLog, DeliveryStore, EndpointAdmin, EndpointStore, JobQueue};
use shared::sender::Sender;
use shared::usecase::operate::Operator;

use crate::config::StatusConfig;
use crate::error::StatusError;
use crate::operator::{OperatorRoute, operator_route, serve_operator};

/// How long one store call may take (also the SDK's operation timeout).
pub const STORE_DEADLINE: Duration = Duration::from_secs(5);
/// How long registering a whole list may take.
const REGISTRATION_DEADLINE: Duration = Duration::from_secs(20);
/// Task ids one registration may carry.
pub const MAX_REGISTRATIONS: usize = 100;
const MAX_REGISTRATION_BODY: usize = 64 * 1024;

/// The status function's dependencies.
#[derive(Debug)]
pub struct StatusService<S, D, E, Se, Q> {
    store: S,
    s3: aws_sdk_s3::Client,
    config: StatusConfig,
    registration_deadline: Duration,
    operator: Operator<D, E, Se, Q>,
}

/// The public view of a task: the 200 body.
#[derive(Debug, Serialize)]
pub struct TaskView<'a> {
    pub task_id: &'a TaskId,
    pub status: TaskStatus,
    pub upstream_code: u16,
    pub upstream_msg: &'a str,
    pub callback_count: u32,
    pub attempts: u32,
    pub received_at: Timestamp,
    pub updated_at: Timestamp,
    /// Present (null) on every task, so clients can rely on the key.
    pub failure_reason: Option<FailureReason>,
    /// Where the outcome came from: `callback`, or `poll` (the callback never came).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<RecordSource>,
    /// When an operator registered it as expected (`POST /tasks`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_detail: Option<&'a str>,
    /// While downloading.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<ProgressView>,
    /// Once stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoView<'a>>,
}

#[derive(Debug, Serialize)]
pub struct ProgressView {
    pub bytes_received: u64,
}

#[derive(Debug, Serialize)]
pub struct VideoView<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub bytes: u64,
    pub sha256: &'a str,
    pub content_type: &'a str,
    /// A presigned GET, valid until `url_expires_at`.
    pub url: String,
    pub url_expires_at: Timestamp,
}

impl<S, D, E, Se, Q> StatusService<S, D, E, Se, Q>
where
    S: TaskStore,
    D: DeliveryStore + DeliveryLog,
    E: EndpointStore + EndpointAdmin,
    Se: Sender,
    Q: JobQueue,
{
    pub fn new(
        store: S,
        s3: aws_sdk_s3::Client,
        config: StatusConfig,
        operator: Operator<D, E, Se, Q>,
    ) -> Self {
        Self {
            store,
            s3,
            config,
            registration_deadline: REGISTRATION_DEADLINE,
            operator,
        }
    }

    pub async fn handle(&self, request: Request) -> Response<Body> {
        serve(request, |request| async move {
            debug!(method = %request.method(), path = request.uri().path(), "operator request");
            let raw_id = match route_of(&request) {
                Route::Tasks => return self.register(&request).await,
                Route::Task(raw) => raw,
                Route::TaskNotify(raw) => return self.renotify(&request, &raw).await,
                Route::Operator(route) => {
                    return serve_operator(&self.operator, route, &request).await;
                }
                Route::Unknown => return Err(StatusError::UnknownRoute),
            };
            MethodNotAllowed::check(request.method(), Method::GET)?;
            let task_id = TaskId::parse(&raw_id).map_err(StatusError::InvalidTaskId)?;
            tracing::Span::current().record("task_id", task_id.as_str());
            let task = within_deadline(STORE_DEADLINE, self.store.get(&task_id))
                .await?
                .ok_or(StatusError::NotFound)?;
            let presigned = match task.state() {
                Ok(TaskState::Stored { video }) => Some((video, self.presign(video).await?)),
                _ => None,
            };
            let body = view(&task, presigned, Timestamp::now(), self.config.presign_ttl);
            info!(
                outcome = "found",
                task_status = body.status.as_str(),
                "status served"
            );
            Ok::<_, StatusError>(json_response(StatusCode::OK, &body))
        })
        .await
    }

    /// `POST /tasks/{task_id}/notify`: the outcome goes to every matching endpoint again.
    async fn renotify(&self, request: &Request, raw: &str) -> Result<Response<Body>, StatusError> {
        MethodNotAllowed::check(request.method(), Method::POST)?;
        let task_id = TaskId::parse(raw).map_err(StatusError::InvalidTaskId)?;
        tracing::Span::current().record("task_id", task_id.as_str());
        let task = within_deadline(STORE_DEADLINE, self.store.get(&task_id))
            .await?
            .ok_or(StatusError::NotFound)?;
        let endpoints = self.operator.renotify(&task, Timestamp::now()).await?;
        Ok(json_response(
            StatusCode::ACCEPTED,
            &serde_json::json!({ "task_id": task_id, "endpoints": endpoints }),
        ))
    }

    /// `POST /tasks`: each id becomes an `expected` task unless it is already known.
    async fn register(&self, request: &Request) -> Result<Response<Body>, StatusError> {
        MethodNotAllowed::check(request.method(), Method::POST)?;
        let body: &[u8] = request.body().as_ref();
        check_json_body(request.headers(), body, MAX_REGISTRATION_BODY)?;
        let ids = parse_registration(body)?;
        let now = Timestamp::now();
        // One deadline for the whole list, well inside API Gateway's 30 s: a slow store
        // answers 503 and the caller sends the list again (ids already created come back
        // under `existing`).
        let answer = within_deadline(self.registration_deadline, async {
            let mut answer = Registered::default();
            for task_id in ids {
                let task = Task::expected(task_id.clone(), now, self.config.task_ttl);
                match self.store.create(&task).await? {
                    Created::New => answer.registered.push(task_id),
                    Created::Exists(existing) => answer.existing.push(Existing {
                        task_id,
                        status: existing.status,
                    }),
                }
            }
            Ok(answer)
        })
        .await?;
        info!(
            outcome = "registered",
            registered = answer.registered.len(),
            existing = answer.existing.len(),
            "expected tasks registered"
        );
        Ok(json_response(StatusCode::OK, &answer))
    }

    async fn presign(&self, video: &StoredVideo) -> Result<String, StatusError> {
        let config = PresigningConfig::expires_in(self.config.presign_ttl)
            .map_err(|e| StatusError::Presign(e.to_string()))?;
        let request = self
            .s3
            .get_object()
            .bucket(&video.bucket)
            .key(&video.key)
            .presigned(config)
            .await
            .map_err(|e| StatusError::Presign(e.to_string()))?;
        Ok(request.uri().to_owned())
    }
}

/// The `POST /tasks` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Registration {
    task_ids: Vec<String>,
}

/// The `POST /tasks` answer.
#[derive(Debug, Default, Serialize)]
pub struct Registered {
    /// Now `expected`.
    pub registered: Vec<TaskId>,
    /// Already known: left as they are.
    pub existing: Vec<Existing>,
}

#[derive(Debug, Serialize)]
pub struct Existing {
    pub task_id: TaskId,
    pub status: TaskStatus,
}

/// 1–[`MAX_REGISTRATIONS`] valid, distinct task ids, or why not.
fn parse_registration(body: &[u8]) -> Result<Vec<TaskId>, StatusError> {
    let invalid = |why: String| StatusError::InvalidRegistration(why);
    let registration: Registration = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("expected {{\"task_ids\": [...]}}: {e}")))?;
    if registration.task_ids.is_empty() || registration.task_ids.len() > MAX_REGISTRATIONS {
        return Err(invalid(format!(
            "task_ids must hold 1 to {MAX_REGISTRATIONS} ids, not {}",
            registration.task_ids.len()
        )));
    }
    let mut ids: Vec<TaskId> = Vec::with_capacity(registration.task_ids.len());
    for raw in &registration.task_ids {
        let id = TaskId::parse(raw).map_err(|e| invalid(format!("task id {raw:?}: {e}")))?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Which operator route a request is for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// `/tasks`: registration.
    Tasks,
    /// `/tasks/{task_id}`, with the id as sent (not yet parsed).
    Task(String),
    /// `/tasks/{task_id}/notify`.
    TaskNotify(String),
    /// `/endpoints…`, `/deliveries…`.
    Operator(OperatorRoute),
    /// No such route (API Gateway would match none).
    Unknown,
}

/// The path decides, from its first `tasks`, `endpoints` or `deliveries` segment (the
/// local emulator serves the function under a prefix and matches no routes). A task id
/// is API Gateway's `task_id` path parameter when there is one, else what follows
/// `tasks`, percent-decoded, so a task may itself be called `tasks`.
fn route_of(request: &Request) -> Route {
    let path = request.uri().path();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Some(at) = segments
        .iter()
        .position(|s| matches!(*s, "tasks" | "endpoints" | "deliveries"))
    else {
        return Route::Unknown;
    };
    let (collection, rest) = (segments[at], &segments[at + 1..]);
    if collection != "tasks" {
        return operator_route(collection, rest).map_or(Route::Unknown, Route::Operator);
    }
    let notify = rest.len() == 2 && rest[1] == "notify";
    if let Some(id) = request
        .path_parameters_ref()
        .and_then(|p| p.first("task_id"))
    {
        return match notify {
            true => Route::TaskNotify(id.to_owned()),
            false => Route::Task(id.to_owned()),
        };
    }
    let decode = |raw: &str| {
        percent_encoding::percent_decode_str(raw)
            .decode_utf8_lossy()
            .into_owned()
    };
    match rest {
        [] => Route::Tasks,
        [id, "notify"] => Route::TaskNotify(decode(id)),
        // More than one segment joins with `/`, which no task id may hold: a 400, not a 404.
        _ => Route::Task(decode(&rest.join("/"))),
    }
}

/// The public view of `task`, with its stored video and presigned URL if any.
fn view<'a>(
    task: &'a Task,
    presigned: Option<(&'a StoredVideo, String)>,
    now: Timestamp,
    ttl: Duration,
) -> TaskView<'a> {
    let state = task.state().ok();
    TaskView {
        task_id: &task.task_id,
        status: task.status,
        upstream_code: task.upstream_code,
        upstream_msg: &task.upstream_msg,
        callback_count: task.callback_count,
        attempts: task.attempts,
        received_at: task.received_at,
        updated_at: task.updated_at,
        failure_reason: task.failure_reason,
        source: task.source,
        registered_at: task.registered_at,
        failure_detail: task.failure_detail.as_deref(),
        progress: match state {
            Some(TaskState::Downloading { bytes_received, .. }) => {
                Some(ProgressView { bytes_received })
            }
            _ => None,
        },
        video: presigned.map(|(video, url)| VideoView {
            bucket: &video.bucket,
            key: &video.key,
            bytes: video.bytes,
            sha256: &video.sha256,
            content_type: &video.content_type,
            url,
            url_expires_at: now.saturating_add(ttl),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use shared::domain::task::{ClaimDecision, DEFAULT_TASK_TTL, Lease, Patch};
    use shared::lambda::config::Env;
    use shared::notifications::memory::{MemoryDeliveries, MemoryEndpoints, MemoryQueue};
    use shared::sender::scripted::ScriptedSender;
    use shared::store::Applied;
    use shared::test_support::fixtures::APIGW_V2_STATUS as FIXTURE;
    use shared::test_support::{MemoryTaskStore, envelope, static_s3_client};
    use shared::usecase::deliver::{Courier, DeliverSettings};
    use std::sync::Arc;

    const TASK: &str = "taskId_774b9aa0422f";

    type Service = StatusService<
        MemoryTaskStore,
        Arc<MemoryDeliveries>,
        Arc<MemoryEndpoints>,
        ScriptedSender,
        MemoryQueue,
    >;

    fn service() -> Service {
        let local = crate::config::tests::BASE.into_iter().chain([
            ("ENDPOINT_URL_ALLOW_HTTP", "true"),
            ("ENDPOINT_URL_ALLOW_LOOPBACK", "true"),
        ]);
        let config = StatusConfig::from_env(&Env::from_pairs(local)).unwrap();
        // A real S3 client with static credentials: presigning is computed locally.
        let s3 = static_s3_client(None, "AKIDEXAMPLE", "secret");
        let operator = Operator {
            courier: Courier {
                deliveries: Arc::default(),
                endpoints: Arc::default(),
                sender: ScriptedSender::default(),
                queue: MemoryQueue::default(),
                settings: DeliverSettings::new(config.health),
            },
            url_policy: config.url_policy.clone(),
        };
        StatusService::new(MemoryTaskStore::default(), s3, config, operator)
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
        let url = (code == 200).then_some("https://cdn.example/v.mp4");
        let task = Task::from_callback(
            &envelope(TASK, code, url, "m"),
            Timestamp::now(),
            DEFAULT_TASK_TTL,
        );
        store.create(&task).await.unwrap();
        task
    }

    async fn advance(store: &MemoryTaskStore, task: &Task, patch: Patch) -> Task {
        match store.apply(&task.task_id, &patch).await.unwrap() {
            Applied::Done(t) => *t,
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
        let ClaimDecision::Claim(claim) =
            task.decide_claim("inv", Timestamp::now(), lease, 5, DEFAULT_TASK_TTL)
        else {
            panic!("a received task is claimable")
        };
        let task = advance(&s.store, &task, claim).await;
        let owner = Lease::new("inv", lease);
        let task = advance(
            &s.store,
            &task,
            owner.renew(64 << 20, lease, Timestamp::now()),
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
        advance(
            &s.store,
            &task,
            owner.store(video, Timestamp::now(), DEFAULT_TASK_TTL),
        )
        .await;
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

    fn registration(body: &str) -> Request {
        request(|v| {
            v["requestContext"]["http"]["method"] = "POST".into();
            v["requestContext"]["routeKey"] = "POST /tasks".into();
            v["rawPath"] = "/tasks".into();
            v["requestContext"]["http"]["path"] = "/tasks".into();
            v.as_object_mut().unwrap().remove("pathParameters");
            v["headers"]["content-type"] = "application/json".into();
            v["body"] = body.into();
        })
    }

    #[tokio::test]
    async fn registration_creates_expected_tasks_and_leaves_known_ones_alone() {
        let s = service();
        seed(&s.store, 200).await;
        let response = s
            .handle(registration(&format!(
                r#"{{"task_ids": ["exp-1", "{TASK}", "exp-1"]}}"#
            )))
            .await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            read(&response),
            json!({"registered": ["exp-1"], "existing": [{"task_id": TASK, "status": "received"}]})
        );
        let body = read(
            &s.handle(request(|v| v["pathParameters"]["task_id"] = "exp-1".into()))
                .await,
        );
        assert_eq!(body["status"], "expected");
        assert_eq!(body["callback_count"], 0);
    }

    #[tokio::test]
    async fn a_slow_registration_is_a_503_and_sending_it_again_completes_it() {
        let mut s = service();
        s.registration_deadline = Duration::from_millis(150);
        s.store.delay_calls(Duration::from_millis(60));
        let ids: Vec<String> = (0..10).map(|i| format!("slow-{i}")).collect();
        let body = json!({ "task_ids": ids }).to_string();
        let started = std::time::Instant::now();
        let response = s.handle(registration(&body)).await;
        assert_eq!(
            (
                response.status().as_u16(),
                read(&response)["error"].as_str()
            ),
            (503, Some("unavailable"))
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        let written = s.store.len();
        assert!(written < ids.len(), "{written} of {} written", ids.len());

        s.store.delay_calls(Duration::ZERO);
        let answer = read(&s.handle(registration(&body)).await);
        assert_eq!(
            answer["registered"].as_array().unwrap().len()
                + answer["existing"].as_array().unwrap().len(),
            ids.len()
        );
        assert_eq!(answer["existing"].as_array().unwrap().len(), written);
        assert_eq!(s.store.len(), ids.len());
    }

    #[tokio::test]
    async fn bad_registrations_are_refused_and_write_nothing() {
        let s = service();
        let too_many: Vec<String> = (0..101).map(|i| format!("t{i}")).collect();
        for (body, code) in [
            ("{oops".to_owned(), "invalid_registration"),
            (r#"{"task_ids": []}"#.to_owned(), "invalid_registration"),
            (
                r#"{"task_ids": ["a/b"]}"#.to_owned(),
                "invalid_registration",
            ),
            (
                r#"{"task_ids": ["ok"], "extra": 1}"#.to_owned(),
                "invalid_registration",
            ),
            (
                json!({"task_ids": too_many}).to_string(),
                "invalid_registration",
            ),
        ] {
            let response = s.handle(registration(&body)).await;
            assert_eq!(
                (
                    response.status().as_u16(),
                    read(&response)["error"].as_str()
                ),
                (400, Some(code)),
                "{body}"
            );
        }
        for content_type in ["text/plain", "application/json; charset=utf-16"] {
            let wrong_type = on_path("POST", "/tasks", |v| {
                v["headers"]["content-type"] = content_type.into();
                v["body"] = r#"{"task_ids": ["x"]}"#.into();
            });
            assert_eq!(s.handle(wrong_type).await.status(), 415, "{content_type}");
        }
        let get = on_path("GET", "/tasks", |_| {});
        let response = s.handle(get).await;
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "POST");
        assert!(s.store.is_empty());
    }

    /// A request as the local emulator sends it: no route matched, so no path parameter.
    fn on_path(method: &str, path: &str, edit: impl FnOnce(&mut Value)) -> Request {
        request(|v| {
            v.as_object_mut().unwrap().remove("pathParameters");
            v["requestContext"]["http"]["method"] = method.into();
            v["requestContext"]["routeKey"] = "$default".into();
            v["rawPath"] = path.into();
            v["requestContext"]["http"]["path"] = path.into();
            edit(v);
        })
    }

    #[tokio::test]
    async fn the_id_comes_from_the_path_when_no_route_matched() {
        let s = service();
        seed(&s.store, 200).await;
        let local = on_path("GET", &format!("/lambda-url/status/tasks/{TASK}"), |_| {});
        assert_eq!(s.handle(local).await.status(), 200);
    }

    #[test]
    fn routes() {
        let get = |path: &str| route_of(&on_path("GET", path, |_| {}));
        assert_eq!(get("/tasks"), Route::Tasks);
        assert_eq!(get("/tasks/"), Route::Tasks);
        assert_eq!(get("/lambda-url/status/tasks"), Route::Tasks);
        assert_eq!(get("/prod/tasks/abc"), Route::Task("abc".into()));
        assert_eq!(get("/tasks/tasks"), Route::Task("tasks".into()));
        assert_eq!(get("/tasks/a%20b"), Route::Task("a b".into()));
        assert_eq!(get("/tasks/a%2Fb"), Route::Task("a/b".into()));
        assert_eq!(get("/tasks/a/b"), Route::Task("a/b".into()));
        assert_eq!(get("/"), Route::Unknown);
        assert_eq!(get("/task/abc"), Route::Unknown);
        assert_eq!(get("/tasks/abc/notify"), Route::TaskNotify("abc".into()));
        assert_eq!(get("/tasks/abc/other"), Route::Task("abc/other".into()));
        assert_eq!(
            get("/lambda-url/status/endpoints"),
            Route::Operator(OperatorRoute::Endpoints)
        );
        assert_eq!(
            get("/deliveries/dl_1/retry"),
            Route::Operator(OperatorRoute::DeliveryRetry("dl_1".into()))
        );
        assert_eq!(get("/endpoints/a/b/c"), Route::Unknown);
        // API Gateway's parameter decides, whatever the path says.
        let routed = request(|v| {
            v["pathParameters"]["task_id"] = "tasks".into();
            v["rawPath"] = "/tasks".into();
        });
        assert_eq!(route_of(&routed), Route::Task("tasks".into()));
    }

    #[tokio::test]
    async fn a_task_called_tasks_is_a_task_and_bad_paths_are_refused() {
        let s = service();
        let tasks = TaskId::parse("tasks").unwrap();
        let task = Task::from_callback(
            &envelope(tasks.as_str(), 451, None, "m"),
            Timestamp::now(),
            DEFAULT_TASK_TTL,
        );
        s.store.create(&task).await.unwrap();
        let response = s.handle(on_path("GET", "/tasks/tasks", |_| {})).await;
        assert_eq!(response.status(), 200);
        assert_eq!(read(&response)["task_id"], "tasks");
        for (method, path, status, code) in [
            ("GET", "/tasks/a/b", 400, "invalid_task_id"),
            // Normalised to `/`, which is no route.
            ("GET", "/tasks/..", 404, "not_found"),
            ("GET", "/tasks/a/..%2F..", 400, "invalid_task_id"),
            ("GET", "/tasks/nobody", 404, "not_found"),
            ("POST", "/tasks/tasks", 405, "method_not_allowed"),
            ("DELETE", "/tasks", 405, "method_not_allowed"),
        ] {
            let response = s.handle(on_path(method, path, |_| {})).await;
            assert_eq!(
                (
                    response.status().as_u16(),
                    read(&response)["error"].as_str()
                ),
                (status, Some(code)),
                "{method} {path}"
            );
        }
    }

    fn call(method: &str, path: &str, body: Option<&str>) -> Request {
        on_path(method, path, |v| {
            if let Some(body) = body {
                v["headers"]["content-type"] = "application/json".into();
                v["body"] = body.into();
            }
        })
    }

    #[tokio::test]
    async fn endpoints_are_created_with_a_secret_shown_once_tested_listed_and_deleted() {
        let s = service();
        let created = s
            .handle(call(
                "POST",
                "/endpoints",
                Some(r#"{"kind":"webhook","url":"http://127.0.0.1:9/hook"}"#),
            ))
            .await;
        assert_eq!(created.status(), 201);
        let created = read(&created);
        let secret = created["secret"].as_str().unwrap().to_owned();
        assert!(secret.starts_with("whsec_"));
        let id = created["endpoint"]["id"].as_str().unwrap().to_owned();

        for path in ["/endpoints".to_owned(), format!("/endpoints/{id}")] {
            let shown = s.handle(call("GET", &path, None)).await;
            assert_eq!(shown.status(), 200);
            let text = std::str::from_utf8(shown.body().as_ref())
                .unwrap()
                .to_owned();
            assert!(text.contains(&id));
            assert!(
                !text.contains(&secret[6..]),
                "the secret is never shown again: {text}"
            );
            assert!(!text.contains("\"secret\""));
        }

        s.operator.courier.sender.answer(204, "");
        let tested = s
            .handle(call("POST", &format!("/endpoints/{id}/test"), None))
            .await;
        assert_eq!(tested.status(), 200);
        let tested = read(&tested);
        assert_eq!(tested["outcome"], "succeeded");
        assert_eq!(tested["delivery"]["event"]["type"], "test");
        let delivery = tested["delivery"]["id"].as_str().unwrap().to_owned();

        let page = read(
            &s.handle(call(
                "GET",
                &format!("/endpoints/{id}/deliveries?limit=1"),
                None,
            ))
            .await,
        );
        assert_eq!(page["deliveries"][0]["id"], delivery.as_str());
        let retried = s
            .handle(call("POST", &format!("/deliveries/{delivery}/retry"), None))
            .await;
        assert_eq!(retried.status(), 202);
        assert_eq!(read(&retried)["delivery"]["status"], "pending");
        assert_eq!(
            s.operator.courier.queue.jobs().len(),
            1,
            "the replay is queued"
        );

        let off = read(
            &s.handle(call("POST", &format!("/endpoints/{id}/disable"), None))
                .await,
        );
        assert_eq!(off["endpoint"]["enabled"], false);
        let rotated = read(
            &s.handle(call(
                "POST",
                &format!("/endpoints/{id}/rotate-secret"),
                None,
            ))
            .await,
        );
        assert_ne!(rotated["secret"].as_str().unwrap(), secret);

        assert_eq!(
            s.handle(call("DELETE", &format!("/endpoints/{id}"), None))
                .await
                .status(),
            204
        );
        let gone = s
            .handle(call("GET", &format!("/endpoints/{id}"), None))
            .await;
        assert_eq!(
            (gone.status().as_u16(), read(&gone)["error"].clone()),
            (404, "not_found".into())
        );
    }

    #[tokio::test]
    async fn notification_routes_refuse_what_they_cannot_use() {
        let s = service();
        let cases: [(&str, &str, Option<&str>, u16, &str); 9] = [
            (
                "POST",
                "/endpoints",
                Some(r#"{"kind":"webhook","url":"ftp://x"}"#),
                400,
                "invalid_endpoint",
            ),
            (
                "POST",
                "/endpoints",
                Some(r#"{"kind":"webhook","url":"http://127.0.0.1:9/","extra":1}"#),
                400,
                "invalid_request",
            ),
            (
                "POST",
                "/endpoints",
                Some("not json"),
                400,
                "invalid_request",
            ),
            ("GET", "/endpoints/not-an-id", None, 400, "invalid_id"),
            (
                "GET",
                "/endpoints/ep_aaaaaaaaaaaaaaaaaaaa",
                None,
                404,
                "not_found",
            ),
            (
                "PATCH",
                "/endpoints/ep_aaaaaaaaaaaaaaaaaaaa",
                None,
                405,
                "method_not_allowed",
            ),
            (
                "POST",
                "/endpoints/ep_aaaaaaaaaaaaaaaaaaaa/explode",
                None,
                404,
                "not_found",
            ),
            ("GET", "/deliveries/nope", None, 400, "invalid_id"),
            (
                "POST",
                &format!("/tasks/{TASK}/notify"),
                None,
                404,
                "not_found",
            ),
        ];
        for (method, path, body, status, code) in cases {
            let answer = s.handle(call(method, path, body)).await;
            assert_eq!(answer.status().as_u16(), status, "{method} {path}");
            assert_eq!(read(&answer)["error"], code, "{method} {path}");
        }
        let unsupported = s
            .handle(on_path("POST", "/endpoints", |v| {
                v["headers"]["content-type"] = "text/plain".into();
                v["body"] = "{}".into();
            }))
            .await;
        assert_eq!(unsupported.status(), 415);
        let allow = s
            .handle(call("PATCH", "/endpoints/ep_aaaaaaaaaaaaaaaaaaaa", None))
            .await;
        assert_eq!(allow.headers()["allow"], "GET, PUT, DELETE");
        // A task without an outcome has nothing to notify: 409.
        seed(&s.store, 200).await;
        let open = s
            .handle(call("POST", &format!("/tasks/{TASK}/notify"), None))
            .await;
        assert_eq!(
            (open.status().as_u16(), read(&open)["error"].clone()),
            (409, "no_outcome".into())
        );
    }
}
