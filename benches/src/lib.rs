//! The inputs the receiver benchmarks share: a real-shaped success callback and, for each
//! verification scheme, a verifier and a request that passes it (so every benchmark
//! measures the successful path, the one every genuine callback takes).

#![allow(clippy::unwrap_used, clippy::expect_used)] // fixed inputs: a failure is a broken benchmark

use http::HeaderMap;
use shared::Timestamp;
use shared::domain::secret::Secret;
use shared::domain::verify::{
    UPSTREAM_SIGNATURE_HEADER, UPSTREAM_TIMESTAMP_HEADER, Verifier, standard_webhooks_signature,
    upstream_signature,
};
use shared::test_support::header_map as headers;

/// The moment every signature is made and checked at.
pub const NOW: Timestamp = Timestamp::from_secs(1_795_000_000);
pub const TOKEN: &str = "tok-0123456789abcdef-0123456789";
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

/// The upstream's success callback, as it sends it (about 200 bytes).
pub fn body() -> Vec<u8> {
    serde_json::json!({
        "code": 200,
        "msg": "MP4 generated successfully.",
        "data": {
            "task_id": "taskId_774b9aa0422f",
            "video_url": "https://cdn.example.com/videos/2026/12/01/taskId_774b9aa0422f.mp4"
        }
    })
    .to_string()
    .into_bytes()
}

/// Each scheme's verifier (that scheme only) and the headers of a request it accepts.
pub fn schemes() -> Vec<(&'static str, Verifier, HeaderMap)> {
    let ts = NOW.as_secs();
    let token = Verifier::default().with_tokens(vec![Secret::new(TOKEN.as_bytes().to_vec())]);
    let upstream = Verifier::default().with_upstream_hmac(vec![Secret::new(SECRET.to_vec())]);
    let upstream_headers = headers(&[
        (UPSTREAM_TIMESTAMP_HEADER, ts.to_string()),
        (
            UPSTREAM_SIGNATURE_HEADER,
            upstream_signature(SECRET, "taskId_774b9aa0422f", ts),
        ),
    ]);
    let standard = Verifier::default().with_standard_webhooks(vec![Secret::new(SECRET.to_vec())]);
    let body = body();
    let standard_headers = headers(&[
        ("webhook-id", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W".to_owned()),
        ("webhook-timestamp", ts.to_string()),
        (
            "webhook-signature",
            standard_webhooks_signature(SECRET, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", ts, &body),
        ),
    ]);
    vec![
        ("token", token, HeaderMap::new()),
        ("upstream-hmac", upstream, upstream_headers),
        ("standard-webhooks", standard, standard_headers),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::domain::verify::{CallbackRequest, Verified};

    #[test]
    fn every_benchmarked_request_passes_its_scheme() {
        let body = body();
        for (name, verifier, headers) in schemes() {
            let tokens = [TOKEN];
            let request = CallbackRequest {
                tokens: if name == "token" { &tokens } else { &[] },
                headers: &headers,
                body: &body,
            };
            assert!(
                matches!(verifier.verify(&request, NOW), Ok(Verified::By(_))),
                "{name}"
            );
        }
    }
}
