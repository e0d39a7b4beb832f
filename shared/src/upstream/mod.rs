//! The upstream's API port: what the music-video API says about one of its tasks
//! (`GET /api/v1/mp4/record-info?taskId=…`). The reconciler polls it for tasks whose
//! callback never came; ingest asks it for a fresh URL when a video URL has expired.
//! [`http`] is the adapter (Bearer key); `scripted` (feature `test-support`) the fake.

#[cfg(feature = "fetch")]
pub mod http;
#[cfg(feature = "test-support")]
pub mod scripted;

use std::future::Future;

use serde::Deserialize;

use crate::domain::task_id::TaskId;

/// What the upstream knows of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamRecord {
    /// Still generating.
    Pending,
    /// Done; the video is at this (raw, unvalidated) URL.
    Succeeded { video_url: String },
    /// Failed for good: `code` is the failure code to record (a 4xx/5xx), `message` why.
    Failed { code: u16, message: String },
}

/// Why the upstream's answer is not known.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No API base or key is configured.
    #[error("the upstream API is not configured")]
    NotConfigured,
    /// It could not be reached, timed out, or answered 5xx/429: ask again later.
    #[error("the upstream API is unavailable: {0}")]
    Unavailable(String),
    /// It refused our key (401/403).
    #[error("the upstream API refused the key (HTTP {0})")]
    Unauthorized(u16),
    /// It does not know the task.
    #[error("the upstream API does not know the task")]
    NotFound,
    /// Its answer does not parse.
    #[error("the upstream API answered something unexpected: {0}")]
    Malformed(String),
}

/// The upstream's task API.
pub trait UpstreamApi: Send + Sync {
    fn record_info(
        &self,
        task_id: &TaskId,
    ) -> impl Future<Output = Result<UpstreamRecord, UpstreamError>> + Send;
}

/// No API configured: every question is [`UpstreamError::NotConfigured`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NoUpstream;

impl UpstreamApi for NoUpstream {
    async fn record_info(&self, _: &TaskId) -> Result<UpstreamRecord, UpstreamError> {
        Err(UpstreamError::NotConfigured)
    }
}

impl<U: UpstreamApi> UpstreamApi for Option<U> {
    async fn record_info(&self, task_id: &TaskId) -> Result<UpstreamRecord, UpstreamError> {
        match self {
            Some(api) => api.record_info(task_id).await,
            None => NoUpstream.record_info(task_id).await,
        }
    }
}

/// What an HTTP status, or the `code` the body carries, says when it is a refusal: the
/// key is wrong, the task is unknown, or the API is busy or failing (worth asking again).
fn refusal(code: i64, detail: impl FnOnce() -> String) -> Option<UpstreamError> {
    match code {
        401 => Some(UpstreamError::Unauthorized(401)),
        403 => Some(UpstreamError::Unauthorized(403)),
        404 => Some(UpstreamError::NotFound),
        429 | 500..=599 => Some(UpstreamError::Unavailable(detail())),
        _ => None,
    }
}

/// The body of `record-info`, as documented:
/// `{"code":200,"msg":"success","data":{"taskId":…,"successFlag":"SUCCESS",
/// "response":{"videoUrl":…},"errorCode":…,"errorMessage":…}}`.
#[derive(Debug, Deserialize)]
struct Envelope {
    code: i64,
    #[serde(default)]
    msg: Option<String>,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    #[serde(default)]
    success_flag: Option<String>,
    #[serde(default)]
    response: Option<Response>,
    #[serde(default)]
    error_code: Option<serde_json::Value>,
    #[serde(default)]
    error_message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    #[serde(default)]
    video_url: Option<String>,
}

