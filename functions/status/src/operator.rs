//! The notification routes of the operator API (IAM-authorised, like the task routes):
//!
//! | route | does |
//! |---|---|
//! | `GET /endpoints`, `POST /endpoints` | list; create (201, the `whsec_` secret shown this once) |
//! | `GET`, `PUT`, `DELETE /endpoints/{id}` | show; replace the settings; delete (204) |
//! | `POST /endpoints/{id}/test` | send a `test` event now; the attempt |
//! | `POST /endpoints/{id}/recover` | `{"since", "until"}` (≤ 14 days): replay dead and skipped deliveries |
//! | `POST /endpoints/{id}/enable`, `…/disable` | switch it (enabling resets its health) |
//! | `POST /endpoints/{id}/rotate-secret` | a new secret (shown once); the old one signs for a day |
//! | `GET /endpoints/{id}/deliveries` | newest first; `?limit=` (≤ 100), `?cursor=` from `next_cursor` |
//! | `GET /deliveries/{id}`, `POST /deliveries/{id}/retry` | show one; send it again (202) |
//! | `POST /tasks/{id}/notify` | notify the task's outcome again (202) |
//!
//! Secrets and chat URLs are never shown after creation ([`EndpointView`]); what the
//! routes do is in the operator use case ([`Operator`]).

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::{Deserialize, Serialize};
use shared::Timestamp;
use shared::domain::notify::delivery::{Delivery, DeliveryId};
use shared::domain::notify::endpoint::{EndpointId, EndpointSpec};
use shared::lambda::http::{MethodNotAllowed, check_json_body, json_response};
use shared::notifications::view::EndpointView;
use shared::notifications::{
    DeliveryCursor, DeliveryLog, DeliveryQuery, DeliveryStore, EndpointAdmin, EndpointStore,
    JobQueue,
};
use shared::sender::Sender;
use shared::usecase::deliver::Delivered;
use shared::usecase::operate::{Operator, PAGE_MAX, Recovered};

use crate::error::StatusError;

const MAX_ENDPOINT_BODY: usize = 64 * 1024;

/// A notification route, with its ids as sent (not yet parsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorRoute {
    Endpoints,
    Endpoint(String),
    EndpointAction(String, EndpointAction),
    EndpointDeliveries(String),
    Delivery(String),
    DeliveryRetry(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointAction {
    Test,
    Recover,
    Enable,
    Disable,
    RotateSecret,
}

impl EndpointAction {
    fn parse(segment: &str) -> Option<Self> {
        Some(match segment {
            "test" => Self::Test,
            "recover" => Self::Recover,
            "enable" => Self::Enable,
            "disable" => Self::Disable,
            "rotate-secret" => Self::RotateSecret,
            _ => return None,
        })
    }
}

/// The route of the segments after `endpoints` or `deliveries` (`None`: no such route).
pub fn operator_route(collection: &str, rest: &[&str]) -> Option<OperatorRoute> {
    use OperatorRoute as R;
    let id = |s: &&str| (*s).to_owned();
    Some(match (collection, rest) {
        ("endpoints", []) => R::Endpoints,
        ("endpoints", [e]) => R::Endpoint(id(e)),
        ("endpoints", [e, "deliveries"]) => R::EndpointDeliveries(id(e)),
        ("endpoints", [e, action]) => R::EndpointAction(id(e), EndpointAction::parse(action)?),
        ("deliveries", [d]) => R::Delivery(id(d)),
        ("deliveries", [d, "retry"]) => R::DeliveryRetry(id(d)),
        _ => return None,
    })
}

#[derive(Debug, Serialize)]
struct EndpointAnswer<'a> {
    endpoint: EndpointView<'a>,
    /// Only when created or rotated.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct DeliveryAnswer<'a> {
    delivery: &'a Delivery,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'static str>,
}

#[derive(Debug, Serialize)]
struct DeliveriesAnswer<'a> {
    deliveries: &'a [Delivery],
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecoverWindow {
    since: String,
    until: String,
}

fn outcome_name(outcome: &Delivered) -> &'static str {
    match outcome {
        Delivered::Succeeded => "succeeded",
        Delivered::RetryIn(_) => "retry",
        Delivered::Dead => "dead",
        Delivered::NotYet(_) => "not_yet",
        Delivered::SkippedDisabled => "skipped_disabled",
        Delivered::Nothing => "nothing",
    }
}

fn endpoint_id(raw: &str) -> Result<EndpointId, StatusError> {
    EndpointId::parse(raw).ok_or(StatusError::InvalidId("endpoint"))
}

fn delivery_id(raw: &str) -> Result<DeliveryId, StatusError> {
    DeliveryId::parse(raw).ok_or(StatusError::InvalidId("delivery"))
}

fn timestamp(name: &str, raw: &str) -> Result<Timestamp, StatusError> {
    Timestamp::parse_rfc3339(raw).ok_or_else(|| {
        StatusError::InvalidRequest(format!("{name} is not an RFC 3339 timestamp: {raw:?}"))
    })
}

fn json_body<'a, T: Deserialize<'a>>(request: &'a Request) -> Result<T, StatusError> {
    let body: &[u8] = request.body().as_ref();
    check_json_body(request.headers(), body, MAX_ENDPOINT_BODY)?;
    serde_json::from_slice(body).map_err(|e| StatusError::InvalidRequest(e.to_string()))
}

