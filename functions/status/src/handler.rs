//! The operator API (IAM-authorised):
//! - `GET /tasks/{task_id}`: where a task stands, with a presigned URL once its video is
//!   stored. One GetItem, and a presign that is computed locally.
//! - `POST /tasks` `{"task_ids": [...]}`: registers tasks whose callback is expected, so
//!   the reconciler can poll the upstream if it never comes. One conditional put each.
//! - `GET /tasks?status=&since=&until=&limit=&cursor=`: tasks in one status, newest change
//!   first, paginated: a query of the `by-status` index, never a scan.
//! - `POST /tasks/{task_id}/redrive`: hands a received task (or one whose lease ran out)
//!   to ingest again now, with the domain's re-drive patch (revision-checked).
//! - `POST /tasks/{task_id}/notify`: notifies the task's outcome again.
//! - the notification routes (`/endpoints…`, `/deliveries…`): [`crate::operator`].

use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::{Deserialize, Serialize};
use shared::domain::task::{
    FailureReason, RecordSource, StoredVideo, Task, TaskState, TaskStatus, UnknownStatus,
};
use shared::lambda::http::{
    MethodNotAllowed, check_json_body, json_response, serve, within_deadline,
};
use shared::store::{Applied, Created, Cursor, Listed, StatusQuery, TaskIndex, TaskStore};
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
/// Tasks one page of `GET /tasks` holds by default, and at most.
const LIST_DEFAULT: usize = 25;
pub const LIST_MAX: usize = 100;

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
    S: TaskStore + TaskIndex,
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
                Route::Tasks => {
                    return match *request.method() {
                        Method::GET => self.list(&request).await,
                        Method::POST => self.register(&request).await,
                        _ => Err(MethodNotAllowed::of(
                            request.method(),
                            &[Method::GET, Method::POST],
                        )
                        .into()),
                    };
                }
                Route::Task(raw) => raw,
                Route::TaskNotify(raw) => return self.renotify(&request, &raw).await,
                Route::TaskRedrive(raw) => return self.redrive(&request, &raw).await,
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

    /// `GET /tasks?status=…`: one page of the tasks in a status, newest change first.
    async fn list(&self, request: &Request) -> Result<Response<Body>, StatusError> {
        let params = request.query_string_parameters();
        let (query, cursor) = parse_listing(|name| params.first(name).map(str::to_owned))?;
        let page = within_deadline(
            STORE_DEADLINE,
            self.store.list_by_status(&query, cursor.as_ref()),
        )
        .await?;
        let mut tasks = Vec::with_capacity(page.tasks.len());
        let mut unreadable = Vec::new();
        for listed in &page.tasks {
            match listed {
                Listed::Task(task) => tasks.push(TaskSummary::of(task)),
                Listed::Unreadable { task_id, .. } => unreadable.push(task_id),
            }
        }
        info!(
            outcome = "listed",
            task_status = query.status.as_str(),
            tasks = tasks.len(),
            "tasks listed"
        );
        Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({
                "tasks": tasks,
                "unreadable": unreadable,
                "next_cursor": page.next.map(|c| c.to_token()),
            }),
        ))
    }

    /// `POST /tasks/{task_id}/redrive`: the domain's re-drive, written once (202), or why
    /// not (409).
    async fn redrive(&self, request: &Request, raw: &str) -> Result<Response<Body>, StatusError> {
        MethodNotAllowed::check(request.method(), Method::POST)?;
        let task_id = TaskId::parse(raw).map_err(StatusError::InvalidTaskId)?;
        tracing::Span::current().record("task_id", task_id.as_str());
        let task = within_deadline(STORE_DEADLINE, self.store.get(&task_id))
            .await?
            .ok_or(StatusError::NotFound)?;
        let patch = task
            .decide_operator_redrive(Timestamp::now(), self.config.task_ttl)
            .ok_or(StatusError::NotRedrivable(task.status))?;
        match within_deadline(STORE_DEADLINE, self.store.apply(&task_id, &patch)).await? {
            Applied::Done(now) => {
                info!(
                    outcome = "redriven",
                    from = task.status.as_str(),
                    "task re-driven"
                );
                Ok(json_response(
                    StatusCode::ACCEPTED,
                    &serde_json::json!({ "task_id": task_id, "status": now.status,
                                         "previous_status": task.status }),
                ))
            }
            Applied::Conflict(_) => Err(StatusError::Conflict),
        }
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

/// One task in a listing: what a table row shows (no presigned URL).
#[derive(Debug, Serialize)]
pub struct TaskSummary<'a> {
    pub task_id: &'a TaskId,
    pub status: TaskStatus,
    pub upstream_code: u16,
    pub attempts: u32,
    pub received_at: Timestamp,
    pub updated_at: Timestamp,
    pub failure_reason: Option<FailureReason>,
    /// The stored video's size, or the bytes received so far while downloading.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<RecordSource>,
}

