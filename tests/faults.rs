//! Faults against the local stack, each ending with the task `stored` (the object's bytes
//! and SHA-256 equal to the source's) and no multipart upload left, and each printing how
//! long recovery took (`RECOVERY <name> <seconds>`; docs/reliability.md).
//!
//! The one that disturbs nothing else (a killed ingest process) runs in `make test`; the
//! ones that take a server down run alone, in `make test-faults` (`--ignored`,
//! one at a time).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

use std::time::{Duration, Instant};

use integration_tests::runtime_api::RuntimeApi;
use integration_tests::video_server::{Behaviour, Video, VideoServer};
use integration_tests::{Stack, eventually, repo_root, unique_task_id};
use lambda_runtime::{Context, LambdaEvent};
use reconciler::config::ReconcilerConfig;
use reconciler::reconcile::Reconciler;
use serde_json::{Value, json};
use shared::domain::task::{DEFAULT_TASK_TTL, Task, TaskStatus};
use shared::inbox::NoInbox;
use shared::lambda::aws::{CallTimeouts, dynamodb_client};
use shared::lambda::config::Env;
use shared::sink::s3::S3VideoSink;
use shared::store::TaskStore;
use shared::store::dynamodb::DynamoTaskStore;
use shared::test_support::{stream_event, success};
use shared::upstream::NoUpstream;
use shared::{TaskId, Timestamp};

const MIB: u64 = 1 << 20;

fn recovery(name: &str, since: Instant) {
    println!("RECOVERY {name} {:.1}", since.elapsed().as_secs_f64());
}

fn ingest_config(stack: &Stack, extra: &[(&str, &str)]) -> ingest::config::IngestConfig {
    let mut pairs = stack.local_ingest_env();
    pairs.extend([("LEASE_SECS", "3"), ("PROGRESS_INTERVAL_SECS", "1")]);
    pairs.extend_from_slice(extra);
    ingest::config::IngestConfig::from_env(&Env::from_pairs(pairs)).unwrap()
}

/// A store client with production's timeouts (10 s a call, 3 s an attempt), so an
/// unresponsive server fails calls instead of hanging them.
async fn production_store(stack: &Stack) -> DynamoTaskStore {
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "local"),
        ))
        .endpoint_url(stack.var("AWS_ENDPOINT_URL_DYNAMODB"))
        .build();
    let timeouts = CallTimeouts::BACKGROUND;
    DynamoTaskStore::new(dynamodb_client(&sdk, timeouts), stack.direct_table())
}

async fn deliver<S: TaskStore>(
    ingest: &ingest::handler::Ingest<S, S3VideoSink, shared::fetch::http::HttpOrigin>,
    task: &Task,
    budget: Duration,
) -> Vec<String> {
    let event: aws_lambda_events::event::dynamodb::Event =
        serde_json::from_value(stream_event(&[task.to_item().unwrap()])).unwrap();
    let mut context = Context::default();
    context.request_id = format!("inv-{:08x}", fastrand::u32(..));
    context.deadline =
        u64::try_from(Timestamp::now().as_millis()).unwrap() + budget.as_millis() as u64;
    ingest
        .handle(LambdaEvent::new(event, context))
        .await
        .unwrap()
        .batch_item_failures
        .into_iter()
        .filter_map(|f| f.item_identifier)
        .collect()
}

async fn current(stack: &Stack, id: &TaskId) -> Task {
    stack.direct_task_store().get(id).await.unwrap().unwrap()
}

async fn assert_stored(stack: &Stack, id: &TaskId, video: Video) {
    let task = current(stack, id).await;
    assert_eq!(
        task.status,
        TaskStatus::Stored,
        "{:?} {:?}",
        task.failure_reason,
        task.failure_detail
    );
    let recorded = task.video.unwrap();
    assert_eq!(
        (recorded.bytes, recorded.sha256.as_str()),
        (video.len, video.sha256().as_str())
    );
    let object = stack
        .s3()
        .get_object()
        .bucket(stack.bucket())
        .key(&recorded.key)
        .send()
        .await
        .unwrap();
    let bytes = object.body.collect().await.unwrap().into_bytes();
    assert!(
        bytes.as_ref() == video.bytes().as_slice(),
        "object bytes differ from the source"
    );
    let open = stack.open_multipart_uploads(&recorded.key).await;
    assert!(open.is_empty(), "multipart uploads left: {open:?}");
}

