//! The video source port and its adapter: where ingest reads a video from. The port is
//! a stream of chunks with an offset ([`VideoSource`], opened by an [`Origin`]); the
//! adapter ([`http`]) is one streaming GET through the SSRF-guarded client ([`client`])
//! that resumes broken downloads with `Range`. What a source answers is classified here:
//! permanent (the task fails) or transient (retried, then left to the next attempt).

pub mod client;
pub mod http;
#[cfg(feature = "test-support")]
pub mod scripted;

use std::future::Future;

use bytes::Bytes;
use reqwest::StatusCode;
use url::Url;

use crate::domain::ssrf::Blocked;
use crate::domain::task::FailureReason;
use client::{GuardRefusal, guard_cause};

/// Opens sources: one [`VideoSource`] per attempt from byte 0.
pub trait Origin: Send + Sync {
    type Source: VideoSource;

    /// Sends the first request for `url` (retrying transient failures) and checks the answer.
    fn open(&self, url: &Url) -> impl Future<Output = Result<Self::Source, SourceError>> + Send;
}

/// An open download: the video's bytes in order, from byte 0.
pub trait VideoSource: Send {
    /// The next bytes, `None` at the end. A source resumes broken connections itself;
    /// an error means it cannot (or must not) go on.
    fn next_chunk(&mut self) -> impl Future<Output = Result<Option<Bytes>, SourceError>> + Send;

    /// Bytes delivered so far.
    fn offset(&self) -> u64;

    /// Ranged requests sent to resume.
    fn ranged_requests(&self) -> u32;

    /// The video's length, when the source declared it (`Content-Length`).
    fn length(&self) -> Option<u64> {
        None
    }
}

/// Why the source cannot deliver (more) bytes.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("blocked by the SSRF guard: {0}")]
    Blocked(Blocked),
    #[error("too many redirects")]
    TooManyRedirects,
    #[error("source answered HTTP {0}")]
    Status(StatusCode),
    #[error("source sent content type {0:?}, which is never a video")]
    NotVideo(String),
    #[error("source has {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: u64, limit: u64 },
    #[error("transport error: {0}")]
    Transport(#[source] reqwest::Error),
    #[error("connection ended after {received} of {expected} bytes")]
    Truncated { received: u64, expected: u64 },
    /// The server will not continue where we stopped; the transfer must restart from 0.
    #[error("cannot resume at byte {offset}: {mismatch}")]
    CannotResume {
        offset: u64,
        mismatch: ResumeMismatch,
    },
    /// The source's length was never confirmed: no Content-Length, no Content-Range total,
    /// and the final range probe was not answered `416` with `bytes */N`.
    #[error("the length of the {received} bytes received could not be confirmed: {why}")]
    LengthUnconfirmed { received: u64, why: String },
    #[error("gave up after {retries} retries; last error: {last}")]
    RetriesExhausted {
        retries: u32,
        last: Box<SourceError>,
    },
}

impl SourceError {
    /// `Some(reason)` when retrying cannot help and the task must fail.
    pub fn failure_reason(&self) -> Option<FailureReason> {
        match self {
            Self::Blocked(_) => Some(FailureReason::BlockedUrl),
            Self::TooManyRedirects => Some(FailureReason::TooManyRedirects),
            Self::Status(status) => permanent_status(*status),
            Self::NotVideo(_) => Some(FailureReason::NotMp4),
            Self::TooLarge { .. } => Some(FailureReason::TooLarge),
            Self::LengthUnconfirmed { .. } => Some(FailureReason::LengthUnconfirmed),
            Self::Transport(_)
            | Self::Truncated { .. }
            | Self::CannotResume { .. }
            | Self::RetriesExhausted { .. } => None,
        }
    }

    pub(crate) fn is_transient(&self) -> bool {
        self.failure_reason().is_none()
            && !matches!(
                self,
                Self::CannotResume { .. } | Self::RetriesExhausted { .. }
            )
    }

    pub(crate) fn from_reqwest(err: reqwest::Error) -> Self {
        match guard_cause(&err) {
            Some(GuardRefusal::Blocked(blocked)) => Self::Blocked(blocked),
            Some(GuardRefusal::TooManyRedirects) => Self::TooManyRedirects,
            // Signed URLs carry credentials in their query: never into a log or a record.
            None => Self::Transport(err.without_url()),
        }
    }
}

/// How a status that is not a success is treated. `None` means transient.
pub fn permanent_status(status: StatusCode) -> Option<FailureReason> {
    match status.as_u16() {
        404 => Some(FailureReason::SourceNotFound),
        // Signed URLs that expired answer 403 (S3, CloudFront) or 410; 401 is the same story.
        401 | 403 | 410 => Some(FailureReason::SourceExpired),
        // Timeouts, throttling and server errors may pass.
        408 | 425 | 429 | 500..=599 => None,
        _ => Some(FailureReason::SourceRejected),
    }
}

/// Why a ranged response cannot continue a download.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeMismatch {
    #[error("the server answered {0} instead of 206")]
    NotPartial(u16),
    #[error("the 206 carried no valid Content-Range")]
    NoContentRange,
    #[error("the range starts at {got}, not {expected}")]
    WrongStart { expected: u64, got: u64 },
    #[error("the total size changed from {expected} to {got:?}")]
    TotalChanged { expected: u64, got: Option<u64> },
    /// The resumed response names another version of the object (`ETag` or
    /// `Last-Modified`), even though `If-Range` asked for the same one.
    #[error("the object changed: {header} was {first:?}, is now {now:?}")]
    ValidatorChanged {
        header: &'static str,
        first: String,
        now: String,
    },
    /// The server sent more bytes than the length it declared.
    #[error("more bytes than the declared length ({declared})")]
    Overrun { declared: u64 },
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classification() {
        let permanent = |s: u16| permanent_status(StatusCode::from_u16(s).unwrap());
        assert_eq!(permanent(404), Some(FailureReason::SourceNotFound));
        for s in [401, 403, 410] {
            assert_eq!(permanent(s), Some(FailureReason::SourceExpired), "{s}");
        }
        for s in [400, 405, 406, 416, 451, 204, 206, 301, 304] {
            assert_eq!(permanent(s), Some(FailureReason::SourceRejected), "{s}");
        }
        for s in [408, 425, 429, 500, 502, 503, 504] {
            assert_eq!(permanent(s), None, "{s}");
        }
    }

    #[test]
    fn error_classification() {
        assert_eq!(
            SourceError::NotVideo("text/html".into()).failure_reason(),
            Some(FailureReason::NotMp4)
        );
        assert_eq!(
            SourceError::TooLarge { size: 2, limit: 1 }.failure_reason(),
            Some(FailureReason::TooLarge)
        );
        assert_eq!(
            SourceError::TooManyRedirects.failure_reason(),
            Some(FailureReason::TooManyRedirects)
        );
        assert_eq!(
            SourceError::Blocked(Blocked::NoHost).failure_reason(),
            Some(FailureReason::BlockedUrl)
        );
        let truncated = SourceError::Truncated {
            received: 1,
            expected: 2,
        };
        assert!(truncated.failure_reason().is_none() && truncated.is_transient());
        let exhausted = SourceError::RetriesExhausted {
            retries: 3,
            last: Box::new(truncated),
        };
        assert!(exhausted.failure_reason().is_none() && !exhausted.is_transient());
        assert!(SourceError::Status(StatusCode::SERVICE_UNAVAILABLE).is_transient());
        assert!(!SourceError::Status(StatusCode::NOT_FOUND).is_transient());
    }
}
