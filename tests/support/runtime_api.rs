//! A minimal Lambda Runtime API: hands one event to a function process started with
//! `AWS_LAMBDA_RUNTIME_API` pointing here, records its response (or error), and then
//! keeps the process waiting for the next event, as Lambda does. For tests that run the
//! real binaries (a killed invocation, what each binary logs).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;

use crate::http1::{read_request, respond};

#[derive(Debug, Default)]
struct State {
    event: Option<Value>,
    response: Option<Value>,
    error: Option<String>,
}

/// A runtime API with one event to hand out.
#[derive(Debug)]
pub struct RuntimeApi {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl RuntimeApi {
    /// Serves `event` once, with a deadline `deadline` from now.
    pub async fn start(event: Value, deadline: Duration) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            event: Some(event),
            ..State::default()
        }));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let Ok(Some(req)) = read_request(&mut stream).await else {
                        return;
                    };
                    if req.method == "GET" && req.path().ends_with("/runtime/invocation/next") {
                        let event = state.lock().unwrap_or_else(|p| p.into_inner()).event.take();
                        let Some(event) = event else {
                            // No more events: the function waits, as on a warm, idle Lambda.
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
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
                                ("Lambda-Runtime-Aws-Request-Id", "inv-runtime-api"),
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
                    {
                        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                        if req.path().ends_with("/response") {
                            s.response = serde_json::from_slice(&req.body).ok();
                        } else if req.path().ends_with("/error") {
                            s.error = Some(String::from_utf8_lossy(&req.body).into_owned());
                        }
                    }
                    let _ = respond(&mut stream, 202, &[], b"").await;
                });
            }
        });
        Ok(Self { addr, state, task })
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// The function's response, once it sent one.
    pub fn response(&self) -> Option<Value> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .response
            .clone()
    }

    /// The function's error report, if any.
    pub fn error(&self) -> Option<String> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .error
            .clone()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}
