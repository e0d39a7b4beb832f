//! What one delivery attempt's answer means: delivered, worth retrying (and whether it
//! counts toward disabling the endpoint), or a permanent refusal that disables it at
//! once. One pure function, [`classify`], with one table test: the deliver function never
//! looks at a status code itself.

use std::time::{Duration, UNIX_EPOCH};

use serde::Deserialize;

use super::format::TargetKind;
use crate::domain::clock::Timestamp;

/// Throttling and timeouts wait at least this long, whatever the schedule says.
pub const THROTTLED_FLOOR: Duration = Duration::from_secs(60);

/// How a request failed before any answer arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportError {
    /// No complete answer within the request timeout.
    Timeout,
    /// The host name did not resolve (or resolved only to blocked addresses).
    Dns,
    /// The connection was refused or reset.
    Connect,
    /// The TLS handshake failed (bad certificate, protocol).
    Tls,
    /// The SSRF guard refused where the name now points (it passed when saved: a DNS
    /// change since). Retried, and counted: it disables the endpoint if it lasts.
    Blocked,
    /// Anything else on the wire (a body cut short, a protocol error).
    Other,
}

/// An attempt as the sender saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempted<'a> {
    Answered {
        status: u16,
        /// The `Retry-After` header, as sent.
        retry_after: Option<&'a str>,
        /// The first bytes of the body (the deliver function keeps up to 4 KiB).
        body: &'a [u8],
    },
    Failed(TransportError),
}

/// Why an attempt did not deliver. The string form is the stored `error_class`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    Timeout,
    Dns,
    Connect,
    Tls,
    Blocked,
    Transport,
    /// A 3xx: redirects are never followed.
    Redirect(u16),
    /// 429, or a target's own rate-limit code inside a 200.
    RateLimited,
    ServerError(u16),
    ClientError(u16),
    /// The target says it is gone for good (410, Slack 403/404, WeCom 93000).
    Gone,
    /// A 2xx whose body reports an error (WeCom `errcode`, Feishu `code`).
    TargetError(i64),
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Dns => "dns",
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Blocked => "blocked",
            Self::Transport => "transport",
            Self::Redirect(_) => "redirect",
            Self::RateLimited => "rate_limited",
            Self::ServerError(_) => "server_error",
            Self::ClientError(_) => "client_error",
            Self::Gone => "gone",
            Self::TargetError(_) => "target_error",
        }
    }
}

/// What the attempt means for the delivery and for the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    Retry {
        class: FailureClass,
        /// Rate limiting means the endpoint is alive: it does not count toward disabling.
        counts_toward_disable: bool,
        /// Wait at least this long (throttling, timeouts).
        floor: Option<Duration>,
        /// What the target asked for (`Retry-After`, Discord's `retry_after`).
        retry_after: Option<Duration>,
    },
    /// Disables the endpoint at once; the delivery is dead.
    Permanent {
        class: FailureClass,
    },
}

impl Verdict {
    fn retry(class: FailureClass) -> Self {
        let throttled = matches!(class, FailureClass::RateLimited | FailureClass::Timeout);
        Self::Retry {
            class,
            counts_toward_disable: class != FailureClass::RateLimited,
            floor: throttled.then_some(THROTTLED_FLOOR),
            retry_after: None,
        }
    }

    fn asked(self, retry_after: Option<Duration>) -> Self {
        match self {
            Self::Retry {
                class,
                counts_toward_disable,
                floor,
                ..
            } => Self::Retry {
                class,
                counts_toward_disable,
                floor,
                retry_after,
            },
            other => other,
        }
    }

    /// The failure, if the attempt did not deliver.
    pub fn failure(&self) -> Option<FailureClass> {
        match self {
            Self::Delivered => None,
            Self::Retry { class, .. } | Self::Permanent { class } => Some(*class),
        }
    }
}

/// WeCom's robot: every answer is a 200; `errcode` says what happened.
const WECOM_INVALID_WEBHOOK: i64 = 93000;
const WECOM_RATE_LIMITED: i64 = 45009;
/// Feishu's custom bot: `code` 0 is success.
const FEISHU_RATE_LIMITED: i64 = 11232;

#[derive(Deserialize)]
struct WeComAnswer {
    errcode: i64,
}

