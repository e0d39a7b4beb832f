//! Notifications end to end through the stack `make run` starts: an endpoint is created
//! through the operator routes (status function), a callback ends a task, the notify
//! stream consumer queues a delivery, the queue pump hands it to deliver, and the local
//! inbox receives it. The inbox answers as each test scripts it (503 twice, 410, 429 with
//! `Retry-After`, WeCom's error inside a 200); every signature is checked by the inbox
//! and again here with our own verifier.
//!
//! Each endpoint filters on its test's task-id prefix, so tasks of other suites running
//! against the same stack never reach it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

use std::time::{Duration, Instant};

use integration_tests::video_server::{Video, VideoServer};
use integration_tests::{Stack, eventually, repo_root, unique_task_id};
use serde_json::{Value, json};
use shared::Timestamp;
use shared::domain::notify::endpoint::EndpointId;
use shared::domain::secret::Secret;
use shared::domain::verify::standard_webhooks::decode_whsec;
use shared::domain::verify::{CallbackRequest, Scheme, Verified, Verifier};
use shared::notifications::vault::EndpointVault;

struct Operator {
    client: reqwest::Client,
    stack: Stack,
}

impl Operator {
    fn new() -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Self {
            client,
            stack: Stack::load(),
        }
    }

    /// A call to the operator API (`path` after the status function's prefix).
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let base = self
            .stack
            .var("ENDPOINTS_URL")
            .trim_end_matches("/endpoints");
        let mut request = self
            .client
            .request(method.parse().unwrap(), format!("{base}{path}"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A webhook endpoint on inbox hook `hook` for tasks starting with `prefix`; the inbox
    /// is given its secret. Returns (endpoint id, whsec secret).
    async fn endpoint(&self, hook: &str, prefix: &str, extra: Value) -> (String, String) {
        let mut spec = json!({
            "url": format!("{}/hooks/{hook}", self.stack.var("INBOX_URL")),
            "kind": "webhook",
            "filter": {"task_id_prefixes": [prefix]},
        });
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let (status, created) = self.call("POST", "/endpoints", Some(spec)).await;
        assert_eq!(status, 201, "{created}");
        let id = created["endpoint"]["id"].as_str().unwrap().to_owned();
        // What the receiver verifies with: the secret shown once (HMAC), or the public
        // key shown in every view (ed25519).
        let secret = created["secret"]
            .as_str()
            .or(created["endpoint"]["public_keys"][0].as_str())
            .unwrap_or_default()
            .to_owned();
        if !secret.is_empty() {
            let url = format!("{}/_secret/{hook}", self.stack.var("INBOX_URL"));
            let put = self
                .client
                .put(url)
                .body(secret.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(put.status(), 204);
        }
        (id, secret)
    }

    async fn script(&self, hook: &str, answers: Value) {
        let url = format!("{}/_script/{hook}", self.stack.var("INBOX_URL"));
        let put = self.client.put(url).json(&answers).send().await.unwrap();
        assert_eq!(put.status(), 204);
    }

    async fn received(&self, hook: &str) -> Vec<Value> {
        let url = format!("{}/_requests/{hook}", self.stack.var("INBOX_URL"));
        let got: Value = self
            .client
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        got.as_array().cloned().unwrap_or_default()
    }

    async fn wait_received(&self, hook: &str, n: usize, within: Duration) -> Vec<Value> {
        eventually(
            within,
            &format!("{n} notification(s) at {hook}"),
            || async {
                let got = self.received(hook).await;
                (got.len() >= n).then_some(got)
            },
        )
        .await
    }

    async fn deliveries(&self, endpoint: &str) -> Vec<Value> {
        let (status, page) = self
            .call(
                "GET",
                &format!("/endpoints/{endpoint}/deliveries?limit=100"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        page["deliveries"].as_array().cloned().unwrap()
    }

    async fn delivery_when(
        &self,
        endpoint: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        eventually(Duration::from_secs(90), what, || async {
            self.deliveries(endpoint)
                .await
                .into_iter()
                .find(|d| done(d))
        })
        .await
    }

    async fn delete(&self, endpoint: &str) {
        let (status, body) = self
            .call("DELETE", &format!("/endpoints/{endpoint}"), None)
            .await;
        assert_eq!(status, 204, "{body}");
    }

    async fn fail_task(&self, task_id: &str) {
        let body = json!({"code": 451, "msg": "source download failed",
                          "data": {"task_id": task_id, "video_url": null}});
        assert_eq!(
            self.stack.post_callback(&self.client, &body).await.status(),
            200
        );
    }
}

/// What the inbox recorded, checked with our own Standard Webhooks verifier.
fn signed_by(secret: &str, request: &Value) -> bool {
    let mut headers = http::HeaderMap::new();
    for (name, value) in request["headers"].as_object().unwrap() {
        headers.insert(
            http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).unwrap(),
            http::HeaderValue::from_str(value.as_str().unwrap()).unwrap(),
        );
    }
    let verifier = Verifier::default()
        .with_standard_webhooks(vec![Secret::new(decode_whsec(secret).unwrap())]);
    let body = request["body"].as_str().unwrap().as_bytes();
    let request = CallbackRequest {
        tokens: &[],
        headers: &headers,
        body,
    };
    verifier.verify(&request, Timestamp::now()) == Ok(Verified::By(Scheme::StandardWebhooks))
}

fn body_of(request: &Value) -> Value {
    serde_json::from_str(request["body"].as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stored_video_is_notified_once_signed_and_a_duplicate_callback_adds_nothing() {
    let ops = Operator::new();
    let prefix = unique_task_id("ntf-stored");
    let (endpoint, secret) = ops
        .endpoint(&prefix, &prefix, json!({"include_video_url": true}))
        .await;
    let server = VideoServer::start(0).await;
    let video = Video::new(3 << 20, 7);
    let url = server.serve("/n.mp4", video);
    let task_id = format!("{prefix}-1");
    let callback = json!({"code": 200, "msg": "MP4 generated successfully.",
                          "data": {"task_id": task_id, "video_url": url}});
    assert_eq!(
        ops.stack
            .post_callback(&ops.client, &callback)
            .await
            .status(),
        200
    );

    let got = ops
        .wait_received(&prefix, 1, Duration::from_secs(180))
        .await;
    assert_eq!(got[0]["signature"], "valid", "the inbox's own check");
    assert!(signed_by(&secret, &got[0]), "our verifier accepts it");
    let event = body_of(&got[0]);
    assert_eq!(event["type"], "task.stored");
    assert_eq!(event["data"]["task_id"], task_id.as_str());
    assert_eq!(event["data"]["video"]["sha256"], video.sha256());
    assert_eq!(event["data"]["video"]["bytes"], video.len);
    // The endpoint asked for a link: a presigned GET of the stored bytes.
    let link = event["data"]["video"]["url"]
        .as_str()
        .expect("a video link");
    let fetched = ops.client.get(link).send().await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert!(fetched.bytes().await.unwrap().as_ref() == video.bytes().as_slice());
    assert!(event["data"]["video"]["url_expires_at"].is_string());

    // A repeat callback is no new outcome: no second notification, one delivery.
    assert_eq!(
        ops.stack
            .post_callback(&ops.client, &callback)
            .await
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(ops.received(&prefix).await.len(), 1);
    let deliveries = ops.deliveries(&endpoint).await;
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    assert_eq!(deliveries[0]["status"], "succeeded");
    assert_eq!(deliveries[0]["attempt_count"], 1);

    // A re-notify sends the same event id again, with a new signature.
    let (status, answer) = ops
        .call("POST", &format!("/tasks/{task_id}/notify"), None)
        .await;
    // (Endpoints of other tests or of a person using the stack may match too.)
    assert_eq!(status, 202, "{answer}");
    assert!(answer["endpoints"].as_u64().unwrap() >= 1, "{answer}");
    let again = ops.wait_received(&prefix, 2, Duration::from_secs(60)).await;
    assert_eq!(
        again[1]["headers"]["webhook-id"],
        got[0]["headers"]["webhook-id"]
    );
    assert!(signed_by(&secret, &again[1]));

    // The secret was shown once and is in no log.
    let (_, shown) = ops
        .call("GET", &format!("/endpoints/{endpoint}"), None)
        .await;
    assert!(!shown.to_string().contains(&secret[6..]));
    for entry in std::fs::read_dir(repo_root().join(".local/logs")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            !text.contains(&secret[6..]),
            "the endpoint secret is in {}",
            path.display()
        );
    }
    // It lives in Secrets Manager under the stack's prefix, not in the endpoints table;
    // deleting the endpoint deletes it.
    let id = EndpointId::parse(&endpoint).unwrap();
    let vault = ops.stack.endpoint_vault();
    let held = vault
        .read(&id)
        .await
        .unwrap()
        .expect("the endpoint's secret");
    let key = decode_whsec(&secret).unwrap();
    assert_eq!(
        held.signing.as_ref().map(|(k, _)| k.expose()),
        Some(&key[..])
    );
    let item = ops
        .stack
        .raw_endpoint_item(&id)
        .await
        .expect("the endpoint's item");
    assert!(!item.contains_key("signing_key"), "{:?}", item.keys());
    ops.delete(&endpoint).await;
    assert!(vault.read(&id).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_failing_twice_gets_it_on_the_third_attempt() {
    let ops = Operator::new();
    let prefix = unique_task_id("ntf-flaky");
    let (endpoint, secret) = ops
        .endpoint(
            &prefix,
            &prefix,
            json!({"retry_schedule_secs": [0, 1, 1, 1]}),
        )
        .await;
    ops.script(
        &prefix,
        json!([{"status": 503, "body": "busy"}, {"status": 500}]),
    )
    .await;
    ops.fail_task(&format!("{prefix}-1")).await;
    let got = ops.wait_received(&prefix, 3, Duration::from_secs(90)).await;
    assert!(
        got.iter().all(|r| signed_by(&secret, r)),
        "every attempt is signed"
    );
    let ids: Vec<_> = got
        .iter()
        .map(|r| r["headers"]["webhook-id"].clone())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "one event id for every attempt"
    );
    assert_eq!(body_of(&got[0])["type"], "task.failed");
    let done = ops
        .delivery_when(&endpoint, "the delivery to succeed", |d| {
            d["status"] == "succeeded"
        })
        .await;
    assert_eq!(done["attempt_count"], 3);
    let codes: Vec<_> = done["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].clone())
        .collect();
    assert_eq!(codes, [json!(503), json!(500), json!(200)]);
    assert_eq!(done["attempts"][0]["response_body"], "busy");
    ops.delete(&endpoint).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_410_disables_the_endpoint_and_recover_sends_what_it_missed() {
    let ops = Operator::new();
    let prefix = unique_task_id("ntf-gone");
    let (endpoint, _) = ops.endpoint(&prefix, &prefix, json!({})).await;
    let since = Timestamp::now().saturating_sub(Duration::from_secs(5));
    ops.script(&prefix, json!([{"status": 410}])).await;
    ops.fail_task(&format!("{prefix}-1")).await;
    let dead = ops
        .delivery_when(&endpoint, "the delivery to die", |d| d["status"] == "dead")
        .await;
    assert_eq!(dead["attempt_count"], 1, "a 410 is not retried");
    let (_, shown) = ops
        .call("GET", &format!("/endpoints/{endpoint}"), None)
        .await;
    assert_eq!(shown["endpoint"]["enabled"], false, "{shown}");

    // While disabled, outcomes are recorded, not sent.
    ops.fail_task(&format!("{prefix}-2")).await;
    ops.delivery_when(&endpoint, "a skipped delivery", |d| {
        d["status"] == "skipped_disabled"
    })
    .await;
    assert_eq!(ops.received(&prefix).await.len(), 1);

    // Enabled again, recover sends both (the dead one and the skipped one).
    let (status, _) = ops
        .call("POST", &format!("/endpoints/{endpoint}/enable"), None)
        .await;
    assert_eq!(status, 200);
    let until = Timestamp::now().saturating_add(Duration::from_secs(5));
    let window = json!({"since": since.to_rfc3339(), "until": until.to_rfc3339()});
    let (status, report) = ops
        .call(
            "POST",
            &format!("/endpoints/{endpoint}/recover"),
            Some(window),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["scanned"].clone(), report["replayed"].clone()),
        (json!(2), json!(2))
    );
    let got = ops.wait_received(&prefix, 3, Duration::from_secs(60)).await;
    let tasks: std::collections::BTreeSet<String> = got[1..]
        .iter()
        .map(|r| body_of(r)["data"]["task_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tasks, [format!("{prefix}-1"), format!("{prefix}-2")].into());
    ops.delete(&endpoint).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_429_waits_at_least_a_minute_then_delivers() {
    let ops = Operator::new();
    let prefix = unique_task_id("ntf-throttled");
    let (endpoint, _) = ops
        .endpoint(&prefix, &prefix, json!({"retry_schedule_secs": [0, 1, 1]}))
        .await;
    ops.script(
        &prefix,
        json!([{"status": 429, "headers": {"Retry-After": "1"}}]),
    )
    .await;
    ops.fail_task(&format!("{prefix}-1")).await;
    ops.wait_received(&prefix, 1, Duration::from_secs(60)).await;
    let first = Instant::now();
    ops.wait_received(&prefix, 2, Duration::from_secs(150))
        .await;
    let waited = first.elapsed();
    // Throttling waits at least 60 s whatever the schedule or Retry-After say (the
    // first request was seen up to a poll interval after it arrived).
    assert!(
        waited >= Duration::from_secs(55),
        "retried after {waited:?}"
    );
    let done = ops
        .delivery_when(&endpoint, "the delivery to succeed", |d| {
            d["status"] == "succeeded"
        })
        .await;
    assert_eq!(done["attempts"][0]["error_class"], "rate_limited");
    ops.delete(&endpoint).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wecom_error_inside_a_200_is_retried() {
    let ops = Operator::new();
    let prefix = unique_task_id("ntf-wecom");
    let (endpoint, secret) = ops
        .endpoint(
            &prefix,
            &prefix,
            json!({"kind": "wecom", "retry_schedule_secs": [0, 1, 1]}),
        )
        .await;
    assert!(secret.is_empty(), "chat kinds are not signed");
    ops.script(
        &prefix,
        json!([{"status": 200, "body": "{\"errcode\":40008,\"errmsg\":\"invalid message type\"}"},
               {"status": 200, "body": "{\"errcode\":0,\"errmsg\":\"ok\"}"}]),
    )
    .await;
    ops.fail_task(&format!("{prefix}-1")).await;
    let got = ops.wait_received(&prefix, 2, Duration::from_secs(90)).await;
    let message = body_of(&got[0]);
    assert_eq!(message["msgtype"], "markdown", "{message}");
    assert!(
        message["markdown"]["content"]
            .as_str()
            .unwrap()
            .contains(&format!("{prefix}-1"))
    );
    let done = ops
        .delivery_when(&endpoint, "the delivery to succeed", |d| {
            d["status"] == "succeeded"
        })
        .await;
    assert_eq!(done["attempt_count"], 2);
    assert_eq!(done["attempts"][0]["error_class"], "target_error");
    // Its URL is a credential: shown masked after creation.
    let (_, shown) = ops
        .call("GET", &format!("/endpoints/{endpoint}"), None)
        .await;
    assert!(
        !shown["endpoint"]["url"]
            .as_str()
            .unwrap()
            .contains(&format!("/hooks/{prefix}")),
        "{shown}"
    );
    ops.delete(&endpoint).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_endpoint_hears_once_per_three_completions() {
    let ops = Operator::new();
    let prefix = unique_task_id("ntf-batch");
    let (endpoint, secret) = ops
        .endpoint(
            &prefix,
            &prefix,
            json!({"threshold": {"mode": "batch", "n": 3, "max_wait_secs": 3600}}),
        )
        .await;
    for i in 0..3 {
        ops.fail_task(&format!("{prefix}-{i}")).await;
    }
    let got = ops.wait_received(&prefix, 1, Duration::from_secs(90)).await;
    assert!(signed_by(&secret, &got[0]));
    let event = body_of(&got[0]);
    assert_eq!(event["type"], "tasks.batch_completed", "{event}");
    assert_eq!(event["data"]["count"], 3);
    let mut members: Vec<String> = event["data"]["task_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    members.sort();
    assert_eq!(
        members,
        (0..3).map(|i| format!("{prefix}-{i}")).collect::<Vec<_>>()
    );
    // A fourth completion opens the next batch: nothing is sent for it yet.
    ops.fail_task(&format!("{prefix}-3")).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(ops.received(&prefix).await.len(), 1);
    ops.delete(&endpoint).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ed25519_endpoint_is_verified_with_its_public_key_alone() {
    let ops = Operator::new();
    let prefix = unique_task_id("ntf-ed25519");
    let (endpoint, public) = ops
        .endpoint(&prefix, &prefix, json!({"signing": "ed25519"}))
        .await;
    assert!(
        public.starts_with("whpk_"),
        "no shared secret exists, only {public}"
    );
    ops.fail_task(&format!("{prefix}-1")).await;
    let got = ops.wait_received(&prefix, 1, Duration::from_secs(90)).await;
    assert!(
        got[0]["headers"]["webhook-signature"]
            .as_str()
            .unwrap()
            .starts_with("v1a,")
    );
    assert_eq!(
        got[0]["signature"], "valid",
        "the shared verifier, with the public key only"
    );
    ops.delete(&endpoint).await;
}
