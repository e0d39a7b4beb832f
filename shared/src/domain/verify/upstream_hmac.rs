//! The upstream's own signing: `X-Webhook-Timestamp` (Unix seconds) and
//! `X-Webhook-Signature = base64(HMAC-SHA256(secret, "{task_id}.{timestamp}"))`. It covers
//! the task id and the time only, not the body.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{
    CallbackRequest, Rejection, any_match, check_timestamp, ct_eq_choice, decode_signature, header,
    hmac_sha256,
};
use crate::domain::clock::Timestamp;
use crate::domain::envelope::probe_task_id;
use crate::domain::secret::Secret;

pub const UPSTREAM_TIMESTAMP_HEADER: &str = "x-webhook-timestamp";
pub const UPSTREAM_SIGNATURE_HEADER: &str = "x-webhook-signature";

/// Accepts the request if one of `secrets` signed its task id and timestamp, and the
/// timestamp is within `tolerance_secs` of `now`.
pub(super) fn check(
    secrets: &[Secret],
    tolerance_secs: i64,
    req: &CallbackRequest<'_>,
    now: Timestamp,
) -> Result<(), Rejection> {
    let timestamp = header(req.headers, UPSTREAM_TIMESTAMP_HEADER)?;
    let signature = header(req.headers, UPSTREAM_SIGNATURE_HEADER)?;
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(Rejection::Missing);
    };
    check_timestamp(timestamp, tolerance_secs, now)?;
    let signature = decode_signature(signature)?;
    let task_id = probe_task_id(req.body).ok_or(Rejection::NoTaskId)?;
    any_match(secrets.iter().map(|secret| {
        let expected = hmac_sha256(
            secret.expose(),
            &[task_id.as_bytes(), b".", timestamp.as_bytes()],
        );
        ct_eq_choice(&expected, &signature)
    }))
}

/// Signs like the upstream does; used by tests and the local tooling to produce callbacks.
pub fn upstream_signature(secret: &[u8], task_id: &str, timestamp: i64) -> String {
    let ts = timestamp.to_string();
    BASE64.encode(hmac_sha256(
        secret,
        &[task_id.as_bytes(), b".", ts.as_bytes()],
    ))
}

#[cfg(test)]
mod tests {
    use hmac::Mac;
    use http::{HeaderMap, HeaderValue};

    use super::super::fixtures::*;
    use super::super::{HmacSha256, Scheme, Verified, Verifier};
    use super::*;

    fn upstream_verifier() -> Verifier {
        Verifier::default().with_upstream_hmac(vec![
            Secret::new(b"previous-secret-0123456789".to_vec()),
            Secret::new(UPSTREAM_KEY),
        ])
    }

    #[test]
    fn upstream_signature_is_hmac_sha256_of_task_id_dot_timestamp() {
        // Independent computation of the documented formula.
        let mut mac = HmacSha256::new_from_slice(UPSTREAM_KEY).unwrap();
        mac.update(b"taskId_774b9aa0422f.1795000000");
        let expected = BASE64.encode(mac.finalize().into_bytes());
        assert_eq!(
            upstream_signature(UPSTREAM_KEY, "taskId_774b9aa0422f", NOW),
            expected
        );
    }

    #[test]
    fn upstream_good_rotated_and_within_tolerance() {
        let v = upstream_verifier();
        for ts in [NOW, NOW - 300, NOW + 300] {
            let h = upstream_headers(UPSTREAM_KEY, "taskId_774b9aa0422f", ts);
            assert_eq!(
                v.verify(&req(None, &h, BODY), now()),
                Ok(Verified::By(Scheme::UpstreamHmac))
            );
        }
        let h = upstream_headers(b"previous-secret-0123456789", "taskId_774b9aa0422f", NOW);
        assert_eq!(
            v.verify(&req(None, &h, BODY), now()),
            Ok(Verified::By(Scheme::UpstreamHmac))
        );
    }

    #[test]
    fn upstream_rejections() {
        let v = upstream_verifier();
        let one = |h: &HeaderMap, body: &[u8]| reasons(v.verify(&req(None, h, body), now()))[0].1;

        let other_task = upstream_headers(UPSTREAM_KEY, "another-task", NOW);
        assert_eq!(one(&other_task, BODY), Rejection::Mismatch);
        let wrong_key = upstream_headers(b"wrong-secret-0123456789", "taskId_774b9aa0422f", NOW);
        assert_eq!(one(&wrong_key, BODY), Rejection::Mismatch);
        let stale = upstream_headers(UPSTREAM_KEY, "taskId_774b9aa0422f", NOW - 301);
        assert_eq!(one(&stale, BODY), Rejection::StaleTimestamp);
        let future = upstream_headers(UPSTREAM_KEY, "taskId_774b9aa0422f", NOW + 301);
        assert_eq!(one(&future, BODY), Rejection::FutureTimestamp);
        assert_eq!(one(&HeaderMap::new(), BODY), Rejection::Missing);

        // Signed for a different timestamp than the one sent.
        let mut replayed = upstream_headers(UPSTREAM_KEY, "taskId_774b9aa0422f", NOW - 10);
        replayed.insert(
            UPSTREAM_TIMESTAMP_HEADER,
            HeaderValue::from_static("1795000000"),
        );
        assert_eq!(one(&replayed, BODY), Rejection::Mismatch);

        // Wrong length: a truncated signature is malformed, never a prefix match.
        let good = upstream_signature(UPSTREAM_KEY, "taskId_774b9aa0422f", NOW);
        let raw = BASE64.decode(&good).unwrap();
        let short = headers(&[
            (UPSTREAM_TIMESTAMP_HEADER, NOW.to_string()),
            (UPSTREAM_SIGNATURE_HEADER, BASE64.encode(&raw[..31])),
        ]);
        assert_eq!(one(&short, BODY), Rejection::MalformedSignature);
        let garbage = headers(&[
            (UPSTREAM_TIMESTAMP_HEADER, NOW.to_string()),
            (UPSTREAM_SIGNATURE_HEADER, "!!not base64!!".into()),
        ]);
        assert_eq!(one(&garbage, BODY), Rejection::MalformedSignature);
        for ts in ["-5", "12.5", "", "1e9", "99999999999999"] {
            let h = headers(&[
                (UPSTREAM_TIMESTAMP_HEADER, ts.into()),
                (UPSTREAM_SIGNATURE_HEADER, good.clone()),
            ]);
            assert_eq!(one(&h, BODY), Rejection::MalformedTimestamp, "{ts:?}");
        }
        let good_headers = upstream_headers(UPSTREAM_KEY, "taskId_774b9aa0422f", NOW);
        assert_eq!(one(&good_headers, b"{}"), Rejection::NoTaskId);
    }
}
