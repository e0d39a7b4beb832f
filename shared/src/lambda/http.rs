//! The HTTP edge both HTTP functions share: JSON responses from `Serialize` bodies, one
//! trait for API errors ([`ApiError`]: status, stable code, public message, extra
//! headers), the one function that turns an error into its response and its log line
//! ([`error_response`]), the errors every route can answer ([`MethodNotAllowed`],
//! [`Unavailable`], [`BodyRefused`] from [`check_json_body`]), and, with the `api` feature, the per-request span ([`serve`]).

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
    /// The methods the route answers.
    pub allow: Vec<Method>,
}

impl MethodNotAllowed {
    /// `Ok` when `method` is `allow`.
    pub fn check(method: &Method, allow: Method) -> Result<(), Self> {
        if *method == allow {
            Ok(())
        } else {
            Err(Self::of(method, &[allow]))
        }
    }

    /// `method` refused by a route that answers `allow`.
    pub fn of(method: &Method, allow: &[Method]) -> Self {
        Self {
            method: method.to_string(),
            allow: allow.to_vec(),
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
        let allow: Vec<&str> = self.allow.iter().map(Method::as_str).collect();
        HeaderValue::from_str(&allow.join(", "))
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

/// A request body the API does not read: too large, or not declared as UTF-8 JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyRefused {
    #[error("body is {size} bytes, over the {limit}-byte limit")]
    PayloadTooLarge { size: usize, limit: usize },
    #[error("content type {0:?} is not application/json")]
    UnsupportedMediaType(Option<String>),
}

impl ApiError for BodyRefused {
    fn status(&self) -> StatusCode {
        match self {
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
        }
    }
}

/// `Ok` for a body of at most `limit` bytes declared `application/json`, once, with no
/// charset or `charset=utf-8` (JSON is UTF-8; a body declared otherwise would be read as
/// something it is not). The size is checked first: it needs no header.
pub fn check_json_body(
    headers: &http::HeaderMap,
    body: &[u8],
    limit: usize,
) -> Result<(), BodyRefused> {
    if body.len() > limit {
        return Err(BodyRefused::PayloadTooLarge {
            size: body.len(),
            limit,
        });
    }
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let (first, second) = (values.next(), values.next());
    let raw = first.map(|v| v.to_str().unwrap_or("<non-ascii>"));
    let refused = || BodyRefused::UnsupportedMediaType(raw.map(str::to_owned));
    if second.is_some() {
        return Err(refused());
    }
    let mut parts = raw.unwrap_or("").split(';');
    if !parts
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case("application/json")
    {
        return Err(refused());
    }
    for param in parts {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        if name.trim().eq_ignore_ascii_case("charset")
            && !(value.eq_ignore_ascii_case("utf-8") || value.eq_ignore_ascii_case("utf8"))
        {
            return Err(refused());
        }
    }
    Ok(())
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

    #[test]
    fn json_bodies_are_checked_for_size_then_declared_type() {
        let headers = |values: &[&str]| {
            let mut h = http::HeaderMap::new();
            for v in values {
                h.append(CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
            }
            h
        };
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/json; charset=\"UTF8\"",
            "application/json; foo=bar",
            "application/json;",
        ] {
            assert_eq!(check_json_body(&headers(&[ok]), b"{}", 2), Ok(()), "{ok}");
        }
        for refused in [
            &[][..],
            &[""],
            &["text/plain"],
            &["application/jsonx"],
            &["application/problem+json"],
            &["application/json; charset=utf-16"],
            &["application/json; charset=ISO-8859-1"],
            &["application/json", "application/json"],
        ] {
            let err = check_json_body(&headers(refused), b"{}", 2).unwrap_err();
            assert_eq!(
                (err.status(), err.code()),
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
                "{refused:?}"
            );
        }
        let mut non_ascii = http::HeaderMap::new();
        non_ascii.insert(
            CONTENT_TYPE,
            HeaderValue::from_bytes(b"application/json\xff").unwrap(),
        );
        assert_eq!(
            check_json_body(&non_ascii, b"", 2),
            Err(BodyRefused::UnsupportedMediaType(Some(
                "<non-ascii>".into()
            )))
        );
        // Size first: an oversized body is 413 whatever it claims to be.
        let err = check_json_body(&headers(&["text/plain"]), b"{ }", 2).unwrap_err();
        assert_eq!(err, BodyRefused::PayloadTooLarge { size: 3, limit: 2 });
        assert_eq!(
            (err.status().as_u16(), err.code()),
            (413, "payload_too_large")
        );
        assert_eq!(err.to_string(), "body is 3 bytes, over the 2-byte limit");
    }
}
