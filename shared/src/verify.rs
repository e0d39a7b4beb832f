//! Callback verification: is this request from the upstream (or from whoever holds our
//! secret)? Pure functions of the request and the clock; nothing here does I/O.
//!
//! Schemes, each enabled by configuration; a request passes if any enabled scheme
//! accepts it:
//! - [`Scheme::Token`]: a secret in the callback URL (`?token=…`), several for rotation.
//! - [`Scheme::UpstreamHmac`]: the upstream's own signing, `X-Webhook-Timestamp` and
//!   `X-Webhook-Signature = base64(HMAC-SHA256(secret, "{task_id}.{timestamp}"))`. It
//!   covers only the task id, so `video_url` stays unauthenticated under it (ingest's
//!   SSRF guard and host allowlist are what protect the fetch).
//! - [`Scheme::StandardWebhooks`]: `webhook-id`, `webhook-timestamp`, `webhook-signature`
//!   (`v1,<base64>` entries), HMAC-SHA256 over `"{id}.{timestamp}.{body}"`, `whsec_` keys.
//!
//! Token and Standard Webhooks run before the body is parsed; the upstream scheme needs
//! the raw `data.task_id` and reads only that. Comparisons are constant-time over equal
//! lengths; a length mismatch is a rejection, never a prefix match.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

use crate::clock::Timestamp;
use crate::config::{ConfigError, Env};
use crate::envelope::probe_task_id;
use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

pub const UPSTREAM_TIMESTAMP_HEADER: &str = "x-webhook-timestamp";
pub const UPSTREAM_SIGNATURE_HEADER: &str = "x-webhook-signature";
pub const WEBHOOK_ID_HEADER: &str = "webhook-id";
pub const WEBHOOK_TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const WEBHOOK_SIGNATURE_HEADER: &str = "webhook-signature";

/// Default accepted clock difference between the sender and us.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
/// Shortest accepted token or HMAC key: shorter ones are guessable.
pub const MIN_SECRET_BYTES: usize = 16;
const HMAC_SHA256_LEN: usize = 32;
const MAX_WEBHOOK_ID_LEN: usize = 256;

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
    /// The `token` query parameter, if any.
    pub token: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// The configured schemes and their secrets.
#[derive(Debug, Clone)]
pub struct Verifier {
    tokens: Vec<Secret>,
    upstream_secrets: Vec<Secret>,
    standard_secrets: Vec<Secret>,
    tolerance_secs: i64,
    unauthenticated: bool,
}

impl Default for Verifier {
    /// No scheme enabled: rejects everything.
    fn default() -> Self {
        Self {
            tokens: Vec::new(),
            upstream_secrets: Vec::new(),
            standard_secrets: Vec::new(),
            tolerance_secs: secs_i64(DEFAULT_TOLERANCE),
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
    pub fn with_standard_webhooks(mut self, keys: Vec<Secret>) -> Self {
        self.standard_secrets = keys;
        self
    }

    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance_secs = secs_i64(tolerance);
        self
    }

    pub fn enabled_schemes(&self) -> Vec<Scheme> {
        let mut schemes = Vec::new();
        if !self.tokens.is_empty() {
            schemes.push(Scheme::Token);
        }
        if !self.upstream_secrets.is_empty() {
            schemes.push(Scheme::UpstreamHmac);
        }
        if !self.standard_secrets.is_empty() {
            schemes.push(Scheme::StandardWebhooks);
        }
        schemes
    }

    pub fn is_unauthenticated(&self) -> bool {
        self.unauthenticated
    }

    /// Reads `CALLBACK_TOKENS`, `UPSTREAM_HMAC_SECRETS`, `STANDARD_WEBHOOKS_SECRETS`,
    /// `SIGNATURE_TOLERANCE_SECS` and `CALLBACK_AUTH`. No scheme configured is an error
    /// unless `CALLBACK_AUTH=none`, which in turn refuses to coexist with secrets.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let tokens = secrets_from(env, "CALLBACK_TOKENS", |raw| Ok(raw.as_bytes().to_vec()))?;
        let upstream = secrets_from(env, "UPSTREAM_HMAC_SECRETS", |raw| {
            Ok(raw.as_bytes().to_vec())
        })?;
        let standard = secrets_from(env, "STANDARD_WEBHOOKS_SECRETS", decode_whsec)?;
        let tolerance = env.ranged(
            "SIGNATURE_TOLERANCE_SECS",
            DEFAULT_TOLERANCE.as_secs(),
            1..=3600,
        )?;
        let any_secret = !(tokens.is_empty() && upstream.is_empty() && standard.is_empty());

        match env.optional("CALLBACK_AUTH") {
            Some("none") if any_secret => Err(ConfigError::Invalid {
                name: "CALLBACK_AUTH",
                reason: "\"none\" disables verification but secrets are configured; unset one"
                    .into(),
            }),
            Some("none") => Ok(Self::unauthenticated()),
            Some(other) => Err(ConfigError::Invalid {
                name: "CALLBACK_AUTH",
                reason: format!(
                    "{other:?} is not a recognised value (only \"none\", for local use)"
                ),
            }),
            None if !any_secret => Err(ConfigError::Invalid {
                name: "CALLBACK_AUTH",
                reason: "no verification scheme is configured: set CALLBACK_TOKENS, \
                         UPSTREAM_HMAC_SECRETS or STANDARD_WEBHOOKS_SECRETS \
                         (or CALLBACK_AUTH=none, for local use only)"
                    .into(),
            }),
            None => Ok(Self::default()
                .with_tokens(tokens)
                .with_upstream_hmac(upstream)
                .with_standard_webhooks(standard)
                .with_tolerance(Duration::from_secs(tolerance))),
        }
    }

