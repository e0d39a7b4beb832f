//! Forged and replayed requests against a receiver with all three schemes enabled and a
//! rotation in progress (an old and a new secret for each): every forgery is a 401 that
//! writes nothing; every genuine request (old or new secret) is recorded.

use base64::Engine as _;
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use shared::Timestamp;
use shared::domain::verify::{
    UPSTREAM_SIGNATURE_HEADER, UPSTREAM_TIMESTAMP_HEADER, WEBHOOK_ID_HEADER,
    WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER, standard_webhooks_signature,
    upstream_signature,
};
use shared::lambda::config::Env;
use shared::test_support::MemoryTaskStore;
use shared::test_support::fixtures::APIGW_V2_CALLBACK;

use crate::config::ReceiverConfig;
use crate::handler::Receiver;

const OLD_TOKEN: &str = "old-token-0123456789abcdef";
const NEW_TOKEN: &str = "new-token-0123456789abcdef";
const OLD_HMAC: &str = "old-upstream-secret-0123456789";
const NEW_HMAC: &str = "new-upstream-secret-0123456789";
const OLD_WHSEC: &[u8] = b"old-standard-webhooks-key-01234";
const NEW_WHSEC: &[u8] = b"new-standard-webhooks-key-01234";
const TASK: &str = "forged-task-1";

fn whsec(key: &[u8]) -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

fn body(task: &str) -> String {
    json!({"code": 200, "msg": "ok", "data": {"task_id": task, "video_url": "https://cdn.example/v.mp4"}})
        .to_string()
}

/// A request: the body, the query (`k=v` pairs) and headers, nothing else of the fixture's.
struct Forged {
    name: &'static str,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: String,
    /// Recorded (200) or refused (401).
    genuine: bool,
}

fn forged(name: &'static str, genuine: bool) -> Forged {
    Forged {
        name,
        query: Vec::new(),
        headers: Vec::new(),
        body: body(TASK),
        genuine,
    }
}

impl Forged {
    fn query(mut self, k: &str, v: &str) -> Self {
        self.query.push((k.into(), v.into()));
        self
    }

    fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }

    fn body(mut self, body: String) -> Self {
        self.body = body;
        self
    }

    fn upstream(self, secret: &str, task: &str, ts: i64) -> Self {
        let sig = upstream_signature(secret.as_bytes(), task, ts);
        self.header(UPSTREAM_TIMESTAMP_HEADER, &ts.to_string())
            .header(UPSTREAM_SIGNATURE_HEADER, &sig)
    }

    fn standard(self, key: &[u8], id: &str, ts: i64, signed: &str) -> Self {
        let sig = standard_webhooks_signature(key, id, ts, signed.as_bytes());
        self.header(WEBHOOK_ID_HEADER, id)
            .header(WEBHOOK_TIMESTAMP_HEADER, &ts.to_string())
            .header(WEBHOOK_SIGNATURE_HEADER, &sig)
    }

    fn request(&self) -> Request {
        let mut v: Value = serde_json::from_str(APIGW_V2_CALLBACK).unwrap();
        let raw_query: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        v["rawQueryString"] = raw_query.join("&").into();
        let mut params = serde_json::Map::new();
        for (k, val) in &self.query {
            // API Gateway v2 joins repeated parameters with commas; lambda_http splits them.
            let joined = match params.get(k).and_then(Value::as_str) {
                Some(prev) => format!("{prev},{val}"),
                None => val.clone(),
            };
            params.insert(k.clone(), joined.into());
        }
        v["queryStringParameters"] = Value::Object(params);
        let mut headers = json!({"content-type": "application/json"});
        for (k, val) in &self.headers {
            // Repeated headers arrive joined with commas, as API Gateway v2 sends them.
            let joined = match headers.get(k).and_then(Value::as_str) {
                Some(prev) => format!("{prev},{val}"),
                None => val.clone(),
            };
            headers[k] = joined.into();
        }
        v["headers"] = headers;
        v["body"] = self.body.clone().into();
        lambda_http::request::from_str(&v.to_string()).unwrap()
    }
}

