//! The HTTP edge both HTTP functions share: JSON responses from `Serialize` bodies, one
//! trait for API errors ([`ApiError`]: status, stable code, public message, extra
//! headers), the one function that turns an error into its response and its log line
//! ([`error_response`]), the errors every route can answer ([`MethodNotAllowed`],
//! [`Unavailable`]), and, with the `api` feature, the per-request span ([`serve`]).

use std::time::Duration;

use http::header::{ALLOW, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderName, HeaderValue, Method, Response, StatusCode};
use serde::Serialize;
use tracing::{error, warn};

use crate::store::StoreError;

/// `status` with `body` as `application/json`.
pub fn json_response<B: From<String>, T: Serialize + ?Sized>(
    status: StatusCode,
    body: &T,
) -> Response<B> {
    // Our bodies are plain structs of strings and numbers; they always serialise.
    let text = serde_json::to_string(body)
        .unwrap_or_else(|_| r#"{"error":"internal_error","message":"internal error"}"#.into());
    let mut response = Response::new(B::from(text));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The body of every refusal: `{"error": "<stable code>", "message": "<for people>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorBody {
    pub error: &'static str,
    pub message: String,
}

/// What the caller is told when a request is not served.
pub trait ApiError: std::error::Error {
    fn status(&self) -> StatusCode;

    /// Stable, machine-readable code, in the body and the log line.
    fn code(&self) -> &'static str;

    /// What the caller reads. Server-side failures never say why (it is logged instead).
    fn public_message(&self) -> String {
        match self.status() {
            StatusCode::SERVICE_UNAVAILABLE => "temporarily unavailable; retry later".into(),
            s if s.is_server_error() => "internal error".into(),
            _ => self.to_string(),
        }
    }

    /// Why a refusal (4xx) happened, for the log line.
    fn log_reason(&self) -> String {
        self.to_string()
    }

    /// Headers the response carries besides the content type.
    fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        Vec::new()
    }
}

/// The response for `err`, and its log line: a server error at error level with its
/// cause, a refusal at warn with its reason. The only place errors become HTTP.
pub fn error_response<B: From<String>>(err: &dyn ApiError, latency: Duration) -> Response<B> {
    let status = err.status();
    let latency_ms = latency.as_secs_f64() * 1000.0;
    if status.is_server_error() {
        error!(outcome = "failed", status = status.as_u16(), error_code = err.code(), error = %err,
               cause = ?err.source(), latency_ms, "request failed");
    } else {
        warn!(
            outcome = "rejected",
            status = status.as_u16(),
            error_code = err.code(),
            reason = err.log_reason(),
            latency_ms,
            "request refused"
        );
    }
    let body = ErrorBody {
        error: err.code(),
        message: err.public_message(),
    };
    let mut response = json_response(status, &body);
    for (name, value) in err.headers() {
        response.headers_mut().insert(name, value);
    }
    response
}

/// The route does not answer this method.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("method {method} is not allowed")]
pub struct MethodNotAllowed {
    pub method: String,
    /// The one method the route answers.
    pub allow: Method,
}

impl MethodNotAllowed {
    /// `Ok` when `method` is `allow`.
    pub fn check(method: &Method, allow: Method) -> Result<(), Self> {
        if *method == allow {
            Ok(())
        } else {
            Err(Self {
                method: method.to_string(),
                allow,
            })
        }
    }
}

impl ApiError for MethodNotAllowed {
    fn status(&self) -> StatusCode {
        StatusCode::METHOD_NOT_ALLOWED
    }

    fn code(&self) -> &'static str {
        "method_not_allowed"
    }

    fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        HeaderValue::from_str(self.allow.as_str())
            .map(|v| vec![(ALLOW, v)])
            .unwrap_or_default()
    }
}

/// The task store failed or did not answer in time: 503, so the caller retries.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the task store did not answer within {} ms", .0.as_millis())]
    Deadline(Duration),
}

impl ApiError for Unavailable {
    fn status(&self) -> StatusCode {
        StatusCode::SERVICE_UNAVAILABLE
    }

    fn code(&self) -> &'static str {
        "unavailable"
    }

    fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        vec![(RETRY_AFTER, HeaderValue::from_static("5"))]
    }
}

/// Awaits a store call, answering [`Unavailable`] if it fails or outlasts `deadline`.
pub async fn within_deadline<T>(
    deadline: Duration,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, Unavailable> {
    tokio::time::timeout(deadline, call)
        .await
        .map_err(|_| Unavailable::Deadline(deadline))?
        .map_err(Unavailable::Store)
}

/// Serves one API Gateway request: a span with its request id (and the `task_id` the
/// handler records), the handler's response, or its error through [`error_response`].
#[cfg(feature = "api")]
pub async fn serve<E, F, Fut>(
    request: lambda_http::Request,
    run: F,
) -> lambda_http::Response<lambda_http::Body>
where
    E: ApiError,
    F: FnOnce(lambda_http::Request) -> Fut,
    Fut: Future<Output = Result<lambda_http::Response<lambda_http::Body>, E>>,
{
    use lambda_http::RequestExt as _;
    use tracing::Instrument as _;

    let started = std::time::Instant::now();
    let request_id = request
        .lambda_context_ref()
        .map(|c| c.request_id.clone())
        .unwrap_or_default();
    let span =
        tracing::info_span!("request", request_id = %request_id, task_id = tracing::field::Empty);
    async move {
        match run(request).await {
            Ok(response) => response,
            Err(err) => error_response(&err, started.elapsed()),
        }
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_status_type_and_body() {
        let r: Response<String> = json_response(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "not_found"}),
        );
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(r.body(), r#"{"error":"not_found"}"#);
    }

    #[test]
    fn common_errors_have_their_status_code_and_headers() {
        let err = MethodNotAllowed::check(&Method::GET, Method::POST).unwrap_err();
        let r: Response<String> = error_response(&err, Duration::ZERO);
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()[ALLOW], "POST");
        assert_eq!(
            r.body(),
            r#"{"error":"method_not_allowed","message":"method GET is not allowed"}"#
        );
        assert!(MethodNotAllowed::check(&Method::POST, Method::POST).is_ok());

        let err = Unavailable::Store(StoreError::Unavailable(
            "connection refused to 10.0.0.5".into(),
        ));
        let r: Response<String> = error_response(&err, Duration::ZERO);
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[RETRY_AFTER], "5");
        assert!(!r.body().contains("10.0.0.5"), "{}", r.body());
        assert_eq!(
            r.body(),
            r#"{"error":"unavailable","message":"temporarily unavailable; retry later"}"#
        );
    }

    #[tokio::test]
    async fn a_slow_store_call_is_unavailable_at_the_deadline() {
        let slow = async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok::<_, StoreError>(())
        };
        let err = within_deadline(Duration::from_millis(10), slow)
            .await
            .unwrap_err();
        assert!(matches!(err, Unavailable::Deadline(_)));
        assert_eq!(
            err.to_string(),
            "the task store did not answer within 10 ms"
        );
    }
}
