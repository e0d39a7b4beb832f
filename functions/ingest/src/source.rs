//! The video source: one streaming GET through the SSRF-guarded client that survives
//! broken connections by resuming with `Range: bytes=<offset>-`, keeping every byte
//! already received. What the server answers is classified here: permanent (the task
//! fails) or transient (retried with backoff, then left to the next attempt).

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT_ENCODING, CONTENT_RANGE, CONTENT_TYPE, ETAG, HeaderMap, HeaderValue, IF_RANGE,
    LAST_MODIFIED, RANGE,
};
use tracing::{info, warn};
use url::Url;
use video_tasks::fetch::{GuardRefusal, guard_cause};
use video_tasks::ssrf::{Blocked, UrlPolicy};
use video_tasks::task::FailureReason;

use crate::backoff::Backoff;
use crate::sniff::is_refused_content_type;

/// Limits of one source.
#[derive(Debug, Clone, Copy)]
pub struct SourceSettings {
    pub max_bytes: u64,
    pub backoff: Backoff,
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
            Self::Transport(_)
            | Self::Truncated { .. }
            | Self::CannotResume { .. }
            | Self::RetriesExhausted { .. } => None,
        }
    }

    fn is_transient(&self) -> bool {
        self.failure_reason().is_none()
            && !matches!(
                self,
                Self::CannotResume { .. } | Self::RetriesExhausted { .. }
            )
    }

    fn from_reqwest(err: reqwest::Error) -> Self {
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

/// A parsed `Content-Range: bytes <start>-<end>/<total|*>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    pub start: u64,
    pub end: u64,
    pub total: Option<u64>,
}

pub fn parse_content_range(raw: &str) -> Option<ContentRange> {
    let rest = raw.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    let consistent = start <= end && total.is_none_or(|t| end < t);
    consistent.then_some(ContentRange { start, end, total })
}

/// Why a ranged response cannot continue a download.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResumeMismatch {
    #[error("the server answered {0} instead of 206")]
    NotPartial(u16),
    #[error("the 206 carried no valid Content-Range")]
    NoContentRange,
    #[error("the range starts at {got}, not {expected}")]
    WrongStart { expected: u64, got: u64 },
    #[error("the total size changed from {expected} to {got:?}")]
    TotalChanged { expected: u64, got: Option<u64> },
}

/// Decides whether a response to `Range: bytes=<offset>-` continues the same object.
pub fn check_resume(
    offset: u64,
    known_total: Option<u64>,
    status: u16,
    content_range: Option<&str>,
) -> Result<(), ResumeMismatch> {
    // Nothing received yet: a full answer is as good as a partial one.
    if status == 200 && offset == 0 {
        return Ok(());
    }
    if status != 206 {
        return Err(ResumeMismatch::NotPartial(status));
    }
    let range = content_range
        .and_then(parse_content_range)
        .ok_or(ResumeMismatch::NoContentRange)?;
    if range.start != offset {
        return Err(ResumeMismatch::WrongStart {
            expected: offset,
            got: range.start,
        });
    }
    match known_total {
        Some(expected) if range.total != Some(expected) => Err(ResumeMismatch::TotalChanged {
            expected,
            got: range.total,
        }),
        _ => Ok(()),
    }
}

/// A strong validator for `If-Range`: a strong ETag, else `Last-Modified`.
fn validator(headers: &HeaderMap) -> Option<HeaderValue> {
    headers
        .get(ETAG)
        .filter(|v| !v.as_bytes().starts_with(b"W/"))
        .or_else(|| headers.get(LAST_MODIFIED))
        .cloned()
}

/// An open download.
#[derive(Debug)]
pub struct VideoSource {
    client: reqwest::Client,
    /// Where the first request ended up after redirects; resumes go straight there.
    url: Url,
    response: reqwest::Response,
    offset: u64,
    total: Option<u64>,
    validator: Option<HeaderValue>,
    retries_used: u32,
    ranged_requests: u32,
    settings: SourceSettings,
}

impl VideoSource {
    /// Sends the first GET (retrying transient failures) and checks the answer.
    pub async fn open(
        client: &reqwest::Client,
        url: &Url,
        policy: &UrlPolicy,
        settings: SourceSettings,
    ) -> Result<Self, SourceError> {
        // IP-literal hosts never reach the resolver: check the URL itself first.
        policy.check_url(url).map_err(SourceError::Blocked)?;
        let mut retries_used = 0;
        let response = loop {
            let result = client
                .get(url.clone())
                .header(ACCEPT_ENCODING, "identity")
                .send()
                .await
                .map_err(SourceError::from_reqwest)
                .and_then(|r| match r.status() {
                    StatusCode::OK => Ok(r),
                    status => Err(SourceError::Status(status)),
                });
            match result {
                Ok(response) => break response,
                Err(e) if e.is_transient() && retries_used < settings.backoff.retries => {
                    warn!(error = %e, retry = retries_used + 1, "source request failed; retrying");
                    tokio::time::sleep(settings.backoff.delay_jittered(retries_used)).await;
                    retries_used += 1;
                }
                Err(e) if e.is_transient() => {
                    return Err(SourceError::RetriesExhausted {
                        retries: retries_used,
                        last: Box::new(e),
                    });
                }
                Err(e) => return Err(e),
            }
        };

        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(ct) = content_type
            .as_deref()
            .filter(|ct| is_refused_content_type(ct))
        {
            return Err(SourceError::NotVideo(ct.to_owned()));
        }
        let total = response.content_length();
        if let Some(size) = total.filter(|&size| size > settings.max_bytes) {
            return Err(SourceError::TooLarge {
                size,
                limit: settings.max_bytes,
            });
        }
        Ok(Self {
            client: client.clone(),
            url: response.url().clone(),
            validator: validator(response.headers()),
            response,
            offset: 0,
            total,
            retries_used,
            ranged_requests: 0,
            settings,
        })
    }

