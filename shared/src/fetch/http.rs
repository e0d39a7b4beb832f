//! The HTTP adapter of the source port: one streaming GET through the SSRF-guarded
//! client that survives broken connections by resuming with `Range: bytes=<offset>-`,
//! keeping every byte already received; `If-Range` and `Content-Range` make sure the
//! bytes continue the same object.

use std::sync::Arc;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT_ENCODING, CONTENT_RANGE, CONTENT_TYPE, ETAG, HeaderMap, HeaderValue, IF_RANGE,
    LAST_MODIFIED, RANGE,
};
use tracing::{info, warn};
use url::Url;

use super::client::{BuildError, FetchTimeouts, HostLookup, guarded_client_with};
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

/// The first response's version of the object, which every resumed response must share.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Version {
    etag: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
}

impl Version {
    fn of(headers: &HeaderMap) -> Self {
        Self {
            etag: headers.get(ETAG).cloned(),
            last_modified: headers.get(LAST_MODIFIED).cloned(),
        }
    }

    /// A resumed response that names a different version is a different object, however
    /// its range looks (a server that ignores `If-Range`). A header it leaves out is not
    /// held against it.
    fn check(&self, resumed: &HeaderMap) -> Result<(), ResumeMismatch> {
        for (header, first, now) in [
            ("ETag", &self.etag, resumed.get(ETAG)),
            (
                "Last-Modified",
                &self.last_modified,
                resumed.get(LAST_MODIFIED),
            ),
        ] {
            if let (Some(first), Some(now)) = (first, now)
                && first != now
            {
                return Err(ResumeMismatch::ValidatorChanged {
                    header,
                    first: String::from_utf8_lossy(first.as_bytes()).into_owned(),
                    now: String::from_utf8_lossy(now.as_bytes()).into_owned(),
                });
            }
        }
        Ok(())
    }
}

/// Opens [`HttpSource`]s through the guarded client.
#[derive(Debug, Clone)]
pub struct HttpOrigin {
    client: reqwest::Client,
    policy: UrlPolicy,
    settings: SourceSettings,
}

