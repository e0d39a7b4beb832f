//! The token scheme: the input is the `token` parameters as sent (split at 0xff). It
//! passes exactly when there is one, and it is one of the configured tokens.
#![no_main]

use http::HeaderMap;
use libfuzzer_sys::fuzz_target;
use shared::Timestamp;
use shared::domain::secret::Secret;
use shared::domain::verify::{CallbackRequest, Verifier};

const TOKENS: [&str; 2] = ["tok-old-0123456789", "tok-new-abcdefghij"];

fuzz_target!(|data: &[u8]| {
    let parts: Vec<&str> = data
        .split(|b| *b == 0xff)
        .filter_map(|p| std::str::from_utf8(p).ok())
        .collect();
    let v = Verifier::default().with_tokens(TOKENS.iter().map(|t| Secret::new(*t)).collect());
    let headers = HeaderMap::new();
    let req = CallbackRequest {
        tokens: &parts,
        headers: &headers,
        body: b"{}",
    };
    let accepted = v.verify(&req, Timestamp::from_secs(1_795_000_000)).is_ok();
    let expected = parts.len() == 1 && TOKENS.contains(&parts[0]);
    assert_eq!(accepted, expected, "{parts:?}");
});