#[derive(Deserialize)]
struct FeishuAnswer {
    code: Option<i64>,
    #[serde(rename = "StatusCode")]
    status_code: Option<i64>,
}

#[derive(Deserialize)]
struct DiscordRateLimit {
    retry_after: f64,
}

/// What `attempted` means for a `kind` target, at `now` (for an HTTP-date `Retry-After`).
pub fn classify(kind: TargetKind, attempted: &Attempted<'_>, now: Timestamp) -> Verdict {
    let (status, retry_after, body) = match *attempted {
        Attempted::Failed(e) => {
            return Verdict::retry(match e {
                TransportError::Timeout => FailureClass::Timeout,
                TransportError::Dns => FailureClass::Dns,
                TransportError::Connect => FailureClass::Connect,
                TransportError::Tls => FailureClass::Tls,
                TransportError::Blocked => FailureClass::Blocked,
                TransportError::Other => FailureClass::Transport,
            });
        }
        Attempted::Answered {
            status,
            retry_after,
            body,
        } => (status, retry_after, body),
    };
    let asked = retry_after.and_then(|v| parse_retry_after(v, now));
    match status {
        200..=299 => in_body(kind, body),
        300..=399 => Verdict::retry(FailureClass::Redirect(status)),
        410 => Verdict::Permanent {
            class: FailureClass::Gone,
        },
        403 | 404 if kind == TargetKind::Slack => Verdict::Permanent {
            class: FailureClass::Gone,
        },
        429 => {
            let discord = (kind == TargetKind::Discord)
                .then(|| serde_json::from_slice::<DiscordRateLimit>(body).ok())
                .flatten()
                .and_then(|r| Duration::try_from_secs_f64(r.retry_after).ok());
            Verdict::retry(FailureClass::RateLimited).asked(asked.or(discord))
        }
        500..=599 => Verdict::retry(FailureClass::ServerError(status)).asked(asked),
        _ => Verdict::retry(FailureClass::ClientError(status)),
    }
}

/// A 2xx: delivered, unless the target reports an error inside it.
fn in_body(kind: TargetKind, body: &[u8]) -> Verdict {
    match kind {
        TargetKind::WeCom => match serde_json::from_slice::<WeComAnswer>(body) {
            Ok(WeComAnswer { errcode: 0 }) => Verdict::Delivered,
            Ok(WeComAnswer {
                errcode: WECOM_INVALID_WEBHOOK,
            }) => Verdict::Permanent {
                class: FailureClass::Gone,
            },
            Ok(WeComAnswer {
                errcode: WECOM_RATE_LIMITED,
            }) => Verdict::retry(FailureClass::RateLimited),
            Ok(WeComAnswer { errcode }) => Verdict::retry(FailureClass::TargetError(errcode)),
            // The robot always answers JSON; anything else is not its answer.
            Err(_) => Verdict::retry(FailureClass::TargetError(-1)),
        },
        TargetKind::Feishu => match serde_json::from_slice::<FeishuAnswer>(body) {
            Ok(a) => match a.code.or(a.status_code) {
                None | Some(0) => Verdict::Delivered,
                Some(FEISHU_RATE_LIMITED) => Verdict::retry(FailureClass::RateLimited),
                Some(code) => Verdict::retry(FailureClass::TargetError(code)),
            },
            Err(_) => Verdict::retry(FailureClass::TargetError(-1)),
        },
        _ => Verdict::Delivered,
    }
}

