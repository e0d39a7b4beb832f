//! The reconciler against the local DynamoDB and S3 servers, in process: it reads the
//! real sparse index, replays a real S3 inbox, polls a simulated upstream over HTTP, and
//! its re-drives feed a real ingest.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

use std::time::Duration;

use integration_tests::upstream_api::UpstreamApi;
use integration_tests::video_server::{Video, VideoServer};
use integration_tests::{Stack, unique_task_id};
use reconciler::config::ReconcilerConfig;
use reconciler::reconcile::Reconciler;
use shared::domain::task::{ClaimDecision, DEFAULT_TASK_TTL, RecordSource, Task, TaskStatus};
use shared::inbox::s3::S3Inbox;
use shared::inbox::{Inbox, NoInbox, Spilled};
use shared::lambda::config::Env;
use shared::store::TaskStore;
use shared::store::dynamodb::DynamoTaskStore;
use shared::test_support::{static_s3_client, stream_event, success};
use shared::upstream::NoUpstream;
use shared::upstream::http::HttpUpstream;
use shared::{TaskId, Timestamp};

fn config(stack: &Stack) -> ReconcilerConfig {
    ReconcilerConfig::from_env(&Env::from_pairs([
        ("TABLE_NAME", stack.direct_table()),
        ("RECEIVED_REDRIVE_SECS", "1"),
        ("POLL_GRACE_SECS", "0"),
        ("POLL_MIN_INTERVAL_SECS", "1"),
        ("MAX_TASKS_PER_RUN", "100000"),
        ("VIDEO_URL_ALLOW_HTTP", "true"),
    ]))
    .unwrap()
}

fn reconciler<I: Inbox, U: shared::upstream::UpstreamApi>(
    stack: &Stack,
    inbox: I,
    upstream: U,
) -> Reconciler<DynamoTaskStore, I, U> {
    Reconciler {
        store: stack.direct_task_store(),
        inbox,
        upstream,
        config: config(stack),
    }
}

