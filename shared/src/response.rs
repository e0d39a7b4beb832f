//! JSON HTTP responses, the one shape both HTTP functions answer in.

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Response, StatusCode};

/// `status` with `body` as `application/json`. Infallible: only constant headers are set.
pub fn json_response<B: From<String>>(status: StatusCode, body: &serde_json::Value) -> Response<B> {
    let mut response = Response::new(B::from(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
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
}
