//! A simulated upstream music-video API: `GET /api/v1/mp4/record-info?taskId=…` with a
//! Bearer key, answering what a test (or `make run`'s operator) set for the task, and
//! `PENDING` for tasks it has not been told about. `PUT /admin/tasks/{id}` sets a task's
//! record (`{"successFlag": "SUCCESS", "videoUrl": "…"}`, or `errorCode`/`errorMessage`);
//! `GET /admin/calls/{id}` counts the record-info calls for it. Binds to 127.0.0.1.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::http1::{read_request, respond};

#[derive(Debug, Default)]
struct State {
    records: HashMap<String, Value>,
    calls: HashMap<String, u32>,
}

/// A running simulated upstream.
#[derive(Debug)]
pub struct UpstreamApi {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl UpstreamApi {
    /// Listens on 127.0.0.1:`port` (0: any free port), accepting `key` only.
    pub async fn start(port: u16, key: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let state: Arc<Mutex<State>> = Arc::default();
        let shared = Arc::clone(&state);
        let bearer = format!("Bearer {key}");
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&shared);
                let bearer = bearer.clone();
                tokio::spawn(async move {
                    let Ok(Some(req)) = read_request(&mut stream).await else {
                        return;
                    };
                    let (status, body) = answer(&state, &bearer, &req);
                    let _ = respond(
                        &mut stream,
                        status,
                        &[("Content-Type", "application/json")],
                        body.to_string().as_bytes(),
                    )
                    .await;
                });
            }
        });
        Ok(Self { addr, state, task })
    }

    /// The base URL to configure as `UPSTREAM_API_BASE`.
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// `task_id` finished with a video at `video_url`.
    pub fn succeed(&self, task_id: &str, video_url: &str) {
        self.set(
            task_id,
            json!({"successFlag": "SUCCESS", "response": {"videoUrl": video_url}}),
        );
    }

    /// `task_id` failed with `code` (e.g. 451) and `message`.
    pub fn fail(&self, task_id: &str, code: u16, message: &str) {
        self.set(task_id, json!({"successFlag": "GENERATE_MP4_FAILED", "errorCode": code, "errorMessage": message}));
    }

    pub fn set(&self, task_id: &str, record: Value) {
        self.lock().records.insert(task_id.to_owned(), record);
    }

    /// record-info calls for `task_id` so far.
    pub fn calls(&self, task_id: &str) -> u32 {
        self.lock().calls.get(task_id).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for UpstreamApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(state: &Mutex<State>, bearer: &str, req: &crate::http1::Request) -> (u16, Value) {
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    let path = req.path();
    if req.method == "PUT" {
        if let Some(id) = path.strip_prefix("/admin/tasks/") {
            return match serde_json::from_slice::<Value>(&req.body) {
                Ok(record) => {
                    state.records.insert(id.to_owned(), record);
                    (200, json!({"ok": true}))
                }
                Err(e) => (400, json!({"error": e.to_string()})),
            };
        }
    }
    if req.method == "GET" {
        if let Some(id) = path.strip_prefix("/admin/calls/") {
            return (
                200,
                json!({"calls": state.calls.get(id).copied().unwrap_or(0)}),
            );
        }
        if path == "/api/v1/mp4/record-info" {
            if req.header("authorization") != Some(bearer) {
                return (401, json!({"code": 401, "msg": "invalid api key"}));
            }
            let Some(id) = req.query("taskId") else {
                return (200, json!({"code": 422, "msg": "taskId is required"}));
            };
            *state.calls.entry(id.to_owned()).or_insert(0) += 1;
            let mut data = state
                .records
                .get(id)
                .cloned()
                .unwrap_or_else(|| json!({"successFlag": "PENDING"}));
            data["taskId"] = json!(id);
            return (200, json!({"code": 200, "msg": "success", "data": data}));
        }
    }
    (404, json!({"code": 404, "msg": "not found"}))
}