impl HttpOrigin {
    /// Builds the SSRF-guarded client for `policy`, resolving names through `lookup`
    /// ([`super::client::SystemLookup`] in production): no source is ever read through any
    /// other.
    pub fn with_lookup(
        policy: UrlPolicy,
        timeouts: FetchTimeouts,
        settings: SourceSettings,
        lookup: Arc<dyn HostLookup>,
    ) -> Result<Self, BuildError> {
        Ok(Self {
            client: guarded_client_with(policy.clone(), timeouts, lookup)?,
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

/// An open download. It ends only where the object's length is confirmed: the total a
/// response declared (`Content-Length` of the full answer, or any `Content-Range`
/// total), or, when none did, a final range probe answered `416 bytes */<offset>`.
#[derive(Debug)]
pub struct HttpSource {
    client: reqwest::Client,
    /// Where the first request ended up after redirects; resumes go straight there.
    url: Url,
    /// The response being read; `None` once the end is confirmed.
    response: Option<reqwest::Response>,
    offset: u64,
    /// The object's length, once any response declared it.
    total: Option<u64>,
    /// Where the current response's bytes end (exclusive), when it declared that.
    segment_end: Option<u64>,
    validator: Option<HeaderValue>,
    version: Version,
    retries_used: u32,
    ranged_requests: u32,
    settings: SourceSettings,
}

/// What a request for the rest of the object found.
enum Rest {
    /// A response continuing at the offset: read it.
    More(reqwest::Response),
    /// Nothing is left: the length is confirmed.
    End,
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
            version: Version::of(response.headers()),
            segment_end: total,
            response: Some(response),
            offset: 0,
            total,
            retries_used,
            ranged_requests: 0,
            settings,
        })
    }

    /// The next bytes, `None` at the (confirmed) end. Broken connections and responses
    /// that end short of the declared length are resumed transparently.
    async fn read_chunk(&mut self) -> Result<Option<Bytes>, SourceError> {
        loop {
            let Some(response) = self.response.as_mut() else {
                return Ok(None);
            };
            let cause = match response.chunk().await {
                Ok(Some(chunk)) => {
                    let offset = self.offset + chunk.len() as u64;
                    if let Some(declared) = self.segment_end.into_iter().chain(self.total).min()
                        && offset > declared
                    {
                        return Err(SourceError::CannotResume {
                            offset: self.offset,
                            mismatch: ResumeMismatch::Overrun { declared },
                        });
                    }
                    self.offset = offset;
                    if self.offset > self.settings.max_bytes {
                        return Err(SourceError::TooLarge {
                            size: self.offset,
                            limit: self.settings.max_bytes,
                        });
                    }
                    return Ok(Some(chunk));
                }
                Ok(None) => match (self.segment_end, self.total) {
                    (_, Some(total)) if self.offset == total => {
                        self.response = None;
                        return Ok(None);
                    }
                    // This response ended before the bytes it declared: it was cut.
                    (Some(end), _) if self.offset < end => SourceError::Truncated {
                        received: self.offset,
                        expected: end,
                    },
                    // A partial answer delivered all it declared and more remains: ask for
                    // the rest (not a failure, so no retry is spent on it).
                    (Some(_), Some(total)) => {
                        self.fetch_rest(total).await?;
                        continue;
                    }
                    (None, Some(total)) => SourceError::Truncated {
                        received: self.offset,
                        expected: total,
                    },
                    // Ended, no length known: the end is confirmed only by a probe.
                    (_, None) => {
                        self.probe_end().await?;
                        continue;
                    }
                },
                Err(e) => SourceError::Transport(e.without_url()),
            };
            self.resume(cause).await?;
        }
    }

    /// Re-requests the rest of the object after `cause`, with backoff, until a response
    /// continues it (or confirms there is nothing left).
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
            match self.request_rest().await {
                Ok(rest) => return self.adopt(rest),
                Err(e) if e.is_transient() => cause = e,
                Err(e) => return Err(e),
            }
        }
    }

    /// Asks for the rest after a partial answer that was complete in itself.
    async fn fetch_rest(&mut self, total: u64) -> Result<(), SourceError> {
        match self.request_rest().await {
            Ok(Rest::End) if self.offset == total => {
                self.response = None;
                Ok(())
            }
            Ok(Rest::End) => Err(SourceError::CannotResume {
                offset: self.offset,
                mismatch: ResumeMismatch::TotalChanged {
                    expected: total,
                    got: Some(self.offset),
                },
            }),
            Ok(rest) => self.adopt(rest),
            Err(e) if e.is_transient() => self.resume(e).await,
            Err(e) => Err(e),
        }
    }

    /// The body ended and no length was ever declared (chunked, or close-delimited):
    /// ask for what lies beyond. `416 bytes */<offset>` confirms the end; a `206` means
    /// the body was cut short and goes on; anything else leaves the length unconfirmed.
    async fn probe_end(&mut self) -> Result<(), SourceError> {
        info!(
            offset = self.offset,
            "body ended without a declared length; probing the end"
        );
        match self.request_rest().await {
            Ok(rest) => self.adopt(rest),
            Err(e) if e.is_transient() => self.resume(e).await,
            Err(e) => Err(e),
        }
    }

    fn adopt(&mut self, rest: Rest) -> Result<(), SourceError> {
        match rest {
            Rest::More(response) => {
                info!(offset = self.offset, "download resumed");
                self.response = Some(response);
            }
            Rest::End => {
                info!(bytes = self.offset, "length confirmed by a range probe");
                self.response = None;
            }
        }
        Ok(())
    }

    /// One `Range: bytes=<offset>-` request (with `If-Range`), checked: a `206` that
    /// continues the same object, or a `416` (or a full answer of exactly our length)
    /// that confirms the end. Learns the total and the segment from `Content-Range`.
    async fn request_rest(&mut self) -> Result<Rest, SourceError> {
        self.ranged_requests += 1;
        let mut request = self
            .client
            .get(self.url.clone())
            .header(ACCEPT_ENCODING, "identity")
            .header(RANGE, format!("bytes={}-", self.offset));
        if let Some(v) = &self.validator {
            request = request.header(IF_RANGE, v.clone());
        }
        let response = request.send().await.map_err(SourceError::from_reqwest)?;
        let cannot = |mismatch| SourceError::CannotResume {
            offset: self.offset,
            mismatch,
        };
        let content_range = response
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match response.status() {
            StatusCode::RANGE_NOT_SATISFIABLE => {
                let total = content_range.as_deref().and_then(unsatisfied_total);
                match total {
                    Some(total) if total == self.offset => {
                        self.total = Some(total);
                        Ok(Rest::End)
                    }
                    // More exists than we have: the body was cut; the rest is asked for
                    // on the next resume, now with a known total.
                    Some(total) if total > self.offset => {
                        self.check_total(total)?;
                        self.total = Some(total);
                        Err(SourceError::Truncated {
                            received: self.offset,
                            expected: total,
                        })
                    }
                    Some(total) => Err(cannot(ResumeMismatch::Overrun { declared: total })),
                    None => Err(SourceError::LengthUnconfirmed {
                        received: self.offset,
                        why: "416 without a `bytes */N` Content-Range".into(),
                    }),
                }
            }
            StatusCode::PARTIAL_CONTENT => {
                check_resume(self.offset, self.total, 206, content_range.as_deref())
                    .map_err(cannot)?;
                self.version.check(response.headers()).map_err(cannot)?;
                if let Some(range) = content_range.as_deref().and_then(parse_content_range) {
                    if let Some(total) = range.total {
                        self.check_total(total)?;
                        self.total = Some(total);
                    }
                    self.segment_end = Some(range.end + 1);
                }
                Ok(Rest::More(response))
            }
            // Nothing received yet: a full answer is as good as a partial one.
            StatusCode::OK if self.offset == 0 => {
                self.total = response.content_length();
                self.segment_end = self.total;
                self.validator = validator(response.headers());
                self.version = Version::of(response.headers());
                Ok(Rest::More(response))
            }
            // The server ignores ranges: only a full answer exactly our length confirms
            // the end; anything else means starting over.
            StatusCode::OK => match response.content_length() {
                Some(len) if len == self.offset && self.total.is_none_or(|t| t == len) => {
                    self.total = Some(len);
                    Ok(Rest::End)
                }
                Some(_) => Err(cannot(ResumeMismatch::NotPartial(200))),
                None if self.total.is_none() => Err(SourceError::LengthUnconfirmed {
                    received: self.offset,
                    why: "the server ignores Range and declares no length".into(),
                }),
                None => Err(cannot(ResumeMismatch::NotPartial(200))),
            },
            status => Err(SourceError::Status(status)),
        }
    }

    fn check_total(&self, total: u64) -> Result<(), SourceError> {
        if total > self.settings.max_bytes {
            return Err(SourceError::TooLarge {
                size: total,
                limit: self.settings.max_bytes,
            });
        }
        match self.total {
            Some(known) if known != total => Err(SourceError::CannotResume {
                offset: self.offset,
                mismatch: ResumeMismatch::TotalChanged {
                    expected: known,
                    got: Some(total),
                },
            }),
            _ => Ok(()),
        }
    }
}

/// The `N` of a 416's `Content-Range: bytes */N`.
fn unsatisfied_total(raw: &str) -> Option<u64> {
    raw.trim().strip_prefix("bytes */")?.trim().parse().ok()
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

    fn length(&self) -> Option<u64> {
        self.total
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