fn rows(now: i64) -> Vec<Forged> {
    let sig = upstream_signature(NEW_HMAC.as_bytes(), TASK, now);
    let raw_sig = base64::engine::general_purpose::STANDARD
        .decode(&sig)
        .unwrap();
    let sw = standard_webhooks_signature(NEW_WHSEC, "msg_1", now, body(TASK).as_bytes());
    vec![
        // --- genuine, during a rotation ---
        forged("token, new", true).query("token", NEW_TOKEN),
        forged("token, old", true).query("token", OLD_TOKEN),
        forged("upstream HMAC, new secret", true).upstream(NEW_HMAC, TASK, now),
        forged("upstream HMAC, old secret", true).upstream(OLD_HMAC, TASK, now),
        forged(
            "upstream HMAC, retried 21 minutes later with its first timestamp",
            true,
        )
        .upstream(NEW_HMAC, TASK, now - 21 * 60),
        forged("Standard Webhooks, new key", true).standard(NEW_WHSEC, "msg_1", now, &body(TASK)),
        forged("Standard Webhooks, old key", true).standard(OLD_WHSEC, "msg_1", now, &body(TASK)),
        forged("Standard Webhooks, both signatures listed", true)
            .header(WEBHOOK_ID_HEADER, "msg_1")
            .header(WEBHOOK_TIMESTAMP_HEADER, &now.to_string())
            .header(
                WEBHOOK_SIGNATURE_HEADER,
                &format!(
                    "{} {}",
                    standard_webhooks_signature(OLD_WHSEC, "msg_1", now, body(TASK).as_bytes()),
                    sw
                ),
            ),
        forged(
            "Standard Webhooks, a malformed entry beside a good one",
            true,
        )
        .header(WEBHOOK_ID_HEADER, "msg_1")
        .header(WEBHOOK_TIMESTAMP_HEADER, &now.to_string())
        .header(WEBHOOK_SIGNATURE_HEADER, &format!("v1, {sw}")),
        // --- token forgeries ---
        forged("no credentials at all", false),
        forged("wrong token", false).query("token", "new-token-0123456789abcdeX"),
        forged("token prefix", false).query("token", &NEW_TOKEN[..NEW_TOKEN.len() - 1]),
        forged("token extended", false).query("token", &format!("{NEW_TOKEN}x")),
        forged("token empty", false).query("token", ""),
        forged("token in another parameter", false).query("Token", NEW_TOKEN),
        forged("token as access_token", false).query("access_token", NEW_TOKEN),
        forged("token in an Authorization header", false)
            .header("authorization", &format!("Bearer {NEW_TOKEN}")),
        forged("token in an x-token header", false).header("x-token", NEW_TOKEN),
        forged("token twice (good, bad)", false)
            .query("token", NEW_TOKEN)
            .query("token", "nope-nope-nope-nope"),
        forged("token twice (good, good)", false)
            .query("token", NEW_TOKEN)
            .query("token", NEW_TOKEN),
        forged("token of another deployment", false).query("token", "prod-token-0123456789abcdef"),
        // --- upstream HMAC forgeries ---
        forged("upstream: wrong secret", false).upstream(
            "wrong-upstream-secret-0123456",
            TASK,
            now,
        ),
        forged("upstream: signed for another task id", false).upstream(
            NEW_HMAC,
            "another-task",
            now,
        ),
        forged("upstream: replayed onto another task's body", false)
            .upstream(NEW_HMAC, TASK, now)
            .body(body("forged-task-2")),
        forged("upstream: stale (past the 30-minute window)", false).upstream(
            NEW_HMAC,
            TASK,
            now - 1801,
        ),
        forged("upstream: from the future", false).upstream(NEW_HMAC, TASK, now + 1801),
        forged("upstream: captured and replayed after the window", false).upstream(
            NEW_HMAC,
            TASK,
            now - 3600,
        ),
        forged("upstream: signature one byte short", false)
            .header(UPSTREAM_TIMESTAMP_HEADER, &now.to_string())
            .header(
                UPSTREAM_SIGNATURE_HEADER,
                &base64::engine::general_purpose::STANDARD.encode(&raw_sig[..31]),
            ),
        forged("upstream: signature one byte long", false)
            .header(UPSTREAM_TIMESTAMP_HEADER, &now.to_string())
            .header(
                UPSTREAM_SIGNATURE_HEADER,
                &base64::engine::general_purpose::STANDARD
                    .encode([raw_sig.as_slice(), &[0]].concat()),
            ),
        forged("upstream: signature truncated text", false)
            .header(UPSTREAM_TIMESTAMP_HEADER, &now.to_string())
            .header(UPSTREAM_SIGNATURE_HEADER, &sig[..sig.len() - 3]),
        forged("upstream: signature not base64", false)
            .header(UPSTREAM_TIMESTAMP_HEADER, &now.to_string())
            .header(UPSTREAM_SIGNATURE_HEADER, "!!!!"),
        forged("upstream: signed with another timestamp", false)
            .header(UPSTREAM_TIMESTAMP_HEADER, &(now - 5).to_string())
            .header(UPSTREAM_SIGNATURE_HEADER, &sig),
        forged("upstream: timestamp not a number", false)
            .header(UPSTREAM_TIMESTAMP_HEADER, "yesterday")
            .header(UPSTREAM_SIGNATURE_HEADER, &sig),
        forged("upstream: timestamp in milliseconds", false)
            .header(UPSTREAM_TIMESTAMP_HEADER, &(now * 1000).to_string())
            .header(UPSTREAM_SIGNATURE_HEADER, &sig),
        forged("upstream: signature without timestamp", false)
            .header(UPSTREAM_SIGNATURE_HEADER, &sig),
        forged("upstream: timestamp without signature", false)
            .header(UPSTREAM_TIMESTAMP_HEADER, &now.to_string()),
        forged("upstream: the signature header twice", false)
            .upstream(NEW_HMAC, TASK, now)
            .header(UPSTREAM_SIGNATURE_HEADER, &sig),
        // --- Standard Webhooks forgeries ---
        forged("sw: signature over another body", false).standard(
            NEW_WHSEC,
            "msg_1",
            now,
            &body("forged-task-2"),
        ),
        forged("sw: signature for another message id", false)
            .header(WEBHOOK_ID_HEADER, "msg_2")
            .header(WEBHOOK_TIMESTAMP_HEADER, &now.to_string())
            .header(WEBHOOK_SIGNATURE_HEADER, &sw),
        forged("sw: wrong key", false).standard(
            b"wrong-standard-webhooks-key-012",
            "msg_1",
            now,
            &body(TASK),
        ),
        forged("sw: stale", false).standard(NEW_WHSEC, "msg_1", now - 301, &body(TASK)),
        forged("sw: from the future", false).standard(NEW_WHSEC, "msg_1", now + 301, &body(TASK)),
        forged("sw: captured and replayed after the window", false).standard(
            NEW_WHSEC,
            "msg_1",
            now - 900,
            &body(TASK),
        ),
        forged("sw: v1, alone", false)
            .header(WEBHOOK_ID_HEADER, "msg_1")
            .header(WEBHOOK_TIMESTAMP_HEADER, &now.to_string())
            .header(WEBHOOK_SIGNATURE_HEADER, "v1,"),
        forged("sw: truncated signature", false)
            .header(WEBHOOK_ID_HEADER, "msg_1")
            .header(WEBHOOK_TIMESTAMP_HEADER, &now.to_string())
            .header(WEBHOOK_SIGNATURE_HEADER, &sw[..sw.len() - 4]),
        forged("sw: another version only", false)
            .header(WEBHOOK_ID_HEADER, "msg_1")
            .header(WEBHOOK_TIMESTAMP_HEADER, &now.to_string())
            .header(WEBHOOK_SIGNATURE_HEADER, &sw.replacen("v1,", "v2,", 1)),
        forged("sw: the signature header twice", false)
            .standard(NEW_WHSEC, "msg_1", now, &body(TASK))
            .header(WEBHOOK_SIGNATURE_HEADER, &sw),
        forged("sw: missing id", false)
            .header(WEBHOOK_TIMESTAMP_HEADER, &now.to_string())
            .header(WEBHOOK_SIGNATURE_HEADER, &sw),
        forged("sw: overlong id", false)
            .header(WEBHOOK_ID_HEADER, &"m".repeat(300))
            .header(WEBHOOK_TIMESTAMP_HEADER, &now.to_string())
            .header(WEBHOOK_SIGNATURE_HEADER, &sw),
        forged("sw: signed in the body's place by the token's value", false)
            .header(WEBHOOK_ID_HEADER, "msg_1")
            .header(WEBHOOK_TIMESTAMP_HEADER, &now.to_string())
            .header(WEBHOOK_SIGNATURE_HEADER, &format!("v1,{NEW_TOKEN}")),
    ]
}

