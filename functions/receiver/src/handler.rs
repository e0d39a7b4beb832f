//! `POST /callbacks/music-video`: verify, parse, record with one conditional write,
//! answer. No other network call happens on this path, except when the table cannot take
//! the write: then the verified callback is spilled to the inbox and answered 200 only
//! once that copy is durable (the reconciler replays it); 503 if both fail.

use std::sync::Arc;
use std::time::Instant;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use shared::domain::envelope::CallbackEnvelope;
use shared::domain::verify::{CallbackRequest, Verified, Verifier};
use shared::inbox::{Inbox, NoInbox, Spilled};
use shared::lambda::http::{
    ApiError as _, MethodNotAllowed, Unavailable, check_json_body, json_response, serve,
    within_deadline,
};
use shared::metrics::{self, CallbackAnswer as Answered};
use shared::secrets::Refreshing;
use shared::store::TaskStore;
use shared::usecase::record_callback::{Recorded, record_callback};
use shared::{TaskId, Timestamp};
use tracing::{debug, error, info, warn};

use crate::config::ReceiverConfig;
use crate::error::ReceiveError;

/// The receiver: its store, its inbox and configuration, built once per cold start.
#[derive(Debug)]
pub struct Receiver<S, I = NoInbox> {
    store: S,
    inbox: I,
    /// The verifier, rebuilt when its secret is refreshed (fixed without one).
    verifier: Arc<Refreshing<Verifier>>,
    config: ReceiverConfig,
}

/// The 200 answer: `{"status": "received" | "duplicate", "task_id": …}`.
#[derive(Debug, Serialize)]
pub struct CallbackAnswer {
    pub status: &'static str,
    pub task_id: TaskId,
}

/// A recorded callback.
#[derive(Debug)]
struct Accepted {
    task_id: TaskId,
    upstream_code: u16,
    kept: Kept,
    verified: Verified,
}

/// Where an accepted callback is now.
#[derive(Debug)]
enum Kept {
    Recorded(Recorded),
    /// In the inbox under this key, for the reconciler to record.
    Spilled(String),
}

impl<S: TaskStore> Receiver<S> {
    pub fn new(store: S, config: ReceiverConfig) -> Self {
        Self {
            store,
            inbox: NoInbox,
            verifier: Arc::new(Refreshing::fixed(config.verifier.clone())),
            config,
        }
    }
}

#[cfg(test)]
impl<I> Receiver<shared::test_support::MemoryTaskStore, I> {
    /// Whether nothing was written (the tables' checks).
    pub fn store_is_empty(&self) -> bool {
        self.store.is_empty()
    }
}

impl<S: TaskStore, I: Inbox> Receiver<S, I> {
    /// Verifies with `verifier` (kept fresh from the callback secret) instead of the
    /// configuration's fixed one.
    pub fn with_verifier(mut self, verifier: Arc<Refreshing<Verifier>>) -> Self {
        self.verifier = verifier;
        self
    }

    /// Spills callbacks to `inbox` when the table cannot take them.
    pub fn with_inbox<J: Inbox>(self, inbox: J) -> Receiver<S, J> {
        Receiver {
            store: self.store,
            inbox,
            verifier: self.verifier,
            config: self.config,
        }
    }