    /// Checks the request against every enabled scheme.
    pub fn verify(&self, req: &CallbackRequest<'_>, now: Timestamp) -> Result<Verified, Rejected> {
        if self.unauthenticated {
            return Ok(Verified::Unauthenticated);
        }
        let mut reasons = Vec::with_capacity(3);
        // Cheapest and body-independent first.
        if !self.tokens.is_empty() {
            match self.check_token(req.token) {
                Ok(()) => return Ok(Verified::By(Scheme::Token)),
                Err(r) => reasons.push((Scheme::Token, r)),
            }
        }
        if !self.standard_secrets.is_empty() {
            match self.check_standard_webhooks(req, now) {
                Ok(()) => return Ok(Verified::By(Scheme::StandardWebhooks)),
                Err(r) => reasons.push((Scheme::StandardWebhooks, r)),
            }
        }
        if !self.upstream_secrets.is_empty() {
            match self.check_upstream_hmac(req, now) {
                Ok(()) => return Ok(Verified::By(Scheme::UpstreamHmac)),
                Err(r) => reasons.push((Scheme::UpstreamHmac, r)),
            }
        }
        Err(Rejected { reasons })
    }

    fn check_token(&self, provided: Option<&str>) -> Result<(), Rejection> {
        let provided = provided
            .filter(|t| !t.is_empty())
            .ok_or(Rejection::Missing)?;
        // Compare against every configured token without stopping early.
        let matched = self.tokens.iter().fold(Choice::from(0), |acc, t| {
            acc | ct_eq_choice(t.expose(), provided.as_bytes())
        });
        if bool::from(matched) {
            Ok(())
        } else {
            Err(Rejection::Mismatch)
        }
    }

