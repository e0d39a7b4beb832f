//! End-to-end through the stack `make run` starts: a callback is POSTed to the receiver
//! under `cargo lambda watch`, the stream pump hands the new task to ingest, the video
//! lands in the local bucket, and the status endpoint returns a presigned URL whose
//! bytes equal the source.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

use std::time::Duration;

use integration_tests::video_server::{Behaviour, Video, VideoServer};
use integration_tests::{Stack, eventually, unique_task_id};
use serde_json::{Value, json};

const MIB: u64 = 1 << 20;

async fn status(client: &reqwest::Client, stack: &Stack, task_id: &str) -> (u16, Value) {
    let response = client
        .get(format!("{}/{task_id}", stack.var("STATUS_URL")))
        .send()
        .await
        .unwrap();
    let code = response.status().as_u16();
    (code, response.json().await.unwrap_or(Value::Null))
}

async fn post_callback(client: &reqwest::Client, stack: &Stack, task_id: &str, video_url: &str) {
    let body = json!({"code": 200, "msg": "MP4 generated successfully.",
                      "data": {"task_id": task_id, "video_url": video_url}});
    let response = stack.post_callback(client, &body).await;
    assert_eq!(response.status(), 200);
}

async fn wait_for_final(client: &reqwest::Client, stack: &Stack, task_id: &str) -> Value {
    eventually(Duration::from_secs(180), "the task to finish", || async {
        let (code, body) = status(client, stack, task_id).await;
        assert_eq!(code, 200, "{body}");
        matches!(body["status"].as_str(), Some("stored" | "failed")).then_some(body)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callback_to_stored_video_to_presigned_download() {
    let stack = Stack::load();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let server = VideoServer::start(0).await;
    let video = Video::new(13 * MIB + 321, 42);
    let url = server.serve("/e2e.mp4", video);
    let task_id = unique_task_id("e2e");

    assert_eq!(
        status(&client, &stack, &task_id).await.0,
        404,
        "unknown before the callback"
    );
    post_callback(&client, &stack, &task_id, &url).await;

    let body = wait_for_final(&client, &stack, &task_id).await;
    assert_eq!(body["status"], "stored", "{body}");
    assert_eq!(body["video"]["bytes"], video.len);
    assert_eq!(body["video"]["sha256"], video.sha256());
    assert_eq!(body["attempts"], 1);

    let presigned = body["video"]["url"].as_str().expect("presigned url");
    let downloaded = client.get(presigned).send().await.unwrap();
    assert_eq!(downloaded.status(), 200);
    let bytes = downloaded.bytes().await.unwrap();
    assert!(
        bytes.as_ref() == video.bytes().as_slice(),
        "presigned download differs from the source"
    );
    assert_eq!(server.gets("/e2e.mp4").len(), 1);

    // A repeat callback changes nothing and triggers no second download.
    post_callback(&client, &stack, &task_id, &url).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, again) = status(&client, &stack, &task_id).await;
    assert_eq!(
        (again["status"].as_str(), again["callback_count"].as_u64()),
        (Some("stored"), Some(2))
    );
    assert_eq!(server.gets("/e2e.mp4").len(), 1);

    // A tampered presigned URL is refused by the S3 server.
    let tampered = presigned.replacen("X-Amz-Signature=", "X-Amz-Signature=0", 1);
    assert_eq!(client.get(tampered).send().await.unwrap().status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_html_error_page_ends_as_a_failed_task() {
    let stack = Stack::load();
    let client = reqwest::Client::new();
    let server = VideoServer::start(0).await;
    let url = server.route("/expired.mp4", Behaviour::Html);
    let task_id = unique_task_id("e2e-html");
    post_callback(&client, &stack, &task_id, &url).await;
    let body = wait_for_final(&client, &stack, &task_id).await;
    assert_eq!(
        (body["status"].as_str(), body["failure_reason"].as_str()),
        (Some("failed"), Some("not_mp4")),
        "{body}"
    );
    assert!(body.get("video").is_none());
}

// --- issue 7: recovery through the whole stack (scheduled reconciler, stream filter) ---

/// The simulated upstream API the stack's functions poll.
async fn upstream_says(client: &reqwest::Client, stack: &Stack, task_id: &str, record: Value) {
    let response = client
        .put(format!(
            "{}admin/tasks/{task_id}",
            stack.var("UPSTREAM_API_URL")
        ))
        .json(&record)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// An operator registers a task; its callback never comes; the scheduled reconciler
/// polls the upstream, records the outcome through the callback path, and the video is
/// ingested like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expected_task_whose_callback_never_comes_is_polled_and_stored() {
    let stack = Stack::load();
    let client = reqwest::Client::new();
    let server = VideoServer::start(0).await;
    let video = Video::new(4 * MIB + 5, 51);
    let url = server.serve("/polled.mp4", video);
    let task_id = unique_task_id("e2e-polled");
    let response = client
        .post(stack.var("TASKS_URL"))
        .json(&json!({"task_ids": [task_id]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.json::<Value>().await.unwrap()["registered"],
        json!([task_id])
    );
    let (_, body) = status(&client, &stack, &task_id).await;
    assert_eq!(body["status"], "expected");
    upstream_says(
        &client,
        &stack,
        &task_id,
        json!({"successFlag": "SUCCESS", "response": {"videoUrl": url}}),
    )
    .await;
    let body = wait_for_final(&client, &stack, &task_id).await;
    assert_eq!(body["status"], "stored", "{body}");
    assert_eq!(body["video"]["sha256"], video.sha256());
    assert_eq!(body["upstream_msg"], "found by polling");
}

/// The callback's URL has expired (403); ingest asks the upstream once for a fresh one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_video_url_is_refreshed_from_the_upstream() {
    let stack = Stack::load();
    let client = reqwest::Client::new();
    let server = VideoServer::start(0).await;
    let video = Video::new(3 * MIB, 52);
    let expired = server.route("/expired.mp4", Behaviour::Status(403));
    let fresh = server.serve("/fresh.mp4", video);
    let task_id = unique_task_id("e2e-refresh");
    upstream_says(
        &client,
        &stack,
        &task_id,
        json!({"successFlag": "SUCCESS", "response": {"videoUrl": fresh}}),
    )
    .await;
    post_callback(&client, &stack, &task_id, &expired).await;
    let body = wait_for_final(&client, &stack, &task_id).await;
    assert_eq!(body["status"], "stored", "{body}");
    assert_eq!(body["video"]["sha256"], video.sha256());
    assert_eq!(server.gets("/expired.mp4").len(), 1);
    assert_eq!(server.gets("/fresh.mp4").len(), 1);
}

/// A task left `downloading` by an invocation that died (its lease ran out) is re-driven
/// by the scheduled reconciler; the re-drive passes the stream filter and ingest stores
/// the video.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_invocations_task_is_redriven_through_the_stream() {
    use shared::domain::task::{ClaimDecision, DEFAULT_TASK_TTL, Task};
    let stack = Stack::load();
    let client = reqwest::Client::new();
    let server = VideoServer::start(0).await;
    let video = Video::new(2 * MIB + 9, 53);
    let url = server.serve("/abandoned.mp4", video);
    let task_id = unique_task_id("e2e-abandoned");
    let now = shared::Timestamp::now();
    let task = Task::from_callback(
        &shared::test_support::success(&task_id, &url),
        now,
        DEFAULT_TASK_TTL,
    );
    let ClaimDecision::Claim(claim) = task.decide_claim(
        "dead-invocation",
        now,
        now.saturating_add(Duration::from_secs(1)),
        5,
        DEFAULT_TASK_TTL,
    ) else {
        panic!("claimable")
    };
    // Written as it stood when the invocation died (an INSERT of `downloading`, which the
    // trigger ignores): only the reconciler can bring it back.
    let abandoned = task.apply(&claim).unwrap();
    let item = shared::store::dynamodb::task_to_item(&abandoned).unwrap();
    stack
        .dynamodb()
        .put_item()
        .table_name(stack.table())
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
    let body = wait_for_final(&client, &stack, &task_id).await;
    assert_eq!(body["status"], "stored", "{body}");
    assert_eq!(body["video"]["sha256"], video.sha256());
    assert_eq!(body["attempts"], 2);
}

/// Rotation without a redeploy: a token added to the configuration secret is accepted by
/// the running receiver once its refresh interval (10 s locally) has passed, the old one
/// keeps working meanwhile, and a token in neither is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_added_to_the_secret_is_accepted_without_a_redeploy() {
    let stack = Stack::load();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let secrets = stack.secrets_manager();
    let id = stack.var("CONFIG_SECRET_ID");
    let before = secrets
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .unwrap()
        .secret_string
        .unwrap();
    let mut rotated: Value = serde_json::from_str(&before).unwrap();
    let old = rotated["CALLBACK_TOKENS"].as_str().unwrap().to_owned();
    let new = format!("rotated-{}", unique_task_id("tok"));
    rotated["CALLBACK_TOKENS"] = format!("{old},{new}").into();
    secrets
        .put_secret_value()
        .secret_id(id)
        .secret_string(rotated.to_string())
        .send()
        .await
        .unwrap();

    let unsigned = stack.var("CALLBACK_URL_UNSIGNED").to_owned();
    let send = |token: String| {
        let client = client.clone();
        let url = format!("{unsigned}?token={token}");
        async move {
            let task_id = unique_task_id("rotation");
            let body = json!({"code": 451, "msg": "rotation check", "data": {"task_id": task_id, "video_url": null}});
            client
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Every receiver instance reads the secret again on its first use after 10 s; until
    // then it answers with what it has (the old list), never with an error of its own.
    let accepted = eventually(
        Duration::from_secs(60),
        "the new token to be accepted",
        || {
            let send = &send;
            let new = new.clone();
            async move {
                let status = send(new).await;
                assert!(matches!(status, 200 | 401), "{status}");
                (status == 200).then_some(())
            }
        },
    )
    .await;
    let _: () = accepted;
    assert_eq!(send(old.clone()).await, 200, "the old token still works");
    assert_eq!(send("never-in-the-secret-0123456789".into()).await, 401);

    secrets
        .put_secret_value()
        .secret_id(id)
        .secret_string(before)
        .send()
        .await
        .unwrap();
}