    /// Handles one request. Always answers: errors become their HTTP response at the edge.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        let started = Instant::now();
        serve(request, |request| async move {
            let accepted = match self.receive(&request, Timestamp::now()).await {
                Ok(accepted) => accepted,
                Err(refused) => {
                    let answer = if refused.status().is_server_error() {
                        Answered::Unavailable
                    } else {
                        Answered::Rejected(refused.code())
                    };
                    metrics::callback_answered(answer, started.elapsed());
                    return Err(refused);
                }
            };
            metrics::callback_accepted(accepted.verified.as_str(), accepted.upstream_code);
            metrics::callback_answered(
                match &accepted.kept {
                    Kept::Recorded(Recorded::Duplicate { .. }) => Answered::Duplicate,
                    Kept::Recorded(_) => Answered::Received,
                    Kept::Spilled(_) => Answered::Spilled,
                },
                started.elapsed(),
            );
            let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
            let status = match &accepted.kept {
                Kept::Recorded(recorded) => {
                    info!(
                        outcome = outcome_name(*recorded),
                        status = 200,
                        upstream_code = accepted.upstream_code,
                        scheme = accepted.verified.as_str(),
                        callback_count = recorded.callback_count(),
                        latency_ms,
                        "callback recorded"
                    );
                    recorded.as_str()
                }
                Kept::Spilled(key) => {
                    warn!(
                        outcome = "spilled",
                        status = 200,
                        upstream_code = accepted.upstream_code,
                        scheme = accepted.verified.as_str(),
                        inbox_key = %key,
                        latency_ms,
                        "the task store could not take the callback; kept in the inbox"
                    );
                    "received"
                }
            };
            let answer = CallbackAnswer {
                status,
                task_id: accepted.task_id,
            };
            Ok::<_, ReceiveError>(json_response(StatusCode::OK, &answer))
        })
        .await
    }

    async fn receive(&self, request: &Request, now: Timestamp) -> Result<Accepted, ReceiveError> {
        let body: &[u8] = request.body().as_ref();
        // The path, never the query: that is where the token travels.
        debug!(method = %request.method(), path = request.uri().path(), body_bytes = body.len(), "callback arrived");
        MethodNotAllowed::check(request.method(), Method::POST)?;
        check_json_body(request.headers(), body, self.config.max_body_bytes)?;

        let tokens = request
            .query_string_parameters_ref()
            .and_then(|q| q.all("token"))
            .unwrap_or_default();
        let verified = self.verifier.current_refreshing().verify(
            &CallbackRequest {
                tokens: &tokens,
                headers: request.headers(),
                body,
            },
            now,
        )?;

        let envelope = CallbackEnvelope::parse(body, &self.config.url_policy)?;
        tracing::Span::current().record("task_id", envelope.task_id.as_str());

        let recorded = within_deadline(
            self.config.store_deadline,
            record_callback(&self.store, &envelope, now, self.config.task_ttl),
        )
        .await;
        let kept = match recorded {
            Ok(recorded) => Kept::Recorded(recorded),
            Err(unavailable) => {
                self.spill(&envelope, verified, body, now, unavailable)
                    .await?
            }
        };
        Ok(Accepted {
            upstream_code: envelope.code(),
            task_id: envelope.task_id,
            kept,
            verified,
        })
    }

    /// The table did not take the write: keep the verified callback in the inbox, or
    /// answer 503 (never 200 without a durable copy).
    async fn spill(
        &self,
        envelope: &CallbackEnvelope,
        verified: Verified,
        body: &[u8],
        now: Timestamp,
        cause: Unavailable,
    ) -> Result<Kept, ReceiveError> {
        let spilled = Spilled {
            task_id: envelope.task_id.clone(),
            received_at: now,
            scheme: verified.as_str().to_owned(),
            body: body.to_vec(),
        };
        match tokio::time::timeout(self.config.spill_deadline, self.inbox.put(&spilled)).await {
            Ok(Ok(key)) => {
                warn!(error = %cause, "task store unavailable; spilling the callback");
                Ok(Kept::Spilled(key))
            }
            Ok(Err(e)) => {
                error!(error = %e, store_error = %cause, "could not spill the callback either");
                Err(cause.into())
            }
            Err(_) => {
                error!(store_error = %cause, "the spill did not finish in time either");
                Err(cause.into())
            }
        }
    }
}

