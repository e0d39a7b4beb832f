//! Endpoints: where notifications go, parsed from what an operator sends
//! ([`EndpointSpec`] → [`EndpointSettings`], refusing anything unsafe or unusable), which
//! events they want ([`Filter`]), how often ([`Threshold`], [`RateLimit`]), and how
//! their secret URLs are shown ([`mask_url`]).

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use url::Url;

use super::event::EventType;
use super::format::{TargetKind, custom};
use super::schedule::RetrySchedule;
use super::signing::SigningScheme;
use crate::domain::clock::Timestamp;
use crate::domain::ssrf::{Blocked, UrlPolicy};
use crate::domain::task::TaskStatus;
use crate::domain::task_id::TaskId;

/// An endpoint's id: `ep_` and 20 lowercase base-32 characters, random.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EndpointId(String);

const ID_ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
const ID_LEN: usize = 20;

impl EndpointId {
    /// A fresh id from 100 random bits.
    pub fn generate(random: u128) -> Self {
        let mut id = String::from("ep_");
        for i in 0..ID_LEN {
            let index = ((random >> (5 * i)) & 31) as usize;
            id.push(char::from(ID_ALPHABET[index]));
        }
        Self(id)
    }

    pub fn parse(raw: &str) -> Option<Self> {
        let rest = raw.strip_prefix("ep_")?;
        (rest.len() == ID_LEN && rest.bytes().all(|b| ID_ALPHABET.contains(&b)))
            .then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EndpointId {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(&raw).ok_or_else(|| format!("{raw:?} is not an endpoint id"))
    }
}

impl From<EndpointId> for String {
    fn from(id: EndpointId) -> Self {
        id.0
    }
}

impl fmt::Display for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which events an endpoint wants. Empty lists mean "all" (of task events: both
/// outcomes and every task; of types: every type but `test`, which goes wherever it is
/// sent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub types: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub statuses: BTreeSet<String>,
    /// Only tasks whose id starts with one of these (one upstream project, one
    /// customer's prefix).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub task_id_prefixes: BTreeSet<String>,
}

/// Prefixes one filter may hold, and how long each may be.
const MAX_PREFIXES: usize = 20;
const MAX_PREFIX_LEN: usize = 128;

impl Filter {
    /// Whether an event of `event_type` (about `task` in its status, for task events)
    /// passes.
    pub fn matches(&self, event_type: EventType, task: Option<(&TaskId, TaskStatus)>) -> bool {
        if event_type == EventType::Test {
            return true;
        }
        let type_ok = self.types.is_empty() || self.types.contains(event_type.as_str());
        let task_ok = match task {
            Some((id, status)) => {
                (self.statuses.is_empty() || self.statuses.contains(status.as_str()))
                    && (self.task_id_prefixes.is_empty()
                        || self
                            .task_id_prefixes
                            .iter()
                            .any(|p| id.as_str().starts_with(p.as_str())))
            }
            None => true,
        };
        type_ok && task_ok
    }

    fn check(&self) -> Result<(), EndpointError> {
        if self.task_id_prefixes.len() > MAX_PREFIXES
            || self
                .task_id_prefixes
                .iter()
                .any(|p| p.is_empty() || p.len() > MAX_PREFIX_LEN)
        {
            return Err(EndpointError::Invalid(format!(
                "task_id_prefixes: at most {MAX_PREFIXES}, each 1 to {MAX_PREFIX_LEN} bytes"
            )));
        }
        for t in &self.types {
            if EventType::parse(t).is_none() {
                return Err(EndpointError::Invalid(format!("unknown event type {t:?}")));
            }
        }
        for s in &self.statuses {
            if !matches!(s.as_str(), "stored" | "failed") {
                return Err(EndpointError::Invalid(format!(
                    "status filter {s:?}: only \"stored\" and \"failed\" are outcomes"
                )));
            }
        }
        Ok(())
    }
}

/// When an endpoint hears about completions (seed 001's thresholds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum Threshold {
    /// One event per task outcome.
    #[default]
    Each,
    /// One `tasks.batch_completed` per `n` completions; a partial batch is flushed
    /// `max_wait_secs` after its first completion.
    Batch { n: u32, max_wait_secs: u64 },
    /// One `tasks.queue_drained` per busy period, once no task is open for `quiet_secs`.
    Drain { quiet_secs: u64 },
}

