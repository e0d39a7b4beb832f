//! Callback verification: is this request from the upstream (or from whoever holds our
//! secret)? Pure functions of the request and the clock; nothing here does I/O.
//!
//! Schemes, each enabled by configuration (`lambda::config` reads it); a request passes
//! if any enabled scheme accepts it. One file per scheme:
//! - [`token`]: a secret in the callback URL (`?token=…`), several for rotation.
//! - [`upstream_hmac`]: the upstream's own signing, `X-Webhook-Timestamp` and
//!   `X-Webhook-Signature = base64(HMAC-SHA256(secret, "{task_id}.{timestamp}"))`. It
//!   covers only the task id, so `video_url` stays unauthenticated under it (ingest's
//!   SSRF guard and host allowlist are what protect the fetch).
//! - [`standard_webhooks`]: `webhook-id`, `webhook-timestamp`, `webhook-signature`
//!   (`v1,<base64>` entries), HMAC-SHA256 over `"{id}.{timestamp}.{body}"`, `whsec_` keys.
//!
//! Token and Standard Webhooks run before the body is parsed; the upstream scheme needs
//! the raw `data.task_id` and reads only that. Comparisons are constant-time over equal
//! lengths; a length mismatch is a rejection, never a prefix match.

#[cfg(test)]
mod properties;
pub mod standard_webhooks;
pub mod token;
pub mod upstream_hmac;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

use crate::domain::clock::Timestamp;
use crate::domain::secret::Secret;

pub use standard_webhooks::{
    WEBHOOK_ID_HEADER, WEBHOOK_SIGNATURE_HEADER, WEBHOOK_TIMESTAMP_HEADER, decode_whpk,
    standard_webhooks_asymmetric_signature, standard_webhooks_signature, whpk,
};
pub use upstream_hmac::{UPSTREAM_SIGNATURE_HEADER, UPSTREAM_TIMESTAMP_HEADER, upstream_signature};

type HmacSha256 = Hmac<Sha256>;

/// Default accepted clock difference between the sender and us.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
/// Default age accepted on the upstream's own signature, as deployed: the upstream
/// re-sends a callback about 1, 5 and 15 minutes after the first try with the original
/// timestamp, so the window must cover ~21 minutes plus clock skew (30 minutes).
pub const DEFAULT_UPSTREAM_TOLERANCE: Duration = Duration::from_secs(1800);
/// Shortest accepted token or HMAC key: shorter ones are guessable.
pub const MIN_SECRET_BYTES: usize = 16;
const HMAC_SHA256_LEN: usize = 32;

/// A verification scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Token,
    UpstreamHmac,
    StandardWebhooks,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::UpstreamHmac => "upstream-hmac",
            Self::StandardWebhooks => "standard-webhooks",
        }
    }
}

/// Why one scheme did not accept a request. Logged, never sent to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The scheme's credentials are absent from the request.
    Missing,
    MalformedTimestamp,
    StaleTimestamp,
    FutureTimestamp,
    MalformedSignature,
    /// The upstream scheme could not find `data.task_id` to check the signature against.
    NoTaskId,
    /// A credential came twice (two `token` parameters, a header sent twice): which one
    /// counts is ambiguous, so neither does.
    Duplicated,
    /// Well-formed, but no configured secret produces it.
    Mismatch,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::MalformedTimestamp => "malformed_timestamp",
            Self::StaleTimestamp => "stale_timestamp",
            Self::FutureTimestamp => "future_timestamp",
            Self::MalformedSignature => "malformed_signature",
            Self::NoTaskId => "no_task_id",
            Self::Duplicated => "duplicated",
            Self::Mismatch => "mismatch",
        }
    }
}

/// Every enabled scheme refused the request; one reason per scheme.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no verification scheme accepted the request ({})", self.summary())]
pub struct Rejected {
    pub reasons: Vec<(Scheme, Rejection)>,
}

impl Rejected {
    /// `token=missing upstream-hmac=stale_timestamp`, for one log field.
    pub fn summary(&self) -> String {
        self.reasons
            .iter()
            .map(|(s, r)| format!("{}={}", s.as_str(), r.as_str()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// How a request was let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    By(Scheme),
    /// `CALLBACK_AUTH=none`: local use only.
    Unauthenticated,
}

impl Verified {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::By(s) => s.as_str(),
            Self::Unauthenticated => "none",
        }
    }
}

/// The parts of an HTTP request that verification looks at.
#[derive(Debug, Clone, Copy)]
pub struct CallbackRequest<'a> {
    /// Every `token` query parameter (one, to pass).
    pub tokens: &'a [&'a str],
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// The configured schemes and their secrets.
#[derive(Debug, Clone)]
pub struct Verifier {
    pub(crate) tokens: Vec<Secret>,
    pub(crate) upstream_secrets: Vec<Secret>,
    pub(crate) standard_secrets: Vec<Secret>,
    /// `v1a` (ed25519) public keys; the receiver takes none, notification receivers may.
    pub(crate) standard_public_keys: Vec<ed25519_dalek::VerifyingKey>,
    /// Standard Webhooks' window.
    pub(crate) tolerance_secs: i64,
    /// The upstream HMAC's window.
    pub(crate) upstream_tolerance_secs: i64,
    unauthenticated: bool,
}

