//! Every way a callback can be refused. Nothing is written for any of these; how each
//! becomes HTTP is this enum's [`ApiError`] impl, turned into the response and the log
//! line by the shared edge.

use lambda_http::http::StatusCode;
use shared::domain::envelope::EnvelopeError;
use shared::domain::verify::Rejected;
use shared::lambda::http::{ApiError, BodyRefused, MethodNotAllowed, Unavailable};

/// Why a callback was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error(transparent)]
    MethodNotAllowed(#[from] MethodNotAllowed),
    #[error(transparent)]
    Body(#[from] BodyRefused),
    #[error(transparent)]
    Unauthorized(#[from] Rejected),
    #[error(transparent)]
    InvalidEnvelope(#[from] EnvelopeError),
    /// Never 200 without a durable record: 503 makes the sender retry.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

impl ApiError for ReceiveError {
    fn status(&self) -> StatusCode {
        match self {
            Self::MethodNotAllowed(e) => e.status(),
            Self::Body(e) => e.status(),
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::InvalidEnvelope(_) => StatusCode::BAD_REQUEST,
            Self::Unavailable(e) => e.status(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::MethodNotAllowed(e) => e.code(),
            Self::Body(e) => e.code(),
            Self::Unauthorized(_) => "unauthorized",
            Self::InvalidEnvelope(e) => e.code(),
            Self::Unavailable(e) => e.code(),
        }
    }

    /// Verification failures say nothing about which check failed.
    fn public_message(&self) -> String {
        match self {
            Self::Unauthorized(_) => "the request could not be verified".into(),
            Self::Unavailable(e) => e.public_message(),
            other => other.to_string(),
        }
    }

    /// The log names the failed check of every scheme.
    fn log_reason(&self) -> String {
        match self {
            Self::Unauthorized(rejected) => rejected.summary(),
            other => other.to_string(),
        }
    }

    fn headers(
        &self,
    ) -> Vec<(
        lambda_http::http::HeaderName,
        lambda_http::http::HeaderValue,
    )> {
        match self {
            Self::MethodNotAllowed(e) => e.headers(),
            Self::Unavailable(e) => e.headers(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use lambda_http::Body;
    use lambda_http::http::Response;
    use lambda_http::http::header::RETRY_AFTER;
    use shared::lambda::http::error_response;
    use shared::store::StoreError;

    use super::*;

    #[test]
    fn server_errors_hide_their_cause() {
        let err = ReceiveError::Unavailable(Unavailable::Store(StoreError::Unavailable(
            "connection refused to 10.0.0.5".into(),
        )));
        let response: Response<Body> = error_response(&err, Duration::ZERO);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = std::str::from_utf8(response.body().as_ref())
            .unwrap()
            .to_owned();
        assert!(!body.contains("10.0.0.5"), "{body}");
        assert_eq!(response.headers()[RETRY_AFTER], "5");
    }
}
