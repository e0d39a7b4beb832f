//! No log level prints a secret: each real binary runs under `RUST_LOG=trace` (the most
//! talkative level there is), fed one real-shaped event by a minimal Lambda Runtime API,
//! against the local servers. Its whole output must not contain the callback token, a
//! signature header's value, a signed URL's signature, the upstream API key, an
//! endpoint's signing key or a chat webhook's URL (its credential).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

use std::time::Duration;

use integration_tests::runtime_api::RuntimeApi;
use integration_tests::upstream_api::UpstreamApi;
use integration_tests::video_server::{Behaviour, Video, VideoServer};
use integration_tests::{Stack, eventually, unique_task_id};
use serde_json::{Value, json};
use shared::domain::task::{DEFAULT_TASK_TTL, Task};
use shared::store::TaskStore;
use shared::test_support::{fixtures, stream_event, success};
use shared::{TaskId, Timestamp};

const TOKEN: &str = "tok-SECRET-token-0123456789";
const URL_SIGNATURE: &str = "SECRETsig0123456789abcdef";
const HEADER_SIGNATURE: &str = "SECRET-header-signature-value";
const API_KEY: &str = "sk-SECRET-upstream-key-0123";

/// Runs `name` on `event` under RUST_LOG=trace until it answered; returns its output.
async fn run_traced(
    stack: &Stack,
    name: &str,
    event: Value,
    env: &[(&str, String)],
) -> (String, Option<Value>) {
    let api = RuntimeApi::start(event, Duration::from_secs(60))
        .await
        .unwrap();
    let log_path = std::env::temp_dir().join(format!("{name}-{:016x}.log", fastrand::u64(..)));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut command = stack.function_process(name, &api.address());
    command
        .env("RUST_LOG", "trace")
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let answered = eventually(
        Duration::from_secs(60),
        &format!("{name} to answer"),
        || async {
            api.response()
                .map(Some)
                .or_else(|| api.error().map(|e| Some(json!({"error": e}))))
        },
    )
    .await;
    // Let the last lines flush, then stop it and read everything it wrote.
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().unwrap();
    let _ = child.wait();
    let out = String::from_utf8_lossy(&std::fs::read(&log_path).unwrap()).into_owned();
    let _ = std::fs::remove_file(&log_path);
    // The level really is trace: the function's own debug lines are there.
    assert!(
        out.contains(r#""level":"DEBUG""#),
        "{name} did not run at trace: {out}"
    );
    (out, answered)
}

fn assert_no_secret(name: &str, out: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !out.contains(secret),
            "{name} logged a secret ({secret}):\n{}",
            relevant(out, secret)
        );
    }
}

