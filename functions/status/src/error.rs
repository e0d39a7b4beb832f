//! Why a status or registration request is not answered. How each becomes HTTP is this enum's
//! [`ApiError`] impl, turned into the response and the log line by the shared edge.

use lambda_http::http::{HeaderName, HeaderValue, StatusCode};
use shared::domain::task_id::TaskIdError;
use shared::lambda::http::{ApiError, BodyRefused, MethodNotAllowed, Unavailable};
use shared::usecase::operate::OperateError;

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    MethodNotAllowed(#[from] MethodNotAllowed),
    #[error("task_id is invalid: {0}")]
    InvalidTaskId(TaskIdError),
    #[error("no task with this id")]
    NotFound,
    #[error("no such route")]
    UnknownRoute,
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    #[error("could not presign the video URL: {0}")]
    Presign(String),
    #[error(transparent)]
    Body(#[from] BodyRefused),
    /// A registration body that is not `{"task_ids": [...]}` with 1–100 valid ids.
    #[error("{0}")]
    InvalidRegistration(String),
    /// An endpoint or delivery id that is not one (`ep_…`, `dl_…`).
    #[error("{0} id is invalid")]
    InvalidId(&'static str),
    /// A notification route's body or query that cannot be used.
    #[error("{0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Operate(#[from] OperateError),
    /// A re-drive the state machine refuses in this status (or a live lease).
    #[error("a {} task cannot be re-driven (only received tasks, and downloading ones whose lease ran out)", .0.as_str())]
    NotRedrivable(shared::domain::task::TaskStatus),
    /// The task changed between the read and the write: try again.
    #[error("the task changed meanwhile; try again")]
    Conflict,
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError for StatusError {
    fn status(&self) -> StatusCode {
        match self {
            Self::MethodNotAllowed(e) => e.status(),
            Self::InvalidTaskId(_) => StatusCode::BAD_REQUEST,
            Self::NotFound | Self::UnknownRoute => StatusCode::NOT_FOUND,
            Self::Unavailable(e) => e.status(),
            Self::Presign(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Body(e) => e.status(),
            Self::InvalidRegistration(_) => StatusCode::BAD_REQUEST,
            Self::InvalidId(_) | Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::Operate(e) => match e {
                OperateError::NoEndpoint | OperateError::NoDelivery => StatusCode::NOT_FOUND,
                OperateError::InvalidEndpoint(_) | OperateError::InvalidRequest(_) => {
                    StatusCode::BAD_REQUEST
                }
                OperateError::NoOutcome | OperateError::Conflict | OperateError::Disabled => {
                    StatusCode::CONFLICT
                }
                OperateError::Store(_) | OperateError::Queue(_) | OperateError::Deliver(_) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                OperateError::Random(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Self::NotRedrivable(_) | Self::Conflict => StatusCode::CONFLICT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::MethodNotAllowed(e) => e.code(),
            Self::InvalidTaskId(_) => "invalid_task_id",
            Self::NotFound | Self::UnknownRoute => "not_found",
            Self::Unavailable(e) => e.code(),
            Self::Presign(_) => "internal_error",
            Self::Body(e) => e.code(),
            Self::InvalidRegistration(_) => "invalid_registration",
            Self::InvalidId(_) => "invalid_id",
            Self::InvalidRequest(_) => "invalid_request",
            Self::Operate(e) => match e {
                OperateError::NoEndpoint | OperateError::NoDelivery => "not_found",
                OperateError::InvalidEndpoint(_) => "invalid_endpoint",
                OperateError::InvalidRequest(_) => "invalid_request",
                OperateError::NoOutcome => "no_outcome",
                OperateError::Conflict => "conflict",
                OperateError::Disabled => "endpoint_disabled",
                OperateError::Store(_) | OperateError::Queue(_) | OperateError::Deliver(_) => {
                    "unavailable"
                }
                OperateError::Random(_) => "internal_error",
            },
            Self::NotRedrivable(_) => "not_redrivable",
            Self::Conflict => "conflict",
            Self::Internal(_) => "internal_error",
        }
    }

    fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        match self {
            Self::MethodNotAllowed(e) => e.headers(),
            Self::Unavailable(e) => e.headers(),
            Self::Operate(
                OperateError::Store(_) | OperateError::Queue(_) | OperateError::Deliver(_),
            ) => vec![(
                lambda_http::http::header::RETRY_AFTER,
                HeaderValue::from_static("5"),
            )],
            _ => Vec::new(),
        }
    }
}