impl Threshold {
    fn check(&self) -> Result<(), EndpointError> {
        match *self {
            Self::Each => Ok(()),
            Self::Batch { n, max_wait_secs } => {
                if !(2..=1_000).contains(&n) {
                    return Err(EndpointError::Invalid(format!(
                        "batch n must be 2 to 1000, got {n}"
                    )));
                }
                if !(10..=86_400).contains(&max_wait_secs) {
                    return Err(EndpointError::Invalid(format!(
                        "batch max_wait_secs must be 10 to 86400, got {max_wait_secs}"
                    )));
                }
                Ok(())
            }
            Self::Drain { quiet_secs } if !(10..=86_400).contains(&quiet_secs) => {
                Err(EndpointError::Invalid(format!(
                    "drain quiet_secs must be 10 to 86400, got {quiet_secs}"
                )))
            }
            Self::Drain { .. } => Ok(()),
        }
    }
}

/// At most `max` sends per `per_secs`; sends beyond it wait for the next window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub max: u32,
    pub per_secs: u64,
}

impl RateLimit {
    /// What the chat services document: WeCom 20 a minute per robot, Slack about one a
    /// second, Discord 30 a minute per webhook, Feishu 100 a minute.
    pub fn default_for(kind: TargetKind) -> Option<Self> {
        let (max, per_secs) = match kind {
            TargetKind::WeCom => (20, 60),
            TargetKind::Slack => (1, 1),
            TargetKind::Discord => (30, 60),
            TargetKind::Feishu => (100, 60),
            TargetKind::Webhook | TargetKind::Custom => return None,
        };
        Some(Self { max, per_secs })
    }

    /// The fixed window `now` falls in: its number and when the next one starts.
    pub fn window(&self, now: Timestamp) -> (i64, Timestamp) {
        let per_ms = i64::try_from(self.per_secs.max(1).saturating_mul(1000)).unwrap_or(i64::MAX);
        let n = now.as_millis().div_euclid(per_ms);
        (
            n,
            Timestamp::from_millis(n.saturating_add(1).saturating_mul(per_ms)),
        )
    }

    fn check(&self) -> Result<(), EndpointError> {
        if self.max == 0 || self.max > 10_000 || self.per_secs == 0 || self.per_secs > 3_600 {
            return Err(EndpointError::Invalid(
                "rate_limit needs max 1 to 10000 per 1 to 3600 seconds".into(),
            ));
        }
        Ok(())
    }
}

/// What an operator sends to create an endpoint (`POST /endpoints`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    pub kind: TargetKind,
    pub url: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub filter: Filter,
    #[serde(default)]
    pub threshold: Threshold,
    /// Defaults to what the target's service documents ([`RateLimit::default_for`]).
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Seconds before each attempt; defaults to the standard schedule.
    #[serde(default)]
    pub retry_schedule_secs: Option<Vec<u64>>,
    /// Attach a short-lived presigned URL to `task.stored` events.
    #[serde(default)]
    pub include_video_url: bool,
    /// A custom endpoint's template.
    #[serde(default)]
    pub template: Option<String>,
    /// Feishu's optional signing secret.
    #[serde(default)]
    pub feishu_secret: Option<String>,
    /// How webhook and custom endpoints are signed: `hmac-sha256` (`v1,`, a shared
    /// `whsec_` secret; the default) or `ed25519` (`v1a,`, the receiver holds only a
    /// `whpk_` public key).
    #[serde(default)]
    pub signing: SigningScheme,
}

/// Where endpoint URLs may point: the SSRF policy, and whether chat kinds must use
/// their service's own host (off only for local stacks, whose fake chat targets run on
/// loopback).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointUrlPolicy {
    pub guard: UrlPolicy,
    pub any_chat_host: bool,
}

impl EndpointUrlPolicy {
    /// A local stack's: plain http and loopback allowed, chat kinds on any host (their
    /// stand-ins run on 127.0.0.1). Never in a deployment.
    pub fn local() -> Self {
        Self {
            guard: UrlPolicy {
                allow_http: true,
                allow_loopback: true,
                allowed_hosts: Vec::new(),
            },
            any_chat_host: true,
        }
    }
}

