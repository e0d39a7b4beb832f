//! Typed configuration from the environment, read once at start-up. Every error names
//! the variable; no error ever contains a secret's value. This is the only place that
//! reads the environment: the domain's types get their [`FromEnv`] readers here.

use std::collections::HashMap;
use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use crate::domain::notify::endpoint::{EndpointId, EndpointUrlPolicy};
use crate::domain::notify::health::HealthPolicy;
use crate::domain::secret::Secret;
use crate::domain::ssrf::{HostPattern, UrlPolicy};
use crate::domain::task::DEFAULT_TASK_TTL;
use crate::domain::verify::standard_webhooks::decode_whsec;
use crate::domain::verify::{
    DEFAULT_TOLERANCE, DEFAULT_UPSTREAM_TOLERANCE, MIN_SECRET_BYTES, Verifier,
};

/// Why the configuration is unusable. The function refuses to start on any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {name} is required")]
    Missing { name: &'static str },
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// A source of configuration variables: the process environment in production, a map
/// in tests. Empty values count as unset.
#[derive(Clone)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be secrets: list names only.
        let mut names: Vec<_> = self.vars.keys().collect();
        names.sort();
        f.debug_struct("Env").field("names", &names).finish()
    }
}

impl Env {
    pub fn process() -> Self {
        Self {
            vars: std::env::vars().collect(),
        }
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    /// The value, or `None` when unset or empty.
    /// This environment with `vars` set over it (a secret's variables).
    pub fn overlaid(&self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut out = self.clone();
        out.vars.extend(vars);
        out
    }

    pub fn optional(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub fn required(&self, name: &'static str) -> Result<&str, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing { name })
    }

    /// Parses the value with `FromStr`, or returns `default` when unset.
    pub fn parse_or<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.optional(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e: T::Err| ConfigError::Invalid {
                name,
                reason: format!("{v:?}: {e}"),
            }),
        }
    }

    /// [`Env::parse_or`], then checks the value lies in `range`.
    pub fn ranged<T>(
        &self,
        name: &'static str,
        default: T,
        range: RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display,
        T::Err: fmt::Display,
    {
        in_range(name, self.parse_or(name, default)?, range)
    }

    /// A boolean flag: `true`/`false`/`1`/`0`/`yes`/`no`, default false.
    pub fn flag(&self, name: &'static str) -> Result<bool, ConfigError> {
        match self.optional(name).map(str::to_ascii_lowercase).as_deref() {
            None | Some("false" | "0" | "no") => Ok(false),
            Some("true" | "1" | "yes") => Ok(true),
            Some(other) => Err(ConfigError::Invalid {
                name,
                reason: format!("{other:?} is not true or false"),
            }),
        }
    }

    /// A list separated by commas and/or whitespace; empty items are dropped.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.optional(name)
            .map(|v| {
                v.split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A value read from the environment once, at cold start.
pub trait FromEnv: Sized {
    fn from_env(env: &Env) -> Result<Self, ConfigError>;
}

impl FromEnv for Verifier {
    /// Reads `CALLBACK_TOKENS`, `UPSTREAM_HMAC_SECRETS`, `STANDARD_WEBHOOKS_SECRETS`,
    /// `SIGNATURE_TOLERANCE_SECS` (Standard Webhooks, 300), `UPSTREAM_HMAC_TOLERANCE_SECS`
    /// (1800: the upstream's retries keep their first timestamp) and `CALLBACK_AUTH`. No
    /// scheme configured is an error unless `CALLBACK_AUTH=none`, which in turn refuses to
    /// coexist with secrets.
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
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
        let upstream_tolerance = env.ranged(
            "UPSTREAM_HMAC_TOLERANCE_SECS",
            DEFAULT_UPSTREAM_TOLERANCE.as_secs(),
            1..=7200,
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
                .with_tolerance(Duration::from_secs(tolerance))
                .with_upstream_tolerance(Duration::from_secs(upstream_tolerance))),
        }
    }
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

impl FromEnv for UrlPolicy {
    /// Reads `VIDEO_URL_ALLOWED_HOSTS`, `VIDEO_URL_ALLOW_HTTP`, `VIDEO_URL_ALLOW_LOOPBACK`:
    /// the one URL policy the receiver (which schemes a callback may carry) and ingest
    /// (where a fetch may go) both apply.
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let allowed_hosts = env
            .list("VIDEO_URL_ALLOWED_HOSTS")
            .iter()
            .map(|h| HostPattern::parse(h))
            .collect::<Result<_, _>>()
            .map_err(|reason| ConfigError::Invalid {
                name: "VIDEO_URL_ALLOWED_HOSTS",
                reason,
            })?;
        Ok(Self {
            allow_http: env.flag("VIDEO_URL_ALLOW_HTTP")?,
            allow_loopback: env.flag("VIDEO_URL_ALLOW_LOOPBACK")?,
            allowed_hosts,
        })
    }
}

/// The notification tables and job queue: `DELIVERIES_TABLE_NAME`, `ENDPOINTS_TABLE_NAME`,
/// `JOBS_QUEUE_URL` (notify, deliver and the operator routes all need the three).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationTables {
    pub deliveries: String,
    pub endpoints: String,
    pub jobs_queue_url: String,
}

impl FromEnv for NotificationTables {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            deliveries: env.required("DELIVERIES_TABLE_NAME")?.to_owned(),
            endpoints: env.required("ENDPOINTS_TABLE_NAME")?.to_owned(),
            jobs_queue_url: env.required("JOBS_QUEUE_URL")?.to_owned(),
        })
    }
}

