//! A scripted sender (feature `test-support`): answers each send with the next scripted
//! outcome and records every request, so the deliver use case is tested without a server.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use super::{Outgoing, SendFailed, Sender, Sent};
use crate::domain::notify::classify::TransportError;

#[derive(Debug, Default)]
pub struct ScriptedSender {
    script: Mutex<VecDeque<Result<Sent, SendFailed>>>,
    sent: Mutex<Vec<Outgoing>>,
}

impl ScriptedSender {
    /// Answers with `status` and `body` next.
    pub fn answer(&self, status: u16, body: &str) -> &Self {
        self.push(Ok(Sent {
            status,
            retry_after: None,
            body: body.as_bytes().to_vec(),
            took: Duration::from_millis(12),
        }))
    }

    /// Fails without an answer next.
    pub fn fail(&self, error: TransportError) -> &Self {
        self.push(Err(SendFailed {
            error,
            detail: format!("scripted {error:?}"),
            took: Duration::from_millis(3),
        }))
    }

    fn push(&self, outcome: Result<Sent, SendFailed>) -> &Self {
        self.script
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(outcome);
        self
    }

    /// Every request sent so far.
    pub fn requests(&self) -> Vec<Outgoing> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Sender for ScriptedSender {
    async fn send(&self, request: Outgoing) -> Result<Sent, SendFailed> {
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(request);
        // An unscripted send is a 200: tests script only what they look at.
        self.script
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
            .unwrap_or_else(|| {
                Ok(Sent {
                    status: 200,
                    retry_after: None,
                    body: Vec::new(),
                    took: Duration::from_millis(12),
                })
            })
    }
}