fn read(response: &Response<Body>) -> Value {
    serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null)
}

#[tokio::test]
async fn forgeries_are_401_and_write_nothing_genuine_requests_pass() {
    let config = ReceiverConfig::from_env(&Env::from_pairs([
        ("TABLE_NAME", "t"),
        ("CALLBACK_TOKENS", &format!("{OLD_TOKEN},{NEW_TOKEN}")),
        ("UPSTREAM_HMAC_SECRETS", &format!("{OLD_HMAC},{NEW_HMAC}")),
        (
            "STANDARD_WEBHOOKS_SECRETS",
            &format!("{} {}", whsec(OLD_WHSEC), whsec(NEW_WHSEC)),
        ),
    ]))
    .unwrap();
    let now = Timestamp::now().as_secs();
    let rows = rows(now);
    let mut wrong = Vec::new();
    let (mut forgeries, mut rejected) = (0, 0);
    for row in &rows {
        let receiver = Receiver::new(MemoryTaskStore::default(), config.clone());
        let response = receiver.handle(row.request()).await;
        let written = !receiver.store_is_empty();
        let status = response.status().as_u16();
        let expected = if row.genuine { 200 } else { 401 };
        if status != expected || written != row.genuine {
            wrong.push(format!(
                "{}: {status} {} (written: {written})",
                row.name,
                read(&response)
            ));
        }
        if !row.genuine {
            forgeries += 1;
            if status == 401 && !written {
                rejected += 1;
                assert_eq!(read(&response)["error"], "unauthorized");
            }
        }
    }
    println!(
        "FORGED rows {} forgeries {forgeries} rejected {rejected} genuine {}",
        rows.len(),
        rows.len() - forgeries
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