fn reconciler(stack: &Stack) -> Reconciler<DynamoTaskStore, NoInbox, NoUpstream> {
    let config = ReconcilerConfig::from_env(&Env::from_pairs([
        ("TABLE_NAME", stack.direct_table()),
        ("MAX_TASKS_PER_RUN", "100000"),
    ]))
    .unwrap();
    Reconciler {
        store: stack.direct_task_store(),
        inbox: NoInbox,
        upstream: NoUpstream,
        config,
    }
}

/// The pid the local stack's launcher recorded for `name` (.local/pids).
fn stack_pid(name: &str) -> String {
    let pids = std::fs::read_to_string(repo_root().join(".local/pids")).unwrap();
    pids.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{name} is not in .local/pids"))
        .to_owned()
}

fn signal(name: &str, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &stack_pid(name)])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} {name}");
}

/// A stack server frozen with SIGSTOP until this is dropped: a test that panics while
/// it is down still wakes it, so the next test does not hang on a stopped server.
struct Paused(&'static str);

impl Paused {
    fn new(name: &'static str) -> Self {
        signal(name, "-STOP");
        Self(name)
    }

    fn resume(self) {}
}

impl Drop for Paused {
    fn drop(&mut self) {
        let woke = std::process::Command::new("kill")
            .args(["-CONT", &stack_pid(self.0)])
            .status();
        if !woke.is_ok_and(|s| s.success()) && !std::thread::panicking() {
            panic!("kill -CONT {}", self.0);
        }
    }
}

/// An ingest *process* dies (kill -9) mid-download, after a part is uploaded: its task is
/// left `downloading` with an open multipart upload. Its short lease runs out, the
/// reconciler re-drives the task, the next attempt aborts the dead one's upload and
/// stores the video.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ingest_process_killed_mid_download_is_recovered() {
    let stack = Stack::load();
    let server = VideoServer::start(0).await;
    let video = Video::new(12 * MIB + 77, 71);
    let url = server.route(
        "/killed.mp4",
        Behaviour::Stall {
            video,
            after: 7 * MIB,
            pause: Duration::from_secs(60),
            times: 1,
        },
    );
    let task = Task::from_callback(
        &success(&unique_task_id("killed"), &url),
        Timestamp::now(),
        DEFAULT_TASK_TTL,
    );
    stack.direct_task_store().create(&task).await.unwrap();

    let api = RuntimeApi::start(
        stream_event(&[task.to_item().unwrap()]),
        Duration::from_secs(300),
    )
    .await
    .unwrap();
    let mut process = stack
        .function_process("ingest", &api.address())
        .env("BUCKET_NAME", stack.bucket())
        .env("VIDEO_URL_ALLOW_HTTP", "true")
        .env("VIDEO_URL_ALLOW_LOOPBACK", "true")
        .env("PART_SIZE_MIB", "5")
        .env("LEASE_SECS", "3")
        .env("PROGRESS_INTERVAL_SECS", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once a part is up and the source is stalled mid-stream.
    let key = format!("videos/{}.mp4", task.task_id);
    eventually(
        Duration::from_secs(60),
        "a part uploaded by the doomed process",
        || async {
            let t = current(&stack, &task.task_id).await;
            let uploads = stack.open_multipart_uploads(&key).await;
            (t.status == TaskStatus::Downloading
                && t.bytes_received.unwrap_or(0) >= 7 * MIB
                && !uploads.is_empty())
            .then_some(())
        },
    )
    .await;
    process.kill().unwrap();
    let _ = process.wait();
    let killed = Instant::now();
    assert_eq!(
        stack.open_multipart_uploads(&key).await.len(),
        1,
        "the dead process's upload"
    );

    // The reconciler finds the abandoned lease once it runs out.
    let redriven = eventually(Duration::from_secs(30), "the re-drive", || async {
        reconciler(&stack).run(Timestamp::now()).await;
        let t = current(&stack, &task.task_id).await;
        (t.status == TaskStatus::Received).then_some(t)
    })
    .await;
    let sink = S3VideoSink::new(stack.s3(), stack.bucket());
    let ingest = ingest::handler::Ingest::over_http(
        stack.direct_task_store(),
        sink,
        ingest_config(&stack, &[]),
    )
    .unwrap();
    assert!(
        deliver(&ingest, &redriven, Duration::from_secs(120))
            .await
            .is_empty()
    );
    recovery("ingest_killed_mid_download", killed);
    assert_stored(&stack, &task.task_id, video).await;
    assert_eq!(current(&stack, &task.task_id).await.attempts, 2);
}

/// DynamoDB stops answering just as a transfer ends (the server is paused): the outcome
/// write fails and is retried inside the invocation; once the server answers again the
/// task is `stored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "takes DynamoDB down: make test-faults"]
async fn the_outcome_write_failing_while_dynamodb_is_down_is_retried() {
    let stack = Stack::load();
    let server = VideoServer::start(0).await;
    let video = Video::new(9 * MIB + 5, 72);
    // The source pauses just before its last byte: the moment to take DynamoDB away.
    // The pause outlasts a few progress intervals (the bytes before it are written within
    // one), and is shorter than the outage, so the last byte and the outcome write both
    // land while DynamoDB is down.
    let url = server.route(
        "/last-byte.mp4",
        Behaviour::Stall {
            video,
            after: video.len - 1,
            pause: Duration::from_secs(9),
            times: 1,
        },
    );
    let store = production_store(&stack).await;
    let task = Task::from_callback(
        &success(&unique_task_id("outcome-down"), &url),
        Timestamp::now(),
        DEFAULT_TASK_TTL,
    );
    store.create(&task).await.unwrap();
    let sink = S3VideoSink::new(stack.s3(), stack.bucket());
    let ingest = ingest::handler::Ingest::over_http(
        store,
        sink,
        ingest_config(&stack, &[("LEASE_SECS", "120")]),
    )
    .unwrap();
    let run = tokio::spawn({
        let task = task.clone();
        async move { deliver(&ingest, &task, Duration::from_secs(120)).await }
    });
    eventually(
        Duration::from_secs(60),
        "the source to stall at its last byte",
        || async {
            (server.gets("/last-byte.mp4").len() == 1
                && current(&stack, &task.task_id)
                    .await
                    .bytes_received
                    .unwrap_or(0)
                    > 5 * MIB)
                .then_some(())
        },
    )
    .await;
    let paused = Paused::new("moto");
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(12)).await;
    paused.resume();
    let failures = run.await.unwrap();
    recovery("outcome_write_dynamodb_down_12s", down);
    assert!(
        failures.is_empty(),
        "recorded inside the invocation: {failures:?}"
    );
    assert_stored(&stack, &task.task_id, video).await;
}

