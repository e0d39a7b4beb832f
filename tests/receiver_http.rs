//! End-to-end: the receiver under `cargo lambda watch`, real HTTP POSTs, the items in the
//! local table.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::{Stack, unique_task_id};
use serde_json::{Value, json};

fn callback(task_id: &str) -> Value {
    json!({"code": 200, "msg": "MP4 generated successfully.",
           "data": {"task_id": task_id, "video_url": "https://cdn.example/never-fetched.mp4"}})
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// The callback URL with another token.
fn with_token(stack: &Stack, token: &str) -> String {
    let mut url = url::Url::parse(stack.var("CALLBACK_URL")).unwrap();
    url.set_query(Some(&format!("token={token}")));
    url.into()
}

#[tokio::test]
async fn a_callback_is_recorded_and_a_repeat_is_a_duplicate() {
    let stack = Stack::load();
    let id = unique_task_id("e2e-recv");
    // A failure callback: recorded as failed, so the stream pump has nothing to ingest.
    let body =
        json!({"code": 500, "msg": "server error", "data": {"task_id": id, "video_url": null}});
    let response = stack.post_callback(&http(), &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "received", "task_id": id})
    );
    let stored = stack
        .raw_item(stack.table(), &id)
        .await
        .expect("item in the table");
    assert_eq!(stored["status"], AttributeValue::S("failed".into()));
    assert_eq!(stored["upstream_code"], AttributeValue::N("500".into()));

    let response = stack.post_callback(&http(), &body).await;
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "duplicate", "task_id": id})
    );
    assert_eq!(
        stack.raw_item(stack.table(), &id).await.unwrap()["callback_count"],
        AttributeValue::N("2".into())
    );
}

#[tokio::test]
async fn unverified_or_invalid_requests_write_nothing() {
    let stack = Stack::load();
    let id = unique_task_id("e2e-reject");
    let client = http();

    let response = client
        .post(with_token(&stack, "wrong-token-0123456789"))
        .json(&callback(&id))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "unauthorized"
    );

    let no_token = stack
        .var("CALLBACK_URL")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        client
            .post(no_token)
            .json(&callback(&id))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    let response = client
        .post(stack.var("CALLBACK_URL"))
        .header("content-type", "text/plain")
        .body(callback(&id).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);

    let bad = json!({"code": 200, "data": {"task_id": id, "video_url": "ftp://cdn.example/v.mp4"}});
    let response = stack.post_callback(&client, &bad).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "invalid_video_url"
    );

    let response = client.get(stack.var("CALLBACK_URL")).send().await.unwrap();
    assert_eq!(response.status(), 405);

    assert!(
        stack.raw_item(stack.table(), &id).await.is_none(),
        "nothing written for any refusal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_posts_are_all_answered_200_with_one_item() {
    let stack = Stack::load();
    let id = unique_task_id("e2e-fifty");
    let body = json!({"code": 400, "msg": "bad request", "data": {"task_id": id}});
    let client = http();
    let posts: Vec<_> = (0..50)
        .map(|_| {
            let request = client.post(stack.var("CALLBACK_URL")).json(&body);
            tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    let mut statuses = Vec::new();
    for p in posts {
        statuses.push(p.await.unwrap().unwrap());
    }
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert_eq!(
        stack.raw_item(stack.table(), &id).await.unwrap()["callback_count"],
        AttributeValue::N("50".into())
    );
}

/// Seconds since the epoch, as the signers send it.
fn unix_now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

#[tokio::test]
async fn signed_callbacks_pass_without_a_token_and_a_wrong_signature_does_not() {
    use shared::domain::verify::{
        UPSTREAM_SIGNATURE_HEADER, UPSTREAM_TIMESTAMP_HEADER, WEBHOOK_ID_HEADER,
        WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER, standard_webhooks::decode_whsec,
        standard_webhooks_signature, upstream_signature,
    };
    let stack = Stack::load();
    let client = http();
    let url = stack.var("CALLBACK_URL_UNSIGNED");
    let ts = unix_now();

    // Standard Webhooks: the body is signed.
    let id = unique_task_id("e2e-whsec");
    let body =
        json!({"code": 451, "msg": "download failed", "data": {"task_id": id, "video_url": null}})
            .to_string();
    let key = decode_whsec(stack.var("STANDARD_WEBHOOKS_SECRET")).unwrap();
    let send = |sig: String| {
        client
            .post(url)
            .header("content-type", "application/json")
            .header(WEBHOOK_ID_HEADER, "msg_e2e_1")
            .header(WEBHOOK_TIMESTAMP_HEADER, ts.to_string())
            .header(WEBHOOK_SIGNATURE_HEADER, sig)
            .body(body.clone())
            .send()
    };
    let forged =
        standard_webhooks_signature(b"another-key-0123456789", "msg_e2e_1", ts, body.as_bytes());
    assert_eq!(send(forged).await.unwrap().status(), 401);
    assert!(stack.raw_item(stack.table(), &id).await.is_none());
    let good = standard_webhooks_signature(&key, "msg_e2e_1", ts, body.as_bytes());
    assert_eq!(send(good).await.unwrap().status(), 200);
    assert!(stack.raw_item(stack.table(), &id).await.is_some());

    // The upstream's own HMAC over the task id and time.
    let id = unique_task_id("e2e-hmac");
    let body =
        json!({"code": 500, "msg": "server error", "data": {"task_id": id, "video_url": null}})
            .to_string();
    let secret = stack.var("UPSTREAM_HMAC_SECRET").as_bytes().to_vec();
    let send = |sig: String| {
        client
            .post(url)
            .header("content-type", "application/json")
            .header(UPSTREAM_TIMESTAMP_HEADER, ts.to_string())
            .header(UPSTREAM_SIGNATURE_HEADER, sig)
            .body(body.clone())
            .send()
    };
    let other_task = upstream_signature(&secret, "some-other-task", ts);
    assert_eq!(send(other_task).await.unwrap().status(), 401);
    assert!(stack.raw_item(stack.table(), &id).await.is_none());
    assert_eq!(
        send(upstream_signature(&secret, &id, ts))
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(stack.raw_item(stack.table(), &id).await.is_some());
}