impl Default for Verifier {
    /// No scheme enabled: rejects everything.
    fn default() -> Self {
        Self {
            tokens: Vec::new(),
            upstream_secrets: Vec::new(),
            standard_secrets: Vec::new(),
            standard_public_keys: Vec::new(),
            tolerance_secs: secs_i64(DEFAULT_TOLERANCE),
            upstream_tolerance_secs: secs_i64(DEFAULT_TOLERANCE),
            unauthenticated: false,
        }
    }
}

fn secs_i64(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

impl Verifier {
    /// Accepts every request. Only for local stacks (`CALLBACK_AUTH=none`).
    pub fn unauthenticated() -> Self {
        Self {
            unauthenticated: true,
            ..Self::default()
        }
    }

    pub fn with_tokens(mut self, tokens: Vec<Secret>) -> Self {
        self.tokens = tokens;
        self
    }

    pub fn with_upstream_hmac(mut self, secrets: Vec<Secret>) -> Self {
        self.upstream_secrets = secrets;
        self
    }

    /// Standard Webhooks keys, already decoded from their `whsec_` form.
    /// Also accepts Standard Webhooks `v1a` signatures under these public keys.
    pub fn with_standard_webhooks_public_keys(
        mut self,
        keys: Vec<ed25519_dalek::VerifyingKey>,
    ) -> Self {
        self.standard_public_keys = keys;
        self
    }

    pub fn with_standard_webhooks(mut self, keys: Vec<Secret>) -> Self {
        self.standard_secrets = keys;
        self
    }

    /// The window of both signed schemes.
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance_secs = secs_i64(tolerance);
        self.upstream_tolerance_secs = secs_i64(tolerance);
        self
    }

    /// The upstream HMAC's window alone (its retries keep their first timestamp).
    pub fn with_upstream_tolerance(mut self, tolerance: Duration) -> Self {
        self.upstream_tolerance_secs = secs_i64(tolerance);
        self
    }

    /// Only the upstream's own signature is configured: it does not cover the body, so
    /// `video_url` is unauthenticated (the deployment must restrict the hosts).
    pub fn only_upstream_hmac(&self) -> bool {
        !self.unauthenticated && self.enabled_schemes() == [Scheme::UpstreamHmac]
    }

    pub fn enabled_schemes(&self) -> Vec<Scheme> {
        let mut schemes = Vec::new();
        if !self.tokens.is_empty() {
            schemes.push(Scheme::Token);
        }
        if !self.upstream_secrets.is_empty() {
            schemes.push(Scheme::UpstreamHmac);
        }
        if !self.standard_secrets.is_empty() || !self.standard_public_keys.is_empty() {
            schemes.push(Scheme::StandardWebhooks);
        }
        schemes
    }

    pub fn is_unauthenticated(&self) -> bool {
        self.unauthenticated
    }

    /// Checks the request against every enabled scheme.
    pub fn verify(&self, req: &CallbackRequest<'_>, now: Timestamp) -> Result<Verified, Rejected> {
        if self.unauthenticated {
            return Ok(Verified::Unauthenticated);
        }
        let mut reasons = Vec::with_capacity(3);
        // Cheapest and body-independent first.
        if !self.tokens.is_empty() {
            match token::check(&self.tokens, req.tokens) {
                Ok(()) => return Ok(Verified::By(Scheme::Token)),
                Err(r) => reasons.push((Scheme::Token, r)),
            }
        }
        if !self.standard_secrets.is_empty() || !self.standard_public_keys.is_empty() {
            match standard_webhooks::check(
                &self.standard_secrets,
                &self.standard_public_keys,
                self.tolerance_secs,
                req,
                now,
            ) {
                Ok(()) => return Ok(Verified::By(Scheme::StandardWebhooks)),
                Err(r) => reasons.push((Scheme::StandardWebhooks, r)),
            }
        }
        if !self.upstream_secrets.is_empty() {
            match upstream_hmac::check(
                &self.upstream_secrets,
                self.upstream_tolerance_secs,
                req,
                now,
            ) {
                Ok(()) => return Ok(Verified::By(Scheme::UpstreamHmac)),
                Err(r) => reasons.push((Scheme::UpstreamHmac, r)),
            }
        }
        Err(Rejected { reasons })
    }
}

/// A signed timestamp (Unix seconds) within `tolerance_secs` of `now`, either way.
fn check_timestamp(raw: &str, tolerance_secs: i64, now: Timestamp) -> Result<(), Rejection> {
    if raw.is_empty() || raw.len() > 12 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Rejection::MalformedTimestamp);
    }
    let sent: i64 = raw.parse().map_err(|_| Rejection::MalformedTimestamp)?;
    let now = now.as_secs();
    if now.saturating_sub(sent) > tolerance_secs {
        Err(Rejection::StaleTimestamp)
    } else if sent.saturating_sub(now) > tolerance_secs {
        Err(Rejection::FutureTimestamp)
    } else {
        Ok(())
    }
}