/// The S3 server is stopped mid-upload and started again 8 s later: the failed part
/// ends the attempt (lease handed back), the stream's retry (here: a second delivery)
/// aborts what the first left and stores the video.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "takes S3 down: make test-faults"]
async fn the_s3_server_stopped_mid_upload_and_restarted() {
    let stack = Stack::load();
    let server = VideoServer::start(0).await;
    let video = Video::new(16 * MIB + 3, 73);
    let url = server.route(
        "/s3-down.mp4",
        Behaviour::Stall {
            video,
            after: 6 * MIB,
            pause: Duration::from_secs(2),
            times: 1,
        },
    );
    let task = Task::from_callback(
        &success(&unique_task_id("s3-down"), &url),
        Timestamp::now(),
        DEFAULT_TASK_TTL,
    );
    stack.direct_task_store().create(&task).await.unwrap();
    let sink = S3VideoSink::new(stack.s3(), stack.bucket());
    let ingest = ingest::handler::Ingest::over_http(
        stack.direct_task_store(),
        sink,
        ingest_config(&stack, &[("DOWNLOAD_RETRIES", "5")]),
    )
    .unwrap();
    let outage = tokio::task::spawn_blocking(|| {
        std::thread::sleep(Duration::from_millis(800));
        std::process::Command::new("python3")
            .args([
                "infra/local/stack.py",
                "restart",
                "seaweedfs",
                "--down-for",
                "8",
            ])
            .current_dir(repo_root())
            .status()
            .unwrap()
    });
    let started = Instant::now();
    let first = deliver(&ingest, &task, Duration::from_secs(120)).await;
    assert!(outage.await.unwrap().success());
    // Whatever the first attempt managed, the stream delivers again until it is stored.
    let mut failures = first;
    for _ in 0..5 {
        if failures.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = current(&stack, &task.task_id).await;
        let image = if now.status == TaskStatus::Downloading {
            task.clone()
        } else {
            now
        };
        failures = deliver(&ingest, &image, Duration::from_secs(120)).await;
    }
    recovery("s3_stopped_8s_mid_upload", started);
    assert!(failures.is_empty());
    assert_stored(&stack, &task.task_id, video).await;
}