    /// The next bytes, `None` at the end. Broken connections are resumed transparently.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, SourceError> {
        loop {
            let cause = match self.response.chunk().await {
                Ok(Some(chunk)) => {
                    self.offset += chunk.len() as u64;
                    if self.offset > self.settings.max_bytes {
                        return Err(SourceError::TooLarge {
                            size: self.offset,
                            limit: self.settings.max_bytes,
                        });
                    }
                    return Ok(Some(chunk));
                }
                Ok(None) => match self.total {
                    Some(expected) if self.offset < expected => SourceError::Truncated {
                        received: self.offset,
                        expected,
                    },
                    _ => return Ok(None),
                },
                Err(e) => SourceError::Transport(e.without_url()),
            };
            self.resume(cause).await?;
        }
    }

    /// Re-requests the rest of the object, with backoff, until a 206 continues it.
    async fn resume(&mut self, mut cause: SourceError) -> Result<(), SourceError> {
        loop {
            if self.retries_used >= self.settings.backoff.retries {
                return Err(SourceError::RetriesExhausted {
                    retries: self.retries_used,
                    last: Box::new(cause),
                });
            }
            warn!(offset = self.offset, error = %cause, retry = self.retries_used + 1, "download interrupted; resuming");
            tokio::time::sleep(self.settings.backoff.delay_jittered(self.retries_used)).await;
            self.retries_used += 1;
            self.ranged_requests += 1;

            let mut request = self
                .client
                .get(self.url.clone())
                .header(ACCEPT_ENCODING, "identity")
                .header(RANGE, format!("bytes={}-", self.offset));
            if let Some(v) = &self.validator {
                request = request.header(IF_RANGE, v.clone());
            }
            let response = match request.send().await.map_err(SourceError::from_reqwest) {
                Ok(r) => r,
                Err(e) if e.is_transient() => {
                    cause = e;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let status = response.status();
            if status != StatusCode::PARTIAL_CONTENT && status != StatusCode::OK {
                let err = SourceError::Status(status);
                if err.is_transient() {
                    cause = err;
                    continue;
                }
                return Err(err);
            }
            let content_range = response
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok());
            check_resume(self.offset, self.total, status.as_u16(), content_range).map_err(
                |mismatch| SourceError::CannotResume {
                    offset: self.offset,
                    mismatch,
                },
            )?;
            info!(offset = self.offset, "download resumed");
            self.response = response;
            return Ok(());
        }
    }

    /// Bytes delivered so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Ranged requests sent to resume.
    pub fn ranged_requests(&self) -> u32 {
        self.ranged_requests
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parsing() {
        assert_eq!(
            parse_content_range("bytes 100-999/1000"),
            Some(ContentRange {
                start: 100,
                end: 999,
                total: Some(1000)
            })
        );
        assert_eq!(
            parse_content_range("bytes 0-0/*"),
            Some(ContentRange {
                start: 0,
                end: 0,
                total: None
            })
        );
        for bad in [
            "bytes 5-4/10",
            "bytes 0-10/10",
            "bytes */1000",
            "items 0-1/2",
            "bytes 1-2",
            "bytes a-b/c",
            "",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn resume_bookkeeping() {
        assert_eq!(
            check_resume(500, Some(1000), 206, Some("bytes 500-999/1000")),
            Ok(())
        );
        assert_eq!(
            check_resume(500, None, 206, Some("bytes 500-999/*")),
            Ok(())
        );
        assert_eq!(
            check_resume(500, Some(1000), 200, None),
            Err(ResumeMismatch::NotPartial(200))
        );
        assert_eq!(check_resume(0, Some(1000), 200, None), Ok(()));
        assert_eq!(
            check_resume(500, Some(1000), 206, None),
            Err(ResumeMismatch::NoContentRange)
        );
        assert_eq!(
            check_resume(500, Some(1000), 206, Some("bytes 0-999/1000")),
            Err(ResumeMismatch::WrongStart {
                expected: 500,
                got: 0
            })
        );
        assert_eq!(
            check_resume(500, Some(1000), 206, Some("bytes 500-1999/2000")),
            Err(ResumeMismatch::TotalChanged {
                expected: 1000,
                got: Some(2000)
            })
        );
        assert_eq!(
            check_resume(500, Some(1000), 206, Some("bytes 500-999/*")),
            Err(ResumeMismatch::TotalChanged {
                expected: 1000,
                got: None
            })
        );
    }

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

    #[test]
    fn weak_etags_are_not_validators() {
        let mut h = HeaderMap::new();
        h.insert(ETAG, HeaderValue::from_static("W/\"abc\""));
        assert_eq!(validator(&h), None);
        h.insert(
            LAST_MODIFIED,
            HeaderValue::from_static("Mon, 23 Nov 2026 10:00:00 GMT"),
        );
        assert_eq!(validator(&h).unwrap(), "Mon, 23 Nov 2026 10:00:00 GMT");
        h.insert(ETAG, HeaderValue::from_static("\"abc\""));
        assert_eq!(validator(&h).unwrap(), "\"abc\"");
    }
}