async fn current(stack: &Stack, id: &TaskId) -> Task {
    stack.direct_task_store().get(id).await.unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_invocations_task_is_redriven_and_then_stored() {
    let stack = Stack::load();
    let store = stack.direct_task_store();
    let server = VideoServer::start(0).await;
    let video = Video::new(6 << 20, 31);
    let url = server.serve("/dead.mp4", video);
    let task = Task::from_callback(
        &success(&unique_task_id("dead"), &url),
        Timestamp::now(),
        DEFAULT_TASK_TTL,
    );
    store.create(&task).await.unwrap();
    // An invocation claims it with a one-second lease, then dies.
    let now = Timestamp::now();
    let ClaimDecision::Claim(claim) = task.decide_claim(
        "dead-invocation",
        now,
        now.saturating_add(Duration::from_secs(1)),
        5,
        DEFAULT_TASK_TTL,
    ) else {
        panic!("claimable")
    };
    store.apply(&task.task_id, &claim).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;

    // (The other tests here run reconcilers on the same table at the same time: whichever
    // gets there first re-drives it, and the others' conditional writes lose.)
    reconciler(&stack, NoInbox, NoUpstream)
        .run(Timestamp::now())
        .await;
    let redriven = current(&stack, &task.task_id).await;
    assert_eq!(
        (redriven.status, redriven.lease_owner.as_deref()),
        (TaskStatus::Received, None)
    );

    // The stream hands the re-driven task to ingest (here: delivered by hand).
    let config = ingest::config::IngestConfig::from_env(&Env::from_pairs([
        ("TABLE_NAME", stack.direct_table()),
        ("BUCKET_NAME", stack.bucket()),
        ("VIDEO_URL_ALLOW_HTTP", "true"),
        ("VIDEO_URL_ALLOW_LOOPBACK", "true"),
        ("PART_SIZE_MIB", "5"),
    ]))
    .unwrap();
    let sink = shared::sink::s3::S3VideoSink::new(stack.s3(), stack.bucket());
    let ingest =
        ingest::handler::Ingest::over_http(stack.direct_task_store(), sink, config).unwrap();
    let event: aws_lambda_events::event::dynamodb::Event =
        serde_json::from_value(stream_event(&[redriven.to_item().unwrap()])).unwrap();
    let mut context = lambda_runtime::Context::default();
    context.request_id = "inv-after".into();
    context.deadline = u64::try_from(Timestamp::now().as_millis()).unwrap() + 60_000;
    ingest
        .handle(lambda_runtime::LambdaEvent::new(event, context))
        .await
        .unwrap();
    let stored = current(&stack, &task.task_id).await;
    assert_eq!(
        stored.status,
        TaskStatus::Stored,
        "{:?}",
        stored.failure_detail
    );
    assert_eq!(stored.video.unwrap().sha256, video.sha256());
    assert_eq!((stored.attempts, stored.redrives), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spilled_callbacks_are_replayed_from_an_s3_inbox() {
    let stack = Stack::load();
    // Its own bucket: the stack's scheduled reconciler replays the stack's inbox.
    let bucket = format!("inbox-{:08x}", fastrand::u32(..));
    let s3 = static_s3_client(
        Some(stack.var("AWS_ENDPOINT_URL_S3")),
        stack.var("AWS_ACCESS_KEY_ID"),
        stack.var("AWS_SECRET_ACCESS_KEY"),
    );
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let inbox = S3Inbox::new(s3.clone(), &bucket);
    let id = unique_task_id("spilled");
    let body =
        format!(r#"{{"code":451,"msg":"source download failed","data":{{"task_id":"{id}"}}}}"#);
    let received_at = Timestamp::now();
    for _ in 0..2 {
        inbox
            .put(&Spilled {
                task_id: TaskId::parse(&id).unwrap(),
                received_at,
                scheme: "token".into(),
                body: body.clone().into_bytes(),
            })
            .await
            .unwrap();
    }
    assert_eq!(inbox.list(10, None).await.unwrap().keys.len(), 2);
    let report = reconciler(&stack, inbox.clone(), NoUpstream)
        .run(Timestamp::now())
        .await;
    assert_eq!(report.replayed, 2, "{report:?}");
    assert!(
        inbox.list(10, None).await.unwrap().keys.is_empty(),
        "deleted once recorded"
    );
    let task = current(&stack, &TaskId::parse(&id).unwrap()).await;
    assert_eq!(
        (
            task.status,
            task.upstream_code,
            task.callback_count,
            task.received_at
        ),
        (TaskStatus::Failed, 451, 2, received_at)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expected_task_is_found_by_polling_the_upstream_over_http() {
    let stack = Stack::load();
    let api = UpstreamApi::start(0, "test-key-0123456789").await.unwrap();
    let upstream = HttpUpstream::new(
        url::Url::parse(&api.base_url()).unwrap(),
        shared::domain::secret::Secret::new("test-key-0123456789"),
        true,
    )
    .unwrap();
    let store = stack.direct_task_store();
    let (late, failed) = (unique_task_id("poll-late"), unique_task_id("poll-failed"));
    for id in [&late, &failed] {
        store
            .create(&Task::expected(
                TaskId::parse(id).unwrap(),
                Timestamp::now(),
                DEFAULT_TASK_TTL,
            ))
            .await
            .unwrap();
    }
    api.fail(&failed, 451, "source download failed");
    let r = reconciler(&stack, NoInbox, upstream);
    r.run(Timestamp::now()).await;
    let pending = current(&stack, &TaskId::parse(&late).unwrap()).await;
    assert_eq!((pending.status, pending.polls), (TaskStatus::Expected, 1));
    let gone = current(&stack, &TaskId::parse(&failed).unwrap()).await;
    assert_eq!(
        (gone.status, gone.upstream_code, gone.source),
        (TaskStatus::Failed, 451, Some(RecordSource::Poll))
    );

    api.succeed(&late, "http://127.0.0.1:9/late.mp4");
    tokio::time::sleep(Duration::from_millis(1_100)).await; // the first back-off
    r.run(Timestamp::now()).await;
    let found = current(&stack, &TaskId::parse(&late).unwrap()).await;
    assert_eq!(
        (found.status, found.source),
        (TaskStatus::Received, Some(RecordSource::Poll))
    );
    assert_eq!(
        found.video_url.unwrap().as_str(),
        "http://127.0.0.1:9/late.mp4"
    );
    assert_eq!(api.calls(&late), 2);
}