/// Where endpoint signing secrets live: `ENDPOINT_SECRETS_PREFIX` (required; each
/// endpoint's secret is `{prefix}{endpoint_id}` in Secrets Manager) and
/// `ENDPOINT_SECRETS_CACHE_SECS` (300, 0–3600): how long a read secret is used while its
/// endpoint is unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSecretsConfig {
    pub prefix: String,
    pub cache_for: Duration,
}

impl FromEnv for EndpointSecretsConfig {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        const NAME: &str = "ENDPOINT_SECRETS_PREFIX";
        let prefix = env.required(NAME)?;
        // Secrets Manager's name alphabet, and room left for the endpoint id.
        let valid = prefix.len() <= 400
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c));
        if !valid {
            return Err(ConfigError::Invalid {
                name: NAME,
                reason: "at most 400 of A-Z a-z 0-9 / _ + = . @ -".into(),
            });
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            cache_for: Duration::from_secs(env.ranged(
                "ENDPOINT_SECRETS_CACHE_SECS",
                300u64,
                0..=3_600,
            )?),
        })
    }
}

/// `FALLBACK_ENDPOINT_ID`: the endpoint told (`endpoint.disabled`) when another is disabled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FallbackEndpoint(pub Option<EndpointId>);

impl FromEnv for FallbackEndpoint {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        match env.optional("FALLBACK_ENDPOINT_ID") {
            None => Ok(Self(None)),
            Some(raw) => {
                EndpointId::parse(raw)
                    .map(|id| Self(Some(id)))
                    .ok_or(ConfigError::Invalid {
                        name: "FALLBACK_ENDPOINT_ID",
                        reason: "not an endpoint id (ep_ and 20 characters)".into(),
                    })
            }
        }
    }
}

impl FromEnv for EndpointUrlPolicy {
    /// Reads `ENDPOINT_URL_ALLOW_HTTP`, `ENDPOINT_URL_ALLOW_LOOPBACK` and
    /// `ENDPOINT_URL_ANY_CHAT_HOST` (all local stacks only): where notification endpoints
    /// may point, checked when an endpoint is saved and again by the sender's guard.
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            guard: UrlPolicy {
                allow_http: env.flag("ENDPOINT_URL_ALLOW_HTTP")?,
                allow_loopback: env.flag("ENDPOINT_URL_ALLOW_LOOPBACK")?,
                allowed_hosts: Vec::new(),
            },
            any_chat_host: env.flag("ENDPOINT_URL_ANY_CHAT_HOST")?,
        })
    }
}

impl FromEnv for HealthPolicy {
    /// Reads `DISABLE_AFTER_DAYS` (5) and `DISABLE_AFTER_FAILURES` (20): an endpoint failing
    /// at least that long and that many times in a row is disabled.
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let days: u64 = env.ranged("DISABLE_AFTER_DAYS", 5, 0..=90)?;
        Ok(Self {
            failing_for: Duration::from_secs(days * 86_400),
            consecutive: env.ranged("DISABLE_AFTER_FAILURES", 20u32, 1..=10_000)?,
        })
    }
}

/// The upstream's task API: `UPSTREAM_API_BASE` (e.g. `https://api.example.com/`) and its
/// `UPSTREAM_API_KEY` (a Bearer key). Both or neither; plain http only with
/// `UPSTREAM_API_ALLOW_HTTP=true` (the local simulated upstream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamApiSettings {
    pub base: url::Url,
    pub key: Secret,
    pub allow_http: bool,
}

