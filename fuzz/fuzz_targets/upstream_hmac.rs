//! The upstream's signature scheme on fuzzed headers and bodies, against an independent
//! oracle: it passes exactly when the signature header is one base64 HMAC-SHA256 of
//! `{task_id}.{timestamp}` under a configured secret, the timestamp is plain digits
//! within the window, and each header came once.
//!
//! Input: timestamp, signature and body separated by 0xff; a leading byte picks which
//! of the two secrets signs a correct signature (so the fuzzer can reach acceptance).
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use music_video_fuzz::{NOW, TOLERANCE, in_window};
use shared::Timestamp;
use shared::domain::envelope::probe_task_id;
use shared::domain::secret::Secret;
use shared::domain::verify::{
    CallbackRequest, UPSTREAM_SIGNATURE_HEADER, UPSTREAM_TIMESTAMP_HEADER, Verifier,
};

const SECRETS: [&[u8]; 2] = [b"previous-secret-0123456789", b"current-secret-abcdefghij"];

fn sign(secret: &[u8], task_id: &str, ts: &str) -> String {
    music_video_fuzz::sign(secret, &[task_id.as_bytes(), b".", ts.as_bytes()])
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(3, |b| *b == 0xff);
    let (Some(ts), Some(sig), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let (Ok(ts), Ok(mut sig)) = (
        std::str::from_utf8(ts),
        std::str::from_utf8(sig).map(str::to_owned),
    ) else {
        return;
    };
    // Half the time, sign correctly with a configured secret: the fuzzer then explores
    // the timestamp and the body around a valid signature.
    if mode & 1 == 1 {
        if let Some(id) = probe_task_id(body) {
            sig = sign(SECRETS[usize::from(mode >> 1 & 1)], &id, ts.trim());
        }
    }
    let mut headers = HeaderMap::new();
    let (Ok(tsv), Ok(sigv)) = (HeaderValue::from_str(ts), HeaderValue::from_str(&sig)) else {
        return;
    };
    headers.append(UPSTREAM_TIMESTAMP_HEADER, tsv);
    headers.append(UPSTREAM_SIGNATURE_HEADER, sigv);
    if mode & 4 == 4 {
        headers.append(
            UPSTREAM_SIGNATURE_HEADER,
            HeaderValue::from_str(&sig).unwrap(),
        );
    }
    let v = Verifier::default()
        .with_upstream_hmac(SECRETS.iter().map(|s| Secret::new(s.to_vec())).collect())
        .with_upstream_tolerance(std::time::Duration::from_secs(TOLERANCE as u64));
    let req = CallbackRequest {
        tokens: &[],
        headers: &headers,
        body,
    };
    let accepted = v.verify(&req, Timestamp::from_secs(NOW)).is_ok();

    let readable = HeaderValue::from_str(&sig).is_ok_and(|h| h.to_str().is_ok());
    let ts = ts.trim();
    let expected = mode & 4 == 0
        && readable
        && in_window(ts)
        && probe_task_id(body)
            .is_some_and(|id| SECRETS.iter().any(|s| sign(s, &id, ts) == sig.trim()));
    assert_eq!(accepted, expected, "ts={ts:?} sig={sig:?}");
});
