//! Ingest against the local S3 (SeaweedFS) and DynamoDB (moto) servers, with a video
//! server that misbehaves on purpose. Each test drives the real handler with a
//! real-shaped stream event, then checks the bucket, the task and the source's log.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

use std::time::Duration;

use aws_lambda_events::event::dynamodb::Event;
use integration_tests::video_server::{Behaviour, Video, VideoServer};
use integration_tests::{Stack, unique_task_id};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::Value;
use shared::Timestamp;
use shared::domain::task::{DEFAULT_TASK_TTL, FailureReason, Task, TaskStatus};
use shared::fetch::http::HttpOrigin;
use shared::lambda::config::Env;
use shared::sink::s3::S3VideoSink;
use shared::store::TaskStore;
use shared::store::dynamodb::DynamoTaskStore;
use shared::test_support::{stream_event, success};

use ingest::config::IngestConfig;
use ingest::handler::Ingest;

const MIB: u64 = 1 << 20;

type LocalIngest = Ingest<DynamoTaskStore, S3VideoSink, HttpOrigin>;

fn ingest(stack: &Stack, extra: &[(&str, &str)]) -> LocalIngest {
    let mut pairs = stack.local_ingest_env();
    pairs.extend([
        ("UPLOAD_CONCURRENCY", "3"),
        ("DOWNLOAD_RETRIES", "3"),
        ("READ_IDLE_TIMEOUT_SECS", "2"),
        ("MAX_ATTEMPTS", "3"),
    ]);
    pairs.extend_from_slice(extra);
    let config = IngestConfig::from_env(&Env::from_pairs(pairs)).unwrap();
    let sink = S3VideoSink::new(stack.s3(), stack.bucket());
    Ingest::over_http(stack.direct_task_store(), sink, config).unwrap()
}

/// Records a `received` task for `url` and returns the stream event announcing it.
async fn received_task(stack: &Stack, prefix: &str, url: &str) -> (Task, Value) {
    let envelope = success(&unique_task_id(prefix), url);
    let task = Task::from_callback(&envelope, Timestamp::now(), DEFAULT_TASK_TTL);
    stack.direct_task_store().create(&task).await.unwrap();
    let event = stream_event(&[task.to_item().unwrap()]);
    (task, event)
}

async fn deliver(ingest: &LocalIngest, event: &Value, request_id: &str) -> Vec<String> {
    let mut context = Context::default();
    context.request_id = request_id.into();
    context.deadline = u64::try_from(Timestamp::now().as_millis()).unwrap() + 120_000;
    let event: Event = serde_json::from_value(event.clone()).unwrap();
    let response = ingest
        .handle(LambdaEvent::new(event, context))
        .await
        .unwrap();
    response
        .batch_item_failures
        .into_iter()
        .filter_map(|f| f.item_identifier)
        .collect()
}

async fn current(stack: &Stack, task: &Task) -> Task {
    stack
        .direct_task_store()
        .get(&task.task_id)
        .await
        .unwrap()
        .unwrap()
}

/// The stored object: its bytes, user metadata and content type, with its tags merged
/// into the metadata map (the commit writes `sha256` and `bytes` as tags). Also checks
/// that S3 holds the whole-object CRC64NVME of exactly these bytes.
async fn object(
    stack: &Stack,
    key: &str,
) -> (
    Vec<u8>,
    std::collections::HashMap<String, String>,
    Option<String>,
) {
    let out = stack
        .s3()
        .get_object()
        .bucket(stack.bucket())
        .key(key)
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .expect("object stored");
    let mut metadata = out.metadata().cloned().unwrap_or_default();
    let content_type = out.content_type().map(str::to_owned);
    let stored_crc = out.checksum_crc64_nvme().map(str::to_owned);
    let bytes = out.body.collect().await.unwrap().into_bytes().to_vec();
    let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, &bytes);
    use base64::Engine as _;
    let expected = base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes());
    assert_eq!(
        stored_crc.as_deref(),
        Some(expected.as_str()),
        "S3's CRC64NVME of {key}"
    );
    let tags = stack
        .s3()
        .get_object_tagging()
        .bucket(stack.bucket())
        .key(key)
        .send()
        .await
        .expect("object tags");
    for tag in tags.tag_set() {
        metadata.insert(tag.key().to_owned(), tag.value().to_owned());
    }
    (bytes, metadata, content_type)
}