impl<'a> TaskSummary<'a> {
    fn of(task: &'a Task) -> Self {
        Self {
            task_id: &task.task_id,
            status: task.status,
            upstream_code: task.upstream_code,
            attempts: task.attempts,
            received_at: task.received_at,
            updated_at: task.updated_at,
            failure_reason: task.failure_reason,
            bytes: task.video.as_ref().map(|v| v.bytes).or(task.bytes_received),
            source: task.source,
        }
    }
}

/// The listing's query (`status` required; `since`/`until` RFC 3339; `limit` 1–100;
/// `cursor` as a previous page gave it), from a lookup of the query string.
fn parse_listing(
    param: impl Fn(&str) -> Option<String>,
) -> Result<(StatusQuery, Option<Cursor>), StatusError> {
    let invalid = StatusError::InvalidRequest;
    let raw = param("status").ok_or_else(|| invalid("status is required".into()))?;
    let status: TaskStatus = raw
        .parse()
        .map_err(|e: UnknownStatus| invalid(e.to_string()))?;
    let time = |name: &str| -> Result<Option<Timestamp>, StatusError> {
        param(name)
            .map(|raw| {
                Timestamp::parse_rfc3339(&raw)
                    .ok_or_else(|| invalid(format!("{name} is not an RFC 3339 timestamp: {raw:?}")))
            })
            .transpose()
    };
    let limit = match param("limit") {
        None => LIST_DEFAULT,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=LIST_MAX).contains(n))
            .ok_or_else(|| invalid(format!("limit must be 1 to {LIST_MAX}")))?,
    };
    let cursor = param("cursor")
        .map(|raw| {
            Cursor::from_token(&raw)
                .ok_or_else(|| invalid("cursor is not one this API gave".into()))
        })
        .transpose()?;
    let query = StatusQuery {
        status,
        since: time("since")?,
        until: time("until")?,
        limit,
    };
    Ok((query, cursor))
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
    /// `/tasks/{task_id}/redrive`.
    TaskRedrive(String),
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
    let action = match rest {
        [_, "notify"] => Some(Route::TaskNotify as fn(String) -> Route),
        [_, "redrive"] => Some(Route::TaskRedrive as fn(String) -> Route),
        _ => None,
    };
    if let Some(id) = request
        .path_parameters_ref()
        .and_then(|p| p.first("task_id"))
    {
        return action.unwrap_or(Route::Task)(id.to_owned());
    }
    let decode = |raw: &str| {
        percent_encoding::percent_decode_str(raw)
            .decode_utf8_lossy()
            .into_owned()
    };
    match rest {
        [] => Route::Tasks,
        [id, "notify"] => Route::TaskNotify(decode(id)),
        [id, "redrive"] => Route::TaskRedrive(decode(id)),
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
        let put = on_path("PUT", "/tasks", |_| {});
        let response = s.handle(put).await;
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "GET, POST");
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
        assert_eq!(get("/tasks/abc/redrive"), Route::TaskRedrive("abc".into()));
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

    async fn failed_task(store: &MemoryTaskStore, id: &str, at: Timestamp) {
        let task = Task::from_callback(&envelope(id, 500, None, "boom"), at, DEFAULT_TASK_TTL);
        store.create(&task).await.unwrap();
    }

    #[tokio::test]
    async fn tasks_are_listed_by_status_newest_first_in_pages() {
        let s = service();
        let base = Timestamp::now().saturating_sub(Duration::from_secs(600));
        for i in 0..3u64 {
            failed_task(
                &s.store,
                &format!("f-{i}"),
                base.saturating_add(Duration::from_secs(i * 60)),
            )
            .await;
        }
        seed(&s.store, 200).await;
        let page = |query: &str| on_path("GET", &format!("/tasks?{query}"), |_| {});
        let list = |query: &str| {
            let mut request = page(query);
            let pairs: std::collections::HashMap<String, Vec<String>> = url_pairs(query)
                .into_iter()
                .fold(Default::default(), |mut m, (k, v)| {
                    m.entry(k).or_default().push(v);
                    m
                });
            request = request.with_query_string_parameters(pairs);
            request
        };
        let first = s.handle(list("status=failed&limit=2")).await;
        assert_eq!(first.status(), 200);
        let first = read(&first);
        let ids: Vec<&str> = first["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["task_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["f-2", "f-1"]);
        assert_eq!(first["tasks"][0]["status"], "failed");
        assert_eq!(first["tasks"][0]["upstream_code"], 500);
        let cursor = first["next_cursor"].as_str().unwrap();
        let second = read(
            &s.handle(list(&format!("status=failed&limit=2&cursor={cursor}")))
                .await,
        );
        assert_eq!(second["tasks"].as_array().unwrap().len(), 1);
        assert_eq!(second["tasks"][0]["task_id"], "f-0");
        assert_eq!(second["next_cursor"], Value::Null);
        let since = base.saturating_add(Duration::from_secs(30)).to_rfc3339();
        let recent = read(
            &s.handle(list(&format!("status=failed&since={since}")))
                .await,
        );
        assert_eq!(recent["tasks"].as_array().unwrap().len(), 2);
        let received = read(&s.handle(list("status=received")).await);
        assert_eq!(received["tasks"][0]["task_id"], TASK);

        for bad in [
            "",
            "status=lost",
            "status=failed&limit=0",
            "status=failed&limit=101",
            "status=failed&since=yesterday",
            "status=failed&cursor=forged",
        ] {
            let answer = s.handle(list(bad)).await;
            assert_eq!(
                (answer.status().as_u16(), read(&answer)["error"].clone()),
                (400, "invalid_request".into()),
                "{bad}"
            );
        }
    }

    fn url_pairs(query: &str) -> Vec<(String, String)> {
        query
            .split('&')
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[tokio::test]
    async fn a_received_task_is_redriven_once_and_final_ones_are_refused() {
        let s = service();
        seed(&s.store, 200).await;
        let before = s.store.snapshot(&TaskId::parse(TASK).unwrap()).unwrap();
        let answer = s
            .handle(call("POST", &format!("/tasks/{TASK}/redrive"), None))
            .await;
        assert_eq!(answer.status(), 202);
        assert_eq!(read(&answer)["status"], "received");
        let after = s.store.snapshot(&TaskId::parse(TASK).unwrap()).unwrap();
        assert!(after.revision > before.revision);
        assert_ne!(
            after.redrive_mark, before.redrive_mark,
            "the ingest filter sees it"
        );

        failed_task(&s.store, "gone", Timestamp::now()).await;
        for (method, path, status, code) in [
            ("POST", "/tasks/gone/redrive", 409, "not_redrivable"),
            ("POST", "/tasks/nobody/redrive", 404, "not_found"),
            ("GET", "/tasks/gone/redrive", 405, "method_not_allowed"),
        ] {
            let answer = s.handle(call(method, path, None)).await;
            assert_eq!(
                (answer.status().as_u16(), read(&answer)["error"].clone()),
                (status, code.into()),
                "{method} {path}"
            );
        }
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