/// The settings of a valid endpoint (everything but its secrets and its health).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSettings {
    pub kind: TargetKind,
    pub url: String,
    pub description: String,
    pub filter: Filter,
    pub threshold: Threshold,
    pub rate_limit: Option<RateLimit>,
    pub retry_schedule_secs: Option<Vec<u64>>,
    pub include_video_url: bool,
    pub template: Option<String>,
    /// Absent on endpoints stored before it existed: HMAC.
    #[serde(default)]
    pub signing: SigningScheme,
}

impl EndpointSettings {
    pub fn retry_schedule(&self) -> RetrySchedule {
        self.retry_schedule_secs
            .as_deref()
            .and_then(|s| RetrySchedule::from_secs(s).ok())
            .unwrap_or_default()
    }
}

/// Why an endpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("url is not a URL: {0}")]
    Url(String),
    #[error("url is refused: {0}")]
    Blocked(#[from] Blocked),
    #[error("a {kind} endpoint must be on {hosts}")]
    WrongHost {
        kind: &'static str,
        hosts: &'static str,
    },
    #[error("{0}")]
    Invalid(String),
}

const URL_MAX: usize = 2_048;
const DESCRIPTION_MAX: usize = 500;

/// The hosts (and path prefix) each chat service's webhooks live on.
fn chat_hosts(kind: TargetKind) -> Option<(&'static [(&'static str, &'static str)], &'static str)> {
    Some(match kind {
        TargetKind::Slack => (
            &[("hooks.slack.com", "/services/")],
            "hooks.slack.com/services/",
        ),
        TargetKind::Discord => (
            &[
                ("discord.com", "/api/webhooks/"),
                ("discordapp.com", "/api/webhooks/"),
            ],
            "discord.com/api/webhooks/",
        ),
        TargetKind::WeCom => (
            &[("qyapi.weixin.qq.com", "/cgi-bin/webhook/send")],
            "qyapi.weixin.qq.com/cgi-bin/webhook/send",
        ),
        TargetKind::Feishu => (
            &[
                ("open.feishu.cn", "/open-apis/bot/v2/hook/"),
                ("open.larksuite.com", "/open-apis/bot/v2/hook/"),
            ],
            "open.feishu.cn or open.larksuite.com /open-apis/bot/v2/hook/",
        ),
        TargetKind::Webhook | TargetKind::Custom => return None,
    })
}

impl EndpointSpec {
    /// The settings, or why not. Secrets (`feishu_secret`) are the caller's to store.
    pub fn validate(self, policy: &EndpointUrlPolicy) -> Result<EndpointSettings, EndpointError> {
        if self.url.len() > URL_MAX {
            return Err(EndpointError::Invalid(format!(
                "url is over {URL_MAX} bytes"
            )));
        }
        let url = Url::parse(&self.url).map_err(|e| EndpointError::Url(e.to_string()))?;
        policy.guard.check_url(&url)?;
        if url.fragment().is_some() {
            return Err(EndpointError::Invalid("url may not have a fragment".into()));
        }
        if let Some((hosts, shown)) = chat_hosts(self.kind).filter(|_| !policy.any_chat_host) {
            let ok = hosts.iter().any(|(host, path)| {
                url.scheme() == "https"
                    && url.host_str() == Some(host)
                    && url.port().is_none()
                    && url.path().starts_with(path)
            });
            if !ok {
                return Err(EndpointError::WrongHost {
                    kind: self.kind.as_str(),
                    hosts: shown,
                });
            }
        }
        if self.description.chars().count() > DESCRIPTION_MAX {
            return Err(EndpointError::Invalid(format!(
                "description is over {DESCRIPTION_MAX} characters"
            )));
        }
        self.filter.check()?;
        self.threshold.check()?;
        if let Some(r) = &self.rate_limit {
            r.check()?;
        }
        if let Some(s) = &self.retry_schedule_secs {
            RetrySchedule::from_secs(s).map_err(|e| EndpointError::Invalid(e.to_string()))?;
        }
        match (self.kind, &self.template) {
            (TargetKind::Custom, Some(t)) => {
                custom::validate(t).map_err(|e| EndpointError::Invalid(e.to_string()))?
            }
            (TargetKind::Custom, None) => {
                return Err(EndpointError::Invalid(
                    "a custom endpoint needs a template".into(),
                ));
            }
            (_, Some(_)) => {
                return Err(EndpointError::Invalid(
                    "only custom endpoints take a template".into(),
                ));
            }
            (_, None) => {}
        }
        if self.signing != SigningScheme::HmacSha256 && !self.kind.is_signed() {
            return Err(EndpointError::Invalid(format!(
                "{} endpoints are not signed: no signing scheme to choose",
                self.kind.as_str()
            )));
        }
        if self.feishu_secret.is_some() && self.kind != TargetKind::Feishu {
            return Err(EndpointError::Invalid(
                "only feishu endpoints take a feishu_secret".into(),
            ));
        }
        Ok(EndpointSettings {
            kind: self.kind,
            rate_limit: self
                .rate_limit
                .or_else(|| RateLimit::default_for(self.kind)),
            url: url.into(),
            description: self.description,
            filter: self.filter,
            threshold: self.threshold,
            retry_schedule_secs: self.retry_schedule_secs,
            include_video_url: self.include_video_url,
            template: self.template,
            signing: self.signing,
        })
    }
}