/// Serves one notification route.
pub async fn serve_operator<D, E, S, Q>(
    operator: &Operator<D, E, S, Q>,
    route: OperatorRoute,
    request: &Request,
) -> Result<Response<Body>, StatusError>
where
    D: DeliveryStore + DeliveryLog,
    E: EndpointStore + EndpointAdmin,
    S: Sender,
    Q: JobQueue,
{
    use OperatorRoute as R;
    let now = Timestamp::now();
    let method = request.method();
    let one = |e: &shared::notifications::Endpoint, secret: Option<&str>, status| {
        json_response(
            status,
            &EndpointAnswer {
                endpoint: EndpointView::of(e, now),
                secret,
            },
        )
    };
    Ok(match route {
        R::Endpoints if method == Method::GET => {
            let all = operator.list().await?;
            let views: Vec<_> = all.iter().map(|e| EndpointView::of(e, now)).collect();
            json_response(StatusCode::OK, &serde_json::json!({ "endpoints": views }))
        }
        R::Endpoints => {
            MethodNotAllowed::check(method, Method::POST)?;
            let spec: EndpointSpec = json_body(request)?;
            let created = operator.create(spec, now).await?;
            one(
                &created.endpoint,
                created.secret.as_deref(),
                StatusCode::CREATED,
            )
        }
        R::Endpoint(raw) => {
            let id = endpoint_id(&raw)?;
            match *method {
                Method::GET => one(&operator.endpoint(&id).await?, None, StatusCode::OK),
                Method::PUT => {
                    let spec: EndpointSpec = json_body(request)?;
                    one(
                        &operator.update(&id, spec, now).await?,
                        None,
                        StatusCode::OK,
                    )
                }
                Method::DELETE => {
                    operator.delete(&id).await?;
                    Response::builder()
                        .status(StatusCode::NO_CONTENT)
                        .body(Body::Empty)
                        .map_err(|e| StatusError::Internal(e.to_string()))?
                }
                _ => {
                    return Err(MethodNotAllowed::of(
                        method,
                        &[Method::GET, Method::PUT, Method::DELETE],
                    )
                    .into());
                }
            }
        }
        R::EndpointAction(raw, action) => {
            MethodNotAllowed::check(method, Method::POST)?;
            let id = endpoint_id(&raw)?;
            match action {
                EndpointAction::Test => {
                    let (delivery, outcome) = operator.test(&id, now).await?;
                    let answer = DeliveryAnswer {
                        delivery: &delivery,
                        outcome: Some(outcome_name(&outcome)),
                    };
                    json_response(StatusCode::OK, &answer)
                }
                EndpointAction::Recover => {
                    let window: RecoverWindow = json_body(request)?;
                    let since = timestamp("since", &window.since)?;
                    let until = timestamp("until", &window.until)?;
                    let report: Recovered = operator.recover(&id, since, until, now).await?;
                    json_response(StatusCode::OK, &report)
                }
                EndpointAction::Enable | EndpointAction::Disable => {
                    let on = action == EndpointAction::Enable;
                    one(
                        &operator.set_enabled(&id, on, now).await?,
                        None,
                        StatusCode::OK,
                    )
                }
                EndpointAction::RotateSecret => {
                    let rotated = operator.rotate_secret(&id, now).await?;
                    one(&rotated.endpoint, rotated.secret.as_deref(), StatusCode::OK)
                }
            }
        }
        R::EndpointDeliveries(raw) => {
            MethodNotAllowed::check(method, Method::GET)?;
            let id = endpoint_id(&raw)?;
            let params = request.query_string_parameters();
            let limit = match params.first("limit") {
                None => 25,
                Some(raw) => raw
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=PAGE_MAX).contains(n))
                    .ok_or_else(|| {
                        StatusError::InvalidRequest(format!("limit must be 1 to {PAGE_MAX}"))
                    })?,
            };
            let after = match params.first("cursor") {
                None => None,
                Some(raw) => Some(DeliveryCursor::parse(raw).ok_or_else(|| {
                    StatusError::InvalidRequest("cursor is not one this API gave".into())
                })?),
            };
            let query = DeliveryQuery {
                endpoint: id,
                since: None,
                until: None,
                limit,
                after,
            };
            let page = operator.deliveries_of(&query).await?;
            json_response(
                StatusCode::OK,
                &DeliveriesAnswer {
                    deliveries: &page.deliveries,
                    next_cursor: page.next.map(|c| c.to_string()),
                },
            )
        }
        R::Delivery(raw) => {
            MethodNotAllowed::check(method, Method::GET)?;
            let delivery = operator.delivery(&delivery_id(&raw)?).await?;
            json_response(
                StatusCode::OK,
                &DeliveryAnswer {
                    delivery: &delivery,
                    outcome: None,
                },
            )
        }
        R::DeliveryRetry(raw) => {
            MethodNotAllowed::check(method, Method::POST)?;
            let delivery = operator.retry(&delivery_id(&raw)?, now).await?;
            json_response(
                StatusCode::ACCEPTED,
                &DeliveryAnswer {
                    delivery: &delivery,
                    outcome: None,
                },
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_segments() {
        use OperatorRoute as R;
        assert_eq!(operator_route("endpoints", &[]), Some(R::Endpoints));
        assert_eq!(
            operator_route("endpoints", &["ep_x"]),
            Some(R::Endpoint("ep_x".into()))
        );
        assert_eq!(
            operator_route("endpoints", &["ep_x", "deliveries"]),
            Some(R::EndpointDeliveries("ep_x".into()))
        );
        assert_eq!(
            operator_route("endpoints", &["ep_x", "rotate-secret"]),
            Some(R::EndpointAction(
                "ep_x".into(),
                EndpointAction::RotateSecret
            ))
        );
        assert_eq!(operator_route("endpoints", &["ep_x", "nope"]), None);
        assert_eq!(operator_route("endpoints", &["a", "b", "c"]), None);
        assert_eq!(operator_route("deliveries", &[]), None);
        assert_eq!(
            operator_route("deliveries", &["dl_1", "retry"]),
            Some(R::DeliveryRetry("dl_1".into()))
        );
    }
}