fn outcome_name(recorded: Recorded) -> &'static str {
    match recorded {
        Recorded::Created { .. } => "created",
        Recorded::Duplicate { .. } => "duplicate",
        Recorded::Revived { .. } => "revived",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use lambda_http::http::header::CONTENT_TYPE;
    use serde_json::{Value, json};
    use shared::TaskStatus;
    use shared::domain::verify::{
        UPSTREAM_SIGNATURE_HEADER, UPSTREAM_TIMESTAMP_HEADER, upstream_signature,
    };
    use shared::lambda::config::Env;
    use shared::test_support::fixtures::APIGW_V2_CALLBACK as FIXTURE;
    use shared::test_support::{MemoryInbox, MemoryTaskStore};
    const TOKEN: &str = "test-token-0123456789abcdef";
    const UPSTREAM_SECRET: &str = "upstream-secret-0123456789";
    const TASK: &str = "taskId_774b9aa0422f";

    fn config(extra: &[(&str, &str)]) -> ReceiverConfig {
        let mut pairs = vec![
            ("TABLE_NAME", "tasks"),
            ("CALLBACK_TOKENS", TOKEN),
            ("UPSTREAM_HMAC_SECRETS", UPSTREAM_SECRET),
        ];
        pairs.extend_from_slice(extra);
        ReceiverConfig::from_env(&Env::from_pairs(pairs)).unwrap()
    }

    fn receiver() -> Receiver<MemoryTaskStore> {
        Receiver::new(MemoryTaskStore::default(), config(&[]))
    }

    /// The real-shaped fixture, edited.
    fn event(edit: impl FnOnce(&mut Value)) -> Request {
        let mut v: Value = serde_json::from_str(FIXTURE).unwrap();
        edit(&mut v);
        lambda_http::request::from_str(&v.to_string()).unwrap()
    }

    fn with_body(body: Value) -> Request {
        event(|v| v["body"] = Value::String(body.to_string()))
    }

    fn callback(code: u16, url: Option<&str>) -> Value {
        json!({"code": code, "msg": "m", "data": {"task_id": TASK, "video_url": url}})
    }

    fn read(response: &Response<Body>) -> Value {
        serde_json::from_slice(response.body().as_ref()).unwrap()
    }

    fn task_id() -> TaskId {
        TaskId::parse(TASK).unwrap()
    }

    #[tokio::test]
    async fn records_a_new_task_and_answers_received() {
        let r = receiver();
        let response = r.handle(event(|_| {})).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(
            read(&response),
            json!({"status": "received", "task_id": TASK})
        );
        let task = r.store.snapshot(&task_id()).unwrap();
        assert_eq!(task.status, TaskStatus::Received);
        assert_eq!(
            task.video_url.unwrap().as_str(),
            "https://example.com/videos/video_847715e66259.mp4"
        );
    }

    #[tokio::test]
    async fn repeats_are_duplicates() {
        let r = receiver();
        r.handle(event(|_| {})).await;
        let response = r.handle(event(|_| {})).await;
        assert_eq!(
            (response.status().as_u16(), read(&response)),
            (200, json!({"status": "duplicate", "task_id": TASK}))
        );
        assert_eq!(r.store.snapshot(&task_id()).unwrap().callback_count, 2);
    }

    #[tokio::test]
    async fn failure_then_success_revives() {
        let r = receiver();
        let response = r.handle(with_body(callback(451, None))).await;
        assert_eq!(read(&response)["status"], "received");
        assert_eq!(
            r.store.snapshot(&task_id()).unwrap().status,
            TaskStatus::Failed
        );
        let response = r
            .handle(with_body(callback(
                200,
                Some("https://cdn.example/late.mp4"),
            )))
            .await;
        assert_eq!(read(&response)["status"], "received");
        let task = r.store.snapshot(&task_id()).unwrap();
        assert_eq!(
            (task.status, task.callback_count),
            (TaskStatus::Received, 2)
        );
    }

    #[tokio::test]
    async fn accepts_the_upstream_signature_without_a_token() {
        let r = receiver();
        let now = Timestamp::now().as_secs();
        let signature = upstream_signature(UPSTREAM_SECRET.as_bytes(), TASK, now);
        let request = event(|v| {
            v["rawQueryString"] = "".into();
            v["queryStringParameters"] = json!({});
            v["headers"][UPSTREAM_TIMESTAMP_HEADER] = now.to_string().into();
            v["headers"][UPSTREAM_SIGNATURE_HEADER] = signature.into();
        });
        assert_eq!(r.handle(request).await.status(), 200);
    }

    #[tokio::test]
    async fn base64_bodies_and_charset_parameters_are_fine() {
        use base64::Engine as _;
        let r = receiver();
        let body = callback(200, Some("https://cdn.example/v.mp4")).to_string();
        let request = event(|v| {
            v["body"] = base64::engine::general_purpose::STANDARD
                .encode(&body)
                .into();
            v["isBase64Encoded"] = true.into();
            v["headers"]["content-type"] = "Application/JSON; charset=utf-8".into();
        });
        assert_eq!(r.handle(request).await.status(), 200);
    }

    async fn assert_refused(
        r: &Receiver<MemoryTaskStore>,
        request: Request,
        status: u16,
        code: &str,
    ) -> Response<Body> {
        let response = r.handle(request).await;
        assert_eq!(response.status().as_u16(), status, "{:?}", read(&response));
        assert_eq!(read(&response)["error"], code);
        assert!(r.store.is_empty(), "nothing may be written on a {status}");
        response
    }

    #[tokio::test]
    async fn refusals_have_status_code_and_write_nothing() {
        let r = receiver();
        let response = assert_refused(
            &r,
            event(|v| v["requestContext"]["http"]["method"] = "GET".into()),
            405,
            "method_not_allowed",
        )
        .await;
        assert_eq!(response.headers()["allow"], "POST");
        assert_refused(
            &r,
            event(|v| v["headers"]["content-type"] = "text/plain".into()),
            415,
            "unsupported_media_type",
        )
        .await;
        assert_refused(
            &r,
            event(|v| {
                v["headers"].as_object_mut().unwrap().remove("content-type");
            }),
            415,
            "unsupported_media_type",
        )
        .await;
        let huge = json!({"code": 200, "data": {"task_id": TASK, "video_url": "https://cdn.example/v.mp4"}, "pad": "x".repeat(70_000)});
        assert_refused(&r, with_body(huge), 413, "payload_too_large").await;

        let response = assert_refused(
            &r,
            event(|v| {
                v["rawQueryString"] = "token=test-token-0123456789abcdeX".into();
                v["queryStringParameters"] = json!({"token": "test-token-0123456789abcdeX"});
            }),
            401,
            "unauthorized",
        )
        .await;
        assert_eq!(
            read(&response)["message"],
            "the request could not be verified"
        );
        assert_refused(
            &r,
            event(|v| {
                v["rawQueryString"] = "".into();
                v["queryStringParameters"] = json!({});
            }),
            401,
            "unauthorized",
        )
        .await;

        assert_refused(
            &r,
            event(|v| v["body"] = "{oops".into()),
            400,
            "invalid_json",
        )
        .await;
        assert_refused(&r, with_body(callback(200, None)), 400, "missing_video_url").await;
        assert_refused(
            &r,
            with_body(callback(200, Some("http://cdn.example/v.mp4"))),
            400,
            "invalid_video_url",
        )
        .await;
        assert_refused(&r, with_body(callback(302, None)), 400, "unsupported_code").await;
        assert_refused(&r, with_body(json!({"code": 200, "data": {"task_id": "../etc", "video_url": "https://c.example/v"}})), 400, "invalid_task_id").await;
    }

    #[tokio::test]
    async fn an_unavailable_store_is_a_503_with_a_generic_body() {
        let r = receiver();
        r.store.set_unavailable(true);
        let response = r.handle(event(|_| {})).await;
        assert_eq!(response.status(), 503);
        assert_eq!(
            read(&response),
            json!({"error": "unavailable", "message": "temporarily unavailable; retry later"})
        );
    }

    #[tokio::test]
    async fn a_slow_store_is_a_503_at_the_deadline_not_a_hang() {
        // A store that never answers in time.
        let stalled = MemoryTaskStore::default();
        stalled.delay_calls(Duration::from_secs(30));
        let r = Receiver::new(stalled, config(&[("STORE_DEADLINE_MS", "100")]));
        let started = Instant::now();
        let response = r.handle(event(|_| {})).await;
        assert_eq!(response.status(), 503);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn an_unavailable_store_spills_to_the_inbox_and_answers_200() {
        let store = MemoryTaskStore::default();
        store.set_unavailable(true);
        let r = Receiver::new(store, config(&[])).with_inbox(MemoryInbox::default());
        let response = r.handle(event(|_| {})).await;
        assert_eq!(
            (response.status().as_u16(), read(&response)),
            (200, json!({"status": "received", "task_id": TASK}))
        );
        assert!(r.store.is_empty(), "nothing in the table…");
        assert_eq!(r.inbox.len(), 1, "…but a durable copy in the inbox");
        let page = r.inbox.list(10, None).await.unwrap();
        let spilled = r.inbox.get(&page.keys[0]).await.unwrap().unwrap();
        assert_eq!(spilled.task_id.as_str(), TASK);
        assert_eq!(spilled.scheme, "token");
        let fixture: Value = serde_json::from_str(FIXTURE).unwrap();
        assert_eq!(spilled.body, fixture["body"].as_str().unwrap().as_bytes());
    }

    #[tokio::test]
    async fn a_slow_store_spills_too_and_a_failing_inbox_is_a_503() {
        let stalled = MemoryTaskStore::default();
        stalled.delay_calls(Duration::from_secs(30));
        let r = Receiver::new(stalled, config(&[("STORE_DEADLINE_MS", "100")]))
            .with_inbox(MemoryInbox::default());
        assert_eq!(r.handle(event(|_| {})).await.status(), 200);
        assert_eq!(r.inbox.len(), 1);

        let store = MemoryTaskStore::default();
        store.set_unavailable(true);
        let inbox = MemoryInbox::default();
        inbox.set_failing(true);
        let r = Receiver::new(store, config(&[])).with_inbox(inbox);
        let response = r.handle(event(|_| {})).await;
        assert_eq!(response.status(), 503, "never 200 without a durable copy");
        assert_eq!(read(&response)["error"], "unavailable");
        assert!(r.inbox.is_empty() && r.store.is_empty());
    }

    #[tokio::test]
    async fn refusals_are_never_spilled() {
        let store = MemoryTaskStore::default();
        store.set_unavailable(true);
        let r = Receiver::new(store, config(&[])).with_inbox(MemoryInbox::default());
        let response = r
            .handle(event(|v| {
                v["rawQueryString"] = "".into();
                v["queryStringParameters"] = json!({});
            }))
            .await;
        assert_eq!(response.status(), 401);
        assert_eq!(r.handle(with_body(callback(200, None))).await.status(), 400);
        assert!(r.inbox.is_empty());
    }

    /// Every answer is counted once, by outcome, with its time; accepted ones also by
    /// scheme and upstream code; refusals by their error code; spills and 5xx apart.
    #[test]
    fn each_answer_is_counted_by_outcome_and_code() {
        use shared::metrics::*;
        use shared::test_support::CapturedMetrics;

        let ((), m) = CapturedMetrics::run(async {
            let r = receiver();
            r.handle(event(|_| {})).await;
            r.handle(event(|_| {})).await;
            r.handle(event(|v| {
                v["rawQueryString"] = "token=wrong-token-0123456789".into()
            }))
            .await;
            r.handle(with_body(callback(200, None))).await;
            r.handle(with_body(
                json!({"code": 451, "msg": "m", "data": {"task_id": "t2", "video_url": null}}),
            ))
            .await;

            let store = MemoryTaskStore::default();
            store.set_unavailable(true);
            let spilling = Receiver::new(store, config(&[])).with_inbox(MemoryInbox::default());
            spilling.handle(event(|_| {})).await;
            let store = MemoryTaskStore::default();
            store.set_unavailable(true);
            let inbox = MemoryInbox::default();
            inbox.set_failing(true);
            let failing = Receiver::new(store, config(&[])).with_inbox(inbox);
            failing.handle(event(|_| {})).await;
        });

        let outcome = |o| m.counter(CALLBACKS, &[(OUTCOME, o)]);
        assert_eq!(
            [
                outcome("received"),
                outcome("duplicate"),
                outcome("rejected"),
                outcome("spilled"),
                outcome("unavailable")
            ],
            [2, 1, 2, 1, 1]
        );
        assert_eq!(m.counter(CALLBACK_REJECTIONS, &[(CODE, "unauthorized")]), 1);
        assert_eq!(
            m.counted()
                .iter()
                .filter(|(name, _)| name == CALLBACK_REJECTIONS)
                .count(),
            2,
            "two distinct codes: {:?}",
            m.counted()
        );
        assert_eq!(m.counter(INBOX_SPILLS, &[]), 1);
        assert_eq!(m.counter(CALLBACK_SERVER_ERRORS, &[]), 1);
        // Accepted: two recorded (one a 451), one duplicate, one spilled.
        assert_eq!(m.counter(CALLBACKS_BY_SCHEME, &[(SCHEME, "token")]), 4);
        assert_eq!(
            m.counter(CALLBACKS_BY_UPSTREAM_CODE, &[(UPSTREAM_CODE, "200")]),
            3
        );
        assert_eq!(
            m.counter(CALLBACKS_BY_UPSTREAM_CODE, &[(UPSTREAM_CODE, "451")]),
            1
        );
        let times = m.histogram(CALLBACK_ANSWER_TIME, &[]);
        assert_eq!(times.len(), 7);
        assert!(
            times.iter().all(|ms| *ms >= 0.0 && *ms < 5_000.0),
            "{times:?}"
        );
    }

    /// Hole 7: a body limit above DynamoDB's item limit once made a large `msg` a 503 on
    /// every retry. The stored message is capped; the callback is recorded.
    #[tokio::test]
    async fn a_one_mebibyte_message_is_recorded_with_the_message_capped() {
        let r = Receiver::new(
            MemoryTaskStore::default(),
            config(&[("MAX_BODY_BYTES", "2097152")]),
        );
        let body = json!({"code": 500, "msg": "x".repeat(1 << 20), "data": {"task_id": TASK}});
        assert_eq!(r.handle(with_body(body)).await.status(), 200);
        let task = r.store.snapshot(&task_id()).unwrap();
        assert_eq!(
            task.upstream_msg.len(),
            shared::domain::task::MAX_STORED_TEXT
        );
        let item = r.store.item(&task_id()).unwrap();
        assert!(
            serde_json::to_vec(&item).unwrap().len() < 8 * 1024,
            "far below 400 KB"
        );
    }

    /// Hole 3: the URL limit is on what is stored. 1 000 spaces pass a raw-length check
    /// but are 3 000 characters once encoded: refused up front, nothing written (it was
    /// once answered 200, then could never be read back).
    #[tokio::test]
    async fn a_url_too_long_once_encoded_is_refused_up_front() {
        let r = receiver();
        let url = format!("https://cdn.example/{}.mp4", " ".repeat(1000));
        let response = r.handle(with_body(callback(200, Some(&url)))).await;
        assert_eq!(
            (
                response.status().as_u16(),
                read(&response)["error"].as_str()
            ),
            (400, Some("invalid_video_url"))
        );
        assert!(r.store.is_empty());
        // Just under the limit once encoded: accepted, and read back.
        let fits = format!("https://cdn.example/{}.mp4", " ".repeat(600));
        assert_eq!(
            r.handle(with_body(callback(200, Some(&fits))))
                .await
                .status(),
            200
        );
        assert!(r.store.snapshot(&task_id()).is_some());
    }

    #[tokio::test]
    async fn unauthenticated_mode_accepts_without_credentials() {
        let config = ReceiverConfig::from_env(&Env::from_pairs([
            ("TABLE_NAME", "t"),
            ("CALLBACK_AUTH", "none"),
        ]))
        .unwrap();
        let r = Receiver::new(MemoryTaskStore::default(), config);
        let request = event(|v| {
            v["rawQueryString"] = "".into();
            v["queryStringParameters"] = json!({});
        });
        assert_eq!(r.handle(request).await.status(), 200);
    }
}