/// Reads a `record-info` body. Pure, so every flag is tested without a server.
pub fn parse_record_info(body: &[u8]) -> Result<UpstreamRecord, UpstreamError> {
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|e| UpstreamError::Malformed(e.to_string()))?;
    if envelope.code != 200 {
        let detail = || {
            format!(
                "code {}: {}",
                envelope.code,
                envelope.msg.clone().unwrap_or_default()
            )
        };
        return Err(
            refusal(envelope.code, detail).unwrap_or_else(|| UpstreamError::Malformed(detail()))
        );
    }
    let data = envelope
        .data
        .ok_or_else(|| UpstreamError::Malformed("no data".into()))?;
    let video_url = data
        .response
        .and_then(|r| r.video_url)
        .filter(|u| !u.is_empty());
    let message = || {
        data.error_message
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| data.success_flag.clone().unwrap_or_default())
    };
    // The upstream's own error code when it is a failure code, else a server error.
    let code = data
        .error_code
        .as_ref()
        .and_then(|c| {
            c.as_u64()
                .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
        })
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..=599).contains(c))
        .unwrap_or(500);
    match data.success_flag.as_deref() {
        Some("PENDING") | None => Ok(UpstreamRecord::Pending),
        Some("SUCCESS") => video_url
            .map(|video_url| UpstreamRecord::Succeeded { video_url })
            .ok_or_else(|| UpstreamError::Malformed("SUCCESS without a videoUrl".into())),
        // The video was made but the callback to us failed: the URL is the outcome.
        Some("CALLBACK_EXCEPTION") => Ok(match video_url {
            Some(video_url) => UpstreamRecord::Succeeded { video_url },
            None => UpstreamRecord::Failed {
                code,
                message: message(),
            },
        }),
        Some("CREATE_TASK_FAILED" | "GENERATE_MP4_FAILED") => Ok(UpstreamRecord::Failed {
            code,
            message: message(),
        }),
        Some(other) => Err(UpstreamError::Malformed(format!(
            "unknown successFlag {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: serde_json::Value) -> Result<UpstreamRecord, UpstreamError> {
        parse_record_info(v.to_string().as_bytes())
    }

    fn data(d: serde_json::Value) -> serde_json::Value {
        json!({"code": 200, "msg": "success", "data": d})
    }

    #[test]
    fn every_success_flag() {
        assert_eq!(
            parse(data(json!({"taskId": "t", "successFlag": "PENDING"}))).unwrap(),
            UpstreamRecord::Pending
        );
        assert_eq!(
            parse(data(json!({"successFlag": "SUCCESS", "response": {"videoUrl": "https://cdn.example/v.mp4"}}))).unwrap(),
            UpstreamRecord::Succeeded { video_url: "https://cdn.example/v.mp4".into() }
        );
        assert_eq!(
            parse(data(json!({"successFlag": "CALLBACK_EXCEPTION", "response": {"videoUrl": "https://cdn.example/v.mp4"}}))).unwrap(),
            UpstreamRecord::Succeeded { video_url: "https://cdn.example/v.mp4".into() }
        );
        assert_eq!(
            parse(data(json!({"successFlag": "GENERATE_MP4_FAILED", "errorCode": 451, "errorMessage": "source download failed"}))).unwrap(),
            UpstreamRecord::Failed { code: 451, message: "source download failed".into() }
        );
        assert_eq!(
            parse(data(
                json!({"successFlag": "CREATE_TASK_FAILED", "errorCode": "400", "errorMessage": ""})
            ))
            .unwrap(),
            UpstreamRecord::Failed {
                code: 400,
                message: "CREATE_TASK_FAILED".into()
            }
        );
        // A code that is not a failure code is recorded as a server error.
        assert_eq!(
            parse(data(
                json!({"successFlag": "GENERATE_MP4_FAILED", "errorCode": 7})
            ))
            .unwrap(),
            UpstreamRecord::Failed {
                code: 500,
                message: "GENERATE_MP4_FAILED".into()
            }
        );
        assert_eq!(
            parse(data(json!({"successFlag": "CALLBACK_EXCEPTION"}))).unwrap(),
            UpstreamRecord::Failed {
                code: 500,
                message: "CALLBACK_EXCEPTION".into()
            }
        );
    }

    #[test]
    fn errors() {
        assert!(matches!(
            parse(json!({"code": 401, "msg": "bad key"})),
            Err(UpstreamError::Unauthorized(401))
        ));
        assert!(matches!(
            parse(json!({"code": 404})),
            Err(UpstreamError::NotFound)
        ));
        assert!(matches!(
            parse(json!({"code": 503})),
            Err(UpstreamError::Unavailable(_))
        ));
        assert!(matches!(
            parse(data(json!({"successFlag": "SUCCESS"}))),
            Err(UpstreamError::Malformed(_))
        ));
        assert!(matches!(
            parse(data(json!({"successFlag": "EXPLODED"}))),
            Err(UpstreamError::Malformed(_))
        ));
        assert!(matches!(
            parse_record_info(b"<html>"),
            Err(UpstreamError::Malformed(_))
        ));
    }
}
