//! What the verifier targets' oracles share: an HMAC computed independently of the
//! code under test, and the timestamp rule as the schemes document it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The time the targets verify at, and the window around it.
pub const NOW: i64 = 1_795_000_000;
pub const TOLERANCE: i64 = 300;

/// base64(HMAC-SHA256(key, parts joined)).
pub fn sign(key: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    BASE64.encode(mac.finalize().into_bytes())
}

/// A timestamp the schemes accept: 1-12 ASCII digits within [`TOLERANCE`] of [`NOW`].
pub fn in_window(ts: &str) -> bool {
    !ts.is_empty()
        && ts.len() <= 12
        && ts.bytes().all(|b| b.is_ascii_digit())
        && ts
            .parse::<i64>()
            .is_ok_and(|t| (t - NOW).abs() <= TOLERANCE)
}