/// A header's one value (trimmed); sent twice, it is [`Rejection::Duplicated`].
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Rejection> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(Rejection::Duplicated);
    }
    Ok(first.and_then(|v| v.to_str().ok()).map(str::trim))
}

fn decode_signature(b64: &str) -> Result<Vec<u8>, Rejection> {
    let bytes = BASE64
        .decode(b64)
        .map_err(|_| Rejection::MalformedSignature)?;
    if bytes.len() == HMAC_SHA256_LEN {
        Ok(bytes)
    } else {
        Err(Rejection::MalformedSignature)
    }
}

/// `Ok` if any comparison matched. Every one was made (the iterator is drained whatever
/// matched first), so the time taken does not say which secret, if any, matched.
fn any_match(comparisons: impl Iterator<Item = Choice>) -> Result<(), Rejection> {
    let matched = comparisons.fold(Choice::from(0), |acc, c| acc | c);
    if bool::from(matched) {
        Ok(())
    } else {
        Err(Rejection::Mismatch)
    }
}

/// Constant-time equality over equal lengths; different lengths are simply unequal.
fn ct_eq_choice(a: &[u8], b: &[u8]) -> Choice {
    if a.len() == b.len() {
        a.ct_eq(b)
    } else {
        Choice::from(0)
    }
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; HMAC_SHA256_LEN] {
    // HMAC accepts keys of any length, so this cannot fail; an all-zero tag would simply
    // never match a real signature.
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return [0; HMAC_SHA256_LEN];
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Requests, keys and verifiers the scheme tests (and the configuration tests) share.
#[cfg(test)]
pub(crate) mod fixtures {
    use http::{HeaderMap, HeaderValue};

    use super::*;

    pub const NOW: i64 = 1_795_000_000;
    pub const TOKEN: &str = "tok-0123456789abcdef";
    pub const UPSTREAM_KEY: &[u8] = b"upstream-secret-0123456789";
    pub const BODY: &[u8] = br#"{"code":200,"msg":"ok","data":{"task_id":"taskId_774b9aa0422f","video_url":"https://cdn.example/v.mp4"}}"#;
    // Known-answer vector from the Standard Webhooks reference libraries.
    pub const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    pub const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    pub const SW_TS: i64 = 1_614_265_330;
    pub const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
    pub const SW_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    pub fn now() -> Timestamp {
        Timestamp::from_secs(NOW)
    }

    pub fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    pub fn req<'a>(
        token: Option<&'a str>,
        headers: &'a HeaderMap,
        body: &'a [u8],
    ) -> CallbackRequest<'a> {
        // Leaked: a test's few bytes, so the request can borrow a slice of one token.
        let tokens: &'a [&'a str] =
            Box::leak(token.into_iter().collect::<Vec<_>>().into_boxed_slice());
        CallbackRequest {
            tokens,
            headers,
            body,
        }
    }

    pub fn reasons(r: Result<Verified, Rejected>) -> Vec<(Scheme, Rejection)> {
        r.unwrap_err().reasons
    }

    pub fn token_verifier() -> Verifier {
        Verifier::default().with_tokens(vec![
            Secret::new("old-token-0123456789"),
            Secret::new(TOKEN),
        ])
    }

    pub fn upstream_headers(key: &[u8], task_id: &str, ts: i64) -> HeaderMap {
        headers(&[
            (UPSTREAM_TIMESTAMP_HEADER, ts.to_string()),
            (
                UPSTREAM_SIGNATURE_HEADER,
                upstream_signature(key, task_id, ts),
            ),
        ])
    }

    pub fn sw_key() -> Vec<u8> {
        standard_webhooks::decode_whsec(SW_SECRET).unwrap()
    }

    pub fn sw_headers(id: &str, ts: i64, sig: &str) -> HeaderMap {
        headers(&[
            (WEBHOOK_ID_HEADER, id.into()),
            (WEBHOOK_TIMESTAMP_HEADER, ts.to_string()),
            (WEBHOOK_SIGNATURE_HEADER, sig.into()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::fixtures::*;
    use super::*;

    #[test]
    fn any_enabled_scheme_suffices_and_all_reasons_are_reported() {
        let v = token_verifier().with_upstream_hmac(vec![Secret::new(UPSTREAM_KEY)]);
        let h = upstream_headers(UPSTREAM_KEY, "taskId_774b9aa0422f", NOW);
        assert_eq!(
            v.verify(&req(None, &h, BODY), now()),
            Ok(Verified::By(Scheme::UpstreamHmac))
        );
        let rejected = v
            .verify(&req(Some("nope"), &HeaderMap::new(), BODY), now())
            .unwrap_err();
        assert_eq!(rejected.summary(), "token=mismatch upstream-hmac=missing");
    }

    #[test]
    fn nothing_configured_rejects_everything() {
        let v = Verifier::default();
        assert!(
            v.verify(&req(Some(TOKEN), &HeaderMap::new(), BODY), now())
                .is_err()
        );
    }
}
