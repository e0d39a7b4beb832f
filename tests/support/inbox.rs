//! The local notification inbox: a webhook receiver for `make run` and the stack tests.
//! Every POST under `/hooks/<name>` is recorded (headers, body, arrival) and its
//! Standard Webhooks signature checked with the shared verifier (`shared::domain::verify`),
//! the one the receiver itself uses, under the secret the inbox was given for `<name>`.
//! The answer is scripted per name (for the retry, 410, 429 and chat-error cases): 200
//! once the script is used up.
//!
//! ```text
//! PUT  /_secret/<name>     body: the endpoint's whsec_ secret (as POST /endpoints returned it),
//!                          or, for an ed25519 endpoint, its whpk_ public key
//! PUT  /_script/<name>     body: [{"status": 503, "body": "...", "headers": {...}, "delay_s": 0,
//!                                  "match": "only for bodies containing this"}, ...]
//! GET  /_requests/<name>   what arrived, oldest first:
//!                          [{"at", "headers", "body", "signature": "valid" | "unsigned" |
//!                            "no_secret" | "invalid: <why>"}, ...]
//! POST /hooks/<name>       a notification
//! ```
//! Binds 127.0.0.1 only. With a log path, each notification is also one JSON line there.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use shared::Timestamp;
use shared::domain::secret::Secret;
use shared::domain::verify::standard_webhooks::decode_whsec;
use shared::domain::verify::{CallbackRequest, Verifier, decode_whpk};
use tokio::net::TcpListener;

use crate::http1::{Request, read_request, respond};

#[derive(Debug, Default)]
struct State {
    secrets: HashMap<String, String>,
    scripts: HashMap<String, Vec<Value>>,
    requests: HashMap<String, Vec<Value>>,
}

/// A running inbox.
#[derive(Debug)]
pub struct Inbox {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Inbox {
    /// Listens on 127.0.0.1:`port` (0: any free port).
    pub async fn start(port: u16, log: Option<PathBuf>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let state: Arc<Mutex<State>> = Arc::default();
        let log = Arc::new(log);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let (state, log) = (Arc::clone(&state), Arc::clone(&log));
                tokio::spawn(async move {
                    let Ok(Some(req)) = read_request(&mut stream).await else {
                        return;
                    };
                    let (status, headers, body, delay) =
                        answer(&state, log.as_ref().as_ref(), &req);
                    if let Some(delay) = delay {
                        tokio::time::sleep(delay).await;
                    }
                    let headers: Vec<(&str, &str)> = headers
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    let _ = respond(&mut stream, status, &headers, body.as_bytes()).await;
                });
            }
        });
        Ok(Self { addr, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

type Answer = (u16, Vec<(String, String)>, String, Option<Duration>);

fn json_answer(status: u16, body: &Value) -> Answer {
    let headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
    (status, headers, body.to_string(), None)
}

fn name_after<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let name = path.strip_prefix(prefix)?.trim_matches('/');
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

fn answer(state: &Mutex<State>, log: Option<&PathBuf>, req: &Request) -> Answer {
    let path = req.path();
    match req.method.as_str() {
        "PUT" => {
            if let Some(name) = name_after(path, "/_secret/") {
                let secret = String::from_utf8_lossy(&req.body).trim().to_owned();
                lock(state).secrets.insert(name.to_owned(), secret);
                return (204, Vec::new(), String::new(), None);
            }
            if let Some(name) = name_after(path, "/_script/") {
                return match serde_json::from_slice::<Vec<Value>>(&req.body) {
                    Ok(script) if script.iter().all(Value::is_object) => {
                        lock(state).scripts.insert(name.to_owned(), script);
                        (204, Vec::new(), String::new(), None)
                    }
                    _ => json_answer(400, &json!({"error": "a JSON list of answers"})),
                };
            }
            json_answer(404, &json!({"error": "not_found"}))
        }
        "GET" => match name_after(path, "/_requests/") {
            Some(name) => {
                let got = lock(state).requests.get(name).cloned().unwrap_or_default();
                json_answer(200, &Value::Array(got))
            }
            None => json_answer(404, &json!({"error": "not_found"})),
        },
        "POST" => match name_after(path, "/hooks/") {
            Some(name) => notification(state, log, name, req),
            None => json_answer(404, &json!({"error": "not_found"})),
        },
        _ => json_answer(405, &json!({"error": "method_not_allowed"})),
    }
}

/// `valid`, `unsigned`, `no_secret` or `invalid: <why>`, by the shared verifier.
fn signature(secret: Option<&str>, req: &Request) -> String {
    if req.header("webhook-signature").is_none() {
        return "unsigned".into();
    }
    let Some(secret) = secret else {
        return "no_secret".into();
    };
    let verifier = if secret.starts_with("whpk_") {
        // An ed25519 endpoint: its public key checks the `v1a` entries.
        let Ok(public) = decode_whpk(secret) else {
            return "invalid: the inbox's whpk_ key does not decode".into();
        };
        Verifier::default().with_standard_webhooks_public_keys(vec![public])
    } else {
        let Ok(key) = decode_whsec(secret) else {
            return "invalid: the inbox's secret is neither whsec_ nor whpk_".into();
        };
        Verifier::default().with_standard_webhooks(vec![Secret::new(key)])
    };
    let mut headers = http::HeaderMap::new();
    for (name, value) in &req.headers {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    }
    let request = CallbackRequest {
        tokens: &[],
        headers: &headers,
        body: &req.body,
    };
    match verifier.verify(&request, Timestamp::now()) {
        Ok(_) => "valid".into(),
        Err(rejected) => format!("invalid: {}", rejected.summary()),
    }
}

fn notification(state: &Mutex<State>, log: Option<&PathBuf>, name: &str, req: &Request) -> Answer {
    let secret = lock(state).secrets.get(name).cloned();
    let body = String::from_utf8_lossy(&req.body).into_owned();
    let headers: serde_json::Map<String, Value> = req
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), Value::from(v.as_str())))
        .collect();
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    let entry = json!({
        "at": at,
        "headers": headers,
        "body": body,
        "signature": signature(secret.as_deref(), req),
    });
    let scripted = {
        let mut s = lock(state);
        s.requests
            .entry(name.to_owned())
            .or_default()
            .push(entry.clone());
        // The first scripted answer for this request (one with "match" only answers a
        // body containing it), used up.
        let script = s.scripts.entry(name.to_owned()).or_default();
        let at = script.iter().position(|a| {
            a.get("match")
                .and_then(Value::as_str)
                .is_none_or(|m| body.contains(m))
        });
        at.map(|i| script.remove(i))
    };
    let status = scripted
        .as_ref()
        .and_then(|a| a["status"].as_u64())
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or(200);
    if let Some(path) = log {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let line = json!({"hook": name, "answered": status, "entry": entry});
            let _ = writeln!(f, "{line}");
        }
    }
    let Some(a) = scripted else {
        return json_answer(200, &json!({"ok": true}));
    };
    let mut headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
    if let Some(extra) = a["headers"].as_object() {
        headers.extend(
            extra
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())),
        );
    }
    let body = a["body"]
        .as_str()
        .map_or_else(|| r#"{"ok":true}"#.to_owned(), str::to_owned);
    let delay = a["delay_s"].as_f64().map(Duration::from_secs_f64);
    (status, headers, body, delay)
}
