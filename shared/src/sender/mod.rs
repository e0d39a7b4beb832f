//! The notification sender port: one POST of a rendered, signed body to an endpoint, and
//! what came back, as [`Sent`] (any answer, even a 500: `classify` decides what it
//! means) or [`SendFailed`] (no answer). [`http`] is the adapter (SSRF-guarded, no
//! redirects, 15 s for the whole exchange); `scripted` (feature `test-support`) the fake.

#[cfg(feature = "fetch")]
pub mod http;
#[cfg(feature = "test-support")]
pub mod scripted;

use std::future::Future;
use std::time::Duration;

use url::Url;

use crate::domain::notify::classify::{Attempted, TransportError};

/// How long one attempt may take, answer included.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(15);
/// Bytes of an answer read and kept (the rest is not read).
pub const ANSWER_KEPT: usize = 4 * 1024;

/// One request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub url: Url,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// An answer, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub status: u16,
    pub retry_after: Option<String>,
    /// The first [`ANSWER_KEPT`] bytes.
    pub body: Vec<u8>,
    pub took: Duration,
}

/// No answer: why, and a detail for the log (never the URL: chat URLs are secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct SendFailed {
    pub error: TransportError,
    pub detail: String,
    pub took: Duration,
}

impl Sent {
    pub fn attempted(&self) -> Attempted<'_> {
        Attempted::Answered {
            status: self.status,
            retry_after: self.retry_after.as_deref(),
            body: &self.body,
        }
    }
}

impl SendFailed {
    pub fn attempted(&self) -> Attempted<'static> {
        Attempted::Failed(self.error)
    }
}

/// Sends notifications.
pub trait Sender: Send + Sync {
    fn send(&self, request: Outgoing) -> impl Future<Output = Result<Sent, SendFailed>> + Send;
}