impl FromEnv for Option<UpstreamApiSettings> {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let (base, key) = match (
            env.optional("UPSTREAM_API_BASE"),
            env.optional("UPSTREAM_API_KEY"),
        ) {
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(ConfigError::Missing {
                    name: "UPSTREAM_API_KEY",
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::Missing {
                    name: "UPSTREAM_API_BASE",
                });
            }
            (Some(base), Some(key)) => (base, key),
        };
        let invalid = |reason: String| ConfigError::Invalid {
            name: "UPSTREAM_API_BASE",
            reason,
        };
        // A trailing slash, so `join` appends the API path instead of replacing a segment.
        let with_slash = if base.ends_with('/') {
            base.to_owned()
        } else {
            format!("{base}/")
        };
        let base = url::Url::parse(&with_slash).map_err(|e| invalid(format!("{base:?}: {e}")))?;
        let allow_http = env.flag("UPSTREAM_API_ALLOW_HTTP")?;
        match base.scheme() {
            "https" => {}
            "http" if allow_http => {}
            other => {
                return Err(invalid(format!(
                    "scheme {other:?}: https only (UPSTREAM_API_ALLOW_HTTP=true for local use)"
                )));
            }
        }
        Ok(Some(UpstreamApiSettings {
            base,
            key: Secret::new(key.as_bytes().to_vec()),
            allow_http,
        }))
    }
}

/// `TASK_TTL_DAYS` (30, 1–3650): how long a task record lives after its last change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskTtl(pub Duration);

impl FromEnv for TaskTtl {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let days = env.ranged(
            "TASK_TTL_DAYS",
            DEFAULT_TASK_TTL.as_secs() / 86_400,
            1..=3_650,
        )?;
        Ok(Self(Duration::from_secs(days * 86_400)))
    }
}