fn relevant(out: &str, secret: &str) -> String {
    out.lines()
        .filter(|l| l.contains(secret))
        .take(3)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_receiver_logs_no_token_signature_or_signed_url_at_trace() {
    let stack = Stack::load();
    let id = unique_task_id("secret-recv");
    let url = format!("https://cdn.example/v.mp4?X-Amz-Signature={URL_SIGNATURE}");
    let body =
        json!({"code": 200, "msg": "ok", "data": {"task_id": id, "video_url": url}}).to_string();
    let mut event: Value = serde_json::from_str(fixtures::APIGW_V2_CALLBACK).unwrap();
    event["rawQueryString"] = format!("token={TOKEN}").into();
    event["queryStringParameters"] = json!({ "token": TOKEN });
    event["headers"]["x-webhook-signature"] = HEADER_SIGNATURE.into();
    event["headers"]["webhook-signature"] = format!("v1,{HEADER_SIGNATURE}").into();
    event["body"] = body.into();
    let (out, answer) = run_traced(
        &stack,
        "receiver",
        event,
        &[("CALLBACK_TOKENS", TOKEN.into())],
    )
    .await;
    assert_eq!(answer.unwrap()["statusCode"], 200, "{out}");
    assert!(
        stack.raw_item(stack.direct_table(), &id).await.is_some(),
        "recorded"
    );
    assert_no_secret("receiver", &out, &[TOKEN, URL_SIGNATURE, HEADER_SIGNATURE]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ingest_logs_no_signed_url_at_trace() {
    let stack = Stack::load();
    let server = VideoServer::start(0).await;
    let video = Video::new(1 << 20, 61);
    let path = format!("/signed.mp4?X-Amz-Signature={URL_SIGNATURE}");
    let url = server.route(
        &path,
        Behaviour::Serve {
            video,
            content_type: "video/mp4",
        },
    );
    let task = Task::from_callback(
        &success(&unique_task_id("secret-ingest"), &url),
        Timestamp::now(),
        DEFAULT_TASK_TTL,
    );
    stack.direct_task_store().create(&task).await.unwrap();
    let event = stream_event(&[task.to_item().unwrap()]);
    let env = [
        ("BUCKET_NAME", stack.bucket().to_owned()),
        ("VIDEO_URL_ALLOW_HTTP", "true".into()),
        ("VIDEO_URL_ALLOW_LOOPBACK", "true".into()),
    ];
    let (out, answer) = run_traced(&stack, "ingest", event, &env).await;
    assert_eq!(answer.unwrap()["batchItemFailures"], json!([]), "{out}");
    let stored = stack
        .direct_task_store()
        .get(&task.task_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.video.unwrap().sha256, video.sha256(), "{out}");
    assert_no_secret("ingest", &out, &[URL_SIGNATURE]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_logs_no_presigned_signature_at_trace() {
    use shared::domain::task::{ClaimDecision, Lease, StoredVideo};
    let stack = Stack::load();
    let store = stack.direct_task_store();
    let id = unique_task_id("secret-status");
    let now = Timestamp::now();
    let task = Task::from_callback(
        &success(&id, "https://cdn.example/v.mp4"),
        now,
        DEFAULT_TASK_TTL,
    );
    store.create(&task).await.unwrap();
    let until = now.saturating_add(Duration::from_secs(60));
    let ClaimDecision::Claim(claim) = task.decide_claim("inv", now, until, 5, DEFAULT_TASK_TTL)
    else {
        panic!("claimable")
    };
    store.apply(&task.task_id, &claim).await.unwrap();
    let video = StoredVideo {
        bucket: stack.bucket().into(),
        key: format!("videos/{id}.mp4"),
        bytes: 1,
        sha256: "ab".repeat(32),
        content_type: "video/mp4".into(),
    };
    store
        .apply(
            &task.task_id,
            &Lease::new("inv", until).store(video, now, DEFAULT_TASK_TTL),
        )
        .await
        .unwrap();
    let mut event: Value = serde_json::from_str(fixtures::APIGW_V2_STATUS).unwrap();
    event["pathParameters"]["task_id"] = id.clone().into();
    event["rawPath"] = format!("/tasks/{id}").into();
    let (out, answer) = run_traced(&stack, "status", event, &[]).await;
    let answer = answer.unwrap();
    assert_eq!(answer["statusCode"], 200, "{out}");
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    let url = body["video"]["url"].as_str().expect("a presigned URL");
    let signature = url
        .split("X-Amz-Signature=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    assert!(signature.len() >= 32, "{url}");
    assert_no_secret("status", &out, &[signature]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_reconciler_logs_no_upstream_key_at_trace() {
    let stack = Stack::load();
    let api = UpstreamApi::start(0, API_KEY).await.unwrap();
    let id = unique_task_id("secret-poll");
    stack
        .direct_task_store()
        .create(&Task::expected(
            TaskId::parse(&id).unwrap(),
            Timestamp::now(),
            DEFAULT_TASK_TTL,
        ))
        .await
        .unwrap();
    api.succeed(
        &id,
        &format!("https://cdn.example/p.mp4?X-Amz-Signature={URL_SIGNATURE}"),
    );
    let env = [
        ("UPSTREAM_API_BASE", api.base_url()),
        ("UPSTREAM_API_KEY", API_KEY.into()),
        ("UPSTREAM_API_ALLOW_HTTP", "true".into()),
        ("POLL_GRACE_SECS", "0".into()),
        ("MAX_TASKS_PER_RUN", "100000".into()),
    ];
    let (out, answer) = run_traced(
        &stack,
        "reconciler",
        json!({"source": "aws.scheduler"}),
        &env,
    )
    .await;
    assert!(
        answer.unwrap()["recorded_by_poll"].as_u64().unwrap() >= 1,
        "{out}"
    );
    assert!(api.calls(&id) >= 1);
    assert_no_secret("reconciler", &out, &[API_KEY, URL_SIGNATURE]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deliver_logs_no_signing_key_and_no_chat_url_at_trace() {
    use shared::domain::notify::delivery::Delivery;
    use shared::domain::notify::endpoint::{EndpointId, EndpointSpec, EndpointUrlPolicy};
    use shared::domain::notify::format::samples;
    use shared::domain::notify::signing::{SigningKeys, whsec};
    use shared::domain::secret::Secret;
    use shared::notifications::{DeliveryStore, Endpoint, EndpointAdmin, Job, QueuedJob};

    let stack = Stack::load();
    let store = stack.notifications();
    let inbox = stack.var("INBOX_URL").to_owned();
    let chat_token = format!("T0SECRET/B0SECRET/{:016x}", fastrand::u64(..));
    let key = Secret::new(format!("SECRET-signing-key-{:016x}", fastrand::u64(..)).into_bytes());
    let key_text = whsec(&key)["whsec_".len()..].to_owned();
    let mut records = Vec::new();
    let mut created = Vec::new();
    for (kind, url, signing) in [
        (
            "slack",
            format!("{inbox}/hooks/{}", chat_token.replace('/', "-")),
            None,
        ),
        (
            "webhook",
            format!("{inbox}/hooks/secret-webhook"),
            Some(SigningKeys::new(key.clone())),
        ),
    ] {
        // A filter no task of the stack matches: only this test's deliveries reach them.
        let spec: EndpointSpec = serde_json::from_value(json!({
            "kind": kind, "url": url, "filter": {"task_id_prefixes": ["secret-deliver-no-task"]}
        }))
        .unwrap();
        let settings = spec.validate(&EndpointUrlPolicy::local()).unwrap();
        let endpoint = Endpoint::new(
            EndpointId::generate(fastrand::u128(..)),
            settings,
            signing,
            None,
            Timestamp::now(),
        );
        // Through the vault, as the status function writes them: deliver reads the key there.
        assert!(stack.endpoints().create_endpoint(&endpoint).await.unwrap());
        let delivery = Delivery::new(
            samples::all().remove(1),
            endpoint.id.clone(),
            true,
            Timestamp::now(),
        );
        store.create(&delivery).await.unwrap();
        let job = QueuedJob {
            job: Job::Deliver {
                delivery_id: delivery.id.clone(),
            },
            not_before: Timestamp::now(),
        };
        records.push(json!({
            "messageId": format!("m-{}", records.len()),
            "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
            "body": serde_json::to_string(&job).unwrap(),
            "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1545082649183"},
            "messageAttributes": {},
            "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:jobs",
            "awsRegion": "us-east-1"
        }));
        created.push(endpoint.id);
    }
    let env = [
        ("ENDPOINT_URL_ALLOW_HTTP", "true".to_owned()),
        ("ENDPOINT_URL_ALLOW_LOOPBACK", "true".to_owned()),
        ("ENDPOINT_URL_ANY_CHAT_HOST", "true".to_owned()),
    ];
    let (out, answer) = run_traced(&stack, "deliver", json!({"Records": records}), &env).await;
    let answer = answer.unwrap();
    assert_eq!(answer["batchItemFailures"], json!([]), "{out}");
    assert!(out.contains("delivery attempted"), "both were sent: {out}");
    for id in &created {
        assert!(store.delete_endpoint(id).await.unwrap());
    }
    assert_no_secret("deliver", &out, &[&chat_token.replace('/', "-"), &key_text]);
}