/// A secret URL as it may be shown: its host and the last 4 characters, never more.
pub fn mask_url(url: &str) -> String {
    let host = Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "?".into());
    let tail: String = {
        let chars: Vec<char> = url.chars().collect();
        // Short URLs show nothing but their host: 4 characters of a short path may be
        // most of the secret.
        if chars.len() < 24 {
            String::new()
        } else {
            chars[chars.len() - 4..].iter().collect()
        }
    };
    format!("{host}/…{tail}")
}

/// A secret as it may be shown: its last 4 characters.
pub fn mask_secret(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 16 {
        return "…".into();
    }
    format!("…{}", chars[chars.len() - 4..].iter().collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: TargetKind, url: &str) -> EndpointSpec {
        EndpointSpec {
            kind,
            url: url.into(),
            description: String::new(),
            filter: Filter::default(),
            threshold: Threshold::Each,
            rate_limit: None,
            retry_schedule_secs: None,
            include_video_url: false,
            template: None,
            feishu_secret: None,
            signing: SigningScheme::HmacSha256,
        }
    }

    fn production() -> EndpointUrlPolicy {
        EndpointUrlPolicy::default()
    }

    #[test]
    fn only_signed_kinds_choose_a_signing_scheme() {
        let mut ed = spec(TargetKind::Webhook, "https://hooks.example/in");
        ed.signing = SigningScheme::Ed25519;
        assert_eq!(
            ed.validate(&production()).unwrap().signing,
            SigningScheme::Ed25519
        );
        let mut chat = spec(TargetKind::Slack, "https://hooks.slack.com/services/T/B/x");
        chat.signing = SigningScheme::Ed25519;
        assert!(chat.validate(&production()).is_err());
        let parsed: EndpointSpec = serde_json::from_value(serde_json::json!(
            {"kind": "webhook", "url": "https://hooks.example/in", "signing": "ed25519"}
        ))
        .unwrap();
        assert_eq!(parsed.signing, SigningScheme::Ed25519);
    }

    #[test]
    fn ids_are_random_shaped_and_parse_back() {
        let a = EndpointId::generate(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(a.as_str().len(), 23);
        assert_eq!(EndpointId::parse(a.as_str()), Some(a.clone()));
        assert_ne!(a, EndpointId::generate(1));
        for bad in [
            "",
            "ep_",
            "ep_ABCDEFGHIJKLMNOPQRST",
            "xx_abcdefghijkmnpqrst",
            "ep_abcdefghijkmnpqrs0",
        ] {
            assert_eq!(EndpointId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn urls_pass_the_ssrf_guard_and_chat_kinds_their_own_host() {
        let ok = [
            (TargetKind::Webhook, "https://hooks.example.com/mv"),
            (
                TargetKind::Slack,
                "https://hooks.slack.com/services/T000/B000/XXXXXXXX",
            ),
            (
                TargetKind::Discord,
                "https://discord.com/api/webhooks/123/abc",
            ),
            (
                TargetKind::WeCom,
                "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6",
            ),
            (
                TargetKind::Feishu,
                "https://open.feishu.cn/open-apis/bot/v2/hook/2c9e",
            ),
            (
                TargetKind::Feishu,
                "https://open.larksuite.com/open-apis/bot/v2/hook/2c9e",
            ),
        ];
        for (kind, url) in ok {
            let settings = spec(kind, url).validate(&production()).unwrap();
            assert_eq!(settings.rate_limit, RateLimit::default_for(kind), "{url}");
        }
        let refused = [
            (TargetKind::Webhook, "http://hooks.example.com/mv", "scheme"),
            (TargetKind::Webhook, "https://127.0.0.1/x", "loopback"),
            (
                TargetKind::Webhook,
                "https://169.254.169.254/latest/meta-data",
                "link_local",
            ),
            (TargetKind::Webhook, "https://[::1]/x", "loopback"),
            (TargetKind::Webhook, "https://localhost/x", "loopback name"),
            (
                TargetKind::Webhook,
                "https://user:pw@hooks.example.com/",
                "user name",
            ),
            (
                TargetKind::Webhook,
                "https://hooks.example.com/#frag",
                "fragment",
            ),
            (TargetKind::Webhook, "not a url", "not a URL"),
            (
                TargetKind::Slack,
                "https://hooks.example.com/services/x",
                "hooks.slack.com",
            ),
            (
                TargetKind::Slack,
                "https://hooks.slack.com:8443/services/x",
                "hooks.slack.com",
            ),
            (
                TargetKind::Slack,
                "https://hooks.slack.com/other/x",
                "hooks.slack.com",
            ),
            (
                TargetKind::Discord,
                "https://discord.com.evil.example/api/webhooks/1/a",
                "discord.com",
            ),
            (
                TargetKind::WeCom,
                "https://qyapi.weixin.qq.com/cgi-bin/other",
                "qyapi",
            ),
        ];
        for (kind, url, why) in refused {
            let err = spec(kind, url).validate(&production()).unwrap_err();
            assert!(err.to_string().contains(why), "{url}: {err}");
        }
        // A local stack: plain http on loopback, chat kinds anywhere.
        let local = EndpointUrlPolicy::local();
        assert!(
            spec(TargetKind::Slack, "http://127.0.0.1:8099/slack")
                .validate(&local)
                .is_ok()
        );
        assert!(
            spec(TargetKind::Webhook, "http://10.0.0.1/x")
                .validate(&local)
                .is_err()
        );
    }

    #[test]
    fn settings_are_checked() {
        let url = "https://hooks.example.com/mv";
        let with = |edit: &dyn Fn(&mut EndpointSpec)| {
            let mut s = spec(TargetKind::Webhook, url);
            edit(&mut s);
            s.validate(&production())
        };
        assert!(
            with(&|s| s.threshold = Threshold::Batch {
                n: 10,
                max_wait_secs: 300
            })
            .is_ok()
        );
        assert!(
            with(&|s| s.threshold = Threshold::Batch {
                n: 1,
                max_wait_secs: 300
            })
            .is_err()
        );
        assert!(
            with(&|s| s.threshold = Threshold::Batch {
                n: 10,
                max_wait_secs: 1
            })
            .is_err()
        );
        assert!(with(&|s| s.threshold = Threshold::Drain { quiet_secs: 60 }).is_ok());
        assert!(with(&|s| s.threshold = Threshold::Drain { quiet_secs: 0 }).is_err());
        assert!(
            with(&|s| s.rate_limit = Some(RateLimit {
                max: 0,
                per_secs: 60
            }))
            .is_err()
        );
        assert!(with(&|s| s.retry_schedule_secs = Some(vec![])).is_err());
        assert!(with(&|s| s.retry_schedule_secs = Some(vec![0, 10, 60])).is_ok());
        assert!(with(&|s| s.description = "x".repeat(501)).is_err());
        assert!(
            with(&|s| {
                s.filter.types.insert("task.downloading".into());
            })
            .is_err()
        );
        assert!(
            with(&|s| {
                s.filter.statuses.insert("received".into());
            })
            .is_err()
        );
        assert!(
            with(&|s| s.template = Some("{}".into())).is_err(),
            "template on a webhook"
        );
        assert!(with(&|s| s.feishu_secret = Some("s".into())).is_err());
        let mut custom = spec(TargetKind::Custom, url);
        assert!(
            custom.clone().validate(&production()).is_err(),
            "custom needs a template"
        );
        custom.template = Some(r#"{"text": {{ summary.title }}}"#.into());
        assert!(custom.clone().validate(&production()).is_ok());
        custom.template = Some(r#"{"text": {{ summary.titel }}}"#.into());
        assert!(
            custom.validate(&production()).is_err(),
            "a typo is caught when saved"
        );
    }

    #[test]
    fn specs_refuse_unknown_fields() {
        let err = serde_json::from_str::<EndpointSpec>(
            r#"{"kind": "webhook", "url": "https://x.example", "secrt": "oops"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let s: EndpointSpec = serde_json::from_str(
            r#"{"kind": "wecom", "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k",
                "threshold": {"mode": "batch", "n": 5, "max_wait_secs": 600}}"#,
        )
        .unwrap();
        assert_eq!(
            s.threshold,
            Threshold::Batch {
                n: 5,
                max_wait_secs: 600
            }
        );
    }

    #[test]
    fn filters() {
        let tid = TaskId::parse("proj-a-1").unwrap();
        let all = Filter::default();
        assert!(all.matches(EventType::TaskStored, Some((&tid, TaskStatus::Stored))));
        assert!(all.matches(EventType::QueueDrained, None));
        let failures = Filter {
            statuses: ["failed".to_owned()].into(),
            ..Filter::default()
        };
        assert!(failures.matches(EventType::TaskFailed, Some((&tid, TaskStatus::Failed))));
        assert!(!failures.matches(EventType::TaskStored, Some((&tid, TaskStatus::Stored))));
        let stored_only = Filter {
            types: ["task.stored".to_owned()].into(),
            ..Filter::default()
        };
        assert!(!stored_only.matches(EventType::TaskFailed, Some((&tid, TaskStatus::Failed))));
        assert!(!stored_only.matches(EventType::BatchCompleted, None));
        assert!(
            stored_only.matches(EventType::Test, None),
            "a test goes where it is sent"
        );
        let project = Filter {
            task_id_prefixes: ["proj-a-".to_owned(), "x".to_owned()].into(),
            ..Filter::default()
        };
        let other = TaskId::parse("proj-b-1").unwrap();
        assert!(project.matches(EventType::TaskStored, Some((&tid, TaskStatus::Stored))));
        assert!(!project.matches(EventType::TaskStored, Some((&other, TaskStatus::Stored))));
        assert!(
            project.matches(EventType::QueueDrained, None),
            "not about one task"
        );
        let too_many = Filter {
            task_id_prefixes: (0..21).map(|i| format!("p{i}")).collect(),
            ..Filter::default()
        };
        assert!(too_many.check().is_err());
        let empty = Filter {
            task_id_prefixes: [String::new()].into(),
            ..Filter::default()
        };
        assert!(empty.check().is_err());
    }

    #[test]
    fn rate_limit_windows() {
        let r = RateLimit {
            max: 20,
            per_secs: 60,
        };
        let (n, next) = r.window(Timestamp::from_secs(1_795_000_030));
        assert_eq!(n, 1_795_000_030 / 60);
        assert_eq!(next, Timestamp::from_secs((1_795_000_030 / 60 + 1) * 60));
        // 1 795 000 020 starts the window; the second before it is the previous one.
        assert_eq!(r.window(Timestamp::from_secs(1_795_000_020)).0, n);
        assert_eq!(r.window(Timestamp::from_secs(1_795_000_019)).0, n - 1);
    }

    #[test]
    fn secrets_are_masked_to_host_and_last_four() {
        assert_eq!(
            mask_url("https://hooks.slack.com/services/T000/B000/XXXXabcd"),
            "hooks.slack.com/…abcd"
        );
        assert_eq!(mask_url("https://a.example/x"), "a.example/…");
        assert_eq!(mask_url("garbage"), "?/…");
        assert_eq!(
            mask_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            "…LaSw"
        );
        assert_eq!(mask_secret("short"), "…");
    }
}