    fn check_upstream_hmac(
        &self,
        req: &CallbackRequest<'_>,
        now: Timestamp,
    ) -> Result<(), Rejection> {
        let timestamp = header(req.headers, UPSTREAM_TIMESTAMP_HEADER);
        let signature = header(req.headers, UPSTREAM_SIGNATURE_HEADER);
        let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
            return Err(Rejection::Missing);
        };
        self.check_timestamp(timestamp, now)?;
        let signature = decode_signature(signature)?;
        let task_id = probe_task_id(req.body).ok_or(Rejection::NoTaskId)?;
        let matched = self
            .upstream_secrets
            .iter()
            .fold(Choice::from(0), |acc, secret| {
                let expected = hmac_sha256(
                    secret.expose(),
                    &[task_id.as_bytes(), b".", timestamp.as_bytes()],
                );
                acc | ct_eq_choice(&expected, &signature)
            });
        if bool::from(matched) {
            Ok(())
        } else {
            Err(Rejection::Mismatch)
        }
    }

    fn check_standard_webhooks(
        &self,
        req: &CallbackRequest<'_>,
        now: Timestamp,
    ) -> Result<(), Rejection> {
        let id = header(req.headers, WEBHOOK_ID_HEADER);
        let timestamp = header(req.headers, WEBHOOK_TIMESTAMP_HEADER);
        let signatures = header(req.headers, WEBHOOK_SIGNATURE_HEADER);
        let (Some(id), Some(timestamp), Some(signatures)) = (id, timestamp, signatures) else {
            return Err(Rejection::Missing);
        };
        if id.is_empty() || id.len() > MAX_WEBHOOK_ID_LEN {
            return Err(Rejection::Missing);
        }
        self.check_timestamp(timestamp, now)?;
        // Only `v1,` entries count; other versions are skipped as the spec says.
        let candidates: Vec<Vec<u8>> = signatures
            .split(' ')
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .map(decode_signature)
            .collect::<Result<_, _>>()?;
        if candidates.is_empty() {
            return Err(Rejection::MalformedSignature);
        }
        let matched = self
            .standard_secrets
            .iter()
            .fold(Choice::from(0), |acc, key| {
                let expected = hmac_sha256(
                    key.expose(),
                    &[id.as_bytes(), b".", timestamp.as_bytes(), b".", req.body],
                );
                candidates
                    .iter()
                    .fold(acc, |acc, c| acc | ct_eq_choice(&expected, c))
            });
        if bool::from(matched) {
            Ok(())
        } else {
            Err(Rejection::Mismatch)
        }
    }

    fn check_timestamp(&self, raw: &str, now: Timestamp) -> Result<(), Rejection> {
        if raw.is_empty() || raw.len() > 12 || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Rejection::MalformedTimestamp);
        }
        let sent: i64 = raw.parse().map_err(|_| Rejection::MalformedTimestamp)?;
        let now = now.as_secs();
        if now.saturating_sub(sent) > self.tolerance_secs {
            Err(Rejection::StaleTimestamp)
        } else if sent.saturating_sub(now) > self.tolerance_secs {
            Err(Rejection::FutureTimestamp)
        } else {
            Ok(())
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
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

/// Signs like the upstream does; used by tests and the local tooling to produce callbacks.
pub fn upstream_signature(secret: &[u8], task_id: &str, timestamp: i64) -> String {
    let ts = timestamp.to_string();
    BASE64.encode(hmac_sha256(
        secret,
        &[task_id.as_bytes(), b".", ts.as_bytes()],
    ))
}

/// A Standard Webhooks `v1,<base64>` signature entry for `key` (decoded).
pub fn standard_webhooks_signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let tag = hmac_sha256(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    format!("v1,{}", BASE64.encode(tag))
}

fn decode_whsec(raw: &str) -> Result<Vec<u8>, String> {
    let b64 = raw
        .strip_prefix("whsec_")
        .ok_or("each secret must start with \"whsec_\"")?;
    BASE64
        .decode(b64)
        .map_err(|_| "a secret after \"whsec_\" is not valid base64".to_owned())
}

fn secrets_from(
    env: &Env,
    name: &'static str,
    decode: impl Fn(&str) -> Result<Vec<u8>, String>,
) -> Result<Vec<Secret>, ConfigError> {
    env.list(name)
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            // Error messages name the variable and the position, never the value.
            let bytes = decode(raw).map_err(|reason| ConfigError::Invalid {
                name,
                reason: format!("entry {}: {reason}", i + 1),
            })?;
            if bytes.len() < MIN_SECRET_BYTES {
                return Err(ConfigError::Invalid {
                    name,
                    reason: format!("entry {} is shorter than {MIN_SECRET_BYTES} bytes", i + 1),
                });
            }
            Ok(Secret::new(bytes))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const NOW: i64 = 1_795_000_000;
    const TOKEN: &str = "tok-0123456789abcdef";
    const UPSTREAM_KEY: &[u8] = b"upstream-secret-0123456789";
    const BODY: &[u8] = br#"{"code":200,"msg":"ok","data":{"task_id":"taskId_774b9aa0422f","video_url":"https://cdn.example/v.mp4"}}"#;

    fn now() -> Timestamp {
        Timestamp::from_secs(NOW)
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn req<'a>(
        token: Option<&'a str>,
        headers: &'a HeaderMap,
        body: &'a [u8],
    ) -> CallbackRequest<'a> {
        CallbackRequest {
            token,
            headers,
            body,
        }
    }

    fn reasons(r: Result<Verified, Rejected>) -> Vec<(Scheme, Rejection)> {
        r.unwrap_err().reasons
    }

    // --- token ---

    fn token_verifier() -> Verifier {
        Verifier::default().with_tokens(vec![
            Secret::new("old-token-0123456789"),
            Secret::new(TOKEN),
        ])
    }

    #[test]
    fn token_good_and_rotated() {
        let h = HeaderMap::new();
        let v = token_verifier();
        assert_eq!(
            v.verify(&req(Some(TOKEN), &h, BODY), now()),
            Ok(Verified::By(Scheme::Token))
        );
        assert_eq!(
            v.verify(&req(Some("old-token-0123456789"), &h, BODY), now()),
            Ok(Verified::By(Scheme::Token))
        );
    }

    #[test]
    fn token_bad_missing_and_wrong_length() {
        let h = HeaderMap::new();
        let v = token_verifier();
        let mismatch = vec![(Scheme::Token, Rejection::Mismatch)];
        assert_eq!(
            reasons(v.verify(&req(Some("tok-0123456789abcdeX"), &h, BODY), now())),
            mismatch
        );
        // A prefix or an extension of a valid token is not a match.
        assert_eq!(
            reasons(v.verify(&req(Some("tok-0123456789abcde"), &h, BODY), now())),
            mismatch
        );
        assert_eq!(
            reasons(v.verify(&req(Some(&format!("{TOKEN}x")), &h, BODY), now())),
            mismatch
        );
        assert_eq!(
            reasons(v.verify(&req(None, &h, BODY), now())),
            vec![(Scheme::Token, Rejection::Missing)]
        );
        assert_eq!(
            reasons(v.verify(&req(Some(""), &h, BODY), now())),
            vec![(Scheme::Token, Rejection::Missing)]
        );
    }

    // --- upstream HMAC ---

    fn upstream_verifier() -> Verifier {
        Verifier::default().with_upstream_hmac(vec![
            Secret::new(b"previous-secret-0123456789".to_vec()),
            Secret::new(UPSTREAM_KEY),
        ])
    }

    fn upstream_headers(key: &[u8], task_id: &str, ts: i64) -> HeaderMap {
        headers(&[
            (UPSTREAM_TIMESTAMP_HEADER, ts.to_string()),
            (
                UPSTREAM_SIGNATURE_HEADER,
                upstream_signature(key, task_id, ts),
            ),
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

    // --- Standard Webhooks ---

    // Known-answer vector from the Standard Webhooks reference libraries.
    const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SW_TS: i64 = 1_614_265_330;
    const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SW_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn sw_key() -> Vec<u8> {
        decode_whsec(SW_SECRET).unwrap()
    }

    fn sw_headers(id: &str, ts: i64, sig: &str) -> HeaderMap {
        headers(&[
            (WEBHOOK_ID_HEADER, id.into()),
            (WEBHOOK_TIMESTAMP_HEADER, ts.to_string()),
            (WEBHOOK_SIGNATURE_HEADER, sig.into()),
        ])
    }

    #[test]
    fn standard_webhooks_reference_vector() {
        assert_eq!(
            standard_webhooks_signature(&sw_key(), SW_ID, SW_TS, SW_BODY),
            SW_SIG
        );
        let v = Verifier::default().with_standard_webhooks(vec![Secret::new(sw_key())]);
        let h = sw_headers(SW_ID, SW_TS, SW_SIG);
        assert_eq!(
            v.verify(&req(None, &h, SW_BODY), Timestamp::from_secs(SW_TS + 10)),
            Ok(Verified::By(Scheme::StandardWebhooks))
        );
    }

    #[test]
    fn standard_webhooks_rotation_and_multiple_signatures() {
        let old = b"old-standard-key-0123456789".to_vec();
        let v = Verifier::default()
            .with_standard_webhooks(vec![Secret::new(old.clone()), Secret::new(sw_key())]);
        let sig_old = standard_webhooks_signature(&old, SW_ID, NOW, BODY);
        // The sender lists several signatures (its own rotation); one valid is enough.
        let list = format!("v1,{} v2,abc {sig_old}", BASE64.encode([7u8; 32]));
        let h = sw_headers(SW_ID, NOW, &list);
        assert_eq!(
            v.verify(&req(None, &h, BODY), now()),
            Ok(Verified::By(Scheme::StandardWebhooks))
        );
    }

    #[test]
    fn standard_webhooks_rejections() {
        let v = Verifier::default().with_standard_webhooks(vec![Secret::new(sw_key())]);
        let key = sw_key();
        let one = |h: &HeaderMap, body: &[u8]| reasons(v.verify(&req(None, h, body), now()))[0].1;
        let good = standard_webhooks_signature(&key, SW_ID, NOW, BODY);

        assert_eq!(
            one(&sw_headers(SW_ID, NOW, &good), b"{\"tampered\":1}"),
            Rejection::Mismatch
        );
        assert_eq!(
            one(&sw_headers("msg_other", NOW, &good), BODY),
            Rejection::Mismatch
        );
        let stale = standard_webhooks_signature(&key, SW_ID, NOW - 301, BODY);
        assert_eq!(
            one(&sw_headers(SW_ID, NOW - 301, &stale), BODY),
            Rejection::StaleTimestamp
        );
        let future = standard_webhooks_signature(&key, SW_ID, NOW + 301, BODY);
        assert_eq!(
            one(&sw_headers(SW_ID, NOW + 301, &future), BODY),
            Rejection::FutureTimestamp
        );
        assert_eq!(one(&HeaderMap::new(), BODY), Rejection::Missing);
        let truncated = &good[..good.len() - 4];
        assert_eq!(
            one(&sw_headers(SW_ID, NOW, truncated), BODY),
            Rejection::MalformedSignature
        );
        assert_eq!(
            one(&sw_headers(SW_ID, NOW, "v2,abc"), BODY),
            Rejection::MalformedSignature
        );
    }

    // --- combination and configuration ---

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

    #[test]
    fn from_env_requires_a_scheme_or_explicit_none() {
        let err = Verifier::from_env(&Env::from_pairs([])).unwrap_err();
        assert!(err.to_string().contains("CALLBACK_AUTH"), "{err}");

        let v = Verifier::from_env(&Env::from_pairs([("CALLBACK_AUTH", "none")])).unwrap();
        assert!(v.is_unauthenticated());

        let err = Verifier::from_env(&Env::from_pairs([
            ("CALLBACK_AUTH", "none"),
            ("CALLBACK_TOKENS", TOKEN),
        ]))
        .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                name: "CALLBACK_AUTH",
                ..
            }
        ));
        assert!(Verifier::from_env(&Env::from_pairs([("CALLBACK_AUTH", "off")])).is_err());

        let v = Verifier::from_env(&Env::from_pairs([
            (
                "CALLBACK_TOKENS",
                "tok-aaaaaaaaaaaaaaaa, tok-bbbbbbbbbbbbbbbb",
            ),
            ("UPSTREAM_HMAC_SECRETS", "upstream-secret-0123456789"),
            ("STANDARD_WEBHOOKS_SECRETS", SW_SECRET),
            ("SIGNATURE_TOLERANCE_SECS", "60"),
        ]))
        .unwrap();
        assert_eq!(
            v.enabled_schemes(),
            [
                Scheme::Token,
                Scheme::UpstreamHmac,
                Scheme::StandardWebhooks
            ]
        );
        assert_eq!(v.tokens.len(), 2);
        assert_eq!(v.tolerance_secs, 60);
    }

    #[test]
    fn from_env_rejects_weak_or_malformed_secrets_without_echoing_them() {
        let err = Verifier::from_env(&Env::from_pairs([("CALLBACK_TOKENS", "short-secret")]))
            .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                name: "CALLBACK_TOKENS",
                ..
            }
        ));
        assert!(!err.to_string().contains("short-secret"));
        let err = Verifier::from_env(&Env::from_pairs([(
            "STANDARD_WEBHOOKS_SECRETS",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )]))
        .unwrap_err();
        assert!(err.to_string().contains("whsec_"), "{err}");
        assert!(!err.to_string().contains("MfKQ9r8"));
        let err = Verifier::from_env(&Env::from_pairs([
            ("CALLBACK_TOKENS", TOKEN),
            ("SIGNATURE_TOLERANCE_SECS", "0"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("SIGNATURE_TOLERANCE_SECS"));
        assert!(!format!("{:?}", token_verifier()).contains(TOKEN));
    }
}