async fn assert_no_leftovers(stack: &Stack, task: &Task) {
    let uploads = stack
        .open_multipart_uploads(&format!("videos/{}", task.task_id))
        .await;
    assert!(
        uploads.is_empty(),
        "multipart uploads left behind: {uploads:?}"
    );
}

async fn assert_stored(stack: &Stack, task: &Task, video: Video) {
    let after = current(stack, task).await;
    assert_eq!(
        after.status,
        TaskStatus::Stored,
        "{:?} {:?}",
        after.failure_reason,
        after.failure_detail
    );
    let stored = after.video.expect("video recorded");
    assert_eq!(
        (stored.bytes, stored.sha256.as_str()),
        (video.len, video.sha256().as_str())
    );
    assert_eq!(stored.key, format!("videos/{}.mp4", task.task_id));
    let (bytes, metadata, content_type) = object(stack, &stored.key).await;
    assert_eq!(bytes.len() as u64, video.len);
    assert!(
        bytes == video.bytes(),
        "object bytes differ from the source"
    );
    assert_eq!(content_type.as_deref(), Some("video/mp4"));
    assert_eq!(
        metadata.get("task-id").map(String::as_str),
        Some(task.task_id.as_str())
    );
    assert_eq!(metadata.get("sha256"), Some(&video.sha256()));
    assert_no_leftovers(stack, task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_multipart_video_arrives_byte_for_byte() {
    let stack = Stack::load();
    let server = VideoServer::start(0).await;
    let video = Video::new(23 * MIB + 12_345, 1);
    let url = server.serve("/big.mp4", video);
    let (task, event) = received_task(&stack, "multipart", &url).await;
    assert!(
        deliver(&ingest(&stack, &[]), &event, "inv-1")
            .await
            .is_empty()
    );
    assert_stored(&stack, &task, video).await;
    assert_eq!(server.gets("/big.mp4").len(), 1);
    assert_eq!(current(&stack, &task).await.attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_small_video_is_one_put() {
    let stack = Stack::load();
    let server = VideoServer::start(0).await;
    let video = Video::new(MIB + 7, 2);
    let url = server.route(
        "/small.mp4",
        Behaviour::Serve {
            video,
            content_type: "application/octet-stream",
        },
    );
    let (task, event) = received_task(&stack, "small", &url).await;
    assert!(
        deliver(&ingest(&stack, &[]), &event, "inv-1")
            .await
            .is_empty()
    );
    assert_stored(&stack, &task, video).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_connection_resumes_with_one_ranged_get() {
    let stack = Stack::load();
    let server = VideoServer::start(0).await;
    let video = Video::new(17 * MIB, 3);
    let cut = fastrand::u64(1..video.len);
    let url = server.route(
        "/cut.mp4",
        Behaviour::CutAfter {
            video,
            after: cut,
            times: 1,
        },
    );
    let (task, event) = received_task(&stack, "cut", &url).await;
    assert!(
        deliver(&ingest(&stack, &[]), &event, "inv-1")
            .await
            .is_empty()
    );
    assert_stored(&stack, &task, video).await;
    let gets = server.gets("/cut.mp4");
    assert_eq!(
        gets.len(),
        2,
        "one GET plus one ranged GET (cut at {cut}): {gets:?}"
    );
    assert_eq!(gets[0].range, None);
    assert_eq!(
        gets[1].range.as_deref(),
        Some(format!("bytes={cut}-").as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_source_is_resumed_after_the_idle_timeout() {
    let stack = Stack::load();
    let server = VideoServer::start(0).await;
    let video = Video::new(7 * MIB, 4);
    let url = server.route(
        "/stall.mp4",
        Behaviour::Stall {
            video,
            after: 3 * MIB,
            pause: Duration::from_secs(30),
            times: 1,
        },
    );
    let (task, event) = received_task(&stack, "stall", &url).await;
    assert!(
        deliver(&ingest(&stack, &[]), &event, "inv-1")
            .await
            .is_empty()
    );
    assert_stored(&stack, &task, video).await;
    let gets = server.gets("/stall.mp4");
    assert_eq!(gets.len(), 2);
    assert_eq!(
        gets[1].range.as_deref(),
        Some(format!("bytes={}-", 3 * MIB).as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_source_that_ignores_range_restarts_cleanly() {
    let stack = Stack::load();
    let server = VideoServer::start(0).await;
    let video = Video::new(12 * MIB, 5);
    // The first response is cut after 11 MiB (two parts already uploaded); the retry's
    // Range is ignored, so the transfer must abort that upload and start over.
    let url = server.route(
        "/norange.mp4",
        Behaviour::NoRange {
            video,
            times_cut: 1,
            after: 11 * MIB,
        },
    );
    let (task, event) = received_task(&stack, "norange", &url).await;
    assert!(
        deliver(&ingest(&stack, &[]), &event, "inv-1")
            .await
            .is_empty()
    );
    assert_stored(&stack, &task, video).await;
    assert_eq!(
        server.gets("/norange.mp4").len(),
        3,
        "first GET, ignored ranged GET, fresh GET"
    );
}

async fn assert_fails_permanently(behaviour: Behaviour, reason: FailureReason) {
    let stack = Stack::load();
    let server = VideoServer::start(0).await;
    let url = server.route("/v.mp4", behaviour);
    let (task, event) = received_task(&stack, reason.as_str(), &url).await;
    let failures = deliver(&ingest(&stack, &[]), &event, "inv-1").await;
    assert!(failures.is_empty(), "a permanent failure is not retried");
    let after = current(&stack, &task).await;
    assert_eq!(
        (after.status, after.failure_reason),
        (TaskStatus::Failed, Some(reason)),
        "{:?}",
        after.failure_detail
    );
    assert_eq!(
        server.gets("/v.mp4").len(),
        1,
        "no retry against the source"
    );
    assert_no_leftovers(&stack, &task).await;
    let head = stack
        .s3()
        .head_object()
        .bucket(stack.bucket())
        .key(format!("videos/{}.mp4", task.task_id))
        .send()
        .await;
    assert!(head.is_err(), "nothing stored");
}

#[tokio::test]
async fn not_found_fails_the_task() {
    assert_fails_permanently(Behaviour::Status(404), FailureReason::SourceNotFound).await;
}

#[tokio::test]
async fn an_expired_url_fails_the_task() {
    assert_fails_permanently(Behaviour::Status(403), FailureReason::SourceExpired).await;
    assert_fails_permanently(Behaviour::Status(410), FailureReason::SourceExpired).await;
}

#[tokio::test]
async fn an_html_page_is_never_stored() {
    assert_fails_permanently(Behaviour::Html, FailureReason::NotMp4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn binary_that_is_not_mp4_is_refused_before_anything_is_uploaded() {
    let stack = Stack::load();
    let server = VideoServer::start(0).await;
    let url = server.route("/v.mp4", Behaviour::NotMp4 { len: 12 * MIB });
    let (task, event) = received_task(&stack, "not-mp4", &url).await;
    deliver(&ingest(&stack, &[]), &event, "inv-1").await;
    let after = current(&stack, &task).await;
    assert_eq!(
        (after.status, after.failure_reason),
        (TaskStatus::Failed, Some(FailureReason::NotMp4))
    );
    assert_no_leftovers(&stack, &task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_video_over_the_limit_fails_without_leftovers() {
    let stack = Stack::load();
    let server = VideoServer::start(0).await;
    let video = Video::new(11 * MIB, 6);
    let url = server.serve("/big.mp4", video);
    let (task, event) = received_task(&stack, "too-large", &url).await;
    deliver(
        &ingest(&stack, &[("MAX_VIDEO_BYTES", "10485760")]),
        &event,
        "inv-1",
    )
    .await;
    let after = current(&stack, &task).await;
    assert_eq!(
        (after.status, after.failure_reason),
        (TaskStatus::Failed, Some(FailureReason::TooLarge))
    );
    assert_no_leftovers(&stack, &task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redirect_to_a_private_address_is_blocked() {
    let stack = Stack::load();
    let server = VideoServer::start(0).await;
    let url = server.route(
        "/v.mp4",
        Behaviour::Redirect("http://169.254.169.254/latest/meta-data/".into()),
    );
    let (task, event) = received_task(&stack, "redirect", &url).await;
    deliver(&ingest(&stack, &[]), &event, "inv-1").await;
    let after = current(&stack, &task).await;
    assert_eq!(
        (after.status, after.failure_reason),
        (TaskStatus::Failed, Some(FailureReason::BlockedUrl))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_errors_and_lies_are_retried_and_leave_nothing_behind() {
    let stack = Stack::load();
    let server = VideoServer::start(0).await;
    let fast = [("DOWNLOAD_RETRIES", "1")];

    let url = server.route("/500.mp4", Behaviour::Status(500));
    let (task, event) = received_task(&stack, "http-500", &url).await;
    let failures = deliver(&ingest(&stack, &fast), &event, "inv-1").await;
    assert_eq!(failures.len(), 1, "reported for the stream to retry");
    let after = current(&stack, &task).await;
    assert_eq!(after.status, TaskStatus::Downloading);
    assert!(after.lease_expired(Timestamp::now()), "lease handed back");
    assert_eq!(server.gets("/500.mp4").len(), 2, "first try plus one retry");

    // Declares 16 MiB, sends 12 MiB: two parts were uploaded before the lie shows.
    let video = Video::new(16 * MIB, 7);
    let url = server.route(
        "/lie.mp4",
        Behaviour::LieContentLength {
            video,
            declared: 16 * MIB,
            actual: 12 * MIB,
        },
    );
    let (task, event) = received_task(&stack, "lie", &url).await;
    let failures = deliver(&ingest(&stack, &fast), &event, "inv-1").await;
    assert_eq!(failures.len(), 1);
    assert_eq!(current(&stack, &task).await.status, TaskStatus::Downloading);
    assert_no_leftovers(&stack, &task).await;

    // MAX_ATTEMPTS=3: two more failing attempts, then the next delivery gives up.
    let ingest = ingest(&stack, &fast);
    assert_eq!(deliver(&ingest, &event, "inv-2").await.len(), 1);
    assert_eq!(deliver(&ingest, &event, "inv-3").await.len(), 1);
    assert_eq!(current(&stack, &task).await.attempts, 3);
    assert!(deliver(&ingest, &event, "inv-4").await.is_empty());
    let last = current(&stack, &task).await;
    assert_eq!(
        (last.status, last.failure_reason),
        (TaskStatus::Failed, Some(FailureReason::MaxAttemptsExceeded))
    );
    assert_eq!(last.attempts, 3);
    assert_no_leftovers(&stack, &task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_ingests_of_one_task_download_it_once() {
    let stack = Stack::load();
    let server = VideoServer::start(0).await;
    let video = Video::new(9 * MIB, 8);
    let url = server.serve("/twice.mp4", video);
    let (task, event) = received_task(&stack, "twice", &url).await;
    let (a, b) = (ingest(&stack, &[]), ingest(&stack, &[]));
    let (fa, fb) = tokio::join!(deliver(&a, &event, "inv-a"), deliver(&b, &event, "inv-b"));
    assert!(fa.is_empty() && fb.is_empty());
    assert_stored(&stack, &task, video).await;
    assert_eq!(server.gets("/twice.mp4").len(), 1, "downloaded once");
    assert_eq!(current(&stack, &task).await.attempts, 1);
}

// --- issue 7: sources that once made a truncated video look complete (holes 2 and 4) ---

use integration_tests::video_server::{Framing, Tricky};

async fn ingest_tricky(stack: &Stack, name: &str, tricky: Tricky) -> (Task, VideoServer) {
    let server = VideoServer::start(0).await;
    let url = server.route("/tricky.mp4", Behaviour::Tricky(tricky));
    let (task, event) = received_task(stack, name, &url).await;
    deliver(&ingest(stack, &[]), &event, "inv-1").await;
    (task, server)
}

/// Hole 2: the first GET is chunked (no length), breaks, and every resume is a 206
/// covering only part of the rest (`bytes 1000-1999/5000`). The total is learned from
/// Content-Range and the download goes on until every byte is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chunked_source_cut_then_served_in_partial_ranges_is_stored_whole() {
    let stack = Stack::load();
    let video = Video::new(5_000, 21);
    let tricky = Tricky {
        cut_first_after: Some(1_000),
        clean_cut: false,
        segment: Some(1_000),
        ..Tricky::new(video, Framing::Chunked)
    };
    let (task, server) = ingest_tricky(&stack, "chunked-partial", tricky).await;
    assert_stored(&stack, &task, video).await;
    let ranges: Vec<Option<String>> = server
        .gets("/tricky.mp4")
        .into_iter()
        .map(|g| g.range)
        .collect();
    assert_eq!(ranges[0], None);
    assert_eq!(ranges[1].as_deref(), Some("bytes=1000-"));
    assert_eq!(ranges.last().unwrap().as_deref(), Some("bytes=4000-"));
}

/// Hole 2: a close-delimited body (no length, no chunks) cut short looks complete; the
/// final range probe finds the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_close_delimited_body_cut_short_is_resumed_not_accepted() {
    let stack = Stack::load();
    let video = Video::new(3 * MIB + 17, 22);
    let tricky = Tricky {
        cut_first_after: Some(MIB),
        ..Tricky::new(video, Framing::CloseDelimited)
    };
    let (task, server) = ingest_tricky(&stack, "close-cut", tricky).await;
    assert_stored(&stack, &task, video).await;
    let gets = server.gets("/tricky.mp4");
    assert_eq!(
        gets[1].range.as_deref(),
        Some(format!("bytes={MIB}-").as_str())
    );
}

/// A complete body without a declared length is confirmed by `416 bytes */N`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_complete_body_without_a_length_is_confirmed_by_a_range_probe() {
    let stack = Stack::load();
    for framing in [Framing::Chunked, Framing::CloseDelimited] {
        let video = Video::new(2 * MIB + 3, 23);
        let (task, server) = ingest_tricky(&stack, "probe", Tricky::new(video, framing)).await;
        assert_stored(&stack, &task, video).await;
        let gets = server.gets("/tricky.mp4");
        assert_eq!(gets.len(), 2, "{framing:?}: the GET and the probe");
        assert_eq!(
            gets[1].range.as_deref(),
            Some(format!("bytes={}-", video.len).as_str())
        );
    }
}

/// A length that nothing confirms (no length, ranges ignored) is never recorded stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_body_whose_length_cannot_be_confirmed_is_never_stored() {
    let stack = Stack::load();
    let video = Video::new(MIB, 24);
    let tricky = Tricky {
        ranges: false,
        ..Tricky::new(video, Framing::CloseDelimited)
    };
    let (task, _server) = ingest_tricky(&stack, "unconfirmed", tricky).await;
    let after = current(&stack, &task).await;
    assert_eq!(
        (after.status, after.failure_reason),
        (TaskStatus::Failed, Some(FailureReason::LengthUnconfirmed))
    );
    assert_no_leftovers(&stack, &task).await;
    let head = stack
        .s3()
        .head_object()
        .bucket(stack.bucket())
        .key(format!("videos/{}.mp4", task.task_id))
        .send()
        .await;
    assert!(head.is_err(), "nothing stored");
}

/// Hole 4: a resumed 206 whose ETag differs from the first answer's is another version
/// of the object: the transfer restarts from byte 0 instead of splicing it in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resume_with_a_changed_etag_restarts_from_byte_zero() {
    let stack = Stack::load();
    let video = Video::new(7 * MIB, 25);
    let tricky = Tricky {
        cut_first_after: Some(6 * MIB),
        clean_cut: false,
        resume_etag: Some("\"v-other\""),
        ..Tricky::new(video, Framing::ContentLength)
    };
    let (task, server) = ingest_tricky(&stack, "etag", tricky).await;
    assert_stored(&stack, &task, video).await;
    let gets = server.gets("/tricky.mp4");
    assert_eq!(
        gets.len(),
        3,
        "first GET, refused resume, fresh GET: {gets:?}"
    );
    assert_eq!(gets[2].range, None, "started over");
}

/// The source cut at 20 random offsets, with and without a declared length: every time
/// the object is the source, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cuts_at_twenty_random_offsets_with_and_without_a_length() {
    let stack = Stack::load();
    let ingest = ingest(&stack, &[]);
    for i in 0..20u64 {
        let video = Video::new(fastrand::u64(64 * 1024..6 * MIB), 100 + i);
        let framing = [
            Framing::ContentLength,
            Framing::Chunked,
            Framing::CloseDelimited,
        ][(i % 3) as usize];
        let cut = fastrand::u64(1..video.len);
        let tricky = Tricky {
            cut_first_after: Some(cut),
            clean_cut: i % 2 == 0,
            ..Tricky::new(video, framing)
        };
        let server = VideoServer::start(0).await;
        let url = server.route("/cut.mp4", Behaviour::Tricky(tricky));
        let (task, event) = received_task(&stack, &format!("cut-{i}"), &url).await;
        assert!(
            deliver(&ingest, &event, "inv-1").await.is_empty(),
            "cut {i}"
        );
        assert_stored(&stack, &task, video).await;
    }
}

/// Hole 3, read side: an item written by a looser version (a URL far over today's
/// limit) is read and processed, not skipped as malformed: here it fails with a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stored_url_over_todays_limit_is_read_and_processed() {
    let stack = Stack::load();
    let server = VideoServer::start(0).await;
    let long = server.url(&format!("/{}.mp4", "a".repeat(5_000)));
    let mut task = Task::from_callback(
        &success(&unique_task_id("long-url"), &server.url("/x.mp4")),
        Timestamp::now(),
        DEFAULT_TASK_TTL,
    );
    let mut item = task.to_item().unwrap();
    item.insert("video_url".into(), serde_json::json!(long));
    let raw = shared::store::dynamodb::to_dynamo_item(&item).unwrap();
    stack
        .dynamodb()
        .put_item()
        .table_name(stack.direct_table())
        .set_item(Some(raw))
        .send()
        .await
        .unwrap();
    task = current(&stack, &task).await;
    assert_eq!(task.video_url.as_ref().unwrap().as_str().len(), long.len());
    let event = stream_event(&[item]);
    assert!(
        deliver(&ingest(&stack, &[]), &event, "inv-1")
            .await
            .is_empty()
    );
    let after = current(&stack, &task).await;
    assert_eq!(
        (after.status, after.failure_reason),
        (TaskStatus::Failed, Some(FailureReason::SourceNotFound))
    );
}

/// An image nothing can read becomes `failed` with the reason, never silently skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreadable_image_fails_the_task() {
    let stack = Stack::load();
    let task = Task::from_callback(
        &success(&unique_task_id("unreadable"), "https://cdn.example/v.mp4"),
        Timestamp::now(),
        DEFAULT_TASK_TTL,
    );
    let mut item = task.to_item().unwrap();
    item.insert("status".into(), serde_json::json!("exploded"));
    let raw = shared::store::dynamodb::to_dynamo_item(&item).unwrap();
    stack
        .dynamodb()
        .put_item()
        .table_name(stack.direct_table())
        .set_item(Some(raw))
        .send()
        .await
        .unwrap();
    assert!(
        deliver(&ingest(&stack, &[]), &stream_event(&[item]), "inv-1")
            .await
            .is_empty()
    );
    let after = current(&stack, &task).await;
    assert_eq!(
        (after.status, after.failure_reason),
        (TaskStatus::Failed, Some(FailureReason::UnreadableRecord))
    );
}

/// The commit's whole-object CRC64NVME is checked by the S3 server itself: a wrong one
/// (as a bug in our running checksum would send) is refused, for a put and for a
/// multipart upload, and nothing is stored.
#[tokio::test]
async fn the_s3_server_refuses_a_wrong_whole_object_checksum() {
    use shared::sink::{Finished, MultipartUpload, ObjectMeta, VideoSink};

    let stack = Stack::load();
    let sink = S3VideoSink::new(stack.s3(), stack.bucket());
    let meta = ObjectMeta {
        content_type: "video/mp4".into(),
        metadata: Vec::new(),
    };
    let part = bytes::Bytes::from(vec![7u8; 5 * MIB as usize]);
    let right = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, &part);
    let finished = |crc64nvme| Finished {
        bytes: part.len() as u64,
        sha256: "0".repeat(64),
        crc64nvme,
    };

    let key = format!("videos/{}.mp4", unique_task_id("crc-put"));
    let err = sink
        .put(&key, part.clone(), &meta, &finished(right ^ 1))
        .await
        .expect_err("a wrong checksum on a put is refused");
    assert_eq!(err.operation, "PutObject");
    assert!(sink.head(&key).await.unwrap().is_none());

    let key = format!("videos/{}.mp4", unique_task_id("crc-mpu"));
    let upload = sink.start(&key, &meta).await.unwrap();
    let uploaded = upload.upload_part(1, part.clone()).await.unwrap();
    let refused = upload
        .complete(vec![uploaded.clone()], &finished(right ^ 1))
        .await;
    if refused.is_ok() {
        sink.delete(&key).await.unwrap();
    }
    upload.abort().await.ok();
    assert!(
        refused.is_err(),
        "a wrong whole-object checksum completed an upload"
    );
    assert!(sink.head(&key).await.unwrap().is_none());
}
