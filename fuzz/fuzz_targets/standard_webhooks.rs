//! Standard Webhooks on fuzzed headers and bodies, against an independent oracle: it
//! passes exactly when some `v1,` entry of the signature list is the base64
//! HMAC-SHA256 of `{id}.{timestamp}.{body}` under a configured key, the id is 1-256
//! bytes, the timestamp plain digits within the window, each header came once, and every
//! header value is visible ASCII (a value with other bytes is not read at all: found by
//! this target, kept as `a_header_value_that_is_not_visible_ascii_is_not_read`).
//!
//! Input: id, timestamp, signature list and body separated by 0xff; a leading byte can
//! splice a correct signature into the list.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use music_video_fuzz::{NOW, TOLERANCE, in_window};
use shared::Timestamp;
use shared::domain::secret::Secret;
use shared::domain::verify::{
    CallbackRequest, Verifier, WEBHOOK_ID_HEADER, WEBHOOK_SIGNATURE_HEADER,
    WEBHOOK_TIMESTAMP_HEADER,
};

const KEYS: [&[u8]; 2] = [b"previous-key-0123456789", b"current-key-abcdefghij"];

fn sign(key: &[u8], id: &str, ts: &str, body: &[u8]) -> String {
    music_video_fuzz::sign(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body])
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(4, |b| *b == 0xff);
    let (Some(id), Some(ts), Some(list), Some(body)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let (Ok(id), Ok(ts), Ok(list)) = (
        std::str::from_utf8(id),
        std::str::from_utf8(ts),
        std::str::from_utf8(list),
    ) else {
        return;
    };
    let mut list = list.to_owned();
    if mode & 1 == 1 {
        let good = sign(KEYS[usize::from(mode >> 1 & 1)], id.trim(), ts.trim(), body);
        list = format!("{list} v1,{good}");
    }
    let (Ok(idv), Ok(tsv), Ok(listv)) = (
        HeaderValue::from_str(id),
        HeaderValue::from_str(ts),
        HeaderValue::from_str(&list),
    ) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.append(WEBHOOK_ID_HEADER, idv);
    headers.append(WEBHOOK_TIMESTAMP_HEADER, tsv);
    headers.append(WEBHOOK_SIGNATURE_HEADER, listv);
    if mode & 4 == 4 {
        headers.append(WEBHOOK_ID_HEADER, HeaderValue::from_static("msg_dup"));
    }
    let v = Verifier::default()
        .with_standard_webhooks(KEYS.iter().map(|k| Secret::new(k.to_vec())).collect())
        .with_tolerance(std::time::Duration::from_secs(TOLERANCE as u64));
    let req = CallbackRequest {
        tokens: &[],
        headers: &headers,
        body,
    };
    let accepted = v.verify(&req, Timestamp::from_secs(NOW)).is_ok();

    let readable = [id, ts, list.as_str()]
        .iter()
        .all(|v| HeaderValue::from_str(v).is_ok_and(|h| h.to_str().is_ok()));
    let (id, ts, list) = (id.trim(), ts.trim(), list.trim());
    let expected = mode & 4 == 0
        && readable
        && !id.is_empty()
        && id.len() <= 256
        && in_window(ts)
        && list
            .split(' ')
            .filter_map(|e| e.strip_prefix("v1,"))
            .any(|sig| KEYS.iter().any(|k| sign(k, id, ts, body) == sig));
    assert_eq!(accepted, expected, "id={id:?} ts={ts:?} list={list:?}");
});
