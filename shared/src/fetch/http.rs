//! The HTTP adapter of the source port: one streaming GET through the SSRF-guarded
//! client that survives broken connections by resuming with `Range: bytes=<offset>-`,
//! keeping every byte already received; `If-Range` and `Content-Range` make sure the
//! bytes continue the same object.

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT_ENCODING, CONTENT_RANGE, CONTENT_TYPE, ETAG, HeaderMap, HeaderValue, IF_RANGE,
    LAST_MODIFIED, RANGE,
};
use tracing::{info, warn};
use url::Url;

use super::client::{BuildError, FetchTimeouts, guarded_client};
use super::{Origin, ResumeMismatch, SourceError, VideoSource};
use crate::domain::backoff::Backoff;
use crate::domain::ssrf::UrlPolicy;

/// Limits of one source.
#[derive(Debug, Clone, Copy)]
pub struct SourceSettings {
    pub max_bytes: u64,
    pub backoff: Backoff,
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

/// Opens [`HttpSource`]s through the guarded client.
#[derive(Debug, Clone)]
pub struct HttpOrigin {
    client: reqwest::Client,
    policy: UrlPolicy,
    settings: SourceSettings,
}

impl HttpOrigin {
    /// Builds the SSRF-guarded client for `policy` ([`guarded_client`]): no source is ever
    /// read through any other.
    pub fn new(
        policy: UrlPolicy,
        timeouts: FetchTimeouts,
        settings: SourceSettings,
    ) -> Result<Self, BuildError> {
        Ok(Self {
            client: guarded_client(policy.clone(), timeouts)?,
            policy,
            settings,
        })
    }
}

impl Origin for HttpOrigin {
    type Source = HttpSource;

    async fn open(&self, url: &Url) -> Result<HttpSource, SourceError> {
        HttpSource::open(&self.client, url, &self.policy, self.settings).await
    }
}

/// An open download.
#[derive(Debug)]
pub struct HttpSource {
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

impl HttpSource {
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
                    tokio::time::sleep(settings.backoff.delay(retries_used, fastrand::f64())).await;
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
    async fn read_chunk(&mut self) -> Result<Option<Bytes>, SourceError> {
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
            tokio::time::sleep(
                self.settings
                    .backoff
                    .delay(self.retries_used, fastrand::f64()),
            )
            .await;
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
}

impl VideoSource for HttpSource {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, SourceError> {
        self.read_chunk().await
    }

    fn offset(&self) -> u64 {
        self.offset
    }

    fn ranged_requests(&self) -> u32 {
        self.ranged_requests
    }
}

/// Content types that are never a video: refused before reading the body.
pub fn is_refused_content_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "text/html"
            | "application/xhtml+xml"
            | "text/plain"
            | "application/json"
            | "application/xml"
            | "text/xml"
    )
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

    #[test]
    fn refused_content_types() {
        for ct in [
            "text/html",
            "text/html; charset=utf-8",
            "TEXT/HTML",
            "application/json",
            "text/plain",
        ] {
            assert!(is_refused_content_type(ct), "{ct}");
        }
        for ct in [
            "video/mp4",
            "application/octet-stream",
            "binary/octet-stream",
            "video/quicktime",
            "",
        ] {
            assert!(!is_refused_content_type(ct), "{ct}");
        }
    }
}