/// `Retry-After`: delay-seconds, or an HTTP-date (a date in the past is "now").
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let now = UNIX_EPOCH + Duration::from_millis(u64::try_from(now.as_millis()).unwrap_or(0));
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureClass as C;
    use TargetKind as K;

    const NOW: Timestamp = Timestamp::from_secs(1_795_000_000);

    fn answered(
        status: u16,
        retry_after: Option<&'static str>,
        body: &'static str,
    ) -> Attempted<'static> {
        Attempted::Answered {
            status,
            retry_after,
            body: body.as_bytes(),
        }
    }

    fn retry(class: FailureClass, counts: bool, floor: bool, asked: Option<u64>) -> Verdict {
        Verdict::Retry {
            class,
            counts_toward_disable: counts,
            floor: floor.then_some(THROTTLED_FLOOR),
            retry_after: asked.map(Duration::from_secs),
        }
    }

    const GONE: Verdict = Verdict::Permanent { class: C::Gone };

    #[test]
    fn classification_table() {
        let rows: Vec<(&str, K, Attempted<'static>, Verdict)> = vec![
            (
                "200",
                K::Webhook,
                answered(200, None, ""),
                Verdict::Delivered,
            ),
            (
                "204",
                K::Webhook,
                answered(204, None, ""),
                Verdict::Delivered,
            ),
            (
                "299",
                K::Custom,
                answered(299, None, "x"),
                Verdict::Delivered,
            ),
            (
                "301 is not followed",
                K::Webhook,
                answered(301, None, ""),
                retry(C::Redirect(301), true, false, None),
            ),
            (
                "308",
                K::Slack,
                answered(308, None, ""),
                retry(C::Redirect(308), true, false, None),
            ),
            (
                "400",
                K::Webhook,
                answered(400, None, ""),
                retry(C::ClientError(400), true, false, None),
            ),
            (
                "401",
                K::Webhook,
                answered(401, None, ""),
                retry(C::ClientError(401), true, false, None),
            ),
            (
                "403 generic",
                K::Webhook,
                answered(403, None, ""),
                retry(C::ClientError(403), true, false, None),
            ),
            (
                "404 generic",
                K::Discord,
                answered(404, None, ""),
                retry(C::ClientError(404), true, false, None),
            ),
            ("410", K::Webhook, answered(410, None, ""), GONE),
            ("410 any kind", K::Feishu, answered(410, None, ""), GONE),
            (
                "Slack 403",
                K::Slack,
                answered(403, None, "invalid_token"),
                GONE,
            ),
            (
                "Slack 404",
                K::Slack,
                answered(404, None, "channel_not_found"),
                GONE,
            ),
            (
                "Slack 410",
                K::Slack,
                answered(410, None, "channel_is_archived"),
                GONE,
            ),
            (
                "Slack 400",
                K::Slack,
                answered(400, None, "invalid_payload"),
                retry(C::ClientError(400), true, false, None),
            ),
            (
                "429",
                K::Webhook,
                answered(429, None, ""),
                retry(C::RateLimited, false, true, None),
            ),
            (
                "429 Retry-After",
                K::Webhook,
                answered(429, Some("120"), ""),
                retry(C::RateLimited, false, true, Some(120)),
            ),
            (
                "429 HTTP-date past",
                K::Webhook,
                answered(429, Some("Sun, 15 Nov 2026 20:53:50 GMT"), ""),
                retry(C::RateLimited, false, true, Some(0)),
            ),
            (
                "429 unreadable Retry-After",
                K::Webhook,
                answered(429, Some("soon"), ""),
                retry(C::RateLimited, false, true, None),
            ),
            (
                "Discord 429 body",
                K::Discord,
                answered(
                    429,
                    None,
                    r#"{"message":"You are being rate limited.","retry_after":64.57,"global":false}"#,
                ),
                Verdict::Retry {
                    class: C::RateLimited,
                    counts_toward_disable: false,
                    floor: Some(THROTTLED_FLOOR),
                    retry_after: Some(Duration::from_secs_f64(64.57)),
                },
            ),
            (
                "Discord header wins",
                K::Discord,
                answered(429, Some("3"), r#"{"retry_after":64.5}"#),
                retry(C::RateLimited, false, true, Some(3)),
            ),
            (
                "a generic target's body is not read",
                K::Webhook,
                answered(429, None, r#"{"retry_after":9}"#),
                retry(C::RateLimited, false, true, None),
            ),
            (
                "500",
                K::Webhook,
                answered(500, None, ""),
                retry(C::ServerError(500), true, false, None),
            ),
            (
                "503 Retry-After",
                K::Webhook,
                answered(503, Some("30"), ""),
                retry(C::ServerError(503), true, false, Some(30)),
            ),
            (
                "599",
                K::Webhook,
                answered(599, None, ""),
                retry(C::ServerError(599), true, false, None),
            ),
            (
                "600 is not a status we know",
                K::Webhook,
                answered(600, None, ""),
                retry(C::ClientError(600), true, false, None),
            ),
            (
                "100",
                K::Webhook,
                answered(100, None, ""),
                retry(C::ClientError(100), true, false, None),
            ),
            (
                "WeCom ok",
                K::WeCom,
                answered(200, None, r#"{"errcode":0,"errmsg":"ok"}"#),
                Verdict::Delivered,
            ),
            (
                "WeCom error in a 200",
                K::WeCom,
                answered(
                    200,
                    None,
                    r#"{"errcode":40008,"errmsg":"invalid message type"}"#,
                ),
                retry(C::TargetError(40008), true, false, None),
            ),
            (
                "WeCom invalid webhook",
                K::WeCom,
                answered(
                    200,
                    None,
                    r#"{"errcode":93000,"errmsg":"invalid webhook url"}"#,
                ),
                GONE,
            ),
            (
                "WeCom rate limit",
                K::WeCom,
                answered(
                    200,
                    None,
                    r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#,
                ),
                retry(C::RateLimited, false, true, None),
            ),
            (
                "WeCom not JSON",
                K::WeCom,
                answered(200, None, "<html>"),
                retry(C::TargetError(-1), true, false, None),
            ),
            (
                "Feishu ok",
                K::Feishu,
                answered(200, None, r#"{"code":0,"msg":"success","data":{}}"#),
                Verdict::Delivered,
            ),
            (
                "Feishu old ok",
                K::Feishu,
                answered(200, None, r#"{"StatusCode":0,"StatusMessage":"success"}"#),
                Verdict::Delivered,
            ),
            (
                "Feishu bad signature",
                K::Feishu,
                answered(
                    200,
                    None,
                    r#"{"code":19021,"msg":"sign match fail or timestamp is not within one hour from current time"}"#,
                ),
                retry(C::TargetError(19021), true, false, None),
            ),
            (
                "Feishu rate limit",
                K::Feishu,
                answered(200, None, r#"{"code":11232,"msg":"frequency limited"}"#),
                retry(C::RateLimited, false, true, None),
            ),
            (
                "a generic 200 body is not read",
                K::Webhook,
                answered(200, None, r#"{"errcode":93000}"#),
                Verdict::Delivered,
            ),
            (
                "timeout",
                K::Webhook,
                Attempted::Failed(TransportError::Timeout),
                retry(C::Timeout, true, true, None),
            ),
            (
                "dns",
                K::Webhook,
                Attempted::Failed(TransportError::Dns),
                retry(C::Dns, true, false, None),
            ),
            (
                "connect",
                K::Slack,
                Attempted::Failed(TransportError::Connect),
                retry(C::Connect, true, false, None),
            ),
            (
                "tls",
                K::Webhook,
                Attempted::Failed(TransportError::Tls),
                retry(C::Tls, true, false, None),
            ),
            (
                "cut short",
                K::Webhook,
                Attempted::Failed(TransportError::Other),
                retry(C::Transport, true, false, None),
            ),
        ];
        let wrong: Vec<String> = rows
            .iter()
            .filter_map(|(name, kind, attempted, want)| {
                let got = classify(*kind, attempted, NOW);
                (got != *want).then(|| format!("{name}: got {got:?}, want {want:?}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        assert_eq!(parse_retry_after(" 7 ", NOW), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("0", NOW), Some(Duration::ZERO));
        let in_90s = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(1_795_000_090));
        assert_eq!(
            parse_retry_after(&in_90s, NOW),
            Some(Duration::from_secs(90))
        );
        let past = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(1_794_000_000));
        assert_eq!(parse_retry_after(&past, NOW), Some(Duration::ZERO));
        for bad in ["", "-5", "1.5", "soon", "Sun, 99 Nov 2026 20:53:50 GMT"] {
            assert_eq!(parse_retry_after(bad, NOW), None, "{bad:?}");
        }
    }

    #[test]
    fn failure_classes_have_stable_names() {
        assert_eq!(C::Redirect(302).as_str(), "redirect");
        assert_eq!(C::TargetError(93000).as_str(), "target_error");
        assert_eq!(Verdict::Delivered.failure(), None);
        assert_eq!(GONE.failure(), Some(C::Gone));
    }
}
