//! Every way a callback can be refused, and the one place that maps them to HTTP.

use lambda_http::Body;
use lambda_http::http::header::{ALLOW, RETRY_AFTER};
use lambda_http::http::{HeaderValue, Response, StatusCode};
use serde_json::json;
use video_tasks::envelope::EnvelopeError;
use video_tasks::response::json_response;
use video_tasks::store::StoreError;
use video_tasks::verify::Rejected;

/// Why a callback was not recorded. Nothing is written for any of these.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("method {0} is not allowed")]
    MethodNotAllowed(String),
    #[error("body is {size} bytes, over the {limit}-byte limit")]
    PayloadTooLarge { size: usize, limit: usize },
    #[error("content type {0:?} is not application/json")]
    UnsupportedMediaType(Option<String>),
    #[error(transparent)]
    Unauthorized(#[from] Rejected),
    #[error(transparent)]
    InvalidEnvelope(#[from] EnvelopeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the task store did not answer within {0} ms")]
    StoreDeadline(u128),
}

impl ReceiveError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::InvalidEnvelope(_) => StatusCode::BAD_REQUEST,
            // Never 200 without a durable record: 503 makes the sender retry.
            Self::Store(_) | Self::StoreDeadline(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Stable machine-readable code, in the body and the log line.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Unauthorized(_) => "unauthorized",
            Self::InvalidEnvelope(e) => e.code(),
            Self::Store(_) | Self::StoreDeadline(_) => "unavailable",
        }
    }

    /// What the caller is told. Verification failures say nothing about which check
    /// failed; server-side failures say nothing about the cause (it is logged instead).
    fn public_message(&self) -> String {
        match self {
            Self::Unauthorized(_) => "the request could not be verified".into(),
            Self::Store(_) | Self::StoreDeadline(_) => {
                "temporarily unavailable; retry later".into()
            }
            other => other.to_string(),
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let body = json!({ "error": self.code(), "message": self.public_message() });
        let mut response = json_response(self.status(), &body);
        match self {
            Self::MethodNotAllowed(_) => {
                response
                    .headers_mut()
                    .insert(ALLOW, HeaderValue::from_static("POST"));
            }
            Self::Store(_) | Self::StoreDeadline(_) => {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_hide_their_cause() {
        let err = ReceiveError::Store(StoreError::Unavailable(
            "connection refused to 10.0.0.5".into(),
        ));
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = std::str::from_utf8(response.body().as_ref())
            .unwrap()
            .to_owned();
        assert!(!body.contains("10.0.0.5"), "{body}");
        assert_eq!(response.headers()[RETRY_AFTER], "5");
    }
}