/// Ensures `value` lies in `range`, naming `name` otherwise.
fn in_range<T>(name: &'static str, value: T, range: RangeInclusive<T>) -> Result<T, ConfigError>
where
    T: PartialOrd + fmt::Display,
{
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::Invalid {
            name,
            reason: format!("{value} is outside {}..={}", range.start(), range.end()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::verify::Scheme;
    use crate::domain::verify::fixtures::{SW_SECRET, TOKEN, token_verifier};

    #[test]
    fn reads_typed_values_and_names_the_variable_on_error() {
        let env = Env::from_pairs([("A", "12"), ("B", "x"), ("E", "  "), ("L", "a, b c,,d")]);
        assert_eq!(env.parse_or("A", 5u32), Ok(12));
        assert_eq!(env.parse_or("MISSING", 5u32), Ok(5));
        assert_eq!(env.parse_or("E", 5u32), Ok(5));
        let err = env.parse_or("B", 5u32).unwrap_err();
        assert!(err.to_string().contains("B is invalid"), "{err}");
        assert_eq!(env.required("E"), Err(ConfigError::Missing { name: "E" }));
        assert_eq!(env.list("L"), ["a", "b", "c", "d"]);
        assert!(env.list("MISSING").is_empty());
    }

    #[test]
    fn notification_policies_default_to_a_deployment_and_name_their_variables() {
        let none = Env::from_pairs([]);
        assert_eq!(
            EndpointUrlPolicy::from_env(&none).unwrap(),
            EndpointUrlPolicy::default()
        );
        assert_eq!(
            HealthPolicy::from_env(&none).unwrap(),
            HealthPolicy::default()
        );
        let local = Env::from_pairs([
            ("ENDPOINT_URL_ALLOW_HTTP", "true"),
            ("ENDPOINT_URL_ALLOW_LOOPBACK", "true"),
            ("ENDPOINT_URL_ANY_CHAT_HOST", "true"),
            ("DISABLE_AFTER_DAYS", "0"),
            ("DISABLE_AFTER_FAILURES", "3"),
        ]);
        assert_eq!(
            EndpointUrlPolicy::from_env(&local).unwrap(),
            EndpointUrlPolicy::local()
        );
        let health = HealthPolicy::from_env(&local).unwrap();
        assert_eq!(
            (health.failing_for, health.consecutive),
            (Duration::ZERO, 3)
        );
        let bad = Env::from_pairs([("DISABLE_AFTER_FAILURES", "0")]);
        assert!(
            HealthPolicy::from_env(&bad)
                .unwrap_err()
                .to_string()
                .contains("DISABLE_AFTER_FAILURES")
        );
    }

    #[test]
    fn flags_are_strict() {
        let env = Env::from_pairs([("T", "TRUE"), ("F", "0"), ("X", "maybe")]);
        assert_eq!(env.flag("T"), Ok(true));
        assert_eq!(env.flag("F"), Ok(false));
        assert_eq!(env.flag("UNSET"), Ok(false));
        assert!(env.flag("X").is_err());
    }

    #[test]
    fn debug_lists_names_not_values() {
        let env = Env::from_pairs([("CALLBACK_TOKENS", "s3cr3t-value")]);
        let dbg = format!("{env:?}");
        assert!(dbg.contains("CALLBACK_TOKENS") && !dbg.contains("s3cr3t"));
    }

    #[test]
    fn range_check_names_the_variable() {
        assert_eq!(in_range("P", 8, 5..=5120), Ok(8));
        assert!(
            in_range("P", 4, 5..=5120)
                .unwrap_err()
                .to_string()
                .contains("P is invalid")
        );
    }

    // --- the domain's readers ---

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
        assert_eq!(
            v.upstream_tolerance_secs, 1800,
            "the upstream's retries keep their timestamp"
        );
    }

    #[test]
    fn the_upstreams_retries_with_their_first_timestamp_are_accepted() {
        use crate::domain::clock::Timestamp;
        use crate::domain::verify::fixtures::{
            BODY, NOW, UPSTREAM_KEY, now, req, sw_headers, sw_key, upstream_headers,
        };
        use crate::domain::verify::{Verified, standard_webhooks_signature};
        let v = Verifier::from_env(&Env::from_pairs([
            ("UPSTREAM_HMAC_SECRETS", "upstream-secret-0123456789"),
            ("STANDARD_WEBHOOKS_SECRETS", SW_SECRET),
        ]))
        .unwrap();
        // The third retry, ~21 minutes after the first try, with the first timestamp.
        let late = Timestamp::from_secs(NOW + 21 * 60);
        let h = upstream_headers(UPSTREAM_KEY, "taskId_774b9aa0422f", NOW);
        assert_eq!(
            v.verify(&req(None, &h, BODY), late),
            Ok(Verified::By(Scheme::UpstreamHmac))
        );
        let stale = Timestamp::from_secs(NOW + 31 * 60);
        assert!(v.verify(&req(None, &h, BODY), stale).is_err());
        // Standard Webhooks keeps its ±5 minutes.
        let sig = standard_webhooks_signature(&sw_key(), "msg_1", NOW, BODY);
        let h = sw_headers("msg_1", NOW, &sig);
        assert!(v.verify(&req(None, &h, BODY), now()).is_ok());
        assert!(
            v.verify(&req(None, &h, BODY), Timestamp::from_secs(NOW + 301))
                .is_err()
        );
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

    #[test]
    fn upstream_api_settings_come_in_pairs_and_never_print_the_key() {
        let none: Option<UpstreamApiSettings> = FromEnv::from_env(&Env::from_pairs([])).unwrap();
        assert_eq!(none, None);
        let some: Option<UpstreamApiSettings> = FromEnv::from_env(&Env::from_pairs([
            ("UPSTREAM_API_BASE", "https://api.example.com/v"),
            ("UPSTREAM_API_KEY", "sk-live-0123456789"),
        ]))
        .unwrap();
        let some = some.unwrap();
        assert_eq!(some.base.as_str(), "https://api.example.com/v/");
        assert!(!format!("{some:?}").contains("sk-live"));
        for (pairs, name) in [
            (
                vec![("UPSTREAM_API_BASE", "https://api.example.com")],
                "UPSTREAM_API_KEY",
            ),
            (vec![("UPSTREAM_API_KEY", "k")], "UPSTREAM_API_BASE"),
            (
                vec![
                    ("UPSTREAM_API_BASE", "http://127.0.0.1:1"),
                    ("UPSTREAM_API_KEY", "k"),
                ],
                "UPSTREAM_API_BASE",
            ),
        ] {
            let err = <Option<UpstreamApiSettings>>::from_env(&Env::from_pairs(pairs)).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
        let local: Option<UpstreamApiSettings> = FromEnv::from_env(&Env::from_pairs([
            ("UPSTREAM_API_BASE", "http://127.0.0.1:8091"),
            ("UPSTREAM_API_KEY", "k"),
            ("UPSTREAM_API_ALLOW_HTTP", "true"),
        ]))
        .unwrap();
        assert!(local.unwrap().allow_http);
    }

    #[test]
    fn url_policy_from_env() {
        let p = UrlPolicy::from_env(&Env::from_pairs([
            ("VIDEO_URL_ALLOWED_HOSTS", "cdn.example.com, *.example.org"),
            ("VIDEO_URL_ALLOW_HTTP", "true"),
        ]))
        .unwrap();
        assert_eq!(p.allowed_hosts.len(), 2);
        assert!(p.allow_http && !p.allow_loopback);
        let err = UrlPolicy::from_env(&Env::from_pairs([("VIDEO_URL_ALLOWED_HOSTS", "bad host/")]))
            .unwrap_err();
        assert!(err.to_string().contains("VIDEO_URL_ALLOWED_HOSTS"));
    }
}
