//! The local notification inbox on its own (no stack needed): signatures checked with the
//! shared verifier under the secret it was given, scripted answers used up in order (a
//! `match` only for the bodies containing it), and everything recorded.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

use integration_tests::inbox::Inbox;
use serde_json::{Value, json};
use shared::Timestamp;
use shared::domain::notify::signing::{SigningKeys, whsec};
use shared::domain::secret::Secret;

async fn post(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, String)],
    body: &str,
) -> (u16, Option<String>) {
    let mut request = client.post(url).body(body.to_owned());
    for (k, v) in headers {
        request = request.header(*k, v);
    }
    let response = request.send().await.unwrap();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), retry_after)
}

async fn requests(client: &reqwest::Client, inbox: &Inbox, name: &str) -> Vec<Value> {
    let url = format!("{}/_requests/{name}", inbox.url());
    client.get(url).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn the_inbox_verifies_with_the_shared_verifier_and_answers_as_scripted() {
    let inbox = Inbox::start(0, None).await.unwrap();
    let client = reqwest::Client::new();
    let key = Secret::new(b"0123456789abcdef0123456789abcdef".to_vec());
    let secret = whsec(&key);
    let put = client
        .put(format!("{}/_secret/a", inbox.url()))
        .body(secret)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    let script = json!([{"status": 503}, {"status": 429, "headers": {"Retry-After": "7"}},
                        {"status": 500, "match": "only-this"}]);
    let put = client
        .put(format!("{}/_script/a", inbox.url()))
        .json(&script)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);

    let hook = format!("{}/hooks/a", inbox.url());
    let keys = SigningKeys::new(key);
    let body = r#"{"type":"test"}"#;
    let signed = keys
        .headers("evt_1", Timestamp::now(), body.as_bytes())
        .to_vec();
    assert_eq!(post(&client, &hook, &signed, body).await, (503, None));
    assert_eq!(
        post(&client, &hook, &signed, "tampered").await,
        (429, Some("7".into()))
    );
    assert_eq!(
        post(&client, &hook, &[], body).await.0,
        200,
        "the match-only answer waits"
    );
    assert_eq!(post(&client, &hook, &[], "only-this").await.0, 500);
    let other = format!("{}/hooks/b", inbox.url());
    assert_eq!(post(&client, &other, &signed, body).await.0, 200);

    let got = requests(&client, &inbox, "a").await;
    let verdicts: Vec<&str> = got
        .iter()
        .map(|g| g["signature"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts[0], "valid");
    assert!(verdicts[1].starts_with("invalid"), "{verdicts:?}");
    assert_eq!(&verdicts[2..], ["unsigned", "unsigned"]);
    assert_eq!(got[0]["headers"]["webhook-id"], "evt_1");
    assert_eq!(got[1]["body"], "tampered");
    let b = requests(&client, &inbox, "b").await;
    assert_eq!(b[0]["signature"], "no_secret");
    let wrong = client
        .post(format!("{}/elsewhere", inbox.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 404);
}