/// DynamoDB stops answering (paused) while callbacks arrive: the receiver spills each
/// verified callback to the inbox and still answers 200; once DynamoDB is back the
/// scheduled reconciler replays them and every video is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "takes DynamoDB down: make test-faults"]
async fn callbacks_during_a_dynamodb_outage_are_spilled_then_replayed() {
    let stack = Stack::load();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let server = VideoServer::start(0).await;
    let videos: Vec<(String, Video)> = (0..5)
        .map(|i| {
            (
                unique_task_id(&format!("spill-{i}")),
                Video::new(MIB + i, 80 + i),
            )
        })
        .collect();
    let urls: Vec<String> = videos
        .iter()
        .map(|(id, v)| server.serve(&format!("/{id}.mp4"), *v))
        .collect();
    let paused = Paused::new("moto");
    let down = Instant::now();
    let mut answers = Vec::new();
    for ((id, _), url) in videos.iter().zip(&urls) {
        let body = json!({"code": 200, "msg": "ok", "data": {"task_id": id, "video_url": url}});
        let started = Instant::now();
        let response = stack.post_callback(&client, &body).await;
        answers.push((response.status().as_u16(), started.elapsed()));
    }
    paused.resume();
    let back = Instant::now();
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    assert!(
        answers.iter().all(|(_, t)| *t < Duration::from_secs(15)),
        "inside the sender's 15 s: {answers:?}"
    );
    println!(
        "SPILL answers while down: {answers:?} ({:.1}s down)",
        down.elapsed().as_secs_f64()
    );
    for (id, video) in &videos {
        let status_url = format!("{}/{id}", stack.var("STATUS_URL"));
        let body: Value = eventually(
            Duration::from_secs(120),
            "the replayed task to be stored",
            || async {
                let r = client.get(&status_url).send().await.ok()?;
                let v: Value = r.json().await.ok()?;
                (v["status"] == "stored").then_some(v)
            },
        )
        .await;
        assert_eq!(body["video"]["sha256"], video.sha256());
    }
    recovery("spill_then_replay_5_callbacks_stored", back);
    // A write that timed out may still have landed when the server came back; the
    // replay then counts as a duplicate. Either way the inbox drains.
    eventually(Duration::from_secs(60), "the inbox to drain", || async {
        let listed = stack
            .s3()
            .list_objects_v2()
            .bucket(stack.bucket())
            .prefix("inbox/")
            .send()
            .await
            .ok()?;
        (listed.key_count() == Some(0)).then_some(())
    })
    .await;
    recovery("spill_then_replay_5_callbacks_inbox_drained", back);
}
