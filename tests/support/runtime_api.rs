//! A minimal Lambda Runtime API: hands events, one at a time, to a function process
//! started with `AWS_LAMBDA_RUNTIME_API` pointing here, records each response (or error)
//! by request id, and keeps the process waiting when there is nothing to do, as Lambda
//! does. For tests that run the real binaries (a killed invocation, what each binary
//! logs, a whole suite of callbacks through one warm receiver process).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::http1::{read_request, respond};

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<(String, Value)>,
    next_id: u64,
    responses: HashMap<String, Value>,
    errors: HashMap<String, String>,
}

/// A runtime API with a queue of events to hand out.
#[derive(Debug)]
pub struct RuntimeApi {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    queued: Arc<Notify>,
    deadline: Duration,
    task: tokio::task::JoinHandle<()>,
}

/// The id of the first event of [`RuntimeApi::start`].
const FIRST: &str = "inv-0";

impl RuntimeApi {
    /// Serves `event` once, with a deadline `deadline` from when it is handed out.
    pub async fn start(event: Value, deadline: Duration) -> std::io::Result<Self> {
        let api = Self::idle(deadline).await?;
        api.push(event);
        Ok(api)
    }

    /// A runtime API with nothing queued yet (see [`RuntimeApi::push`]).
    pub async fn idle(deadline: Duration) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let queued = Arc::new(Notify::new());
        let (shared, notify) = (Arc::clone(&state), Arc::clone(&queued));
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let (state, notify) = (Arc::clone(&shared), Arc::clone(&notify));
                tokio::spawn(async move {
                    let Ok(Some(req)) = read_request(&mut stream).await else {
                        return;
                    };
                    if req.method == "GET" && req.path().ends_with("/runtime/invocation/next") {
                        // Nothing queued: the function waits, as on a warm, idle Lambda.
                        let (id, event) = loop {
                            let waiting = notify.notified();
                            let next = lock(&state).queue.pop_front();
                            if let Some(next) = next {
                                break next;
                            }
                            waiting.await;
                        };
                        let deadline_ms = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap_or_default()
                            .as_millis()
                            + deadline.as_millis();
                        let deadline_ms = deadline_ms.to_string();
                        let _ = respond(
                            &mut stream,
                            200,
                            &[
                                ("Content-Type", "application/json"),
                                ("Lambda-Runtime-Aws-Request-Id", &id),
                                ("Lambda-Runtime-Deadline-Ms", &deadline_ms),
                                (
                                    "Lambda-Runtime-Invoked-Function-Arn",
                                    "arn:aws:lambda:us-east-1:123456789012:function:test",
                                ),
                            ],
                            event.to_string().as_bytes(),
                        )
                        .await;
                        return;
                    }
                    // /2018-06-01/runtime/invocation/{id}/response or /error
                    let path = req.path().to_owned();
                    let mut parts = path.rsplit('/');
                    let (kind, id) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                    {
                        let mut s = lock(&state);
                        match kind {
                            "response" => {
                                let body = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
                                s.responses.insert(id.to_owned(), body);
                            }
                            "error" => {
                                let body = String::from_utf8_lossy(&req.body).into_owned();
                                s.errors.insert(id.to_owned(), body);
                            }
                            _ => {}
                        }
                    }
                    let _ = respond(&mut stream, 202, &[], b"").await;
                });
            }
        });
        Ok(Self {
            addr,
            state,
            queued,
            deadline,
            task,
        })
    }

    /// Queues `event`; returns its request id.
    pub fn push(&self, event: Value) -> String {
        let id = {
            let mut s = lock(&self.state);
            let id = format!("inv-{}", s.next_id);
            s.next_id += 1;
            s.queue.push_back((id.clone(), event));
            id
        };
        self.queued.notify_waiters();
        id
    }

    /// Queues `event` and waits (up to the deadline) for the function's answer to it.
    pub async fn invoke(&self, event: Value) -> Result<Value, String> {
        let id = self.push(event);
        let started = std::time::Instant::now();
        loop {
            if let Some(r) = self.response_to(&id) {
                return Ok(r);
            }
            if let Some(e) = self.error_of(&id) {
                return Err(e);
            }
            if started.elapsed() > self.deadline + Duration::from_secs(5) {
                return Err(format!("no answer to {id} within the deadline"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// The function's response to the first event, once it sent one.
    pub fn response(&self) -> Option<Value> {
        self.response_to(FIRST)
    }

    /// The function's error report for the first event, if any.
    pub fn error(&self) -> Option<String> {
        self.error_of(FIRST)
    }

    pub fn response_to(&self, id: &str) -> Option<Value> {
        lock(&self.state).responses.get(id).cloned()
    }

    pub fn error_of(&self, id: &str) -> Option<String> {
        lock(&self.state).errors.get(id).cloned()
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}
